//! Real-time conversation events over Server-Sent Events and WebSocket.
//!
//! Both carry the same JSON events (`kefu_types::StreamEvent`). Resume with `after=<last seq>` (SSE also honours
//! `Last-Event-ID`); the partial answer in progress arrives first as one `message.delta` with `offset: 0`.

use std::convert::Infallible;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use kefu_types::{ClientFrame, StreamEvent};

use crate::auth::{authorize, Action, Auth, Principal};
use crate::convert;
use crate::error::ApiError;
use crate::extract::{check_idempotency_key, check_message, ApiQuery};
use crate::routes::load_conversation;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct StreamQuery {
    /// Resume after this sequence number (default 0: everything).
    #[serde(default)]
    after: Option<i64>,
    /// The bearer token, for clients that cannot set headers (EventSource, browser WebSocket).
    #[serde(default)]
    #[allow(dead_code)]
    access_token: Option<String>,
}

fn sse_event(e: &StreamEvent) -> SseEvent {
    let data = serde_json::to_string(e).expect("events serialise");
    let ev = SseEvent::default().event(e.name()).data(data);
    match e.seq() {
        Some(seq) => ev.id(seq.to_string()),
        None => ev,
    }
}

/// Server-Sent Events of one conversation.
#[utoipa::path(get, path = "/v1/conversations/{id}/events", tag = "streaming", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), StreamQuery,
           ("Last-Event-ID" = Option<i64>, Header, description = "Resume point, as sent by EventSource")),
    responses((status = 200, description = "text/event-stream of StreamEvent", body = StreamEvent),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn conversation_events_sse(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&p, Action::ReadConversation)?;
    let conv = load_conversation(&s, &p, &id).await?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = q.after.unwrap_or(0).max(last_event_id.unwrap_or(0)).max(0);
    let principal = p.clone();
    let events = s
        .engine
        .subscribe(p.tenant(), conv.id, after)
        .map(move |o| Ok::<_, Infallible>(sse_event(&convert::stream_event(&principal, &o))));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(s.settings.sse_keepalive))
        .into_response())
}

/// WebSocket of one conversation: server → client `StreamEvent` frames; client → server `ClientFrame`s
/// (`message.send` for customers and API clients).
#[utoipa::path(get, path = "/v1/conversations/{id}/ws", tag = "streaming", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), StreamQuery),
    responses((status = 101, description = "WebSocket of StreamEvent / ClientFrame JSON text frames"),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn conversation_ws(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    authorize(&p, Action::ReadConversation)?;
    let conv = load_conversation(&s, &p, &id).await?;
    let upgrade = upgrade
        .map_err(|e| ApiError::InvalidRequest(format!("WebSocket upgrade required: {e}")))?;
    let after = q.after.unwrap_or(0).max(0);
    // tungstenite's default 128 KiB read and write buffers per socket would cost over a gigabyte at 10,000 idle
    // connections; frames here are small, buffers grow when a larger one arrives, and every send is flushed.
    Ok(upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(s.settings.max_body_bytes)
        .on_upgrade(move |socket| ws_session(s, p, conv.id, after, socket)))
}

fn frame(e: &StreamEvent) -> WsMessage {
    WsMessage::Text(serde_json::to_string(e).expect("events serialise").into())
}

fn error_frame(e: &ApiError) -> WsMessage {
    frame(&StreamEvent::Error {
        code: e.code().to_owned(),
        message: e.to_string(),
    })
}

async fn ws_session(
    s: AppState,
    p: Principal,
    conversation: uuid::Uuid,
    after: i64,
    socket: WebSocket,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut events = s.engine.subscribe(p.tenant(), conversation, after);
    let mut ping = tokio::time::interval(s.settings.ws_ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(o) = ev else { break };
                let dto = convert::stream_event(&p, &o);
                let last = matches!(dto, StreamEvent::Shutdown | StreamEvent::Error { .. });
                if sink.send(frame(&dto)).await.is_err() {
                    return;
                }
                if last {
                    let code = if matches!(dto, StreamEvent::Shutdown) { 1001 } else { 1011 };
                    let _ = sink.send(WsMessage::Close(Some(CloseFrame { code, reason: dto.name().into() }))).await;
                    return;
                }
            }
            msg = incoming.next() => {
                match msg {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Err(e) = handle_client_frame(&s, &p, conversation, text.as_str()).await {
                            if sink.send(error_frame(&e)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        let e = ApiError::InvalidRequest("send JSON text frames".into());
                        if sink.send(error_frame(&e)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return,
                }
            }
            _ = ping.tick() => {
                if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = sink.close().await;
}

async fn handle_client_frame(
    s: &AppState,
    p: &Principal,
    conversation: uuid::Uuid,
    text: &str,
) -> Result<(), ApiError> {
    let frame: ClientFrame =
        serde_json::from_str(text).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    match frame {
        ClientFrame::Ping {} => Ok(()),
        ClientFrame::Typing { typing } => {
            let conv = load_conversation(s, p, &conversation.to_string()).await?;
            let role = crate::routes::signal_role(p, &conv)?;
            s.engine
                .hub()
                .signal(conv.id, kefu_engine::Signal::Typing { role, typing });
            Ok(())
        }
        ClientFrame::Read { seq } => {
            let conv = load_conversation(s, p, &conversation.to_string()).await?;
            if seq < 0 || seq > conv.last_seq {
                return Err(ApiError::InvalidRequest(format!(
                    "`seq` must be 0 to {} (the conversation's last)",
                    conv.last_seq
                )));
            }
            let role = crate::routes::signal_role(p, &conv)?;
            s.engine
                .hub()
                .signal(conv.id, kefu_engine::Signal::Read { role, seq });
            Ok(())
        }
        ClientFrame::SendMessage {
            content,
            idempotency_key,
        } => {
            authorize(p, Action::SendCustomerMessage)?;
            check_message(&content, s.settings.max_message_chars)?;
            if let Some(k) = &idempotency_key {
                check_idempotency_key(k)?;
            }
            // The stored message arrives on this socket as `message.created`, carrying the idempotency key.
            s.engine
                .accept_customer_message(p.tenant(), conversation, content, idempotency_key)
                .await?;
            Ok(())
        }
    }
}
