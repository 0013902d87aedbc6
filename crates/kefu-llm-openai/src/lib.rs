//! [`ChatModel`] over any OpenAI-compatible Chat Completions endpoint: OpenAI, DeepSeek, Qwen/DashScope, vLLM,
//! Ollama, llama.cpp server.
//!
//! Streams with `stream: true` (asking for usage in the last chunk), parses SSE, joins tool-call fragments, and
//! classifies failures into retryable or not with the provider's `Retry-After`. [`OpenAiEmbedder`] does the same
//! for `/embeddings`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::time::Instant;

mod embed;

pub use embed::{OpenAiEmbedConfig, OpenAiEmbedder};

use kefu_llm::{
    with_timeouts, ChatEvent, ChatModel, ChatRequest, ChatStream, FinishReason, LlmError, Role,
    TimeoutPhase, Timeouts, ToolCall, Usage,
};

#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub timeouts: Timeouts,
}

pub struct OpenAiChat {
    client: reqwest::Client,
    url: String,
    name: String,
    api_key: Option<SecretString>,
    timeouts: Timeouts,
}

/// A shared HTTP client (connection pool) for every provider.
pub fn http_client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("kefu/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("TLS backend available")
}

impl OpenAiChat {
    pub fn new(client: reqwest::Client, cfg: OpenAiConfig) -> Self {
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        Self {
            client,
            url: format!("{base}/chat/completions"),
            name: base,
            api_key: cfg.api_key,
            timeouts: cfg.timeouts,
        }
    }
}

/// The error a non-2xx response stands for, with the provider's message and `Retry-After`.
pub(crate) async fn error_response(resp: reqwest::Response) -> LlmError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect());
    LlmError::from_status(status.as_u16(), retry_after, message)
}

/// The JSON body sent to `/chat/completions`.
pub fn request_body(req: &ChatRequest) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut v = json!({ "role": role, "content": m.content });
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            if let Some(id) = &m.tool_call_id {
                v["tool_call_id"] = json!(id);
            }
            v
        })
        .collect();
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if let Some(t) = req.temperature {
        // Via the shortest decimal form, so 0.2f32 is sent as 0.2 rather than 0.20000000298023224.
        body["temperature"] = json!(t.to_string().parse::<f64>().unwrap_or(f64::from(t)));
    }
    if let Some(n) = req.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(schema) = &req.json_schema {
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}});
    }
    if !req.tools.is_empty() && req.tool_choice == kefu_llm::ToolChoice::Required {
        body["tool_choice"] = json!("required");
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
    }
    body
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn classify(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout(TimeoutPhase::Connect)
    } else if e.is_connect() || e.is_request() {
        LlmError::Connect(e.to_string())
    } else {
        LlmError::StreamBroken(e.to_string())
    }
}

#[derive(Default)]
struct Decoder {
    tools: BTreeMap<u64, ToolCall>,
    finished: bool,
    done: bool,
}

impl Decoder {
    /// Turns one SSE `data:` payload into events.
    fn decode(&mut self, data: &str) -> Result<Vec<ChatEvent>, LlmError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(self.flush_tools());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| LlmError::InvalidResponse(format!("{e}: {data:.200}")))?;
        if let Some(err) = v.get("error") {
            // Some servers report errors inside the stream.
            let msg = err["message"].as_str().unwrap_or("stream error").to_owned();
            return Err(LlmError::Server {
                status: 500,
                retry_after: None,
                message: msg,
            });
        }
        let mut out = Vec::new();
        if let Some(choice) = v["choices"].get(0) {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                out.push(ChatEvent::Delta(text.to_owned()));
            }
            if let Some(calls) = delta["tool_calls"].as_array() {
                for c in calls {
                    let idx = c["index"].as_u64().unwrap_or(0);
                    let entry = self.tools.entry(idx).or_insert_with(|| ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(id) = c["id"].as_str() {
                        entry.id = id.to_owned();
                    }
                    if let Some(n) = c["function"]["name"].as_str() {
                        entry.name.push_str(n);
                    }
                    if let Some(a) = c["function"]["arguments"].as_str() {
                        entry.arguments.push_str(a);
                    }
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                out.extend(self.flush_tools());
                out.push(ChatEvent::Finished(FinishReason::parse(reason)));
                self.finished = true;
            }
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            out.push(ChatEvent::Usage(Usage {
                prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0) as u32,
                completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0) as u32,
            }));
        }
        Ok(out)
    }

    fn flush_tools(&mut self) -> Vec<ChatEvent> {
        std::mem::take(&mut self.tools)
            .into_values()
            .map(ChatEvent::ToolCall)
            .collect()
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let started = Instant::now();
        let mut rb = self.client.post(&self.url).json(&request_body(&request));
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k.expose_secret());
        }
        let resp = tokio::time::timeout_at(
            started + self.timeouts.first_token.min(self.timeouts.total),
            rb.send(),
        )
        .await
        .map_err(|_| LlmError::Timeout(TimeoutPhase::FirstToken))?
        .map_err(classify)?;
        if !resp.status().is_success() {
            return Err(error_response(resp).await);
        }
        let sse = resp.bytes_stream().eventsource();
        let events = futures::stream::unfold(
            (sse, Decoder::default(), Vec::<ChatEvent>::new().into_iter()),
            |(mut sse, mut dec, mut pending)| async move {
                loop {
                    if let Some(ev) = pending.next() {
                        return Some((Ok(ev), (sse, dec, pending)));
                    }
                    if dec.done {
                        return None;
                    }
                    match sse.next().await {
                        Some(Ok(ev)) => match dec.decode(&ev.data) {
                            Ok(evs) => pending = evs.into_iter(),
                            Err(e) => {
                                dec.done = true;
                                return Some((Err(e), (sse, dec, pending)));
                            }
                        },
                        Some(Err(e)) => {
                            dec.done = true;
                            return Some((
                                Err(LlmError::StreamBroken(e.to_string())),
                                (sse, dec, pending),
                            ));
                        }
                        None if dec.finished => return None,
                        None => {
                            dec.done = true;
                            return Some((
                                Err(LlmError::StreamBroken("stream ended before finish".into())),
                                (sse, dec, pending),
                            ));
                        }
                    }
                }
            },
        );
        Ok(with_timeouts(events.boxed(), self.timeouts, started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_output_maps_to_response_format_and_tool_choice() {
        let schema = json!({"type": "object", "properties": {"id": {"type": "string"}}});
        let req = ChatRequest {
            model: "m".into(),
            json_schema: Some(schema.clone()),
            tools: vec![kefu_llm::ToolSpec {
                name: "t".into(),
                description: "d".into(),
                parameters: json!({}),
            }],
            tool_choice: kefu_llm::ToolChoice::Required,
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["tools"][0]["function"]["name"], "t");
        assert!(request_body(&ChatRequest::default())
            .get("response_format")
            .is_none());
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn decoder_joins_tool_call_fragments() {
        let mut d = Decoder::default();
        let a = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"order_status","arguments":"{\"id\":"}}]}}]}"#;
        let b = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"A1\"}"}}]},"finish_reason":"tool_calls"}]}"#;
        assert!(d.decode(a).unwrap().is_empty());
        let out = d.decode(b).unwrap();
        assert_eq!(
            out,
            vec![
                ChatEvent::ToolCall(ToolCall {
                    id: "c1".into(),
                    name: "order_status".into(),
                    arguments: r#"{"id":"A1"}"#.into()
                }),
                ChatEvent::Finished(FinishReason::ToolCalls)
            ]
        );
    }

    #[test]
    fn decoder_rejects_garbage_and_reports_in_stream_errors() {
        let mut d = Decoder::default();
        assert!(matches!(
            d.decode("{not json"),
            Err(LlmError::InvalidResponse(_))
        ));
        assert!(matches!(
            d.decode(r#"{"error":{"message":"overloaded"}}"#),
            Err(LlmError::Server { .. })
        ));
    }
}
