//! The knowledge base: files in, cited passages out.
//!
//! - [`parse`]: Markdown, HTML, PDF, plain text and FAQ files → blocks with heading paths and source locations;
//! - [`chunk`]: blocks → chunks that respect headings, paragraphs and sentences (CJK-aware, sized in tokens);
//! - [`index`]: the derived BM25 (tantivy + jieba + English stemming) and dense indexes, and rank fusion;
//! - [`service`]: ingestion into the store (the source of truth), the change-log follower that keeps each node's
//!   index current, and hybrid search with citations;
//! - [`eval`]: Recall@k, MRR and nDCG on FAQ-retrieval datasets, for `kefu eval retrieval`.

pub mod analysis;
pub mod chunk;
pub mod eval;
pub mod index;
pub mod parse;
pub mod service;
pub mod text;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use index::{
    Entry, Filter, Fused, Fusion, IndexError, IndexSettings, RankedScore, SearchIndex,
};
pub use service::{Knowledge, KnowledgeError, KnowledgeOptions};

/// How a search ranks and cuts its results.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchParams {
    /// Results returned.
    pub k: usize,
    /// Candidates taken from each retriever before fusion.
    pub candidates: usize,
    pub fusion: Fusion,
    /// Hits whose cosine is below this are dropped (model-specific; `None` keeps everything). When that leaves
    /// nothing, the BM25 hits are returned instead, marked as a keyword fallback.
    pub min_dense: Option<f32>,
    /// The floor for queries with no Chinese in them (`None`: `min_dense`). Cosines run lower for English queries
    /// with e5 (bench/relevance-floor.py), so one floor for both either drops English answers or keeps Chinese chat.
    pub min_dense_latin: Option<f32>,
}

impl Default for SearchParams {
    fn default() -> Self {
        Self {
            k: 5,
            candidates: 50,
            // Chosen on the dev splits of StackFAQ and BQ with the default embedder (bench/RESULTS.md).
            fusion: Fusion::Weighted { dense_weight: 0.7 },
            min_dense: None,
            min_dense_latin: None,
        }
    }
}

/// Ranked hits and how they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub hits: Vec<Fused>,
    /// No hit passed the relevance threshold, so these are the BM25 matches of the query's words.
    pub keyword_fallback: bool,
}

impl SearchIndex {
    /// Hybrid search: BM25 and dense candidates, fused, thresholded, cut to `k`. Without a query vector (no
    /// embedder, or an index without vectors) it is BM25 alone.
    pub fn search(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        filter: &Filter,
        p: &SearchParams,
    ) -> Result<Ranked, IndexError> {
        let vector = vector.filter(|v| self.dim() > 0 && v.len() == self.dim());
        let fusion = match (p.fusion, vector) {
            (_, None) => Fusion::Bm25,
            (f, Some(_)) => f,
        };
        // BM25 and the dense scan are independent: run them on two cores at once (on a busy server the scoped
        // thread just queues behind the others; a search never waits for more than the slower of the two).
        let (bm25, dense) = std::thread::scope(|scope| {
            let dense = scope.spawn(|| match vector {
                Some(v) if fusion != Fusion::Bm25 => self.dense(v, filter, p.candidates),
                _ => Vec::new(),
            });
            let bm25 = if fusion == Fusion::Dense {
                Ok(Vec::new())
            } else {
                self.bm25(query, filter, p.candidates)
            };
            (bm25, dense.join().unwrap_or_default())
        });
        let bm25 = bm25?;
        let extra = match vector {
            Some(v) if fusion != Fusion::Bm25 => {
                let missing: Vec<_> = bm25
                    .iter()
                    .filter(|(c, _, _)| !dense.iter().any(|(d, _, _)| d == c))
                    .map(|(c, d, _)| (*d, *c))
                    .collect();
                self.dense_scores(v, &missing)
            }
            _ => HashMap::new(),
        };
        let mut hits = index::fuse(&bm25, &dense, &extra, fusion);
        let mut keyword_fallback = false;
        let floor = if query.chars().any(text::is_cjk) {
            p.min_dense
        } else {
            p.min_dense_latin.or(p.min_dense)
        };
        if let (Some(min), Some(_)) = (floor, vector) {
            hits.retain(|h| h.dense.is_some_and(|d| d.score >= min));
            if hits.is_empty() && !bm25.is_empty() {
                hits = index::fuse(&bm25, &[], &HashMap::new(), Fusion::Bm25);
                keyword_fallback = true;
            }
        }
        hits.truncate(p.k);
        Ok(Ranked {
            hits,
            keyword_fallback,
        })
    }
}
