use std::time::Duration;

use serde_json::{json, Value};

use kefu_testkit::{FakeLlm, Reply};

use crate::helpers::*;

#[tokio::test]
async fn retries_then_the_polite_fallback_when_every_model_fails() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("f")).await;
    // One 429 with Retry-After, then success: retried transparently.
    app.fake.push(Reply::Status {
        code: 429,
        retry_after: Some("0".into()),
    });
    app.fake.push(Reply::text(&["ok"]));
    let body: Value = app
        .send(&app.api_key, &id, "hello", None, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reply"]["content"], "ok");
    assert_eq!(app.fake.request_count(), 2);
    // Every attempt fails: the customer's message is stored, the reply is the fallback, the conversation flagged.
    for _ in 0..3 {
        app.fake.push(Reply::Status {
            code: 503,
            retry_after: None,
        });
    }
    let r = app
        .send(&app.api_key, &id, "我的退款呢？", Some("k-fail"), true)
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"]["content"], "我的退款呢？");
    assert_eq!(body["reply"]["fallback"], true);
    assert!(body["reply"]["content"]
        .as_str()
        .unwrap()
        .starts_with("抱歉"));
    let conv: Value = app
        .get(&app.api_key, &format!("/v1/conversations/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(conv["flagged"], true);
    assert_eq!(
        app.fake.request_count(),
        5,
        "three attempts on the only chain entry"
    );
}

#[tokio::test]
async fn models_switch_at_runtime_without_restart() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let second = FakeLlm::start().await;
    second.push(Reply::text(&["from the second model"]));
    let id = app.new_conversation(&app.api_key, Some("sw")).await;
    let body: Value = app
        .send(&app.api_key, &id, "one", None, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reply"]["content"], "Echo: one");

    let cfg = json!({
        "providers": [
            {"name": "primary", "base_url": "http://127.0.0.1:9/v1"},
            {"name": "second", "base_url": second.base_url(), "api_key": "sk-second"}
        ],
        "chain": [{"provider": "primary", "model": "down"}, {"provider": "second", "model": "qwen-max"}],
        "temperature": 0.2,
        "system_prompt": "你是一家网店的客服。"
    });
    let r = app.put(&admin, "/v1/admin/model-config", cfg.clone()).await;
    assert_eq!(r.status(), 200);
    let shown: Value = r.json().await.unwrap();
    assert_eq!(shown["source"], "tenant");
    assert_eq!(shown["config"]["providers"][1]["api_key"], "***");

    let body: Value = app
        .send(&app.api_key, &id, "two", None, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reply"]["content"], "from the second model");
    assert_eq!(
        body["reply"]["model"],
        format!("{}/qwen-max", second.base_url())
    );
    let req = &second.requests()[0];
    assert_eq!(req["model"], "qwen-max");
    assert_eq!(req["temperature"], 0.2);
    let system = req["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("你是一家网店的客服。\n") && system.ends_with("\nReply in English."),
        "the tenant's prompt, then the language of the customer's message: {system}"
    );
    assert_eq!(
        second.request_headers()[0]["authorization"],
        "Bearer sk-second"
    );

    // Keeping a stored key with "***" works; deleting returns to the server default.
    let mut keep = shown["config"].clone();
    keep["temperature"] = json!(0.5);
    let r = app
        .put(&admin, "/v1/admin/model-config", keep.clone())
        .await;
    assert_eq!(r.status(), 200);
    let stored = app
        .store
        .get_tenant_by_slug(&app.tenant)
        .await
        .unwrap()
        .unwrap()
        .model_config
        .unwrap();
    assert_eq!(stored["providers"][1]["api_key"], "sk-second");
    let r = app
        .client
        .delete(app.url("/v1/admin/model-config"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let body: Value = app
        .send(&app.api_key, &id, "three", None, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["reply"]["content"], "Echo: three");
}

#[tokio::test]
async fn graceful_shutdown_finishes_running_answers() {
    let mut app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("g")).await;
    app.fake.push(Reply::Stream {
        chunks: vec!["slow ".into(), "but ".into(), "complete".into()],
        delay: Duration::from_millis(150),
    });
    assert_eq!(
        app.send(&app.api_key, &id, "q", None, false).await.status(),
        201
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = app.store.clone();
    let tenant = store
        .get_tenant_by_slug(&app.tenant)
        .await
        .unwrap()
        .unwrap()
        .id;
    app.begin_stop().await.unwrap().unwrap();
    let conv = uuid::Uuid::parse_str(&id).unwrap();
    let reply = store
        .find_reply(tenant, conv, 1)
        .await
        .unwrap()
        .expect("the running answer finished");
    assert_eq!(reply.content, "slow but complete");
}

#[tokio::test]
async fn answers_interrupted_by_a_restart_are_completed_after_it() {
    let mut app = spawn_app_with(Backend::Sqlite, "[server]\nshutdown_grace_secs = 1\n").await;
    let id = app.new_conversation(&app.api_key, Some("r")).await;
    // The model stalls past the 1 s grace period (its first-token timeout is 2 s): the turn is cancelled and the
    // message stays pending.
    app.fake.push(Reply::Stall { chunks: vec![] });
    app.send(
        &app.api_key,
        &id,
        "are you there?",
        Some("before-restart"),
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.begin_stop().await.unwrap().unwrap();
    let (dir, db, fake) = (app.data_dir.clone(), app.db_url.clone(), app.fake.clone());
    let pending = app.store.list_pending_replies(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    drop(app);
    // Restart on the same data: the pending message is answered once, nothing is duplicated.
    let app = start(dir, db, fake, "").await;
    let conv = uuid::Uuid::parse_str(&id).unwrap();
    let tenant = app
        .store
        .get_tenant_by_slug(&app.tenant)
        .await
        .unwrap()
        .unwrap()
        .id;
    let reply = app
        .engine
        .wait_for_reply(tenant, conv, 1, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("answered after restart");
    assert_eq!(reply.content, "Echo: are you there?");
    let msgs = app.messages(&app.api_key, &id, 0).await;
    assert_eq!(msgs.len(), 2);
    // A client retry after the restart returns the original message and its answer.
    let r = app
        .send(
            &app.api_key,
            &id,
            "are you there?",
            Some("before-restart"),
            false,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reply"]["content"], "Echo: are you there?");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["checks"][0]["name"], "database:sqlite");
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/conversations/{id}/messages"]["post"].is_object());
}

/// Simple, confident turns go to the tenant's cheap chain, upset ones to the main chain; each records which chain
/// answered and what it cost at the configured prices.
#[tokio::test]
async fn confident_simple_turns_take_the_cheap_chain_and_every_turn_records_its_cost() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    // A small intent model for the tenant, so greetings are recognised with confidence.
    app.train_intents(&admin, &ROUTING_INTENTS).await;

    let base = app.fake.base_url();
    let cfg = json!({
        "providers": [{"name": "p", "base_url": base}],
        "chain": [{"provider": "p", "model": "big", "input_price": 2.0, "output_price": 8.0}],
        "cheap_chain": [{"provider": "p", "model": "small", "input_price": 0.2, "output_price": 0.5}],
        "currency": "CNY"
    });
    let r = app.put(&admin, "/v1/admin/model-config", cfg).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for bad in [
        json!({"providers": [{"name": "p", "base_url": base}], "chain": [{"provider": "p", "model": "m"}],
               "cheap_chain": [{"provider": "nope", "model": "m"}]}),
        json!({"providers": [{"name": "p", "base_url": base}], "chain": [{"provider": "p", "model": "m", "input_price": -1}]}),
        json!({"providers": [{"name": "p", "base_url": base}], "chain": [{"provider": "p", "model": "m"}], "currency": "¥"}),
    ] {
        let r = app.put(&admin, "/v1/admin/model-config", bad.clone()).await;
        assert_eq!(r.status(), 422, "{bad}");
    }

    let conv = app.new_conversation(&app.api_key, Some("u-route")).await;
    app.fake.push(Reply::text(&["您好！请问有什么可以帮您？"]));
    app.send(&app.api_key, &conv, "你好", None, true).await;
    app.fake
        .push(Reply::text(&["非常抱歉给您带来不好的体验。"]));
    app.send(
        &app.api_key,
        &conv,
        "太差了！我非常生气，我要投诉你们！",
        None,
        true,
    )
    .await;
    let models: Vec<String> = app
        .fake
        .requests()
        .iter()
        .map(|r| r["model"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(models, vec!["small", "big"]);
    let turns = app.turns(&admin, &conv).await;
    let t0 = &turns[0]["trace"];
    let t1 = &turns[1]["trace"];
    assert_eq!(
        (t0["tier"].as_str(), t0["chain"].as_str()),
        (Some("cheap"), Some("cheap"))
    );
    assert_eq!(
        (t1["tier"].as_str(), t1["chain"].as_str()),
        (Some("strong"), Some("main"))
    );
    for (t, (pin, pout)) in [(t0, (0.2, 0.5)), (t1, (2.0, 8.0))] {
        let (p, c) = (
            t["prompt_tokens"].as_f64().unwrap(),
            t["completion_tokens"].as_f64().unwrap(),
        );
        let want = (p * pin + c * pout) / 1e6;
        let got = t["cost"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
