//! Knowledge base: import (one file at once, several as a background job), browse, delete, search, index status.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use utoipa::IntoParams;

use kefu_knowledge::parse::Format;
use kefu_knowledge::service::{FileReport, ImportFile, ImportTarget, SearchHit, SearchRequest};
use kefu_store::KbJob;
use kefu_types::{
    ErrorDetail, KbChunk, KbCitation, KbDocument, KbDocumentDetail, KbFileReport, KbImportJob,
    KbImportRequest, KbImportResponse, KbRankedScore, KbScores, KbSearchHit, KbSearchRequest,
    KbSearchResponse,
};

use crate::auth::{authorize, Action, Auth};
use crate::error::ApiError;
use crate::extract::{check_text, parse_id, ApiJson, ApiQuery};
use crate::AppState;

const MAX_FILES: usize = 1000;
const MAX_TAGS: usize = 20;

fn report(r: FileReport) -> KbFileReport {
    KbFileReport {
        source: r.source,
        status: r.status,
        document_id: r.document_id,
        chunks: r.chunks,
        reused_vectors: r.reused_vectors,
        error: r.error.map(|e| ErrorDetail {
            code: e.code,
            message: e.message,
        }),
    }
}

fn job(j: KbJob) -> KbImportJob {
    let files = serde_json::from_value::<Vec<FileReport>>(j.report).unwrap_or_default();
    KbImportJob {
        id: j.id,
        status: j.status.as_str().to_owned(),
        total: j.total,
        done: j.done,
        files: files.into_iter().map(report).collect(),
        created_at: j.created_at,
        updated_at: j.updated_at,
    }
}

fn document(d: kefu_store::KbDocument) -> KbDocument {
    KbDocument {
        id: d.id,
        collection: d.collection,
        source: d.source,
        title: d.title,
        format: d.format,
        lang: d.lang,
        tags: d.tags,
        bytes: d.bytes,
        chunk_count: d.chunk_count,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

fn ranked(r: kefu_knowledge::RankedScore) -> KbRankedScore {
    KbRankedScore {
        score: r.score,
        rank: r.rank,
    }
}

fn search_hit(h: SearchHit) -> KbSearchHit {
    KbSearchHit {
        chunk_id: h.chunk_id,
        document_id: h.document_id,
        collection: h.collection,
        text: h.text,
        headings: h.headings,
        lang: h.lang,
        tags: h.tags,
        scores: KbScores {
            bm25: h.scores.bm25.map(ranked),
            dense: h.scores.dense.map(ranked),
            fused: h.scores.fused,
            rerank: h.scores.rerank,
        },
        citation: KbCitation {
            document_id: h.citation.document_id,
            title: h.citation.title,
            source: h.citation.source,
            location: serde_json::to_value(&h.citation.location).unwrap_or_default(),
            label: h.citation.label,
        },
        faq: h.faq.and_then(|f| serde_json::to_value(f).ok()),
    }
}

/// Validates the whole request before anything is imported: a bad request changes nothing.
fn files_of(req: &KbImportRequest) -> Result<(String, Vec<ImportFile>), ApiError> {
    let collection = req.collection.clone().unwrap_or_else(|| "default".into());
    check_text("collection", &collection, 100)?;
    if collection.trim().is_empty() {
        return Err(ApiError::InvalidRequest(
            "`collection` must not be empty".into(),
        ));
    }
    if req.tags.len() > MAX_TAGS {
        return Err(ApiError::InvalidRequest(format!("at most {MAX_TAGS} tags")));
    }
    for t in &req.tags {
        check_text("tags", t, 50)?;
    }
    if req.files.is_empty() || req.files.len() > MAX_FILES {
        return Err(ApiError::InvalidRequest(format!(
            "send 1 to {MAX_FILES} files"
        )));
    }
    let mut out = Vec::with_capacity(req.files.len());
    for (i, f) in req.files.iter().enumerate() {
        check_text("source", &f.source, 500)?;
        if f.source.trim().is_empty() {
            return Err(ApiError::InvalidRequest(format!(
                "files[{i}].source must not be empty"
            )));
        }
        let bytes = match (&f.content, &f.content_base64) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| ApiError::InvalidRequest(format!("files[{i}].content_base64: {e}")))?,
            _ => {
                return Err(ApiError::InvalidRequest(format!(
                    "files[{i}]: send exactly one of `content` and `content_base64`"
                )))
            }
        };
        let format = match &f.format {
            Some(name) => Some(Format::parse(name).ok_or_else(|| {
                ApiError::InvalidRequest(format!(
                    "files[{i}].format must be markdown, html, pdf, text, faq_csv or faq_json"
                ))
            })?),
            None => None,
        };
        out.push(ImportFile {
            source: f.source.clone(),
            bytes,
            format,
        });
    }
    Ok((collection, out))
}

/// Import files. One file is imported before the response (its report says whether it was imported); several
/// run as a background job whose progress is at `GET /v1/admin/kb/imports/{id}`.
#[utoipa::path(post, path = "/v1/admin/kb/imports", tag = "knowledge", security(("bearer" = [])),
    request_body = KbImportRequest,
    responses((status = 200, body = KbImportResponse, description = "one file, imported or rejected (see its report)"),
        (status = 202, body = KbImportResponse, description = "several files: a background job"),
        (status = 403, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn import_files(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<KbImportRequest>,
) -> Result<(StatusCode, Json<KbImportResponse>), ApiError> {
    authorize(&p, Action::ManageKnowledge)?;
    let (collection, mut files) = files_of(&req)?;
    let target = ImportTarget {
        tenant: p.tenant(),
        collection,
        tags: req.tags,
    };
    if files.len() == 1 {
        let r = s.knowledge.import(&target, files.remove(0)).await;
        return Ok((
            StatusCode::OK,
            Json(KbImportResponse {
                files: vec![report(r)],
                job: None,
            }),
        ));
    }
    let j = s.knowledge.start_job(target, files).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(KbImportResponse {
            files: Vec::new(),
            job: Some(job(j)),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/admin/kb/imports/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = KbImportJob), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_import(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<KbImportJob>, ApiError> {
    authorize(&p, Action::ManageKnowledge)?;
    let id = parse_id(&id, ApiError::NotFound("import"))?;
    let j = s
        .store
        .kb_get_job(p.tenant(), id)
        .await?
        .ok_or(ApiError::NotFound("import"))?;
    Ok(Json(job(j)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentQuery {
    collection: Option<String>,
    /// 1–500, default 100.
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/v1/admin/kb/documents", tag = "knowledge", security(("bearer" = [])),
    params(DocumentQuery),
    responses((status = 200, body = Vec<KbDocument>), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_documents(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<DocumentQuery>,
) -> Result<Json<Vec<KbDocument>>, ApiError> {
    authorize(&p, Action::SearchKnowledge)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let docs = s
        .knowledge
        .list_documents(
            p.tenant(),
            q.collection.as_deref(),
            limit,
            q.offset.unwrap_or(0),
        )
        .await?;
    Ok(Json(docs.into_iter().map(document).collect()))
}

#[utoipa::path(get, path = "/v1/admin/kb/documents/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = KbDocumentDetail), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<KbDocumentDetail>, ApiError> {
    authorize(&p, Action::SearchKnowledge)?;
    let id = parse_id(&id, ApiError::NotFound("document"))?;
    let d = s
        .store
        .kb_get_document(p.tenant(), id)
        .await?
        .ok_or(ApiError::NotFound("document"))?;
    let chunks = s
        .store
        .kb_document_chunks(d.id, None)
        .await?
        .into_iter()
        .map(|(c, _)| KbChunk {
            id: c.id,
            ord: c.ord,
            headings: c.headings,
            text: c.text,
            location: c.location,
            lang: c.lang,
            tags: c.tags,
            tokens: c.tokens,
            faq: c.faq,
        })
        .collect();
    Ok(Json(KbDocumentDetail {
        document: document(d),
        chunks,
    }))
}

/// Delete a document: its chunks leave every node's index.
#[utoipa::path(delete, path = "/v1/admin/kb/documents/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn delete_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&p, Action::ManageKnowledge)?;
    let id = parse_id(&id, ApiError::NotFound("document"))?;
    if s.knowledge.delete_document(p.tenant(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("document"))
    }
}

/// Hybrid search (BM25 + dense, fused) with citations and the score breakdown of every hit.
#[utoipa::path(post, path = "/v1/admin/kb/search", tag = "knowledge", security(("bearer" = [])),
    request_body = KbSearchRequest,
    responses((status = 200, body = KbSearchResponse), (status = 403, body = kefu_types::ErrorBody),
        (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn search(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<KbSearchRequest>,
) -> Result<Json<KbSearchResponse>, ApiError> {
    authorize(&p, Action::SearchKnowledge)?;
    if req.k.is_some_and(|k| k == 0 || k > 50) {
        return Err(ApiError::InvalidRequest("`k` must be 1 to 50".into()));
    }
    let r = s
        .knowledge
        .search(
            p.tenant(),
            &SearchRequest {
                query: req.query,
                collections: req.collections,
                lang: req.lang,
                tags: req.tags,
                k: req.k,
                vector: None,
            },
        )
        .await?;
    Ok(Json(KbSearchResponse {
        hits: r.hits.into_iter().map(search_hit).collect(),
        mode: r.mode,
        keyword_fallback: r.keyword_fallback,
        took_ms: r.took_ms,
    }))
}
