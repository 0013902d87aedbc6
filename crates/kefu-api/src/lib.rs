//! The HTTP edge: REST, Server-Sent Events and WebSocket routes, authentication and the role matrix, rate limits,
//! the `ApiError` shape, and the OpenAPI document generated from the handlers.
//!
//! Handlers are thin: check identity and role, validate input, call the engine or the store within the caller's
//! tenant, convert records to wire DTOs.

pub mod auth;
mod convert;
pub mod error;
mod extract;
pub mod openapi;
pub mod ratelimit;
mod routes;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use kefu_engine::Engine;
use kefu_knowledge::Knowledge;
use kefu_llm::ModelDirectory;
use kefu_store::Store;
use kefu_types::ModelConfig;

pub use auth::{Principal, TokenKeys};
pub use error::ApiError;
pub use ratelimit::{RateLimitSettings, RateLimits};
pub use routes::router;
pub use routes::validate_model_config;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub max_body_bytes: usize,
    /// Longest customer message, in characters.
    pub max_message_chars: usize,
    /// Longest a `wait=true` send blocks for the reply.
    pub max_wait: Duration,
    pub sse_keepalive: Duration,
    pub ws_ping_interval: Duration,
    /// The server-wide model setup shown for tenants without their own (API keys redacted).
    pub default_model_config: Option<ModelConfig>,
    /// How the models came up at start (shown on /readyz, informational).
    pub model_checks: Vec<kefu_types::ReadinessCheck>,
    /// The demo page at `/demo/` (only when the demo is on).
    pub demo: Option<web::DemoPage>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_message_chars: 4000,
            max_wait: Duration::from_secs(60),
            sse_keepalive: Duration::from_secs(15),
            ws_ping_interval: Duration::from_secs(20),
            default_model_config: None,
            model_checks: Vec::new(),
            demo: None,
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub models: Arc<dyn ModelDirectory>,
    pub tokens: Arc<TokenKeys>,
    pub limits: Arc<RateLimits>,
    pub settings: Arc<ApiSettings>,
    pub knowledge: Arc<Knowledge>,
}
