//! Identity and access: who is calling (API key, staff JWT, customer session), and what each role may do.
//!
//! - Tenant API keys (`kefu_sk_…`) for server-to-server calls; stored as SHA-256 hashes (the keys are random
//!   256-bit secrets, so a slow hash adds nothing).
//! - Staff sign in with email + password (argon2id) and get a short-lived HS256 JWT.
//! - Customers get a session token from `/v1/customer-sessions`, either anonymously or by presenting an identity
//!   token their tenant signed with its customer secret (HS256).
//!
//! Every principal carries its tenant; handlers only ever query within it. [`authorize`] is the one role matrix.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use kefu_store::StaffRole;

use crate::error::ApiError;
use crate::AppState;

pub const API_KEY_PREFIX: &str = "kefu_sk_";

#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Staff {
        tenant: Uuid,
        user: Uuid,
        role: StaffRole,
    },
    ApiClient {
        tenant: Uuid,
        key: Uuid,
    },
    Customer {
        tenant: Uuid,
        customer: Uuid,
    },
}

impl Principal {
    /// The staff member acting (`None` for API keys and customers).
    pub fn staff_id(&self) -> Option<Uuid> {
        match self {
            Principal::Staff { user, .. } => Some(*user),
            _ => None,
        }
    }

    pub fn tenant(&self) -> Uuid {
        match self {
            Principal::Staff { tenant, .. }
            | Principal::ApiClient { tenant, .. }
            | Principal::Customer { tenant, .. } => *tenant,
        }
    }
}

/// Everything an endpoint can ask permission for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CreateConversation,
    SendCustomerMessage,
    ReadConversation,
    CloseConversation,
    ReadTenant,
    ManageApiKeys,
    ManageStaff,
    ManageModels,
    ManageCustomerSecret,
    /// Search and browse the knowledge base (agents look answers up while they work).
    SearchKnowledge,
    /// Import and delete knowledge-base documents.
    ManageKnowledge,
    /// Read why the assistant answered what it did (the turn records).
    ReadTurnTraces,
    /// Hand a conversation to people or back to the assistant.
    SetHandler,
    /// Read the assistant's operating numbers (answer-cache hits and tokens saved).
    ReadStats,
    /// Work the desk: see the queue, accept, reply, transfer or release one's own conversations, read briefs.
    UseDesk,
    /// See every agent's conversations and move or release them.
    SuperviseDesk,
    /// Ask for a person (the widget's "talk to a human").
    RequestHuman,
    /// Rate a conversation (CSAT).
    RateConversation,
    /// Create, update and annotate tickets.
    ManageTickets,
    /// Read tickets (customers: their own, without internals).
    ReadTickets,
    /// Set the desk's business hours.
    ManageDesk,
    /// Set the tenant's sensitive words and try them.
    ManageModeration,
    /// Train, switch, delete and try the tenant's intent classifiers.
    ManageIntents,
}

/// The role matrix. Ownership (a customer only sees their own conversations) is checked where the row is loaded.
pub fn authorize(p: &Principal, action: Action) -> Result<(), ApiError> {
    use Action::*;
    let allowed = match (p, action) {
        (
            Principal::Customer { .. },
            CreateConversation | SendCustomerMessage | ReadConversation | CloseConversation
            | RequestHuman | RateConversation | ReadTickets,
        ) => true,
        (
            Principal::Customer { .. },
            ManageTickets | ManageDesk | ManageModeration | ManageIntents | ReadTenant
            | ManageApiKeys | ManageStaff | ManageModels | ManageCustomerSecret | SearchKnowledge
            | ManageKnowledge | ReadTurnTraces | SetHandler | ReadStats | UseDesk | SuperviseDesk,
        ) => false,
        // An integration speaks for its customers, including asking for a person and relaying their rating.
        (
            Principal::ApiClient { .. },
            CreateConversation | SendCustomerMessage | ReadConversation | CloseConversation
            | RequestHuman | RateConversation,
        ) => true,
        // The desk is for our staff, signed in as themselves.
        (Principal::ApiClient { .. }, UseDesk | SuperviseDesk) => false,
        // An integration may read tickets (e.g. to show them in the shop's account pages), not work them.
        (Principal::ApiClient { .. }, ReadTickets) => true,
        (
            Principal::ApiClient { .. },
            ManageTickets | ManageDesk | ManageModeration | ManageIntents,
        ) => false,
        // Supervisors run the desk with admins.
        (Principal::Staff { role, .. }, ManageDesk) => *role != StaffRole::Agent,
        (Principal::Staff { .. }, ManageTickets | ReadTickets) => true,
        (Principal::Staff { .. }, UseDesk) => true,
        (Principal::Staff { role, .. }, SuperviseDesk) => *role != StaffRole::Agent,
        // Staff do not rate or ask for themselves; they set the handler directly.
        (Principal::Staff { .. }, RequestHuman | RateConversation) => false,
        // A backend integration may look answers up; it does not change the knowledge base.
        (Principal::ApiClient { .. }, ReadTenant | SearchKnowledge) => true,
        (
            Principal::ApiClient { .. },
            ManageApiKeys | ManageStaff | ManageModels | ManageCustomerSecret | ManageKnowledge,
        ) => false,
        // An integration (e.g. an IM bridge with its own agents) may hand conversations over; our internals stay
        // with our staff.
        (Principal::ApiClient { .. }, SetHandler) => true,
        (Principal::ApiClient { .. }, ReadTurnTraces | ReadStats) => false,
        (Principal::Staff { role, .. }, ReadStats) => *role != StaffRole::Agent,
        (Principal::Staff { .. }, ReadTurnTraces | SetHandler) => true,
        (Principal::Staff { .. }, SearchKnowledge) => true,
        // Supervisors curate knowledge with admins.
        (Principal::Staff { role, .. }, ManageKnowledge) => *role != StaffRole::Agent,
        // So do they the content policy, and what the assistant understands.
        (Principal::Staff { role, .. }, ManageModeration | ManageIntents) => {
            *role != StaffRole::Agent
        }
        (Principal::Staff { .. }, ReadConversation | CloseConversation | ReadTenant) => true,
        // Staff do not speak as the customer; agents reply through the desk (later).
        (Principal::Staff { .. }, CreateConversation | SendCustomerMessage) => false,
        (
            Principal::Staff { role, .. },
            ManageApiKeys | ManageStaff | ManageModels | ManageCustomerSecret,
        ) => *role == StaffRole::Admin,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    /// Staff user id or customer id.
    sub: String,
    tid: String,
    /// "admin" | "supervisor" | "agent" | "customer"
    role: String,
    iat: u64,
    exp: u64,
}

#[derive(Debug, Deserialize)]
struct IdentityClaims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
}

/// Signs and checks the server's own tokens (staff and customer sessions).
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub staff_ttl: Duration,
    pub customer_ttl: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 5;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

fn jwt_error(e: jsonwebtoken::errors::Error) -> ApiError {
    match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => ApiError::TokenExpired,
        _ => ApiError::InvalidToken,
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8], staff_ttl: Duration, customer_ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            staff_ttl,
            customer_ttl,
        }
    }

    fn sign(&self, sub: Uuid, tenant: Uuid, role: &str, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = SessionClaims {
            sub: sub.to_string(),
            tid: tenant.to_string(),
            role: role.into(),
            iat,
            exp: iat + ttl.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn sign_staff(&self, tenant: Uuid, user: Uuid, role: StaffRole) -> String {
        self.sign(user, tenant, role.as_str(), self.staff_ttl)
    }

    pub fn sign_customer(&self, tenant: Uuid, customer: Uuid) -> String {
        self.sign(customer, tenant, "customer", self.customer_ttl)
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data =
            decode::<SessionClaims>(token, &self.decoding, &validation()).map_err(jwt_error)?;
        let c = data.claims;
        let sub = Uuid::parse_str(&c.sub).map_err(|_| ApiError::InvalidToken)?;
        let tenant = Uuid::parse_str(&c.tid).map_err(|_| ApiError::InvalidToken)?;
        match c.role.as_str() {
            "customer" => Ok(Principal::Customer {
                tenant,
                customer: sub,
            }),
            r => StaffRole::parse(r)
                .map(|role| Principal::Staff {
                    tenant,
                    user: sub,
                    role,
                })
                .ok_or(ApiError::InvalidToken),
        }
    }
}

/// Verifies a customer identity token signed by the tenant; returns (external id, display name).
pub fn verify_identity_token(
    token: &str,
    tenant_secret: &str,
) -> Result<(String, Option<String>), ApiError> {
    let data = decode::<IdentityClaims>(
        token,
        &DecodingKey::from_secret(tenant_secret.as_bytes()),
        &validation(),
    )
    .map_err(jwt_error)?;
    if data.claims.sub.is_empty() || data.claims.sub.len() > 200 || data.claims.sub.contains('\0') {
        return Err(ApiError::InvalidToken);
    }
    Ok((
        data.claims.sub,
        data.claims
            .name
            .filter(|n| n.len() <= 200 && !n.contains('\0')),
    ))
}

/// An identity token for a customer, as a tenant's own backend would sign it with the tenant's customer secret
/// (used by the built-in demo page; real sites sign on their server).
pub fn sign_identity_token(
    tenant_secret: &str,
    sub: &str,
    name: Option<&str>,
    ttl: Duration,
) -> String {
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        iat: u64,
        exp: u64,
    }
    let iat = now_secs();
    let claims = Claims {
        sub,
        name,
        iat,
        exp: iat + ttl.as_secs(),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(tenant_secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// A new API key: (secret to show once, prefix to display, hash to store).
pub fn new_api_key() -> (String, String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = format!("{API_KEY_PREFIX}{}", hex::encode(bytes));
    let prefix = secret[..API_KEY_PREFIX.len() + 6].to_owned();
    let hash = hash_api_key(&secret);
    (secret, prefix, hash)
}

pub fn hash_api_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A random secret for HMAC signing, hex.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with valid params")
        .to_string()
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A valid hash of nothing in particular, verified when the user does not exist so timing does not reveal it.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("kefu-dummy-password"))
}

fn bearer(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    // Browsers cannot set headers on EventSource or WebSocket: accept `access_token` in the query there.
    let q = parts.uri.query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "access_token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The authenticated caller. Rejects with 401 when missing or invalid, 429 when the API key is over its limit.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthenticated)?;
        if token.starts_with(API_KEY_PREFIX) {
            let key = state
                .store
                .find_api_key_by_hash(&hash_api_key(&token))
                .await?
                .ok_or(ApiError::InvalidToken)?;
            if key.revoked {
                return Err(ApiError::ApiKeyRevoked);
            }
            state.limits.check_key(key.id)?;
            return Ok(Auth(Principal::ApiClient {
                tenant: key.tenant_id,
                key: key.id,
            }));
        }
        Ok(Auth(state.tokens.verify(&token)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            b"test-secret",
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn staff_and_customer_tokens_round_trip() {
        let k = keys();
        let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            k.verify(&k.sign_staff(t, u, StaffRole::Agent)).unwrap(),
            Principal::Staff {
                tenant: t,
                user: u,
                role: StaffRole::Agent
            }
        );
        assert_eq!(
            k.verify(&k.sign_customer(t, u)).unwrap(),
            Principal::Customer {
                tenant: t,
                customer: u
            }
        );
    }

    #[test]
    fn forged_and_expired_tokens_are_rejected() {
        let k = keys();
        let other = TokenKeys::new(
            b"another-secret",
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let forged = other.sign_staff(Uuid::new_v4(), Uuid::new_v4(), StaffRole::Admin);
        assert!(matches!(k.verify(&forged), Err(ApiError::InvalidToken)));
        assert!(matches!(k.verify("not.a.jwt"), Err(ApiError::InvalidToken)));
        let expired = TokenKeys::new(b"test-secret", Duration::ZERO, Duration::ZERO);
        let claims = SessionClaims {
            sub: Uuid::new_v4().to_string(),
            tid: Uuid::new_v4().to_string(),
            role: "admin".into(),
            iat: 0,
            exp: 10,
        };
        let tok = encode(&Header::new(Algorithm::HS256), &claims, &expired.encoding).unwrap();
        assert!(matches!(k.verify(&tok), Err(ApiError::TokenExpired)));
    }

    #[test]
    fn role_matrix() {
        let t = Uuid::new_v4();
        let agent = Principal::Staff {
            tenant: t,
            user: t,
            role: StaffRole::Agent,
        };
        let admin = Principal::Staff {
            tenant: t,
            user: t,
            role: StaffRole::Admin,
        };
        let sup = Principal::Staff {
            tenant: t,
            user: t,
            role: StaffRole::Supervisor,
        };
        let api = Principal::ApiClient { tenant: t, key: t };
        let cust = Principal::Customer {
            tenant: t,
            customer: t,
        };
        assert!(authorize(&admin, Action::ManageModels).is_ok());
        for p in [&agent, &sup, &api, &cust] {
            assert!(authorize(p, Action::ManageModels).is_err());
            assert!(authorize(p, Action::ManageApiKeys).is_err());
            assert!(authorize(p, Action::ManageStaff).is_err());
        }
        assert!(authorize(&agent, Action::SendCustomerMessage).is_err());
        assert!(authorize(&cust, Action::SendCustomerMessage).is_ok());
        assert!(authorize(&api, Action::CreateConversation).is_ok());
        assert!(authorize(&cust, Action::ReadTenant).is_err());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse 电池");
        assert!(verify_password("correct horse 电池", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn api_keys_are_prefixed_and_hashed() {
        let (secret, prefix, hash) = new_api_key();
        assert!(secret.starts_with(API_KEY_PREFIX) && secret.len() == API_KEY_PREFIX.len() + 64);
        assert!(secret.starts_with(&prefix));
        assert_eq!(hash, hash_api_key(&secret));
        assert_ne!(hash, secret);
    }

    #[test]
    fn percent_decoding_of_query_tokens() {
        assert_eq!(percent_decode("a%2Eb%2ec"), "a.b.c");
        assert_eq!(percent_decode("abc%"), "abc%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
