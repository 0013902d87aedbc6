//! Wire DTOs: the JSON shapes the API speaks, shared with the web apps and the OpenAPI document.
//!
//! Everything here is plain data (serde + utoipa schemas). Request types reject unknown fields so a typo in a
//! client is a clear `invalid_request` error instead of silently ignored input.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The error body every failing endpoint returns.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ErrorDetail {
    /// Stable snake_case code; clients branch on this, never on `message`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Admin,
    Supervisor,
    Agent,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Tenant slug.
    pub tenant: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerSessionRequest {
    /// Tenant slug.
    pub tenant: String,
    /// Optional identity token signed by the tenant (HS256 JWT with the tenant's customer secret; `sub` is the
    /// customer's id in the tenant's own systems). Without it an anonymous customer is created.
    #[serde(default)]
    pub identity_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerSessionResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub customer: Customer,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Customer {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub anonymous: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// For API clients: the customer's id in your own systems (created on first use). Customers omit it.
    #[serde(default)]
    pub customer_external_id: Option<String>,
    #[serde(default)]
    pub customer_display_name: Option<String>,
    /// Channel the conversation arrives on: `web`, `api`, `wecom`, `telegram`, `email`, ... (default `api`).
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// Free-form metadata kept with the conversation.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Open,
    Closed,
}

/// Who answers a conversation's customer messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    /// The assistant answers.
    Bot,
    /// Handed off and waiting for an agent; the assistant stays silent.
    Queued,
    /// An agent holds the conversation; the assistant never answers.
    Agent,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Conversation {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub channel: String,
    pub status: ConversationStatus,
    pub handler: Handler,
    /// Set when something needs a human's attention (e.g. every model failed).
    pub flagged: bool,
    pub subject: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Sequence number of the newest event in this conversation.
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The agent holding it (after a desk accept or transfer).
    #[serde(default)]
    pub assignee_id: Option<Uuid>,
    /// When it last entered the human queue.
    #[serde(default)]
    pub queued_at: Option<DateTime<Utc>>,
    /// The customer's end-of-chat rating (1–5) and comment.
    #[serde(default)]
    pub rating: Option<i32>,
    #[serde(default)]
    pub rating_comment: Option<String>,
    /// The desk team (queue) its last hand-off was routed to; absent: the general queue.
    #[serde(default)]
    pub team: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    Customer,
    Assistant,
    Agent,
    System,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// Per-conversation sequence number, shared with the event stream.
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    /// For assistant messages: the sequence number of the customer message answered.
    pub reply_to_seq: Option<i64>,
    pub idempotency_key: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub latency_ms: Option<i64>,
    /// `true` when every model failed and this is the polite fallback reply.
    pub fallback: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SendMessageResponse {
    /// The stored customer message.
    pub message: Message,
    /// The assistant's reply, when `wait=true` was asked for and it finished in time, or on a replay after it
    /// finished. Otherwise follow the event stream.
    pub reply: Option<Message>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<Message>,
    /// Pass as `after` to fetch the next page; equals the last message's seq.
    pub next_after: i64,
    pub has_more: bool,
}

/// One event on a conversation's stream (SSE `data:` or a WebSocket text frame).
///
/// Stored events carry `seq`; reconnect with `after=<last seq>` (or SSE `Last-Event-ID`) to resume. Token deltas are
/// not stored: on resume the partial answer so far arrives as one delta with `offset: 0`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "message.created")]
    MessageCreated { seq: i64, message: Message },
    #[serde(rename = "conversation.status_changed")]
    StatusChanged {
        seq: i64,
        status: ConversationStatus,
    },
    #[serde(rename = "conversation.flagged")]
    Flagged { seq: i64, reason: String },
    /// The conversation was handed to people, or back to the assistant.
    #[serde(rename = "conversation.handler_changed")]
    HandlerChanged {
        seq: i64,
        handler: Handler,
        reason: String,
        /// The agent now holding the conversation, when an agent took it through the desk.
        #[serde(default)]
        assignee: Option<Uuid>,
    },
    /// The customer rated the conversation.
    #[serde(rename = "conversation.rated")]
    Rated {
        seq: i64,
        rating: i32,
        comment: Option<String>,
    },
    /// Assistant tokens as they are generated. `offset` is the character offset of `text` in the reply so far:
    /// append when it equals what you have, ignore when you already have it.
    #[serde(rename = "message.delta")]
    Delta {
        reply_to_seq: i64,
        offset: usize,
        text: String,
    },
    /// The model stream broke and a retry started over: drop the partial text of this reply.
    #[serde(rename = "message.reset")]
    Reset { reply_to_seq: i64 },
    /// The customer or the agent started or stopped typing (live only, never replayed).
    #[serde(rename = "conversation.typing")]
    Typing { role: MessageRole, typing: bool },
    /// The customer or the agent has seen every message up to `seq` (live only, never replayed).
    #[serde(rename = "conversation.read")]
    Read { role: MessageRole, seq: i64 },
    /// The server is shutting down; reconnect with `after` to resume elsewhere.
    #[serde(rename = "server.shutdown")]
    Shutdown,
    /// An error on this stream (e.g. lost position); reconnect with `after`.
    #[serde(rename = "error")]
    Error { code: String, message: String },
}

impl StreamEvent {
    pub fn seq(&self) -> Option<i64> {
        match self {
            StreamEvent::MessageCreated { seq, .. }
            | StreamEvent::StatusChanged { seq, .. }
            | StreamEvent::Flagged { seq, .. }
            | StreamEvent::HandlerChanged { seq, .. }
            | StreamEvent::Rated { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageCreated { .. } => "message.created",
            StreamEvent::StatusChanged { .. } => "conversation.status_changed",
            StreamEvent::Flagged { .. } => "conversation.flagged",
            StreamEvent::HandlerChanged { .. } => "conversation.handler_changed",
            StreamEvent::Rated { .. } => "conversation.rated",
            StreamEvent::Delta { .. } => "message.delta",
            StreamEvent::Reset { .. } => "message.reset",
            StreamEvent::Typing { .. } => "conversation.typing",
            StreamEvent::Read { .. } => "conversation.read",
            StreamEvent::Shutdown => "server.shutdown",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// Frames a WebSocket client may send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ClientFrame {
    #[serde(rename = "message.send")]
    SendMessage {
        content: String,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Keep-alive for clients that cannot send WebSocket pings. (A struct variant, because serde ignores
    /// `deny_unknown_fields` on unit variants of internally tagged enums.)
    #[serde(rename = "ping")]
    Ping {},
    /// The sender started or stopped typing.
    #[serde(rename = "typing")]
    Typing { typing: bool },
    /// The sender has seen every message up to `seq`.
    #[serde(rename = "read")]
    Read { seq: i64 },
}

/// Typing on or off (`POST /v1/conversations/{id}/typing`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingRequest {
    pub typing: bool,
}

/// Seen up to `seq` (`POST /v1/conversations/{id}/read`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub seq: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// First characters of the key, to recognise it; the key itself is stored only as a hash.
    pub prefix: String,
    pub revoked: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    /// The secret key: shown once, never again.
    pub key: String,
    pub api_key: ApiKey,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStaffRequest {
    pub email: String,
    pub password: String,
    pub role: StaffRole,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Desk teams (skills) they work in, each one of the desk settings' `teams`; empty: a generalist.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// Fields to change on a staff member; absent ones stay. `display_name: ""` clears it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStaffRequest {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub role: Option<StaffRole>,
    /// Replaces their teams (each one of the desk settings' `teams`).
    #[serde(default)]
    pub teams: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StaffUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: StaffRole,
    /// Desk teams (skills); empty: a generalist.
    #[serde(default)]
    pub teams: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantInfo {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CustomerSecret {
    /// HMAC secret the tenant's own backend uses to sign customer identity tokens (HS256).
    pub customer_secret: String,
}

/// One OpenAI-compatible endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name used by `chain` entries.
    pub name: String,
    /// Base URL up to and including `/v1`, e.g. `https://api.deepseek.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// Bearer key; write-only: reads return `"***"` when one is set. Send `"***"` back to keep the stored key.
    #[serde(default)]
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChainEntry {
    pub provider: String,
    pub model: String,
    /// Price per million prompt tokens, in the setup's `currency` (for cost reports; optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_price: Option<f64>,
    /// Price per million completion tokens, in the setup's `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_price: Option<f64>,
}

/// A tenant's model setup: providers and the ordered fallback chain. Takes effect on the next message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub providers: Vec<ProviderConfig>,
    /// Tried in order; the next entry is used when one fails after its retries.
    pub chain: Vec<ChainEntry>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// System prompt (persona) for the assistant.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// A cheaper chain for simple, confident turns (the engine's `cheap` tier: a clear, calm, single question);
    /// upset, complex, sensitive or uncertain turns keep `chain`. Empty: `chain` answers everything.
    #[serde(default)]
    pub cheap_chain: Vec<ChainEntry>,
    /// The currency of the prices (e.g. `CNY`, `USD`).
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelConfigResponse {
    /// `tenant` when the tenant set its own, `default` when the server's configured default applies.
    pub source: String,
    pub config: ModelConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub checks: Vec<ReadinessCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadinessCheck {
    pub name: String,
    pub ok: bool,
    /// Required checks decide readiness; the others inform (e.g. a missing local model: messages are still
    /// accepted and answered with the fallback reply).
    pub required: bool,
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stream_event_round_trips_with_type_tag() {
        let ev = StreamEvent::Delta {
            reply_to_seq: 3,
            offset: 5,
            text: "你好".into(),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"type":"message.delta","reply_to_seq":3,"offset":5,"text":"你好"}"#
        );
        assert_eq!(serde_json::from_str::<StreamEvent>(&json).unwrap(), ev);
    }

    #[test]
    fn requests_reject_unknown_fields() {
        let err = serde_json::from_str::<SendMessageRequest>(r#"{"content":"hi","contnet":"x"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ping","x":1}"#).is_err());
    }

    proptest! {
        // The decoder never panics on arbitrary bytes and accepts exactly well-formed bodies.
        #[test]
        fn send_message_decoder_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = serde_json::from_slice::<SendMessageRequest>(&bytes);
            let _ = serde_json::from_slice::<CreateConversationRequest>(&bytes);
            let _ = serde_json::from_slice::<ClientFrame>(&bytes);
        }

        #[test]
        fn send_message_round_trips_any_text(content in ".*") {
            let body = serde_json::to_vec(&SendMessageRequest { content: content.clone() }).unwrap();
            let back: SendMessageRequest = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(back.content, content);
        }
    }
}

// ---- knowledge base ----------------------------------------------------------------------------------------------

/// One file to import. Text formats may be sent as `content`; any format (PDF) as `content_base64`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KbFile {
    /// File name or path, e.g. `help/returns.md`: the format follows from its extension, and importing the same
    /// source into the same collection again replaces the document.
    pub source: String,
    pub content: Option<String>,
    pub content_base64: Option<String>,
    /// `markdown`, `html`, `pdf`, `text`, `faq_csv` or `faq_json`, when the extension does not say.
    pub format: Option<String>,
}

/// Import one or more files. One file is imported before the response; several run as a background job.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KbImportRequest {
    /// Default `default`.
    pub collection: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub files: Vec<KbFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbFileReport {
    pub source: String,
    /// `imported`, `unchanged` or `failed`.
    pub status: String,
    pub document_id: Option<Uuid>,
    pub chunks: usize,
    /// Chunks whose vectors were reused from the document's previous version.
    pub reused_vectors: usize,
    pub error: Option<ErrorDetail>,
}

/// A background import and its per-file report so far.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbImportJob {
    pub id: Uuid,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub total: i64,
    pub done: i64,
    pub files: Vec<KbFileReport>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The result of an import request: the report when it ran at once, the job when it runs in the background.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbImportResponse {
    pub files: Vec<KbFileReport>,
    pub job: Option<KbImportJob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbDocument {
    pub id: Uuid,
    pub collection: String,
    pub source: String,
    pub title: String,
    pub format: String,
    pub lang: String,
    pub tags: Vec<String>,
    pub bytes: i64,
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbChunk {
    pub id: Uuid,
    pub ord: i64,
    pub headings: Vec<String>,
    pub text: String,
    /// Lines, pages or FAQ row: `{line_start, line_end}`, `{page_start, page_end}`, `{row}`, `{paragraph}`.
    pub location: serde_json::Value,
    pub lang: String,
    pub tags: Vec<String>,
    pub tokens: i64,
    /// For FAQ entries: `{question, alternatives, answer, tags}`.
    pub faq: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbDocumentDetail {
    pub document: KbDocument,
    pub chunks: Vec<KbChunk>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KbSearchRequest {
    pub query: String,
    /// Search only these collections (default: all).
    #[serde(default)]
    pub collections: Vec<String>,
    /// `zh`, `en`, …: only chunks in this language.
    pub lang: Option<String>,
    /// Only chunks with at least one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Results wanted, 1–50 (default from settings).
    pub k: Option<usize>,
}

/// A score and the 1-based rank in its retriever's own list (`null` rank: scored for fusion only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbRankedScore {
    pub score: f32,
    pub rank: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbScores {
    pub bm25: Option<KbRankedScore>,
    /// Cosine similarity to the query.
    pub dense: Option<KbRankedScore>,
    /// What results are ordered by.
    pub fused: f32,
    pub rerank: Option<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbCitation {
    pub document_id: Uuid,
    pub title: String,
    pub source: String,
    pub location: serde_json::Value,
    /// For people, e.g. `退货政策 › 退款时间 (lines 7–8)`.
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbSearchHit {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub collection: String,
    pub text: String,
    pub headings: Vec<String>,
    pub lang: String,
    pub tags: Vec<String>,
    pub scores: KbScores,
    pub citation: KbCitation,
    /// Set for FAQ entries: the curated question and answer.
    pub faq: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbSearchResponse {
    pub hits: Vec<KbSearchHit>,
    /// `hybrid`, or `bm25` when no embedder is available.
    pub mode: String,
    /// Nothing passed the relevance threshold: these are keyword matches.
    pub keyword_fallback: bool,
    pub took_ms: f64,
}

/// This node's knowledge index.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct KbIndexStats {
    pub chunks: u64,
    pub vectors: u64,
    /// The last change-log position applied.
    pub cursor: i64,
    pub embedder: Option<String>,
}

/// Hands a conversation to people or back to the assistant.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetHandlerRequest {
    pub handler: Handler,
    /// Why, for the conversation's record (up to 200 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Hand a held conversation to another agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The agent to hand it to; or
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    /// the team whose queue it goes back to (one of the desk settings' `teams`). Exactly one of the two.
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The customer's end-of-chat rating.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingRequest {
    /// 1 (very unhappy) to 5 (very happy).
    pub rating: i32,
    /// Up to 1,000 characters.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The customer asks for a person ("talk to a human" button).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// Why, in the customer's words (optional, up to 200 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
}

/// One row of the desk: a conversation with who it is and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeskConversation {
    pub conversation: Conversation,
    pub customer: Customer,
    /// The newest customer message, for the list.
    pub last_customer_message: Option<String>,
    /// Why it was handed to people (`asked_for_human`, `negative_streak`, `customer_button`, …).
    pub handoff_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeskList {
    pub conversations: Vec<DeskConversation>,
}

/// One customer turn's emotion, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BriefEmotion {
    pub seq: i64,
    pub polarity: String,
    pub intensity: f32,
    pub emotion: Option<String>,
}

/// What the assistant did for one customer turn.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BriefAttempt {
    /// The customer message it answered.
    pub seq: i64,
    pub question: String,
    pub path: String,
    pub reason: String,
    pub answer: String,
    pub confidence: f32,
    pub unsure: bool,
    /// Citations of the passages it used, and the tools it called.
    pub sources: Vec<String>,
}

/// A ticket filled in from the conversation, for the agent to confirm.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TicketDraft {
    pub subject: String,
    /// `low`, `normal`, `high` or `urgent` (from emotion and tier).
    pub priority: String,
    pub category: Option<String>,
    pub description: String,
}

/// What an agent needs on taking over a conversation: staff only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HandoffBrief {
    pub conversation: Conversation,
    pub customer: Customer,
    /// `zh` or `en`: the customer's language, and the language of the summary and suggestion.
    pub language: String,
    /// Why it came to people.
    pub handoff_reason: Option<String>,
    /// A few sentences: what the customer wants, how they feel, what was tried.
    pub summary: String,
    /// The latest classified intent.
    pub intent: Option<String>,
    pub emotions: Vec<BriefEmotion>,
    pub attempts: Vec<BriefAttempt>,
    /// The shop's profile of the customer (tier, points), when the business declares a profile tool.
    #[schema(value_type = Option<Object>)]
    pub profile: Option<serde_json::Value>,
    /// The customer's recent orders, when the business declares an orders tool.
    #[schema(value_type = Option<Object>)]
    pub recent_orders: Option<serde_json::Value>,
    /// A first reply the agent can send or edit (written from templates, not by a model).
    pub suggested_reply: String,
    pub ticket: TicketDraft,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

/// `open` → `pending` (waiting for the customer; the SLA clock pauses) → `open`; `open|pending` → `resolved` →
/// `closed` (final); `resolved` → `open` (reopen).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    Pending,
    Resolved,
    Closed,
}

/// Where a ticket stands against its service targets (first response, resolution) right now. Time pending does
/// not count: the due times move by the paused time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TicketSla {
    pub first_response_due_at: DateTime<Utc>,
    pub resolution_due_at: DateTime<Utc>,
    pub first_response_breached: bool,
    pub resolution_breached: bool,
    pub paused: bool,
    pub paused_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Ticket {
    pub id: Uuid,
    /// Per tenant, from 1.
    pub number: i64,
    pub conversation_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub subject: String,
    pub description: String,
    pub department: Option<String>,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    /// `agent`, `handoff` or `flow`.
    pub source: String,
    /// Staff only (null for customers).
    pub assignee_id: Option<Uuid>,
    /// A reference in the business's system, e.g. a return's RMA number.
    pub external_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub first_responded_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Staff only (null for customers).
    pub sla: Option<TicketSla>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TicketNote {
    pub id: Uuid,
    pub author_id: Option<Uuid>,
    pub body: String,
    /// Internal notes are never shown to customers.
    pub internal: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TicketDetail {
    pub ticket: Ticket,
    pub notes: Vec<TicketNote>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TicketList {
    pub tickets: Vec<Ticket>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicketRequest {
    /// 1–200 characters.
    pub subject: String,
    /// Up to 10,000 characters.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub priority: Option<TicketPriority>,
    #[serde(default)]
    pub department: Option<String>,
    /// The conversation it follows up (its customer becomes the ticket's).
    #[serde(default)]
    pub conversation_id: Option<Uuid>,
    #[serde(default)]
    pub assignee_id: Option<Uuid>,
    #[serde(default)]
    pub external_ref: Option<String>,
}

/// Fields to change; absent ones stay. `department: ""` clears it; `unassign: true` clears the assignee.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTicketRequest {
    #[serde(default)]
    pub status: Option<TicketStatus>,
    #[serde(default)]
    pub priority: Option<TicketPriority>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub assignee_id: Option<Uuid>,
    #[serde(default)]
    pub unassign: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketNoteRequest {
    /// 1–10,000 characters.
    pub body: String,
    /// Internal (staff only) or a reply the customer sees (the first reply stops the first-response clock).
    #[serde(default)]
    pub internal: bool,
}

/// A tenant's desk settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeskConfig {
    /// When people are at the desk; absent: always. Outside these hours a hand-off tells the customer honestly
    /// when someone will be back and opens a ticket.
    #[serde(default)]
    pub business_hours: Option<BusinessHours>,
    /// How queued conversations reach agents: `manual` (agents accept; the default), `least_loaded` (the online
    /// agent holding the fewest, ties to whoever waited longest for one) or `round_robin` (online agents in turn).
    /// Only agents whose console is open (heartbeat within a minute) and below capacity are given one.
    #[serde(default)]
    pub assignment: Option<String>,
    /// Open conversations an agent holds at most before auto-assignment skips them (default 5).
    #[serde(default)]
    pub agent_capacity: Option<u32>,
    /// Hand-off rules beyond the built-in ones (asking for a person, an upset streak, unsure twice, a failed flow).
    #[serde(default)]
    pub handoff: HandoffRules,
    /// Desk teams (queues by skill), in order: a hand-off goes to the first team whose rule matches it, or to the
    /// general queue. Automatic assignment gives a team's conversations to its members first, then to generalists
    /// (agents in no team); a team nobody belongs to is served by everyone.
    #[serde(default)]
    pub teams: Vec<TeamRule>,
}

/// One desk team and which hand-offs it takes: any listed intent, word (case-insensitive), customer tier or
/// language matches.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeamRule {
    /// 1–40 characters, unique (e.g. `售后`, `billing`, `vip`).
    pub name: String,
    #[serde(default)]
    pub intents: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Customer tiers from the shop's profile (e.g. `gold`).
    #[serde(default)]
    pub tiers: Vec<String>,
    /// The customer's language (`zh`, `en`, …).
    #[serde(default)]
    pub languages: Vec<String>,
}

/// A tenant's own reasons to bring people in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HandoffRules {
    /// Intents that always go to people (e.g. `complaint`).
    #[serde(default)]
    pub intents: Vec<String>,
    /// Words that always go to people, matched case-insensitively (e.g. `律师`, `起诉`, `chargeback`).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Customer tiers (from the shop's profile) whose upset or complicated messages go to people at once instead
    /// of the assistant (e.g. `platinum`).
    #[serde(default)]
    pub vip_tiers: Vec<String>,
    /// Hand off after this many negative customer turns in a row (default: the server's policy, 3).
    #[serde(default)]
    pub negative_streak: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// The business's UTC offset, e.g. `+08:00`.
    pub utc_offset: String,
    /// Opening hours per weekday (`mon` … `sun`) as `HH:MM-HH:MM`; a day not listed is closed.
    pub days: std::collections::BTreeMap<String, String>,
}

/// An agent on the desk: presence and load.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeskAgent {
    pub id: Uuid,
    pub display_name: Option<String>,
    pub role: StaffRole,
    /// Their console sent a heartbeat within the last minute.
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Open conversations they hold.
    pub held: i64,
    /// Their teams; empty: a generalist.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// The desk's team names (in routing order) and the caller's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeskTeams {
    pub teams: Vec<String>,
    pub mine: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeskAgentList {
    pub agents: Vec<DeskAgent>,
}

/// A tenant's own sensitive words, added to the server's list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModerationConfig {
    /// One entry per line: `word`, `word<TAB or comma>category` or `word<TAB or comma>category<TAB or
    /// comma>action` (`block`, `mask` or `flag`); blank lines and lines starting with `#` are skipped. Matching
    /// ignores case, full-width/half-width, traditional/simplified Chinese and symbols between letters.
    #[serde(default)]
    pub words: String,
    /// The action of entries that name none (default `flag`).
    #[serde(default)]
    pub default_action: Option<String>,
}

/// The tenant's list as stored, with what it holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ModerationSettings {
    pub words: String,
    pub default_action: String,
    /// Entries in the tenant's list.
    pub entries: usize,
    /// Entries per category.
    pub categories: std::collections::BTreeMap<String, usize>,
    /// Distinct words in force: the server's list and the tenant's together.
    pub active_entries: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationCheckRequest {
    /// Up to 10,000 characters.
    pub text: String,
}

/// What moderation makes of a text with the tenant's and the server's lists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ModerationCheck {
    /// The strongest action among the hits (`block`, `mask`, `flag`), if any.
    pub action: Option<String>,
    pub hits: Vec<ModerationHit>,
    /// The text as a customer would see it (masked words as `*`).
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ModerationHit {
    /// The listed word that matched.
    pub word: String,
    pub category: String,
    pub action: String,
    /// What the text held there.
    pub matched: String,
}

/// Why the assistant answered what it did: one customer turn, as recorded by the engine. Staff only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TurnTrace {
    /// `human_held`, `blocked`, `injection`, `handoff`, `faq`, `cache`, `flow`, `tool`, `rag` or `chat`.
    pub path: String,
    /// The rule that chose the path (`asked_for_human`, `faq_match`, `passages_found`, …).
    pub reason: String,
    /// `none`, `cheap` or `strong`, and why (`simple_confident`, `upset_customer`, …).
    pub tier: String,
    pub tier_reason: String,
    /// `normal` or `empathetic`.
    pub tone: String,
    pub language: String,
    pub intent: Option<String>,
    pub intent_confidence: Option<f32>,
    pub out_of_scope: bool,
    /// `positive`, `neutral` or `negative`, with intensity 0–1 and the main emotion if any.
    pub polarity: String,
    pub intensity: f32,
    pub emotion: Option<String>,
    /// Negative customer turns in a row, this one included.
    pub negative_streak: usize,
    pub injection_score: f32,
    /// The moderation action on the customer's message (`flag`, `mask`, `block`), if any.
    pub moderation: Option<String>,
    /// How many PII values were masked before anything reached a model or a log.
    pub pii_masked: usize,
    /// Retrieval: `hybrid` or `bm25`, and the passages offered to the model (or the FAQ entry answered).
    pub retrieval_mode: Option<String>,
    pub passages: Vec<TracePassage>,
    /// How closely the best FAQ entry matched (0–1), when there was one.
    pub faq_score: Option<f32>,
    /// Figures in the answer found in no source, citations of passages that do not exist.
    pub grounded: Option<bool>,
    pub unsupported: Vec<String>,
    /// 0–1, from grounding, the classifier and retrieval.
    pub confidence: f32,
    /// The answer was replaced by "not sure, shall I get a colleague?".
    pub unsure: bool,
    /// The model's answer that failed the grounding check (PII masked), so staff see what was held back and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_answer: Option<String>,
    /// The output moderation action, if any (`mask` or `block`).
    pub output_moderation: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    /// Which chain answered: `cheap` (the tenant's cheap chain, for the `cheap` tier) or `main`.
    #[serde(default)]
    pub chain: Option<String>,
    /// What the model call cost, from the answering model's prices and the tokens (absent without prices).
    #[serde(default)]
    pub cost: Option<f64>,
    /// Milliseconds per stage.
    pub stages: TraceStages,
    /// The conversation was flagged for review with this reason.
    pub flag: Option<String>,
    /// Tools called for this turn (order status, profile, a flow's action), with masked arguments.
    #[serde(default)]
    pub tools: Vec<TraceTool>,
    /// The answer cache: `hit` (reused, with its score and the tokens saved), `stored` (this answer may be reused),
    /// or absent.
    #[serde(default)]
    pub cache: Option<TraceCache>,
    /// The flow after this turn (`name`, `stage`, filled `slots`, …), while one is running or just ended.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub flow: Option<serde_json::Value>,
}

/// The answer cache of the node that served the request, for the caller's tenant, since that node started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CacheStatsInfo {
    /// Questions looked up (model-answer candidates that passed the FAQ and flow rules).
    pub lookups: u64,
    /// Answers reused without a model call.
    pub hits: u64,
    /// Verified answers kept for reuse.
    pub stored: u64,
    /// Prompt + completion tokens the reused answers had cost.
    pub tokens_saved: i64,
    /// hits / lookups (0 without lookups).
    pub hit_rate: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TraceCache {
    /// `hit` or `stored`.
    pub decision: String,
    /// The match score of a hit (0–1).
    pub score: Option<f32>,
    /// Prompt + completion tokens a hit saved.
    pub tokens_saved: Option<i64>,
    /// The customer segment (tier) the answer is reused within; `null`: everyone.
    #[serde(default)]
    pub segment: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TraceTool {
    pub name: String,
    /// The arguments sent, PII masked.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    pub ok: bool,
    /// A stable error code when it failed (`not_found`, `invalid_arguments`, `unavailable`, …).
    pub error: Option<String>,
    /// `rules`, `model` or `fallback`: where the arguments came from.
    pub arguments_from: String,
    pub ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TracePassage {
    /// Its number in the prompt (`[1]`).
    pub n: usize,
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    /// `退货政策 › 退款时间 (lines 7–8)`.
    pub citation: String,
    pub score: f32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TraceStages {
    pub understand_ms: f64,
    pub retrieve_ms: f64,
    /// Calls to the business's systems (tools, profile, a flow's choices and action).
    #[serde(default)]
    pub tools_ms: f64,
    pub generate_ms: f64,
    pub check_ms: f64,
    pub total_ms: f64,
}

/// One assistant reply with the record of its turn.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TurnRecord {
    /// The reply's sequence number.
    pub seq: i64,
    /// The customer message it answers.
    pub reply_to_seq: Option<i64>,
    pub content: String,
    pub trace: TurnTrace,
    pub created_at: DateTime<Utc>,
}

/// One labelled example for the intent classifier.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntentExample {
    pub text: String,
    /// The intent's name; `oos` (or `out_of_scope`, `其他`) marks examples of what the business does not handle.
    pub intent: String,
}

/// Train an intent classifier: give `examples`, or `data` (a training file's text: CSV with a `text,intent`
/// header, JSON or JSON lines), not both.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainIntentModelRequest {
    #[serde(default)]
    pub examples: Vec<IntentExample>,
    pub data: Option<String>,
    /// The format of `data`: `csv`, `json` or `jsonl` (default: guessed from its first character).
    pub format: Option<String>,
    /// Sentence encoders whose vectors join the n-grams (names as in `kefu model list`). Omitted: the server's
    /// embedder (its query vector is then shared with knowledge search); `[]`: n-grams only.
    pub encoders: Option<Vec<String>>,
    /// Training settings merged over the defaults, e.g. `{"linear": {"c": 30}}`.
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// Put the new version in use at once (default true).
    pub activate: Option<bool>,
}

/// A stored intent classifier.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IntentModelView {
    pub version: i32,
    /// Whether the tenant's conversations use it.
    pub active: bool,
    pub labels: Vec<String>,
    pub out_of_scope_label: Option<String>,
    pub encoders: Vec<String>,
    /// The encoders of a first stage, which answers the messages it is sure of before the full model runs (empty:
    /// one stage).
    #[serde(default)]
    pub first_stage_encoders: Vec<String>,
    pub examples: usize,
    /// Out-of-scope threshold on the confidence × support score.
    pub threshold: f32,
    /// Accuracy on the held-out calibration examples, and out-of-scope recall there (0–1).
    pub calibration_accuracy: Option<f32>,
    pub calibration_oos_recall: Option<f32>,
    pub bytes: i64,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IntentModels {
    /// The version in use (`null`: none).
    pub current: Option<i32>,
    /// Newest first.
    pub models: Vec<IntentModelView>,
}

/// Which version the tenant's conversations use (`null`: none).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetIntentModel {
    pub version: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentPredictRequest {
    /// 1 to 20 messages.
    pub texts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IntentScore {
    pub intent: String,
    pub probability: f32,
}

/// What the tenant's classifier in use makes of one message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IntentPredictionView {
    pub text: String,
    /// `null` when out of scope.
    pub intent: Option<String>,
    pub confidence: f32,
    pub out_of_scope: bool,
    /// Cosine to the nearest training example of the best intent (with sentence encoders).
    pub support: Option<f32>,
    pub top: Vec<IntentScore>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct IntentPredictions {
    /// The version that answered (`null`: the tenant has no intent model in use).
    pub version: Option<i32>,
    pub predictions: Vec<IntentPredictionView>,
}
