//! `kefu eval conversations SUITE`: replays scripted customer conversations against the whole running product
//! (the demo shop, the demo knowledge base, the engine, over HTTP) and scores what happened.
//!
//! Two models: `extractive`, a deterministic stand-in served here on an OpenAI-compatible endpoint (it answers with
//! the first sentence of passage [1] and cites it, and never calls tools, so tool arguments come from rules or the
//! fallback), and `local`, the real local chat model. Reported: correct path %, correct hand-off %, grounded % of
//! model answers, flow completion %, reply checks, p50/p99 turn time, and tokens per resolved conversation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{Application, Overrides, Settings};

#[derive(clap::Args)]
pub struct ConversationsArgs {
    /// The suite (YAML).
    #[arg(default_value = "eval/conversations/demo.yaml")]
    pub suite: PathBuf,
    /// `extractive` (deterministic, no model needed) or `local` (the local chat model from the models directory).
    #[arg(long, default_value = "extractive")]
    pub model: String,
    /// The knowledge base to import first.
    #[arg(long, default_value = "demo/knowledge")]
    pub knowledge: PathBuf,
    /// Where the local models are (default: models.dir, else the data directory's `models/`).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// The embedder for knowledge search and the answer cache (default: models.embedder; "" for none).
    #[arg(long)]
    pub embedder: Option<String>,
    /// Print every turn.
    #[arg(long)]
    pub verbose: bool,
    /// Fail unless at least 90 % of turns take the expected path, every hand-off is right and every flow that
    /// should complete does (CI).
    #[arg(long)]
    pub check: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Prices per million prompt,completion tokens of the strong (main) model, for the cost report. The defaults
    /// are examples, not any vendor's list price: pass your own.
    #[arg(long, default_value = "2,8", value_parser = parse_price)]
    pub strong_price: (f64, f64),
    /// The same for the cheap model that answers simple, confident turns (extractive stand-in only).
    #[arg(long, default_value = "0.15,0.6", value_parser = parse_price)]
    pub cheap_price: (f64, f64),
    /// With `--model local`: a second, smaller local model for the cheap tier (e.g. qwen2.5-0.5b).
    #[arg(long)]
    pub cheap_model: Option<String>,
    /// No cheap chain: every model turn goes to the strong model (to compare).
    #[arg(long)]
    pub no_routing: bool,
    /// The intent classifier: by default the demo's (trained on demo/intents/shop-intents.csv with the embedder at
    /// the first start); a labelled file to train another one through the admin API; `none` for none (then no
    /// turn is confident enough for the cheap tier).
    #[arg(long)]
    pub intents: Option<String>,
}

fn parse_price(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: give prompt,completion prices per million tokens"))?;
    let p = |x: &str| {
        x.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{x:?} is not a price"))
    };
    Ok((p(a)?, p(b)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Conversation {
    name: String,
    category: String,
    lang: String,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    handoff: bool,
    #[serde(default)]
    flow_done: Option<bool>,
    turns: Vec<Turn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Turn {
    say: String,
    /// One path, or several that are all right.
    path: OneOrMany,
    #[serde(default)]
    contains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn accepts(&self, p: &str) -> bool {
        match self {
            OneOrMany::One(x) => x == p,
            OneOrMany::Many(xs) => xs.iter().any(|x| x == p),
        }
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub suite: String,
    pub model: String,
    pub conversations: usize,
    pub turns: usize,
    pub path_correct_pct: f64,
    pub handoff_correct_pct: f64,
    pub grounded_pct: f64,
    pub model_answers: usize,
    pub flow_completion_pct: f64,
    pub flows_expected: usize,
    pub reply_checks_pct: f64,
    pub turn_ms_p50: f64,
    pub turn_ms_p99: f64,
    pub tokens_per_resolved: f64,
    pub resolved: usize,
    /// Model answers by the chain that gave them (`cheap`, `main`).
    pub model_turns_by_chain: BTreeMap<String, usize>,
    /// Generation time (ms, the model's own work: tool arguments and the answer) summed by chain.
    pub generate_ms_by_chain: BTreeMap<String, f64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Answers reused from the cache, and the tokens those saved.
    pub cache_hits: usize,
    pub tokens_saved: i64,
    /// What the model calls cost (each turn's recorded cost), and what the same work would have cost on the strong
    /// model alone with no cache (the saved tokens priced with this run's prompt/completion mix).
    pub cost: f64,
    pub cost_strong_no_cache: f64,
    pub by_category: BTreeMap<String, (usize, usize)>,
    /// Median turn time (ms) per path taken.
    pub p50_ms_by_path: BTreeMap<String, f64>,
    pub misses: Vec<String>,
    /// Model answers held back by the grounding check: the question, the rejected answer, the unsupported figures.
    pub unsure: Vec<String>,
}

pub async fn run(settings: Settings, args: ConversationsArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.suite)
        .with_context(|| format!("reading {}", args.suite.display()))?;
    let suite: Vec<Conversation> = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {}", args.suite.display()))?;
    if suite.is_empty() {
        bail!("{} holds no conversations", args.suite.display());
    }
    let work = std::env::temp_dir().join(format!("kefu-eval-conv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let dir = args
        .models_dir
        .clone()
        .or(settings.models.dir.clone())
        .unwrap_or_else(|| settings.server.data_dir.join("models"));
    let embedder = args
        .embedder
        .clone()
        .unwrap_or_else(|| settings.models.embedder.clone());
    let mut models = format!(
        "dir = {:?}\nauto_pull = false\nembedder = {embedder:?}\n",
        dir.display().to_string()
    );
    let llm = match args.model.as_str() {
        "extractive" => {
            let mut llm = extractive_llm().await?;
            let (si, so) = args.strong_price;
            llm = llm.replace(
                r#"model = "extractive" }]"#,
                &format!(r#"model = "extractive", input_price = {si}, output_price = {so} }}]"#),
            );
            if !args.no_routing {
                let (ci, co) = args.cheap_price;
                llm.push_str(&format!(
                    "\ncheap_chain = [{{ provider = \"extractive\", model = \"extractive-cheap\", \
                     input_price = {ci}, output_price = {co} }}]"
                ));
            }
            llm
        }
        "local" => {
            models.push_str(&format!("chat = {:?}\n", settings.models.chat));
            if let Some(cheap) = &args.cheap_model {
                models.push_str(&format!("cheap_chat = {cheap:?}\n"));
            }
            String::new()
        }
        other => bail!("unknown model {other:?}: extractive or local"),
    };
    let demo = DemoApp::start(&work, &llm, &models, "eval", 300).await?;
    let base = demo.base.clone();
    let result = replay(&base, &work, &args, &suite).await;
    demo.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    print_report(&report, args.json)?;
    if args.check
        && (report.path_correct_pct < 90.0
            || report.handoff_correct_pct < 100.0
            || report.flow_completion_pct < 100.0)
    {
        bail!(
            "below the bar: path {:.1} % (min 90), hand-off {:.1} % (100), flows {:.1} % (100)",
            report.path_correct_pct,
            report.handoff_correct_pct,
            report.flow_completion_pct
        );
    }
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }
}

async fn replay(
    base: &str,
    work: &Path,
    args: &ConversationsArgs,
    suite: &[Conversation],
) -> anyhow::Result<Report> {
    let c = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?,
        base: base.to_owned(),
    };
    let env = std::fs::read_to_string(work.join("bootstrap.env"))?;
    let api_key = env
        .lines()
        .find_map(|l| l.strip_prefix("KEFU_API_KEY="))
        .context("no API key in bootstrap.env")?
        .trim_matches('"')
        .to_owned();
    let login = c
        .call(
            reqwest::Method::POST,
            "/v1/auth/login",
            "",
            Some(json!({"tenant": "eval", "email": "admin@eval.test", "password": "eval-password-123"})),
        )
        .await?;
    let admin = login["access_token"].as_str().context("login")?.to_owned();
    match args.intents.as_deref() {
        None => {}
        Some("none") => {
            c.call(
                reqwest::Method::PUT,
                "/v1/admin/intent-models/current",
                &admin,
                Some(json!({ "version": null })),
            )
            .await?;
        }
        Some(path) => {
            let data = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
            let format = match Path::new(path).extension().and_then(|e| e.to_str()) {
                Some("json") => "json",
                Some("jsonl") => "jsonl",
                _ => "csv",
            };
            c.call(
                reqwest::Method::POST,
                "/v1/admin/intent-models",
                &admin,
                Some(json!({ "data": data, "format": format })),
            )
            .await?;
        }
    }
    // The knowledge base, one file at a time.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.knowledge)
        .with_context(|| format!("reading {}", args.knowledge.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in &files {
        let content = std::fs::read_to_string(f)?;
        let source = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        c.call(
            reqwest::Method::POST,
            "/v1/admin/kb/imports",
            &admin,
            Some(json!({"collection": "help", "files": [{"source": source, "content": content}]})),
        )
        .await?;
    }

    let mut r = Report {
        suite: args.suite.display().to_string(),
        model: args.model.clone(),
        conversations: suite.len(),
        ..Default::default()
    };
    let (mut path_ok, mut handoff_ok, mut grounded, mut checks, mut checks_ok) = (0, 0, 0, 0, 0);
    let (mut flows_done, mut tokens_resolved) = (0usize, 0i64);
    let mut times = Vec::new();
    let mut by_path: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for conv in suite {
        let token = match &conv.customer {
            Some(_) => api_key.clone(),
            None => {
                let s = c
                    .call(
                        reqwest::Method::POST,
                        "/v1/customer-sessions",
                        "",
                        Some(json!({"tenant": "eval"})),
                    )
                    .await?;
                s["access_token"]
                    .as_str()
                    .context("customer session")?
                    .to_owned()
            }
        };
        let body = match &conv.customer {
            Some(id) => json!({"customer_external_id": id}),
            None => json!({}),
        };
        let created = c
            .call(
                reqwest::Method::POST,
                "/v1/conversations",
                &token,
                Some(body),
            )
            .await?;
        let id = created["id"]
            .as_str()
            .context("conversation id")?
            .to_owned();
        let mut replies = Vec::new();
        let mut conv_times = Vec::new();
        for t in &conv.turns {
            let started = Instant::now();
            let v = c
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/conversations/{id}/messages?wait=true"),
                    &token,
                    Some(json!({"content": t.say})),
                )
                .await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            times.push(ms);
            conv_times.push(ms);
            replies.push(
                v["reply"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        let turns: Vec<Value> = serde_json::from_value(
            c.call(
                reqwest::Method::GET,
                &format!("/v1/conversations/{id}/turns"),
                &admin,
                None,
            )
            .await?,
        )?;
        let traces: Vec<&Value> = turns.iter().map(|t| &t["trace"]).collect();
        let entry = r.by_category.entry(conv.category.clone()).or_default();
        let mut handed_off = false;
        let mut conv_tokens = 0i64;
        for (i, t) in conv.turns.iter().enumerate() {
            r.turns += 1;
            entry.1 += 1;
            let trace = traces.get(i).copied().unwrap_or(&Value::Null);
            let path = trace["path"].as_str().unwrap_or("none");
            let reply = replies.get(i).map(String::as_str).unwrap_or("");
            handed_off |= path == "handoff";
            if let Some(ms) = conv_times.get(i) {
                by_path.entry(path.to_owned()).or_default().push(*ms);
            }
            let (pt, ct) = (
                trace["prompt_tokens"].as_i64().unwrap_or(0),
                trace["completion_tokens"].as_i64().unwrap_or(0),
            );
            conv_tokens += pt + ct;
            r.prompt_tokens += pt;
            r.completion_tokens += ct;
            r.cost += trace["cost"].as_f64().unwrap_or(0.0);
            if let Some(chain) = trace["chain"].as_str() {
                *r.model_turns_by_chain.entry(chain.to_owned()).or_default() += 1;
                *r.generate_ms_by_chain.entry(chain.to_owned()).or_default() +=
                    trace["stages"]["generate_ms"].as_f64().unwrap_or(0.0);
            }
            if trace["cache"]["decision"] == "hit" {
                r.cache_hits += 1;
                r.tokens_saved += trace["cache"]["tokens_saved"].as_i64().unwrap_or(0);
            }
            if trace["model"].is_string() && matches!(path, "tool" | "rag" | "chat") {
                r.model_answers += 1;
                if trace["grounded"] == true && trace["unsure"] != true {
                    grounded += 1;
                }
            }
            if trace["unsure"] == true {
                r.unsure.push(format!(
                    "{} #{}: {:?} → {:?} (unsupported: {})",
                    conv.name,
                    i + 1,
                    t.say,
                    trace["rejected_answer"].as_str().unwrap_or(""),
                    trace["unsupported"]
                ));
            }
            if t.path.accepts(path) {
                path_ok += 1;
                entry.0 += 1;
            } else {
                r.misses.push(format!(
                    "{} [{}] #{}: {:?} → {path} ({})",
                    conv.name,
                    conv.lang,
                    i + 1,
                    t.say,
                    trace["reason"].as_str().unwrap_or("")
                ));
            }
            for w in &t.contains {
                checks += 1;
                if reply.contains(w.as_str()) {
                    checks_ok += 1;
                } else {
                    r.misses.push(format!(
                        "{} #{}: reply lacks {w:?}: {reply:?}",
                        conv.name,
                        i + 1
                    ));
                }
            }
            if args.verbose {
                eprintln!(
                    "[{}] {} → {path}: {}",
                    conv.name,
                    t.say,
                    reply.replace('\n', " ")
                );
            }
        }
        if handed_off == conv.handoff {
            handoff_ok += 1;
        } else {
            r.misses.push(format!(
                "{}: hand-off {handed_off}, expected {}",
                conv.name, conv.handoff
            ));
        }
        if let Some(expected) = conv.flow_done {
            r.flows_expected += usize::from(expected);
            let done = traces.last().is_some_and(|t| t["flow"]["stage"] == "done");
            if expected && done {
                flows_done += 1;
            } else if expected != done {
                r.misses.push(format!(
                    "{}: flow done {done}, expected {expected}",
                    conv.name
                ));
            }
        }
        let last_unsure = traces.last().is_some_and(|t| t["unsure"] == true);
        if !handed_off && !last_unsure {
            r.resolved += 1;
            tokens_resolved += conv_tokens;
        }
    }
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    r.path_correct_pct = pct(path_ok, r.turns);
    r.handoff_correct_pct = pct(handoff_ok, suite.len());
    r.grounded_pct = pct(grounded, r.model_answers);
    r.flow_completion_pct = pct(flows_done, r.flows_expected);
    r.reply_checks_pct = pct(checks_ok, checks);
    for (path, mut ms) in by_path {
        ms.sort_by(f64::total_cmp);
        r.p50_ms_by_path.insert(path, ms[ms.len() / 2]);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    r.turn_ms_p50 = q(0.5);
    r.turn_ms_p99 = q(0.99);
    // The baseline: every token on the strong model, and the cache's saved tokens paid again (split between prompt
    // and completion as this run's were).
    let (si, so) = args.strong_price;
    let all = (r.prompt_tokens + r.completion_tokens).max(1) as f64;
    let prompt_share = r.prompt_tokens as f64 / all;
    let saved = r.tokens_saved as f64;
    r.cost_strong_no_cache = ((r.prompt_tokens as f64 + saved * prompt_share) * si
        + (r.completion_tokens as f64 + saved * (1.0 - prompt_share)) * so)
        / 1e6;
    r.tokens_per_resolved = if r.resolved == 0 {
        0.0
    } else {
        tokens_resolved as f64 / r.resolved as f64
    };
    Ok(r)
}

fn print_report(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "{}: {} conversations, {} turns, model {}",
        r.suite, r.conversations, r.turns, r.model
    );
    println!("| correct path | correct hand-off | grounded (of {} model answers) | flows completed (of {}) | reply checks | turn p50 | turn p99 | tokens / resolved conversation ({} resolved) |", r.model_answers, r.flows_expected, r.resolved);
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.0} ms | {:.0} ms | {:.0} |",
        r.path_correct_pct,
        r.handoff_correct_pct,
        r.grounded_pct,
        r.flow_completion_pct,
        r.reply_checks_pct,
        r.turn_ms_p50,
        r.turn_ms_p99,
        r.tokens_per_resolved
    );
    let chains: Vec<String> = r
        .model_turns_by_chain
        .iter()
        .map(|(c, n)| {
            let ms = r.generate_ms_by_chain.get(c).copied().unwrap_or(0.0);
            format!(
                "{c} {n} ({:.0} ms generating on average)",
                ms / (*n).max(1) as f64
            )
        })
        .collect();
    println!(
        "\nmodel answers by chain: {}; tokens {} prompt + {} completion; cache hits {} saving {} tokens",
        if chains.is_empty() { "none".to_owned() } else { chains.join(", ") },
        r.prompt_tokens,
        r.completion_tokens,
        r.cache_hits,
        r.tokens_saved
    );
    // Local models carry no prices: a cost comparison would read as "everything saved".
    if r.cost > 0.0 {
        println!(
            "cost {:.6} vs {:.6} on the strong model alone without the cache ({:.1} % saved; prices per million tokens as given)",
            r.cost,
            r.cost_strong_no_cache,
            100.0 * (1.0 - r.cost / r.cost_strong_no_cache.max(f64::MIN_POSITIVE))
        );
    }
    let paths: Vec<String> = r
        .p50_ms_by_path
        .iter()
        .map(|(p, ms)| format!("{p} {ms:.0} ms"))
        .collect();
    println!("\nmedian turn time by path: {}", paths.join(", "));
    println!("\nby category (correct path / turns):");
    for (k, (ok, n)) in &r.by_category {
        println!("  {k}: {ok}/{n}");
    }
    if !r.misses.is_empty() {
        println!("\nmisses:");
        for m in &r.misses {
            println!("  {m}");
        }
    }
    if !r.unsure.is_empty() {
        println!("\nanswers held back as unsure:");
        for m in &r.unsure {
            println!("  {m}");
        }
    }
    Ok(())
}

/// The whole application with the demo shop and its knowledge base on a scratch directory (SQLite), for the
/// conversation eval and the browser tests. `llm` and `models` are the bodies of the `[llm]` and `[models]` tables.
pub struct DemoApp {
    pub base: String,
    pub data_dir: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl DemoApp {
    pub async fn start(
        work: &std::path::Path,
        llm: &str,
        models: &str,
        tenant: &str,
        max_wait_secs: u64,
    ) -> anyhow::Result<DemoApp> {
        let config = work.join("demo.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
bind = "127.0.0.1:0"
shutdown_grace_secs = 2
[database]
url = "sqlite://{}?mode=rwc"
[limits]
per_ip_per_minute = 1000000
per_ip_burst = 1000000
per_key_per_minute = 1000000
per_key_burst = 1000000
max_wait_secs = {max_wait_secs}
[llm]
{llm}
[models]
{models}
[demo]
shop = true
[bootstrap]
tenant_slug = "{tenant}"
admin_email = "admin@{tenant}.test"
admin_password = "{tenant}-password-123"
[log]
filter = "error"
"#,
                work.join("kefu.db").display()
            ),
        )?;
        let overrides = Overrides {
            data_dir: Some(work.to_owned()),
            ..Default::default()
        };
        let app_settings = Settings::load_files(&[config.as_path()], &overrides)?;
        let app = Application::build(app_settings).await?;
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Ok(DemoApp {
            base,
            data_dir: work.to_owned(),
            stop,
            server,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Serves the extractive stand-in model and returns the `[llm]` table that points kefu at it.
pub async fn extractive_llm() -> anyhow::Result<String> {
    let addr = serve_extractive().await?;
    Ok(format!(
        r#"providers = [{{ name = "extractive", base_url = "http://{addr}/v1" }}]
chain = [{{ provider = "extractive", model = "extractive" }}]"#
    ))
}

/// The deterministic stand-in model: the first sentence of passage [1] with its citation; without passages a short
/// "not sure"; never a tool call; `{"choice":"none"}` when asked for JSON. The answer arrives in several chunks, as
/// a real model's would.
pub async fn serve_extractive() -> anyhow::Result<std::net::SocketAddr> {
    use axum::routing::post;
    let app = axum::Router::new().route("/v1/chat/completions", post(extractive));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn extractive(axum::Json(body): axum::Json<Value>) -> axum::response::Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let system = messages
        .first()
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let answer = if body.get("response_format").is_some() {
        r#"{"choice":"none"}"#.to_owned()
    } else if body
        .get("tools")
        .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()))
    {
        "{}".to_owned()
    } else {
        extract_answer(&system, &last_user)
    };
    let prompt_tokens: usize = messages
        .iter()
        .map(|m| estimate_tokens(m["content"].as_str().unwrap_or("")))
        .sum();
    let completion = estimate_tokens(&answer);
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "extractive",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut out = String::new();
    let chars: Vec<char> = answer.chars().collect();
    let pieces = chars.chunks(8).map(|c| {
        chunk(
            json!({"content": c.iter().collect::<String>()}),
            Value::Null,
        )
    });
    for v in std::iter::once(chunk(json!({"role": "assistant", "content": ""}), Value::Null))
        .chain(pieces)
        .chain([
        chunk(json!({}), json!("stop")),
        json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "extractive", "choices": [],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                         "total_tokens": prompt_tokens + completion}}),
    ]) {
        out.push_str(&format!("data: {v}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(out))
        .expect("a response")
}

fn extract_answer(system: &str, question: &str) -> String {
    let zh = kefu_engine::prompt::looks_chinese(question);
    let passage = system
        .lines()
        .find_map(|l| l.strip_prefix("[1] ("))
        .and_then(|rest| rest.split_once(") ").map(|(_, text)| text));
    match passage {
        Some(text) => {
            let end = text
                .char_indices()
                .find(|(_, c)| matches!(c, '。' | '！' | '？'))
                .map(|(i, c)| i + c.len_utf8())
                .or_else(|| text.find(". ").map(|i| i + 1))
                .unwrap_or(text.len().min(300));
            let mut end = end.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}[1]", text[..end].trim())
        }
        None if zh => "这个问题我不太确定，需要为您转接人工客服吗？".into(),
        None => "I'm not sure about that. Shall I connect you with a colleague?".into(),
    }
}

fn estimate_tokens(s: &str) -> usize {
    let cjk = s.chars().filter(|c| kefu_nlu::text::is_cjk(*c)).count();
    cjk + (s.chars().count() - cjk) / 4
}
