//! Tenant administration: API keys, staff, the model setup (switchable at runtime), the customer-token secret.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use kefu_store::{NewApiKey, NewStaffUser, StaffUpdate, StoreError};
use kefu_types::{
    ApiKey, CreateApiKeyRequest, CreateStaffRequest, CreatedApiKey, CustomerSecret, DeskConfig,
    ModelConfig, ModelConfigResponse, StaffUser, TenantInfo, UpdateStaffRequest,
};

use crate::auth::{authorize, hash_password, new_api_key, random_secret, Action, Auth};
use crate::convert;
use crate::error::ApiError;
use crate::extract::{check_opt_text, check_text, parse_id, ApiJson};
use crate::AppState;

const REDACTED: &str = "***";

#[utoipa::path(get, path = "/v1/tenant", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = TenantInfo), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_tenant(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<TenantInfo>, ApiError> {
    authorize(&p, Action::ReadTenant)?;
    let t = s
        .store
        .get_tenant(p.tenant())
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    Ok(Json(TenantInfo {
        id: t.id,
        slug: t.slug,
        name: t.name,
        created_at: t.created_at,
    }))
}

#[utoipa::path(get, path = "/v1/admin/cache-stats", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = kefu_types::CacheStatsInfo), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn cache_stats(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<kefu_types::CacheStatsInfo>, ApiError> {
    authorize(&p, Action::ReadStats)?;
    let c = s.engine.cache_stats(p.tenant());
    Ok(Json(kefu_types::CacheStatsInfo {
        lookups: c.lookups,
        hits: c.hits,
        stored: c.stored,
        tokens_saved: c.tokens_saved,
        hit_rate: if c.lookups == 0 {
            0.0
        } else {
            c.hits as f64 / c.lookups as f64
        },
    }))
}

#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<ApiKey>), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_api_keys(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    authorize(&p, Action::ManageApiKeys)?;
    Ok(Json(
        s.store
            .list_api_keys(p.tenant())
            .await?
            .into_iter()
            .map(convert::api_key)
            .collect(),
    ))
}

/// Create an API key. The secret is in this response only.
#[utoipa::path(post, path = "/v1/admin/api-keys", tag = "admin", security(("bearer" = [])), request_body = CreateApiKeyRequest,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn create_api_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    authorize(&p, Action::ManageApiKeys)?;
    check_text("name", &req.name, 100)?;
    if req.name.trim().is_empty() {
        return Err(ApiError::InvalidRequest("`name` must not be empty".into()));
    }
    let (secret, prefix, key_hash) = new_api_key();
    let k = s
        .store
        .create_api_key(NewApiKey {
            tenant_id: p.tenant(),
            name: req.name,
            prefix,
            key_hash,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: secret,
            api_key: convert::api_key(k),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/admin/api-keys/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = kefu_types::ErrorBody)))]
pub(crate) async fn revoke_api_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&p, Action::ManageApiKeys)?;
    let id = parse_id(&id, ApiError::NotFound("api key"))?;
    if s.store.revoke_api_key(p.tenant(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("api key"))
    }
}

#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<StaffUser>), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn list_staff(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<StaffUser>>, ApiError> {
    authorize(&p, Action::ManageStaff)?;
    Ok(Json(
        s.store
            .list_staff(p.tenant())
            .await?
            .into_iter()
            .map(convert::staff)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), request_body = CreateStaffRequest,
    responses((status = 201, body = StaffUser), (status = 409, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn create_staff(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<CreateStaffRequest>,
) -> Result<(StatusCode, Json<StaffUser>), ApiError> {
    authorize(&p, Action::ManageStaff)?;
    let email = req.email.trim().to_lowercase();
    check_text("email", &email, 320)?;
    check_opt_text("display_name", req.display_name.as_deref(), 200)?;
    if !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
        return Err(ApiError::InvalidRequest(
            "`email` is not an email address".into(),
        ));
    }
    if req.password.chars().count() < 10 || req.password.len() > 1024 {
        return Err(ApiError::InvalidRequest(
            "`password` must be 10 to 1024 characters".into(),
        ));
    }
    let teams = check_staff_teams(&s, p.tenant(), req.teams).await?;
    let password = req.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let u = s
        .store
        .create_staff(NewStaffUser {
            tenant_id: p.tenant(),
            email,
            display_name: req.display_name,
            role: convert::staff_role_in(req.role),
            password_hash,
            teams,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("a user with this email already exists".into())
            }
            e => e.into(),
        })?;
    Ok((StatusCode::CREATED, Json(convert::staff(u))))
}

/// Change a staff member's name, role or desk teams (admins).
#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = UpdateStaffRequest,
    responses((status = 200, body = StaffUser), (status = 403, body = kefu_types::ErrorBody),
              (status = 404, body = kefu_types::ErrorBody), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn update_staff(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateStaffRequest>,
) -> Result<Json<StaffUser>, ApiError> {
    authorize(&p, Action::ManageStaff)?;
    let id = parse_id(&id, ApiError::NotFound("user"))?;
    check_opt_text("display_name", req.display_name.as_deref(), 200)?;
    let teams = match req.teams {
        Some(t) => Some(check_staff_teams(&s, p.tenant(), t).await?),
        None => None,
    };
    let u = s
        .store
        .update_staff(
            p.tenant(),
            id,
            StaffUpdate {
                display_name: req
                    .display_name
                    .map(|n| Some(n.trim().to_owned()).filter(|n| !n.is_empty())),
                role: req.role.map(convert::staff_role_in),
                teams,
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("user"),
            e => e.into(),
        })?;
    Ok(Json(convert::staff(u)))
}

/// A staff member's teams, checked: each one of the desk settings' teams, listed once.
async fn check_staff_teams(
    s: &AppState,
    tenant: uuid::Uuid,
    teams: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    if teams.is_empty() {
        return Ok(teams);
    }
    let known = s.engine.desk_team_names(tenant).await;
    let mut out: Vec<String> = Vec::new();
    for t in teams {
        if !known.contains(&t) {
            return Err(ApiError::InvalidRequest(format!(
                "`teams`: {t:?} is not one of the desk's teams (set them in /v1/admin/desk-config)"
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn redact(mut c: ModelConfig) -> ModelConfig {
    for p in &mut c.providers {
        if p.api_key.is_some() {
            p.api_key = Some(REDACTED.into());
        }
    }
    c
}

/// Checks a model setup before it is stored: names unique, URLs http(s), every chain entry resolvable.
pub fn validate_model_config(c: &ModelConfig) -> Result<(), String> {
    if c.providers.is_empty() || c.providers.len() > 16 {
        return Err("`providers` must have 1 to 16 entries".into());
    }
    let mut names = std::collections::HashSet::new();
    for p in &c.providers {
        let name_ok = !p.name.is_empty()
            && p.name.len() <= 64
            && p.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(format!(
                "provider name {:?} must be 1-64 of A-Z a-z 0-9 - _ .",
                p.name
            ));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!("provider name {:?} is used twice", p.name));
        }
        let uri: axum::http::Uri = p
            .base_url
            .parse()
            .map_err(|_| format!("provider {:?}: base_url is not a URL", p.name))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "provider {:?}: base_url must be an http(s) URL",
                p.name
            ));
        }
        if p.api_key
            .as_deref()
            .is_some_and(|k| k.len() > 4096 || k.contains(['\0', '\n', '\r']))
        {
            return Err(format!("provider {:?}: api_key is malformed", p.name));
        }
    }
    if c.chain.is_empty() || c.chain.len() > 10 {
        return Err("`chain` must have 1 to 10 entries".into());
    }
    if c.cheap_chain.len() > 10 {
        return Err("`cheap_chain` must have at most 10 entries".into());
    }
    if c.currency
        .as_deref()
        .is_some_and(|x| x.is_empty() || x.len() > 8 || !x.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err("`currency` must be 1-8 letters, e.g. CNY".into());
    }
    for e in c.chain.iter().chain(&c.cheap_chain) {
        for (name, price) in [
            ("input_price", e.input_price),
            ("output_price", e.output_price),
        ] {
            if price.is_some_and(|p| !p.is_finite() || !(0.0..=1e6).contains(&p)) {
                return Err(format!(
                    "chain entry {:?}: `{name}` must be 0 to 1000000 per million tokens",
                    e.model
                ));
            }
        }
    }
    for e in c.chain.iter().chain(&c.cheap_chain) {
        if !names.contains(e.provider.as_str()) {
            return Err(format!(
                "chain entry names unknown provider {:?}",
                e.provider
            ));
        }
        if e.model.trim().is_empty() || e.model.len() > 200 {
            return Err("chain entry `model` must be 1-200 characters".into());
        }
    }
    if c.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err("`temperature` must be between 0 and 2".into());
    }
    if c.max_tokens.is_some_and(|m| m == 0 || m > 32_768) {
        return Err("`max_tokens` must be between 1 and 32768".into());
    }
    if c.system_prompt
        .as_deref()
        .is_some_and(|s| s.chars().count() > 20_000 || s.contains('\0'))
    {
        return Err("`system_prompt` must be at most 20000 characters".into());
    }
    Ok(())
}

/// The tenant's model setup (API keys redacted), or the server default when it has none.
#[utoipa::path(get, path = "/v1/admin/model-config", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ModelConfigResponse), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_model_config(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<ModelConfigResponse>, ApiError> {
    authorize(&p, Action::ManageModels)?;
    let t = s
        .store
        .get_tenant(p.tenant())
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let own = t
        .model_config
        .map(serde_json::from_value::<ModelConfig>)
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(match own {
        Some(c) => ModelConfigResponse {
            source: "tenant".into(),
            config: redact(c),
        },
        None => match s.settings.default_model_config.clone() {
            Some(c) => ModelConfigResponse {
                source: "default".into(),
                config: redact(c),
            },
            None => ModelConfigResponse {
                source: "none".into(),
                config: ModelConfig {
                    providers: vec![],
                    chain: vec![],
                    temperature: None,
                    max_tokens: None,
                    system_prompt: None,
                    cheap_chain: vec![],
                    currency: None,
                },
            },
        },
    }))
}

/// Replace the tenant's model setup; the next message uses it (no restart). Send `"***"` as a provider's
/// `api_key` to keep the key stored for that provider name.
#[utoipa::path(put, path = "/v1/admin/model-config", tag = "admin", security(("bearer" = [])), request_body = ModelConfig,
    responses((status = 200, body = ModelConfigResponse), (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn put_model_config(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(mut cfg): ApiJson<ModelConfig>,
) -> Result<Json<ModelConfigResponse>, ApiError> {
    authorize(&p, Action::ManageModels)?;
    let t = s
        .store
        .get_tenant(p.tenant())
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let previous: Option<ModelConfig> = t.model_config.and_then(|v| serde_json::from_value(v).ok());
    for prov in &mut cfg.providers {
        if prov.api_key.as_deref() == Some(REDACTED) {
            let kept = previous
                .as_ref()
                .and_then(|c| c.providers.iter().find(|o| o.name == prov.name))
                .and_then(|o| o.api_key.clone());
            match kept {
                Some(k) => prov.api_key = Some(k),
                None => {
                    return Err(ApiError::InvalidRequest(format!(
                        "provider {:?}: `***` keeps a stored key, but none is stored",
                        prov.name
                    )))
                }
            }
        }
    }
    validate_model_config(&cfg).map_err(ApiError::InvalidRequest)?;
    let value = serde_json::to_value(&cfg).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .set_tenant_model_config(p.tenant(), Some(value))
        .await?;
    s.models.invalidate(&p.tenant().to_string());
    tracing::info!(tenant_id = %p.tenant(), chain = ?cfg.chain, "model setup changed");
    Ok(Json(ModelConfigResponse {
        source: "tenant".into(),
        config: redact(cfg),
    }))
}

/// Drop the tenant's own setup and use the server default again.
#[utoipa::path(delete, path = "/v1/admin/model-config", tag = "admin", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn delete_model_config(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<StatusCode, ApiError> {
    authorize(&p, Action::ManageModels)?;
    s.store.set_tenant_model_config(p.tenant(), None).await?;
    s.models.invalidate(&p.tenant().to_string());
    Ok(StatusCode::NO_CONTENT)
}

/// The secret the tenant's backend signs customer identity tokens with (HS256).
#[utoipa::path(get, path = "/v1/admin/customer-secret", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = CustomerSecret), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_customer_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<CustomerSecret>, ApiError> {
    authorize(&p, Action::ManageCustomerSecret)?;
    let t = s
        .store
        .get_tenant(p.tenant())
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    Ok(Json(CustomerSecret {
        customer_secret: t.customer_secret,
    }))
}

/// Replace the customer-token secret; tokens signed with the old one stop working.
#[utoipa::path(post, path = "/v1/admin/customer-secret/rotate", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = CustomerSecret), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn rotate_customer_secret(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<CustomerSecret>, ApiError> {
    authorize(&p, Action::ManageCustomerSecret)?;
    let secret = random_secret();
    s.store
        .set_tenant_customer_secret(p.tenant(), &secret)
        .await?;
    Ok(Json(CustomerSecret {
        customer_secret: secret,
    }))
}

/// Team names: 1–40 characters without control characters, unique; at most 50 teams and 200 entries per list.
fn check_teams(teams: &[kefu_types::TeamRule]) -> Result<(), ApiError> {
    if teams.len() > 50 {
        return Err(ApiError::InvalidRequest("at most 50 `teams`".into()));
    }
    for (i, t) in teams.iter().enumerate() {
        let n = t.name.chars().count();
        if n == 0 || n > 40 || t.name.trim() != t.name || t.name.chars().any(char::is_control) {
            return Err(ApiError::InvalidRequest(format!(
                "`teams[{i}].name` must be 1 to 40 characters, no control characters or outer spaces"
            )));
        }
        if teams[..i].iter().any(|o| o.name == t.name) {
            return Err(ApiError::InvalidRequest(format!(
                "`teams[{i}].name` {:?} is listed twice",
                t.name
            )));
        }
        for (field, list) in [
            ("intents", &t.intents),
            ("keywords", &t.keywords),
            ("tiers", &t.tiers),
            ("languages", &t.languages),
        ] {
            if list.len() > 200 || list.iter().any(|x| x.chars().count() > 100) {
                return Err(ApiError::InvalidRequest(format!(
                    "`teams[{i}].{field}`: at most 200 entries of up to 100 characters"
                )));
            }
        }
    }
    Ok(())
}

/// The desk's settings (business hours); empty when none are set (people always there).
#[utoipa::path(get, path = "/v1/admin/desk-config", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = DeskConfig), (status = 403, body = kefu_types::ErrorBody)))]
pub(crate) async fn get_desk_config(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<DeskConfig>, ApiError> {
    authorize(&p, Action::ManageDesk)?;
    let t = s
        .store
        .get_tenant(p.tenant())
        .await?
        .ok_or(ApiError::TenantNotFound)?;
    let cfg = t
        .desk_config
        .map(serde_json::from_value::<DeskConfig>)
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .unwrap_or_default();
    Ok(Json(cfg))
}

/// Replace the desk's settings; hand-offs use them at once. Hours are checked (`422` with the reason).
#[utoipa::path(put, path = "/v1/admin/desk-config", tag = "admin", security(("bearer" = [])), request_body = DeskConfig,
    responses((status = 200, body = DeskConfig), (status = 403, body = kefu_types::ErrorBody),
              (status = 422, body = kefu_types::ErrorBody)))]
pub(crate) async fn put_desk_config(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(cfg): ApiJson<DeskConfig>,
) -> Result<Json<DeskConfig>, ApiError> {
    authorize(&p, Action::ManageDesk)?;
    if let Some(h) = &cfg.business_hours {
        kefu_engine::desk::Schedule::parse(h).map_err(ApiError::InvalidRequest)?;
    }
    kefu_engine::desk::Assignment::parse(cfg.assignment.as_deref())
        .map_err(ApiError::InvalidRequest)?;
    if cfg.agent_capacity.is_some_and(|c| !(1..=100).contains(&c)) {
        return Err(ApiError::InvalidRequest(
            "`agent_capacity` must be 1 to 100".into(),
        ));
    }
    check_teams(&cfg.teams)?;
    let value = serde_json::to_value(&cfg).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store
        .set_tenant_desk_config(p.tenant(), Some(value))
        .await?;
    Ok(Json(cfg))
}
