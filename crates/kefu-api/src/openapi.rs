//! The OpenAPI 3 document, generated from the handlers' annotations. `cargo xtask openapi` writes it to
//! `docs/openapi.json`; CI regenerates it and fails on drift.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::*;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant API key (`kefu_sk_…`), a staff JWT from /v1/auth/login, or a customer session token from /v1/customer-sessions."))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "kefu", description = "Self-hosted LLM customer service: conversations, streaming, administration."),
    paths(
        healthz, readyz,
        login, create_customer_session,
        create_conversation, list_conversations, get_conversation, close_conversation, send_message, list_messages,
        conversation_events_sse, conversation_ws, list_turns, set_handler,
        get_tenant, cache_stats, list_api_keys, create_api_key, revoke_api_key, list_staff, create_staff,
        update_staff, get_moderation, put_moderation, check_moderation,
        list_intent_models, train_intent_model, get_intent_model, set_intent_model, delete_intent_model, predict_intents,
        get_model_config, put_model_config, delete_model_config, get_customer_secret, rotate_customer_secret,
        import_files, get_import, list_documents, get_document, delete_document, search,
        desk_conversations, accept_conversation, transfer_conversation, release_conversation, send_agent_message,
        handoff_brief, request_handoff, rate_conversation, desk_heartbeat, desk_agents, desk_teams,
        send_typing, send_read, upload_attachment, get_attachment,
        create_ticket, list_tickets, get_ticket, update_ticket, add_ticket_note, get_desk_config, put_desk_config,
    ),
    components(schemas(kefu_types::ClientFrame, kefu_types::StreamEvent, kefu_types::ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "conversations", description = "Customer conversations and messages"),
        (name = "streaming", description = "Real-time events over SSE and WebSocket, resumable by sequence number"),
        (name = "auth", description = "Tokens for staff and customers"),
        (name = "admin", description = "Tenant administration"),
        (name = "knowledge", description = "Knowledge base: import, browse, delete, hybrid search with citations"),
        (name = "desk", description = "The human desk: queue, accept, transfer, release, agents' messages, hand-off brief, rating"),
        (name = "tickets", description = "Tickets: status workflow, SLA timers (paused while pending), notes"),
        (name = "ops", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON (stable output, for the drift check).
pub fn document_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().expect("OpenAPI serialises")
}
