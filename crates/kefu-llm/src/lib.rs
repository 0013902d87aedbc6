//! Chat model abstraction and the resilience around it.
//!
//! - [`ChatModel`]: one provider endpoint that streams a chat completion (HTTP in `kefu-llm-openai`, local
//!   llama.cpp later).
//! - [`FallbackChain`]: an ordered list of (provider, model) links, each guarded by a [`CircuitBreaker`], retried
//!   per [`RetryPolicy`] (exponential backoff with full jitter, honouring `Retry-After`).
//! - [`with_timeouts`]: first-token, idle and total deadlines for any stream.
//! - [`Embedder`]: texts to unit vectors (local encoders, or an OpenAI-compatible `/v1/embeddings`).
//! - [`ModelDirectory`]: how the engine finds a tenant's current chain, so models switch at runtime.
//!
//! No HTTP client lives here: the engine depends on this crate without pulling in reqwest.

mod breaker;
mod chain;
mod embed;
mod error;
mod retry;
mod timeouts;
mod types;

pub use breaker::{BreakerState, CircuitBreaker};
pub use chain::{ChainLink, FallbackChain};
pub use embed::{dot, normalise, EmbedKind, Embedder};
pub use error::{LlmError, TimeoutPhase};
pub use retry::RetryPolicy;
pub use timeouts::{with_timeouts, Timeouts};
pub use types::*;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub type ChatStream = BoxStream<'static, Result<ChatEvent, LlmError>>;

/// A chat completion endpoint. `stream` returns once the response has started (status known); events follow.
#[async_trait]
pub trait ChatModel: Send + Sync + 'static {
    /// A stable name for logs, metrics and circuit breakers (e.g. the base URL).
    fn name(&self) -> &str;
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError>;
}

/// What a tenant's messages are answered with right now.
#[derive(Clone)]
pub struct ResolvedModels {
    pub chain: Arc<FallbackChain>,
    pub params: GenerationParams,
}

/// Finds the current model setup of a tenant. Implementations cache, and must reflect an admin's change on the
/// next message.
#[async_trait]
pub trait ModelDirectory: Send + Sync + 'static {
    async fn resolve(&self, tenant: &str) -> Result<ResolvedModels, LlmError>;
    /// Drops any cached setup of the tenant (its configuration changed).
    fn invalidate(&self, _tenant: &str) {}
}
