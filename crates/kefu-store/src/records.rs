//! Domain records as stored. Times are UTC with millisecond precision (stored as epoch milliseconds).

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Now, truncated to the millisecond precision the backends store, so values round-trip exactly.
pub fn now_ms() -> DateTime<Utc> {
    from_ms(Utc::now().timestamp_millis())
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub slug: String,
    pub name: String,
    pub customer_secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    /// HMAC secret the tenant signs customer identity tokens with.
    pub customer_secret: String,
    pub model_config: Option<serde_json::Value>,
    /// The desk's settings (business hours), as set through the admin API.
    pub desk_config: Option<serde_json::Value>,
    /// The tenant's own sensitive-word list (added to the server's), as set through the admin API.
    pub moderation_config: Option<serde_json::Value>,
    /// The version of the tenant's intent classifier in use (`None`: none).
    pub intent_model: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// A stored intent classifier (its bytes are read separately: they can be megabytes).
#[derive(Debug, Clone, PartialEq)]
pub struct IntentModelRecord {
    pub tenant_id: Uuid,
    /// 1, 2, … per tenant.
    pub version: i32,
    /// What the model says about itself (labels, encoders, examples, calibration), as JSON.
    pub info: serde_json::Value,
    pub bytes: i64,
    /// The staff member who trained it (`None`: the command line or the first start).
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub tenant_id: Uuid,
    pub name: String,
    pub prefix: String,
    /// SHA-256 of the secret, hex. The secret itself is never stored.
    pub key_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub revoked: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Admin,
    Supervisor,
    Agent,
}

impl StaffRole {
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Admin => "admin",
            StaffRole::Supervisor => "supervisor",
            StaffRole::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(StaffRole::Admin),
            "supervisor" => Some(StaffRole::Supervisor),
            "agent" => Some(StaffRole::Agent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewStaffUser {
    pub tenant_id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: StaffRole,
    /// PHC-format argon2 hash.
    pub password_hash: String,
    /// The desk teams (skills) they work in; empty: a generalist.
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaffUser {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: StaffRole,
    pub password_hash: String,
    pub teams: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Changes to a staff member; `None` fields stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaffUpdate {
    pub display_name: Option<Option<String>>,
    pub role: Option<StaffRole>,
    pub teams: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationStatus {
    Open,
    Closed,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Open => "open",
            ConversationStatus::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ConversationStatus::Open),
            "closed" => Some(ConversationStatus::Closed),
            _ => None,
        }
    }
}

/// Who answers a conversation's customer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    /// The engine answers.
    Bot,
    /// Handed off: waiting for an agent to take it. The engine stores customer messages but does not answer.
    Queued,
    /// An agent holds it. The engine never calls a model for it.
    Agent,
}

impl Handler {
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Bot => "bot",
            Handler::Queued => "queued",
            Handler::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bot" => Some(Handler::Bot),
            "queued" => Some(Handler::Queued),
            "agent" => Some(Handler::Agent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub channel: String,
    pub subject: Option<String>,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub channel: String,
    pub status: ConversationStatus,
    pub handler: Handler,
    pub flagged: bool,
    pub subject: Option<String>,
    pub metadata: serde_json::Value,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The agent holding the conversation (handler `agent`), if it was taken through the desk.
    pub assignee_id: Option<Uuid>,
    /// When it last entered the queue (hand-off): the desk serves the longest-waiting first.
    pub queued_at: Option<DateTime<Utc>>,
    /// The customer's end-of-chat rating (CSAT 1–5) and comment.
    pub rating: Option<i32>,
    pub rating_comment: Option<String>,
    /// The desk team (queue) it was routed to on its last hand-off; `None`: the general queue.
    pub team: Option<String>,
}

/// An agent as the desk's assignment sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLoad {
    pub id: Uuid,
    pub role: StaffRole,
    pub display_name: Option<String>,
    /// Last heartbeat from their console; `None` if they never used one.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_assigned_at: Option<DateTime<Utc>>,
    /// Open conversations they hold.
    pub held: i64,
    /// The teams they work in; empty: a generalist.
    pub teams: Vec<String>,
}

/// A queued conversation as the desk's sweep sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRef {
    pub tenant_id: Uuid,
    pub id: Uuid,
    pub team: Option<String>,
}

/// Which queue a desk listing wants.
#[derive(Debug, Clone, PartialEq)]
pub enum TeamFilter {
    /// Conversations routed to no team.
    General,
    Team(String),
}

/// Which conversations a desk listing wants. `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationQuery {
    pub handler: Option<Handler>,
    pub status: Option<ConversationStatus>,
    pub assignee: Option<Uuid>,
    pub customer: Option<Uuid>,
    pub team: Option<TeamFilter>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRole {
    Customer,
    Assistant,
    Agent,
    System,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::Customer => "customer",
            MessageRole::Assistant => "assistant",
            MessageRole::Agent => "agent",
            MessageRole::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "customer" => Some(MessageRole::Customer),
            "assistant" => Some(MessageRole::Assistant),
            "agent" => Some(MessageRole::Agent),
            "system" => Some(MessageRole::System),
            _ => None,
        }
    }
}

/// How the model call behind an assistant message went; kept for cost and latency reporting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generation {
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub latency_ms: Option<i64>,
    /// Every model failed; the content is the polite fallback reply.
    pub fallback: bool,
    /// The turn's record (path and why, understanding, retrieval, stages): staff-only, never shown to customers.
    pub trace: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub role: MessageRole,
    pub content: String,
    pub idempotency_key: Option<String>,
    /// For an assistant reply: the customer message's seq, marked as replied in the same transaction.
    pub reply_to_seq: Option<i64>,
    pub generation: Generation,
    /// Refuse (with `ConversationClosed`) when the conversation is closed. Customer messages set this.
    pub require_open: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    pub idempotency_key: Option<String>,
    pub reply_to_seq: Option<i64>,
    pub generation: Generation,
    /// For customer messages: still waiting for an assistant reply.
    pub reply_pending: bool,
    pub created_at: DateTime<Utc>,
}

// Most events are messages; boxing the common case to shrink the rare ones would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    MessageCreated(Message),
    StatusChanged(ConversationStatus),
    Flagged {
        reason: String,
    },
    HandlerChanged {
        handler: Handler,
        reason: String,
        /// The agent now holding the conversation (desk accept or transfer); `None` otherwise.
        assignee: Option<Uuid>,
    },
    Rated {
        rating: i32,
        comment: Option<String>,
    },
}

impl EventData {
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::MessageCreated(_) => "message.created",
            EventData::StatusChanged(_) => "conversation.status_changed",
            EventData::Flagged { .. } => "conversation.flagged",
            EventData::HandlerChanged { .. } => "conversation.handler_changed",
            EventData::Rated { .. } => "conversation.rated",
        }
    }
}

/// A stored conversation event. `seq` is unique within the conversation and strictly increasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub data: EventData,
    pub created_at: DateTime<Utc>,
}

/// An image sent in a conversation; its bytes are read separately.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    pub content_type: String,
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
}
