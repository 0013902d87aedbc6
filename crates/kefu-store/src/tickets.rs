//! Tickets: work that outlives a chat (a return to check, a refund to chase). The records, the status workflow and
//! the SLA clock are here, pure, so both backends and the API share one set of rules.
//!
//! Status workflow: `open` → `pending` (waiting for the customer) → `open` …, `open|pending` → `resolved` →
//! `closed`, and `resolved` → `open` (reopened). `closed` is final.
//!
//! SLA: each priority has a first-response and a resolution target. Time spent `pending` does not count: the clock
//! pauses when a ticket becomes pending and the paused time is added to both due times when it resumes. A target
//! is *breached* when the response (or resolution) came after its due time, or has not come and the due time has
//! passed.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

impl TicketPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketPriority::Low => "low",
            TicketPriority::Normal => "normal",
            TicketPriority::High => "high",
            TicketPriority::Urgent => "urgent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(TicketPriority::Low),
            "normal" => Some(TicketPriority::Normal),
            "high" => Some(TicketPriority::High),
            "urgent" => Some(TicketPriority::Urgent),
            _ => None,
        }
    }
    /// (first response, resolution) targets. The defaults of many help desks: faster for higher priorities.
    pub fn targets(self) -> (Duration, Duration) {
        match self {
            TicketPriority::Urgent => (Duration::minutes(30), Duration::hours(4)),
            TicketPriority::High => (Duration::hours(2), Duration::hours(24)),
            TicketPriority::Normal => (Duration::hours(8), Duration::hours(72)),
            TicketPriority::Low => (Duration::hours(24), Duration::days(7)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    /// Waiting for the customer: the SLA clock is paused.
    Pending,
    Resolved,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(TicketStatus::Open),
            "pending" => Some(TicketStatus::Pending),
            "resolved" => Some(TicketStatus::Resolved),
            "closed" => Some(TicketStatus::Closed),
            _ => None,
        }
    }
    /// Whether the workflow allows going from `self` to `to` (staying put is always allowed).
    pub fn can_become(self, to: TicketStatus) -> bool {
        use TicketStatus::*;
        self == to
            || matches!(
                (self, to),
                (Open, Pending)
                    | (Open, Resolved)
                    | (Pending, Open)
                    | (Pending, Resolved)
                    | (Resolved, Open)
                    | (Resolved, Closed)
            )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTicket {
    pub tenant_id: Uuid,
    pub conversation_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub subject: String,
    pub description: String,
    pub department: Option<String>,
    pub priority: TicketPriority,
    /// `agent`, `handoff` or `flow`.
    pub source: String,
    /// The staff member who created it (none for the engine).
    pub created_by: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    /// A reference in another system (a return's RMA number).
    pub external_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Per tenant, from 1: what people say on the phone.
    pub number: i64,
    pub conversation_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub subject: String,
    pub description: String,
    pub department: Option<String>,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    pub source: String,
    pub created_by: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Due times as set at creation (or on a priority change); paused time is added by [`Ticket::sla`].
    pub first_response_due_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
    pub first_responded_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Milliseconds spent pending before the current pause.
    pub paused_ms: i64,
    /// Set while pending.
    pub paused_since: Option<DateTime<Utc>>,
    /// Optimistic concurrency: bumped by every update.
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TicketNote {
    pub id: Uuid,
    pub ticket_id: Uuid,
    pub author_id: Option<Uuid>,
    pub body: String,
    /// Internal notes are for staff only; the others are replies the customer sees.
    pub internal: bool,
    pub created_at: DateTime<Utc>,
}

/// A change to a ticket. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketUpdate {
    pub status: Option<TicketStatus>,
    pub priority: Option<TicketPriority>,
    pub department: Option<Option<String>>,
    pub assignee_id: Option<Option<Uuid>>,
    /// A reply the customer sees was sent: the first one stops the first-response clock.
    pub responded: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketQuery {
    pub status: Option<TicketStatus>,
    pub assignee: Option<Uuid>,
    pub customer: Option<Uuid>,
    pub conversation: Option<Uuid>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a ticket cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub from: &'static str,
    pub to: &'static str,
}

/// Where a ticket stands against its targets at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaState {
    /// Due times with the paused time added.
    pub first_response_due_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
    pub first_response_breached: bool,
    pub resolution_breached: bool,
    /// Milliseconds paused so far, the current pause included.
    pub paused_ms: i64,
    pub paused: bool,
}

impl NewTicket {
    /// The ticket as first stored: open, due times from the priority's targets.
    pub fn into_ticket(self, id: Uuid, number: i64, now: DateTime<Utc>) -> Ticket {
        let (respond, resolve) = self.priority.targets();
        Ticket {
            id,
            tenant_id: self.tenant_id,
            number,
            conversation_id: self.conversation_id,
            customer_id: self.customer_id,
            subject: self.subject,
            description: self.description,
            department: self.department,
            priority: self.priority,
            status: TicketStatus::Open,
            source: self.source,
            created_by: self.created_by,
            assignee_id: self.assignee_id,
            external_ref: self.external_ref,
            created_at: now,
            updated_at: now,
            first_response_due_at: now + respond,
            resolution_due_at: now + resolve,
            first_responded_at: None,
            resolved_at: None,
            paused_ms: 0,
            paused_since: None,
            version: 0,
        }
    }
}

impl Ticket {
    /// The ticket after `u` at `now`, following the workflow and keeping the SLA clock.
    pub fn apply(&self, u: &TicketUpdate, now: DateTime<Utc>) -> Result<Ticket, InvalidTransition> {
        let mut t = self.clone();
        if let Some(to) = u.status {
            if !self.status.can_become(to) {
                return Err(InvalidTransition {
                    from: self.status.as_str(),
                    to: to.as_str(),
                });
            }
            if to != self.status {
                // Leaving pending resumes the clock; entering it pauses it.
                if let Some(since) = t.paused_since.take() {
                    t.paused_ms += (now - since).num_milliseconds().max(0);
                }
                if to == TicketStatus::Pending {
                    t.paused_since = Some(now);
                }
                t.resolved_at = match to {
                    TicketStatus::Resolved => Some(now),
                    TicketStatus::Closed => t.resolved_at.or(Some(now)),
                    _ => None,
                };
                t.status = to;
            }
        }
        if let Some(p) = u.priority {
            if p != t.priority {
                // New targets count from creation, as if the ticket had had this priority from the start.
                let (respond, resolve) = p.targets();
                t.first_response_due_at = t.created_at + respond;
                t.resolution_due_at = t.created_at + resolve;
                t.priority = p;
            }
        }
        if let Some(d) = &u.department {
            t.department = d.clone();
        }
        if let Some(a) = u.assignee_id {
            t.assignee_id = a;
        }
        if u.responded && t.first_responded_at.is_none() {
            t.first_responded_at = Some(now);
        }
        t.updated_at = now;
        t.version += 1;
        Ok(t)
    }

    pub fn sla(&self, now: DateTime<Utc>) -> SlaState {
        let current = self
            .paused_since
            .map(|s| (now - s).num_milliseconds().max(0))
            .unwrap_or(0);
        let paused_ms = self.paused_ms + current;
        let paused = Duration::milliseconds(paused_ms);
        let respond_due = self.first_response_due_at + paused;
        let resolve_due = self.resolution_due_at + paused;
        // The due times include the current pause, so while paused they move with `now`: the clock stands still.
        let late = |done: Option<DateTime<Utc>>, due: DateTime<Utc>| done.unwrap_or(now) > due;
        SlaState {
            first_response_due_at: respond_due,
            resolution_due_at: resolve_due,
            first_response_breached: late(self.first_responded_at, respond_due),
            resolution_breached: late(self.resolved_at, resolve_due),
            paused_ms,
            paused: self.paused_since.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ticket(priority: TicketPriority) -> Ticket {
        NewTicket {
            tenant_id: Uuid::nil(),
            conversation_id: None,
            customer_id: None,
            subject: "退货未收到退款".into(),
            description: String::new(),
            department: None,
            priority,
            source: "agent".into(),
            created_by: None,
            assignee_id: None,
            external_ref: None,
        }
        .into_ticket(Uuid::nil(), 1, t0())
    }

    fn status(s: TicketStatus) -> TicketUpdate {
        TicketUpdate {
            status: Some(s),
            ..Default::default()
        }
    }

    #[test]
    fn the_workflow_allows_only_its_transitions() {
        use TicketStatus::*;
        let all = [Open, Pending, Resolved, Closed];
        let allowed: Vec<(TicketStatus, TicketStatus)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b && a.can_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Open, Pending),
                (Open, Resolved),
                (Pending, Open),
                (Pending, Resolved),
                (Resolved, Open),
                (Resolved, Closed)
            ]
        );
        let closed = ticket(TicketPriority::Normal)
            .apply(&status(Resolved), t0())
            .unwrap()
            .apply(&status(Closed), t0())
            .unwrap();
        let err = closed.apply(&status(Open), t0()).unwrap_err();
        assert_eq!((err.from, err.to), ("closed", "open"));
    }

    #[test]
    fn time_pending_does_not_count_against_the_sla() {
        // High: respond within 2 h. Pending from 09:30 to 11:00 (1.5 h) moves the due time to 12:30.
        let t = ticket(TicketPriority::High);
        let at = |h: i64, m: i64| t0() + Duration::hours(h) + Duration::minutes(m);
        let t = t.apply(&status(TicketStatus::Pending), at(0, 30)).unwrap();
        let paused = t.sla(at(3, 0));
        assert!(paused.paused);
        assert!(
            !paused.first_response_breached,
            "the clock stands still while pending"
        );
        let t = t.apply(&status(TicketStatus::Open), at(2, 0)).unwrap();
        let s = t.sla(at(2, 0));
        assert_eq!(s.paused_ms, 90 * 60 * 1000);
        assert_eq!(s.first_response_due_at, at(3, 30));
        assert!(!s.first_response_breached);
        // 3:20 after creation, 1:50 of it counting: in time.
        let replied = t
            .apply(
                &TicketUpdate {
                    responded: true,
                    ..Default::default()
                },
                at(3, 20),
            )
            .unwrap();
        assert!(!replied.sla(at(9, 0)).first_response_breached);
        // Without the reply, at 3:31 the target is breached.
        assert!(t.sla(at(3, 31)).first_response_breached);
        assert!(!t.sla(at(3, 29)).first_response_breached);
    }

    #[test]
    fn a_late_reply_stays_breached_and_a_reopen_clears_the_resolution() {
        let t = ticket(TicketPriority::Urgent);
        let late = t
            .apply(
                &TicketUpdate {
                    responded: true,
                    ..Default::default()
                },
                t0() + Duration::minutes(45),
            )
            .unwrap();
        assert!(late.sla(t0() + Duration::hours(1)).first_response_breached);
        let resolved = late
            .apply(&status(TicketStatus::Resolved), t0() + Duration::hours(1))
            .unwrap();
        assert!(!resolved.sla(t0() + Duration::days(2)).resolution_breached);
        let reopened = resolved
            .apply(&status(TicketStatus::Open), t0() + Duration::hours(5))
            .unwrap();
        assert_eq!(reopened.resolved_at, None);
        assert!(reopened.sla(t0() + Duration::hours(5)).resolution_breached);
        assert_eq!(reopened.version, 3);
    }

    #[test]
    fn raising_the_priority_tightens_the_targets_from_creation() {
        let t = ticket(TicketPriority::Low)
            .apply(
                &TicketUpdate {
                    priority: Some(TicketPriority::Urgent),
                    ..Default::default()
                },
                t0() + Duration::minutes(10),
            )
            .unwrap();
        assert_eq!(t.first_response_due_at, t0() + Duration::minutes(30));
        assert!(t.sla(t0() + Duration::minutes(31)).first_response_breached);
    }
}
