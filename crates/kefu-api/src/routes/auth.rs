//! Getting a token: staff login and customer sessions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use kefu_types::{CustomerSessionRequest, CustomerSessionResponse, LoginRequest, TokenResponse};

use crate::auth::{dummy_hash, verify_identity_token, verify_password};
use crate::convert;
use crate::error::ApiError;
use crate::extract::{check_text, ApiJson};
use crate::AppState;

/// Staff login: returns a JWT for the console and admin API.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = kefu_types::ErrorBody)))]
pub(crate) async fn login(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    check_text("email", &req.email, 320)?;
    check_text("password", &req.password, 1024)?;
    check_text("tenant", &req.tenant, 100)?;
    let tenant = s.store.get_tenant_by_slug(&req.tenant).await?;
    let user = match &tenant {
        Some(t) => {
            s.store
                .get_staff_by_email(t.id, &req.email.trim().to_lowercase())
                .await?
        }
        None => None,
    };
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = req.password;
    // Verify even when the user does not exist, so response time does not reveal which emails exist.
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match (tenant, user, ok) {
        (Some(t), Some(u), true) => Ok(Json(TokenResponse {
            access_token: s.tokens.sign_staff(t.id, u.id, u.role),
            token_type: "Bearer".into(),
            expires_in: s.tokens.staff_ttl.as_secs(),
        })),
        _ => Err(ApiError::InvalidCredentials),
    }
}

/// A customer session for the widget or an app: anonymous, or identified by a token the tenant signed.
#[utoipa::path(post, path = "/v1/customer-sessions", tag = "auth", request_body = CustomerSessionRequest,
    responses((status = 201, body = CustomerSessionResponse), (status = 401, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn create_customer_session(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CustomerSessionRequest>,
) -> Result<(StatusCode, Json<CustomerSessionResponse>), ApiError> {
    check_text("tenant", &req.tenant, 100)?;
    let tenant = s
        .store
        .get_tenant_by_slug(&req.tenant)
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let customer = match req.identity_token.as_deref() {
        Some(tok) => {
            let (external_id, name) = verify_identity_token(tok, &tenant.customer_secret)?;
            s.store
                .upsert_customer(tenant.id, Some(&external_id), name.as_deref())
                .await?
        }
        None => s.store.upsert_customer(tenant.id, None, None).await?,
    };
    Ok((
        StatusCode::CREATED,
        Json(CustomerSessionResponse {
            access_token: s.tokens.sign_customer(tenant.id, customer.id),
            token_type: "Bearer".into(),
            expires_in: s.tokens.customer_ttl.as_secs(),
            customer: convert::customer(customer),
        }),
    ))
}
