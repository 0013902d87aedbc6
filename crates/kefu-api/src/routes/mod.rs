//! Route table. Every route under `/v1` passes the per-IP rate limit; every handler authenticates (except health,
//! the OpenAPI document, login and customer-session creation, which are how one gets a token).

mod admin;
mod attachments;
mod auth;
mod conversations;
mod desk;
mod health;
mod intents;
mod knowledge;
mod moderation;
mod stream;
mod tickets;

pub use admin::validate_model_config;
pub(crate) use admin::*;
pub(crate) use attachments::*;
pub(crate) use auth::*;
pub(crate) use conversations::*;
pub(crate) use desk::*;
pub(crate) use health::*;
pub(crate) use intents::*;
pub(crate) use knowledge::*;
pub(crate) use moderation::*;
pub(crate) use stream::*;
pub(crate) use tickets::*;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::ratelimit::limit_by_ip;
use crate::AppState;

/// The widget runs on the customer's site and calls the API from there. Requests carry bearer tokens, never
/// cookies, so any origin may call: a page learns nothing it could not learn with its own token.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderName, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("idempotent-replayed"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

pub fn router(state: AppState) -> Router {
    state.limits.spawn_housekeeping();
    let v1 = Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/customer-sessions", post(create_customer_session))
        .route(
            "/v1/conversations",
            post(create_conversation).get(list_conversations),
        )
        .route("/v1/conversations/{id}", get(get_conversation))
        .route("/v1/conversations/{id}/close", post(close_conversation))
        .route(
            "/v1/conversations/{id}/messages",
            post(send_message).get(list_messages),
        )
        .route(
            "/v1/conversations/{id}/events",
            get(conversation_events_sse),
        )
        .route("/v1/conversations/{id}/ws", get(conversation_ws))
        .route("/v1/conversations/{id}/turns", get(list_turns))
        .route("/v1/conversations/{id}/handler", put(set_handler))
        .route("/v1/desk/conversations", get(desk_conversations))
        .route("/v1/desk/heartbeat", post(desk_heartbeat))
        .route("/v1/desk/agents", get(desk_agents))
        .route("/v1/desk/teams", get(desk_teams))
        .route("/v1/conversations/{id}/accept", post(accept_conversation))
        .route(
            "/v1/conversations/{id}/transfer",
            post(transfer_conversation),
        )
        .route("/v1/conversations/{id}/release", post(release_conversation))
        .route(
            "/v1/conversations/{id}/agent-messages",
            post(send_agent_message),
        )
        .route("/v1/conversations/{id}/brief", get(handoff_brief))
        .route("/v1/conversations/{id}/handoff", post(request_handoff))
        .route("/v1/conversations/{id}/rating", post(rate_conversation))
        .route(
            "/v1/conversations/{id}/attachments",
            // Images carry their own limit, a little above the largest accepted so the handler can say why.
            post(upload_attachment).layer(DefaultBodyLimit::max(MAX_ATTACHMENT_BYTES + 64 * 1024)),
        )
        .route("/v1/attachments/{id}", get(get_attachment))
        .route("/v1/conversations/{id}/typing", post(send_typing))
        .route("/v1/conversations/{id}/read", post(send_read))
        .route("/v1/tickets", get(list_tickets).post(create_ticket))
        .route("/v1/tickets/{id}", get(get_ticket).patch(update_ticket))
        .route("/v1/tickets/{id}/notes", post(add_ticket_note))
        .route(
            "/v1/admin/desk-config",
            get(get_desk_config).put(put_desk_config),
        )
        .route("/v1/tenant", get(get_tenant))
        .route("/v1/admin/cache-stats", get(cache_stats))
        .route(
            "/v1/admin/api-keys",
            get(list_api_keys).post(create_api_key),
        )
        .route("/v1/admin/api-keys/{id}", delete(revoke_api_key))
        .route("/v1/admin/users", get(list_staff).post(create_staff))
        .route("/v1/admin/users/{id}", patch(update_staff))
        .route(
            "/v1/admin/moderation",
            // A large list is a large body: its own limit (JSON escaping can double the text).
            get(get_moderation)
                .put(put_moderation)
                .layer(DefaultBodyLimit::max(MAX_LIST_CHARS * 3 * 2 + 64 * 1024)),
        )
        .route("/v1/admin/moderation/check", post(check_moderation))
        .route(
            "/v1/admin/intent-models",
            // Training data is a whole file: its own limit (JSON escaping can double the text).
            get(list_intent_models)
                .post(train_intent_model)
                .layer(DefaultBodyLimit::max(MAX_TRAINING_CHARS * 2 + 64 * 1024)),
        )
        .route("/v1/admin/intent-models/current", put(set_intent_model))
        .route("/v1/admin/intent-models/predict", post(predict_intents))
        .route(
            "/v1/admin/intent-models/{version}",
            get(get_intent_model).delete(delete_intent_model),
        )
        .route(
            "/v1/admin/model-config",
            get(get_model_config)
                .put(put_model_config)
                .delete(delete_model_config),
        )
        .route("/v1/admin/kb/documents", get(list_documents))
        .route(
            "/v1/admin/kb/documents/{id}",
            get(get_document).delete(delete_document),
        )
        .route("/v1/admin/kb/search", post(search))
        .route("/v1/admin/kb/imports/{id}", get(get_import))
        .route(
            "/v1/admin/kb/imports",
            // Uploads carry whole files: their own body limit (base64 adds a third).
            post(import_files).layer(DefaultBodyLimit::max(
                state.knowledge.options().max_file_bytes as usize * 4 / 3 * 4 + 64 * 1024,
            )),
        )
        .route("/v1/admin/customer-secret", get(get_customer_secret))
        .route(
            "/v1/admin/customer-secret/rotate",
            post(rotate_customer_secret),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_by_ip,
        ));
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .merge(v1)
        .merge(crate::web::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let path = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| req.uri().path().to_owned());
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                tracing::info_span!("http", method = %req.method(), path, request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost: a preflight is answered before routing (which would say 405 to OPTIONS).
        .layer(cors())
        .with_state(state)
}
