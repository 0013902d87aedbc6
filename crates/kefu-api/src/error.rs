//! `ApiError`: the one error shape of the HTTP edge. Stable snake_case codes; internal details are logged here,
//! once, and never sent to the client.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use kefu_engine::EngineError;
use kefu_store::StoreError;
use kefu_types::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("the token is invalid")]
    InvalidToken,
    #[error("the token has expired")]
    TokenExpired,
    #[error("wrong tenant, email or password")]
    InvalidCredentials,
    #[error("the API key has been revoked")]
    ApiKeyRevoked,
    #[error("your role may not do this")]
    Forbidden,
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("tenant not found")]
    TenantNotFound,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("no such endpoint")]
    RouteNotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the conversation is closed")]
    ConversationClosed,
    #[error("this Idempotency-Key was already used for a different message")]
    IdempotencyKeyReused,
    #[error("Idempotency-Key must be 1 to 200 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the message is longer than {0} characters")]
    MessageTooLong(usize),
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Conflict(String),
    #[error("another agent holds this conversation")]
    HeldByAnother,
    #[error("you do not hold this conversation; accept it first")]
    NotHolder,
    #[error("the server is shutting down; retry on another node or in a moment")]
    ShuttingDown,
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    /// Intent-training examples or settings that cannot be used; the message names the row or field.
    #[error("invalid training data: {0}")]
    InvalidTrainingData(String),
    /// A sentence encoder asked for that this server cannot load.
    #[error("sentence encoder unavailable: {0}")]
    EncoderUnavailable(String),
    /// A file the knowledge base cannot import; the code names why (`empty_file`, `corrupt_file`, …).
    #[error("{1}")]
    FileRejected(&'static str, String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated
            | ApiError::InvalidToken
            | ApiError::TokenExpired
            | ApiError::InvalidCredentials
            | ApiError::ApiKeyRevoked => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::ConversationNotFound
            | ApiError::TenantNotFound
            | ApiError::NotFound(_)
            | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ConversationClosed
            | ApiError::Conflict(_)
            | ApiError::HeldByAnother
            | ApiError::NotHolder => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused
            | ApiError::InvalidRequest(_)
            | ApiError::EmptyMessage
            | ApiError::MessageTooLong(_)
            | ApiError::InvalidTrainingData(_)
            | ApiError::EncoderUnavailable(_)
            | ApiError::FileRejected(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidIdempotencyKey | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidToken => "invalid_token",
            ApiError::TokenExpired => "token_expired",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::ApiKeyRevoked => "api_key_revoked",
            ApiError::Forbidden => "forbidden",
            ApiError::ConversationNotFound => "conversation_not_found",
            ApiError::TenantNotFound => "tenant_not_found",
            ApiError::NotFound(_) => "not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::ConversationClosed => "conversation_closed",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::InvalidIdempotencyKey => "invalid_idempotency_key",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::EmptyMessage => "empty_message",
            ApiError::MessageTooLong(_) => "message_too_long",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Conflict(_) => "conflict",
            ApiError::HeldByAnother => "held_by_another_agent",
            ApiError::NotHolder => "not_assigned",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InvalidTrainingData(_) => "invalid_training_data",
            ApiError::EncoderUnavailable(_) => "encoder_unavailable",
            ApiError::FileRejected(code, _) => code,
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "unavailable"),
            _ => {}
        }
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let ApiError::RateLimited(secs) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("resource"),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::ConversationClosed => ApiError::ConversationClosed,
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Backend(m) => ApiError::Internal(m),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ConversationNotFound => ApiError::ConversationNotFound,
            EngineError::ConversationClosed => ApiError::ConversationClosed,
            EngineError::IdempotencyMismatch => ApiError::IdempotencyKeyReused,
            EngineError::ShuttingDown => ApiError::ShuttingDown,
            EngineError::HeldByAnother => ApiError::HeldByAnother,
            EngineError::NotHolder => ApiError::NotHolder,
            EngineError::Store(e) => e.into(),
        }
    }
}

impl From<kefu_knowledge::KnowledgeError> for ApiError {
    fn from(e: kefu_knowledge::KnowledgeError) -> Self {
        use kefu_knowledge::KnowledgeError as K;
        match e {
            K::Store(e) => e.into(),
            K::Index(e) => ApiError::Internal(e.to_string()),
            K::Embed(e) => ApiError::Unavailable(e.to_string()),
            K::File(e) => ApiError::FileRejected(e.code(), e.to_string()),
            K::Invalid(m) => ApiError::InvalidRequest(m),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::InvalidRequest(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::InvalidJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(0)
            }
            other => ApiError::InvalidRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::InvalidRequest(r.body_text())
    }
}
