use serde_json::json;

use crate::helpers::*;
use kefu_testkit::Reply;

async fn answers_with_history_tokens_and_latency(backend: Backend) {
    let app = spawn_app_with(backend, "").await;
    let conv = app.create_conversation(&app.api_key, Some("crm-42")).await;
    let id = conv["id"].as_str().unwrap();
    assert_eq!(conv["status"], "open");
    assert_eq!(conv["channel"], "api");

    app.fake
        .push(Reply::text(&["您好！", "请问有什么可以帮您？"]));
    let r = app.send(&app.api_key, id, "你好", None, true).await;
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"]["seq"], 1);
    assert_eq!(body["message"]["role"], "customer");
    let reply = &body["reply"];
    assert_eq!(reply["content"], "您好！请问有什么可以帮您？");
    assert_eq!(reply["reply_to_seq"], 1);
    assert_eq!(
        reply["model"],
        format!("{}/fake-model", app.fake.base_url())
    );
    assert_eq!(reply["completion_tokens"], 2);
    assert!(reply["prompt_tokens"].as_i64().unwrap() > 0);
    assert!(reply["latency_ms"].as_i64().is_some());
    assert_eq!(reply["fallback"], false);

    // The second turn carries the history, persona first.
    let r = app
        .send(&app.api_key, id, "Where is my order?", None, true)
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reply"]["content"], "Echo: Where is my order?");
    let sent = &app.fake.requests()[1]["messages"];
    let roles: Vec<_> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(sent[1]["content"], "你好");
    assert_eq!(sent[2]["content"], "您好！请问有什么可以帮您？");

    let all = app.messages(&app.api_key, id, 0).await;
    assert_eq!(
        all.iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let after = app.messages(&app.api_key, id, 2).await;
    assert_eq!(after.len(), 2);
    let got = app
        .get(&app.api_key, &format!("/v1/conversations/{id}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(got["last_seq"], 4);

    let r = app
        .post(
            &app.api_key,
            &format!("/v1/conversations/{id}/close"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "closed"
    );
    let r = app
        .send(&app.api_key, id, "still there?", None, false)
        .await;
    assert_eq!(r.status(), 409);
    assert_error(&r.json().await.unwrap(), "conversation_closed");
    // Closing again is harmless.
    assert_eq!(
        app.post(
            &app.api_key,
            &format!("/v1/conversations/{id}/close"),
            json!({})
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn sqlite_answers_with_history_tokens_and_latency() {
    answers_with_history_tokens_and_latency(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_answers_with_history_tokens_and_latency() {
    answers_with_history_tokens_and_latency(Backend::Postgres).await;
}

async fn idempotent_retries_never_duplicate(backend: Backend) {
    let app = spawn_app_with(backend, "").await;
    let id = app.new_conversation(&app.api_key, Some("c1")).await;
    let first = app
        .send(
            &app.api_key,
            &id,
            "退款什么时候到账？",
            Some("retry-1"),
            true,
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    for _ in 0..3 {
        let again = app
            .send(
                &app.api_key,
                &id,
                "退款什么时候到账？",
                Some("retry-1"),
                false,
            )
            .await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: serde_json::Value = again.json().await.unwrap();
        assert_eq!(again["message"], first["message"]);
        assert_eq!(
            again["reply"], first["reply"],
            "a replay after the answer returns the answer"
        );
    }
    // Concurrent retries: still one message.
    let key = "burst-1";
    let futs: Vec<_> = (0..8)
        .map(|_| app.send(&app.api_key, &id, "hello", Some(key), false))
        .collect();
    let statuses: Vec<u16> = futures::future::join_all(futs)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    // Same key, different content: refused, nothing stored.
    let before = app.messages(&app.api_key, &id, 0).await.len();
    let clash = app
        .send(&app.api_key, &id, "something else", Some("retry-1"), false)
        .await;
    assert_eq!(clash.status(), 422);
    assert_error(&clash.json().await.unwrap(), "idempotency_key_reused");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let customer_msgs = app
        .messages(&app.api_key, &id, 0)
        .await
        .into_iter()
        .filter(|m| m["role"] == "customer")
        .count();
    assert_eq!(customer_msgs, 2);
    assert!(app.messages(&app.api_key, &id, 0).await.len() >= before);
    // The model was asked once per stored customer message, never for a replay.
    assert_eq!(app.fake.request_count(), 2);
}

#[tokio::test]
async fn sqlite_idempotent_retries_never_duplicate() {
    idempotent_retries_never_duplicate(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_idempotent_retries_never_duplicate() {
    idempotent_retries_never_duplicate(Backend::Postgres).await;
}

#[tokio::test]
async fn customers_chat_through_sessions_and_see_no_internals() {
    let app = spawn_app().await;
    let (token, customer) = app.customer_session(None).await;
    assert_eq!(customer["anonymous"], true);
    let conv = app.create_conversation(&token, None).await;
    assert_eq!(conv["channel"], "web");
    let id = conv["id"].as_str().unwrap();
    let r = app.send(&token, id, "hi", None, true).await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reply"]["content"], "Echo: hi");
    assert!(
        body["reply"]["model"].is_null(),
        "customers do not see model names"
    );
    assert!(body["reply"]["prompt_tokens"].is_null());
    // Staff see the same conversation with the internals.
    let admin = app.admin_token().await;
    let msgs = app.messages(&admin, id, 0).await;
    assert!(msgs[1]["model"].is_string());
}

#[tokio::test]
async fn listing_pages_through_messages() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("pager")).await;
    for i in 0..3 {
        app.send(&app.api_key, &id, &format!("q{i}"), None, true)
            .await;
    }
    let r = app
        .get(
            &app.api_key,
            &format!("/v1/conversations/{id}/messages?limit=4"),
        )
        .await;
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    assert_eq!(page["has_more"], true);
    let next = page["next_after"].as_i64().unwrap();
    let r = app
        .get(
            &app.api_key,
            &format!("/v1/conversations/{id}/messages?after={next}&limit=4"),
        )
        .await;
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], false);
}
