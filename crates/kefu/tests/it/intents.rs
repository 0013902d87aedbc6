//! Intent classifiers through the admin API: trained from examples or a file, stored in the database as numbered
//! versions, switched, deleted, tried, used by conversations; bad data changes nothing; roles and tenants hold.

use serde_json::{json, Value};

use crate::helpers::*;

/// A small bilingual shop set as CSV.
fn shop_csv() -> String {
    intent_csv(&[
        (
            "track_order",
            [
                "where is my order",
                "track my parcel",
                "my package is late",
                "我的快递到哪了",
                "订单什么时候到",
                "物流怎么不动了",
            ],
        ),
        (
            "refund",
            [
                "i want a refund",
                "give me my money back",
                "refund my purchase",
                "我要退款",
                "退款什么时候到账",
                "怎么退钱",
            ],
        ),
        (
            "greeting",
            [
                "hello",
                "hi there",
                "good morning",
                "你好",
                "在吗",
                "早上好",
            ],
        ),
    ])
}

async fn train(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post(token, "/v1/admin/intent-models", body).await
}

async fn list(app: &TestApp, token: &str) -> Value {
    app.get_json(token, "/v1/admin/intent-models").await
}

#[tokio::test]
async fn trained_models_serve_conversations_and_are_switched_by_version() {
    let app = spawn_app_with(Backend::Postgres, "").await;
    let admin = app.admin_token().await;
    assert_eq!(
        list(&app, &admin).await,
        json!({"current": null, "models": []})
    );

    // From a CSV file's text, n-grams only: version 1, in use at once.
    let r = train(&app, &admin, json!({"data": shop_csv(), "encoders": []})).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v1: Value = r.json().await.unwrap();
    assert_eq!(
        (v1["version"].as_i64(), v1["active"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(v1["labels"], json!(["greeting", "refund", "track_order"]));
    assert_eq!(
        (v1["examples"].as_u64(), v1["encoders"].clone()),
        (Some(18), json!([]))
    );
    assert_eq!(v1["first_stage_encoders"], json!([]), "{v1}");
    assert!(v1["created_by"].is_string(), "{v1}");

    // Tried directly, and used by a conversation: the turn records the intent.
    let p = app
        .post(
            &admin,
            "/v1/admin/intent-models/predict",
            json!({"texts": ["我的快递到哪里了", "please refund my order"]}),
        )
        .await;
    assert_eq!(p.status(), 200);
    let p: Value = p.json().await.unwrap();
    assert_eq!(p["version"], 1);
    assert_eq!(
        p["predictions"][0]["top"][0]["intent"], "track_order",
        "{p}"
    );
    assert_eq!(p["predictions"][1]["top"][0]["intent"], "refund", "{p}");
    let conv = app.new_conversation(&app.api_key, Some("c-1")).await;
    let r = app
        .send(&app.api_key, &conv, "我要退款，钱什么时候到账", None, true)
        .await;
    assert_eq!(r.status(), 201);
    let turns = app.turns(&admin, &conv).await;
    assert_eq!(turns[0]["trace"]["intent"], "refund", "{}", turns[0]);

    // From JSON examples, kept aside: version 2, version 1 stays in use.
    let examples: Vec<Value> = ["hello", "hi", "你好", "bye", "goodbye", "再见"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"text": t, "intent": if i < 3 { "greeting" } else { "farewell" }}))
        .collect();
    let r = train(
        &app,
        &admin,
        json!({"examples": examples, "encoders": [], "activate": false, "config": {"features": {"min_df": 1}}}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let l = list(&app, &admin).await;
    assert_eq!(l["current"], 1);
    let versions: Vec<i64> = l["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1]);

    // Switched: conversations use version 2 at once; the one in use cannot be deleted.
    let r = app
        .put(
            &admin,
            "/v1/admin/intent-models/current",
            json!({"version": 2}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let p: Value = app
        .post(
            &admin,
            "/v1/admin/intent-models/predict",
            json!({"texts": ["再见啦"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            p["version"].as_i64(),
            p["predictions"][0]["top"][0]["intent"].as_str()
        ),
        (Some(2), Some("farewell"))
    );
    let r = app.delete(&admin, "/v1/admin/intent-models/2").await;
    assert_eq!(r.status(), 409);
    assert_error(&r.json().await.unwrap(), "conflict");
    assert_eq!(
        app.delete(&admin, "/v1/admin/intent-models/1")
            .await
            .status(),
        204
    );
    assert_eq!(
        app.get(&admin, "/v1/admin/intent-models/1").await.status(),
        404
    );
    assert_eq!(
        app.get_json(&admin, "/v1/admin/intent-models/2").await["active"],
        true
    );
    let r = app
        .put(
            &admin,
            "/v1/admin/intent-models/current",
            json!({"version": 7}),
        )
        .await;
    assert_eq!(r.status(), 404);
    // Off: the assistant answers without intents.
    let r = app
        .put(
            &admin,
            "/v1/admin/intent-models/current",
            json!({"version": null}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let conv = app.new_conversation(&app.api_key, Some("c-2")).await;
    app.send(&app.api_key, &conv, "我要退款", None, true).await;
    assert!(app.turns(&admin, &conv).await[0]["trace"]["intent"].is_null());
}

#[tokio::test]
async fn bad_training_data_is_a_clear_error_and_stores_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let cases = [
        (
            json!({"data": "text,intent\nhello,greeting\nhi,greeting\n", "encoders": []}),
            "invalid_training_data",
            "intent",
        ),
        (
            json!({"data": "text,label,extra\na,b,c\n", "encoders": []}),
            "invalid_training_data",
            "extra",
        ),
        (
            json!({"data": "text,intent\nhello,a\nhello,a\nbye,b\nfoo,b\n", "encoders": []}),
            "invalid_training_data",
            "hello",
        ),
        (
            json!({"encoders": []}),
            "invalid_training_data",
            "no examples",
        ),
        (
            json!({"data": shop_csv(), "examples": [{"text": "a", "intent": "b"}]}),
            "invalid_training_data",
            "not both",
        ),
        (
            json!({"data": shop_csv(), "encoders": [], "config": {"linear": {"epochs": 3}}}),
            "invalid_training_data",
            "epochs",
        ),
        (
            json!({"data": shop_csv(), "encoders": [], "config": {"linear": {"c": 0}}}),
            "invalid_training_data",
            "linear.c",
        ),
        (
            json!({"data": shop_csv(), "encoders": [], "config": {"first_stage_encoders": ["minilm"]}}),
            "invalid_training_data",
            "first_stage_encoders",
        ),
        (
            json!({"data": shop_csv(), "format": "xml"}),
            "invalid_request",
            "format",
        ),
        (
            json!({"data": shop_csv(), "encoders": ["no-such-encoder"]}),
            "encoder_unavailable",
            "no-such-encoder",
        ),
        (
            json!({"data": shop_csv(), "surprise": true}),
            "invalid_request",
            "surprise",
        ),
    ];
    for (body, code, mentions) in cases {
        let r = train(&app, &admin, body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_error(&v, code);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions),
            "{body}: {v}"
        );
    }
    assert_eq!(list(&app, &admin).await["models"], json!([]));
    // Predicting without a model says so; bad requests are refused.
    let p: Value = app
        .post(
            &admin,
            "/v1/admin/intent-models/predict",
            json!({"texts": ["hello"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p, json!({"version": null, "predictions": []}));
    for texts in [json!([]), json!(vec!["x"; 21])] {
        let r = app
            .post(
                &admin,
                "/v1/admin/intent-models/predict",
                json!({"texts": texts}),
            )
            .await;
        assert_eq!(r.status(), 422);
    }
    assert_eq!(
        app.get(&admin, "/v1/admin/intent-models/abc")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn only_supervisors_and_admins_of_the_tenant_touch_its_models() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let r = train(&app, &admin, json!({"data": shop_csv(), "encoders": []})).await;
    assert_eq!(r.status(), 201);
    for (email, role) in [
        ("sup@acme.test", "supervisor"),
        ("agent@acme.test", "agent"),
    ] {
        let r = app
            .post(
                &admin,
                "/v1/admin/users",
                json!({"email": email, "password": "a-long-password-1", "role": role}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let sup = app.login("sup@acme.test", "a-long-password-1").await;
    let agent = app.login("agent@acme.test", "a-long-password-1").await;
    assert_eq!(list(&app, &sup).await["current"], 1);
    for token in [&agent, &app.api_key] {
        assert_eq!(
            app.get(token, "/v1/admin/intent-models").await.status(),
            403
        );
        assert_eq!(
            train(&app, token, json!({"data": shop_csv(), "encoders": []}))
                .await
                .status(),
            403
        );
        let r = app
            .put(
                token,
                "/v1/admin/intent-models/current",
                json!({"version": null}),
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    // Another tenant sees none of it and cannot switch to this tenant's version.
    let (slug, _) = app.other_tenant().await;
    let other = app.other_admin(&slug).await;
    assert_eq!(
        list(&app, &other).await,
        json!({"current": null, "models": []})
    );
    let r = app
        .put(
            &other,
            "/v1/admin/intent-models/current",
            json!({"version": 1}),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        app.delete(&other, "/v1/admin/intent-models/1")
            .await
            .status(),
        404
    );
    assert_eq!(list(&app, &admin).await["current"], 1);
}

/// A server whose embedder is the real e5 model, trained on the shop examples with `encoders` (absent: the server's
/// default, which is its embedder); checks the stored model names `named(e5's path)`. Then sends a paraphrase that
/// shares no word with the refund examples in a new conversation and returns that turn and the predict endpoint's
/// answer for the same text.
async fn paraphrase_on_e5(
    encoders: Option<&str>,
    named: impl Fn(&str) -> String,
) -> (Value, Value) {
    let e5 = kefu_testkit::models::test_model("e5-small").await.remove(0);
    let e5 = e5.display().to_string();
    let extra = format!("[models]\nembedder = \"{e5}\"\n");
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let admin = app.admin_token().await;
    let mut body = json!({"data": shop_csv()});
    if let Some(e) = encoders {
        body["encoders"] = json!([e.replace("{e5}", &e5)]);
    }
    let r = train(&app, &admin, body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["encoders"], json!([named(&e5)]), "{m}");
    let text = "can I get reimbursed for this purchase";
    let conv = app.new_conversation(&app.api_key, Some("c-e5")).await;
    app.send(&app.api_key, &conv, text, None, true).await;
    let turn = app.turns(&admin, &conv).await[0].clone();
    let p: Value = app
        .post(
            &admin,
            "/v1/admin/intent-models/predict",
            json!({"texts": [text]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(turn["trace"]["intent"], "refund", "{turn}");
    (turn, p["predictions"][0].clone())
}

/// With the real multilingual embedder: a model trained with the server's embedder (the default) names it, and
/// conversations classify through the query vector knowledge search uses, catching a paraphrase that shares no
/// words with the examples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_on_the_servers_embedder_classifies_paraphrases_in_conversations() {
    let (_, p) = paraphrase_on_e5(None, str::to_owned).await;
    let support = p["support"].as_f64().unwrap();
    assert!(support > 0.5 && support <= 1.0, "{p}");
}

/// A model on chosen layers of the server's embedder (`<embedder>@8+10+12`) takes them from the pass knowledge
/// search makes for the message: the turn's confidence is the one the predict endpoint gets by running the layer
/// encoder itself, so the right blocks of the one pass reached the classifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_pooled_model_reads_its_layers_from_the_knowledge_pass() {
    let (turn, p) = paraphrase_on_e5(Some("{e5}@8+10+12"), |e5| format!("{e5}@8+10+12")).await;
    let own = p["confidence"].as_f64().unwrap();
    let shared = turn["trace"]["intent_confidence"].as_f64().unwrap();
    assert!(
        (own - shared).abs() < 1e-3,
        "turn {shared} against predict {own}"
    );
}

/// With the real multilingual embedder and no intent model, the turn still hands the understanding step its query
/// vector: a complaint without a sentiment word, which the lexicon alone reads as neutral, is recorded as negative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emotion_reads_the_query_vector_where_no_word_says_it() {
    let e5 = kefu_testkit::models::test_model("e5-small").await.remove(0);
    let extra = format!("[models]\nembedder = \"{}\"\n", e5.display());
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let admin = app.admin_token().await;
    let text = "the item that came is not what I ordered and the box was torn";
    assert_eq!(
        kefu_nlu::emotion::analyse(text).polarity,
        kefu_nlu::emotion::Polarity::Neutral
    );
    let conv = app.new_conversation(&app.api_key, Some("c-anchors")).await;
    app.send(&app.api_key, &conv, text, None, true).await;
    let turn = app.turns(&admin, &conv).await[0].clone();
    assert_eq!(turn["trace"]["polarity"], "negative", "{turn}");
}
