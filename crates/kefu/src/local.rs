//! The local chat model for zero-configuration serving: resolve the configured name or path, pull it when missing
//! (if allowed), load it. Every failure leaves the server running and says what is missing and how to get it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kefu_llm_local::{LocalChat, LocalConfig};
use kefu_types::ReadinessCheck;

use crate::settings::Settings;

pub struct LocalModel {
    pub chat: Option<Arc<LocalChat>>,
    /// The model's label in chains and replies, e.g. `qwen2.5-1.5b`.
    pub label: String,
    pub check: Option<ReadinessCheck>,
}

/// Logs pull progress every 10 %.
struct LogProgress {
    total: AtomicU64,
    done: AtomicU64,
}

impl kefu_models::Progress for LogProgress {
    fn begin(&self, label: &str, total: Option<u64>) {
        self.total.store(total.unwrap_or(0), Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        tracing::info!(file = label, bytes = total, "downloading");
    }
    fn inc(&self, bytes: u64) {
        let total = self.total.load(Ordering::Relaxed);
        let before = self.done.fetch_add(bytes, Ordering::Relaxed);
        if total > 0 && (before * 10 / total) != ((before + bytes) * 10 / total) {
            tracing::info!(percent = (before + bytes) * 100 / total, "downloading");
        }
    }
    fn note(&self, message: &str) {
        tracing::info!("{message}");
    }
    fn end(&self) {
        tracing::info!("verified");
    }
}

fn missing(label: &str, detail: String) -> LocalModel {
    tracing::warn!("{detail}");
    LocalModel {
        chat: None,
        label: label.to_owned(),
        check: Some(ReadinessCheck {
            name: format!("chat_model:{label}"),
            ok: false,
            required: false,
            detail: Some(detail),
        }),
    }
}

pub async fn prepare(settings: &Settings) -> LocalModel {
    let chat = settings.models.chat.trim();
    if chat.is_empty() {
        return LocalModel {
            chat: None,
            label: String::new(),
            check: None,
        };
    }
    let how = format!(
        "Get it with `kefu model pull {chat}` (or set models.chat to a GGUF file, or configure [[llm.chain]]); until \
         then messages are stored and answered with the fallback reply"
    );
    let path = if chat.ends_with(".gguf") || chat.contains('/') {
        PathBuf::from(chat)
    } else {
        let Some(spec) = kefu_models::manifest()
            .into_iter()
            .find(|m| m.name == chat && m.kind == kefu_models::Kind::Chat)
        else {
            return missing(
                chat,
                format!("models.chat {chat:?} is not a known chat model (see `kefu model list`)"),
            );
        };
        let dir = settings.models_dir();
        match kefu_models::installed(&spec, &dir) {
            Some(p) => p[0].clone(),
            None if settings.models.auto_pull => {
                tracing::info!(model = chat, "the local chat model is missing; pulling it");
                let opts = kefu_models::PullOptions::new(settings.models.index_url.clone(), &dir);
                let progress = LogProgress {
                    total: AtomicU64::new(0),
                    done: AtomicU64::new(0),
                };
                match kefu_models::pull(&spec, &opts, &progress).await {
                    Ok(p) => p[0].clone(),
                    Err(e) => return missing(chat, format!("the local chat model {chat} is missing and could not be fetched: {e}. {how}")),
                }
            }
            None => {
                return missing(
                    chat,
                    format!(
                        "the local chat model {chat} is not installed in {}. {how}",
                        dir.display()
                    ),
                )
            }
        }
    };
    if !path.exists() {
        return missing(
            chat,
            format!(
                "the local chat model file {} does not exist. {how}",
                path.display()
            ),
        );
    }
    let config = LocalConfig {
        model_path: path.clone(),
        threads: (settings.models.threads > 0).then_some(settings.models.threads),
        n_ctx: settings.models.context_tokens,
        queue_capacity: settings.models.queue,
        default_max_tokens: settings.llm.max_tokens.unwrap_or(512),
    };
    match LocalChat::load(config).await {
        Ok(c) => LocalModel {
            chat: Some(Arc::new(c)),
            label: chat.to_owned(),
            check: Some(ReadinessCheck {
                name: format!("chat_model:{chat}"),
                ok: true,
                required: false,
                detail: Some(path.display().to_string()),
            }),
        },
        Err(e) => missing(
            chat,
            format!("the local chat model could not be loaded: {e}. {how}"),
        ),
    }
}
