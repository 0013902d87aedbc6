//! The composition root: builds every part from the settings, picks the concrete backends, serves, shuts down.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use kefu_api::{ApiSettings, AppState, RateLimitSettings, RateLimits, TokenKeys};
use kefu_engine::{Engine, EngineSettings};
use kefu_llm::ModelDirectory;
use kefu_store::Store;

use crate::models::{default_model_config, timeouts, ModelRegistry};
use crate::settings::Settings;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    grace: Duration,
    /// Where first-start credentials were written, when this start created the first tenant.
    pub bootstrap_file: Option<std::path::PathBuf>,
    /// The local embedding model, when one is configured and loaded (knowledge-base search uses it).
    pub embedder: Option<Arc<dyn kefu_llm::Embedder>>,
    /// The knowledge base with this node's search index.
    pub knowledge: Arc<kefu_knowledge::Knowledge>,
    knowledge_stop: tokio_util::sync::CancellationToken,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let data_dir = settings.server.data_dir.clone();
        let url = settings.database_url();
        let store = kefu_store_sql::connect(&url, settings.database.max_connections)
            .await
            .with_context(|| format!("opening the database ({})", redact_url(&url)))?;
        let bootstrap_file = crate::bootstrap::first_start(
            store.as_ref(),
            &settings.bootstrap,
            &data_dir,
            settings.demo.shop,
        )
        .await?;
        let secret = crate::bootstrap::jwt_secret(settings.auth.jwt_secret.as_ref(), &data_dir)?;

        let mut registry = ModelRegistry::new(store.clone(), &settings.llm);
        let mut model_checks = Vec::new();
        if settings.llm.chain.is_empty() {
            // Zero configuration: answer with the local model.
            let local = crate::local::prepare(&settings).await;
            model_checks.extend(local.check);
            if !settings.models.cheap_chat.trim().is_empty() {
                let cheap =
                    crate::local::prepare_chat(&settings, &settings.models.cheap_chat).await;
                model_checks.extend(cheap.check);
                if let Some(chat) = cheap.chat {
                    registry = registry.with_local_cheap(chat, &cheap.label);
                }
            }
            match local.chat {
                Some(chat) => registry = registry.with_local(chat, &local.label),
                None => tracing::warn!(
                    "no model available: tenants without their own setup get the fallback reply. Pull the local \
                     model, or configure [[llm.providers]] and [[llm.chain]], or PUT /v1/admin/model-config"
                ),
            }
        }
        let embedding = crate::local::prepare_embedder(&settings).await;
        model_checks.extend(embedding.check);
        let knowledge = Arc::new(
            kefu_knowledge::Knowledge::new(
                store.clone(),
                embedding.embedder.clone(),
                settings.knowledge_options(),
            )
            .context("creating the knowledge index")?,
        );
        let knowledge_stop = tokio_util::sync::CancellationToken::new();
        knowledge
            .start(knowledge_stop.clone())
            .await
            .context("building the knowledge index")?;
        let encoders = Arc::new(crate::nlu::Encoders::new(
            &settings,
            embedding.encoder.clone(),
        ));
        let understanding = Arc::new(
            crate::nlu::TenantUnderstanding::for_server(
                &settings,
                store.clone(),
                encoders.clone(),
                embedding.encoder.clone(),
            )
            .await?,
        );
        if bootstrap_file.is_some() && settings.demo.shop {
            seed_demo_knowledge(store.as_ref(), &knowledge, &settings.bootstrap.tenant_slug)
                .await?;
            seed_demo_intents(store.as_ref(), &encoders, &settings.bootstrap.tenant_slug).await;
        }
        let models: Arc<dyn ModelDirectory> = Arc::new(registry);
        let mut engine_settings = EngineSettings {
            history_max_messages: settings.engine.history_max_messages,
            history_token_budget: settings.engine.history_token_budget,
            turn_timeout: Duration::from_secs(settings.engine.turn_timeout_secs),
            timeouts: timeouts(&settings.llm),
            ..EngineSettings::default()
        };
        if let Some(p) = &settings.engine.system_prompt {
            engine_settings.default_system_prompt = p.clone();
        }
        // Bound before the engine is built: the demo shop's tools call this server's own address.
        let addr = settings.bind_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        // A fresh token per start: only this process's tools know it.
        let shop = if settings.demo.shop {
            let token = kefu_api::auth::random_secret();
            let shop = kefu_shop::Shop::open(Some(&data_dir.join("demo-shop.json")), token.clone())
                .context("opening the demo shop")?;
            Some((shop, token))
        } else {
            None
        };
        let business = load_business(&settings, shop.as_ref().map(|(_, t)| t.as_str()), port)?;
        let parts = kefu_engine::EngineParts {
            understanding,
            knowledge: Some(knowledge.clone()),
            policy: settings.engine.policy.clone(),
            business,
        };
        let engine = Engine::with_parts(store.clone(), models.clone(), engine_settings, parts);
        let recovered = engine.recover_pending().await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "answering messages left pending by the previous run"
            );
        }

        let l = &settings.limits;
        let state = AppState {
            engine: engine.clone(),
            store: store.clone(),
            models,
            tokens: Arc::new(TokenKeys::new(
                &secret,
                Duration::from_secs(settings.auth.staff_token_ttl_secs),
                Duration::from_secs(settings.auth.customer_token_ttl_secs),
            )),
            limits: RateLimits::new(RateLimitSettings {
                per_ip_per_minute: l.per_ip_per_minute,
                per_ip_burst: l.per_ip_burst,
                per_key_per_minute: l.per_key_per_minute,
                per_key_burst: l.per_key_burst,
                trust_forwarded_for: l.trust_forwarded_for,
            }),
            settings: Arc::new(ApiSettings {
                max_body_bytes: l.max_body_bytes,
                max_message_chars: l.max_message_chars,
                max_wait: Duration::from_secs(l.max_wait_secs),
                default_model_config: default_model_config(&settings.llm),
                model_checks,
                demo: shop.as_ref().map(|(shop, _)| kefu_api::web::DemoPage {
                    tenant: settings.bootstrap.tenant_slug.clone(),
                    customers: shop
                        .snapshot()
                        .customers
                        .iter()
                        .map(|c| (c.id.clone(), format!("{} · {}", c.name, c.tier)))
                        .collect(),
                }),
                ..ApiSettings::default()
            }),
            knowledge: knowledge.clone(),
        };
        let mut router = kefu_api::router(state);
        if let Some((shop, _)) = shop {
            router = router.nest("/demo-shop/v1", kefu_shop::router(shop));
        }
        Ok(Self {
            listener,
            router,
            engine,
            store,
            grace: Duration::from_secs(settings.server.shutdown_grace_secs),
            bootstrap_file,
            embedder: embedding.embedder,
            knowledge,
            knowledge_stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Serves until `shutdown` resolves, then: stop accepting connections and messages, end streams with
    /// `server.shutdown`, let running replies finish within the grace period, cancel the rest (they are answered
    /// after the next start).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let engine = self.engine.clone();
        let grace = self.grace;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(());
        };
        let stopping = engine.clone();
        let serve = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            signal.await;
            // Ends SSE/WebSocket streams so their connections can close.
            stopping.stop_accepting();
        });
        let server = tokio::spawn(async move { serve.await });
        // The desk's housekeeping: silent agents' conversations back to the queue, automatic assignment.
        let sweeper = {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match engine.desk_sweep(kefu_store::now_ms()).await {
                        Ok((0, 0)) => {}
                        Ok((requeued, assigned)) => {
                            tracing::info!(requeued, assigned, "desk sweep")
                        }
                        Err(e) => tracing::warn!(error = %e, "desk sweep failed"),
                    }
                }
            })
        };
        let _ = stop_rx.await;
        sweeper.abort();
        // Give HTTP requests the same grace as turns; long-lived connections were ended above.
        match tokio::time::timeout(grace + Duration::from_secs(2), server).await {
            Ok(r) => r.context("server task")?.context("serving")?,
            Err(_) => tracing::warn!("connections still open after the grace period; closing"),
        }
        engine.shutdown(grace).await;
        self.knowledge_stop.cancel();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The demo knowledge base (`demo/knowledge`), built into the binary.
const DEMO_KNOWLEDGE: &[(&str, &[u8])] = &[
    (
        "faq-zh.csv",
        include_bytes!("../../../demo/knowledge/faq-zh.csv"),
    ),
    (
        "shipping.md",
        include_bytes!("../../../demo/knowledge/shipping.md"),
    ),
    (
        "退货与退款.md",
        include_bytes!("../../../demo/knowledge/退货与退款.md"),
    ),
];

/// On the first start with the demo on, the first tenant gets the demo knowledge base (collection `help`), so the
/// demo answers shop questions at once. Later starts leave the knowledge base to its admins.
async fn seed_demo_knowledge(
    store: &dyn Store,
    knowledge: &kefu_knowledge::Knowledge,
    slug: &str,
) -> anyhow::Result<()> {
    let Some(tenant) = store.get_tenant_by_slug(slug).await? else {
        return Ok(());
    };
    let target = kefu_knowledge::service::ImportTarget {
        tenant: tenant.id,
        collection: "help".into(),
        tags: Vec::new(),
    };
    for (source, bytes) in DEMO_KNOWLEDGE {
        let report = knowledge
            .import(
                &target,
                kefu_knowledge::service::ImportFile {
                    source: (*source).to_owned(),
                    bytes: bytes.to_vec(),
                    format: None,
                },
            )
            .await;
        tracing::info!(source, status = %report.status, "demo knowledge imported");
    }
    Ok(())
}

/// The demo shop's intents (`demo/intents/shop-intents.csv`), built into the binary.
const DEMO_INTENTS: &[u8] = include_bytes!("../../../demo/intents/shop-intents.csv");

/// On the first start with the demo on, the first tenant gets an intent classifier trained on the demo shop's
/// intents with the server's embedder (seconds), so intent-based hand-off and team rules and the cheap model tier
/// work at once. A failure is logged: the demo then answers without intents.
async fn seed_demo_intents(store: &dyn Store, encoders: &crate::nlu::Encoders, slug: &str) {
    let result = async {
        let Some(tenant) = store.get_tenant_by_slug(slug).await? else {
            return Ok(());
        };
        let examples = kefu_nlu::intent::parse_examples("shop-intents.csv", DEMO_INTENTS)?;
        let req = kefu_engine::intents::TrainRequest {
            examples,
            encoders: encoders.get(None).await?,
            config: kefu_nlu::TrainConfig::default(),
            created_by: None,
            activate: true,
        };
        let (record, info) = kefu_engine::intents::train_and_store(store, tenant.id, req).await?;
        tracing::info!(
            version = record.version,
            intents = info.labels.len(),
            encoders = ?info.encoders.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            "demo intent model trained"
        );
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %format!("{e:#}"), "the demo intent model was not trained");
    }
}

/// The demo shop's tools and flows, built into the binary.
const DEMO_BUSINESS: &str = include_str!("../../../demo/business.yaml");

/// The business set-up: the configured file, else the demo shop's when it is served, else none.
fn load_business(
    settings: &Settings,
    shop_token: Option<&str>,
    port: u16,
) -> anyhow::Result<Option<Arc<kefu_engine::ToolSet>>> {
    let mut vars = std::collections::BTreeMap::new();
    if let Some(token) = shop_token {
        vars.insert(
            "shop_url".to_owned(),
            format!("http://127.0.0.1:{port}/demo-shop/v1"),
        );
        vars.insert("shop_token".to_owned(), token.to_owned());
    }
    let (text, origin) = match (&settings.engine.business, shop_token) {
        (Some(path), _) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, Some(_)) => (DEMO_BUSINESS.to_owned(), "the demo shop".to_owned()),
        (None, None) => return Ok(None),
    };
    let transport = Arc::new(crate::tools_http::ReqwestTransport::default());
    let set = kefu_engine::ToolSet::from_yaml(&text, &vars, transport)
        .with_context(|| format!("loading tools and flows from {origin}"))?;
    tracing::info!(
        tools = set.business.tools.len(),
        flows = set.business.flows.len(),
        from = %origin,
        "business tools and flows loaded"
    );
    Ok(Some(Arc::new(set)))
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
