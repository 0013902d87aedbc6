//! Zero configuration: with no model chain configured the server answers with the local model, and when the
//! local model is missing it still starts, stores messages, answers with the fallback reply and says what is missing.

use serde_json::Value;

use crate::helpers::*;

/// The `{kind}:*` entry of `/readyz`.
async fn model_check(app: &TestApp, kind: &str) -> Value {
    app.readiness_check(&format!("{kind}:")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_chain_configured_the_local_model_answers() {
    let model = kefu_testkit::models::test_chat_model().await;
    let embedder = kefu_testkit::models::test_model("e5-small").await.remove(0);
    let extra = format!(
        "[llm]\nproviders = []\nchain = []\nmax_tokens = 24\n[models]\nchat = \"{}\"\nembedder = \"{}\"\n",
        model.display(),
        embedder.display()
    );
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let check = model_check(&app, "chat_model").await;
    assert_eq!(check["ok"], true, "{check}");
    let check = model_check(&app, "embedding_model").await;
    assert_eq!(check["ok"], true, "{check}");
    assert!(app.embedder.as_ref().unwrap().dim() == 384);
    let id = app.new_conversation(&app.api_key, Some("local")).await;
    let mut events = app.sse(&app.api_key, &id, 0, None).await;
    let r = app
        .send(
            &app.api_key,
            &id,
            "What is the capital of France? Answer with one word.",
            None,
            true,
        )
        .await;
    let body: Value = r.json().await.unwrap();
    let reply = &body["reply"];
    assert_eq!(reply["fallback"], false, "{body}");
    assert!(
        reply["content"].as_str().unwrap().contains("Paris"),
        "{body}"
    );
    assert!(
        reply["model"].as_str().unwrap().starts_with("local:"),
        "{body}"
    );
    assert!(reply["completion_tokens"].as_i64().unwrap() >= 1);
    assert_eq!(app.fake.request_count(), 0, "no remote model was called");
    // The answer streamed token by token before it was stored.
    let mut deltas = 0;
    loop {
        match next_event(&mut events).await {
            kefu_types::StreamEvent::Delta { .. } => deltas += 1,
            kefu_types::StreamEvent::MessageCreated { message, .. }
                if message.role == kefu_types::MessageRole::Assistant =>
            {
                break
            }
            _ => {}
        }
    }
    assert!(deltas >= 1);
}

#[tokio::test]
async fn a_missing_local_model_still_starts_and_says_how_to_get_it() {
    let extra = "[llm]\nproviders = []\nchain = []\n[models]\nchat = \"/nonexistent/model.gguf\"\nembedder = \"/nonexistent/e5.bin\"\n";
    let app = spawn_app_with(Backend::Sqlite, extra).await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "a missing model does not make the node unready"
    );
    for kind in ["chat_model", "embedding_model"] {
        let check = model_check(&app, kind).await;
        assert_eq!(check["ok"], false);
        assert!(
            check["detail"]
                .as_str()
                .unwrap()
                .contains("kefu model pull"),
            "{check}"
        );
    }
    let id = app.new_conversation(&app.api_key, Some("nomodel")).await;
    let body: Value = app
        .send(&app.api_key, &id, "hello?", None, true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["message"]["content"], "hello?");
    assert_eq!(body["reply"]["fallback"], true);
}

/// With a second, smaller local model (`models.cheap_chat`), simple confident turns are answered by it and the rest
/// by the main one, with nothing configured remotely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_local_model_answers_simple_turns() {
    let model = kefu_testkit::models::test_chat_model().await;
    let extra = format!(
        "[llm]\nproviders = []\nchain = []\nmax_tokens = 8\n[models]\nchat = \"{m}\"\ncheap_chat = \"{m}\"\nparallel = 1\ncontext_tokens = 1024\n",
        m = model.display()
    );
    let app = spawn_app_with(Backend::Sqlite, &extra).await;
    let admin = app.admin_token().await;
    app.train_intents(&admin, &ROUTING_INTENTS).await;
    let id = app.new_conversation(&app.api_key, Some("two-models")).await;
    for text in ["你好", "我要投诉，服务太烂了！"] {
        let r = app.send(&app.api_key, &id, text, None, true).await;
        assert_eq!(r.status(), 201);
    }
    let turns = app.turns(&admin, &id).await;
    let chains: Vec<&str> = turns
        .iter()
        .map(|t| t["trace"]["chain"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(chains, vec!["cheap", "main"], "{turns:#?}");
    for t in &turns {
        assert!(
            t["trace"]["model"].as_str().unwrap().starts_with("local:"),
            "{t}"
        );
    }
    assert_eq!(app.fake.request_count(), 0, "no remote model was called");
}
