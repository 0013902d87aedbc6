use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kefu_testkit::Reply;
use kefu_types::{ConversationStatus, MessageRole, StreamEvent};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::*;

fn slow(chunks: &[&str], ms: u64) -> Reply {
    Reply::Stream {
        chunks: chunks.iter().map(|s| s.to_string()).collect(),
        delay: Duration::from_millis(ms),
    }
}

async fn sse_streams_tokens_then_the_stored_message(backend: Backend) {
    let app = spawn_app_with(backend, "").await;
    let id = app.new_conversation(&app.api_key, Some("s1")).await;
    let mut events = app.sse(&app.api_key, &id, 0, None).await;
    app.fake
        .push(slow(&["退货", "请在", "七天内", "申请。"], 20));
    assert_eq!(
        app.send(&app.api_key, &id, "怎么退货？", None, false)
            .await
            .status(),
        201
    );
    match next_event(&mut events).await {
        StreamEvent::MessageCreated { seq: 1, message } => {
            assert_eq!(message.content, "怎么退货？")
        }
        other => panic!("{other:?}"),
    }
    let mut deltas = 0;
    let mut text = String::new();
    let reply = loop {
        match next_event(&mut events).await {
            StreamEvent::Delta {
                offset,
                text: t,
                reply_to_seq,
            } => {
                assert_eq!(reply_to_seq, 1);
                deltas += 1;
                apply_delta(&mut text, offset, &t);
            }
            StreamEvent::MessageCreated { seq, message } => {
                assert_eq!(seq, 2);
                break message;
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(deltas, 4, "one delta per model chunk");
    assert_eq!(text, "退货请在七天内申请。");
    assert_eq!(reply.content, text);
    // A status change is streamed too.
    app.post(
        &app.api_key,
        &format!("/v1/conversations/{id}/close"),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        next_event(&mut events).await,
        StreamEvent::StatusChanged {
            seq: 3,
            status: ConversationStatus::Closed
        }
    );
}

#[tokio::test]
async fn sqlite_sse_streams_tokens_then_the_stored_message() {
    sse_streams_tokens_then_the_stored_message(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_sse_streams_tokens_then_the_stored_message() {
    sse_streams_tokens_then_the_stored_message(Backend::Postgres).await;
}

#[tokio::test]
async fn a_client_that_drops_mid_answer_resumes_without_losing_text() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("s2")).await;
    let chunks: Vec<String> = (0..12).map(|i| format!("w{i} ")).collect();
    let expected: String = chunks.concat();
    app.fake.push(Reply::Stream {
        chunks,
        delay: Duration::from_millis(40),
    });
    let mut first = app.sse(&app.api_key, &id, 0, None).await;
    app.send(&app.api_key, &id, "tell me", None, false).await;
    // Read the customer message and a few deltas, then drop the connection.
    let mut have = String::new();
    let mut last_seq = 0;
    while have.chars().count() < 6 {
        match next_event(&mut first).await {
            StreamEvent::MessageCreated { seq, .. } => last_seq = seq,
            StreamEvent::Delta { offset, text, .. } => apply_delta(&mut have, offset, &text),
            other => panic!("{other:?}"),
        }
    }
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await; // more tokens are generated while away
    let mut second = app.sse(&app.api_key, &id, last_seq, None).await;
    let (text, message) = {
        let mut text = have.clone();
        loop {
            match next_event(&mut second).await {
                StreamEvent::Delta {
                    offset, text: t, ..
                } => apply_delta(&mut text, offset, &t),
                StreamEvent::MessageCreated { message, .. } => break (text, message),
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(
        text, expected,
        "partial text + resumed deltas = the whole answer"
    );
    assert_eq!(message.content, expected);
    // Resuming after the end replays nothing old; Last-Event-ID works as `after`.
    let mut third = app.sse(&app.api_key, &id, 0, Some(message.seq)).await;
    let next = tokio::time::timeout(Duration::from_millis(300), third.next()).await;
    assert!(next.is_err(), "nothing after the last event: {next:?}");
}

#[tokio::test]
async fn a_broken_model_stream_resets_the_partial_answer() {
    let app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("s3")).await;
    let mut events = app.sse(&app.api_key, &id, 0, None).await;
    app.fake.push(Reply::Break {
        chunks: vec!["half an ".into()],
    });
    app.fake.push(Reply::text(&["whole ", "answer"]));
    app.send(&app.api_key, &id, "q", None, false).await;
    let mut saw_reset = false;
    let mut text = String::new();
    let message = loop {
        match next_event(&mut events).await {
            StreamEvent::Delta {
                offset, text: t, ..
            } => apply_delta(&mut text, offset, &t),
            StreamEvent::Reset { .. } => {
                saw_reset = true;
                text.clear();
            }
            StreamEvent::MessageCreated { message, .. }
                if message.role == MessageRole::Assistant =>
            {
                break message
            }
            _ => {}
        }
    };
    assert!(saw_reset);
    assert_eq!(text, "whole answer");
    assert_eq!(message.content, "whole answer");
}

#[tokio::test]
async fn websocket_sends_messages_and_streams_the_answer() {
    let app = spawn_app().await;
    let (token, _) = app.customer_session(None).await;
    let id = app.new_conversation(&token, None).await;
    let url = format!(
        "{}/v1/conversations/{id}/ws?access_token={token}",
        app.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    app.fake.push(slow(&["Hello", ", ", "world"], 10));
    let send = serde_json::json!({"type": "message.send", "content": "hi there", "idempotency_key": "ws-1"});
    ws.send(WsMessage::Text(send.to_string().into()))
        .await
        .unwrap();
    let mut text = String::new();
    let mut got_customer = false;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let WsMessage::Text(t) = frame else { continue };
        match serde_json::from_str::<StreamEvent>(&t).unwrap() {
            StreamEvent::MessageCreated { message, .. }
                if message.role == MessageRole::Customer =>
            {
                assert_eq!(message.idempotency_key.as_deref(), Some("ws-1"));
                got_customer = true;
            }
            StreamEvent::Delta {
                offset, text: d, ..
            } => apply_delta(&mut text, offset, &d),
            StreamEvent::MessageCreated { message, .. } => {
                assert_eq!(message.content, "Hello, world");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(got_customer);
    assert_eq!(text, "Hello, world");
    // Bad frames get an error frame and change nothing.
    ws.send(WsMessage::Text(
        r#"{"type":"message.send","content":"   "}"#.into(),
    ))
    .await
    .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: StreamEvent = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(
        ev,
        StreamEvent::Error {
            code: "empty_message".into(),
            message: "the message is empty".into()
        }
    );
    ws.send(WsMessage::Text("{not json".into())).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(frame.to_text().unwrap().contains("invalid_request"));
    assert_eq!(app.messages(&token, &id, 0).await.len(), 2);
    // Resume over WebSocket from seq 1: only the reply is replayed.
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("{url}&after=1"))
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match serde_json::from_str::<StreamEvent>(frame.to_text().unwrap()).unwrap() {
        StreamEvent::MessageCreated { seq: 2, .. } => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_shutdown_event() {
    let mut app = spawn_app().await;
    let id = app.new_conversation(&app.api_key, Some("s4")).await;
    let mut events = app.sse(&app.api_key, &id, 0, None).await;
    let server = app.begin_stop();
    assert_eq!(next_event(&mut events).await, StreamEvent::Shutdown);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .is_none(),
        "stream closes"
    );
    server.await.unwrap().unwrap();
}
