//! Storage: domain records, the [`Store`] trait every backend implements, and (feature `conformance`) the one
//! test suite that proves backends behave the same.
//!
//! No database driver lives here, so the engine and the API can depend on this crate without pulling in sqlx.
//! Every method that touches tenant data takes the tenant id: there is no way to ask for a row "from any tenant".

mod knowledge;
mod records;
mod tickets;
pub use knowledge::*;
pub use records::*;
pub use tickets::*;

#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;
use uuid::Uuid;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was violated (e.g. a staff email or tenant slug already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The conversation is closed and no longer accepts customer messages.
    #[error("conversation is closed")]
    ConversationClosed,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Backend(String),
}

/// What [`Store::append_message`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// A new message was stored with the next sequence number.
    Created(Message),
    /// The idempotency key was seen before: this is the original message, nothing was written.
    Duplicate(Message),
}

impl Appended {
    pub fn message(&self) -> &Message {
        match self {
            Appended::Created(m) | Appended::Duplicate(m) => m,
        }
    }
    pub fn into_message(self) -> Message {
        match self {
            Appended::Created(m) | Appended::Duplicate(m) => m,
        }
    }
}

/// The persistence port. Implementations: `kefu-store-sql` (SQLite, PostgreSQL).
#[async_trait]
pub trait Store: KnowledgeStore + Send + Sync + 'static {
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Human-readable backend name ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    // -- tenants
    async fn create_tenant(&self, new: NewTenant) -> Result<Tenant>;
    async fn get_tenant(&self, id: Uuid) -> Result<Option<Tenant>>;
    async fn get_tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>>;
    async fn count_tenants(&self) -> Result<u64>;
    /// Replace the tenant's model configuration (`None` = use the server default).
    async fn set_tenant_model_config(
        &self,
        tenant: Uuid,
        config: Option<serde_json::Value>,
    ) -> Result<()>;
    async fn set_tenant_customer_secret(&self, tenant: Uuid, secret: &str) -> Result<()>;
    async fn set_tenant_desk_config(
        &self,
        tenant: Uuid,
        config: Option<serde_json::Value>,
    ) -> Result<()>;
    async fn set_tenant_moderation_config(
        &self,
        tenant: Uuid,
        config: Option<serde_json::Value>,
    ) -> Result<()>;

    // -- intent models
    /// Stores a trained intent classifier as the tenant's next version (`NotFound` for an unknown tenant); with
    /// `activate`, it becomes the one in use in the same transaction.
    async fn add_intent_model(
        &self,
        tenant: Uuid,
        info: serde_json::Value,
        data: &[u8],
        created_by: Option<Uuid>,
        activate: bool,
    ) -> Result<IntentModelRecord>;
    /// The tenant's models, newest first, without their bytes.
    async fn list_intent_models(&self, tenant: Uuid) -> Result<Vec<IntentModelRecord>>;
    async fn get_intent_model(
        &self,
        tenant: Uuid,
        version: i32,
    ) -> Result<Option<(IntentModelRecord, Vec<u8>)>>;
    /// Puts a version in use (`None`: no intent model); `NotFound` when this tenant has no such version.
    async fn set_intent_model(&self, tenant: Uuid, version: Option<i32>) -> Result<()>;
    /// Deletes a version; `Conflict` while it is in use, `NotFound` when there is no such version.
    async fn delete_intent_model(&self, tenant: Uuid, version: i32) -> Result<()>;

    // -- API keys
    async fn create_api_key(&self, new: NewApiKey) -> Result<ApiKey>;
    /// Looks a key up by the hash of its secret, across tenants (the key names its tenant). Revoked keys included.
    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    async fn list_api_keys(&self, tenant: Uuid) -> Result<Vec<ApiKey>>;
    /// Returns false when no such key exists in this tenant.
    async fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> Result<bool>;

    // -- staff
    async fn create_staff(&self, new: NewStaffUser) -> Result<StaffUser>;
    async fn get_staff(&self, tenant: Uuid, id: Uuid) -> Result<Option<StaffUser>>;
    async fn get_staff_by_email(&self, tenant: Uuid, email: &str) -> Result<Option<StaffUser>>;
    async fn list_staff(&self, tenant: Uuid) -> Result<Vec<StaffUser>>;
    /// Changes a staff member of this tenant (`NotFound` otherwise).
    async fn update_staff(&self, tenant: Uuid, id: Uuid, u: StaffUpdate) -> Result<StaffUser>;

    // -- customers
    /// Finds the customer with this external id, or creates it. `external_id = None` creates an anonymous customer.
    async fn upsert_customer(
        &self,
        tenant: Uuid,
        external_id: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<Customer>;
    async fn get_customer(&self, tenant: Uuid, id: Uuid) -> Result<Option<Customer>>;

    // -- conversations
    async fn create_conversation(&self, new: NewConversation) -> Result<Conversation>;
    async fn get_conversation(&self, tenant: Uuid, id: Uuid) -> Result<Option<Conversation>>;
    /// Changes the status and appends a `conversation.status_changed` event. No event when the status is unchanged.
    async fn set_conversation_status(
        &self,
        tenant: Uuid,
        id: Uuid,
        status: ConversationStatus,
    ) -> Result<(Conversation, Option<Event>)>;
    /// Sets the flag and appends a `conversation.flagged` event with the reason.
    async fn flag_conversation(&self, tenant: Uuid, id: Uuid, reason: &str) -> Result<Event>;
    /// Changes who answers the conversation and appends a `conversation.handler_changed` event with the reason.
    /// Clears the assignee (an integration's own agents are not ours); `queued` stamps `queued_at`.
    /// No event when the handler is unchanged. Closed conversations keep their handler (`ConversationClosed`).
    async fn set_conversation_handler(
        &self,
        tenant: Uuid,
        id: Uuid,
        handler: Handler,
        reason: &str,
    ) -> Result<(Conversation, Option<Event>)>;

    /// The desk's view: conversations matching `q`, queued ones longest-waiting first, others most recently
    /// updated first.
    async fn list_conversations(
        &self,
        tenant: Uuid,
        q: ConversationQuery,
    ) -> Result<Vec<Conversation>>;
    /// Gives an open conversation to `agent` (handler `agent`) and appends a `conversation.handler_changed` event.
    /// Compare-and-set: with `from = None` (accept) only a conversation no agent holds; with `from = Some(a)`
    /// (transfer) only one `a` holds. Otherwise `Conflict` — two agents accepting at once get one winner. Taking a
    /// conversation one already holds changes nothing (no event).
    async fn assign_conversation(
        &self,
        tenant: Uuid,
        id: Uuid,
        agent: Uuid,
        from: Option<Uuid>,
        reason: &str,
    ) -> Result<(Conversation, Option<Event>)>;
    /// Records an agent's heartbeat (their console is open).
    async fn touch_staff(&self, tenant: Uuid, user: Uuid) -> Result<()>;
    /// The tenant's staff with presence and how many open conversations each holds.
    async fn desk_agents(&self, tenant: Uuid) -> Result<Vec<AgentLoad>>;
    /// Open conversations held by agents whose last heartbeat is older than `cutoff` (agents who never sent one
    /// are not included): (tenant, conversation, agent), across tenants.
    async fn stale_holds(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<(Uuid, Uuid, Uuid)>>;
    /// Queued open conversations across tenants, longest-waiting first.
    async fn queued_conversations(&self, limit: u32) -> Result<Vec<QueuedRef>>;
    /// Routes a conversation to a desk team's queue (`None`: the general queue) with a
    /// `conversation.handler_changed` event (handler `queued`). Compare-and-set: with `from = Some(a)` (a transfer)
    /// only a conversation `a` holds; with `from = None` (a hand-off, or re-routing a queued one) only one no agent
    /// holds. Otherwise `Conflict`. A queued conversation keeps its place in the queue; routing one already queued
    /// for that team changes nothing (no event).
    async fn route_conversation(
        &self,
        tenant: Uuid,
        id: Uuid,
        team: Option<&str>,
        from: Option<Uuid>,
        reason: &str,
    ) -> Result<(Conversation, Option<Event>)>;
    /// Puts a conversation `agent` holds back in the queue (compare-and-set: nothing if someone else holds it
    /// now), with a `conversation.handler_changed` event.
    async fn requeue_conversation(
        &self,
        tenant: Uuid,
        id: Uuid,
        agent: Uuid,
        reason: &str,
    ) -> Result<Option<Event>>;
    /// Records a customer's rating (1–5, checked by the caller) and appends a `conversation.rated` event; a later
    /// rating replaces an earlier one.
    async fn rate_conversation(
        &self,
        tenant: Uuid,
        id: Uuid,
        rating: i32,
        comment: Option<&str>,
    ) -> Result<(Conversation, Event)>;

    // -- attachments
    /// Stores an image of a conversation in this tenant (`NotFound` otherwise).
    async fn add_attachment(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        content_type: &str,
        data: &[u8],
    ) -> Result<Attachment>;
    async fn get_attachment(&self, tenant: Uuid, id: Uuid)
        -> Result<Option<(Attachment, Vec<u8>)>>;

    // -- tickets
    /// Stores a new ticket with the tenant's next number.
    async fn create_ticket(&self, new: NewTicket) -> Result<Ticket>;
    async fn get_ticket(&self, tenant: Uuid, id: Uuid) -> Result<Option<Ticket>>;
    /// Newest first.
    async fn list_tickets(&self, tenant: Uuid, q: TicketQuery) -> Result<Vec<Ticket>>;
    /// Applies `u` (the workflow and SLA rules of [`Ticket::apply`]) atomically: a concurrent change is retried
    /// on the fresh row. `Conflict` for a transition the workflow does not allow.
    async fn update_ticket(&self, tenant: Uuid, id: Uuid, u: TicketUpdate) -> Result<Ticket>;
    /// Adds a note; a note the customer sees counts as the first response.
    async fn add_ticket_note(
        &self,
        tenant: Uuid,
        ticket: Uuid,
        author: Option<Uuid>,
        body: &str,
        internal: bool,
    ) -> Result<TicketNote>;
    /// Oldest first; internal notes only when asked for.
    async fn list_ticket_notes(
        &self,
        tenant: Uuid,
        ticket: Uuid,
        include_internal: bool,
    ) -> Result<Vec<TicketNote>>;

    // -- messages and events (one sequence per conversation, shared by both)
    /// Stores a message exactly once: the next sequence number, a `message.created` event, and — for an assistant
    /// reply — marks the customer message it answers as replied, all in one transaction. A repeated
    /// idempotency key returns the original message and writes nothing.
    async fn append_message(&self, new: NewMessage) -> Result<Appended>;
    async fn list_messages(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>>;
    async fn get_message_by_seq(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        seq: i64,
    ) -> Result<Option<Message>>;
    /// The assistant message answering the customer message `seq`, if any.
    async fn find_reply(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        seq: i64,
    ) -> Result<Option<Message>>;
    async fn list_events(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Event>>;
    /// Customer messages still waiting for an assistant reply in open conversations (oldest first), across
    /// tenants: used at start-up to finish turns interrupted by a crash or restart.
    async fn list_pending_replies(&self, limit: u32) -> Result<Vec<Message>>;
    /// Marks a customer message as no longer waiting for a reply (e.g. its conversation was closed).
    async fn mark_reply_settled(&self, tenant: Uuid, conversation: Uuid, seq: i64) -> Result<()>;
}
