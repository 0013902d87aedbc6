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
pub use embed::{dot, normalise, split_layers, EmbedKind, Embedder, LayerVectors};
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
    /// For simple, confident turns; `None`: `chain` answers everything.
    pub cheap: Option<Arc<FallbackChain>>,
    pub params: GenerationParams,
    /// Prices by the label a chain's `Started` event reports (`ChainLink::label`: provider, `/`, model).
    pub prices: Arc<std::collections::HashMap<String, Price>>,
}

impl ResolvedModels {
    /// One chain for everything, no prices.
    pub fn single(chain: Arc<FallbackChain>, params: GenerationParams) -> Self {
        ResolvedModels {
            chain,
            cheap: None,
            params,
            prices: Default::default(),
        }
    }

    /// The chain for a turn: the cheap one when the turn may use it and there is one. Returns it and `cheap` or
    /// `main`.
    pub fn pick(&self, cheap: bool) -> (&Arc<FallbackChain>, &'static str) {
        match (&self.cheap, cheap) {
            (Some(c), true) => (c, "cheap"),
            _ => (&self.chain, "main"),
        }
    }

    /// What `model` costs for these tokens, when its prices are known.
    pub fn cost(&self, model: &str, prompt_tokens: i64, completion_tokens: i64) -> Option<f64> {
        self.prices
            .get(model)
            .map(|p| p.cost(prompt_tokens, completion_tokens))
    }
}

/// Price per million prompt (`input`) and completion (`output`) tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

impl Price {
    pub fn cost(&self, prompt_tokens: i64, completion_tokens: i64) -> f64 {
        (prompt_tokens as f64 * self.input + completion_tokens as f64 * self.output) / 1e6
    }
}

/// Finds the current model setup of a tenant. Implementations cache, and must reflect an admin's change on the
/// next message.
#[async_trait]
pub trait ModelDirectory: Send + Sync + 'static {
    async fn resolve(&self, tenant: &str) -> Result<ResolvedModels, LlmError>;
    /// Drops any cached setup of the tenant (its configuration changed).
    fn invalidate(&self, _tenant: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheap_chain_serves_only_cheap_turns_and_costs_come_from_the_answering_model() {
        let chain = || Arc::new(FallbackChain::new(Vec::new(), RetryPolicy::default()));
        let single = ResolvedModels::single(chain(), GenerationParams::default());
        assert_eq!(single.pick(true).1, "main");
        let mut r = single.clone();
        let cheap = chain();
        r.cheap = Some(cheap.clone());
        r.prices = Arc::new(
            [(
                "http://p/v1/small".to_owned(),
                Price {
                    input: 0.5,
                    output: 2.0,
                },
            )]
            .into(),
        );
        let (c, which) = r.pick(true);
        assert!(Arc::ptr_eq(c, &cheap) && which == "cheap");
        assert_eq!(r.pick(false).1, "main");
        assert_eq!(r.cost("http://p/v1/small", 1_000_000, 500_000), Some(1.5));
        assert_eq!(r.cost("http://p/v1/big", 10, 10), None);
    }
}
