//! The human desk over REST: the queue, taking and handing over conversations, agents' messages, the hand-off
//! brief, and the customer's side of it ("talk to a human", the end-of-chat rating).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use kefu_store::{ConversationQuery, ConversationStatus, Handler, MessageRole, TeamFilter};
use kefu_types::{
    DeskAgent, DeskAgentList, DeskConversation, DeskList, DeskTeams, HandoffBrief, HandoffRequest,
    RatingRequest, ReadRequest, SendMessageRequest, TransferRequest, TypingRequest,
};

use crate::auth::{authorize, Action, Auth, Principal};
use crate::convert;
use crate::error::ApiError;
use crate::extract::{check_message, check_opt_text, idempotency_key, ApiJson, ApiQuery};
use crate::routes::load_conversation;
use crate::AppState;

/// Which part of the desk to list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeskView {
    /// Open conversations waiting for an agent, longest-waiting first.
    #[default]
    Queue,
    /// Open conversations the caller holds.
    Mine,
    /// Open conversations any agent holds (supervisors and admins).
    Held,
    /// Recently active open conversations, whoever answers them (supervisors and admins).
    All,
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct DeskQuery {
    #[serde(default)]
    view: DeskView,
    /// At most this many (1–200, default 50).
    #[serde(default)]
    limit: Option<u32>,
    /// Which team's queue: absent or `all` (every team's), `mine` (the caller's teams and the general queue;
    /// everything for an agent in no team), `general` (routed to no team) or a team's name.
    #[serde(default)]
    team: Option<String>,
}

fn staff(p: &Principal) -> Result<(Uuid, kefu_store::StaffRole), ApiError> {
    match p {
        Principal::Staff { user, role, .. } => Ok((*user, *role)),
        _ => Err(ApiError::Forbidden),
    }
}

/// A desk action on one conversation: the caller must be staff; returns who they are and the conversation.
async fn desk_conversation(
    s: &AppState,
    p: &Principal,
    id: &str,
) -> Result<(Uuid, kefu_store::Conversation), ApiError> {
    authorize(p, Action::UseDesk)?;
    let (user, _) = staff(p)?;
    Ok((user, load_conversation(s, p, id).await?))
}

/// `422` unless `id` is a staff member of the caller's tenant (a transfer's target, a ticket's assignee).
pub(crate) async fn check_staff_member(
    s: &AppState,
    p: &Principal,
    field: &str,
    id: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(id) = id {
        s.store.get_staff(p.tenant(), id).await?.ok_or_else(|| {
            ApiError::InvalidRequest(format!("`{field}` is not a staff member of this tenant"))
        })?;
    }
    Ok(())
}

/// The desk: the queue, the caller's conversations, or (supervisors) everyone's.
#[utoipa::path(get, path = "/v1/desk/conversations", tag = "desk", security(("bearer" = [])), params(DeskQuery),
    responses((status = 200, body = DeskList), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn desk_conversations(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<DeskQuery>,
) -> Result<Json<DeskList>, ApiError> {
    authorize(&p, Action::UseDesk)?;
    let (user, _) = staff(&p)?;
    if matches!(q.view, DeskView::Held | DeskView::All) {
        authorize(&p, Action::SuperviseDesk)?;
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::InvalidRequest("`limit` must be 1 to 200".into()));
    }
    let teams: Vec<Option<TeamFilter>> = match q.team.as_deref() {
        None | Some("all") => vec![None],
        Some("general") => vec![Some(TeamFilter::General)],
        Some("mine") => {
            let me = s
                .store
                .get_staff(p.tenant(), user)
                .await?
                .map(|u| u.teams)
                .unwrap_or_default();
            if me.is_empty() {
                vec![None]
            } else {
                me.into_iter()
                    .map(|t| Some(TeamFilter::Team(t)))
                    .chain([Some(TeamFilter::General)])
                    .collect()
            }
        }
        Some(t) => vec![Some(TeamFilter::Team(t.to_owned()))],
    };
    let mut convs = Vec::new();
    for team in teams {
        let query = ConversationQuery {
            handler: match q.view {
                DeskView::Queue => Some(Handler::Queued),
                DeskView::Mine | DeskView::Held => Some(Handler::Agent),
                DeskView::All => None,
            },
            status: Some(ConversationStatus::Open),
            assignee: (q.view == DeskView::Mine).then_some(user),
            customer: None,
            team,
            limit,
        };
        convs.extend(s.store.list_conversations(p.tenant(), query).await?);
    }
    // Several queues merged in the store's order: the longest-waiting first, or the most recent.
    if q.view == DeskView::Queue {
        convs.sort_by_key(|c| (c.queued_at.unwrap_or(c.updated_at), c.id));
    } else {
        convs.sort_by_key(|c| (std::cmp::Reverse(c.updated_at), c.id));
    }
    convs.truncate(limit as usize);
    let mut out = Vec::with_capacity(convs.len());
    for c in convs {
        let customer = s
            .store
            .get_customer(p.tenant(), c.customer_id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("conversation {} has no customer", c.id)))?;
        let recent = s
            .store
            .list_messages(p.tenant(), c.id, (c.last_seq - 20).max(0), 20)
            .await?;
        let last_customer_message = recent
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::Customer)
            .map(|m| m.content.chars().take(200).collect());
        let handoff_reason = s.engine.handoff_reason(p.tenant(), &c).await?;
        out.push(DeskConversation {
            conversation: convert::conversation(c),
            customer: convert::customer(customer),
            last_customer_message,
            handoff_reason,
        });
    }
    Ok(Json(DeskList { conversations: out }))
}

/// Take a conversation from the queue (or from the assistant). Two agents accepting at once: one gets it, the other
/// `409 held_by_another_agent`. Accepting one you already hold changes nothing.
#[utoipa::path(post, path = "/v1/conversations/{id}/accept", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = kefu_types::Conversation), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody)))]
pub(crate) async fn accept_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    let (user, conv) = desk_conversation(&s, &p, &id).await?;
    let conv = s
        .engine
        .assign(p.tenant(), conv.id, user, None, "agent_accepted")
        .await?;
    Ok(Json(convert::conversation(conv)))
}

/// Hand a held conversation to another agent of the tenant. The holder may; supervisors and admins may move
/// anyone's.
#[utoipa::path(post, path = "/v1/conversations/{id}/transfer", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = TransferRequest,
    responses((status = 200, body = kefu_types::Conversation), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn transfer_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    check_opt_text("reason", req.reason.as_deref(), 200)?;
    let (user, conv) = desk_conversation(&s, &p, &id).await?;
    let held = match conv.assignee_id {
        Some(h) if conv.handler == Handler::Agent => Some(h),
        _ => None,
    };
    match (req.agent_id, req.team) {
        (Some(agent), None) => {
            let holder = held.ok_or(ApiError::NotHolder)?;
            if holder != user {
                authorize(&p, Action::SuperviseDesk).map_err(|_| ApiError::NotHolder)?;
            }
            check_staff_member(&s, &p, "agent_id", Some(agent)).await?;
            let reason = req.reason.unwrap_or_else(|| "agent_transferred".into());
            let conv = s
                .engine
                .assign(p.tenant(), conv.id, agent, Some(holder), &reason)
                .await?;
            Ok(Json(convert::conversation(conv)))
        }
        (None, Some(team)) => {
            // The holder gives it to a team's queue; supervisors may also move anyone's, or re-route a queued
            // one.
            match held {
                Some(h) if h == user => {}
                Some(_) => authorize(&p, Action::SuperviseDesk).map_err(|_| ApiError::NotHolder)?,
                None if conv.handler == Handler::Queued => authorize(&p, Action::SuperviseDesk)?,
                None => return Err(ApiError::NotHolder),
            }
            let team = Some(team).filter(|t| !t.is_empty());
            if let Some(t) = &team {
                if !s.engine.desk_team_names(p.tenant()).await.contains(t) {
                    return Err(ApiError::InvalidRequest(format!(
                        "`team`: {t:?} is not one of the desk's teams"
                    )));
                }
            }
            let reason = req.reason.unwrap_or_else(|| "transferred_to_team".into());
            let conv = s
                .engine
                .route(p.tenant(), conv.id, team.as_deref(), held, &reason)
                .await?;
            Ok(Json(convert::conversation(conv)))
        }
        _ => Err(ApiError::InvalidRequest(
            "give exactly one of `agent_id` and `team`".into(),
        )),
    }
}

/// Give a held conversation back to the assistant. The holder may; supervisors and admins may for anyone.
#[utoipa::path(post, path = "/v1/conversations/{id}/release", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = kefu_types::Conversation), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody)))]
pub(crate) async fn release_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    let (user, conv) = desk_conversation(&s, &p, &id).await?;
    if conv.assignee_id != Some(user) {
        authorize(&p, Action::SuperviseDesk).map_err(|_| ApiError::NotHolder)?;
    }
    let conv = s
        .engine
        .set_handler(p.tenant(), conv.id, Handler::Bot, "agent_released")
        .await?;
    Ok(Json(convert::conversation(conv)))
}

/// An agent's message to the customer: only the agent holding the conversation may send one. With
/// `Idempotency-Key`, a retry returns the original message (200).
#[utoipa::path(post, path = "/v1/conversations/{id}/agent-messages", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe")),
    request_body = SendMessageRequest,
    responses((status = 201, body = kefu_types::Message), (status = 200, body = kefu_types::Message, description = "Replay"),
              (status = 403, body = kefu_types::ErrorBody), (status = 404, body = kefu_types::ErrorBody),
              (status = 409, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn send_agent_message(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let (user, conv) = desk_conversation(&s, &p, &id).await?;
    check_message(&req.content, s.settings.max_message_chars)?;
    let key = idempotency_key(&headers)?;
    let accepted = s
        .engine
        .post_agent_message(p.tenant(), conv.id, user, req.content, key)
        .await?;
    let body = Json(convert::message(&accepted.message));
    Ok(if accepted.replayed {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        r
    } else {
        (StatusCode::CREATED, body).into_response()
    })
}

/// The hand-off brief: summary, intent, emotion trajectory, what the assistant tried and its sources, the
/// customer's profile and recent orders, a suggested first reply and a pre-filled ticket. Staff only.
#[utoipa::path(get, path = "/v1/conversations/{id}/brief", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = HandoffBrief), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn handoff_brief(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<HandoffBrief>, ApiError> {
    authorize(&p, Action::UseDesk)?;
    let conv = load_conversation(&s, &p, &id).await?;
    let (conv, customer, f) = s.engine.brief(p.tenant(), conv.id).await?;
    Ok(Json(HandoffBrief {
        conversation: convert::conversation(conv),
        customer: convert::customer(customer),
        language: f.language,
        handoff_reason: f.handoff_reason,
        summary: f.summary,
        intent: f.intent,
        emotions: f.emotions,
        attempts: f.attempts,
        profile: f.profile,
        recent_orders: f.recent_orders,
        suggested_reply: f.suggested_reply,
        ticket: f.ticket,
    }))
}

/// The customer asks for a person (the widget's "talk to a human"): the conversation joins the queue. Changes
/// nothing when people already have it.
#[utoipa::path(post, path = "/v1/conversations/{id}/handoff", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = HandoffRequest,
    responses((status = 200, body = kefu_types::Conversation), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody)))]
pub(crate) async fn request_handoff(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<HandoffRequest>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    authorize(&p, Action::RequestHuman)?;
    check_opt_text("reason", req.reason.as_deref(), 200)?;
    let conv = load_conversation(&s, &p, &id).await?;
    if conv.status == ConversationStatus::Closed {
        return Err(ApiError::ConversationClosed);
    }
    if conv.handler != Handler::Bot {
        return Ok(Json(convert::conversation(conv)));
    }
    let reason = match req.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!("customer_button: {r}"),
        _ => "customer_button".to_owned(),
    };
    let conv = s.engine.request_human(p.tenant(), conv.id, &reason).await?;
    Ok(Json(convert::conversation(conv)))
}

/// The customer's end-of-chat rating (CSAT 1–5, optional comment up to 1,000 characters). Allowed after the
/// conversation closed; a later rating replaces an earlier one.
#[utoipa::path(post, path = "/v1/conversations/{id}/rating", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = RatingRequest,
    responses((status = 200, body = kefu_types::Conversation), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn rate_conversation(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RatingRequest>,
) -> Result<Json<kefu_types::Conversation>, ApiError> {
    authorize(&p, Action::RateConversation)?;
    if !(1..=5).contains(&req.rating) {
        return Err(ApiError::InvalidRequest("`rating` must be 1 to 5".into()));
    }
    check_opt_text("comment", req.comment.as_deref(), 1000)?;
    let conv = load_conversation(&s, &p, &id).await?;
    let comment = req
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let conv = s
        .engine
        .rate(p.tenant(), conv.id, req.rating, comment)
        .await?;
    Ok(Json(convert::conversation(conv)))
}

/// The agent's console is open: call every 20 s or so. An agent silent for a minute is offline; the
/// conversations they held go back to the queue.
#[utoipa::path(post, path = "/v1/desk/heartbeat", tag = "desk", security(("bearer" = [])),
    responses((status = 204, description = "Seen"), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn desk_heartbeat(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<StatusCode, ApiError> {
    authorize(&p, Action::UseDesk)?;
    let (user, _) = staff(&p)?;
    s.store.touch_staff(p.tenant(), user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is on the desk: presence and how many conversations each holds (supervisors and admins).
#[utoipa::path(get, path = "/v1/desk/agents", tag = "desk", security(("bearer" = [])),
    responses((status = 200, body = DeskAgentList), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn desk_agents(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<DeskAgentList>, ApiError> {
    authorize(&p, Action::SuperviseDesk)?;
    let now = kefu_store::now_ms();
    let agents = s.store.desk_agents(p.tenant()).await?;
    Ok(Json(DeskAgentList {
        agents: agents
            .iter()
            .map(|a| DeskAgent {
                id: a.id,
                display_name: a.display_name.clone(),
                role: convert::staff_role(a.role),
                online: kefu_engine::desk::is_online(a, now),
                last_seen_at: a.last_seen_at,
                held: a.held,
                teams: a.teams.clone(),
            })
            .collect(),
    }))
}

/// The desk's teams, and the caller's: what a transfer may name and what `team=mine` lists.
#[utoipa::path(get, path = "/v1/desk/teams", tag = "desk", security(("bearer" = [])),
    responses((status = 200, body = DeskTeams), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn desk_teams(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<DeskTeams>, ApiError> {
    authorize(&p, Action::UseDesk)?;
    let (user, _) = staff(&p)?;
    let teams = s.engine.desk_team_names(p.tenant()).await;
    let mine = s
        .store
        .get_staff(p.tenant(), user)
        .await?
        .map(|u| u.teams)
        .unwrap_or_default();
    Ok(Json(DeskTeams { teams, mine }))
}

/// Who a typing or read signal is from: the customer side (customers and API clients), or the agent holding the
/// conversation (other staff have nothing to signal to the customer).
pub(crate) fn signal_role(
    p: &Principal,
    conv: &kefu_store::Conversation,
) -> Result<MessageRole, ApiError> {
    match p {
        Principal::Customer { .. } | Principal::ApiClient { .. } => {
            authorize(p, Action::SendCustomerMessage)?;
            Ok(MessageRole::Customer)
        }
        Principal::Staff { user, .. } => {
            authorize(p, Action::UseDesk)?;
            if conv.handler == Handler::Agent && conv.assignee_id == Some(*user) {
                Ok(MessageRole::Agent)
            } else {
                Err(ApiError::NotHolder)
            }
        }
    }
}

/// Typing on or off; the other side sees `conversation.typing` on its stream (live only, nothing stored).
#[utoipa::path(post, path = "/v1/conversations/{id}/typing", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = TypingRequest,
    responses((status = 204, description = "Sent"), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody)))]
pub(crate) async fn send_typing(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TypingRequest>,
) -> Result<StatusCode, ApiError> {
    let conv = load_conversation(&s, &p, &id).await?;
    let role = signal_role(&p, &conv)?;
    s.engine.hub().signal(
        conv.id,
        kefu_engine::Signal::Typing {
            role,
            typing: req.typing,
        },
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Seen up to `seq`; the other side sees `conversation.read` on its stream (live only, nothing stored).
#[utoipa::path(post, path = "/v1/conversations/{id}/read", tag = "desk", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = ReadRequest,
    responses((status = 204, description = "Sent"), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn send_read(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReadRequest>,
) -> Result<StatusCode, ApiError> {
    let conv = load_conversation(&s, &p, &id).await?;
    if req.seq < 0 || req.seq > conv.last_seq {
        return Err(ApiError::InvalidRequest(format!(
            "`seq` must be 0 to {} (the conversation's last)",
            conv.last_seq
        )));
    }
    let role = signal_role(&p, &conv)?;
    s.engine
        .hub()
        .signal(conv.id, kefu_engine::Signal::Read { role, seq: req.seq });
    Ok(StatusCode::NO_CONTENT)
}
