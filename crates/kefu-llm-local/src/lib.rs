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
//! Up to `parallel` requests run at once, each in its own KV-cache sequence, all decoded together one token per
//! step (continuous batching: a prompt is fed in with the room the batch has left). A new request takes the free
//! sequence that already holds the longest prefix of its prompt (its conversation's earlier turns), and a prefix
//! held by another sequence (the shared system prompt) is copied within the unified KV cache, not recomputed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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
    /// Requests served at once, each in its own KV-cache sequence of `n_ctx` tokens, decoded together in one batch
    /// per token. A finished sequence keeps its conversation for the next turn.
    pub parallel: usize,
}

impl LocalConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            threads: None,
            n_ctx: 4096,
            queue_capacity: 8,
            default_max_tokens: 512,
            parallel: 4,
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
    /// Decodes that carried tokens of more than one sequence.
    pub multi_sequence_steps: AtomicU64,
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
    let parallel = config.parallel.max(1);
    // One unified KV cache for all sequences: a prefix that several conversations share (the system prompt) is
    // copied between sequences without recomputing it and without taking more cells.
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(config.n_ctx * parallel as u32))
        .with_n_batch(512)
        .with_n_seq_max(parallel as u32)
        .with_kv_unified(true)
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
    tracing::info!(model = %config.model_path.display(), threads, parallel, n_ctx = config.n_ctx, "local model loaded");

    let mut slots: Vec<Slot> = (0..parallel)
        .map(|i| Slot {
            seq: i as i32,
            cached: Vec::new(),
            last_used: 0,
            active: None,
        })
        .collect();
    let mut clock = 0u64;
    let n_batch = ctx.n_batch() as usize;
    let mut batch = LlamaBatch::new(n_batch, 1);
    loop {
        // Take new requests while a sequence is free; sleep only when nothing is running.
        while slots.iter().any(|s| s.active.is_none()) {
            let job = if slots.iter().any(|s| s.active.is_some()) {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(_) => break,
                }
            } else {
                match jobs.blocking_recv() {
                    Some(j) => j,
                    None => return,
                }
            };
            stats.requests.fetch_add(1, Ordering::Relaxed);
            clock += 1;
            admit(
                &model,
                &mut ctx,
                template.as_ref(),
                &config,
                job,
                &mut slots,
                clock,
                &stats,
            );
        }
        step(&model, &mut ctx, &mut batch, &mut slots, &stats);
    }
}

/// One KV-cache sequence: what it holds and, while it serves a request, that request.
struct Slot {
    seq: i32,
    /// Tokens whose keys and values are in this sequence, in order.
    cached: Vec<LlamaToken>,
    /// When it last took a request (free sequences are reused least recently first).
    last_used: u64,
    active: Option<Active>,
}

/// A request being served by a sequence.
struct Active {
    job: Job,
    prompt: Vec<LlamaToken>,
    sampler: LlamaSampler,
    max_new: usize,
    generated: usize,
    /// The last sampled token, decoded in the next step.
    next: Option<LlamaToken>,
    /// Where in the current batch this request's logits are.
    logits_at: Option<i32>,
    pending: Vec<u8>,
    /// A required tool call is collected whole and emitted as one event, not streamed as text.
    tool_call: bool,
    call_text: String,
}

/// The prompt text of a request, through the model's own chat template.
fn render(
    model: &LlamaModel,
    template: Option<&llama_cpp_2::model::LlamaChatTemplate>,
    req: &ChatRequest,
) -> Result<String, LlmError> {
    Ok(match template {
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
    })
}

fn common_prefix(cached: &[LlamaToken], tokens: &[LlamaToken]) -> usize {
    cached
        .iter()
        .zip(tokens)
        .take_while(|(a, b)| a == b)
        .count()
}

/// The prompt tokens, the token limit and the sampler of a request, or why it cannot run.
fn plan(
    model: &LlamaModel,
    template: Option<&llama_cpp_2::model::LlamaChatTemplate>,
    config: &LocalConfig,
    req: &ChatRequest,
) -> Result<(Vec<LlamaToken>, usize, LlamaSampler), LlmError> {
    let prompt = render(model, template, req)?;
    let tokens = model.vocab().tokenize(prompt.as_bytes(), false, true);
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
    Ok((tokens, max_new, sampler_for(model, req)?))
}

/// Gives a request a free sequence: the one already holding the longest prefix of its prompt (a conversation's
/// earlier turns), else the least recently used. A longer prefix held by another sequence (the shared system
/// prompt) is copied into it rather than decoded again. At least the last prompt token is always decoded, so there
/// are logits to sample from. A request that cannot run gets its error on its own stream.
#[allow(clippy::too_many_arguments)]
fn admit(
    model: &LlamaModel,
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    template: Option<&llama_cpp_2::model::LlamaChatTemplate>,
    config: &LocalConfig,
    job: Job,
    slots: &mut [Slot],
    clock: u64,
    stats: &LocalStats,
) {
    let (tokens, max_new, sampler) = match plan(model, template, config, &job.request) {
        Ok(p) => p,
        Err(e) => {
            let _ = job.events.blocking_send(Err(e));
            return;
        }
    };
    let usable = |cached: &[LlamaToken]| common_prefix(cached, &tokens).min(tokens.len() - 1);
    let idx = (0..slots.len())
        .filter(|&i| slots[i].active.is_none())
        .max_by_key(|&i| {
            (
                usable(&slots[i].cached),
                std::cmp::Reverse(slots[i].last_used),
            )
        })
        .expect("admit is only called with a free sequence");
    let mut keep = usable(&slots[idx].cached);
    let donor = (0..slots.len())
        .filter(|&i| i != idx)
        .map(|i| (i, usable(&slots[i].cached)))
        .max_by_key(|&(_, n)| n)
        .filter(|&(_, n)| n > keep);
    let seq = slots[idx].seq;
    let kv = match donor {
        Some((from, n)) => {
            keep = n;
            slots[idx].cached = slots[from].cached[..n].to_vec();
            ctx.clear_kv_cache_seq(Some(seq as u32), None, None)
                .and_then(|_| ctx.copy_kv_cache_seq(slots[from].seq, seq, None, Some(n as u32)))
        }
        None => {
            slots[idx].cached.truncate(keep);
            ctx.clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None)
                .map(|_| ())
        }
    };
    if let Err(e) = kv {
        slots[idx].cached.clear();
        let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        let _ = job.events.blocking_send(Err(internal("kv cache", e)));
        return;
    }
    stats
        .reused_prompt_tokens
        .fetch_add(keep as u64, Ordering::Relaxed);
    stats
        .decoded_prompt_tokens
        .fetch_add((tokens.len() - keep) as u64, Ordering::Relaxed);
    let tool_call =
        job.request.tool_choice == ToolChoice::Required && !job.request.tools.is_empty();
    slots[idx].last_used = clock;
    slots[idx].active = Some(Active {
        job,
        prompt: tokens,
        sampler,
        max_new,
        generated: 0,
        next: None,
        logits_at: None,
        pending: Vec::new(),
        tool_call,
        call_text: String::new(),
    });
}

fn sampler_for(model: &LlamaModel, req: &ChatRequest) -> Result<LlamaSampler, LlmError> {
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
            LlamaSampler::dist(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            ),
        ]),
        _ => samplers.push(LlamaSampler::greedy()),
    }
    Ok(LlamaSampler::chain_simple(samplers))
}

/// One decode for every running request: the next token of each generating sequence, and as much of one waiting
/// prompt as the batch has room for; then a token is sampled for each sequence whose logits were computed.
fn step(
    model: &LlamaModel,
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    slots: &mut [Slot],
    stats: &LocalStats,
) {
    // A caller that went away stops its generation.
    for slot in slots.iter_mut() {
        if slot
            .active
            .as_ref()
            .is_some_and(|a| a.job.events.is_closed())
        {
            let a = slot.active.take().expect("checked");
            stats
                .generated_tokens
                .fetch_add(a.generated as u64, Ordering::Relaxed);
        }
    }
    batch.clear();
    // (slot, tokens this batch adds to its sequence)
    let mut added: Vec<(usize, Vec<LlamaToken>)> = Vec::new();
    let n_batch = ctx.n_batch() as usize;
    // Generating sequences first (one token each), then prompts with the room that is left.
    let order: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].active.as_ref().is_some_and(|a| a.next.is_some()))
        .chain(
            (0..slots.len())
                .filter(|&i| slots[i].active.as_ref().is_some_and(|a| a.next.is_none())),
        )
        .collect();
    let mut result = Ok(());
    for i in order {
        let room = n_batch - batch.n_tokens() as usize;
        if room == 0 {
            break;
        }
        match add_to_batch(batch, &mut slots[i], room) {
            Ok(tokens) if !tokens.is_empty() => added.push((i, tokens)),
            Ok(_) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if batch.n_tokens() == 0 {
        return;
    }
    let result = result.and_then(|()| ctx.decode(batch).map_err(|e| internal("decode", e)));
    if let Err(e) = result {
        // The batch failed as a whole: every request in it fails, and their sequences forget what they held.
        for (i, _) in added {
            let s = &mut slots[i];
            if let Some(a) = s.active.take() {
                let _ = a.job.events.blocking_send(Err(e.clone()));
            }
            s.cached.clear();
            let _ = ctx.clear_kv_cache_seq(Some(s.seq as u32), None, None);
        }
        return;
    }
    if added.len() > 1 {
        stats.multi_sequence_steps.fetch_add(1, Ordering::Relaxed);
    }
    for (i, tokens) in added {
        slots[i].cached.extend(tokens);
    }
    let vocab = model.vocab();
    for slot in slots.iter_mut() {
        let Some(a) = slot.active.as_mut() else {
            continue;
        };
        let Some(at) = a.logits_at.take() else {
            continue;
        };
        let token = a.sampler.sample(ctx, at);
        if vocab.is_eog(token) {
            finish(slot, FinishReason::Stop, stats);
            continue;
        }
        a.generated += 1;
        a.pending.extend(vocab.token_to_piece(token, false, None));
        if let Some(text) = take_utf8(&mut a.pending) {
            if a.tool_call {
                a.call_text.push_str(&text);
            } else if a
                .job
                .events
                .blocking_send(Ok(ChatEvent::Delta(text)))
                .is_err()
            {
                // Cancelled: the caller dropped the stream.
                let a = slot.active.take().expect("active");
                stats
                    .generated_tokens
                    .fetch_add(a.generated as u64, Ordering::Relaxed);
                continue;
            }
        }
        if a.generated >= a.max_new {
            finish(slot, FinishReason::Length, stats);
        } else {
            a.next = Some(token);
        }
    }
}

/// Puts a sequence's next tokens into the batch: its last sampled token, or up to `room` tokens of its prompt.
/// Logits are asked for where sampling happens: a generated token, or the prompt's last token.
fn add_to_batch(
    batch: &mut LlamaBatch<'_>,
    slot: &mut Slot,
    room: usize,
) -> Result<Vec<LlamaToken>, LlmError> {
    let Some(a) = slot.active.as_mut() else {
        return Ok(Vec::new());
    };
    a.logits_at = None;
    let pos = slot.cached.len();
    let tokens: Vec<LlamaToken> = match a.next.take() {
        Some(t) => vec![t],
        None => a.prompt[pos.min(a.prompt.len())..(pos + room).min(a.prompt.len())].to_vec(),
    };
    let ends = pos + tokens.len() >= a.prompt.len();
    for (i, t) in tokens.iter().enumerate() {
        let logits = ends && i + 1 == tokens.len();
        if logits {
            a.logits_at = Some(batch.n_tokens());
        }
        batch
            .add(*t, (pos + i) as i32, &[slot.seq], logits)
            .map_err(|e| internal("batch", e))?;
    }
    Ok(tokens)
}

/// Ends a request: the rest of its text (or its tool call), usage, the finish reason. The sequence keeps what it
/// holds for the conversation's next turn.
fn finish(slot: &mut Slot, mut reason: FinishReason, stats: &LocalStats) {
    let Some(mut a) = slot.active.take() else {
        return;
    };
    stats
        .generated_tokens
        .fetch_add(a.generated as u64, Ordering::Relaxed);
    let events = &a.job.events;
    if !a.pending.is_empty() {
        let rest = String::from_utf8_lossy(&a.pending).into_owned();
        if a.tool_call {
            a.call_text.push_str(&rest);
        } else {
            let _ = events.blocking_send(Ok(ChatEvent::Delta(rest)));
        }
    }
    if a.tool_call {
        match serde_json::from_str::<serde_json::Value>(&a.call_text) {
            Ok(call) => {
                let id = format!("call_{}", stats.requests.load(Ordering::Relaxed));
                let _ = events.blocking_send(Ok(ChatEvent::ToolCall(ToolCall {
                    id,
                    name: call["name"].as_str().unwrap_or_default().to_owned(),
                    arguments: call["arguments"].to_string(),
                })));
                reason = FinishReason::ToolCalls;
            }
            Err(e) => {
                let _ = events.blocking_send(Err(LlmError::InvalidResponse(format!(
                    "tool call is not JSON ({e}): {}",
                    a.call_text
                ))));
                return;
            }
        }
    }
    let usage = Usage {
        prompt_tokens: a.prompt.len() as u32,
        completion_tokens: a.generated as u32,
    };
    let _ = events.blocking_send(Ok(ChatEvent::Usage(usage)));
    let _ = events.blocking_send(Ok(ChatEvent::Finished(reason)));
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
