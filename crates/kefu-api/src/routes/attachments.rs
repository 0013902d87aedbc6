//! Images in conversations: customers send photos (a broken item for a return), agents send screenshots. The
//! body is the image itself; its type is checked against its first bytes, not trusted from the header.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::{authorize, Action, Auth, Principal};
use crate::convert;
use crate::error::ApiError;
use crate::extract::parse_id;
use crate::routes::{load_conversation, signal_role};
use crate::AppState;

/// Largest image accepted.
pub(crate) const MAX_ATTACHMENT_BYTES: usize = 5 * 1024 * 1024;

/// The image type its first bytes say, if it is one we accept.
pub(crate) fn sniff_image(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Send an image (PNG, JPEG, GIF or WebP, up to 5 MB) as the body, with its `Content-Type`. It becomes a message
/// `[image:<attachment id>]` in the conversation; fetch it from `/v1/attachments/{id}`.
#[utoipa::path(post, path = "/v1/conversations/{id}/attachments", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses((status = 201, body = kefu_types::Message), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody),
              (status = 413, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn upload_attachment(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<kefu_types::Message>), ApiError> {
    let conv = load_conversation(&s, &p, &id).await?;
    let role = signal_role(&p, &conv)?;
    let body = body.map_err(|_| ApiError::PayloadTooLarge(MAX_ATTACHMENT_BYTES))?;
    if body.len() > MAX_ATTACHMENT_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_ATTACHMENT_BYTES));
    }
    if body.is_empty() {
        return Err(ApiError::FileRejected(
            "unsupported_attachment",
            "the image is empty".into(),
        ));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let actual = sniff_image(&body).ok_or_else(|| {
        ApiError::FileRejected(
            "unsupported_attachment",
            "only PNG, JPEG, GIF and WebP images can be sent".into(),
        )
    })?;
    if declared != actual {
        return Err(ApiError::FileRejected(
            "unsupported_attachment",
            format!("the body is {actual}, but Content-Type says {declared:?}"),
        ));
    }
    let accepted = s
        .engine
        .post_attachment(p.tenant(), conv.id, role, actual, &body)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(convert::message_for(&p, &accepted.message)),
    ))
}

/// An image sent in a conversation the caller may read (customers: their own).
#[utoipa::path(get, path = "/v1/attachments/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The image", content_type = "image/*"),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_attachment(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&p, Action::ReadConversation)?;
    let id = parse_id(&id, ApiError::NotFound("attachment"))?;
    let (att, data) = s
        .store
        .get_attachment(p.tenant(), id)
        .await?
        .ok_or(ApiError::NotFound("attachment"))?;
    if matches!(p, Principal::Customer { .. }) {
        // Someone else's conversation: the same answer as no such image.
        load_conversation(&s, &p, &att.conversation_id.to_string())
            .await
            .map_err(|_| ApiError::NotFound("attachment"))?;
    }
    Ok((
        [
            (header::CONTENT_TYPE, att.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_owned(),
            ),
            (header::CACHE_CONTROL, "private, max-age=86400".to_owned()),
        ],
        data,
    )
        .into_response())
}
