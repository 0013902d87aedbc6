//! Fusing the BM25 and dense rankings.
//!
//! Two families, both measured by `kefu eval retrieval --sweep` on each dataset's dev split:
//! - reciprocal-rank fusion, `Σ 1/(k + rank)`: scale-free, but throws away how far apart scores are, and on
//!   StackFAQ it is worse than dense alone because BM25's many near-misses get the same votes as dense's hits;
//! - a convex combination of scores, `w·dense′ + (1−w)·bm25′`, with BM25 divided by the best BM25 score and the
//!   cosine min-max scaled over the candidates. Candidates found by only one list get their exact cosine from the
//!   dense index, and a BM25 score of 0 (they ranked below the BM25 cut-off).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Fusion {
    Bm25,
    Dense,
    Rrf { k: f32 },
    Weighted { dense_weight: f32 },
}

impl Fusion {
    pub fn name(&self) -> String {
        match self {
            Fusion::Bm25 => "bm25".into(),
            Fusion::Dense => "dense".into(),
            Fusion::Rrf { k } => format!("rrf(k={k})"),
            Fusion::Weighted { dense_weight } => format!("weighted(dense={dense_weight})"),
        }
    }
}

/// A score and its 1-based rank in its list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankedScore {
    pub score: f32,
    /// Rank in the retriever's own list; `None` when the score was computed for fusion only.
    pub rank: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub chunk: Uuid,
    pub document: Uuid,
    pub bm25: Option<RankedScore>,
    pub dense: Option<RankedScore>,
    pub fused: f32,
}

/// Fuses the two lists (each best first). `extra_dense` holds exact cosines of BM25-only candidates.
pub fn fuse(
    bm25: &[(Uuid, Uuid, f32)],
    dense: &[(Uuid, Uuid, f32)],
    extra_dense: &HashMap<Uuid, f32>,
    fusion: Fusion,
) -> Vec<Fused> {
    let mut by_chunk: HashMap<Uuid, Fused> = HashMap::new();
    let mut order: Vec<Uuid> = Vec::new();
    fn slot<'m>(
        by_chunk: &'m mut HashMap<Uuid, Fused>,
        order: &mut Vec<Uuid>,
        chunk: Uuid,
        document: Uuid,
    ) -> &'m mut Fused {
        by_chunk.entry(chunk).or_insert_with(|| {
            order.push(chunk);
            Fused {
                chunk,
                document,
                bm25: None,
                dense: None,
                fused: 0.0,
            }
        })
    }
    if fusion != Fusion::Dense {
        for (i, (c, d, s)) in bm25.iter().enumerate() {
            slot(&mut by_chunk, &mut order, *c, *d).bm25 = Some(RankedScore {
                score: *s,
                rank: Some(i as u32 + 1),
            });
        }
    }
    if fusion != Fusion::Bm25 {
        for (i, (c, d, s)) in dense.iter().enumerate() {
            slot(&mut by_chunk, &mut order, *c, *d).dense = Some(RankedScore {
                score: *s,
                rank: Some(i as u32 + 1),
            });
        }
        for f in by_chunk.values_mut() {
            if f.dense.is_none() {
                if let Some(s) = extra_dense.get(&f.chunk) {
                    f.dense = Some(RankedScore {
                        score: *s,
                        rank: None,
                    });
                }
            }
        }
    }
    let bmax = bm25.first().map_or(0.0, |x| x.2).max(f32::MIN_POSITIVE);
    let (dmin, dmax) = by_chunk
        .values()
        .filter_map(|f| f.dense.map(|d| d.score))
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(s), hi.max(s))
        });
    let dspan = (dmax - dmin).max(1e-6);
    for f in by_chunk.values_mut() {
        f.fused = match fusion {
            Fusion::Bm25 => f.bm25.map_or(0.0, |b| b.score),
            Fusion::Dense => f.dense.map_or(f32::NEG_INFINITY, |d| d.score),
            Fusion::Rrf { k } => {
                let rr = |r: Option<RankedScore>| {
                    r.and_then(|r| r.rank)
                        .map_or(0.0, |rank| 1.0 / (k + rank as f32))
                };
                rr(f.bm25) + rr(f.dense)
            }
            Fusion::Weighted { dense_weight: w } => {
                let b = f.bm25.map_or(0.0, |b| b.score / bmax);
                let d = f.dense.map_or(0.0, |d| (d.score - dmin) / dspan);
                w * d + (1.0 - w) * b
            }
        };
    }
    let mut out: Vec<Fused> = order
        .into_iter()
        .filter_map(|c| by_chunk.remove(&c))
        .collect();
    // Stable on ties: the order of first appearance (BM25, then dense) decides.
    out.sort_by(|a, b| b.fused.total_cmp(&a.fused));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect()
    }

    #[test]
    fn rrf_rewards_agreement_and_weighted_uses_score_gaps() {
        let c = ids(3);
        let doc = Uuid::nil();
        let bm25 = vec![(c[0], doc, 10.0), (c[1], doc, 9.0)];
        let dense = vec![(c[1], doc, 0.9), (c[2], doc, 0.5)];
        let extra = HashMap::from([(c[0], 0.4)]);
        let rrf = fuse(&bm25, &dense, &extra, Fusion::Rrf { k: 60.0 });
        assert_eq!(rrf[0].chunk, c[1], "found by both lists");
        let w = fuse(
            &bm25,
            &dense,
            &extra,
            Fusion::Weighted { dense_weight: 0.5 },
        );
        assert_eq!(w[0].chunk, c[1]);
        // c0: bm25 1.0, dense min → 0.5; c2: bm25 0, dense (0.5-0.4)/0.5=0.2 → 0.1
        assert_eq!(
            w.iter().map(|f| f.chunk).collect::<Vec<_>>(),
            vec![c[1], c[0], c[2]]
        );
        assert_eq!(
            w[1].dense,
            Some(RankedScore {
                score: 0.4,
                rank: None
            })
        );
        let dense_only = fuse(&bm25, &dense, &extra, Fusion::Dense);
        assert_eq!(dense_only.len(), 2);
        assert!(dense_only.iter().all(|f| f.bm25.is_none()));
    }

    proptest! {
        #[test]
        fn every_candidate_appears_once_sorted(
            nb in 0usize..20, nd in 0usize..20, w in 0.0f32..1.0, k in 1.0f32..100.0,
        ) {
            let c = ids(30);
            let bm25: Vec<_> = (0..nb).map(|i| (c[i], Uuid::nil(), 20.0 - i as f32)).collect();
            let dense: Vec<_> = (0..nd).map(|i| (c[29 - i], Uuid::nil(), 0.9 - i as f32 * 0.01)).collect();
            for fusion in [Fusion::Rrf { k }, Fusion::Weighted { dense_weight: w }] {
                let out = fuse(&bm25, &dense, &HashMap::new(), fusion);
                let mut seen: Vec<Uuid> = out.iter().map(|f| f.chunk).collect();
                seen.sort();
                seen.dedup();
                prop_assert_eq!(seen.len(), out.len());
                let expected: std::collections::HashSet<Uuid> =
                    bm25.iter().map(|x| x.0).chain(dense.iter().map(|x| x.0)).collect();
                prop_assert_eq!(out.len(), expected.len());
                prop_assert!(out.windows(2).all(|p| p[0].fused >= p[1].fused));
            }
        }
    }
}
