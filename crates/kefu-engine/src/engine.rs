//! The engine's public face: accept messages, close conversations, subscribe, recover, shut down.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use kefu_knowledge::Knowledge;
use kefu_llm::{ModelDirectory, Timeouts};
use kefu_nlu::{PiiDetector, Understander};
use kefu_store::{
    Appended, Conversation, ConversationStatus, EventData, Message, MessageRole, NewMessage, Store,
    StoreError,
};

use crate::decide::Policy;
use crate::hub::{EventHub, LiveEvent};
use crate::subscribe::{Outgoing, Subscriber};

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Most recent messages sent to the model.
    pub history_max_messages: usize,
    /// Token budget for the history (estimated).
    pub history_token_budget: usize,
    pub default_system_prompt: String,
    /// Capacity of each conversation's live channel; a slower subscriber resyncs from the database.
    pub live_buffer: usize,
    /// Hard bound on one whole turn, model retries and fallbacks included.
    pub turn_timeout: Duration,
    pub timeouts: Timeouts,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            history_max_messages: 20,
            history_token_budget: 3000,
            default_system_prompt: crate::prompt::DEFAULT_SYSTEM_PROMPT.to_owned(),
            // Allocated up front per live conversation; a subscriber that falls further behind resyncs from the
            // database, so a small ring costs nothing in correctness.
            live_buffer: 64,
            turn_timeout: Duration::from_secs(300),
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("conversation is closed")]
    ConversationClosed,
    /// The idempotency key was used before for a different message.
    #[error("idempotency key reused with different content")]
    IdempotencyMismatch,
    #[error("shutting down")]
    ShuttingDown,
    /// Another agent holds the conversation (a lost accept race, or a transfer by someone not holding it).
    #[error("another agent holds this conversation")]
    HeldByAnother,
    /// Only the agent holding a conversation speaks in it.
    #[error("you do not hold this conversation; accept it first")]
    NotHolder,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => EngineError::ConversationNotFound,
            StoreError::ConversationClosed => EngineError::ConversationClosed,
            e => EngineError::Store(e),
        }
    }
}

/// Where a tenant's understanding set-up (PII patterns, word list, intent model, forbidden tools) comes from.
#[async_trait::async_trait]
pub trait UnderstanderSource: Send + Sync + 'static {
    async fn understander(&self, tenant: Uuid) -> Arc<Understander>;
    /// The tenant's settings changed (e.g. its word list or intent model): the next `understander` call reads
    /// them again.
    fn invalidate(&self, _tenant: Uuid) {}
    /// Sentence encoders by name, for training intent classifiers (`None`: the server's default; empty: none).
    /// Without any, only n-gram models can be trained.
    async fn encoders(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<dyn kefu_nlu::SentenceEncoder>>, String> {
        match names {
            Some(n) if !n.is_empty() => Err(format!(
                "this server has no sentence encoders to load {n:?}; train with none"
            )),
            _ => Ok(Vec::new()),
        }
    }
}

/// One set-up for every tenant.
#[async_trait::async_trait]
impl UnderstanderSource for Arc<Understander> {
    async fn understander(&self, _tenant: Uuid) -> Arc<Understander> {
        self.clone()
    }
}

/// What the engine uses beyond storage and models.
#[derive(Clone)]
pub struct EngineParts {
    pub understanding: Arc<dyn UnderstanderSource>,
    /// The knowledge base; without it every answer is ungrounded (and checked as such).
    pub knowledge: Option<Arc<Knowledge>>,
    pub policy: Policy,
    /// Tools, flows and the profile source of the business's systems (none: no tool or flow turns).
    pub business: Option<Arc<crate::tools::ToolSet>>,
}

impl Default for EngineParts {
    fn default() -> Self {
        EngineParts {
            understanding: Arc::new(Arc::new(Understander::new(PiiDetector::new()))),
            knowledge: None,
            policy: Policy::default(),
            business: None,
        }
    }
}

/// A customer message as accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: Message,
    /// True when the idempotency key matched an earlier request: nothing new was stored.
    pub replayed: bool,
}

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) models: Arc<dyn ModelDirectory>,
    pub(crate) hub: Arc<EventHub>,
    pub(crate) settings: EngineSettings,
    pub(crate) parts: EngineParts,
    /// Verified answers for paraphrased questions (this node's, derived, lost on restart).
    pub(crate) cache: crate::cache::AnswerCache,
    tracker: TaskTracker,
    /// Cancelled when the grace period after shutdown ends: turns still running stop without storing a reply
    /// (their customer messages stay pending and are answered after restart).
    pub(crate) hard_stop: CancellationToken,
    /// Cancelled when shutdown starts: subscriptions end with `server.shutdown`.
    pub(crate) shutting_down: CancellationToken,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        models: Arc<dyn ModelDirectory>,
        settings: EngineSettings,
    ) -> Arc<Self> {
        Self::with_parts(store, models, settings, EngineParts::default())
    }

    pub fn with_parts(
        store: Arc<dyn Store>,
        models: Arc<dyn ModelDirectory>,
        settings: EngineSettings,
        parts: EngineParts,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            models,
            hub: EventHub::new(settings.live_buffer),
            settings,
            parts,
            cache: crate::cache::AnswerCache::new(2000),
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            shutting_down: CancellationToken::new(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn hub(&self) -> &Arc<EventHub> {
        &self.hub
    }

    /// A tenant's answer-cache counters on this node since start.
    pub fn cache_stats(&self, tenant: Uuid) -> crate::cache::CacheStats {
        self.cache.stats(tenant)
    }

    /// Stores a customer message exactly once and starts answering it. A repeated idempotency key returns the
    /// original message (and starts nothing); the same key with different content is an error.
    pub async fn accept_customer_message(
        self: &Arc<Self>,
        tenant: Uuid,
        conversation: Uuid,
        content: String,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, EngineError> {
        if self.shutting_down.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let accepted = self
            .store_and_publish(NewMessage {
                tenant_id: tenant,
                conversation_id: conversation,
                role: MessageRole::Customer,
                content,
                idempotency_key,
                reply_to_seq: None,
                generation: Default::default(),
                require_open: true,
            })
            .await?;
        if !accepted.replayed {
            self.spawn_turn(accepted.message.clone());
        }
        Ok(accepted)
    }

    /// Stores a message exactly once and tells subscribers. A repeated idempotency key returns the original
    /// (`replayed`, nothing published); the same key with different content is an error.
    pub(crate) async fn store_and_publish(&self, new: NewMessage) -> Result<Accepted, EngineError> {
        let content = new.content.clone();
        match self.store.append_message(new).await? {
            Appended::Duplicate(m) if m.content != content => Err(EngineError::IdempotencyMismatch),
            Appended::Duplicate(m) => Ok(Accepted {
                message: m,
                replayed: true,
            }),
            Appended::Created(m) => {
                self.hub.publish(kefu_store::Event {
                    tenant_id: m.tenant_id,
                    conversation_id: m.conversation_id,
                    seq: m.seq,
                    data: EventData::MessageCreated(m.clone()),
                    created_at: m.created_at,
                });
                Ok(Accepted {
                    message: m,
                    replayed: false,
                })
            }
        }
    }

    pub(crate) fn spawn_turn(self: &Arc<Self>, message: Message) {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "turn",
            tenant_id = %message.tenant_id,
            conversation_id = %message.conversation_id,
            seq = message.seq
        );
        let engine = self.clone();
        self.tracker
            .spawn(async move { engine.run_turn(message).await }.instrument(span));
    }

    /// Waits up to `timeout` for the reply to customer message `seq`.
    pub async fn wait_for_reply(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        seq: i64,
        timeout: Duration,
    ) -> Result<Option<Message>, EngineError> {
        let (mut sub, _) = self.hub.subscribe(conversation);
        if let Some(m) = self.store.find_reply(tenant, conversation, seq).await? {
            return Ok(Some(m));
        }
        let wait = async {
            loop {
                match sub.rx.recv().await {
                    Ok(LiveEvent::Stored(ev)) => {
                        if let EventData::MessageCreated(m) = &ev.data {
                            if m.reply_to_seq == Some(seq) && ev.tenant_id == tenant {
                                return Ok(Some(m.clone()));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(m) = self.store.find_reply(tenant, conversation, seq).await? {
                            return Ok(Some(m));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(None),
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Ok(self.store.find_reply(tenant, conversation, seq).await?),
        }
    }

    /// The tenant's understanding set-up (PII, word lists, intent model) as the next turn will use it.
    pub async fn understander(&self, tenant: Uuid) -> Arc<Understander> {
        self.parts.understanding.understander(tenant).await
    }

    /// The tenant's understanding settings changed on this node: the next turn reads them again (other nodes
    /// within their refresh interval).
    pub fn understanding_changed(&self, tenant: Uuid) {
        self.parts.understanding.invalidate(tenant);
    }

    /// Trains an intent classifier for the tenant with the named encoders (`None`: the server's default) and
    /// stores it as the next version; with `activate`, every node serves it within seconds (at once here).
    pub async fn train_intent_model(
        &self,
        tenant: Uuid,
        examples: Vec<kefu_nlu::Example>,
        encoders: Option<&[String]>,
        config: kefu_nlu::TrainConfig,
        created_by: Option<Uuid>,
        activate: bool,
    ) -> Result<
        (kefu_store::IntentModelRecord, kefu_nlu::intent::ModelInfo),
        crate::intents::TrainError,
    > {
        let encoders = self
            .parts
            .understanding
            .encoders(encoders)
            .await
            .map_err(crate::intents::TrainError::Encoders)?;
        let r = crate::intents::train_and_store(
            self.store.as_ref(),
            tenant,
            crate::intents::TrainRequest {
                examples,
                encoders,
                config,
                created_by,
                activate,
            },
        )
        .await?;
        self.understanding_changed(tenant);
        Ok(r)
    }

    /// What moderation makes of `text` with the tenant's current lists (none: nothing is listed).
    pub async fn moderate(&self, tenant: Uuid, text: &str) -> kefu_types::ModerationCheck {
        let u = self.understander(tenant).await;
        match u.moderator() {
            Some(m) => crate::words::check_view(text, m.check(text)),
            None => kefu_types::ModerationCheck {
                action: None,
                hits: Vec::new(),
                text: text.to_owned(),
            },
        }
    }

    /// Hands a conversation to people or back to the assistant (idempotent) and tells subscribers.
    pub async fn set_handler(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        handler: kefu_store::Handler,
        reason: &str,
    ) -> Result<Conversation, EngineError> {
        let (conv, event) = self
            .store
            .set_conversation_handler(tenant, conversation, handler, reason)
            .await?;
        if let Some(ev) = event {
            self.hub.publish(ev);
        }
        Ok(conv)
    }

    /// Closes a conversation (idempotent) and tells subscribers.
    pub async fn close_conversation(
        &self,
        tenant: Uuid,
        conversation: Uuid,
    ) -> Result<Conversation, EngineError> {
        let (conv, event) = self
            .store
            .set_conversation_status(tenant, conversation, ConversationStatus::Closed)
            .await?;
        if let Some(ev) = event {
            self.hub.publish(ev);
        }
        Ok(conv)
    }

    /// Events of a conversation after `after_seq`: stored ones from the database, then live ones, including the
    /// partial answer in progress. The caller has already checked the conversation belongs to `tenant`.
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: Uuid,
        conversation: Uuid,
        after_seq: i64,
    ) -> BoxStream<'static, Outgoing> {
        Subscriber::start(self.clone(), tenant, conversation, after_seq)
    }

    /// Answers customer messages whose turn was interrupted (crash, restart, hard shutdown). Returns how many.
    pub async fn recover_pending(self: &Arc<Self>) -> Result<usize, EngineError> {
        let pending = self.store.list_pending_replies(10_000).await?;
        let n = pending.len();
        for m in pending {
            tracing::info!(conversation_id = %m.conversation_id, seq = m.seq, "resuming interrupted turn");
            self.spawn_turn(m);
        }
        Ok(n)
    }

    /// Stops accepting messages, ends subscriptions, lets running turns finish for up to `grace`, then cancels
    /// the rest (their messages stay pending for the next start).
    pub async fn shutdown(&self, grace: Duration) {
        self.shutting_down.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.tracker.len(),
                "grace period over; cancelling running turns"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }

    /// Stops taking customer messages and ends every subscription with `server.shutdown`.
    pub fn stop_accepting(&self) {
        self.shutting_down.cancel();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.is_cancelled()
    }

    pub fn running_turns(&self) -> usize {
        self.tracker.len()
    }
}
