//! The knowledge service: ingestion into the store, the node's derived index kept current from the change log,
//! and hybrid search with citations.
//!
//! Write path: parse → chunk → embed (reusing the previous version's vectors for unchanged chunks) → one store
//! transaction that replaces the document's chunks and appends a change. Nothing reaches the index before that
//! transaction commits, so a failed import leaves nothing half-searchable.
//!
//! Read path: every node holds its own in-memory index, built from the store at start and kept current by applying
//! the change log after its cursor (polled, and applied at once after a local write). Applying a change re-reads
//! the document's current chunks, so changes are idempotent and a burst of changes to one document costs one read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kefu_llm::{EmbedKind, Embedder, LayerVectors, LlmError};
use kefu_store::{
    KbChunk, KbDocument, KbJob, KbJobStatus, NewKbChunk, NewKbDocument, Store, StoreError,
    StoredVectors,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::chunk::{self, ChunkDraft, ChunkOptions};
use crate::index::{Entry, Filter, IndexError, IndexSettings, RankedScore, SearchIndex};
use crate::parse::{self, FaqEntry, Format, Location, ParseError, Parsed};
use crate::SearchParams;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("embedding failed: {0}")]
    Embed(#[from] LlmError),
    #[error(transparent)]
    File(#[from] ParseError),
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl KnowledgeError {
    /// Stable code for reports and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            KnowledgeError::Store(_) => "storage_error",
            KnowledgeError::Index(_) => "index_error",
            KnowledgeError::Embed(_) => "embedding_failed",
            KnowledgeError::File(e) => e.code(),
            KnowledgeError::Invalid(_) => "invalid_request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeOptions {
    pub chunk: ChunkOptions,
    pub search: SearchParams,
    /// Files over this size are refused.
    pub max_file_bytes: u64,
    /// How often a node checks the change log for writes made by other nodes or the CLI.
    pub poll_interval_ms: u64,
    /// Embed each FAQ question and alternative on its own too (a paraphrase of the question then matches it
    /// directly rather than through the answer text).
    pub faq_question_vectors: bool,
}

impl Default for KnowledgeOptions {
    fn default() -> Self {
        Self {
            chunk: ChunkOptions::default(),
            search: SearchParams::default(),
            max_file_bytes: 20 * 1024 * 1024,
            poll_interval_ms: 2000,
            faq_question_vectors: true,
        }
    }
}

/// A file to import.
#[derive(Debug, Clone)]
pub struct ImportFile {
    /// Name or path, unique within the collection: importing it again replaces the document.
    pub source: String,
    pub bytes: Vec<u8>,
    /// Taken from the source's extension when not given.
    pub format: Option<Format>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportTarget {
    pub tenant: Uuid,
    pub collection: String,
    pub tags: Vec<String>,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    pub source: String,
    /// `imported`, `unchanged` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<Uuid>,
    pub chunks: usize,
    /// Chunks whose vectors were reused from the previous version.
    pub reused_vectors: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FileError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileError {
    pub code: String,
    pub message: String,
}

/// One search result with its source and how it scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub collection: String,
    pub text: String,
    pub headings: Vec<String>,
    pub lang: String,
    pub tags: Vec<String>,
    pub scores: Scores,
    pub citation: Citation,
    /// Set for FAQ entries: the curated answer, to be returned verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faq: Option<FaqEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub bm25: Option<RankedScore>,
    pub dense: Option<RankedScore>,
    /// The value results are ordered by.
    pub fused: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Citation {
    pub document_id: Uuid,
    pub title: String,
    pub source: String,
    pub location: Location,
    /// For people: `退货政策 › 退款时间 (lines 7–8)`.
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// `hybrid` or `bm25` (no embedder, or it failed for this query).
    pub mode: String,
    /// Nothing passed the relevance threshold; these are keyword matches.
    pub keyword_fallback: bool,
    pub took_ms: f64,
    /// The query's embedding, when there was one (the answer cache compares questions with it).
    #[serde(skip)]
    pub query_vector: Option<Vec<f32>>,
}

/// Where and how to search.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    pub collections: Vec<String>,
    pub lang: Option<String>,
    pub tags: Vec<String>,
    pub k: Option<usize>,
    /// The query's vector from this service's embedder, when the caller already has it
    /// ([`Knowledge::embed_query`]); otherwise the query is embedded here.
    #[serde(skip)]
    pub vector: Option<Vec<f32>>,
}

/// An optional second stage that reorders the fused candidates (e.g. a cross-encoder).
#[async_trait]
pub trait Reranker: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// One score per hit, higher is better.
    async fn score(&self, query: &str, hits: &[SearchHit]) -> Result<Vec<f32>, KnowledgeError>;
}

pub struct Knowledge {
    store: Arc<dyn Store>,
    embedder: Option<Arc<dyn Embedder>>,
    reranker: Option<Arc<dyn Reranker>>,
    opts: KnowledgeOptions,
    index: RwLock<Arc<SearchIndex>>,
    /// Last change-log `seq` applied to `index`.
    cursor: AtomicI64,
    /// Serialises appliers (the follower, local writes, rebuilds).
    apply: tokio::sync::Mutex<()>,
    /// Whether this instance keeps an index (a server) or only writes (the CLI importer).
    live: AtomicBool,
}

const CHANGE_PAGE: u32 = 500;

impl Knowledge {
    pub fn new(
        store: Arc<dyn Store>,
        embedder: Option<Arc<dyn Embedder>>,
        opts: KnowledgeOptions,
    ) -> Result<Self, KnowledgeError> {
        let dim = embedder.as_ref().map_or(0, |e| e.dim());
        Ok(Self {
            store,
            embedder,
            reranker: None,
            opts,
            index: RwLock::new(Arc::new(SearchIndex::new(IndexSettings::default(), dim)?)),
            cursor: AtomicI64::new(0),
            apply: tokio::sync::Mutex::new(()),
            live: AtomicBool::new(false),
        })
    }

    pub fn with_reranker(mut self, reranker: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(reranker);
        self
    }

    pub fn options(&self) -> &KnowledgeOptions {
        &self.opts
    }

    pub fn embedder_id(&self) -> Option<&str> {
        self.embedder.as_ref().map(|e| e.id())
    }

    /// The embedder's id when its query vectors are also the intent classifier's input for an encoder of that id
    /// ([`Embedder::query_is_classifier_input`]), so a turn may share one pass between search and intent.
    pub fn query_shared_with_classifier(&self) -> Option<&str> {
        self.embedder
            .as_ref()
            .filter(|e| e.query_is_classifier_input())
            .map(|e| e.id())
    }

    /// Chunks and vectors in this node's index, and the change-log position it reflects.
    pub fn stats(&self) -> IndexStats {
        let index = self.index.read().clone();
        IndexStats {
            chunks: index.len(),
            vectors: index.vectors() as u64,
            cursor: self.cursor.load(Ordering::Acquire),
            embedder: self.embedder_id().map(str::to_owned),
        }
    }

    /// Builds this node's index from the store and starts following the change log until `shutdown`.
    pub async fn start(
        self: &Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<(), KnowledgeError> {
        self.rebuild().await?;
        self.live.store(true, Ordering::Release);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let every = Duration::from_millis(me.opts.poll_interval_ms.max(50));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = me.catch_up().await {
                    tracing::warn!(error = %e, "knowledge index: applying the change log failed; retrying");
                }
            }
        });
        Ok(())
    }

    /// Replaces the index with one built from everything in the store.
    pub async fn rebuild(&self) -> Result<u64, KnowledgeError> {
        let _guard = self.apply.lock().await;
        let started = Instant::now();
        // Changes committed after `head` are applied again by the catch-up below: applying is idempotent.
        let head = self.store.kb_head().await?;
        let fresh = Arc::new(SearchIndex::new(
            self.index.read().settings(),
            self.index.read().dim(),
        )?);
        let mut after = None;
        let mut docs = 0u64;
        loop {
            let page = self.store.kb_document_ids(after, 200).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            for (doc, _) in &page {
                let entries = self.entries_of(*doc, fresh.dim()).await?;
                fresh.add(&entries)?;
                docs += 1;
            }
        }
        fresh.commit()?;
        *self.index.write() = fresh;
        self.cursor.store(head, Ordering::Release);
        drop(_guard);
        self.catch_up().await?;
        tracing::info!(
            documents = docs,
            chunks = self.stats().chunks,
            ms = started.elapsed().as_millis() as u64,
            "knowledge index built"
        );
        Ok(docs)
    }

    /// Applies every change after the cursor. Returns how many changes were applied.
    pub async fn catch_up(&self) -> Result<usize, KnowledgeError> {
        let _guard = self.apply.lock().await;
        let mut applied = 0;
        loop {
            let cursor = self.cursor.load(Ordering::Acquire);
            let changes = self.store.kb_changes_after(cursor, CHANGE_PAGE).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                break;
            };
            let index = self.index.read().clone();
            let mut seen = HashSet::new();
            let docs: Vec<Uuid> = changes
                .iter()
                .map(|c| c.document_id)
                .filter(|d| seen.insert(*d))
                .collect();
            index.delete_documents(&docs);
            for doc in &docs {
                index.add(&self.entries_of(*doc, index.dim()).await?)?;
            }
            index.commit()?;
            self.cursor.store(last, Ordering::Release);
            applied += changes.len();
            if changes.len() < CHANGE_PAGE as usize {
                break;
            }
        }
        Ok(applied)
    }

    /// The index entries of a document's current chunks (none when it was deleted).
    async fn entries_of(&self, doc: Uuid, dim: usize) -> Result<Vec<Entry>, KnowledgeError> {
        let rows = self
            .store
            .kb_document_chunks(doc, self.embedder_id())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(c, v)| entry(&c, v.as_deref(), dim))
            .collect())
    }

    /// Imports one file into a collection. Bad files are reported, never half-imported.
    pub async fn import(&self, target: &ImportTarget, file: ImportFile) -> FileReport {
        let source = file.source.clone();
        match self.import_inner(target, file).await {
            Ok(r) => r,
            Err(e) => FileReport {
                source,
                status: "failed".into(),
                document_id: None,
                chunks: 0,
                reused_vectors: 0,
                error: Some(FileError {
                    code: e.code().into(),
                    message: e.to_string(),
                }),
            },
        }
    }

    async fn import_inner(
        &self,
        target: &ImportTarget,
        file: ImportFile,
    ) -> Result<FileReport, KnowledgeError> {
        if target.collection.trim().is_empty() || target.collection.len() > 100 {
            return Err(KnowledgeError::Invalid(
                "collection must be 1–100 characters".into(),
            ));
        }
        let size = file.bytes.len() as u64;
        if size > self.opts.max_file_bytes {
            return Err(ParseError::TooLarge {
                size,
                limit: self.opts.max_file_bytes,
            }
            .into());
        }
        let format = match file.format.or_else(|| Format::from_name(&file.source)) {
            Some(f) => f,
            None => return Err(ParseError::Unsupported(file.source.clone()).into()),
        };
        let content_hash = hex::encode(Sha256::digest(&file.bytes));
        let previous = self
            .store
            .kb_find_document(target.tenant, &target.collection, &file.source)
            .await?;
        if let Some(p) = &previous {
            if p.content_hash == content_hash
                && p.tags == target.tags
                && p.format == format.as_str()
            {
                return Ok(FileReport {
                    source: file.source,
                    status: "unchanged".into(),
                    document_id: Some(p.id),
                    chunks: p.chunk_count as usize,
                    reused_vectors: 0,
                    error: None,
                });
            }
        }
        let chunk_opts = self.opts.chunk;
        let bytes = file.bytes;
        let (parsed, drafts) = tokio::task::spawn_blocking(
            move || -> Result<(Parsed, Vec<ChunkDraft>), ParseError> {
                let parsed = parse::parse(format, &bytes)?;
                let drafts = chunk::chunk(&parsed, chunk_opts);
                Ok((parsed, drafts))
            },
        )
        .await
        // A parser that panics has met a file it cannot read: that file is corrupt, the import goes on.
        .map_err(|_| ParseError::Corrupt("the file could not be parsed".into()))??;
        let title = match &parsed {
            Parsed::Passages { title: Some(t), .. } => t.clone(),
            _ => file_stem(&file.source),
        };
        let lang = majority_lang(&drafts);

        // Vectors: reuse the previous version's for identical input, embed the rest.
        let model = self.embedder_id().map(str::to_owned);
        let mut texts_per_chunk: Vec<Vec<String>> = Vec::with_capacity(drafts.len());
        for d in &drafts {
            texts_per_chunk.push(embed_texts(
                &title,
                &d.headings,
                &d.text,
                d.faq.as_ref(),
                self.opts.faq_question_vectors,
            ));
        }
        let mut vectors: Vec<Option<StoredVectors>> = vec![None; drafts.len()];
        let mut reused = 0;
        if let (Some(embedder), Some(model)) = (&self.embedder, &model) {
            let old: HashMap<String, Vec<u8>> = match &previous {
                Some(p) => self
                    .store
                    .kb_document_vectors(p.id, model)
                    .await?
                    .into_iter()
                    .map(|v| (v.text_hash, v.data))
                    .collect(),
                None => HashMap::new(),
            };
            let mut todo: Vec<(usize, String)> = Vec::new();
            for (i, texts) in texts_per_chunk.iter().enumerate() {
                let hash = text_hash(model, texts);
                match old.get(&hash) {
                    Some(data) => {
                        vectors[i] = Some(StoredVectors {
                            text_hash: hash,
                            data: data.clone(),
                        });
                        reused += 1;
                    }
                    None => todo.push((i, hash)),
                }
            }
            let flat: Vec<String> = todo
                .iter()
                .flat_map(|(i, _)| texts_per_chunk[*i].iter().cloned())
                .collect();
            let embedded = embed_passages(embedder.as_ref(), &flat).await?;
            let mut it = embedded.into_iter();
            for (i, hash) in todo {
                let data: Vec<u8> = it
                    .by_ref()
                    .take(texts_per_chunk[i].len())
                    .flat_map(|v| v.into_iter().flat_map(f32::to_le_bytes))
                    .collect();
                vectors[i] = Some(StoredVectors {
                    text_hash: hash,
                    data,
                });
            }
        }
        let chunks: Vec<NewKbChunk> = drafts
            .iter()
            .zip(vectors)
            .map(|(d, v)| {
                let mut tags = target.tags.clone();
                for t in d.faq.iter().flat_map(|f| &f.tags) {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                NewKbChunk {
                    headings: d.headings.clone(),
                    text: d.text.clone(),
                    location: serde_json::to_value(&d.location).unwrap_or_default(),
                    lang: d.lang.to_owned(),
                    tags,
                    tokens: d.tokens as i64,
                    content_hash: d.content_hash(),
                    faq: d
                        .faq
                        .as_ref()
                        .map(|f| serde_json::to_value(f).unwrap_or_default()),
                    vectors: v,
                }
            })
            .collect();
        let n = chunks.len();
        let doc = self
            .store
            .kb_put_document(
                NewKbDocument {
                    tenant_id: target.tenant,
                    collection: target.collection.clone(),
                    source: file.source.clone(),
                    title,
                    format: format.as_str().into(),
                    lang,
                    tags: target.tags.clone(),
                    content_hash,
                    bytes: size as i64,
                },
                chunks,
                model.as_deref(),
            )
            .await?;
        if self.live.load(Ordering::Acquire) {
            self.catch_up().await?;
        }
        Ok(FileReport {
            source: file.source,
            status: "imported".into(),
            document_id: Some(doc.id),
            chunks: n,
            reused_vectors: reused,
            error: None,
        })
    }

    /// Deletes a document everywhere: its chunks and vectors, and (through the change log) every node's index.
    pub async fn delete_document(&self, tenant: Uuid, id: Uuid) -> Result<bool, KnowledgeError> {
        let deleted = self.store.kb_delete_document(tenant, id).await?;
        if deleted && self.live.load(Ordering::Acquire) {
            self.catch_up().await?;
        }
        Ok(deleted)
    }

    /// Imports files one after another as a background job whose progress and per-file report are stored.
    pub async fn start_job(
        self: &Arc<Self>,
        target: ImportTarget,
        files: Vec<ImportFile>,
    ) -> Result<KbJob, KnowledgeError> {
        let job = self
            .store
            .kb_create_job(target.tenant, files.len() as i64)
            .await?;
        let me = Arc::clone(self);
        let id = job.id;
        tokio::spawn(async move {
            let mut reports = Vec::with_capacity(files.len());
            for (i, file) in files.into_iter().enumerate() {
                reports.push(me.import(&target, file).await);
                let report = serde_json::to_value(&reports).unwrap_or_default();
                if let Err(e) = me
                    .store
                    .kb_update_job(
                        target.tenant,
                        id,
                        KbJobStatus::Running,
                        i as i64 + 1,
                        &report,
                    )
                    .await
                {
                    tracing::warn!(job = %id, error = %e, "recording import progress failed");
                }
            }
            let report = serde_json::to_value(&reports).unwrap_or_default();
            let n = reports.len() as i64;
            if let Err(e) = me
                .store
                .kb_update_job(target.tenant, id, KbJobStatus::Done, n, &report)
                .await
            {
                tracing::warn!(job = %id, error = %e, "recording the end of an import failed");
            }
        });
        Ok(job)
    }

    /// Computes vectors the current embedder lacks (after a model change, or for chunks imported without one) and
    /// logs a change per document so every node re-reads them. Returns the number of chunks embedded.
    pub async fn reembed(
        &self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<usize, KnowledgeError> {
        let (Some(embedder), Some(model)) = (&self.embedder, self.embedder_id().map(str::to_owned))
        else {
            return Ok(0);
        };
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.kb_document_ids(after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            all.extend(page);
        }
        let mut embedded = 0;
        for (i, (doc, _)) in all.iter().enumerate() {
            let rows = self.store.kb_document_chunks(*doc, Some(&model)).await?;
            let mut updates = Vec::new();
            for (c, v) in &rows {
                let faq: Option<FaqEntry> =
                    c.faq.clone().and_then(|f| serde_json::from_value(f).ok());
                let texts = embed_texts(
                    &c.document_title,
                    &c.headings,
                    &c.text,
                    faq.as_ref(),
                    self.opts.faq_question_vectors,
                );
                let stale = match v {
                    Some(data) => data.len() != texts.len() * embedder.dim() * 4,
                    None => true,
                };
                if stale {
                    let vs = embed_passages(embedder.as_ref(), &texts).await?;
                    let data = vs
                        .into_iter()
                        .flat_map(|v| v.into_iter().flat_map(f32::to_le_bytes))
                        .collect();
                    updates.push((
                        c.id,
                        StoredVectors {
                            text_hash: text_hash(&model, &texts),
                            data,
                        },
                    ));
                }
            }
            embedded += updates.len();
            if !updates.is_empty() {
                match self.store.kb_put_vectors(*doc, &model, updates).await {
                    // Deleted while we embedded: nothing to update.
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            progress(i + 1, all.len());
        }
        if self.live.load(Ordering::Acquire) {
            self.catch_up().await?;
        }
        Ok(embedded)
    }

    /// The query vector [`Knowledge::search`] would compute for `query` (`None` without an embedder or when it
    /// fails, which is logged: search then falls back to keywords).
    pub async fn embed_query(&self, query: &str) -> Option<Vec<f32>> {
        let e = self.embedder.as_ref()?;
        let v = e.embed(EmbedKind::Query, &[query.trim().to_owned()]).await;
        logged(v.map(|mut v| v.pop()))
    }

    /// [`Self::embed_query`] and, from the same pass, the query's mean-pooled states after `layers` (for an intent
    /// classifier on `<embedder>@<layers>`). `None` when there is no embedder, it cannot pool layers, or it failed.
    pub async fn embed_query_layers(&self, query: &str, layers: &[usize]) -> Option<LayerVectors> {
        let e = self.embedder.as_ref()?;
        logged(
            e.embed_with_layers(EmbedKind::Query, query.trim(), layers)
                .await,
        )
    }

    /// Hybrid search within a tenant, with citations.
    pub async fn search(
        &self,
        tenant: Uuid,
        req: &SearchRequest,
    ) -> Result<SearchResults, KnowledgeError> {
        let started = Instant::now();
        let query = req.query.trim();
        if query.is_empty() {
            return Err(KnowledgeError::Invalid("the query is empty".into()));
        }
        if query.chars().count() > 2000 {
            return Err(KnowledgeError::Invalid(
                "the query is over 2000 characters".into(),
            ));
        }
        let mut params = self.opts.search;
        if let Some(k) = req.k {
            params.k = k.clamp(1, 50);
        }
        let want = params.k;
        if self.reranker.is_some() {
            params.k = (want * 3).min(params.candidates);
        }
        // A few extra so identical chunks from several documents can be collapsed and still fill k.
        params.k += 5;
        let vector = match &req.vector {
            Some(v) if self.embedder.as_ref().is_some_and(|e| e.dim() == v.len()) => {
                Some(v.clone())
            }
            _ => self.embed_query(query).await,
        };
        let filter = Filter {
            tenant,
            collections: req.collections.clone(),
            lang: req.lang.clone(),
            tags: req.tags.clone(),
        };
        let index = self.index.read().clone();
        // Tens of milliseconds of CPU on a large index: off the async workers.
        let (ranked, index) = {
            let (q, v) = (query.to_owned(), vector.clone());
            tokio::task::spawn_blocking(move || {
                let r = index.search(&q, v.as_deref(), &filter, &params);
                (r, index)
            })
            .await
            .map_err(|e| KnowledgeError::Invalid(format!("search stopped: {e}")))?
        };
        let ranked = ranked?;
        let mode = if vector.is_some() && index.dim() > 0 {
            "hybrid"
        } else {
            "bm25"
        };
        let ids: Vec<Uuid> = ranked.hits.iter().map(|h| h.chunk).collect();
        let rows: HashMap<Uuid, KbChunk> = self
            .store
            .kb_get_chunks(tenant, &ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut seen = HashSet::new();
        let mut hits: Vec<SearchHit> = Vec::with_capacity(want);
        for h in &ranked.hits {
            // A chunk deleted after the index last caught up is simply not shown.
            let Some(c) = rows.get(&h.chunk) else {
                continue;
            };
            if !seen.insert(c.content_hash.clone()) {
                continue;
            }
            hits.push(hit(c, h));
        }
        if let Some(r) = &self.reranker {
            let scores = r.score(query, &hits).await?;
            for (h, s) in hits.iter_mut().zip(scores) {
                h.scores.rerank = Some(s);
            }
            hits.sort_by(|a, b| {
                b.scores
                    .rerank
                    .unwrap_or(0.0)
                    .total_cmp(&a.scores.rerank.unwrap_or(0.0))
            });
        }
        hits.truncate(want);
        Ok(SearchResults {
            hits,
            mode: mode.into(),
            keyword_fallback: ranked.keyword_fallback,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            query_vector: vector,
        })
    }

    pub async fn list_documents(
        &self,
        tenant: Uuid,
        collection: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<KbDocument>, KnowledgeError> {
        Ok(self
            .store
            .kb_list_documents(tenant, collection, limit, offset)
            .await?)
    }
}

/// This node's index, for readiness and the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexStats {
    pub chunks: u64,
    pub vectors: u64,
    pub cursor: i64,
    pub embedder: Option<String>,
}

fn file_stem(source: &str) -> String {
    let name = source.rsplit(['/', '\\']).next().unwrap_or(source);
    name.rsplit_once('.')
        .map_or(name, |(stem, _)| stem)
        .to_owned()
}

fn majority_lang(drafts: &[ChunkDraft]) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for d in drafts {
        *counts.entry(d.lang).or_default() += d.tokens;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or("und", |(l, _)| l)
        .to_owned()
}

/// The texts embedded for a chunk: the chunk in context, then (FAQ) the question and each alternative alone.
pub fn embed_texts(
    title: &str,
    headings: &[String],
    text: &str,
    faq: Option<&FaqEntry>,
    question_vectors: bool,
) -> Vec<String> {
    let mut texts = vec![chunk::embed_text(
        Some(title).filter(|_| faq.is_none()),
        headings,
        text,
    )];
    if let (Some(f), true) = (faq, question_vectors) {
        texts.push(f.question.clone());
        texts.extend(f.alternatives.iter().cloned());
    }
    texts
}

fn text_hash(model: &str, texts: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    for t in texts {
        h.update([0u8]);
        h.update(t.as_bytes());
    }
    hex::encode(h.finalize())
}

const EMBED_BATCH: usize = 32;

async fn embed_passages(
    embedder: &dyn Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, KnowledgeError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        // The local embedder refuses work when its queue is full; an import waits its turn instead of failing.
        let mut delay = Duration::from_millis(50);
        loop {
            match embedder.embed(EmbedKind::Passage, batch).await {
                Ok(v) => {
                    out.extend(v);
                    break;
                }
                Err(LlmError::Busy) if delay < Duration::from_secs(30) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

fn decode_vectors(data: &[u8], dim: usize) -> Vec<Vec<f32>> {
    if dim == 0 || !data.len().is_multiple_of(dim * 4) {
        return Vec::new();
    }
    data.chunks_exact(dim * 4)
        .map(|v| {
            v.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

fn entry(c: &KbChunk, vectors: Option<&[u8]>, dim: usize) -> Entry {
    let faq: Option<FaqEntry> = c.faq.clone().and_then(|f| serde_json::from_value(f).ok());
    let mut title = c.document_title.clone();
    for h in &c.headings {
        title.push('\n');
        title.push_str(h);
    }
    let body = match &faq {
        Some(f) => {
            title.push('\n');
            title.push_str(&f.question);
            for a in &f.alternatives {
                title.push('\n');
                title.push_str(a);
            }
            f.answer.clone()
        }
        None => c.text.clone(),
    };
    Entry {
        chunk_id: c.id,
        document_id: c.document_id,
        tenant_id: c.tenant_id,
        collection: c.collection.clone(),
        lang: c.lang.clone(),
        tags: c.tags.clone(),
        title,
        body,
        vectors: vectors.map(|v| decode_vectors(v, dim)).unwrap_or_default(),
    }
}

fn hit(c: &KbChunk, h: &crate::Fused) -> SearchHit {
    let location: Location = serde_json::from_value(c.location.clone()).unwrap_or_default();
    let mut label = c.document_title.clone();
    for heading in &c.headings {
        if *heading != c.document_title {
            label.push_str(" › ");
            label.push_str(heading);
        }
    }
    let place = location.describe();
    if !place.is_empty() {
        label.push_str(&format!(" ({place})"));
    }
    SearchHit {
        chunk_id: c.id,
        document_id: c.document_id,
        collection: c.collection.clone(),
        text: c.text.clone(),
        headings: c.headings.clone(),
        lang: c.lang.clone(),
        tags: c.tags.clone(),
        scores: Scores {
            bm25: h.bm25,
            dense: h.dense,
            fused: h.fused,
            rerank: None,
        },
        citation: Citation {
            document_id: c.document_id,
            title: c.document_title.clone(),
            source: c.document_source.clone(),
            location,
            label,
        },
        faq: c.faq.clone().and_then(|f| serde_json::from_value(f).ok()),
    }
}

/// A query embedding's result, with a failure logged and turned into `None` (search then falls back to keywords).
fn logged<T>(result: Result<Option<T>, LlmError>) -> Option<T> {
    result
        .map_err(
            |err| tracing::warn!(error = %err, "query embedding failed; searching keywords only"),
        )
        .ok()
        .flatten()
}
