//! Each tenant's understanding set-up for the engine, and the sentence encoders intent classifiers use.
//!
//! Intent classifiers are numbered versions in the database (`kefu_engine::intents`), written by the admin API,
//! `kefu nlu train` and the demo's first start; the tenant's record names the one in use, so every node serves the
//! same model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kefu_nlu::moderation::{self, Moderator};
use kefu_nlu::{IntentClassifier, PiiDetector, SentenceEncoder, Understander, Understanding};
use kefu_store::Store;
use uuid::Uuid;

use crate::Settings;

/// Sentence encoders by name, each loaded once per process. The server's embedder (knowledge search) is one of
/// them under its id, so an intent model trained with it shares its memory and, in a turn, its query vector.
pub struct Encoders {
    settings: Settings,
    default: Option<String>,
    loaded: tokio::sync::Mutex<HashMap<String, Arc<dyn SentenceEncoder>>>,
}

impl Encoders {
    /// `server`: the loaded embedder of `models.embedder`, when there is one.
    pub fn new(settings: &Settings, server: Option<Arc<dyn SentenceEncoder>>) -> Self {
        let mut loaded = HashMap::new();
        let default = server.map(|e| {
            let id = e.id().to_owned();
            loaded.insert(id.clone(), e);
            id
        });
        Encoders {
            settings: settings.clone(),
            default,
            loaded: tokio::sync::Mutex::new(loaded),
        }
    }

    /// The named encoders in order (`None`: the server's embedder, or none without one; `none` is skipped).
    pub async fn get(
        &self,
        names: Option<&[String]>,
    ) -> anyhow::Result<Vec<Arc<dyn SentenceEncoder>>> {
        let names: Vec<String> = match names {
            Some(n) => n
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty() && n != "none")
                .collect(),
            None => self.default.iter().cloned().collect(),
        };
        let mut out = Vec::with_capacity(names.len());
        // Held across a load, so two requests for a new encoder load it once.
        let mut loaded = self.loaded.lock().await;
        for name in names {
            if let Some(e) = loaded.get(&name) {
                out.push(e.clone());
                continue;
            }
            let e = crate::local::load_encoder(&self.settings, &name).await?;
            loaded.insert(name, e.clone());
            out.push(e);
        }
        Ok(out)
    }
}

/// Each tenant's set-up: the server's PII detector and word list plus the tenant's own words and current intent
/// model (from its record, set through the admin API or the command line). The record is read again at most every
/// [`REFRESH`] (at once on the node that changed it), so other nodes pick changes up within seconds.
pub struct TenantUnderstanding {
    store: Arc<dyn Store>,
    encoders: Arc<Encoders>,
    base: Arc<Understander>,
    cache: parking_lot::Mutex<HashMap<Uuid, Loaded>>,
}

/// How long a tenant's record is trusted before it is read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// What a tenant's set-up was built from, and the set-up.
struct Loaded {
    words: Option<serde_json::Value>,
    version: Option<i32>,
    /// When the tenant's record was last read; `None`: read it again now.
    read_at: Option<Instant>,
    understander: Arc<Understander>,
}

impl TenantUnderstanding {
    /// The server's set-up, as `kefu serve` builds it: PII detection, the word list of `engine.moderation_words`,
    /// and polarity anchors on the server's embedder (`server`), so emotion reads the query vector a turn computes.
    pub async fn for_server(
        settings: &Settings,
        store: Arc<dyn Store>,
        encoders: Arc<Encoders>,
        server: Option<Arc<dyn SentenceEncoder>>,
    ) -> anyhow::Result<Self> {
        let mut base = Understander::new(PiiDetector::new());
        if let Some(path) = &settings.engine.moderation_words {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the word list {}", path.display()))?;
            let words = moderation::parse_word_list(
                &text,
                &path.display().to_string(),
                moderation::Action::Flag,
            )?;
            base = base.with_moderator(Arc::new(Moderator::new(words)?));
        }
        if let Some(a) = polarity_anchors(server).await? {
            base = base.with_anchors(a);
        }
        Ok(TenantUnderstanding {
            store,
            encoders,
            base: Arc::new(base),
            cache: Default::default(),
        })
    }

    /// The tenant's set-up with intent model `version` (stored, not necessarily in use; `None`: the one in use, if
    /// any), for `kefu nlu predict`, and the version it holds. Unlike a conversation's, a model that cannot be loaded
    /// is an error.
    pub async fn with_version(
        &self,
        tenant: Uuid,
        version: Option<i32>,
    ) -> anyhow::Result<(Understander, Option<i32>)> {
        let record = self.store.get_tenant(tenant).await?;
        let words = record.as_ref().and_then(|t| t.moderation_config.as_ref());
        let version = version.or(record.as_ref().and_then(|t| t.intent_model));
        let u = self.words(words)?;
        Ok(match version {
            Some(v) => (u.with_intent(self.intent(tenant, v).await?), version),
            None => (u, None),
        })
    }

    /// The server's set-up with the tenant's own words added.
    fn words(&self, words: Option<&serde_json::Value>) -> anyhow::Result<Understander> {
        let mut u = (*self.base).clone();
        if let Some(entries) = kefu_engine::words::stored_entries(words) {
            if !entries.is_empty() {
                let m = kefu_engine::words::combined(self.base.moderator().map(|m| &**m), entries)
                    .map_err(anyhow::Error::msg)?;
                u = u.with_moderator(Arc::new(m));
            }
        }
        Ok(u)
    }

    async fn build(
        &self,
        tenant: Uuid,
        words: Option<&serde_json::Value>,
        version: Option<i32>,
    ) -> anyhow::Result<Understander> {
        let u = self.words(words)?;
        let Some(version) = version else {
            return Ok(u);
        };
        // A model that cannot serve leaves the words in force.
        match self.intent(tenant, version).await {
            Ok(c) => Ok(u.with_intent(c)),
            Err(e) => {
                tracing::warn!(version, error = %e, "intent model not loaded; answering without intents");
                Ok(u)
            }
        }
    }

    async fn intent(&self, tenant: Uuid, version: i32) -> anyhow::Result<IntentClassifier> {
        let model = kefu_engine::intents::load(self.store.as_ref(), tenant, version)
            .await?
            .ok_or_else(|| anyhow::anyhow!("intent model v{version} is not stored"))?;
        let names: Vec<String> = model.info.encoders.iter().map(|e| e.id.clone()).collect();
        let encoders = self.encoders.get(Some(&names)).await?;
        Ok(IntentClassifier::new(model, encoders)?)
    }
}

#[async_trait::async_trait]
impl kefu_engine::UnderstanderSource for TenantUnderstanding {
    async fn understander(&self, tenant: Uuid) -> Arc<Understander> {
        let fresh = self.cache.lock().get(&tenant).and_then(|l| {
            l.read_at
                .is_some_and(|t| t.elapsed() < REFRESH)
                .then(|| l.understander.clone())
        });
        if let Some(u) = fresh {
            return u;
        }
        let (words, version) = match self.store.get_tenant(tenant).await {
            Ok(Some(t)) => (t.moderation_config, t.intent_model),
            _ => return self.base.clone(),
        };
        if let Some(l) = self.cache.lock().get_mut(&tenant) {
            if l.version == version && l.words == words {
                l.read_at = Some(Instant::now());
                return l.understander.clone();
            }
        }
        let built = match self.build(tenant, words.as_ref(), version).await {
            Ok(u) => {
                tracing::info!(%tenant, version = ?version, "understanding set-up loaded");
                Arc::new(u)
            }
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "understanding set-up not loaded; using the server's");
                self.base.clone()
            }
        };
        self.cache.lock().insert(
            tenant,
            Loaded {
                words,
                version,
                read_at: Some(Instant::now()),
                understander: built.clone(),
            },
        );
        built
    }

    fn invalidate(&self, tenant: Uuid) {
        if let Some(l) = self.cache.lock().get_mut(&tenant) {
            l.read_at = None;
        }
    }

    async fn encoders(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<dyn SentenceEncoder>>, String> {
        self.encoders.get(names).await.map_err(|e| format!("{e:#}"))
    }
}

/// The emotion step's polarity anchors on the server's embedder, embedded once on a blocking thread (0.1–0.5 s
/// on a dev build, bench/RESULTS.md session 32); `None` without an embedder, or with a warning when embedding
/// fails, so emotion reads words only.
async fn polarity_anchors(
    encoder: Option<Arc<dyn SentenceEncoder>>,
) -> anyhow::Result<Option<Arc<kefu_nlu::emotion::PolarityAnchors>>> {
    let Some(encoder) = encoder else {
        return Ok(None);
    };
    let started = Instant::now();
    let built = tokio::task::spawn_blocking(move || {
        kefu_nlu::emotion::PolarityAnchors::new(encoder.as_ref())
    })
    .await?;
    Ok(match built {
        Ok(a) => {
            tracing::info!(
                encoder = a.encoder_id(),
                ms = started.elapsed().as_millis() as u64,
                "emotion: polarity anchors embedded"
            );
            Some(Arc::new(a))
        }
        Err(e) => {
            tracing::warn!(error = %e, "emotion reads words only: the polarity anchors were not embedded");
            None
        }
    })
}

/// Understands `text` as a conversation's turn does, for `kefu nlu predict`: the vector of the server's embedder
/// (`server`), which a turn shares with knowledge search, is computed here when the set-up reads it; the intent
/// classifier runs any other encoder itself.
pub fn understand_as_a_turn(
    u: &Understander,
    server: Option<&dyn SentenceEncoder>,
    text: &str,
) -> anyhow::Result<Understanding> {
    let vector = match server {
        Some(e) if u.encoders().contains(&e.id()) => e
            .encode(&[&u.intent_text(text)])
            .map_err(anyhow::Error::msg)?
            .pop(),
        _ => None,
    };
    let given: Vec<(&str, &[f32])> = match (&vector, server) {
        (Some(v), Some(e)) => vec![(e.id(), v.as_slice())],
        _ => Vec::new(),
    };
    Ok(u.understand_with(text, &given)?)
}
