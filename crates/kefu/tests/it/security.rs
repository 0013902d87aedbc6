use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn every_conversation_endpoint_requires_identity() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("x")).await;
    let paths = [
        ("POST", "/v1/conversations".to_owned()),
        ("GET", format!("/v1/conversations/{id}")),
        ("POST", format!("/v1/conversations/{id}/close")),
        ("POST", format!("/v1/conversations/{id}/messages")),
        ("GET", format!("/v1/conversations/{id}/messages")),
        ("GET", format!("/v1/conversations/{id}/events")),
        ("GET", format!("/v1/conversations/{id}/ws")),
        ("GET", "/v1/tenant".to_owned()),
        ("GET", "/v1/admin/api-keys".to_owned()),
        ("GET", "/v1/admin/users".to_owned()),
        ("GET", "/v1/admin/model-config".to_owned()),
        ("GET", "/v1/admin/customer-secret".to_owned()),
    ];
    for (method, path) in &paths {
        let rb = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .json(&json!({"content": "x"}));
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_error(&r.json().await.unwrap(), "unauthenticated");
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth("garbage.token.here")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_error(&r.json().await.unwrap(), "invalid_token");
    }
    // Unknown API keys and forged JWTs are rejected.
    let r = app
        .get(
            "kefu_sk_0000000000000000000000000000000000000000000000000000000000000000",
            "/v1/tenant",
        )
        .await;
    assert_eq!(r.status(), 401);
    let forged = jsonwebtoken_like_forgery();
    let r = app.get(&forged, "/v1/tenant").await;
    assert_error(&r.json().await.unwrap(), "invalid_token");
}

/// A structurally valid HS256 token signed with the wrong secret.
fn jsonwebtoken_like_forgery() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64.encode(
        json!({"sub": uuid::Uuid::new_v4(), "tid": uuid::Uuid::new_v4(), "role": "admin", "iat": 0, "exp": 4102444800u64}).to_string(),
    );
    format!("{header}.{claims}.{}", b64.encode([7u8; 32]))
}

#[tokio::test]
async fn one_tenant_cannot_touch_anothers_data() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("victim")).await;
    app.send(&app.api_key, &id, "my secret order", None, true)
        .await;
    let (other_slug, other_key) = app.other_tenant().await;
    let other_admin = app.other_admin(&other_slug).await;
    for token in [&other_key, &other_admin] {
        for (method, path) in [
            ("GET", format!("/v1/conversations/{id}")),
            ("GET", format!("/v1/conversations/{id}/messages")),
            ("GET", format!("/v1/conversations/{id}/events")),
            ("GET", format!("/v1/conversations/{id}/ws")),
            ("POST", format!("/v1/conversations/{id}/close")),
            ("POST", format!("/v1/conversations/{id}/messages")),
        ] {
            let r = app
                .client
                .request(method.parse().unwrap(), app.url(&path))
                .bearer_auth(token)
                .json(&json!({"content": "intrusion"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            // Staff may not send customer messages at all (403); everything else is "not found".
            assert!(
                status == 404 || (status == 403 && path.ends_with("/messages") && method == "POST"),
                "{method} {path}: {status} {body}"
            );
        }
    }
    // Nothing changed for the owner.
    let conv = app
        .get(&app.api_key, &format!("/v1/conversations/{id}"))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(conv["status"], "open");
    assert_eq!(app.messages(&app.api_key, &id, 0).await.len(), 2);
    // Admin listings are per tenant.
    let admin = app.admin_token().await;
    let mine: Vec<Value> = app
        .get(&admin, "/v1/admin/api-keys")
        .await
        .json()
        .await
        .unwrap();
    let theirs: Vec<Value> = app
        .get(&other_admin, "/v1/admin/api-keys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(theirs.len(), 1);
    assert_ne!(mine[0]["id"], theirs[0]["id"]);
    let their_key_id = theirs[0]["id"].as_str().unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/v1/admin/api-keys/{their_key_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "cannot revoke another tenant's key");
    assert_eq!(app.get(&other_key, "/v1/tenant").await.status(), 200);
}

#[tokio::test]
async fn customers_only_see_their_own_conversations() {
    let app = spawn_app().await;
    let (alice, _) = app.customer_session(None).await;
    let (bob, _) = app.customer_session(None).await;
    let id = app.new_conversation(&alice, None).await;
    assert_eq!(
        app.get(&bob, &format!("/v1/conversations/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(app.send(&bob, &id, "hi", None, false).await.status(), 404);
    assert_eq!(
        app.get(&alice, &format!("/v1/conversations/{id}"))
            .await
            .status(),
        200
    );
    // Customers cannot administer or name other customers.
    assert_eq!(app.get(&alice, "/v1/admin/api-keys").await.status(), 403);
    let r = app
        .post(
            &alice,
            "/v1/conversations",
            json!({"customer_external_id": "someone-else"}),
        )
        .await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn roles_gate_administration() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let r = app
        .post(
            &admin,
            "/v1/admin/users",
            json!({"email": "Agent@Acme.test", "password": "agent-password-1", "role": "agent"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "agent@acme.test");
    let dup = app
        .post(
            &admin,
            "/v1/admin/users",
            json!({"email": "agent@acme.test", "password": "agent-password-1", "role": "agent"}),
        )
        .await;
    assert_eq!(dup.status(), 409);
    let agent = app.login("agent@acme.test", "agent-password-1").await;
    for path in [
        "/v1/admin/api-keys",
        "/v1/admin/users",
        "/v1/admin/model-config",
        "/v1/admin/customer-secret",
    ] {
        let r = app.get(&agent, path).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_error(&r.json().await.unwrap(), "forbidden");
    }
    assert_eq!(app.get(&agent, "/v1/tenant").await.status(), 200);
    // An agent can read conversations but not speak as the customer.
    let id = app.new_conversation(&app.api_key, Some("c")).await;
    assert_eq!(
        app.get(&agent, &format!("/v1/conversations/{id}"))
            .await
            .status(),
        200
    );
    assert_eq!(app.send(&agent, &id, "hi", None, false).await.status(), 403);
    // API clients cannot administer either.
    assert_eq!(app.get(&app.api_key, "/v1/admin/users").await.status(), 403);
    // Wrong password.
    let r = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"tenant": app.tenant, "email": "agent@acme.test", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "invalid_credentials");
}

#[tokio::test]
async fn api_keys_are_shown_once_and_revocation_takes_effect() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let r = app
        .post(&admin, "/v1/admin/api-keys", json!({"name": "crm"}))
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kefu_sk_"));
    assert_eq!(app.get(&key, "/v1/tenant").await.status(), 200);
    let listed: Vec<Value> = app
        .get(&admin, "/v1/admin/api-keys")
        .await
        .json()
        .await
        .unwrap();
    assert!(listed
        .iter()
        .all(|k| k.get("key").is_none() && !k.to_string().contains(&key)));
    let id = created["api_key"]["id"].as_str().unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/v1/admin/api-keys/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app.get(&key, "/v1/tenant").await;
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "api_key_revoked");
}

#[tokio::test]
async fn customer_identity_tokens_are_verified_with_the_tenant_secret() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let secret = app
        .get(&admin, "/v1/admin/customer-secret")
        .await
        .json::<Value>()
        .await
        .unwrap()["customer_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = hs256(
        secret.as_bytes(),
        &json!({"sub": "user-77", "name": "李雷", "exp": exp}),
    );
    let (token, customer) = app.customer_session(Some(&good)).await;
    assert_eq!(customer["external_id"], "user-77");
    assert_eq!(customer["display_name"], "李雷");
    assert_eq!(customer["anonymous"], false);
    // The same identity maps to the same customer; its conversations are visible to the API client by that id.
    let (_, again) = app.customer_session(Some(&good)).await;
    assert_eq!(again["id"], customer["id"]);
    let conv = app.create_conversation(&token, None).await;
    assert_eq!(conv["customer_id"], customer["id"]);
    for bad in [
        hs256(b"wrong-secret", &json!({"sub": "user-77", "exp": exp})),
        hs256(secret.as_bytes(), &json!({"sub": "user-77", "exp": 1000})),
        hs256(secret.as_bytes(), &json!({"sub": "user-77"})),
    ] {
        let r = app
            .client
            .post(app.url("/v1/customer-sessions"))
            .json(&json!({"tenant": app.tenant, "identity_token": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Rotation invalidates tokens signed with the old secret.
    app.post(&admin, "/v1/admin/customer-secret/rotate", json!({}))
        .await;
    let r = app
        .client
        .post(app.url("/v1/customer-sessions"))
        .json(&json!({"tenant": app.tenant, "identity_token": good}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(app.url("/v1/customer-sessions"))
        .json(&json!({"tenant": "no-such-shop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_error(&r.json().await.unwrap(), "tenant_not_found");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(
        Backend::Sqlite,
        "[limits]\nper_ip_per_minute = 60\nper_ip_burst = 5\nper_key_per_minute = 60\nper_key_burst = 3\n",
    )
    .await;
    // Per API key: 3 then 429 (each request also spends the IP budget of 5).
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(app.get(&app.api_key, "/v1/tenant").await);
    }
    assert_eq!(
        statuses
            .iter()
            .map(|r| r.status().as_u16())
            .collect::<Vec<_>>(),
        [200, 200, 200, 429]
    );
    let limited = statuses.pop().unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    assert_error(&limited.json().await.unwrap(), "rate_limited");
    // Per IP: four requests spent, the fifth is the last of the burst, the sixth is refused.
    let session = || {
        app.client
            .post(app.url("/v1/customer-sessions"))
            .json(&json!({"tenant": app.tenant}))
            .send()
    };
    assert_eq!(session().await.unwrap().status(), 201);
    assert_eq!(session().await.unwrap().status(), 429);
    // Health checks are not limited.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// HS256 JWT over `claims`, signed with `secret`.
fn hs256(secret: &[u8], claims: &Value) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let msg = format!(
        "{}.{}",
        b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(msg.as_bytes());
    format!("{msg}.{}", b64.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn expired_and_cross_tenant_session_tokens_are_rejected() {
    let app = spawn_app().await;
    let secret = std::fs::read_to_string(app.data_dir.join("jwt.secret")).unwrap();
    let tenant = app
        .store
        .get_tenant_by_slug(&app.tenant)
        .await
        .unwrap()
        .unwrap();
    let admin = app
        .store
        .get_staff_by_email(tenant.id, &app.admin_email)
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64, tid: String| json!({"sub": admin.id, "tid": tid, "role": "admin", "iat": now - 7200, "exp": exp});
    // Signed with the server's real secret, so only the expiry is wrong.
    let valid = hs256(
        secret.trim().as_bytes(),
        &claims(now + 600, tenant.id.to_string()),
    );
    assert_eq!(app.get(&valid, "/v1/admin/api-keys").await.status(), 200);
    let expired = hs256(
        secret.trim().as_bytes(),
        &claims(now - 3600, tenant.id.to_string()),
    );
    let r = app.get(&expired, "/v1/admin/api-keys").await;
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "token_expired");
    // A token for a tenant that does not hold this data sees nothing of it.
    let id = app.new_conversation(&app.api_key, Some("t")).await;
    let elsewhere = hs256(
        secret.trim().as_bytes(),
        &claims(now + 600, uuid::Uuid::new_v4().to_string()),
    );
    assert_eq!(
        app.get(&elsewhere, &format!("/v1/conversations/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get(&elsewhere, "/v1/admin/api-keys")
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .len(),
        0
    );
}
