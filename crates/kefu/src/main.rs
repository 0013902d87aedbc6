//! `kefu`: the command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;

use kefu::{Application, Overrides, Settings};

#[derive(Parser)]
#[command(
    name = "kefu",
    version,
    about = "Self-hosted LLM customer service (客服)"
)]
struct Cli {
    /// Configuration file (TOML), layered over the built-in defaults.
    #[arg(long, global = true, env = "KEFU_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        bind: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Manage tenants directly in the database.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Local models: fetch them, see what is installed.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Knowledge base: import files, search, recompute vectors.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// Intent classifiers: train, list versions, choose one, try it.
    Nlu {
        #[command(subcommand)]
        command: NluCommand,
    },
    /// Measure quality on public datasets.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Import files and folders (Markdown, HTML, PDF, text, FAQ CSV/JSON). Re-importing replaces what changed.
    Import {
        /// Files or folders (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Tenant slug (default: the first-start tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "default")]
        collection: String,
        /// Tags for every imported chunk, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Search as the engine does and show citations and the score breakdown.
    Search {
        query: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Compute missing or outdated vectors for the configured embedder (after changing models.embedder) and check
    /// that the index builds. Running servers apply the new vectors from the change log.
    Reindex {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum NluCommand {
    /// Train an intent classifier from labelled examples (CSV `text,intent`, JSON or JSON lines), store it in the
    /// database as the tenant's next version and put it in use (running servers switch within seconds).
    Train {
        #[arg(long)]
        data: PathBuf,
        /// Tenant slug (default: the first-start tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Sentence encoders whose embeddings join the features (default: models.embedder; `none` for n-grams only).
        #[arg(long, value_delimiter = ',')]
        encoders: Vec<String>,
        /// Training settings as JSON, merged over the defaults.
        #[arg(long)]
        train_config: Option<String>,
        /// Store the new version without putting it in use.
        #[arg(long)]
        keep_current: bool,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Stored versions, with the one in use marked.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Put a stored version in use (`none`: answer without intents).
    Use {
        version: String,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print what a conversation's turn records of each message: language, masked PII, intent (by the version in
    /// use or a given one; none without either), emotion, moderation, injection score.
    Predict {
        texts: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        version: Option<i32>,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Precision and recall of PII detection on a labelled JSON-lines set.
    Pii {
        #[arg(long, default_value = "eval/datasets/pii-zh-en.jsonl")]
        path: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Recall@1/5/10, MRR@10 and nDCG@10 of BM25, dense and hybrid knowledge search.
    Retrieval(kefu::eval::RetrievalArgs),
    /// Accuracy, out-of-scope recall, calibration and latency of the intent classifier on BANKING77, CLINC150 or
    /// SMP2017, trained from scratch.
    Intent(kefu::eval::IntentArgs),
    /// Polarity accuracy of the emotion lexicon and of a trained model on ChnSentiCorp or the airline tweets.
    Emotion(kefu::eval::EmotionArgs),
    /// Word-list load and scan speed, disguised-word recall (whole and streamed), false hits on clean messages,
    /// and prompt-injection precision/recall.
    Moderation(kefu::eval::ModerationArgs),
    /// Language detection accuracy per source and language (public zh/en sets, a written set of 14 other
    /// languages, short replies and code-mixed zh/en) and how often code-mixing is flagged.
    Language(kefu::eval::LanguageArgs),
    /// Answer-cache matching on labelled paraphrase pairs (BQ): per scorer, the threshold for under 1 wrong hit per
    /// 100 hits, and the hit rate it leaves, on held-out pairs.
    Cache(kefu::eval::CacheArgs),
    /// Replays scripted customer conversations against the running product (demo shop and knowledge base) and
    /// reports correct path, hand-off, grounding, flow completion, turn time and tokens.
    Conversations(kefu::eval_conversations::ConversationsArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download, assemble and verify models (default: the default chat model and embedder).
    Pull {
        /// Model names from `kefu model list`.
        names: Vec<String>,
        /// Directory whose `models/` folder receives the files.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Show the known models and which are installed.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with an admin user and an API key, and print the credentials.
    Create {
        /// URL-safe identifier, e.g. `acme`.
        slug: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        admin_email: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

/// Where the data lives; shared by every command that opens the database.
#[derive(Args)]
struct StorageArgs {
    /// Directory for the SQLite database and generated secrets.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of the embedded SQLite file.
    #[arg(long)]
    database_url: Option<String>,
}

impl StorageArgs {
    fn settings(
        self,
        config: Option<&std::path::Path>,
        bind: Option<String>,
    ) -> anyhow::Result<Settings> {
        Settings::load(
            config,
            &Overrides {
                bind,
                data_dir: self.data_dir,
                database_url: self.database_url,
            },
        )
    }
}

fn main() -> anyhow::Result<()> {
    // llama.cpp and other OpenMP engines must not spin on idle cores (see MODELS.md).
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // SAFETY-free: set before any thread is started.
        std::env::set_var("OMP_WAIT_POLICY", "passive");
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Model { command } => model_command(cli.config.as_deref(), command).await,
        Command::Kb { command } => {
            let (storage, tenant) = match &command {
                KbCommand::Import {
                    storage, tenant, ..
                }
                | KbCommand::Search {
                    storage, tenant, ..
                } => (storage, tenant.clone()),
                KbCommand::Reindex { storage } => (storage, None),
            };
            let settings = Settings::load(
                cli.config.as_deref(),
                &Overrides {
                    data_dir: storage.data_dir.clone(),
                    database_url: storage.database_url.clone(),
                    ..Default::default()
                },
            )?;
            let tenant = tenant.unwrap_or_else(|| settings.bootstrap.tenant_slug.clone());
            match command {
                KbCommand::Import {
                    paths,
                    collection,
                    tags,
                    ..
                } => kefu::kb::import(&settings, &tenant, &collection, tags, &paths).await,
                KbCommand::Search { query, k, json, .. } => {
                    kefu::kb::search(&settings, &tenant, &query, k, json).await
                }
                KbCommand::Reindex { .. } => kefu::kb::reindex(&settings).await,
            }
        }
        Command::Nlu { command } => nlu_command(cli.config.as_deref(), command).await,
        Command::Eval {
            command: EvalCommand::Pii { path, json },
        } => kefu::eval::pii(&path, json),
        Command::Eval {
            command: EvalCommand::Retrieval(args),
        } => {
            let settings = settings_with_data_dir(cli.config.as_deref(), &args.data_dir)?;
            kefu::eval::retrieval(settings, args).await
        }
        Command::Eval {
            command: EvalCommand::Intent(args),
        } => {
            let settings = settings_with_data_dir(cli.config.as_deref(), &args.data_dir)?;
            kefu::eval::intent(settings, args).await
        }
        Command::Eval {
            command: EvalCommand::Emotion(args),
        } => {
            let settings = settings_with_data_dir(cli.config.as_deref(), &args.data_dir)?;
            kefu::eval::emotion(settings, args).await
        }
        Command::Eval {
            command: EvalCommand::Moderation(args),
        } => kefu::eval::moderation(args),
        Command::Eval {
            command: EvalCommand::Language(args),
        } => kefu::eval::language(args),
        Command::Eval {
            command: EvalCommand::Conversations(args),
        } => {
            let settings = settings_with_data_dir(cli.config.as_deref(), &args.data_dir)?;
            kefu::eval_conversations::run(settings, args).await
        }
        Command::Eval {
            command: EvalCommand::Cache(args),
        } => {
            let settings = settings_with_data_dir(cli.config.as_deref(), &args.data_dir)?;
            kefu::eval::cache(settings, args).await
        }
        Command::Openapi => {
            println!("{}", kefu_api::openapi::document_json());
            Ok(())
        }
        Command::Serve { bind, storage } => {
            let settings = storage.settings(cli.config.as_deref(), bind)?;
            kefu::telemetry::init(&settings.log);
            let demo = settings.demo.shop;
            let data_dir = settings.server.data_dir.clone();
            let tenant = settings.bootstrap.tenant_slug.clone();
            let app = Application::build(settings).await?;
            if let Some(f) = &app.bootstrap_file {
                println!("First start: created the first tenant; its admin password and API key are in {}", f.display());
            }
            if demo {
                print_demo_urls(app.local_addr(), &tenant, &data_dir);
            }
            tracing::info!(addr = %app.local_addr(), "kefu listening");
            app.run_until(kefu::app::shutdown_signal()).await
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    slug,
                    name,
                    admin_email,
                    storage,
                },
        } => {
            let settings = storage.settings(cli.config.as_deref(), None)?;
            let store = kefu_store_sql::connect(&settings.database_url(), 2)
                .await
                .context("opening the database")?;
            let created = kefu::bootstrap::create_tenant(
                store.as_ref(),
                &slug,
                name.as_deref().unwrap_or(&slug),
                &admin_email,
                None,
            )
            .await?;
            println!("KEFU_TENANT={}", created.slug);
            println!("KEFU_ADMIN_EMAIL={}", created.admin_email);
            println!(
                "KEFU_ADMIN_PASSWORD={}",
                created.admin_password.expose_secret()
            );
            println!("KEFU_API_KEY={}", created.api_key.expose_secret());
            Ok(())
        }
    }
}

/// An indicatif bar with bytes, speed and ETA.
struct Bar(indicatif::ProgressBar);

impl kefu_models::Progress for Bar {
    fn begin(&self, label: &str, total: Option<u64>) {
        self.0.reset();
        self.0.set_length(total.unwrap_or(0));
        self.0.set_position(0);
        self.0.set_message(label.to_owned());
    }
    fn inc(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn note(&self, message: &str) {
        kefu::progress::say(&self.0, format!("  {message}"));
    }
    fn end(&self) {
        kefu::progress::say(&self.0, format!("  {} verified", self.0.message()));
    }
}

async fn model_command(
    config: Option<&std::path::Path>,
    command: ModelCommand,
) -> anyhow::Result<()> {
    let data_dir = match &command {
        ModelCommand::Pull { data_dir, .. } | ModelCommand::List { data_dir } => data_dir.clone(),
    };
    let settings = settings_with_data_dir(config, &data_dir)?;
    let dir = settings.models_dir();
    let manifest = kefu_models::manifest();
    match command {
        ModelCommand::List { .. } => {
            println!(
                "{:<14} {:<10} {:>9}  {:<10} description",
                "name", "kind", "size", "status"
            );
            for m in &manifest {
                let status = if kefu_models::installed(m, &dir).is_some() {
                    "installed"
                } else {
                    "-"
                };
                let size = m
                    .total_size()
                    .map(|b| format!("{:.0} MB", b as f64 / 1e6))
                    .unwrap_or_else(|| "?".into());
                let kind = format!("{:?}", m.kind).to_lowercase();
                let default = if m.default { " [default]" } else { "" };
                println!(
                    "{:<14} {:<10} {:>9}  {:<10} {}{default}",
                    m.name, kind, size, status, m.description
                );
            }
            println!("\nmodels directory: {}", dir.display());
            Ok(())
        }
        ModelCommand::Pull { names, .. } => {
            let wanted: Vec<&kefu_models::ModelSpec> = if names.is_empty() {
                manifest.iter().filter(|m| m.default).collect()
            } else {
                names
                    .iter()
                    .map(|n| {
                        manifest
                            .iter()
                            .find(|m| &m.name == n)
                            .ok_or_else(|| kefu_models::ModelError::UnknownModel(n.clone()))
                    })
                    .collect::<Result<_, _>>()?
            };
            let opts = kefu_models::PullOptions::new(settings.models.index_url.clone(), &dir);
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:40} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            let bar = Bar(bar);
            for spec in wanted {
                let paths = kefu_models::pull(spec, &opts, &bar).await?;
                for p in paths {
                    println!("{}: {}", spec.name, p.display());
                }
            }
            bar.0.finish_and_clear();
            Ok(())
        }
    }
}

async fn nlu_command(config: Option<&std::path::Path>, command: NluCommand) -> anyhow::Result<()> {
    let (storage, tenant) = match &command {
        NluCommand::Train {
            storage, tenant, ..
        }
        | NluCommand::List { storage, tenant }
        | NluCommand::Use {
            storage, tenant, ..
        }
        | NluCommand::Predict {
            storage, tenant, ..
        } => (storage, tenant.clone()),
    };
    let settings = Settings::load(
        config,
        &Overrides {
            data_dir: storage.data_dir.clone(),
            database_url: storage.database_url.clone(),
            ..Default::default()
        },
    )?;
    let store = kefu_store_sql::connect(&settings.database_url(), 2)
        .await
        .context("opening the database")?;
    let slug = tenant.unwrap_or_else(|| settings.bootstrap.tenant_slug.clone());
    let tenant = kefu::kb::tenant_id(store.as_ref(), &slug).await?;
    match command {
        NluCommand::Train {
            data,
            encoders,
            train_config,
            keep_current,
            ..
        } => {
            let bytes =
                std::fs::read(&data).with_context(|| format!("reading {}", data.display()))?;
            let name = data
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let examples = kefu_nlu::intent::parse_examples(&name, &bytes)?;
            let encoders = kefu::eval::load_encoders(&settings, &encoders).await?;
            let started = std::time::Instant::now();
            let req = kefu_engine::intents::TrainRequest {
                examples,
                encoders,
                config: kefu::eval::train_config(train_config.as_deref())?,
                created_by: None,
                activate: !keep_current,
            };
            let (record, i) =
                kefu_engine::intents::train_and_store(store.as_ref(), tenant, req).await?;
            println!(
                "trained version {} for tenant {slug} in {:.1} s: {} examples, {} intents{}, encoders {:?}{}",
                record.version,
                started.elapsed().as_secs_f64(),
                i.examples,
                i.labels.len(),
                i.out_of_scope_label.as_ref().map_or(String::new(), |l| format!(" (out of scope: {l})")),
                i.encoders.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
                if keep_current { "" } else { "; now in use" }
            );
            println!(
                "held-out accuracy {:.1} %{}; out-of-scope threshold {:.3}",
                100.0 * i.calibration_accuracy.unwrap_or(0.0),
                i.calibration_oos_recall.map_or(String::new(), |r| format!(
                    ", out-of-scope recall {:.1} %",
                    100.0 * r
                )),
                i.threshold
            );
            Ok(())
        }
        NluCommand::List { .. } => {
            let current = store.get_tenant(tenant).await?.and_then(|t| t.intent_model);
            for m in store.list_intent_models(tenant).await? {
                let i: kefu_nlu::intent::ModelInfo = serde_json::from_value(m.info)?;
                println!(
                    "{} v{}: {} intents, {} examples, encoders {:?}, {} KB, {}",
                    if Some(m.version) == current { "*" } else { " " },
                    m.version,
                    i.labels.len(),
                    i.examples,
                    i.encoders.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
                    m.bytes / 1024,
                    m.created_at.format("%Y-%m-%d %H:%M")
                );
            }
            Ok(())
        }
        NluCommand::Use { version, .. } => {
            let v = match version.as_str() {
                "none" => None,
                v => Some(
                    v.trim_start_matches('v')
                        .parse::<i32>()
                        .context("a version number or `none`")?,
                ),
            };
            store
                .set_intent_model(tenant, v)
                .await
                .map_err(|e| match e {
                    kefu_store::StoreError::NotFound => {
                        anyhow::anyhow!("tenant {slug} has no version {version}")
                    }
                    e => e.into(),
                })?;
            println!("tenant {slug} now uses intent model {version}");
            Ok(())
        }
        NluCommand::Predict { texts, version, .. } => {
            // The server's set-up (word list, embedder, polarity anchors), so this prints what a turn records.
            let server = kefu::local::prepare_embedder(&settings).await.encoder;
            let encoders = std::sync::Arc::new(kefu::nlu::Encoders::new(&settings, server.clone()));
            let understanding = kefu::nlu::TenantUnderstanding::for_server(
                &settings,
                store,
                encoders,
                server.clone(),
            )
            .await?;
            // Without a model in use the rest of the step still runs, as in a conversation.
            let (u, version) = understanding
                .with_version(tenant, version)
                .await
                .with_context(|| format!("tenant {slug}"))?;
            let label = version.map_or_else(|| "no-intent-model".to_owned(), |v| format!("v{v}"));
            for t in texts {
                let r = kefu::nlu::understand_as_a_turn(&u, server.as_deref(), &t)?;
                println!("{label} {}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
    }
}

/// Settings from the config file and environment, with `--data-dir` over them when given.
fn settings_with_data_dir(
    config: Option<&std::path::Path>,
    data_dir: &Option<PathBuf>,
) -> anyhow::Result<Settings> {
    Settings::load(
        config,
        &Overrides {
            data_dir: data_dir.clone(),
            ..Default::default()
        },
    )
}

/// Where to play the customer and the agent, with the demo agent's sign-in (from the first start's credentials).
fn print_demo_urls(addr: std::net::SocketAddr, tenant: &str, data_dir: &std::path::Path) {
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let creds = std::fs::read_to_string(data_dir.join("bootstrap.env")).unwrap_or_default();
    let get = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_owned)
    };
    println!("Demo shop with the chat widget: http://{host}/demo/   (English: http://{host}/demo/?lang=en)");
    println!("Agent console:                  http://{host}/console/");
    match (
        get("KEFU_DEMO_AGENT_EMAIL"),
        get("KEFU_DEMO_AGENT_PASSWORD"),
    ) {
        (Some(email), Some(pw)) => {
            println!("  sign in with tenant {tenant}, email {email}, password {pw}")
        }
        _ => println!(
            "  sign in with tenant {tenant} and a staff account (the admin's is in {})",
            data_dir.join("bootstrap.env").display()
        ),
    }
}
