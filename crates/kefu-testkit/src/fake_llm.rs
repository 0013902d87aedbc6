//! A scripted OpenAI-compatible Chat Completions server on `127.0.0.1:0`.
//!
//! Push [`Reply`]s to script the next responses (first in, first out); when the script is empty the server streams
//! `Echo: <last user message>` instantly, which is what load benchmarks use. Every request body is recorded.
//!
//! `/v1/embeddings` answers with [`fake_embedding`] of each input (a bag of characters, so texts sharing characters
//! are similar), listed in reverse order with their `index`, as a server may; a scripted [`Reply::Status`] applies
//! to it too.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// One scripted response.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Stream these content chunks (SSE), `delay` apart, then a usage chunk and `[DONE]`.
    Stream {
        chunks: Vec<String>,
        delay: Duration,
    },
    /// Answer with this HTTP status (e.g. 429, 500), an optional `Retry-After` header and a JSON error body.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// Send these chunks, then hang without finishing (tests first-token / idle timeouts).
    Stall { chunks: Vec<String> },
    /// Send these chunks, then drop the connection mid-stream without `[DONE]`.
    Break { chunks: Vec<String> },
    /// Stream one tool call with these JSON arguments, split into two pieces.
    ToolCall { name: String, arguments: String },
}

impl Reply {
    pub fn text(chunks: &[&str]) -> Self {
        Reply::Stream {
            chunks: chunks.iter().map(|s| s.to_string()).collect(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    requests: Vec<Value>,
    headers: Vec<HeaderMap>,
}

#[derive(Clone)]
pub struct FakeLlm {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, inner }
    }

    /// Base URL including `/v1`, as OpenAI clients expect.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn push(&self, reply: Reply) -> &Self {
        self.inner.lock().script.push_back(reply);
        self
    }

    /// Request bodies received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.inner.lock().requests.clone()
    }

    pub fn request_headers(&self) -> Vec<HeaderMap> {
        self.inner.lock().headers.clone()
    }

    pub fn request_count(&self) -> usize {
        self.inner.lock().requests.len()
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> Bytes {
    let v = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {v}\n\n"))
}

fn usage_chunk(model: &str, prompt: usize, completion: usize) -> Bytes {
    let v = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    });
    Bytes::from(format!("data: {v}\n\n"))
}

async fn chat(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let prompt_chars: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["content"].as_str().unwrap_or_default().chars().count())
                .sum()
        })
        .unwrap_or(0);
    let reply = {
        let mut g = inner.lock();
        g.requests.push(body);
        g.headers.push(headers);
        g.script.pop_front()
    };
    let reply = reply.unwrap_or_else(|| Reply::Stream {
        chunks: vec!["Echo: ".to_owned(), last_user.clone()],
        delay: Duration::ZERO,
    });
    let sse = |s: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(s))
            .unwrap()
    };
    match reply {
        Reply::Stream { chunks, delay } => {
            let n = chunks.len();
            let m2 = model.clone();
            let head = futures::stream::once(futures::future::ready(chunk(
                &model,
                json!({"role": "assistant", "content": ""}),
                None,
            )));
            let body = futures::stream::iter(chunks).then(move |c| {
                let model = m2.clone();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    chunk(&model, json!({"content": c}), None)
                }
            });
            let tail = futures::stream::iter(vec![
                chunk(&model, json!({}), Some("stop")),
                usage_chunk(&model, prompt_chars / 4 + 1, n),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ]);
            sse(head
                .chain(body)
                .chain(tail)
                .map(Ok::<_, std::io::Error>)
                .boxed())
        }
        Reply::Status { code, retry_after } => status_response(code, retry_after),
        Reply::Stall { chunks } => {
            let first = futures::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| chunk(&model, json!({"content": c}), None))
                    .collect::<Vec<_>>(),
            )
            .map(Ok::<_, std::io::Error>);
            sse(first.chain(futures::stream::pending()).boxed())
        }
        Reply::Break { chunks } => {
            let first = futures::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok(chunk(&model, json!({"content": c}), None)))
                    .collect::<Vec<_>>(),
            );
            let boom = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Err(std::io::Error::other("scripted break"))
            });
            sse(first.chain(boom).boxed())
        }
        Reply::ToolCall { name, arguments } => {
            let (a, b) = arguments.split_at(arguments.len() / 2);
            let parts = vec![
                chunk(
                    &model,
                    json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": a}}]}),
                    None,
                ),
                chunk(
                    &model,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
                    None,
                ),
                chunk(&model, json!({}), Some("tool_calls")),
                usage_chunk(&model, prompt_chars / 4 + 1, 10),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ];
            sse(futures::stream::iter(parts)
                .map(Ok::<_, Infallible>)
                .map(|r| r.map_err(|e| match e {}))
                .boxed())
        }
    }
}

/// Dimension of [`fake_embedding`] vectors.
pub const FAKE_EMBEDDING_DIM: usize = 64;

/// The fake server's embedding of `text`: character counts hashed into [`FAKE_EMBEDDING_DIM`] buckets, not
/// normalised.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; FAKE_EMBEDDING_DIM];
    for c in text.chars() {
        v[(c as usize).wrapping_mul(2_654_435_761) % FAKE_EMBEDDING_DIM] += 1.0;
    }
    v
}

async fn embeddings(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let scripted = {
        let mut g = inner.lock();
        g.requests.push(body.clone());
        g.headers.push(headers);
        match g.script.front() {
            Some(Reply::Status { .. }) => g.script.pop_front(),
            _ => None,
        }
    };
    if let Some(Reply::Status { code, retry_after }) = scripted {
        return status_response(code, retry_after);
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "input is required"}})),
            )
                .into_response()
        }
    };
    let tokens: usize = inputs.iter().map(|t| t.chars().count()).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t)}))
        .collect();
    Json(json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

fn status_response(code: u16, retry_after: Option<String>) -> Response {
    let mut r = (
        StatusCode::from_u16(code).unwrap(),
        Json(json!({"error": {"message": format!("scripted {code}"), "type": "fake"}})),
    )
        .into_response();
    if let Some(ra) = retry_after {
        r.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    r
}
