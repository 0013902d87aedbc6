//! Extractors that turn axum's rejections into `ApiError`s, and input validation helpers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// `Json<T>` with our error codes (and the configured size limit reported in the message).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(match ApiError::from(r) {
                ApiError::PayloadTooLarge(_) => {
                    ApiError::PayloadTooLarge(state.settings.max_body_bytes)
                }
                e => e,
            }),
        }
    }
}

/// `Query<T>` with our error codes.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// Parses a path id; a malformed id is simply not found.
pub fn parse_id(raw: &str, not_found: ApiError) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found)
}

/// Rejects text that no backend can store (NUL) or that is unreasonably long.
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::InvalidRequest(format!(
            "`{field}` must not contain NUL characters"
        )));
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::InvalidRequest(format!(
            "`{field}` is longer than {max_chars} characters"
        )));
    }
    Ok(())
}

pub fn check_opt_text(field: &str, value: Option<&str>, max_chars: usize) -> Result<(), ApiError> {
    value.map_or(Ok(()), |v| check_text(field, v, max_chars))
}

/// Validates a customer message: not blank, within the configured length, storable.
pub fn check_message(content: &str, max_chars: usize) -> Result<(), ApiError> {
    if content.trim().is_empty() {
        return Err(ApiError::EmptyMessage);
    }
    if content.chars().count() > max_chars {
        return Err(ApiError::MessageTooLong(max_chars));
    }
    if content.contains('\0') {
        return Err(ApiError::InvalidRequest(
            "`content` must not contain NUL characters".into(),
        ));
    }
    Ok(())
}

pub fn check_idempotency_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(())
}

/// The `Idempotency-Key` header, checked, if the client sent one.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v.to_str().map_err(|_| ApiError::InvalidIdempotencyKey)?;
    check_idempotency_key(k)?;
    Ok(Some(k.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn message_rules() {
        assert!(matches!(
            check_message("  \n ", 10),
            Err(ApiError::EmptyMessage)
        ));
        assert!(matches!(
            check_message("你好你好你好", 5),
            Err(ApiError::MessageTooLong(5))
        ));
        assert!(
            check_message("你好你好你", 5).is_ok(),
            "length counts characters, not bytes"
        );
        assert!(matches!(
            check_message("a\0b", 5),
            Err(ApiError::InvalidRequest(_))
        ));
    }

    proptest! {
        #[test]
        fn idempotency_keys_are_visible_ascii(key in ".{0,250}") {
            let ok = check_idempotency_key(&key).is_ok();
            let expected = !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn message_check_never_panics(s in "\\PC{0,50}", max in 0usize..60) {
            let _ = check_message(&s, max);
        }
    }
}
