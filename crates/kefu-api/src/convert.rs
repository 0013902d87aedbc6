//! Storage records → wire DTOs.

use kefu_store as s;
use kefu_types as t;

use crate::auth::Principal;

pub fn staff_role(r: s::StaffRole) -> t::StaffRole {
    match r {
        s::StaffRole::Admin => t::StaffRole::Admin,
        s::StaffRole::Supervisor => t::StaffRole::Supervisor,
        s::StaffRole::Agent => t::StaffRole::Agent,
    }
}

pub fn staff_role_in(r: t::StaffRole) -> s::StaffRole {
    match r {
        t::StaffRole::Admin => s::StaffRole::Admin,
        t::StaffRole::Supervisor => s::StaffRole::Supervisor,
        t::StaffRole::Agent => s::StaffRole::Agent,
    }
}

pub fn status(st: s::ConversationStatus) -> t::ConversationStatus {
    match st {
        s::ConversationStatus::Open => t::ConversationStatus::Open,
        s::ConversationStatus::Closed => t::ConversationStatus::Closed,
    }
}

pub fn status_in(st: t::ConversationStatus) -> s::ConversationStatus {
    match st {
        t::ConversationStatus::Open => s::ConversationStatus::Open,
        t::ConversationStatus::Closed => s::ConversationStatus::Closed,
    }
}

pub fn handler(h: s::Handler) -> t::Handler {
    match h {
        s::Handler::Bot => t::Handler::Bot,
        s::Handler::Queued => t::Handler::Queued,
        s::Handler::Agent => t::Handler::Agent,
    }
}

pub fn handler_in(h: t::Handler) -> s::Handler {
    match h {
        t::Handler::Bot => s::Handler::Bot,
        t::Handler::Queued => s::Handler::Queued,
        t::Handler::Agent => s::Handler::Agent,
    }
}

pub fn conversation(c: s::Conversation) -> t::Conversation {
    t::Conversation {
        id: c.id,
        customer_id: c.customer_id,
        channel: c.channel,
        status: status(c.status),
        handler: handler(c.handler),
        flagged: c.flagged,
        subject: c.subject,
        metadata: c.metadata,
        last_seq: c.last_seq,
        created_at: c.created_at,
        updated_at: c.updated_at,
        closed_at: c.closed_at,
        assignee_id: c.assignee_id,
        queued_at: c.queued_at,
        rating: c.rating,
        rating_comment: c.rating_comment,
        team: c.team,
    }
}

fn message_role(r: s::MessageRole) -> t::MessageRole {
    match r {
        s::MessageRole::Customer => t::MessageRole::Customer,
        s::MessageRole::Assistant => t::MessageRole::Assistant,
        s::MessageRole::Agent => t::MessageRole::Agent,
        s::MessageRole::System => t::MessageRole::System,
    }
}

pub fn message(m: &s::Message) -> t::Message {
    t::Message {
        id: m.id,
        conversation_id: m.conversation_id,
        seq: m.seq,
        role: message_role(m.role),
        content: m.content.clone(),
        reply_to_seq: m.reply_to_seq,
        idempotency_key: m.idempotency_key.clone(),
        model: m.generation.model.clone(),
        prompt_tokens: m.generation.prompt_tokens,
        completion_tokens: m.generation.completion_tokens,
        latency_ms: m.generation.latency_ms,
        fallback: m.generation.fallback,
        created_at: m.created_at,
    }
}

/// Customers see their own words and the answers, not our internals (which model, token counts).
pub fn message_for(p: &Principal, m: &s::Message) -> t::Message {
    let mut dto = message(m);
    if matches!(p, Principal::Customer { .. }) {
        dto.model = None;
        dto.prompt_tokens = None;
        dto.completion_tokens = None;
        dto.latency_ms = None;
        if m.role == s::MessageRole::Assistant {
            dto.idempotency_key = None;
        }
    }
    dto
}

pub fn customer(c: s::Customer) -> t::Customer {
    t::Customer {
        id: c.id,
        anonymous: c.external_id.is_none(),
        external_id: c.external_id,
        display_name: c.display_name,
        created_at: c.created_at,
    }
}

pub fn api_key(k: s::ApiKey) -> t::ApiKey {
    t::ApiKey {
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        revoked: k.revoked,
        created_at: k.created_at,
    }
}

pub fn staff(u: s::StaffUser) -> t::StaffUser {
    t::StaffUser {
        id: u.id,
        email: u.email,
        display_name: u.display_name,
        role: staff_role(u.role),
        teams: u.teams,
        created_at: u.created_at,
    }
}

pub fn stream_event(p: &Principal, o: &kefu_engine::Outgoing) -> t::StreamEvent {
    use kefu_engine::{LiveEvent, Outgoing};
    match o {
        Outgoing::Live(LiveEvent::Stored(ev)) => match &ev.data {
            s::EventData::MessageCreated(m) => t::StreamEvent::MessageCreated {
                seq: ev.seq,
                message: message_for(p, m),
            },
            s::EventData::StatusChanged(st) => t::StreamEvent::StatusChanged {
                seq: ev.seq,
                status: status(*st),
            },
            s::EventData::Flagged { reason } => t::StreamEvent::Flagged {
                seq: ev.seq,
                reason: reason.clone(),
            },
            s::EventData::HandlerChanged {
                handler: h,
                reason,
                assignee,
            } => t::StreamEvent::HandlerChanged {
                seq: ev.seq,
                handler: handler(*h),
                reason: reason.clone(),
                assignee: *assignee,
            },
            s::EventData::Rated { rating, comment } => t::StreamEvent::Rated {
                seq: ev.seq,
                rating: *rating,
                comment: comment.clone(),
            },
        },
        Outgoing::Live(LiveEvent::Delta {
            reply_to,
            offset,
            text,
        }) => t::StreamEvent::Delta {
            reply_to_seq: *reply_to,
            offset: *offset,
            text: text.to_string(),
        },
        Outgoing::Live(LiveEvent::Reset { reply_to }) => t::StreamEvent::Reset {
            reply_to_seq: *reply_to,
        },
        Outgoing::Live(LiveEvent::Signal(kefu_engine::Signal::Typing { role, typing })) => {
            t::StreamEvent::Typing {
                role: message_role(*role),
                typing: *typing,
            }
        }
        Outgoing::Live(LiveEvent::Signal(kefu_engine::Signal::Read { role, seq })) => {
            t::StreamEvent::Read {
                role: message_role(*role),
                seq: *seq,
            }
        }
        Outgoing::Shutdown => t::StreamEvent::Shutdown,
        Outgoing::Error { code, message } => t::StreamEvent::Error {
            code: (*code).to_owned(),
            message: message.clone(),
        },
    }
}

pub fn priority_in(p: t::TicketPriority) -> s::TicketPriority {
    match p {
        t::TicketPriority::Low => s::TicketPriority::Low,
        t::TicketPriority::Normal => s::TicketPriority::Normal,
        t::TicketPriority::High => s::TicketPriority::High,
        t::TicketPriority::Urgent => s::TicketPriority::Urgent,
    }
}

fn priority(p: s::TicketPriority) -> t::TicketPriority {
    match p {
        s::TicketPriority::Low => t::TicketPriority::Low,
        s::TicketPriority::Normal => t::TicketPriority::Normal,
        s::TicketPriority::High => t::TicketPriority::High,
        s::TicketPriority::Urgent => t::TicketPriority::Urgent,
    }
}

pub fn ticket_status_in(st: t::TicketStatus) -> s::TicketStatus {
    match st {
        t::TicketStatus::Open => s::TicketStatus::Open,
        t::TicketStatus::Pending => s::TicketStatus::Pending,
        t::TicketStatus::Resolved => s::TicketStatus::Resolved,
        t::TicketStatus::Closed => s::TicketStatus::Closed,
    }
}

fn ticket_status(st: s::TicketStatus) -> t::TicketStatus {
    match st {
        s::TicketStatus::Open => t::TicketStatus::Open,
        s::TicketStatus::Pending => t::TicketStatus::Pending,
        s::TicketStatus::Resolved => t::TicketStatus::Resolved,
        s::TicketStatus::Closed => t::TicketStatus::Closed,
    }
}

/// Staff see everything, with the SLA clock as of now; customers see status and subject, not who works on it or
/// how it stands against internal targets.
pub fn ticket_for(p: &Principal, tk: &s::Ticket) -> t::Ticket {
    let staff = matches!(p, Principal::Staff { .. } | Principal::ApiClient { .. });
    let sla = staff.then(|| {
        let st = tk.sla(s::now_ms());
        t::TicketSla {
            first_response_due_at: st.first_response_due_at,
            resolution_due_at: st.resolution_due_at,
            first_response_breached: st.first_response_breached,
            resolution_breached: st.resolution_breached,
            paused: st.paused,
            paused_ms: st.paused_ms,
        }
    });
    t::Ticket {
        id: tk.id,
        number: tk.number,
        conversation_id: tk.conversation_id,
        customer_id: tk.customer_id,
        subject: tk.subject.clone(),
        description: if staff {
            tk.description.clone()
        } else {
            String::new()
        },
        department: tk.department.clone(),
        priority: priority(tk.priority),
        status: ticket_status(tk.status),
        source: tk.source.clone(),
        assignee_id: if staff { tk.assignee_id } else { None },
        external_ref: tk.external_ref.clone(),
        created_at: tk.created_at,
        updated_at: tk.updated_at,
        first_responded_at: tk.first_responded_at,
        resolved_at: tk.resolved_at,
        sla,
    }
}

pub fn ticket_note(n: &s::TicketNote) -> t::TicketNote {
    t::TicketNote {
        id: n.id,
        author_id: n.author_id,
        body: n.body.clone(),
        internal: n.internal,
        created_at: n.created_at,
    }
}
