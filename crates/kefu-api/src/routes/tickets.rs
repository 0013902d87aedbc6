//! Tickets over REST: staff create, list, update (status workflow, priority, department, assignee) and annotate
//! them; customers see their own tickets' status and the replies meant for them, never internal notes or SLA
//! details.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use kefu_store::{NewTicket, Ticket, TicketQuery, TicketUpdate};
use kefu_types::{
    CreateTicketRequest, TicketDetail, TicketList, TicketNoteRequest, UpdateTicketRequest,
};

use crate::auth::{authorize, Action, Auth, Principal};
use crate::convert;
use crate::error::ApiError;
use crate::extract::{check_opt_text, check_text, parse_id, ApiJson, ApiQuery};
use crate::routes::{check_staff_member, load_conversation};
use crate::AppState;

/// The ticket the caller may see: in the caller's tenant, and the caller's own when a customer.
async fn load_ticket(s: &AppState, p: &Principal, raw: &str) -> Result<Ticket, ApiError> {
    let id = parse_id(raw, ApiError::NotFound("ticket"))?;
    let t = s
        .store
        .get_ticket(p.tenant(), id)
        .await?
        .ok_or(ApiError::NotFound("ticket"))?;
    if let Principal::Customer { customer, .. } = p {
        if t.customer_id != Some(*customer) {
            return Err(ApiError::NotFound("ticket"));
        }
    }
    Ok(t)
}

fn staff_id(p: &Principal) -> Option<Uuid> {
    match p {
        Principal::Staff { user, .. } => Some(*user),
        _ => None,
    }
}

/// Open a ticket (staff), optionally for a conversation (its customer becomes the ticket's).
#[utoipa::path(post, path = "/v1/tickets", tag = "tickets", security(("bearer" = [])), request_body = CreateTicketRequest,
    responses((status = 201, body = kefu_types::Ticket), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn create_ticket(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<CreateTicketRequest>,
) -> Result<(StatusCode, Json<kefu_types::Ticket>), ApiError> {
    authorize(&p, Action::ManageTickets)?;
    check_text("subject", &req.subject, 200)?;
    if req.subject.trim().is_empty() {
        return Err(ApiError::InvalidRequest(
            "`subject` must not be blank".into(),
        ));
    }
    check_text("description", &req.description, 10_000)?;
    check_opt_text("department", req.department.as_deref(), 64)?;
    check_opt_text("external_ref", req.external_ref.as_deref(), 200)?;
    check_staff_member(&s, &p, "assignee_id", req.assignee_id).await?;
    let (conversation_id, customer_id) = match req.conversation_id {
        Some(c) => {
            let conv = load_conversation(&s, &p, &c.to_string()).await?;
            (Some(conv.id), Some(conv.customer_id))
        }
        None => (None, None),
    };
    let t = s
        .store
        .create_ticket(NewTicket {
            tenant_id: p.tenant(),
            conversation_id,
            customer_id,
            subject: req.subject.trim().to_owned(),
            description: req.description,
            department: req.department.filter(|d| !d.trim().is_empty()),
            priority: convert::priority_in(
                req.priority.unwrap_or(kefu_types::TicketPriority::Normal),
            ),
            source: "agent".into(),
            created_by: staff_id(&p),
            assignee_id: req.assignee_id,
            external_ref: req.external_ref,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(convert::ticket_for(&p, &t))))
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct TicketListQuery {
    #[serde(default)]
    status: Option<kefu_types::TicketStatus>,
    /// Only tickets assigned to the caller (staff).
    #[serde(default)]
    mine: bool,
    #[serde(default)]
    conversation_id: Option<Uuid>,
    /// 1–200, default 50.
    #[serde(default)]
    limit: Option<u32>,
}

/// Tickets, newest first: all of the tenant's for staff, their own for a customer.
#[utoipa::path(get, path = "/v1/tickets", tag = "tickets", security(("bearer" = [])), params(TicketListQuery),
    responses((status = 200, body = TicketList), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_tickets(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<TicketListQuery>,
) -> Result<Json<TicketList>, ApiError> {
    authorize(&p, Action::ReadTickets)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::InvalidRequest("`limit` must be 1 to 200".into()));
    }
    let query = TicketQuery {
        status: q.status.map(convert::ticket_status_in),
        assignee: if q.mine { staff_id(&p) } else { None },
        customer: match &p {
            Principal::Customer { customer, .. } => Some(*customer),
            _ => None,
        },
        conversation: q.conversation_id,
        limit,
    };
    if q.mine && staff_id(&p).is_none() {
        return Err(ApiError::InvalidRequest("`mine` is for staff".into()));
    }
    let tickets = s.store.list_tickets(p.tenant(), query).await?;
    Ok(Json(TicketList {
        tickets: tickets.iter().map(|t| convert::ticket_for(&p, t)).collect(),
    }))
}

/// One ticket with its notes (customers: replies only).
#[utoipa::path(get, path = "/v1/tickets/{id}", tag = "tickets", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = TicketDetail), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_ticket(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<TicketDetail>, ApiError> {
    authorize(&p, Action::ReadTickets)?;
    let t = load_ticket(&s, &p, &id).await?;
    let staff = matches!(p, Principal::Staff { .. });
    let notes = s.store.list_ticket_notes(p.tenant(), t.id, staff).await?;
    Ok(Json(TicketDetail {
        ticket: convert::ticket_for(&p, &t),
        notes: notes.iter().map(convert::ticket_note).collect(),
    }))
}

/// Change status (the workflow is enforced: `409 conflict` for a move it does not allow), priority, department or
/// assignee.
#[utoipa::path(patch, path = "/v1/tickets/{id}", tag = "tickets", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = UpdateTicketRequest,
    responses((status = 200, body = kefu_types::Ticket), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 409, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn update_ticket(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateTicketRequest>,
) -> Result<Json<kefu_types::Ticket>, ApiError> {
    authorize(&p, Action::ManageTickets)?;
    check_opt_text("department", req.department.as_deref(), 64)?;
    if req.unassign && req.assignee_id.is_some() {
        return Err(ApiError::InvalidRequest(
            "give `assignee_id` or `unassign`, not both".into(),
        ));
    }
    check_staff_member(&s, &p, "assignee_id", req.assignee_id).await?;
    let t = load_ticket(&s, &p, &id).await?;
    let update = TicketUpdate {
        status: req.status.map(convert::ticket_status_in),
        priority: req.priority.map(convert::priority_in),
        department: req
            .department
            .map(|d| Some(d.trim().to_owned()).filter(|d| !d.is_empty())),
        assignee_id: if req.unassign {
            Some(None)
        } else {
            req.assignee_id.map(Some)
        },
        responded: false,
    };
    let t = s.store.update_ticket(p.tenant(), t.id, update).await?;
    Ok(Json(convert::ticket_for(&p, &t)))
}

/// Add an internal note or a reply the customer sees (the first reply stops the first-response clock).
#[utoipa::path(post, path = "/v1/tickets/{id}/notes", tag = "tickets", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = TicketNoteRequest,
    responses((status = 201, body = kefu_types::TicketNote), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn add_ticket_note(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TicketNoteRequest>,
) -> Result<(StatusCode, Json<kefu_types::TicketNote>), ApiError> {
    authorize(&p, Action::ManageTickets)?;
    check_text("body", &req.body, 10_000)?;
    if req.body.trim().is_empty() {
        return Err(ApiError::InvalidRequest("`body` must not be blank".into()));
    }
    let t = load_ticket(&s, &p, &id).await?;
    let note = s
        .store
        .add_ticket_note(p.tenant(), t.id, staff_id(&p), &req.body, req.internal)
        .await?;
    Ok((StatusCode::CREATED, Json(convert::ticket_note(&note))))
}
