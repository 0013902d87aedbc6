//! Retrieval evaluation: FAQ-retrieval datasets, a dev/test split of their queries, and Recall@1/5/10, MRR@10 and
//! nDCG@10 (binary relevance) for BM25, dense and fused rankings over one shared index.
//!
//! Datasets:
//! - **StackFAQ** (Karan & Šnajder 2018): 125 StackExchange FAQ entries (question + accepted answers), 1,249 user
//!   paraphrases as queries, each relevant to the entry it rephrases.
//! - **BQ duplicate retrieval** (zh): every distinct question of BQ corpus `dev.tsv` is a corpus entry (6,921); each
//!   question that appears in a label-1 pair is a query (3,747) whose relevant entries are its label-1 partners; the
//!   query itself is removed from its ranking. Many true paraphrases are unlabelled, so absolute numbers are low.
//! - **FAQ-pairs JSON** (`{"faqs": [{id, question, answer, alternatives?}], "queries": [{text, relevant: [id]}]}`):
//!   any tenant's own test set, and the Chinese shop FAQ fixture used in CI.
//!
//! Splits: a query belongs to `dev` when the first byte of SHA-256 of its text is even, so the split is stable
//! across runs and machines and independent of file order. Fusion settings are chosen on dev and reported on test.

use std::collections::{HashMap, HashSet};

use kefu_llm::{EmbedKind, Embedder, LlmError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::index::{Entry, Filter, IndexError, IndexSettings, SearchIndex};
use crate::{Fusion, SearchParams};

#[derive(Debug, Clone, PartialEq)]
pub struct EvalDoc {
    pub id: String,
    pub title: String,
    pub body: String,
    pub alternatives: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalQuery {
    pub text: String,
    pub relevant: Vec<String>,
    /// A corpus entry never counted for this query (BQ: the query's own entry).
    pub exclude: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub docs: Vec<EvalDoc>,
    pub queries: Vec<EvalQuery>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("dataset format: {0}")]
    Format(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("embedding failed: {0}")]
    Embed(#[from] LlmError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Dev,
    Test,
    All,
}

impl Split {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dev" => Some(Split::Dev),
            "test" => Some(Split::Test),
            "all" => Some(Split::All),
            _ => None,
        }
    }

    pub fn contains(self, query: &str) -> bool {
        let dev = Sha256::digest(query.as_bytes())[0] % 2 == 0;
        match self {
            Split::Dev => dev,
            Split::Test => !dev,
            Split::All => true,
        }
    }
}

impl Dataset {
    /// StackFAQ's `stackExchange-FAQ.json`.
    pub fn stackfaq(json: &str) -> Result<Self, EvalError> {
        #[derive(Deserialize)]
        struct Root {
            root: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            qapair: Vec<Pair>,
        }
        #[derive(Deserialize)]
        struct Pair {
            question: String,
            #[serde(default)]
            rephr: OneOrMany,
            #[serde(default)]
            answer: OneOrMany,
        }
        /// The XML-to-JSON conversion wrote single children as a string and several as an array.
        #[derive(Deserialize, Default)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<Option<String>>),
            #[default]
            None,
        }
        impl OneOrMany {
            fn items(self) -> Vec<String> {
                match self {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(v) => v.into_iter().flatten().collect(),
                    OneOrMany::None => Vec::new(),
                }
            }
        }
        let root: Root =
            serde_json::from_str(json).map_err(|e| EvalError::Format(e.to_string()))?;
        let mut docs = Vec::new();
        let mut queries = Vec::new();
        for (i, p) in root.root.qapair.into_iter().enumerate() {
            let id = format!("faq{i}");
            let answer = p.answer.items().join("\n");
            for r in p
                .rephr
                .items()
                .iter()
                .map(|r| r.trim())
                .filter(|r| !r.is_empty() && *r != "*")
            {
                queries.push(EvalQuery {
                    text: r.to_owned(),
                    relevant: vec![id.clone()],
                    exclude: None,
                });
            }
            docs.push(EvalDoc {
                id,
                title: p.question.trim().to_owned(),
                body: answer,
                alternatives: vec![],
            });
        }
        Ok(Self {
            name: "stackfaq".into(),
            docs,
            queries,
        })
    }

    /// BQ corpus pairs (`s1 \t s2 \t label`) turned into duplicate-question retrieval (see the module docs).
    pub fn bq(tsv: &str) -> Result<Self, EvalError> {
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut docs = Vec::new();
        let mut partners: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        let mut id_of = |s: &str, docs: &mut Vec<EvalDoc>| -> usize {
            *ids.entry(s.to_owned()).or_insert_with(|| {
                docs.push(EvalDoc {
                    id: format!("bq{}", docs.len()),
                    title: s.to_owned(),
                    body: String::new(),
                    alternatives: vec![],
                });
                docs.len() - 1
            })
        };
        for (n, line) in tsv.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 3 || !matches!(cols[2].trim(), "0" | "1") {
                if n == 0 {
                    continue; // a header row
                }
                return Err(EvalError::Format(format!(
                    "line {}: expected s1<TAB>s2<TAB>0|1",
                    n + 1
                )));
            }
            let (a, b) = (
                id_of(cols[0].trim(), &mut docs),
                id_of(cols[1].trim(), &mut docs),
            );
            if cols[2].trim() == "1" && a != b {
                for (x, y) in [(a, b), (b, a)] {
                    let p = partners.entry(x).or_default();
                    if p.is_empty() {
                        order.push(x);
                    }
                    if !p.contains(&y) {
                        p.push(y);
                    }
                }
            }
        }
        let queries = order
            .into_iter()
            .map(|q| EvalQuery {
                text: docs[q].title.clone(),
                relevant: partners[&q].iter().map(|&p| docs[p].id.clone()).collect(),
                exclude: Some(docs[q].id.clone()),
            })
            .collect();
        Ok(Self {
            name: "bq".into(),
            docs,
            queries,
        })
    }

    /// The FAQ-pairs JSON format (see the module docs).
    pub fn faq_pairs(name: &str, json: &str) -> Result<Self, EvalError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            faqs: Vec<Faq>,
            queries: Vec<Q>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Faq {
            id: String,
            question: String,
            answer: String,
            #[serde(default)]
            alternatives: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Q {
            text: String,
            relevant: Vec<String>,
        }
        let f: File = serde_json::from_str(json).map_err(|e| EvalError::Format(e.to_string()))?;
        let known: HashSet<&str> = f.faqs.iter().map(|d| d.id.as_str()).collect();
        for q in &f.queries {
            if let Some(bad) = q.relevant.iter().find(|r| !known.contains(r.as_str())) {
                return Err(EvalError::Format(format!(
                    "query {:?} names unknown entry {bad:?}",
                    q.text
                )));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            queries: f
                .queries
                .into_iter()
                .map(|q| EvalQuery {
                    text: q.text,
                    relevant: q.relevant,
                    exclude: None,
                })
                .collect(),
            docs: f
                .faqs
                .into_iter()
                .map(|d| EvalDoc {
                    id: d.id,
                    title: d.question,
                    body: d.answer,
                    alternatives: d.alternatives,
                })
                .collect(),
        })
    }

    /// The same corpus with only the queries of `split`, at most `limit` of them (file order).
    pub fn select(&self, split: Split, limit: Option<usize>) -> Dataset {
        let queries = self
            .queries
            .iter()
            .filter(|q| split.contains(&q.text))
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Dataset {
            name: self.name.clone(),
            docs: self.docs.clone(),
            queries,
        }
    }
}

/// Mean metrics over queries, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub queries: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr_at_10: f64,
    pub ndcg_at_10: f64,
}

/// Adds one query's ranking (ids, best first) to running sums; call [`Metrics::finish`] at the end.
fn accumulate(m: &mut Metrics, ranked: &[&str], relevant: &[String]) {
    let rel: HashSet<&str> = relevant.iter().map(String::as_str).collect();
    if rel.is_empty() {
        return;
    }
    let hits_at = |k: usize| {
        ranked.iter().take(k).filter(|id| rel.contains(*id)).count() as f64 / rel.len() as f64
    };
    m.queries += 1;
    m.recall_at_1 += hits_at(1);
    m.recall_at_5 += hits_at(5);
    m.recall_at_10 += hits_at(10);
    if let Some(pos) = ranked.iter().take(10).position(|id| rel.contains(id)) {
        m.mrr_at_10 += 1.0 / (pos as f64 + 1.0);
    }
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, id)| rel.contains(*id))
        .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..rel.len().min(10))
        .map(|i| 1.0 / (i as f64 + 2.0).log2())
        .sum();
    m.ndcg_at_10 += dcg / ideal;
}

impl Metrics {
    fn finish(mut self) -> Self {
        let n = self.queries.max(1) as f64 / 100.0;
        self.recall_at_1 /= n;
        self.recall_at_5 /= n;
        self.recall_at_10 /= n;
        self.mrr_at_10 /= n;
        self.ndcg_at_10 /= n;
        self
    }

    /// Metrics of rankings (one per query, ids best first).
    pub fn of(rankings: &[Vec<String>], queries: &[EvalQuery]) -> Self {
        let mut m = Metrics::default();
        for (r, q) in rankings.iter().zip(queries) {
            let ids: Vec<&str> = r
                .iter()
                .map(String::as_str)
                .filter(|id| Some(*id) != q.exclude.as_deref())
                .collect();
            accumulate(&mut m, &ids, &q.relevant);
        }
        m.finish()
    }
}

/// How FAQ entries are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocVectors {
    /// Besides the question+answer vector, one vector per question and alternative (best vector wins).
    pub question_vectors: bool,
    /// Embed questions (FAQ questions, alternatives, question-only entries) as queries, not passages, as e5 suggests
    /// for symmetric tasks. Measured and not adopted (mixed: better on BQ, worse on StackFAQ; bench/RESULTS.md).
    pub questions_as_queries: bool,
}

/// A dataset loaded into an index, with its query vectors: evaluate many rankings without re-embedding.
pub struct Prepared {
    index: SearchIndex,
    entries: Vec<Entry>,
    ids: HashMap<Uuid, String>,
    query_vectors: Vec<Option<Vec<f32>>>,
    tenant: Uuid,
}

const EMBED_BATCH: usize = 32;

async fn embed_all(
    embedder: &dyn Embedder,
    kind: EmbedKind,
    texts: Vec<String>,
) -> Result<Vec<Vec<f32>>, EvalError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        out.extend(embedder.embed(kind, batch).await?);
    }
    Ok(out)
}

impl Prepared {
    pub async fn new(
        ds: &Dataset,
        embedder: Option<&dyn Embedder>,
        settings: IndexSettings,
        vectors: DocVectors,
    ) -> Result<Self, EvalError> {
        let tenant = Uuid::nil();
        let dim = embedder.map_or(0, |e| e.dim());
        let index = SearchIndex::new(settings, dim)?;
        let mut ids = HashMap::new();
        let mut doc_vectors: Vec<Vec<Vec<f32>>> = vec![Vec::new(); ds.docs.len()];
        if let Some(e) = embedder {
            let main: Vec<String> = ds
                .docs
                .iter()
                .map(|d| {
                    if d.body.is_empty() {
                        d.title.clone()
                    } else {
                        format!("{}\n{}", d.title, d.body)
                    }
                })
                .collect();
            let question_kind = if vectors.questions_as_queries {
                EmbedKind::Query
            } else {
                EmbedKind::Passage
            };
            for kind in [EmbedKind::Passage, EmbedKind::Query] {
                let of_kind: Vec<usize> = (0..ds.docs.len())
                    .filter(|&i| {
                        (if ds.docs[i].body.is_empty() {
                            question_kind
                        } else {
                            EmbedKind::Passage
                        }) == kind
                    })
                    .collect();
                if of_kind.is_empty() {
                    continue;
                }
                let texts: Vec<String> = of_kind.iter().map(|&i| main[i].clone()).collect();
                for (i, v) in of_kind.into_iter().zip(embed_all(e, kind, texts).await?) {
                    doc_vectors[i].push(v);
                }
            }
            if vectors.question_vectors {
                let mut owners = Vec::new();
                let mut texts = Vec::new();
                for (i, d) in ds.docs.iter().enumerate() {
                    for q in std::iter::once(&d.title)
                        .filter(|_| !d.body.is_empty())
                        .chain(&d.alternatives)
                    {
                        owners.push(i);
                        texts.push(q.clone());
                    }
                }
                for (owner, v) in owners
                    .into_iter()
                    .zip(embed_all(e, question_kind, texts).await?)
                {
                    doc_vectors[owner].push(v);
                }
            }
        }
        let entries: Vec<Entry> = ds
            .docs
            .iter()
            .zip(doc_vectors)
            .enumerate()
            .map(|(i, (d, v))| {
                let id = Uuid::from_u128(i as u128 + 1);
                ids.insert(id, d.id.clone());
                let mut title = d.title.clone();
                for a in &d.alternatives {
                    title.push('\n');
                    title.push_str(a);
                }
                Entry {
                    chunk_id: id,
                    document_id: id,
                    tenant_id: tenant,
                    collection: "default".into(),
                    lang: crate::text::detect_lang(&d.title).into(),
                    tags: Vec::new(),
                    title,
                    body: d.body.clone(),
                    vectors: v,
                }
            })
            .collect();
        index.add(&entries)?;
        index.commit()?;
        let query_vectors = match embedder {
            Some(e) => embed_all(
                e,
                EmbedKind::Query,
                ds.queries.iter().map(|q| q.text.clone()).collect(),
            )
            .await?
            .into_iter()
            .map(Some)
            .collect(),
            None => vec![None; ds.queries.len()],
        };
        Ok(Self {
            index,
            entries,
            ids,
            query_vectors,
            tenant,
        })
    }

    /// The same entries and vectors in an index with other settings (e.g. another Chinese tokenisation).
    pub fn with_settings(&self, settings: IndexSettings) -> Result<Self, EvalError> {
        let index = SearchIndex::new(settings, self.index.dim())?;
        index.add(&self.entries)?;
        index.commit()?;
        Ok(Self {
            index,
            entries: self.entries.clone(),
            ids: self.ids.clone(),
            query_vectors: self.query_vectors.clone(),
            tenant: self.tenant,
        })
    }

    /// Rankings (top 11, so a query can lose its own entry and still have ten) for every query.
    pub fn rank(
        &self,
        ds: &Dataset,
        fusion: Fusion,
        candidates: usize,
    ) -> Result<Vec<Vec<String>>, EvalError> {
        let params = SearchParams {
            k: 11,
            candidates,
            fusion,
            min_dense: None,
            min_dense_latin: None,
        };
        let filter = Filter::tenant(self.tenant);
        ds.queries
            .iter()
            .zip(&self.query_vectors)
            .map(|(q, v)| {
                let r = self.index.search(&q.text, v.as_deref(), &filter, &params)?;
                Ok(r.hits.iter().map(|h| self.ids[&h.chunk].clone()).collect())
            })
            .collect()
    }

    pub fn evaluate(
        &self,
        ds: &Dataset,
        fusion: Fusion,
        candidates: usize,
    ) -> Result<Metrics, EvalError> {
        Ok(Metrics::of(
            &self.rank(ds, fusion, candidates)?,
            &ds.queries,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let q = |rel: &[&str]| EvalQuery {
            text: "q".into(),
            relevant: rel.iter().map(|s| s.to_string()).collect(),
            exclude: None,
        };
        let ranked = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // First query: relevant at rank 2. Second: both relevant at ranks 1 and 3.
        let m = Metrics::of(
            &[ranked(&["x", "a"]), ranked(&["b", "y", "c"])],
            &[q(&["a"]), q(&["b", "c"])],
        );
        assert_eq!(m.queries, 2);
        assert!((m.recall_at_1 - 25.0).abs() < 1e-9); // (0 + 1/2) / 2
        assert!((m.recall_at_5 - 100.0).abs() < 1e-9);
        assert!((m.mrr_at_10 - 75.0).abs() < 1e-9); // (1/2 + 1) / 2
        let ndcg1 = (1.0 / 3f64.log2()) / 1.0;
        let ndcg2 = (1.0 + 1.0 / 2.0) / (1.0 + 1.0 / 3f64.log2());
        assert!((m.ndcg_at_10 - 50.0 * (ndcg1 + ndcg2)).abs() < 1e-9);
    }

    #[test]
    fn bq_pairs_become_duplicate_retrieval_and_the_query_is_excluded() {
        let ds = Dataset::bq("a\tb\t1\na\tc\t0\nc\td\t1\nb\ta\t1\n").unwrap();
        assert_eq!(ds.docs.len(), 4);
        assert_eq!(ds.queries.len(), 4);
        assert_eq!(ds.queries[0].text, "a");
        assert_eq!(ds.queries[0].relevant, vec!["bq1".to_string()]);
        assert_eq!(ds.queries[0].exclude.as_deref(), Some("bq0"));
        let m = Metrics::of(&[vec!["bq0".into(), "bq1".into()]], &ds.queries[..1]);
        assert_eq!(m.recall_at_1, 100.0, "the query's own entry does not count");
        assert!(
            Dataset::bq("a\tb\n").is_ok(),
            "a header-like first line is skipped"
        );
        assert!(Dataset::bq("a\tb\t1\nbroken\n").is_err());
    }

    #[test]
    fn splits_partition_the_queries() {
        let texts: Vec<String> = (0..200).map(|i| format!("query {i}")).collect();
        let dev = texts.iter().filter(|t| Split::Dev.contains(t)).count();
        let test = texts.iter().filter(|t| Split::Test.contains(t)).count();
        assert_eq!(dev + test, 200);
        assert!((70..130).contains(&dev), "{dev}");
    }
}
