//! The HTTP provider against the scripted fake server over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kefu_llm::{
    ChainLink, ChatEvent, ChatMessage, ChatModel, ChatRequest, CircuitBreaker, FallbackChain,
    FinishReason, LlmError, RetryPolicy, TimeoutPhase, Timeouts,
};
use kefu_llm_openai::{http_client, OpenAiChat, OpenAiConfig};
use kefu_testkit::{FakeLlm, Reply};

fn provider(fake: &FakeLlm, timeouts: Timeouts) -> Arc<OpenAiChat> {
    Arc::new(OpenAiChat::new(
        http_client(Duration::from_secs(2)),
        OpenAiConfig {
            base_url: fake.base_url(),
            api_key: Some("sk-test".to_owned().into()),
            timeouts,
        },
    ))
}

fn req(text: &str) -> ChatRequest {
    ChatRequest {
        model: "qwen-plus".into(),
        messages: vec![ChatMessage::user(text)],
        ..Default::default()
    }
}

async fn collect(
    p: &OpenAiChat,
    r: ChatRequest,
) -> Result<Vec<Result<ChatEvent, LlmError>>, LlmError> {
    Ok(p.stream(r).await?.collect().await)
}

#[tokio::test]
async fn streams_text_usage_and_sends_the_key_and_model() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::text(&["你好", "，", "world"]));
    let p = provider(&fake, Timeouts::default());
    let events = collect(&p, req("hi")).await.unwrap();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            Ok(ChatEvent::Delta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "你好，world");
    assert!(events.contains(&Ok(ChatEvent::Finished(FinishReason::Stop))));
    assert!(events
        .iter()
        .any(|e| matches!(e, Ok(ChatEvent::Usage(u)) if u.completion_tokens == 3)));
    let body = &fake.requests()[0];
    assert_eq!(body["model"], "qwen-plus");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["content"], "hi");
    assert_eq!(fake.request_headers()[0]["authorization"], "Bearer sk-test");
}

#[tokio::test]
async fn classifies_status_codes_with_retry_after() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Status {
        code: 429,
        retry_after: Some("7".into()),
    });
    fake.push(Reply::Status {
        code: 503,
        retry_after: None,
    });
    fake.push(Reply::Status {
        code: 401,
        retry_after: None,
    });
    let p = provider(&fake, Timeouts::default());
    let e = collect(&p, req("a")).await.unwrap_err();
    assert_eq!(
        e,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let e = collect(&p, req("a")).await.unwrap_err();
    assert!(matches!(e, LlmError::Server { status: 503, .. }) && e.is_retryable());
    let e = collect(&p, req("a")).await.unwrap_err();
    assert!(matches!(e, LlmError::Rejected { status: 401, .. }) && !e.is_retryable());
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_timeout() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Stall {
        chunks: vec!["partial".into()],
    });
    let t = Timeouts {
        first_token: Duration::from_secs(5),
        idle: Duration::from_millis(300),
        total: Duration::from_secs(10),
    };
    let events = collect(&provider(&fake, t), req("a")).await.unwrap();
    assert_eq!(
        events.first(),
        Some(&Ok(ChatEvent::Delta("partial".into())))
    );
    assert_eq!(
        events.last(),
        Some(&Err(LlmError::Timeout(TimeoutPhase::Idle)))
    );
}

#[tokio::test]
async fn a_silent_server_hits_the_first_token_timeout() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Stall { chunks: vec![] });
    let t = Timeouts {
        first_token: Duration::from_millis(300),
        idle: Duration::from_secs(5),
        total: Duration::from_secs(10),
    };
    let events = collect(&provider(&fake, t), req("a")).await.unwrap();
    assert_eq!(
        events,
        vec![Err(LlmError::Timeout(TimeoutPhase::FirstToken))]
    );
}

#[tokio::test]
async fn a_broken_stream_is_reported_as_broken() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::Break {
        chunks: vec!["half an ans".into()],
    });
    let events = collect(&provider(&fake, Timeouts::default()), req("a"))
        .await
        .unwrap();
    assert_eq!(
        events.first(),
        Some(&Ok(ChatEvent::Delta("half an ans".into())))
    );
    assert!(
        matches!(events.last(), Some(Err(LlmError::StreamBroken(_)))),
        "{events:?}"
    );
}

#[tokio::test]
async fn tool_calls_arrive_whole() {
    let fake = FakeLlm::start().await;
    fake.push(Reply::ToolCall {
        name: "order_status".into(),
        arguments: r#"{"order_id":"KF-1001"}"#.into(),
    });
    let events = collect(
        &provider(&fake, Timeouts::default()),
        req("where is KF-1001"),
    )
    .await
    .unwrap();
    let call = events
        .iter()
        .find_map(|e| match e {
            Ok(ChatEvent::ToolCall(c)) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(call.name, "order_status");
    assert_eq!(call.arguments, r#"{"order_id":"KF-1001"}"#);
}

#[tokio::test]
async fn unreachable_provider_is_a_connect_error() {
    let p = OpenAiChat::new(
        http_client(Duration::from_secs(1)),
        OpenAiConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: None,
            timeouts: Timeouts::default(),
        },
    );
    let e = collect(&p, req("a")).await.unwrap_err();
    assert!(matches!(e, LlmError::Connect(_)), "{e:?}");
}

#[tokio::test]
async fn chain_retries_a_429_then_falls_back_to_a_second_server() {
    let primary = FakeLlm::start().await;
    let backup = FakeLlm::start().await;
    for _ in 0..3 {
        primary.push(Reply::Status {
            code: 500,
            retry_after: None,
        });
    }
    backup.push(Reply::text(&["backup answer"]));
    let retry = RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let link = |f: &FakeLlm, model: &str| ChainLink {
        provider: provider(f, Timeouts::default()),
        model: model.into(),
        breaker: Arc::new(CircuitBreaker::new(5, Duration::from_secs(30))),
    };
    let chain = Arc::new(FallbackChain::new(
        vec![link(&primary, "big"), link(&backup, "small")],
        retry,
    ));
    let events: Vec<_> = chain.stream(req("hello")).collect().await;
    assert_eq!(primary.request_count(), 3);
    assert_eq!(backup.requests()[0]["model"], "small");
    assert!(events.contains(&Ok(ChatEvent::Delta("backup answer".into()))));
    assert!(events
        .iter()
        .any(|e| matches!(e, Ok(ChatEvent::Started { model }) if model.ends_with("/small"))));
}

fn embedder(fake: &FakeLlm, batch: usize, dim: usize) -> kefu_llm_openai::OpenAiEmbedder {
    kefu_llm_openai::OpenAiEmbedder::new(
        http_client(Duration::from_secs(2)),
        kefu_llm_openai::OpenAiEmbedConfig {
            base_url: fake.base_url(),
            api_key: Some("sk-test".to_owned().into()),
            model: "text-embedding-3-small".into(),
            dim,
            query_prefix: "query: ".into(),
            passage_prefix: "passage: ".into(),
            batch,
            timeout: Duration::from_secs(5),
        },
    )
}

#[tokio::test]
async fn embeddings_come_back_in_input_order_batched_prefixed_and_normalised() {
    use kefu_llm::{dot, EmbedKind, Embedder};
    let fake = FakeLlm::start().await;
    let e = embedder(&fake, 2, kefu_testkit::FAKE_EMBEDDING_DIM);
    let texts: Vec<String> = ["退货", "shipping", "退货政策", "refund"]
        .map(String::from)
        .to_vec();
    let v = e.embed(EmbedKind::Passage, &texts).await.unwrap();
    assert_eq!(v.len(), 4);
    for (t, got) in texts.iter().zip(&v) {
        let mut want = kefu_testkit::fake_embedding(&format!("passage: {t}"));
        kefu_llm::normalise(&mut want);
        assert!(
            (dot(got, &want) - 1.0).abs() < 1e-5,
            "vector of {t} is in its place"
        );
    }
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "two batches of two");
    assert_eq!(
        reqs[0]["input"],
        serde_json::json!(["passage: 退货", "passage: shipping"])
    );
    assert_eq!(reqs[0]["model"], "text-embedding-3-small");
    assert_eq!(fake.request_headers()[0]["authorization"], "Bearer sk-test");
    let q = e.embed(EmbedKind::Query, &["x".into()]).await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(fake.requests()[2]["input"], serde_json::json!(["query: x"]));
}

#[tokio::test]
async fn embedding_errors_are_classified() {
    use kefu_llm::{EmbedKind, Embedder};
    let fake = FakeLlm::start().await;
    fake.push(Reply::Status {
        code: 429,
        retry_after: Some("3".into()),
    });
    let e = embedder(&fake, 8, kefu_testkit::FAKE_EMBEDDING_DIM);
    let err = e.embed(EmbedKind::Query, &["a".into()]).await.unwrap_err();
    assert_eq!(
        err,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert!(err.is_retryable());
    // A model of another dimension than configured is refused, not silently stored.
    let wrong = embedder(&fake, 8, 1536);
    let err = wrong
        .embed(EmbedKind::Query, &["a".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidResponse(_)), "{err:?}");
    assert!(!err.is_retryable());
}
