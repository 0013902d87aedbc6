//! Exact dense search: every vector of the scope is scored (dot product of unit vectors = cosine). At the sizes a
//! customer-service knowledge base reaches (10⁴–10⁶ chunks) a flat scan in contiguous memory is fast enough (see
//! bench/RESULTS.md) and, unlike approximate indexes, never misses the best passage; an ANN index can replace this
//! module behind the same calls if a tenant outgrows it.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Entry, Filter, Interner};

struct Slot {
    chunk: Uuid,
    document: Uuid,
    tenant: u32,
    collection: u32,
    lang: u32,
    tags: Box<[u32]>,
    live: bool,
}

pub(super) struct Dense {
    dim: usize,
    data: Vec<f32>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    by_document: HashMap<Uuid, Vec<usize>>,
    live: usize,
}

/// Dot product with eight independent accumulators, so the compiler vectorises it without `-C target-cpu`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

impl Dense {
    pub(super) fn new(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            by_document: HashMap::new(),
            live: 0,
        }
    }

    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    /// Number of live vectors.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.data.capacity() * 4 + self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    pub(super) fn insert(&mut self, e: &Entry, interner: &mut Interner) {
        for v in &e.vectors {
            if v.len() != self.dim {
                continue; // the caller checks dimensions; a stray vector is never compared
            }
            let slot = Slot {
                chunk: e.chunk_id,
                document: e.document_id,
                tenant: interner.id(&e.tenant_id.to_string()),
                collection: interner.id(&e.collection),
                lang: interner.id(&e.lang),
                tags: e.tags.iter().map(|t| interner.id(t)).collect(),
                live: true,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.data[i * self.dim..(i + 1) * self.dim].copy_from_slice(v);
                    self.slots[i] = slot;
                    i
                }
                None => {
                    self.data.extend_from_slice(v);
                    self.slots.push(slot);
                    self.slots.len() - 1
                }
            };
            self.by_document.entry(e.document_id).or_default().push(i);
            self.live += 1;
        }
    }

    pub(super) fn delete_document(&mut self, document: Uuid) {
        for i in self.by_document.remove(&document).unwrap_or_default() {
            if self.slots[i].live && self.slots[i].document == document {
                self.slots[i].live = false;
                self.free.push(i);
                self.live -= 1;
            }
        }
    }

    /// The best `n` chunks for `query` within the filter, best first: one score per chunk (its best vector).
    pub(super) fn search(
        &self,
        query: &[f32],
        filter: &Filter,
        interner: &Interner,
        n: usize,
    ) -> Vec<(Uuid, Uuid, f32)> {
        if query.len() != self.dim || n == 0 {
            return Vec::new();
        }
        let Some(scope) = Scope::new(filter, interner) else {
            return Vec::new();
        };
        // Keep a few spare entries: a chunk with several vectors (FAQ alternatives) may appear more than once.
        let keep = n * 2 + 8;
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(keep + 1);
        let mut floor = f32::NEG_INFINITY;
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.live || !scope.matches(slot) {
                continue;
            }
            let s = dot(query, &self.data[i * self.dim..(i + 1) * self.dim]);
            if best.len() >= keep && s <= floor {
                continue;
            }
            best.push((s, i));
            if best.len() > keep * 2 {
                best.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
                best.truncate(keep);
                floor = best[keep - 1].0;
            }
        }
        best.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut out: Vec<(Uuid, Uuid, f32)> = Vec::with_capacity(n);
        for (s, i) in best {
            let (chunk, document) = (self.slots[i].chunk, self.slots[i].document);
            if !out.iter().any(|(c, _, _)| *c == chunk) {
                out.push((chunk, document, s));
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }

    /// The exact score of given chunks (their best vector), for fusing candidates the dense list did not return.
    pub(super) fn scores_of(
        &self,
        query: &[f32],
        documents: &[(Uuid, Uuid)],
    ) -> HashMap<Uuid, f32> {
        let mut out = HashMap::new();
        if query.len() != self.dim {
            return out;
        }
        for (document, chunk) in documents {
            for &i in self.by_document.get(document).into_iter().flatten() {
                let slot = &self.slots[i];
                if slot.live && slot.chunk == *chunk {
                    let s = dot(query, &self.data[i * self.dim..(i + 1) * self.dim]);
                    let e = out.entry(*chunk).or_insert(f32::NEG_INFINITY);
                    *e = e.max(s);
                }
            }
        }
        out
    }
}

/// A filter resolved to interned ids once per search.
struct Scope {
    tenant: u32,
    collections: Vec<u32>,
    lang: Option<u32>,
    tags: Vec<u32>,
}

impl Scope {
    /// `None` when the filter names something no vector has (nothing can match).
    fn new(f: &Filter, interner: &Interner) -> Option<Self> {
        let tenant = interner.get(&f.tenant.to_string())?;
        let collections: Vec<u32> = f
            .collections
            .iter()
            .filter_map(|c| interner.get(c))
            .collect();
        if !f.collections.is_empty() && collections.is_empty() {
            return None;
        }
        let lang = match &f.lang {
            Some(l) => Some(interner.get(l)?),
            None => None,
        };
        let tags: Vec<u32> = f.tags.iter().filter_map(|t| interner.get(t)).collect();
        if !f.tags.is_empty() && tags.is_empty() {
            return None;
        }
        Some(Self {
            tenant,
            collections,
            lang,
            tags,
        })
    }

    fn matches(&self, s: &Slot) -> bool {
        s.tenant == self.tenant
            && (self.collections.is_empty() || self.collections.contains(&s.collection))
            && self.lang.is_none_or(|l| l == s.lang)
            && (self.tags.is_empty() || s.tags.iter().any(|t| self.tags.contains(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_naive_sum_for_any_length() {
        for n in [0, 1, 7, 8, 9, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
        }
    }
}
