//! Provider errors, each saying at the source whether a retry can help and after how long.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstToken,
    Idle,
    Total,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("timed out ({0:?})")]
    Timeout(TimeoutPhase),
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    #[error("provider error {status}: {message}")]
    Server {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// A 4xx other than 408/429: the request or credentials are wrong; retrying the same request will not help.
    #[error("provider rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("stream broke: {0}")]
    StreamBroken(String),
    #[error("circuit open for {0}")]
    CircuitOpen(String),
    #[error("the model is busy")]
    Busy,
    #[error("no model is configured")]
    NotConfigured,
    /// A local model could not run the request (bad model file, unsupported input); retrying will not help.
    #[error("local model failed: {0}")]
    Local(String),
    #[error("every model failed: {}", .0.join("; "))]
    Exhausted(Vec<String>),
}

impl LlmError {
    /// Whether the same request may succeed if tried again on the same provider.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Connect(_)
            | LlmError::Timeout(_)
            | LlmError::RateLimited { .. }
            | LlmError::Server { .. }
            | LlmError::StreamBroken(_)
            | LlmError::Busy => true,
            LlmError::Rejected { .. }
            | LlmError::InvalidResponse(_)
            | LlmError::CircuitOpen(_)
            | LlmError::NotConfigured
            | LlmError::Local(_)
            | LlmError::Exhausted(_) => false,
        }
    }

    /// The provider's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after } | LlmError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Classifies an HTTP status the provider answered with.
    pub fn from_status(status: u16, retry_after: Option<Duration>, message: String) -> Self {
        match status {
            429 => LlmError::RateLimited { retry_after },
            408 | 500..=599 => LlmError::Server {
                status,
                retry_after,
                message,
            },
            _ => LlmError::Rejected { status, message },
        }
    }
}
