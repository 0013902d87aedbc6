use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("bad")).await;
    let path = format!("/v1/conversations/{id}/messages");
    let raw = |body: Vec<u8>, content_type: &str| {
        app.client
            .post(app.url(&path))
            .bearer_auth(&app.api_key)
            .header("content-type", content_type.to_owned())
            .body(body)
            .send()
    };
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"{not json".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            b"{\"content\": \"\xff\xfe\"}".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            br#"{"content":"hi","extra":1}"#.to_vec(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            br#"{"content":42}"#.to_vec(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            br#"{}"#.to_vec(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            br#"{"content":"hi"}"#.to_vec(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            br#"{"content":"   "}"#.to_vec(),
            "application/json",
            422,
            "empty_message",
        ),
        (
            json!({"content": "长".repeat(4001)})
                .to_string()
                .into_bytes(),
            "application/json",
            422,
            "message_too_long",
        ),
        (
            json!({"content": "a\u{0}b"}).to_string().into_bytes(),
            "application/json",
            422,
            "invalid_request",
        ),
        (
            json!({"content": "x".repeat(70_000)})
                .to_string()
                .into_bytes(),
            "application/json",
            413,
            "payload_too_large",
        ),
    ];
    for (body, ct, status, code) in cases {
        let r = raw(body, ct).await.unwrap();
        assert_eq!(r.status(), status, "{code}");
        let b: Value = r.json().await.unwrap();
        assert_error(&b, code);
    }
    // The longest allowed message (in characters, not bytes) is accepted.
    let r = app
        .send(&app.api_key, &id, &"长".repeat(4000), None, true)
        .await;
    assert_eq!(r.status(), 201);
    // Nothing from the bad requests was stored.
    let stored = app.messages(&app.api_key, &id, 0).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(app.fake.request_count(), 1);
}

#[tokio::test]
async fn unknown_ids_routes_and_bad_parameters() {
    let app = spawn_app().await;
    for path in [
        format!("/v1/conversations/{}", uuid::Uuid::new_v4()),
        "/v1/conversations/not-a-uuid".to_owned(),
        format!("/v1/conversations/{}/messages", uuid::Uuid::new_v4()),
    ] {
        let r = app.get(&app.api_key, &path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_error(&r.json().await.unwrap(), "conversation_not_found");
    }
    let r = app
        .send(
            &app.api_key,
            &uuid::Uuid::new_v4().to_string(),
            "hi",
            None,
            false,
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = app.get(&app.api_key, "/v1/nope").await;
    assert_eq!(r.status(), 404);
    assert_error(&r.json().await.unwrap(), "route_not_found");
    let r = app
        .client
        .delete(app.url("/v1/conversations"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_error(&r.json().await.unwrap(), "method_not_allowed");

    let id = app.new_conversation(&app.api_key, Some("p")).await;
    for q in ["limit=0", "limit=201", "after=-1", "limit=abc"] {
        let r = app
            .get(
                &app.api_key,
                &format!("/v1/conversations/{id}/messages?{q}"),
            )
            .await;
        assert_eq!(r.status(), 422, "{q}");
        assert_error(&r.json().await.unwrap(), "invalid_request");
    }
    for key in ["", &"k".repeat(201), "has space"] {
        let r = app
            .client
            .post(app.url(&format!("/v1/conversations/{id}/messages")))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", key)
            .json(&json!({"content": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{key:?}");
        assert_error(&r.json().await.unwrap(), "invalid_idempotency_key");
    }
    // Conversation creation validation.
    for body in [
        json!({}),
        json!({"customer_external_id": "x", "channel": "Web Chat"}),
        json!({"customer_external_id": "x", "metadata": [1, 2]}),
        json!({"customer_external_id": "x", "unknown": true}),
    ] {
        let r = app
            .post(&app.api_key, "/v1/conversations", body.clone())
            .await;
        assert_eq!(r.status(), 422, "{body}");
    }
    assert_eq!(app.messages(&app.api_key, &id, 0).await.len(), 0);
}

#[tokio::test]
async fn model_config_is_validated_before_it_is_stored() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let put = |body: Value| {
        app.client
            .put(app.url("/v1/admin/model-config"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    for bad in [
        json!({"providers": [], "chain": []}),
        json!({"providers": [{"name": "a", "base_url": "ftp://x"}], "chain": [{"provider": "a", "model": "m"}]}),
        json!({"providers": [{"name": "a", "base_url": "http://x/v1"}], "chain": [{"provider": "b", "model": "m"}]}),
        json!({"providers": [{"name": "a", "base_url": "http://x/v1"}], "chain": [{"provider": "a", "model": "m"}], "temperature": 5.0}),
        json!({"providers": [{"name": "a", "base_url": "http://x/v1", "api_key": "***"}], "chain": [{"provider": "a", "model": "m"}]}),
    ] {
        let r = put(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }
    let cfg: Value = app.get_json(&admin, "/v1/admin/model-config").await;
    assert_eq!(cfg["source"], "default");
    assert_eq!(
        cfg["config"]["providers"][0]["api_key"], "***",
        "keys are never returned"
    );
}
