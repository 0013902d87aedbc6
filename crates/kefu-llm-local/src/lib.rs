//! [`ChatModel`] on a local GGUF model through llama.cpp (`llama-cpp-2`).
//!
//! One worker thread owns the model and its context; requests wait in a bounded queue (a full queue answers
//! `LlmError::Busy` at once instead of making callers wait without bound). The worker applies the model's own chat
//! template, decodes only the tokens that differ from what is already in the KV cache (the shared system prompt,
//! and a conversation's earlier turns when it comes back), streams UTF-8-safe text deltas, stops at an
//! end-of-generation token or `max_tokens`, and stops early when the caller drops the stream.
//!
//! Structured output is grammar-constrained (llama.cpp's JSON-schema-to-grammar): `json_schema` makes the answer
//! JSON of that schema; `ToolChoice::Required` makes it exactly one call of one of the request's tools, with
//! arguments of that tool's schema, emitted as `ChatEvent::ToolCall`. With `ToolChoice::Auto` a local model answers
//! in text: deciding *whether* to call a tool is the engine's job (classifier scores), not the small model's.
//!
//! Still to come (see the local-models issue): several sequences per batch, a KV cache per conversation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use kefu_llm::{
    ChatEvent, ChatModel, ChatRequest, ChatStream, FinishReason, LlmError, Role, ToolCall,
    ToolChoice, Usage,
};

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub model_path: PathBuf,
    /// Threads for llama.cpp; default: cores − 1, at least 1.
    pub threads: Option<usize>,
    /// Context window in tokens.
    pub n_ctx: u32,
    /// Requests allowed to wait for the worker; more are refused with `Busy`.
    pub queue_capacity: usize,
    /// Used when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
}

impl LocalConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            threads: None,
            n_ctx: 4096,
            queue_capacity: 8,
            default_max_tokens: 512,
        }
    }

    pub fn effective_threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .saturating_sub(1)
            })
            .max(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("model file {0} does not exist; run `kefu model pull` or point the configuration at a GGUF file")]
    Missing(PathBuf),
    #[error("llama.cpp could not load {path}: {detail}")]
    Load { path: PathBuf, detail: String },
}

/// Counters for benchmarks and tests.
#[derive(Debug, Default)]
pub struct LocalStats {
    /// Prompt tokens taken from the KV cache instead of being decoded, in total.
    pub reused_prompt_tokens: AtomicU64,
    /// Prompt tokens decoded, in total.
    pub decoded_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub requests: AtomicU64,
}

struct Job {
    request: ChatRequest,
    events: mpsc::Sender<Result<ChatEvent, LlmError>>,
}

pub struct LocalChat {
    name: String,
    jobs: mpsc::Sender<Job>,
    stats: Arc<LocalStats>,
}

fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(
            llama_cpp_2::LogOptions::default().with_logs_enabled(false),
        );
        LlamaBackend::init().expect("llama.cpp backend initialises once per process")
    })
}

impl LocalChat {
    /// Loads the model on a dedicated worker thread; returns once it is loaded (or failed to load).
    pub async fn load(config: LocalConfig) -> Result<Self, LocalError> {
        if !config.model_path.exists() {
            return Err(LocalError::Missing(config.model_path));
        }
        // OpenMP threads must not spin while idle: with spinning threads generation collapses whenever another
        // process uses a core (measured: 27 → 1–3 tokens/s).
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            tracing::warn!("OMP_WAIT_POLICY is unset; the kefu binary sets it to passive at start");
        }
        let (jobs, rx) = mpsc::channel::<Job>(config.queue_capacity.max(1));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let stats = Arc::new(LocalStats::default());
        let name = format!(
            "local:{}",
            config
                .model_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name("kefu-llama".into())
            .spawn(move || worker(config, rx, ready_tx, worker_stats))
            .expect("spawn llama worker");
        ready_rx.await.map_err(|_| LocalError::Load {
            path: PathBuf::new(),
            detail: "worker died".into(),
        })??;
        Ok(Self { name, jobs, stats })
    }

    pub fn stats(&self) -> &LocalStats {
        &self.stats
    }
}

#[async_trait]
impl ChatModel for LocalChat {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        let (tx, rx) = mpsc::channel(256);
        self.jobs
            .try_send(Job {
                request,
                events: tx,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LlmError::Busy,
                mpsc::error::TrySendError::Closed(_) => {
                    LlmError::Connect("the local model worker has stopped".into())
                }
            })?;
        Ok(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
                .boxed(),
        )
    }
}

fn worker(
    config: LocalConfig,
    mut jobs: mpsc::Receiver<Job>,
    ready: tokio::sync::oneshot::Sender<Result<(), LocalError>>,
    stats: Arc<LocalStats>,
) {
    let backend = backend();
    let load_error = |detail: String| LocalError::Load {
        path: config.model_path.clone(),
        detail,
    };
    let model =
        match LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
        {
            Ok(m) => m,
            Err(e) => {
                let _ = ready.send(Err(load_error(e.to_string())));
                return;
            }
        };
    let threads = config.effective_threads() as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(config.n_ctx))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(load_error(e.to_string())));
            return;
        }
    };
    let template = model.chat_template(None).ok();
    let _ = ready.send(Ok(()));
    tracing::info!(model = %config.model_path.display(), threads, n_ctx = config.n_ctx, "local model loaded");

    // Tokens whose keys and values are in the KV cache (sequence 0), in order.
    let mut cached: Vec<LlamaToken> = Vec::new();
    while let Some(job) = jobs.blocking_recv() {
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let outcome = generate(
            &model,
            &mut ctx,
            template.as_ref(),
            &config,
            &job,
            &mut cached,
            &stats,
        );
        if let Err(e) = outcome {
            let _ = job.events.blocking_send(Err(e));
        }
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> LlmError {
    LlmError::InvalidResponse(format!("{what}: {e}"))
}

/// Emits the longest complete UTF-8 prefix of `pending` (a Chinese character may span several tokens).
fn take_utf8(pending: &mut Vec<u8>) -> Option<String> {
    let valid = match std::str::from_utf8(pending) {
        Ok(s) => s.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        // Invalid bytes (not merely incomplete): replace them rather than stall.
        Err(_) => {
            let s = String::from_utf8_lossy(pending).into_owned();
            pending.clear();
            return Some(s);
        }
    };
    if valid == 0 {
        return None;
    }
    let rest = pending.split_off(valid);
    let text = String::from_utf8(std::mem::replace(pending, rest)).expect("validated");
    Some(text)
}

/// The JSON schema the answer must follow, if any: the requested one, or "one call of one of these tools".
fn output_schema(req: &ChatRequest) -> Option<serde_json::Value> {
    if req.tool_choice == ToolChoice::Required && !req.tools.is_empty() {
        let calls: Vec<serde_json::Value> = req
            .tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "type": "object",
                    "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                    "required": ["name", "arguments"],
                    "additionalProperties": false
                })
            })
            .collect();
        return Some(serde_json::json!({"anyOf": calls}));
    }
    req.json_schema.clone()
}

fn generate(
    model: &LlamaModel,
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    template: Option<&llama_cpp_2::model::LlamaChatTemplate>,
    config: &LocalConfig,
    job: &Job,
    cached: &mut Vec<LlamaToken>,
    stats: &LocalStats,
) -> Result<(), LlmError> {
    let started = Instant::now();
    let req = &job.request;
    let prompt = match template {
        Some(t) => {
            let msgs = req
                .messages
                .iter()
                .map(|m| LlamaChatMessage::new(role_name(m.role).into(), m.content.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| internal("message", e))?;
            model
                .apply_chat_template(t, &msgs, true)
                .map_err(|e| internal("chat template", e))?
        }
        None => {
            req.messages
                .iter()
                .map(|m| format!("{}: {}\n", role_name(m.role), m.content))
                .collect::<String>()
                + "assistant: "
        }
    };
    let vocab = model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), false, true);
    let max_new = req.max_tokens.unwrap_or(config.default_max_tokens) as usize;
    if tokens.is_empty() {
        return Err(LlmError::Rejected {
            status: 400,
            message: "empty prompt".into(),
        });
    }
    if tokens.len() + max_new > config.n_ctx as usize {
        return Err(LlmError::Rejected {
            status: 400,
            message: format!(
                "prompt of {} tokens plus {max_new} to generate exceeds the context of {}",
                tokens.len(),
                config.n_ctx
            ),
        });
    }
    // Reuse the longest common prefix already in the KV cache; always decode at least the last prompt token so
    // there are logits to sample from.
    let common = cached
        .iter()
        .zip(&tokens)
        .take_while(|(a, b)| a == b)
        .count()
        .min(tokens.len() - 1);
    ctx.clear_kv_cache_seq(Some(0), Some(common as u32), None)
        .map_err(|e| internal("kv cache", e))?;
    cached.truncate(common);
    stats
        .reused_prompt_tokens
        .fetch_add(common as u64, Ordering::Relaxed);
    stats
        .decoded_prompt_tokens
        .fetch_add((tokens.len() - common) as u64, Ordering::Relaxed);

    let n_batch = ctx.n_batch() as usize;
    let mut batch = LlamaBatch::new(n_batch.max(1), 1);
    let mut pos = common;
    for chunk in tokens[common..].chunks(n_batch.max(1)) {
        batch.clear();
        for (i, t) in chunk.iter().enumerate() {
            let last = pos + i + 1 == tokens.len();
            batch
                .add(*t, (pos + i) as i32, &[0], last)
                .map_err(|e| internal("batch", e))?;
        }
        ctx.decode(&mut batch).map_err(|e| internal("decode", e))?;
        cached.extend_from_slice(chunk);
        pos += chunk.len();
        if job.events.is_closed() {
            return Ok(()); // the caller went away during the prompt
        }
    }
    tracing::debug!(
        prompt_tokens = tokens.len(),
        reused = common,
        ms = started.elapsed().as_millis() as u64,
        "prompt processed"
    );

    let mut samplers = Vec::new();
    if let Some(schema) = output_schema(req) {
        let grammar = llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| {
            LlmError::Rejected {
                status: 400,
                message: format!("unsupported JSON schema: {e}"),
            }
        })?;
        samplers.push(
            LlamaSampler::grammar(model, &grammar, "root").map_err(|e| internal("grammar", e))?,
        );
    }
    match req.temperature {
        Some(t) if t > 0.0 => samplers.extend([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.9, 1),
            LlamaSampler::temp(t),
            LlamaSampler::dist(started.elapsed().subsec_nanos()),
        ]),
        _ => samplers.push(LlamaSampler::greedy()),
    }
    let mut sampler = LlamaSampler::chain_simple(samplers);
    // A tool call is collected whole and emitted as one event, not streamed as text.
    let tool_call = req.tool_choice == ToolChoice::Required && !req.tools.is_empty();
    let mut call_text = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut generated = 0usize;
    let mut finish = FinishReason::Length;
    let mut logits_idx = batch.n_tokens() - 1;
    while generated < max_new {
        let token = sampler.sample(ctx, logits_idx);
        if vocab.is_eog(token) {
            finish = FinishReason::Stop;
            break;
        }
        generated += 1;
        pending.extend(vocab.token_to_piece(token, false, None));
        if let Some(text) = take_utf8(&mut pending) {
            if tool_call {
                call_text.push_str(&text);
            } else if job
                .events
                .blocking_send(Ok(ChatEvent::Delta(text)))
                .is_err()
            {
                stats
                    .generated_tokens
                    .fetch_add(generated as u64, Ordering::Relaxed);
                return Ok(()); // cancelled: the caller dropped the stream
            }
        }
        batch.clear();
        batch
            .add(token, pos as i32, &[0], true)
            .map_err(|e| internal("batch", e))?;
        ctx.decode(&mut batch).map_err(|e| internal("decode", e))?;
        cached.push(token);
        pos += 1;
        logits_idx = 0;
    }
    if !pending.is_empty() {
        let rest = String::from_utf8_lossy(&pending).into_owned();
        if tool_call {
            call_text.push_str(&rest);
        } else {
            let _ = job.events.blocking_send(Ok(ChatEvent::Delta(rest)));
        }
    }
    if tool_call {
        let call: serde_json::Value = serde_json::from_str(&call_text).map_err(|e| {
            LlmError::InvalidResponse(format!("tool call is not JSON ({e}): {call_text}"))
        })?;
        let name = call["name"].as_str().unwrap_or_default().to_owned();
        let arguments = call["arguments"].to_string();
        let id = format!("call_{}", stats.requests.load(Ordering::Relaxed));
        let _ = job.events.blocking_send(Ok(ChatEvent::ToolCall(ToolCall {
            id,
            name,
            arguments,
        })));
        finish = FinishReason::ToolCalls;
    }
    stats
        .generated_tokens
        .fetch_add(generated as u64, Ordering::Relaxed);
    let usage = Usage {
        prompt_tokens: tokens.len() as u32,
        completion_tokens: generated as u32,
    };
    let _ = job.events.blocking_send(Ok(ChatEvent::Usage(usage)));
    let _ = job.events.blocking_send(Ok(ChatEvent::Finished(finish)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_only_emitted_whole() {
        let bytes = "你好".as_bytes();
        let mut p = bytes[..2].to_vec();
        assert_eq!(take_utf8(&mut p), None);
        p.extend_from_slice(&bytes[2..4]);
        assert_eq!(take_utf8(&mut p).as_deref(), Some("你"));
        assert_eq!(p, bytes[3..4]);
        p.extend_from_slice(&bytes[4..]);
        assert_eq!(take_utf8(&mut p).as_deref(), Some("好"));
        assert!(p.is_empty());
    }

    #[test]
    fn threads_default_to_cores_minus_one() {
        let c = LocalConfig::new("x.gguf");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.effective_threads(), (cores - 1).max(1));
    }
}
