//! Conversations and messages over REST.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use kefu_store::{Conversation, NewConversation};
use kefu_types::{
    CreateConversationRequest, MessageList, SendMessageRequest, SendMessageResponse,
    SetHandlerRequest, TurnRecord,
};

use crate::auth::{authorize, Action, Auth, Principal};
use crate::convert;
use crate::error::ApiError;
use crate::extract::{check_message, check_opt_text, idempotency_key, parse_id, ApiJson, ApiQuery};
use crate::AppState;

/// Loads a conversation the caller may see: in the caller's tenant, and the caller's own when a customer.
/// Anything else is "not found", so ids of other tenants or customers reveal nothing.
pub(crate) async fn load_conversation(
    s: &AppState,
    p: &Principal,
    raw_id: &str,
) -> Result<Conversation, ApiError> {
    let id = parse_id(raw_id, ApiError::ConversationNotFound)?;
    let conv = s
        .store
        .get_conversation(p.tenant(), id)
        .await?
        .ok_or(ApiError::ConversationNotFound)?;
    if let Principal::Customer { customer, .. } = p {
        if conv.customer_id != *customer {
            return Err(ApiError::ConversationNotFound);
        }
    }
    Ok(conv)
}

fn valid_channel(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 32
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Start a conversation. Customers start their own; API clients name the customer by `customer_external_id`.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = CreateConversationRequest,
    security(("bearer" = [])),
    responses((status = 201, body = kefu_types::Conversation), (status = 401, body = kefu_types::ErrorBody),
              (status = 403, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn create_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<CreateConversationRequest>,
) -> Result<(StatusCode, Json<kefu_types::Conversation>), ApiError> {
    authorize(&p, Action::CreateConversation)?;
    check_opt_text(
        "customer_external_id",
        req.customer_external_id.as_deref(),
        200,
    )?;
    check_opt_text(
        "customer_display_name",
        req.customer_display_name.as_deref(),
        200,
    )?;
    check_opt_text("subject", req.subject.as_deref(), 500)?;
    if let Some(c) = &req.channel {
        if !valid_channel(c) {
            return Err(ApiError::InvalidRequest(
                "`channel` must be 1-32 of a-z, 0-9, '_' or '-'".into(),
            ));
        }
    }
    let metadata = match req.metadata {
        None => serde_json::json!({}),
        Some(v @ serde_json::Value::Object(_)) => v,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "`metadata` must be a JSON object".into(),
            ))
        }
    };
    let (customer_id, default_channel) = match &p {
        Principal::Customer { customer, .. } => {
            if req.customer_external_id.is_some() {
                return Err(ApiError::InvalidRequest(
                    "customers cannot set `customer_external_id`".into(),
                ));
            }
            (*customer, "web")
        }
        Principal::ApiClient { tenant, .. } => {
            let ext = req
                .customer_external_id
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::InvalidRequest(
                        "`customer_external_id` is required for API clients".into(),
                    )
                })?;
            (
                s.store
                    .upsert_customer(*tenant, Some(ext), req.customer_display_name.as_deref())
                    .await?
                    .id,
                "api",
            )
        }
        Principal::Staff { .. } => return Err(ApiError::Forbidden),
    };
    let conv = s
        .store
        .create_conversation(NewConversation {
            tenant_id: p.tenant(),
            customer_id,
            channel: req.channel.unwrap_or_else(|| default_channel.to_owned()),
            subject: req.subject,
            metadata,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(convert::conversation(conv))))
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ConversationListQuery {
    #[serde(default)]
    status: Option<kefu_types::ConversationStatus>,
    /// 1–100, default 20.
    #[serde(default)]
    limit: Option<u32>,
}

/// Conversations, most recently active first: a customer's own (so a customer who signs in on another device picks
/// up where they left off), or the tenant's for staff and API clients.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", security(("bearer" = [])),
    params(ConversationListQuery),
    responses((status = 200, body = kefu_types::ConversationList), (status = 401, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_conversations(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<ConversationListQuery>,
) -> Result<Json<kefu_types::ConversationList>, ApiError> {
    authorize(&p, Action::ReadConversation)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidRequest("`limit` must be 1 to 100".into()));
    }
    let convs = s
        .store
        .list_conversations(
            p.tenant(),
            kefu_store::ConversationQuery {
                status: q.status.map(convert::status_in),
                customer: match &p {
                    Principal::Customer { customer, .. } => Some(*customer),
                    _ => None,
                },
                limit,
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(kefu_types::ConversationList {
        conversations: convs.into_iter().map(convert::conversation).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = kefu_types::Conversation), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    authorize(&p, Action::ReadConversation)?;
    Ok(Json(convert::conversation(
        load_conversation(&s, &p, &id).await?,
    )))
}

/// Close a conversation (idempotent). Pending replies are dropped; subscribers get a status event.
#[utoipa::path(post, path = "/v1/conversations/{id}/close", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = kefu_types::Conversation), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn close_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    authorize(&p, Action::CloseConversation)?;
    let conv = load_conversation(&s, &p, &id).await?;
    Ok(Json(convert::conversation(
        s.engine.close_conversation(p.tenant(), conv.id).await?,
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SendQuery {
    /// Wait (up to the server's limit) for the assistant's reply and return it.
    #[serde(default)]
    wait: bool,
}

/// Send a customer message. With `Idempotency-Key`, a retry returns the original result (status 200 and
/// `Idempotent-Replayed: true`) and stores nothing new. The reply streams on the conversation's event stream.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    request_body = SendMessageRequest,
    params(("id" = uuid::Uuid, Path), SendQuery,
           ("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe")),
    responses((status = 201, body = SendMessageResponse), (status = 200, body = SendMessageResponse, description = "Replay"),
              (status = 409, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody),
              (status = 429, body = kefu_types::ErrorBody)))]
pub(crate) async fn send_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SendQuery>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<Response, ApiError> {
    authorize(&p, Action::SendCustomerMessage)?;
    let conv = load_conversation(&s, &p, &id).await?;
    check_message(&req.content, s.settings.max_message_chars)?;
    let key = idempotency_key(&headers)?;
    let accepted = s
        .engine
        .accept_customer_message(p.tenant(), conv.id, req.content, key)
        .await?;
    let seq = accepted.message.seq;
    let reply = if q.wait {
        s.engine
            .wait_for_reply(p.tenant(), conv.id, seq, s.settings.max_wait)
            .await?
    } else if accepted.replayed {
        s.store.find_reply(p.tenant(), conv.id, seq).await?
    } else {
        None
    };
    let body = SendMessageResponse {
        message: convert::message_for(&p, &accepted.message),
        reply: reply.as_ref().map(|m| convert::message_for(&p, m)),
    };
    let mut resp = if accepted.replayed {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        (StatusCode::CREATED, Json(body)).into_response()
    };
    if accepted.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ListQuery {
    /// Return messages with a sequence number greater than this (default 0).
    #[serde(default)]
    after: i64,
    /// Page size, 1-200 (default 50).
    #[serde(default)]
    limit: Option<u32>,
}

/// Messages after a sequence number, oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ListQuery),
    responses((status = 200, body = MessageList), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_messages(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<MessageList>, ApiError> {
    authorize(&p, Action::ReadConversation)?;
    let conv = load_conversation(&s, &p, &id).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::InvalidRequest(
            "`limit` must be between 1 and 200".into(),
        ));
    }
    if q.after < 0 {
        return Err(ApiError::InvalidRequest(
            "`after` must not be negative".into(),
        ));
    }
    let mut messages = s
        .store
        .list_messages(p.tenant(), conv.id, q.after, limit + 1)
        .await?;
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    let next_after = messages.last().map(|m| m.seq).unwrap_or(q.after);
    Ok(Json(MessageList {
        messages: messages
            .iter()
            .map(|m| convert::message_for(&p, m))
            .collect(),
        next_after,
        has_more,
    }))
}

/// Why the assistant answered what it did: every assistant reply of the conversation with its turn record (path
/// and reason, intent, emotion, passages, grounding, model, tokens, time per stage). Staff only.
#[utoipa::path(get, path = "/v1/conversations/{id}/turns", tag = "conversations", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ListQuery),
    responses((status = 200, body = Vec<TurnRecord>), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_turns(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<TurnRecord>>, ApiError> {
    authorize(&p, Action::ReadTurnTraces)?;
    let conv = load_conversation(&s, &p, &id).await?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=200).contains(&limit) || q.after < 0 {
        return Err(ApiError::InvalidRequest(
            "`limit` must be between 1 and 200 and `after` not negative".into(),
        ));
    }
    let messages = s
        .store
        .list_messages(p.tenant(), conv.id, q.after, limit)
        .await?;
    let turns = messages
        .into_iter()
        .filter(|m| m.role == kefu_store::MessageRole::Assistant)
        .filter_map(|m| {
            // Replies stored before the engine recorded turns have no trace.
            let trace = serde_json::from_value(m.generation.trace?).ok()?;
            Some(TurnRecord {
                seq: m.seq,
                reply_to_seq: m.reply_to_seq,
                content: m.content,
                trace,
                created_at: m.created_at,
            })
        })
        .collect();
    Ok(Json(turns))
}

/// Hand the conversation to people (`queued` or `agent`: the assistant stops answering) or back to the assistant
/// (`bot`). Staff and API clients.
#[utoipa::path(put, path = "/v1/conversations/{id}/handler", tag = "conversations", request_body = SetHandlerRequest,
    security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = kefu_types::Conversation), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn set_handler(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetHandlerRequest>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    authorize(&p, Action::SetHandler)?;
    let conv = load_conversation(&s, &p, &id).await?;
    check_opt_text("reason", req.reason.as_deref(), 200)?;
    let reason = req.reason.unwrap_or_else(|| match &p {
        Principal::Staff { .. } => "staff".into(),
        _ => "api".into(),
    });
    let conv = s
        .engine
        .set_handler(
            p.tenant(),
            conv.id,
            convert::handler_in(req.handler),
            &reason,
        )
        .await?;
    Ok(Json(convert::conversation(conv)))
}
