//! The tenant's own sensitive words (added to the server's list): read, replace, and try a text against them.

use axum::extract::State;
use axum::Json;

use kefu_types::{ModerationCheck, ModerationCheckRequest, ModerationConfig, ModerationSettings};

use crate::auth::{authorize, Action, Auth};
use crate::error::ApiError;
use crate::extract::{check_text, ApiJson};
use crate::AppState;

/// A list's text at most (about 200k words of Chinese).
pub(crate) const MAX_LIST_CHARS: usize = 2_000_000;

async fn settings(s: &AppState, tenant: uuid::Uuid) -> Result<ModerationSettings, ApiError> {
    let t = s
        .store
        .get_tenant(tenant)
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let cfg: ModerationConfig = t
        .moderation_config
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or_default();
    // A stored list was checked on the way in: counting needs no second compile.
    let entries = kefu_engine::words::parse_entries(&cfg).unwrap_or_default();
    let active = s
        .engine
        .understander(tenant)
        .await
        .moderator()
        .map_or(0, |m| m.len());
    Ok(ModerationSettings {
        entries: entries.len(),
        categories: kefu_engine::words::categories(&entries),
        default_action: cfg.default_action.unwrap_or_else(|| "flag".into()),
        words: cfg.words,
        active_entries: active,
    })
}

/// The tenant's sensitive words (supervisors and admins).
#[utoipa::path(get, path = "/v1/admin/moderation", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ModerationSettings), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_moderation(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<ModerationSettings>, ApiError> {
    authorize(&p, Action::ManageModeration)?;
    Ok(Json(settings(&s, p.tenant()).await?))
}

/// Replace the tenant's sensitive words. The list is compiled first: a bad line is `422` naming it, and nothing
/// changes. Customer messages and replies use the new list at once on this node (other nodes within seconds).
#[utoipa::path(put, path = "/v1/admin/moderation", tag = "admin", security(("bearer" = [])),
    request_body = ModerationConfig,
    responses((status = 200, body = ModerationSettings), (status = 403, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn put_moderation(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(cfg): ApiJson<ModerationConfig>,
) -> Result<Json<ModerationSettings>, ApiError> {
    authorize(&p, Action::ManageModeration)?;
    check_text("words", &cfg.words, MAX_LIST_CHARS)?;
    // Compiling 100k words takes a moment of CPU: off the async workers.
    let checked = cfg.clone();
    tokio::task::spawn_blocking(move || kefu_engine::words::tenant_entries(&checked))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::InvalidRequest)?;
    let value = serde_json::to_value(&cfg).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .set_tenant_moderation_config(p.tenant(), Some(value))
        .await?;
    s.engine.understanding_changed(p.tenant());
    Ok(Json(settings(&s, p.tenant()).await?))
}

/// What moderation makes of a text with the tenant's and the server's lists, as a customer message would be
/// checked.
#[utoipa::path(post, path = "/v1/admin/moderation/check", tag = "admin", security(("bearer" = [])),
    request_body = ModerationCheckRequest,
    responses((status = 200, body = ModerationCheck), (status = 403, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn check_moderation(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<ModerationCheckRequest>,
) -> Result<Json<ModerationCheck>, ApiError> {
    authorize(&p, Action::ManageModeration)?;
    check_text("text", &req.text, 10_000)?;
    Ok(Json(s.engine.moderate(p.tenant(), &req.text).await))
}
