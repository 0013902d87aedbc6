//! The derived search indexes of one node: BM25 (tantivy, in memory) and dense vectors, both scoped by tenant,
//! collection, language and tags, and the fusion of their rankings.
//!
//! The database is the source of truth; this index is rebuilt from it at start and kept current by applying the
//! knowledge change log (see `crate::service`). It holds ids, scopes, terms and vectors — not the chunk text, which
//! callers load from the store for the hits they return, so a chunk deleted a moment ago is never shown.

mod dense;
mod fusion;

pub use dense::dot;
pub use fusion::{fuse, Fused, Fusion, RankedScore};

use std::collections::HashMap;

use parking_lot::{Mutex, RwLock};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use crate::analysis::{self, CjkMode};

/// What the index needs to know about one chunk.
#[derive(Debug, Clone)]
pub struct Entry {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub tenant_id: Uuid,
    pub collection: String,
    pub lang: String,
    pub tags: Vec<String>,
    /// Short, high-signal text: document title, heading path, FAQ question and its alternatives.
    pub title: String,
    /// The chunk text (an FAQ entry's answer).
    pub body: String,
    /// Unit vectors from the index's embedder: one for the chunk, plus one per FAQ question/alternative.
    pub vectors: Vec<Vec<f32>>,
}

/// Where to search. Empty `collections` or `tags` means all; a chunk matches `tags` when it has any of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub tenant: Uuid,
    pub collections: Vec<String>,
    pub lang: Option<String>,
    pub tags: Vec<String>,
}

impl Filter {
    pub fn tenant(tenant: Uuid) -> Self {
        Self {
            tenant,
            collections: Vec::new(),
            lang: None,
            tags: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("vector of dimension {got} given to an index of dimension {want}")]
    Dimension { got: usize, want: usize },
}

/// String ↔ small integer, so every dense slot carries its scope in a few words.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(s.to_owned()).or_insert(next)
    }
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

struct Fields {
    chunk: Field,
    document: Field,
    tenant: Field,
    collection: Field,
    lang: Field,
    tag: Field,
    title: Field,
    body: Field,
}

/// Settings that change what the index contains (a change means a rebuild).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexSettings {
    pub cjk: CjkMode,
    /// Weight of a title-field match relative to a body match in BM25.
    pub title_boost: f32,
}

impl Default for IndexSettings {
    fn default() -> Self {
        // Chosen by `kefu eval retrieval` (bench/RESULTS.md): single characters beat jieba words, and words plus
        // characters, for BM25 on the BQ dev split and for the default hybrid ranking on the shop FAQ set.
        Self {
            cjk: CjkMode::Chars,
            title_boost: 1.0,
        }
    }
}

pub struct SearchIndex {
    settings: IndexSettings,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    analyzer: Mutex<TextAnalyzer>,
    dense: RwLock<(dense::Dense, Interner)>,
    pending: Mutex<usize>,
}

impl SearchIndex {
    /// An empty index for vectors of `dim` dimensions (0 = no dense index: BM25 only).
    pub fn new(settings: IndexSettings, dim: usize) -> Result<Self, IndexError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analysis::ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = Fields {
            chunk: schema.add_text_field("chunk", STRING | STORED),
            document: schema.add_text_field("document", STRING | STORED),
            tenant: schema.add_text_field("tenant", STRING),
            collection: schema.add_text_field("collection", STRING),
            lang: schema.add_text_field("lang", STRING),
            tag: schema.add_text_field("tag", STRING),
            title: schema.add_text_field("title", text.clone()),
            body: schema.add_text_field("body", text),
        };
        let index = Index::create_in_ram(schema.build());
        index
            .tokenizers()
            .register(analysis::ANALYZER, analysis::analyzer(settings.cjk));
        // One indexing thread: imports are rare and small next to serving searches on two cores.
        let writer = index.writer_with_num_threads(1, 30_000_000)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            settings,
            fields,
            analyzer: Mutex::new(analysis::analyzer(settings.cjk)),
            writer: Mutex::new(writer),
            reader,
            dense: RwLock::new((dense::Dense::new(dim), Interner::default())),
            pending: Mutex::new(0),
        })
    }

    pub fn settings(&self) -> IndexSettings {
        self.settings
    }

    /// Dimension of the dense vectors (0 = none).
    pub fn dim(&self) -> usize {
        self.dense.read().0.dim()
    }

    /// Adds chunks. Visible to searches after [`commit`](Self::commit).
    pub fn add(&self, entries: &[Entry]) -> Result<(), IndexError> {
        let dim = self.dim();
        // Without a dense index (dim 0) vectors are ignored; with one, every vector must fit it.
        let misfit = entries
            .iter()
            .flat_map(|e| &e.vectors)
            .find(|v| dim > 0 && v.len() != dim);
        if let Some(v) = misfit {
            return Err(IndexError::Dimension {
                got: v.len(),
                want: dim,
            });
        }
        let writer = self.writer.lock();
        let f = &self.fields;
        for e in entries {
            let mut doc = TantivyDocument::default();
            doc.add_text(f.chunk, e.chunk_id.to_string());
            doc.add_text(f.document, e.document_id.to_string());
            doc.add_text(f.tenant, e.tenant_id.to_string());
            doc.add_text(f.collection, &e.collection);
            doc.add_text(f.lang, &e.lang);
            for t in &e.tags {
                doc.add_text(f.tag, t);
            }
            doc.add_text(f.title, &e.title);
            doc.add_text(f.body, &e.body);
            writer.add_document(doc)?;
        }
        drop(writer);
        if dim > 0 {
            let mut guard = self.dense.write();
            let (dense, interner) = &mut *guard;
            for e in entries {
                dense.insert(e, interner);
            }
        }
        *self.pending.lock() += entries.len();
        Ok(())
    }

    /// Removes every chunk of the documents. Visible after [`commit`](Self::commit) for BM25, at once for dense.
    pub fn delete_documents(&self, documents: &[Uuid]) {
        let writer = self.writer.lock();
        for d in documents {
            writer.delete_term(Term::from_field_text(self.fields.document, &d.to_string()));
        }
        drop(writer);
        let mut guard = self.dense.write();
        for d in documents {
            guard.0.delete_document(*d);
        }
        *self.pending.lock() += documents.len();
    }

    /// Makes added and deleted chunks visible to BM25 searches.
    pub fn commit(&self) -> Result<(), IndexError> {
        let mut pending = self.pending.lock();
        if *pending == 0 {
            return Ok(());
        }
        self.writer.lock().commit()?;
        self.reader.reload()?;
        *pending = 0;
        Ok(())
    }

    /// Chunks in the BM25 index (committed).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live dense vectors.
    pub fn vectors(&self) -> usize {
        self.dense.read().0.len()
    }

    /// Approximate bytes held by the dense index (the BM25 index reports its own segments separately).
    pub fn dense_memory_bytes(&self) -> usize {
        self.dense.read().0.memory_bytes()
    }

    /// Query terms as the index sees them.
    pub fn terms(&self, query: &str) -> Vec<String> {
        analysis::terms(&mut self.analyzer.lock(), query)
    }

    /// BM25 over title and body within the filter: the best `n` chunks, best first.
    pub fn bm25(
        &self,
        query: &str,
        filter: &Filter,
        n: usize,
    ) -> Result<Vec<(Uuid, Uuid, f32)>, IndexError> {
        let terms = self.terms(query);
        if terms.is_empty() || n == 0 {
            return Ok(Vec::new());
        }
        let f = &self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len() * 2);
        for t in &terms {
            should.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.title, t),
                        IndexRecordOption::WithFreqs,
                    )),
                    self.settings.title_boost,
                )),
            ));
            should.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.body, t),
                    IndexRecordOption::WithFreqs,
                )),
            ));
        }
        let mut must: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        let filter_term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(ConstScoreQuery::new(
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )),
                0.0,
            ))
        };
        must.push((
            Occur::Must,
            filter_term(f.tenant, &filter.tenant.to_string()),
        ));
        let any_of = |field: Field, values: &[String]| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                values
                    .iter()
                    .map(|v| (Occur::Should, filter_term(field, v)))
                    .collect(),
            ))
        };
        if !filter.collections.is_empty() {
            must.push((Occur::Must, any_of(f.collection, &filter.collections)));
        }
        if let Some(lang) = &filter.lang {
            must.push((Occur::Must, filter_term(f.lang, lang)));
        }
        if !filter.tags.is_empty() {
            must.push((Occur::Must, any_of(f.tag, &filter.tags)));
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(
            &BooleanQuery::new(must),
            &TopDocs::with_limit(n).order_by_score(),
        )?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let id = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .and_then(|s| Uuid::parse_str(s).ok())
            };
            if let (Some(chunk), Some(document)) = (id(f.chunk), id(f.document)) {
                out.push((chunk, document, score));
            }
        }
        Ok(out)
    }

    /// Dense search within the filter: the best `n` chunks by cosine, best first.
    pub fn dense(&self, query: &[f32], filter: &Filter, n: usize) -> Vec<(Uuid, Uuid, f32)> {
        let guard = self.dense.read();
        guard.0.search(query, filter, &guard.1, n)
    }

    /// Exact cosine of given chunks (by `(document, chunk)`), for candidates found only by BM25.
    pub fn dense_scores(&self, query: &[f32], chunks: &[(Uuid, Uuid)]) -> HashMap<Uuid, f32> {
        self.dense.read().0.scores_of(query, chunks)
    }
}
