//! The model registry: turns a tenant's model setup (its own, or the server default) into a fallback chain of
//! OpenAI-compatible providers, caches it briefly, and keeps one circuit breaker per provider endpoint across
//! reloads so a configuration change does not forget that an endpoint is down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use uuid::Uuid;

use kefu_llm::{
    ChainLink, CircuitBreaker, FallbackChain, GenerationParams, LlmError, ModelDirectory,
    ResolvedModels, RetryPolicy, Timeouts,
};
use kefu_llm_openai::{OpenAiChat, OpenAiConfig};
use kefu_store::Store;
use kefu_types::{ChainEntry, ModelConfig, ProviderConfig};

use crate::settings::LlmSettings;

/// The configured server default as the wire type tenants use too.
pub fn default_model_config(l: &LlmSettings) -> Option<ModelConfig> {
    if l.chain.is_empty() && l.providers.is_empty() {
        return None;
    }
    Some(ModelConfig {
        providers: l
            .providers
            .iter()
            .map(|p| ProviderConfig {
                name: p.name.clone(),
                base_url: p.base_url.clone(),
                api_key: p.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
            })
            .collect(),
        chain: l.chain.iter().map(chain_entry).collect(),
        temperature: l.temperature,
        max_tokens: l.max_tokens,
        system_prompt: None,
        cheap_chain: l.cheap_chain.iter().map(chain_entry).collect(),
        currency: l.currency.clone(),
    })
}

fn chain_entry(c: &crate::settings::ChainSettings) -> ChainEntry {
    ChainEntry {
        provider: c.provider.clone(),
        model: c.model.clone(),
        input_price: c.input_price,
        output_price: c.output_price,
    }
}

pub struct ModelRegistry {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    default: Option<ModelConfig>,
    retry: RetryPolicy,
    timeouts: Timeouts,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, ResolvedModels)>>,
    breakers: Mutex<HashMap<String, Arc<CircuitBreaker>>>,
    /// The local model, used when neither the tenant nor the server configures a chain.
    local: Option<ChainLink>,
    /// A smaller local model for the cheap tier, with `local`.
    local_cheap: Option<ChainLink>,
}

impl ModelRegistry {
    pub fn new(store: Arc<dyn Store>, l: &LlmSettings) -> Self {
        Self {
            store,
            client: kefu_llm_openai::http_client(Duration::from_millis(l.connect_timeout_ms)),
            default: default_model_config(l),
            retry: RetryPolicy {
                max_attempts: l.retry_max_attempts,
                base_delay: Duration::from_millis(l.retry_base_delay_ms),
                max_delay: Duration::from_millis(l.retry_max_delay_ms),
                max_retry_after: Duration::from_secs(l.max_retry_after_secs),
            },
            timeouts: timeouts(l),
            breaker_threshold: l.breaker_threshold,
            breaker_cooldown: Duration::from_secs(l.breaker_cooldown_secs),
            cache_ttl: Duration::from_secs(l.config_cache_secs),
            cache: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            local: None,
            local_cheap: None,
        }
    }

    /// Answers with this local model when no chain is configured.
    pub fn with_local(mut self, chat: Arc<dyn kefu_llm::ChatModel>, label: &str) -> Self {
        let breaker = self.breaker(chat.name());
        self.local = Some(ChainLink {
            provider: chat,
            model: label.to_owned(),
            breaker,
        });
        self
    }

    /// Answers the cheap tier's turns with this smaller local model (when the local model answers).
    pub fn with_local_cheap(mut self, chat: Arc<dyn kefu_llm::ChatModel>, label: &str) -> Self {
        let breaker = self.breaker(chat.name());
        self.local_cheap = Some(ChainLink {
            provider: chat,
            model: label.to_owned(),
            breaker,
        });
        self
    }

    fn breaker(&self, base_url: &str) -> Arc<CircuitBreaker> {
        self.breakers
            .lock()
            .entry(base_url.trim_end_matches('/').to_owned())
            .or_insert_with(|| {
                Arc::new(CircuitBreaker::new(
                    self.breaker_threshold,
                    self.breaker_cooldown,
                ))
            })
            .clone()
    }

    fn build(&self, cfg: &ModelConfig) -> ResolvedModels {
        let mut prices = HashMap::new();
        let main = self.links(cfg, &cfg.chain, &mut prices);
        let cheap = (!cfg.cheap_chain.is_empty()).then(|| {
            Arc::new(FallbackChain::new(
                self.links(cfg, &cfg.cheap_chain, &mut prices),
                self.retry.clone(),
            ))
        });
        ResolvedModels {
            chain: Arc::new(FallbackChain::new(main, self.retry.clone())),
            cheap,
            params: GenerationParams {
                temperature: cfg.temperature,
                max_tokens: cfg.max_tokens,
                system_prompt: cfg.system_prompt.clone(),
            },
            prices: Arc::new(prices),
        }
    }

    /// The links of one chain of `cfg` (entries naming no provider are skipped; the API refuses them), and their
    /// prices by the label the chain reports.
    fn links(
        &self,
        cfg: &ModelConfig,
        chain: &[ChainEntry],
        prices: &mut HashMap<String, kefu_llm::Price>,
    ) -> Vec<ChainLink> {
        let providers: HashMap<&str, &ProviderConfig> =
            cfg.providers.iter().map(|p| (p.name.as_str(), p)).collect();
        chain
            .iter()
            .filter_map(|entry| {
                let p = providers.get(entry.provider.as_str())?;
                let chat = OpenAiChat::new(
                    self.client.clone(),
                    OpenAiConfig {
                        base_url: p.base_url.clone(),
                        api_key: p.api_key.clone().map(SecretString::from),
                        timeouts: self.timeouts,
                    },
                );
                let link = ChainLink {
                    provider: Arc::new(chat),
                    model: entry.model.clone(),
                    breaker: self.breaker(&p.base_url),
                };
                if entry.input_price.is_some() || entry.output_price.is_some() {
                    prices.insert(
                        link.label(),
                        kefu_llm::Price {
                            input: entry.input_price.unwrap_or(0.0),
                            output: entry.output_price.unwrap_or(0.0),
                        },
                    );
                }
                Some(link)
            })
            .collect()
    }
}

pub fn timeouts(l: &LlmSettings) -> Timeouts {
    Timeouts {
        first_token: Duration::from_millis(l.first_token_timeout_ms),
        idle: Duration::from_millis(l.idle_timeout_ms),
        total: Duration::from_millis(l.total_timeout_ms),
    }
}

#[async_trait]
impl ModelDirectory for ModelRegistry {
    async fn resolve(&self, tenant: &str) -> Result<ResolvedModels, LlmError> {
        if let Some((at, r)) = self.cache.lock().get(tenant) {
            if at.elapsed() < self.cache_ttl {
                return Ok(r.clone());
            }
        }
        let id = Uuid::parse_str(tenant).map_err(|_| LlmError::NotConfigured)?;
        let t = self
            .store
            .get_tenant(id)
            .await
            .map_err(|e| LlmError::Connect(format!("tenant settings unavailable: {e}")))?
            .ok_or(LlmError::NotConfigured)?;
        let own = t.model_config.and_then(|v| match serde_json::from_value::<ModelConfig>(v) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(tenant_id = %id, error = %e, "stored model setup is unreadable; using the default");
                None
            }
        });
        let resolved = match own.or_else(|| self.default.clone()) {
            Some(cfg) => self.build(&cfg),
            None => match &self.local {
                Some(link) => {
                    let chain = |l: &ChainLink| {
                        Arc::new(FallbackChain::new(vec![l.clone()], self.retry.clone()))
                    };
                    ResolvedModels {
                        cheap: self.local_cheap.as_ref().map(chain),
                        ..ResolvedModels::single(chain(link), GenerationParams::default())
                    }
                }
                None => return Err(LlmError::NotConfigured),
            },
        };
        self.cache
            .lock()
            .insert(tenant.to_owned(), (Instant::now(), resolved.clone()));
        Ok(resolved)
    }

    fn invalidate(&self, tenant: &str) {
        self.cache.lock().remove(tenant);
    }
}
