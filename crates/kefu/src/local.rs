//! The local chat and embedding models for zero-configuration serving: resolve the configured name or path, pull it when missing
//! (if allowed), load it. Every failure leaves the server running and says what is missing and how to get it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kefu_embed_local::{LayerEncoder, LocalEmbedder};
use kefu_llm::Embedder;
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
        check: Some(failed_check("chat_model", label, detail)),
    }
}

fn failed_check(kind: &str, label: &str, detail: String) -> ReadinessCheck {
    ReadinessCheck {
        name: format!("{kind}:{label}"),
        ok: false,
        required: false,
        detail: Some(detail),
    }
}

fn ok_check(kind: &str, label: &str, path: &Path) -> ReadinessCheck {
    ReadinessCheck {
        name: format!("{kind}:{label}"),
        ok: true,
        required: false,
        detail: Some(path.display().to_string()),
    }
}

fn what(kind: kefu_models::Kind) -> &'static str {
    match kind {
        kefu_models::Kind::Chat => "chat model",
        kefu_models::Kind::Embedding => "embedding model",
    }
}

/// Where a configured model comes from.
#[derive(Debug)]
enum Source {
    Manifest(kefu_models::ModelSpec),
    Path(PathBuf),
}

/// A manifest name wins (names such as `qwen2.5-1.5b` contain dots); anything else that looks like a file or
/// directory path is taken as one.
fn source(configured: &str, kind: kefu_models::Kind) -> Result<Source, String> {
    if let Some(spec) = kefu_models::manifest()
        .into_iter()
        .find(|m| m.name == configured)
    {
        return if spec.kind == kind {
            Ok(Source::Manifest(spec))
        } else {
            Err(format!("{configured:?} is not a {}", what(kind)))
        };
    }
    if configured.contains('/') || Path::new(configured).extension().is_some() {
        Ok(Source::Path(PathBuf::from(configured)))
    } else {
        Err(format!(
            "{configured:?} is not a known {} (see `kefu model list`)",
            what(kind)
        ))
    }
}

/// The local file (or directory) of a configured model: a path as given, or a manifest name, installed or pulled
/// now when `auto_pull` allows. The error says what is missing; the caller adds how to get it.
async fn resolve(
    settings: &Settings,
    configured: &str,
    kind: kefu_models::Kind,
) -> Result<PathBuf, String> {
    let what = what(kind);
    let path = match source(configured, kind)? {
        Source::Path(p) => p,
        Source::Manifest(spec) => {
            let dir = settings.models_dir();
            let files = match kefu_models::installed(&spec, &dir) {
                Some(p) => p,
                None if settings.models.auto_pull => {
                    tracing::info!(
                        model = configured,
                        "the local {what} is missing; pulling it"
                    );
                    let opts =
                        kefu_models::PullOptions::new(settings.models.index_url.clone(), &dir);
                    let progress = LogProgress {
                        total: AtomicU64::new(0),
                        done: AtomicU64::new(0),
                    };
                    kefu_models::pull(&spec, &opts, &progress)
                        .await
                        .map_err(|e| {
                            format!(
                                "the local {what} {configured} is missing and could not be fetched: {e}"
                            )
                        })?
                }
                None => {
                    return Err(format!(
                        "the local {what} {configured} is not installed in {}",
                        dir.display()
                    ))
                }
            };
            // A one-file model is that file; a several-file model (MiniLM) is its directory.
            if files.len() == 1 {
                files[0].clone()
            } else {
                files[0].parent().map(Path::to_path_buf).unwrap_or_default()
            }
        }
    };
    if !path.exists() {
        return Err(format!(
            "the local {what} {} does not exist",
            path.display()
        ));
    }
    Ok(path)
}

/// The local chat model (`models.chat`).
pub async fn prepare(settings: &Settings) -> LocalModel {
    prepare_chat(settings, &settings.models.chat).await
}

/// A local chat model by name or GGUF path (loaded with the `[models]` settings), or why there is none.
pub async fn prepare_chat(settings: &Settings, chat: &str) -> LocalModel {
    let chat = chat.trim();
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
    let path = match resolve(settings, chat, kefu_models::Kind::Chat).await {
        Ok(p) => p,
        Err(e) => return missing(chat, format!("{e}. {how}")),
    };
    let config = LocalConfig {
        model_path: path.clone(),
        threads: (settings.models.threads > 0).then_some(settings.models.threads),
        n_ctx: settings.models.context_tokens,
        queue_capacity: settings.models.queue,
        parallel: settings.models.parallel.max(1),
        default_max_tokens: settings.llm.max_tokens.unwrap_or(512),
    };
    match LocalChat::load(config).await {
        Ok(c) => LocalModel {
            chat: Some(Arc::new(c)),
            label: chat.to_owned(),
            check: Some(ok_check("chat_model", chat, &path)),
        },
        Err(e) => missing(
            chat,
            format!("the local chat model could not be loaded: {e}. {how}"),
        ),
    }
}

/// The local embedding model (knowledge-base search), or why there is none.
pub struct LocalEmbedding {
    pub embedder: Option<Arc<dyn Embedder>>,
    /// The same model as the intent classifier's sentence encoder.
    pub encoder: Option<Arc<dyn kefu_nlu::SentenceEncoder>>,
    pub check: Option<ReadinessCheck>,
}

pub async fn prepare_embedder(settings: &Settings) -> LocalEmbedding {
    if let Some(hosted) = &settings.llm.embedder {
        return hosted_embedder(settings, hosted);
    }
    let name = settings.models.embedder.trim();
    if name.is_empty() {
        return LocalEmbedding {
            embedder: None,
            encoder: None,
            check: None,
        };
    }
    let how = format!(
        "Get it with `kefu model pull {name}` (or set models.embedder to an e5 .bin file or a MiniLM directory); \
         until then knowledge search uses keywords only"
    );
    let failed = |detail: String| {
        tracing::warn!("{detail}");
        LocalEmbedding {
            embedder: None,
            encoder: None,
            check: Some(failed_check("embedding_model", name, detail)),
        }
    };
    let path = match resolve(settings, name, kefu_models::Kind::Embedding).await {
        Ok(p) => p,
        Err(e) => return failed(format!("{e}. {how}")),
    };
    let (label, load_path) = (name.to_owned(), path.clone());
    match tokio::task::spawn_blocking(move || LocalEmbedder::load(load_path, &label)).await {
        Ok(Ok(e)) => {
            let e = Arc::new(e);
            LocalEmbedding {
                embedder: Some(e.clone()),
                encoder: Some(e),
                check: Some(ok_check("embedding_model", name, &path)),
            }
        }
        Ok(Err(e)) => failed(format!(
            "the local embedding model could not be loaded: {e}. {how}"
        )),
        Err(e) => failed(format!("loading the local embedding model failed: {e}")),
    }
}

/// The server's embedder on an OpenAI-compatible provider. Intent classifiers cannot train on it (training embeds
/// on the caller's thread), but conversations still share its query vector with knowledge search.
fn hosted_embedder(settings: &Settings, e: &crate::settings::EmbedderSettings) -> LocalEmbedding {
    let label = format!("{}/{}", e.provider, e.model);
    let Some(p) = settings.llm.providers.iter().find(|p| p.name == e.provider) else {
        let detail = format!(
            "llm.embedder names provider {:?}, which llm.providers lacks",
            e.provider
        );
        tracing::warn!("{detail}");
        return LocalEmbedding {
            embedder: None,
            encoder: None,
            check: Some(failed_check("embedding_model", &label, detail)),
        };
    };
    let client = kefu_llm_openai::http_client(std::time::Duration::from_millis(
        settings.llm.connect_timeout_ms,
    ));
    let embedder = kefu_llm_openai::OpenAiEmbedder::new(
        client,
        kefu_llm_openai::OpenAiEmbedConfig {
            base_url: p.base_url.clone(),
            api_key: p.api_key.clone(),
            model: e.model.clone(),
            dim: e.dim,
            query_prefix: e.query_prefix.clone(),
            passage_prefix: e.passage_prefix.clone(),
            batch: 64,
            timeout: std::time::Duration::from_millis(settings.llm.total_timeout_ms),
        },
    );
    LocalEmbedding {
        embedder: Some(Arc::new(embedder)),
        encoder: None,
        check: Some(ok_check("embedding_model", &label, Path::new(&p.base_url))),
    }
}

/// Loads the named embedding model (a manifest name such as `e5-small`, or a path; `<model>@<layers>` for chosen
/// layers, see [`LayerEncoder`]) as the intent classifier's sentence encoder, pulling it first when
/// `models.auto_pull` allows.
pub async fn load_encoder(
    settings: &Settings,
    name: &str,
) -> anyhow::Result<Arc<dyn kefu_nlu::SentenceEncoder>> {
    let (model, layers) = kefu_llm::split_layers(name).map_err(anyhow::Error::msg)?;
    let path = resolve(settings, model, kefu_models::Kind::Embedding)
        .await
        .map_err(|e| anyhow::anyhow!("{e}. Get it with `kefu model pull {model}`"))?;
    let label = model.to_owned();
    let loaded = tokio::task::spawn_blocking(move || LocalEmbedder::load(path, &label)).await??;
    Ok(match layers {
        None => Arc::new(loaded),
        Some(layers) => Arc::new(LayerEncoder::new(loaded, layers)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_models::Kind;

    #[test]
    fn manifest_names_with_dots_are_names_not_paths() {
        assert!(
            matches!(source("qwen2.5-1.5b", Kind::Chat), Ok(Source::Manifest(s)) if s.name == "qwen2.5-1.5b")
        );
        assert!(matches!(
            source("e5-small", Kind::Embedding),
            Ok(Source::Manifest(_))
        ));
        assert!(matches!(
            source("minilm", Kind::Embedding),
            Ok(Source::Manifest(_))
        ));
        assert!(matches!(
            source("my-model.gguf", Kind::Chat),
            Ok(Source::Path(_))
        ));
        assert!(matches!(
            source("/models/minilm", Kind::Embedding),
            Ok(Source::Path(_))
        ));
        let err = source("e5-small", Kind::Chat).unwrap_err();
        assert!(err.contains("not a chat model"), "{err}");
        let err = source("gpt-9", Kind::Chat).unwrap_err();
        assert!(err.contains("kefu model list"), "{err}");
    }
}
