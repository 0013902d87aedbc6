//! Knowledge-base storage: documents, their chunks and embedding vectors, the change log every node's search
//! index follows, and import jobs. The store is the source of truth; search indexes are derived from it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct NewKbDocument {
    pub tenant_id: Uuid,
    pub collection: String,
    /// Where the document came from (file path or upload name); unique within a collection, so importing the same
    /// source again replaces the document.
    pub source: String,
    pub title: String,
    /// `markdown`, `html`, `pdf`, `text`, `faq_csv`, `faq_json`.
    pub format: String,
    pub lang: String,
    pub tags: Vec<String>,
    /// SHA-256 of the source bytes: an unchanged re-import is recognised and skipped.
    pub content_hash: String,
    pub bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KbDocument {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub collection: String,
    pub source: String,
    pub title: String,
    pub format: String,
    pub lang: String,
    pub tags: Vec<String>,
    pub content_hash: String,
    pub bytes: i64,
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chunk to store with its document. Vectors are little-endian f32, `n × dim` (the chunk's vector first, then
/// one per FAQ question and alternative), made by the model named in [`KnowledgeStore::kb_put_document`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewKbChunk {
    pub headings: Vec<String>,
    pub text: String,
    /// Citation location (lines, pages, row) as JSON.
    pub location: serde_json::Value,
    pub lang: String,
    pub tags: Vec<String>,
    pub tokens: i64,
    pub content_hash: String,
    /// For FAQ entries: `{question, alternatives, answer}`.
    pub faq: Option<serde_json::Value>,
    pub vectors: Option<StoredVectors>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredVectors {
    /// SHA-256 (hex) of exactly the texts that were embedded, so a re-import reuses vectors only for identical input.
    pub text_hash: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KbChunk {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub document_id: Uuid,
    pub collection: String,
    pub document_title: String,
    pub document_source: String,
    pub ord: i64,
    pub headings: Vec<String>,
    pub text: String,
    pub location: serde_json::Value,
    pub lang: String,
    pub tags: Vec<String>,
    pub tokens: i64,
    pub content_hash: String,
    pub faq: Option<serde_json::Value>,
}

/// One entry of the knowledge change log: "this document's chunks changed (or it is gone); re-read it".
#[derive(Debug, Clone, PartialEq)]
pub struct KbChange {
    /// Commit order: a node that applied everything up to `seq` has seen every earlier change.
    pub seq: i64,
    pub tenant_id: Uuid,
    pub document_id: Uuid,
    pub op: KbChangeOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbChangeOp {
    Upsert,
    Delete,
}

impl KbChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            KbChangeOp::Upsert => "upsert",
            KbChangeOp::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upsert" => Some(KbChangeOp::Upsert),
            "delete" => Some(KbChangeOp::Delete),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbJobStatus {
    Running,
    Done,
    Failed,
}

impl KbJobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KbJobStatus::Running => "running",
            KbJobStatus::Done => "done",
            KbJobStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(KbJobStatus::Running),
            "done" => Some(KbJobStatus::Done),
            "failed" => Some(KbJobStatus::Failed),
            _ => None,
        }
    }
}

/// A background import: how far it got and the per-file report so far (JSON array).
#[derive(Debug, Clone, PartialEq)]
pub struct KbJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub status: KbJobStatus,
    pub total: i64,
    pub done: i64,
    pub report: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait KnowledgeStore: Send + Sync + 'static {
    async fn kb_find_document(
        &self,
        tenant: Uuid,
        collection: &str,
        source: &str,
    ) -> Result<Option<KbDocument>>;
    async fn kb_get_document(&self, tenant: Uuid, id: Uuid) -> Result<Option<KbDocument>>;
    /// Newest first.
    async fn kb_list_documents(
        &self,
        tenant: Uuid,
        collection: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<KbDocument>>;
    /// Stored vectors of a document's chunks for `model`, by the hash of the texts they embed.
    async fn kb_document_vectors(&self, document: Uuid, model: &str) -> Result<Vec<StoredVectors>>;
    /// Creates the document, or replaces the chunks of the one with the same `(tenant, collection, source)`, and
    /// appends an `upsert` change — all in one transaction, so a search never sees half a document.
    async fn kb_put_document(
        &self,
        doc: NewKbDocument,
        chunks: Vec<NewKbChunk>,
        model: Option<&str>,
    ) -> Result<KbDocument>;
    /// Deletes the document with its chunks and vectors and appends a `delete` change. False when not found.
    async fn kb_delete_document(&self, tenant: Uuid, id: Uuid) -> Result<bool>;
    /// Chunks by id within the tenant (missing ids are skipped), with their document's title and source.
    async fn kb_get_chunks(&self, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<KbChunk>>;
    /// Every chunk of a document in order, with its vectors for `model` — for the index follower, which serves
    /// all tenants of a node.
    async fn kb_document_chunks(
        &self,
        document: Uuid,
        model: Option<&str>,
    ) -> Result<Vec<(KbChunk, Option<Vec<u8>>)>>;
    /// Document ids across tenants after `after` (id order), for full rebuilds in pages.
    async fn kb_document_ids(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<(Uuid, Uuid)>>;
    /// Sets vectors of a document's chunks for `model` (re-embedding with a new model) and appends an `upsert`
    /// change. Chunks no longer in the document are skipped; `NotFound` when the document is gone.
    async fn kb_put_vectors(
        &self,
        document: Uuid,
        model: &str,
        vectors: Vec<(Uuid, StoredVectors)>,
    ) -> Result<()>;
    /// Changes with `seq > after`, oldest first.
    async fn kb_changes_after(&self, after: i64, limit: u32) -> Result<Vec<KbChange>>;
    /// The latest change's `seq` (0 when none).
    async fn kb_head(&self) -> Result<i64>;

    async fn kb_create_job(&self, tenant: Uuid, total: i64) -> Result<KbJob>;
    async fn kb_update_job(
        &self,
        tenant: Uuid,
        id: Uuid,
        status: KbJobStatus,
        done: i64,
        report: &serde_json::Value,
    ) -> Result<()>;
    async fn kb_get_job(&self, tenant: Uuid, id: Uuid) -> Result<Option<KbJob>>;
}
