//! `kefu nlu`: train intent classifiers and keep them as numbered versions in the data directory
//! (`nlu/intent/<tenant>/v<N>.bin`, with `v<N>.json` describing each and `current` naming the one in use), so a
//! retrained model never overwrites the one serving until it is written completely, and an older version can be
//! put back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use anyhow::{bail, Context};
use kefu_nlu::intent::ModelInfo;
use kefu_nlu::moderation::Moderator;
use kefu_nlu::{IntentClassifier, IntentModel, PiiDetector, Understander};
use kefu_store::Store;
use uuid::Uuid;

use crate::Settings;

/// Each tenant's understanding set-up for the engine: the server's PII detector and word list plus the tenant's own
/// words (from its record, set through the admin API) and its current intent model from the [`ModelStore`]
/// (reloaded when `kefu nlu train` or `kefu nlu use` moves `current`). The tenant's record is read again at most
/// every [`REFRESH`] (at once on the node that changed it), so other nodes pick a new word list up within seconds.
pub struct TenantUnderstanding {
    data_dir: PathBuf,
    store: Arc<dyn Store>,
    base: Arc<Understander>,
    cache: parking_lot::Mutex<HashMap<Uuid, Loaded>>,
}

/// How long a tenant's record is trusted before it is read again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// A tenant's slug (names its model directory), its stored word list, the model version loaded (`None`: no model)
/// and the set-up built with them.
struct Loaded {
    slug: String,
    words: Option<serde_json::Value>,
    version: Option<u32>,
    /// When the tenant's record was last read; `None`: read it again now.
    read_at: Option<Instant>,
    understander: Arc<Understander>,
}

impl TenantUnderstanding {
    pub fn new(data_dir: &Path, store: Arc<dyn Store>, moderator: Option<Arc<Moderator>>) -> Self {
        let mut base = Understander::new(PiiDetector::new());
        if let Some(m) = moderator {
            base = base.with_moderator(m);
        }
        TenantUnderstanding {
            data_dir: data_dir.to_owned(),
            store,
            base: Arc::new(base),
            cache: Default::default(),
        }
    }

    fn build(
        &self,
        words: Option<&serde_json::Value>,
        models: Option<(&ModelStore, u32)>,
    ) -> anyhow::Result<Understander> {
        let mut u = (*self.base).clone();
        if let Some(entries) = kefu_engine::words::stored_entries(words) {
            if !entries.is_empty() {
                let m = kefu_engine::words::combined(self.base.moderator().map(|m| &**m), entries)
                    .map_err(anyhow::Error::msg)?;
                u = u.with_moderator(Arc::new(m));
            }
        }
        let Some((store, version)) = models else {
            return Ok(u);
        };
        // A model that cannot serve leaves the words in force.
        match Self::intent(store, version) {
            Ok(c) => Ok(u.with_intent(c)),
            Err(e) => {
                tracing::warn!(version, error = %e, "intent model not loaded; answering without intents");
                Ok(u)
            }
        }
    }

    fn intent(store: &ModelStore, version: u32) -> anyhow::Result<IntentClassifier> {
        let (_, model) = store.load(Some(version))?;
        if !model.info.encoders.is_empty() {
            // Serving loads no second copy of an embedding model per tenant; n-gram models serve everywhere.
            bail!(
                "intent model v{version} needs sentence encoders ({}); the server serves n-gram models only: \
                 retrain with --encoders none",
                model
                    .info
                    .encoders
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(IntentClassifier::new(model, Vec::new())?)
    }
}

#[async_trait::async_trait]
impl kefu_engine::UnderstanderSource for TenantUnderstanding {
    async fn understander(&self, tenant: Uuid) -> Arc<Understander> {
        let known = self.cache.lock().get(&tenant).map(|l| {
            let fresh = l.read_at.is_some_and(|t| t.elapsed() < REFRESH);
            (l.slug.clone(), fresh.then(|| l.words.clone()))
        });
        let (slug, words) = match known {
            Some((slug, Some(words))) => (slug, words),
            _ => match self.store.get_tenant(tenant).await {
                Ok(Some(t)) => {
                    if let Some(l) = self.cache.lock().get_mut(&tenant) {
                        l.read_at = Some(Instant::now());
                    }
                    (t.slug, t.moderation_config)
                }
                _ => return self.base.clone(),
            },
        };
        let models = ModelStore::new(&self.data_dir, &slug).ok();
        let current = models.as_ref().and_then(ModelStore::current);
        if let Some(l) = self.cache.lock().get(&tenant) {
            if l.version == current && l.words == words {
                return l.understander.clone();
            }
        }
        let built = match self.build(words.as_ref(), models.as_ref().zip(current)) {
            Ok(u) => {
                tracing::info!(tenant = %slug, version = ?current, "understanding set-up loaded");
                Arc::new(u)
            }
            Err(e) => {
                tracing::warn!(tenant = %slug, error = %e, "understanding set-up not loaded; using the server's");
                self.base.clone()
            }
        };
        self.cache.lock().insert(
            tenant,
            Loaded {
                slug,
                words,
                version: current,
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
}

pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    pub fn new(data_dir: &Path, tenant: &str) -> anyhow::Result<Self> {
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("tenant {tenant:?}: use letters, digits, '-' and '_'");
        }
        Ok(ModelStore {
            dir: data_dir.join("nlu").join("intent").join(tenant),
        })
    }

    /// Versions present, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix('v')?.strip_suffix(".bin")?.parse().ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    pub fn current(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("current"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Writes the model as the next version and makes it current; returns its number.
    pub fn save(&self, model: &IntentModel) -> anyhow::Result<u32> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let version = self.versions().last().copied().unwrap_or(0) + 1;
        let write = |name: String, bytes: &[u8]| -> anyhow::Result<()> {
            let tmp = self.dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, self.dir.join(name))?;
            Ok(())
        };
        write(format!("v{version}.bin"), &model.to_bytes())?;
        write(
            format!("v{version}.json"),
            &serde_json::to_vec_pretty(&model.info)?,
        )?;
        self.set_current(version)?;
        Ok(version)
    }

    pub fn set_current(&self, version: u32) -> anyhow::Result<()> {
        if !self.dir.join(format!("v{version}.bin")).exists() {
            bail!("there is no version {version} (have {:?})", self.versions());
        }
        let tmp = self.dir.join(".current.tmp");
        std::fs::write(&tmp, version.to_string())?;
        std::fs::rename(&tmp, self.dir.join("current"))?;
        Ok(())
    }

    pub fn info(&self, version: u32) -> anyhow::Result<ModelInfo> {
        let p = self.dir.join(format!("v{version}.json"));
        Ok(serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )?)
    }

    /// The given version, or the current one.
    pub fn load(&self, version: Option<u32>) -> anyhow::Result<(u32, IntentModel)> {
        let Some(v) = version.or_else(|| self.current()) else {
            bail!("no intent model has been trained yet: run `kefu nlu train --data FILE`");
        };
        let p = self.dir.join(format!("v{v}.bin"));
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok((v, IntentModel::from_bytes(&bytes)?))
    }
}

/// Loads a stored model with the encoders it was trained with.
pub async fn classifier(
    settings: &Settings,
    model: IntentModel,
) -> anyhow::Result<IntentClassifier> {
    let names: Vec<String> = model.info.encoders.iter().map(|e| e.id.clone()).collect();
    let mut encoders: Vec<Arc<dyn kefu_nlu::SentenceEncoder>> = Vec::new();
    for n in &names {
        encoders.push(crate::local::load_encoder(settings, n).await?);
    }
    Ok(IntentClassifier::new(model, encoders)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_nlu::intent::{Example, TrainConfig};

    #[test]
    fn versions_are_numbered_and_current_moves() {
        let dir = std::env::temp_dir().join(format!("kefu-nlu-store-{}", std::process::id()));
        let store = ModelStore::new(&dir, "shop").unwrap();
        assert!(store.load(None).is_err());
        let ex: Vec<Example> = [
            ("hi", "greet"),
            ("hello", "greet"),
            ("refund", "refund"),
            ("money back", "refund"),
        ]
        .iter()
        .map(|(t, i)| Example::new(*t, *i))
        .collect();
        let mut cfg = TrainConfig::default();
        cfg.features.min_df = 1;
        let m = IntentModel::train(&ex, None, &[], &cfg).unwrap();
        assert_eq!(store.save(&m).unwrap(), 1);
        assert_eq!(store.save(&m).unwrap(), 2);
        assert_eq!(store.current(), Some(2));
        store.set_current(1).unwrap();
        assert_eq!(store.load(None).unwrap().0, 1);
        assert!(store.set_current(7).is_err());
        assert_eq!(store.info(2).unwrap().labels, vec!["greet", "refund"]);
        assert!(ModelStore::new(&dir, "../etc").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
