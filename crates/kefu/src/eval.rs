//! `kefu eval retrieval`: Recall@1/5/10, MRR@10 and nDCG@10 of BM25, dense and hybrid ranking on a FAQ dataset.
//! `kefu eval pii`: precision and recall of PII detection on a labelled set.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use kefu_knowledge::analysis::CjkMode;
use kefu_knowledge::eval::{Dataset, DocVectors, Metrics, Prepared, Split};
use kefu_knowledge::{Fusion, IndexSettings};

use crate::Settings;

#[derive(clap::Args)]
pub struct RetrievalArgs {
    /// stackfaq, bq, shop-zh, shop-en, or a FAQ-pairs .json file.
    #[arg(long)]
    pub dataset: String,
    /// The dataset file, when not at its default place.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Embedding model name or path, or `none` for BM25 only (default: models.embedder).
    #[arg(long)]
    pub embedder: Option<String>,
    /// dev, test or all queries.
    #[arg(long, default_value = "test", value_parser = parse_split)]
    pub split: Split,
    /// Evaluate at most this many queries of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also evaluate every fusion setting of the sweep grid.
    #[arg(long)]
    pub sweep: bool,
    /// How Chinese is indexed for BM25: words, chars or words_and_chars (comma-separated to compare several).
    #[arg(long, value_parser = parse_cjk, value_delimiter = ',')]
    pub cjk: Vec<CjkMode>,
    /// BM25 weight of title (question, headings) matches relative to body matches.
    #[arg(long)]
    pub title_boost: Option<f32>,
    /// Do not embed each FAQ question and alternative on its own (the service does, unless
    /// knowledge.faq_question_vectors is off).
    #[arg(long)]
    pub no_question_vectors: bool,
    /// Embed FAQ questions (and question-only entries) as queries instead of passages (measured, not adopted:
    /// bench/RESULTS.md).
    #[arg(long)]
    pub questions_as_queries: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Exit with an error when the default hybrid ranking is worse than BM25 or dense alone (CI).
    #[arg(long)]
    pub check: bool,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn parse_split(s: &str) -> Result<Split, String> {
    Split::parse(s).ok_or_else(|| "expected dev, test or all".into())
}

fn parse_cjk(s: &str) -> Result<CjkMode, String> {
    CjkMode::parse(s).ok_or_else(|| "expected words, chars or words_and_chars".into())
}

/// Where each named dataset lives by default (relative to the repository root, or `../shared/data`).
fn default_path(name: &str) -> Option<&'static str> {
    match name {
        "stackfaq" => Some("eval/datasets/stackfaq/stackExchange-FAQ.json"),
        "shop-zh" => Some("eval/datasets/shop-faq-zh.json"),
        "shop-en" => Some("eval/datasets/shop-faq-en.json"),
        "bq" => Some("../shared/data/bq_corpus_zh/dev.tsv"),
        _ => None,
    }
}

pub fn load_dataset(name: &str, path: Option<PathBuf>) -> anyhow::Result<Dataset> {
    let path = match (path, default_path(name)) {
        (Some(p), _) => p,
        (None, Some(p)) => PathBuf::from(p),
        (None, None) if name.ends_with(".json") => PathBuf::from(name),
        (None, None) => bail!("unknown dataset {name:?}: use stackfaq, bq, shop-zh, shop-en or a FAQ-pairs .json file"),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let ds = match name {
        "stackfaq" => Dataset::stackfaq(&text)?,
        "bq" => Dataset::bq(&text)?,
        _ => {
            let label = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Dataset::faq_pairs(
                if default_path(name).is_some() {
                    name
                } else {
                    &label
                },
                &text,
            )?
        }
    };
    Ok(ds)
}

/// The fusion settings compared by `--sweep`.
pub fn sweep_grid() -> Vec<Fusion> {
    let mut grid = vec![Fusion::Bm25, Fusion::Dense];
    grid.extend([10.0, 30.0, 60.0].map(|k| Fusion::Rrf { k }));
    grid.extend([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].map(|w| Fusion::Weighted { dense_weight: w }));
    grid
}

pub async fn retrieval(mut settings: Settings, args: RetrievalArgs) -> anyhow::Result<()> {
    let full = load_dataset(&args.dataset, args.path.clone())?;
    let ds = full.select(args.split, args.limit);
    if ds.queries.is_empty() {
        bail!("the {:?} split of {} has no queries", args.split, ds.name);
    }
    if let Some(e) = &args.embedder {
        settings.models.embedder = if e == "none" {
            String::new()
        } else {
            e.clone()
        };
    }
    let configured = settings.knowledge.options();
    let embedding = crate::local::prepare_embedder(&settings).await;
    if let Some(check) = embedding.check.as_ref().filter(|c| !c.ok) {
        bail!("{}", check.detail.clone().unwrap_or_default());
    }
    let embedder = embedding.embedder;
    let mut index = IndexSettings::default();
    if let Some(c) = args.cjk.first() {
        index.cjk = *c;
    }
    if let Some(b) = args.title_boost {
        index.title_boost = b;
    }
    let started = Instant::now();
    let prepared = Prepared::new(
        &ds,
        embedder.as_deref(),
        index,
        DocVectors {
            question_vectors: configured.faq_question_vectors && !args.no_question_vectors,
            questions_as_queries: args.questions_as_queries,
        },
    )
    .await?;
    let prepare_secs = started.elapsed().as_secs_f64();

    // The configured search settings are what is measured as "default".
    let default = configured.search;
    let mut runs: Vec<(String, Fusion)> = vec![("bm25".into(), Fusion::Bm25)];
    if embedder.is_some() {
        runs.push(("dense".into(), Fusion::Dense));
        runs.push((
            format!("hybrid (default: {})", default.fusion.name()),
            default.fusion,
        ));
        if args.sweep {
            runs.extend(sweep_grid().into_iter().skip(2).map(|f| (f.name(), f)));
        }
    }
    let mut results: Vec<(String, Metrics, f64)> = Vec::new();
    let modes = if args.cjk.is_empty() {
        vec![index.cjk]
    } else {
        args.cjk.clone()
    };
    for (i, mode) in modes.iter().enumerate() {
        let this = if i == 0 {
            None
        } else {
            Some(prepared.with_settings(IndexSettings {
                cjk: *mode,
                ..index
            })?)
        };
        let p = this.as_ref().unwrap_or(&prepared);
        let suffix = if modes.len() > 1 {
            format!(" [cjk {mode:?}]")
        } else {
            String::new()
        };
        for (name, fusion) in &runs {
            let t = Instant::now();
            let m = p.evaluate(&ds, *fusion, default.candidates)?;
            let per_query_ms = t.elapsed().as_secs_f64() * 1000.0 / ds.queries.len() as f64;
            results.push((format!("{name}{suffix}"), m, per_query_ms));
        }
    }
    let embedder_id = embedder
        .as_ref()
        .map_or("none".to_owned(), |e| e.id().to_owned());
    let check = if args.check && embedder.is_some() {
        let ndcg = |i: usize| results[i].1.ndcg_at_10;
        // Rows 0, 1, 2 are bm25, dense and the default hybrid of the first tokenisation.
        let best_single = ndcg(0).max(ndcg(1));
        if ndcg(2) + 0.05 < best_single {
            Some(format!(
                "the default hybrid ranking (nDCG@10 {:.1}) is worse than the best single method ({best_single:.1})",
                ndcg(2)
            ))
        } else {
            None
        }
    } else {
        None
    };
    if args.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, m, ms)| serde_json::json!({"method": name, "metrics": m, "ms_per_query": ms}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "dataset": ds.name, "split": args.split, "queries": ds.queries.len(), "corpus": ds.docs.len(),
                "embedder": embedder_id, "cjk": index.cjk, "title_boost": index.title_boost,
                "question_vectors": configured.faq_question_vectors && !args.no_question_vectors, "results": rows,
            })
        );
        return check.map_or(Ok(()), |c| bail!(c));
    }
    println!(
        "dataset {} ({:?} split): {} queries, {} entries; embedder {embedder_id}; cjk {:?}; indexed and embedded in {prepare_secs:.1} s",
        ds.name,
        args.split,
        ds.queries.len(),
        ds.docs.len(),
        index.cjk
    );
    println!("| method | R@1 | R@5 | R@10 | MRR@10 | nDCG@10 | search ms/query |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, m, ms) in &results {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {ms:.2} |",
            m.recall_at_1, m.recall_at_5, m.recall_at_10, m.mrr_at_10, m.ndcg_at_10
        );
    }
    match check {
        Some(c) => bail!(c),
        None => Ok(()),
    }
}

pub fn pii(path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let started = Instant::now();
    let report = kefu_nlu::eval::evaluate(&kefu_nlu::PiiDetector::new(), &text)
        .map_err(anyhow::Error::msg)?;
    let per_line_us = started.elapsed().as_secs_f64() * 1e6 / report.lines.max(1) as f64;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} lines, {per_line_us:.0} µs per line",
        path.display(),
        report.lines
    );
    println!("| kind | precision | recall | TP | FP | FN |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = report
        .by_kind
        .iter()
        .map(|(k, c)| (k.as_str(), c))
        .chain([("**all**", &report.total)]);
    for (kind, c) in rows {
        println!(
            "| {kind} | {:.1} | {:.1} | {} | {} | {} |",
            c.precision(),
            c.recall(),
            c.true_positives,
            c.false_positives,
            c.false_negatives
        );
    }
    for (text, kind, value, what) in &report.mistakes {
        println!("{what}: {kind} {value:?} in {text:?}");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct IntentArgs {
    /// banking77, clinc150 or smp2017.
    #[arg(long)]
    pub dataset: String,
    /// The dataset file or folder, when not at its default place.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Evaluate on the development data (for choosing settings) instead of the test set.
    #[arg(long)]
    pub dev: bool,
    /// Sentence encoders whose embeddings join the features, comma-separated (e5-small, minilm, a path), or
    /// `none` (default: models.embedder).
    #[arg(long, value_delimiter = ',')]
    pub encoders: Vec<String>,
    /// Instead of the test set: K-fold cross-validation on the training split (top-intent accuracy per fold), for
    /// choosing settings.
    #[arg(long)]
    pub cv: Option<usize>,
    /// Training settings as JSON, merged over the defaults (e.g. '{"linear":{"c":30}}').
    #[arg(long)]
    pub train_config: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the rows it got wrong to this file, one JSON object per line (for error analysis; use it on
    /// development data with `--dev`).
    #[arg(long, conflicts_with = "cv")]
    pub errors: Option<PathBuf>,
    /// Also write every scored row (its label, the best five intents with their calibrated probabilities, the
    /// out-of-scope decision) to this file, one JSON object per line; with `--cv`, every training row as its fold's
    /// model scored it. For comparing or combining runs row by row (bench/smp2017-develop/ensemble.py).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Idle this many ms before each timed query (outside the timing), as a lightly loaded service sees its
    /// queries; 0 times them back to back.
    #[arg(long, default_value_t = 0)]
    pub gap_ms: u64,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Loads the named encoders (`none` for none; empty: the configured embedder).
pub async fn load_encoders(
    settings: &Settings,
    names: &[String],
) -> anyhow::Result<Vec<Arc<dyn kefu_nlu::SentenceEncoder>>> {
    let names: Vec<String> = if names.is_empty() {
        vec![settings.models.embedder.clone()]
    } else {
        names.to_vec()
    };
    let mut out: Vec<Arc<dyn kefu_nlu::SentenceEncoder>> = Vec::new();
    for n in names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty() && *n != "none")
    {
        out.push(crate::local::load_encoder(settings, n).await?);
    }
    Ok(out)
}

/// The encoders behind a vector cache in the data directory: (the caches, to save afterwards; the same as encoders).
fn with_cache(
    settings: &Settings,
    live: &[Arc<dyn kefu_nlu::SentenceEncoder>],
) -> (
    Vec<Arc<CachedEncoder>>,
    Vec<Arc<dyn kefu_nlu::SentenceEncoder>>,
) {
    let dir = settings.server.data_dir.join("cache");
    let cached: Vec<Arc<CachedEncoder>> = live
        .iter()
        .map(|e| Arc::new(CachedEncoder::open(e.clone(), &dir)))
        .collect();
    let as_dyn = cached
        .iter()
        .map(|c| c.clone() as Arc<dyn kefu_nlu::SentenceEncoder>)
        .collect();
    (cached, as_dyn)
}

/// Writes `rows` to `path`, one JSON object per line.
fn write_json_lines<T: serde::Serialize>(path: &std::path::Path, rows: &[T]) -> anyhow::Result<()> {
    let mut out = String::new();
    for row in rows {
        out.push_str(&serde_json::to_string(row)?);
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// The training settings: the defaults with `--train-config` (JSON) merged over them.
pub fn train_config(overrides: Option<&str>) -> anyhow::Result<kefu_nlu::TrainConfig> {
    Ok(match overrides {
        Some(o) => kefu_nlu::TrainConfig::with_overrides(
            &serde_json::from_str(o).context("--train-config is not JSON")?,
        )?,
        None => kefu_nlu::TrainConfig::default(),
    })
}

pub async fn intent(settings: Settings, args: IntentArgs) -> anyhow::Result<()> {
    use kefu_nlu::eval::intent::{load, run, IntentDataset};
    let Some(dataset) = IntentDataset::parse(&args.dataset) else {
        bail!(
            "unknown dataset {:?}: expected banking77, clinc150 or smp2017",
            args.dataset
        );
    };
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(dataset.default_path()));
    let splits = load(dataset, &path, args.dev)?;
    let live = load_encoders(&settings, &args.encoders).await?;
    let (cached, encoders) = with_cache(&settings, &live);
    let config = train_config(args.train_config.as_deref())?;
    eprintln!(
        "training on {} examples of {} ({} encoders)…",
        splits.train.len(),
        dataset.name(),
        encoders.len()
    );
    if let Some(k) = args.cv {
        let train = splits.train;
        let cv = tokio::task::spawn_blocking(move || {
            kefu_nlu::eval::intent::cross_validate(&train, k, &encoders, &config)
        })
        .await??;
        for c in &cached {
            c.save()?;
        }
        if let Some(path) = &args.predictions {
            write_json_lines(path, &cv.predictions)?;
        }
        let accuracies = cv.accuracies;
        let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        println!(
            "{} {k}-fold cross-validation on the training split: mean {mean:.2} (folds {})",
            dataset.name(),
            accuracies
                .iter()
                .map(|a| format!("{a:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let (dev, idle) = (args.dev, std::time::Duration::from_millis(args.gap_ms));
    let report = tokio::task::spawn_blocking(move || {
        run(dataset, &splits, dev, &encoders, &live, &config, idle)
    })
    .await??;
    for c in &cached {
        c.save()?;
    }
    if let Some(path) = &args.errors {
        write_json_lines(path, &report.mistakes)?;
    }
    if let Some(path) = &args.predictions {
        write_json_lines(path, &report.predictions)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} ({} split): {} train / {} test examples, {} classes, encoders {:?}",
        report.dataset,
        report.split,
        report.train_examples,
        report.test_examples,
        report.classes,
        report.encoders
    );
    println!("| accuracy | in-scope accuracy | out-of-scope recall | ECE | threshold | vote | train s | p50 ms | p99 ms | mean ms | encoder threads | model MB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {:.2} | {:.2} | {} | {:.3} | {:.3} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.1} |",
        report.accuracy,
        report.in_scope_accuracy,
        report
            .oos_recall
            .map_or("–".to_owned(), |r| format!("{r:.2}")),
        report.ece,
        report.threshold,
        report.neighbour_weight,
        report.train_seconds,
        report.latency_p50_ms,
        report.latency_p99_ms,
        report.latency_mean_ms,
        if report.encoders.is_empty() {
            "–".to_owned()
        } else {
            kefu_embed_local::threads().to_string()
        },
        report.model_bytes as f64 / 1e6
    );
    if let Some(s) = &report.first_stage {
        let f = &s.calibration;
        println!(
            "first stage: answered {:.1} % of the test rows (gate {:.3}; on the calibration rows it answered \
             {:.1} %, with {} right against {} for the full model alone)",
            s.answered_test,
            f.gate,
            100.0 * f.answered,
            f.right,
            f.right_full_model
        );
    }
    if let Some(a) = report.in_scope_accuracy_at_oos_90_on_split {
        println!(
            "diagnosis: with the threshold picked on this split itself, the best in-scope accuracy at ≥ 90 % \
             out-of-scope recall is {a:.2} (not a result: it shows what the score can separate)"
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct EmotionArgs {
    /// chnsenticorp or airline.
    #[arg(long)]
    pub dataset: String,
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Encoders for the trained comparison model (default: none, TF-IDF only); the first also reads polarity
    /// through the built-in anchors.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub encoders: Vec<String>,
    /// Labelled customer messages whose neutral intents (`kefu_nlu::eval::emotion::NEUTRAL_INTENTS`) must not read
    /// negative: the count is reported and bounds the anchors' offset search.
    #[arg(long, default_value = "demo/intents/shop-intents.csv")]
    pub questions: PathBuf,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub async fn emotion(settings: Settings, args: EmotionArgs) -> anyhow::Result<()> {
    use kefu_nlu::eval::emotion::{load, run, EmotionDataset};
    let Some(dataset) = EmotionDataset::parse(&args.dataset) else {
        bail!(
            "unknown dataset {:?}: expected chnsenticorp or airline",
            args.dataset
        );
    };
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(dataset.default_path()));
    let rows = load(dataset, &path)?;
    let bytes = std::fs::read(&args.questions)
        .with_context(|| format!("reading {}", args.questions.display()))?;
    let questions: Vec<kefu_nlu::Example> =
        kefu_nlu::intent::read_examples(&args.questions.display().to_string(), &bytes)?
            .into_iter()
            .filter(|e| kefu_nlu::eval::emotion::NEUTRAL_INTENTS.contains(&e.intent.as_str()))
            .collect();
    let live = load_encoders(&settings, &args.encoders).await?;
    let (cached, encoders) = with_cache(&settings, &live);
    let r = tokio::task::spawn_blocking(move || {
        run(
            dataset,
            &rows,
            &encoders,
            &kefu_nlu::TrainConfig::default(),
            &questions,
        )
    })
    .await??;
    for c in &cached {
        c.save()?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{}: {} train / {} test rows",
        r.dataset, r.train_rows, r.test_rows
    );
    println!("| method | accuracy | macro-F1 | notes |");
    println!("|---|---:|---:|---|");
    println!(
        "| built-in lexicon | {:.1} | {:.1} | {:.0} µs/message; no sentiment word in {:.1} % |",
        r.lexicon.accuracy, r.lexicon.macro_f1, r.lexicon_us_per_message, r.lexicon_silent
    );
    println!(
        "| trained on this set (encoders {:?}) | {:.1} | {:.1} | trained in {:.1} s |",
        r.trained_encoders, r.trained.accuracy, r.trained.macro_f1, r.train_seconds
    );
    if let Some(a) = &r.anchored {
        let best = match (a.best_offsets_on_train, a.best_train_accuracy) {
            (Some([neutral, positive]), Some(acc)) => {
                format!("neutral {neutral:+.3}, positive {positive:+.3}: {acc:.1}")
            }
            _ => "none".to_owned(),
        };
        println!(
            "| lexicon, {} anchors where it is silent (not zh) | {:.1} | {:.1} | {:.0} µs/message with the vector given; train part {:.1} (best offsets there with at most {:.0} % of the questions negative: {}) |",
            a.encoder,
            a.scores.accuracy,
            a.scores.macro_f1,
            a.us_per_message,
            a.train_accuracy,
            100.0 * kefu_nlu::eval::emotion::MAX_QUESTIONS_NEGATIVE,
            best
        );
    }
    print!(
        "neutral questions ({}) read negative: {} by the lexicon",
        r.questions, r.questions_negative_lexicon
    );
    match &r.anchored {
        Some(a) => println!(", {} with the anchors", a.questions_negative),
        None => println!(),
    }
    println!(
        "lexicon emotions: {:.1} % of negative rows angry/anxious/frustrated, {:.1} % of positive rows satisfied",
        r.negative_with_emotion, r.positive_satisfied
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct ModerationArgs {
    /// The word list under test.
    #[arg(long, default_value = "demo/moderation/words.txt")]
    pub words: PathBuf,
    /// Size of the synthetic list for load and scan speed.
    #[arg(long, default_value_t = 100_000)]
    pub large: usize,
    /// Labelled prompt-injection set (JSON lines: text, attack).
    #[arg(long, default_value = "eval/datasets/injection-zh-en.jsonl")]
    pub injection: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// The committed customer messages by source and language: the BANKING77 and CLINC150 test questions (English)
/// and the Chinese shop FAQ's questions and queries.
fn committed_messages() -> anyhow::Result<Vec<(&'static str, &'static str, Vec<String>)>> {
    let b77 = std::fs::read_to_string("eval/datasets/banking77/test.csv")
        .context("eval/datasets/banking77")?;
    let b77 = kefu_nlu::intent::read_examples("test.csv", b77.as_bytes())?;
    let clinc = kefu_nlu::eval::intent::load(
        kefu_nlu::eval::intent::IntentDataset::Clinc150,
        std::path::Path::new("eval/datasets/clinc150/data_full.json"),
        false,
    )?;
    let shop: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("eval/datasets/shop-faq-zh.json")?)?;
    let mut shop_zh = Vec::new();
    for q in shop["queries"].as_array().into_iter().flatten() {
        if let Some(t) = q["text"].as_str() {
            shop_zh.push(t.to_owned());
        }
    }
    for f in shop["faqs"].as_array().into_iter().flatten() {
        if let Some(t) = f["question"].as_str() {
            shop_zh.push(t.to_owned());
        }
    }
    Ok(vec![
        (
            "banking77 test",
            "en",
            b77.into_iter().map(|e| e.text).collect(),
        ),
        (
            "clinc150 test",
            "en",
            clinc.test.into_iter().map(|e| e.text).collect(),
        ),
        ("shop FAQ (zh)", "zh", shop_zh),
    ])
}

/// Clean customer messages for false-positive counts: every committed message of [`committed_messages`].
fn clean_messages() -> anyhow::Result<Vec<String>> {
    Ok(committed_messages()?
        .into_iter()
        .flat_map(|(_, _, texts)| texts)
        .collect())
}

pub fn moderation(args: ModerationArgs) -> anyhow::Result<()> {
    let list = std::fs::read_to_string(&args.words)
        .with_context(|| format!("reading {}", args.words.display()))?;
    let inj = std::fs::read_to_string(&args.injection)
        .with_context(|| format!("reading {}", args.injection.display()))?;
    let clean = clean_messages()?;
    let r = kefu_nlu::eval::moderation::run(&list, &clean, &inj, args.large)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("word list {}: {} words", args.words.display(), r.list_words);
    println!(
        "disguised occurrences caught: {:.1} % whole, {:.1} % streamed in 1–3 character chunks ({} variants, {} leaks)",
        r.variant_recall, r.stream_recall, r.variants, r.stream_leaks
    );
    println!(
        "clean customer messages hit: {:.2} per 1,000 ({} messages)",
        r.clean_hits_per_1000, r.clean_messages
    );
    for e in &r.clean_hit_examples {
        println!("  {e}");
    }
    println!(
        "{} words: loaded and compiled in {:.0} ms; scan {:.0} MB/s whole, {:.1} MB/s streamed (12-byte chunks)",
        r.large_list_words, r.large_list_load_ms, r.scan_mb_per_s, r.stream_mb_per_s
    );
    let i = &r.injection;
    println!(
        "prompt injection ({} attacks, {} benign): precision {:.1} %, recall {:.1} %, {:.0} µs/message",
        i.attacks, i.benign, i.precision, i.recall, i.us_per_message
    );
    for m in &i.missed {
        println!("  missed: {m}");
    }
    for m in &i.false_alarms {
        println!("  false alarm: {m}");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct LanguageArgs {
    /// The written set: other languages, short replies, code-mixed zh/en (JSON lines: text, lang, mixed?).
    #[arg(long, default_value = "eval/datasets/language-set.jsonl")]
    pub set: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// `kefu eval language`: the detector on the committed messages, SMP2017, ChnSentiCorp and the airline tweets when
/// `../shared/data` is there (never copied into the repo), and the written set (see `kefu_nlu::eval::language`).
pub fn language(args: LanguageArgs) -> anyhow::Result<()> {
    use kefu_nlu::eval::emotion::EmotionDataset;
    use kefu_nlu::eval::language::{parse_set, run, Labelled};
    let labelled = |lang: &str, texts: Vec<String>| -> Vec<Labelled> {
        texts
            .into_iter()
            .map(|text| Labelled {
                text,
                lang: lang.to_owned(),
                mixed: None,
            })
            .collect()
    };
    let mut sources: Vec<(String, Vec<Labelled>)> = committed_messages()?
        .into_iter()
        .map(|(source, lang, texts)| (source.to_owned(), labelled(lang, texts)))
        .collect();
    let questions: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        "eval/datasets/shop-questions-en.json",
    )?)?;
    let questions = questions["queries"].as_array().into_iter().flatten();
    sources.push((
        "shop questions (en)".into(),
        labelled(
            "en",
            questions
                .filter_map(|q| Some(q["text"].as_str()?.to_owned()))
                .collect(),
        ),
    ));
    // The research-only sets, from their default places in the shared data folder, when it is there.
    let smp = kefu_nlu::eval::intent::IntentDataset::Smp2017;
    let smp_path = std::path::Path::new(smp.default_path());
    if smp_path.exists() {
        let test = kefu_nlu::eval::intent::load(smp, smp_path, false)?.test;
        sources.push((
            "smp2017 test".into(),
            labelled("zh", test.into_iter().map(|e| e.text).collect()),
        ));
    }
    for (dataset, lang) in [
        (EmotionDataset::ChnSentiCorp, "zh"),
        (EmotionDataset::Airline, "en"),
    ] {
        let path = std::path::Path::new(dataset.default_path());
        if path.exists() {
            let rows = kefu_nlu::eval::emotion::load(dataset, path)?;
            sources.push((
                dataset.name().into(),
                labelled(lang, rows.into_iter().map(|e| e.text).collect()),
            ));
        }
    }
    let set = std::fs::read_to_string(&args.set)
        .with_context(|| format!("reading {}", args.set.display()))?;
    sources.push(("written set".into(), parse_set(&set)?));
    let r = run(&sources);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{} messages, {:.1} µs per message",
        r.messages, r.us_per_message
    );
    println!("| source | language | messages | accuracy % | mixed right | detected instead |");
    println!("|---|---|---:|---:|---:|---|");
    for row in &r.rows {
        let mixed = if row.mixed_labelled > 0 {
            format!("{} / {}", row.mixed_right, row.mixed_labelled)
        } else {
            "–".into()
        };
        let confused: Vec<String> = row
            .confused_with
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect();
        println!(
            "| {} | {} | {} | {:.2} | {mixed} | {} |",
            row.source,
            row.lang,
            row.messages,
            row.accuracy,
            confused.join(", ")
        );
    }
    for row in &r.rows {
        for (text, got) in &row.examples {
            let text: String = text.chars().take(80).collect();
            println!("  {} ({}), read as {got}: {text}", row.source, row.lang);
        }
    }
    Ok(())
}

/// Remembers an encoder's vectors on disk (`<data_dir>/cache/vectors-<id>.bin`) so repeated evaluations and
/// settings sweeps embed each text once. Only for `kefu eval`; a serving classifier embeds live.
///
/// The file also holds the vector of a fixed probe sentence. When the encoder now gives that sentence a different
/// vector (a changed kernel, other weights under the same name), every stored vector is dropped, so an evaluation
/// never reports numbers from vectors the current code did not compute.
pub struct CachedEncoder {
    inner: Arc<dyn kefu_nlu::SentenceEncoder>,
    path: PathBuf,
    map: parking_lot::Mutex<std::collections::HashMap<String, Vec<f32>>>,
    dirty: std::sync::atomic::AtomicBool,
}

/// See [`CachedEncoder`].
const CACHE_PROBE: &str = "kefu vector cache probe: 我想退货, where is my refund?";

impl CachedEncoder {
    pub fn open(inner: Arc<dyn kefu_nlu::SentenceEncoder>, dir: &std::path::Path) -> Self {
        let probe = inner.encode(&[CACHE_PROBE]).ok().and_then(|mut v| v.pop());
        let safe: String = inner
            .id()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("vectors-{safe}.bin"));
        let mut map = std::collections::HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let mut at = 0usize;
            let u32_at = |at: &mut usize| -> Option<usize> {
                let v = u32::from_le_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?) as usize;
                *at += 4;
                Some(v)
            };
            while let Some(n) = u32_at(&mut at) {
                let Some(text) = bytes
                    .get(at..at + n)
                    .and_then(|b| std::str::from_utf8(b).ok())
                else {
                    break;
                };
                let text = text.to_owned();
                at += n;
                let Some(dim) = u32_at(&mut at) else { break };
                let Some(raw) = bytes.get(at..at + 4 * dim) else {
                    break;
                };
                at += 4 * dim;
                let v = raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect();
                map.insert(text, v);
            }
        }
        let same = |a: &Vec<f32>, b: &Vec<f32>| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6)
        };
        let stale = match (map.get(CACHE_PROBE), &probe) {
            (Some(stored), Some(now)) => !same(stored, now),
            (None, _) => !map.is_empty(),
            (Some(_), None) => true,
        };
        if stale {
            tracing::warn!(path = %path.display(), vectors = map.len(), "the encoder's vectors changed since they were cached; embedding again");
            map.clear();
        }
        let dirty = stale || map.is_empty();
        if let Some(v) = probe {
            map.insert(CACHE_PROBE.to_owned(), v);
        }
        CachedEncoder {
            inner,
            path,
            map: parking_lot::Mutex::new(map),
            dirty: std::sync::atomic::AtomicBool::new(dirty),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let map = self.map.lock();
        let mut out = Vec::new();
        for (t, v) in map.iter() {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&self.path, out)?;
        Ok(())
    }
}

impl kefu_nlu::SentenceEncoder for CachedEncoder {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let missing: Vec<&str> = {
            let map = self.map.lock();
            texts
                .iter()
                .copied()
                .filter(|t| !map.contains_key(*t))
                .collect()
        };
        if !missing.is_empty() {
            let vs = self.inner.encode(&missing)?;
            let mut map = self.map.lock();
            for (t, v) in missing.iter().zip(vs) {
                map.insert((*t).to_owned(), v);
            }
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let map = self.map.lock();
        Ok(texts.iter().map(|t| map[*t].clone()).collect())
    }
}

#[derive(clap::Args)]
pub struct CacheArgs {
    /// Labelled question pairs, tab-separated `question1<TAB>question2<TAB>label` (1 = same question). Default: the
    /// BQ corpus's labelled split (../shared/data, research use only, not in the repository).
    #[arg(long, default_value = "../shared/data/bq_corpus_zh/dev.tsv")]
    pub path: PathBuf,
    /// The sentence encoder for the dense signal (`none`: lexical only; default: models.embedder).
    #[arg(long)]
    pub encoder: Option<String>,
    /// Wrong hits allowed per 100 hits when choosing the threshold on the calibration half.
    #[arg(long, default_value_t = 1.0)]
    pub max_wrong_per_100: f64,
    /// Also print, for the guarded dense scorer, hits and wrong hits over all pairs at these thresholds.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f32>,
    /// Print the wrong hits of the guarded dense scorer at this threshold (to read what the matcher confuses).
    #[arg(long)]
    pub show_wrong: Option<f32>,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// One scorer's result: the threshold chosen on the calibration half and what it does on the held-out half.
#[derive(Debug, serde::Serialize)]
pub struct CacheRow {
    pub scorer: &'static str,
    pub threshold: f32,
    pub calibration_hit_rate: f64,
    /// Held out: share of same-question pairs that hit.
    pub hit_rate: f64,
    pub hits: usize,
    pub wrong_hits: usize,
    pub wrong_per_100_hits: f64,
}

/// Answer-cache matching on labelled paraphrase pairs: per scorer, the lowest threshold whose wrong hits stay
/// under the limit on the even rows (calibration), then hit rate and wrong hits on the odd rows (held out).
pub async fn cache(settings: Settings, args: CacheArgs) -> anyhow::Result<()> {
    use kefu_engine::cache::{likeness, Scorer};
    let text = std::fs::read_to_string(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?;
    let mut pairs: Vec<(String, String, bool)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            [a, b, l] if *l == "0" || *l == "1" => {
                pairs.push(((*a).to_owned(), (*b).to_owned(), *l == "1"))
            }
            // A header row.
            _ if n == 0 => {}
            _ => bail!(
                "{}:{}: expected question1<TAB>question2<TAB>0|1",
                args.path.display(),
                n + 1
            ),
        }
    }
    if pairs.len() < 100 {
        bail!("{} labelled pairs: too few to measure", pairs.len());
    }
    let names: Vec<String> = args.encoder.iter().cloned().collect();
    let live = load_encoders(&settings, &names).await?;
    let (cached, encoders) = with_cache(&settings, &live);
    let started = std::time::Instant::now();
    let dense: Vec<Option<f32>> = match encoders.first() {
        Some(enc) => {
            let enc = enc.clone();
            let texts: Vec<String> = pairs
                .iter()
                .flat_map(|(a, b, _)| [a.clone(), b.clone()])
                .collect();
            let vecs = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let mut out = Vec::with_capacity(refs.len());
                for chunk in refs.chunks(64) {
                    out.extend(enc.encode(chunk)?);
                }
                Ok::<_, String>(out)
            })
            .await?
            .map_err(|e| anyhow::anyhow!(e))?;
            vecs.chunks(2)
                .map(|p| Some(kefu_engine::cache::cosine(&p[0], &p[1])))
                .collect()
        }
        None => vec![None; pairs.len()],
    };
    for c in &cached {
        c.save()?;
    }
    let embed_secs = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let signals: Vec<_> = pairs
        .iter()
        .zip(&dense)
        .map(|((a, b, _), d)| likeness(a, b, *d))
        .collect();
    let match_us = started.elapsed().as_secs_f64() * 1e6 / pairs.len() as f64;
    let limit = args.max_wrong_per_100 / 100.0;
    let mut rows = Vec::new();
    for scorer in Scorer::ALL {
        let scored: Vec<(f32, bool, bool)> = signals
            .iter()
            .zip(&pairs)
            .enumerate()
            .map(|(i, (l, (_, _, same)))| (scorer.score(l), *same, i % 2 == 0))
            .collect();
        let calib: Vec<(f32, bool)> = scored.iter().filter(|s| s.2).map(|s| (s.0, s.1)).collect();
        let held: Vec<(f32, bool)> = scored.iter().filter(|s| !s.2).map(|s| (s.0, s.1)).collect();
        // Lowest threshold (most hits) whose wrong-hit share stays within the limit, with at least 20 hits.
        let mut candidates: Vec<f32> = calib.iter().map(|c| c.0).collect();
        candidates.sort_by(|a, b| b.total_cmp(a));
        candidates.dedup();
        let mut threshold = f32::INFINITY;
        for t in candidates {
            let (hits, wrong) = count(&calib, t);
            if hits >= 20 && wrong as f64 > limit * hits as f64 {
                break;
            }
            if hits >= 20 {
                threshold = t;
            }
        }
        let positives = |set: &[(f32, bool)]| set.iter().filter(|s| s.1).count().max(1) as f64;
        let (c_hits, c_wrong) = count(&calib, threshold);
        let (hits, wrong) = count(&held, threshold);
        rows.push(CacheRow {
            scorer: scorer.name(),
            threshold,
            calibration_hit_rate: 100.0 * (c_hits - c_wrong) as f64 / positives(&calib),
            hit_rate: 100.0 * (hits - wrong) as f64 / positives(&held),
            hits,
            wrong_hits: wrong,
            wrong_per_100_hits: 100.0 * wrong as f64 / hits.max(1) as f64,
        });
    }
    let guarded: Vec<f32> = signals
        .iter()
        .map(|l| Scorer::DenseGuarded.score(l))
        .collect();
    if !args.sweep.is_empty() {
        let positives = pairs.iter().filter(|p| p.2).count().max(1) as f64;
        let lexical: Vec<f32> = signals
            .iter()
            .map(|l| Scorer::Guarded.score(&kefu_engine::cache::Likeness { dense: None, ..*l }))
            .collect();
        for (name, scores) in [("dense+guards", &guarded), ("lexical+guards", &lexical)] {
            println!("{name} over all pairs:\n| threshold | hits | wrong hits | wrong / 100 hits | hit rate |");
            println!("|---:|---:|---:|---:|---:|");
            let all: Vec<(f32, bool)> = scores.iter().zip(&pairs).map(|(s, p)| (*s, p.2)).collect();
            for t in &args.sweep {
                let (h, w) = count(&all, *t);
                println!(
                    "| {t:.3} | {h} | {w} | {:.2} | {:.1} % |",
                    100.0 * w as f64 / h.max(1) as f64,
                    100.0 * (h - w) as f64 / positives
                );
            }
        }
    }
    if let Some(t) = args.show_wrong {
        for ((s, (a, b, same)), l) in guarded.iter().zip(&pairs).zip(&signals) {
            if *s >= t && !same {
                println!("wrong hit {s:.3} (lexical {:.2}): {a} | {b}", l.lexical);
            }
        }
    }
    let encoder = live.first().map(|e| e.id().to_owned());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "pairs": pairs.len(), "encoder": encoder, "embed_seconds": embed_secs,
                "match_us_per_pair": match_us, "rows": rows,
            }))?
        );
        return Ok(());
    }
    println!(
        "{} pairs ({} same-question), even rows calibrate, odd rows held out; encoder {}; embedding {:.0} s, matching \
         {:.1} µs/pair",
        pairs.len(),
        pairs.iter().filter(|p| p.2).count(),
        encoder.as_deref().unwrap_or("none"),
        embed_secs,
        match_us
    );
    println!(
        "| scorer | threshold | hit rate (calibration) | hit rate (held out) | hits | wrong hits | wrong / 100 hits |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.3} | {:.1} % | {:.1} % | {} | {} | {:.2} |",
            r.scorer,
            r.threshold,
            r.calibration_hit_rate,
            r.hit_rate,
            r.hits,
            r.wrong_hits,
            r.wrong_per_100_hits
        );
    }
    Ok(())
}

/// (hits, wrong hits) at a threshold.
fn count(set: &[(f32, bool)], t: f32) -> (usize, usize) {
    set.iter()
        .filter(|s| s.0 >= t)
        .fold((0, 0), |(h, w), s| (h + 1, w + usize::from(!s.1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A deterministic encoder whose vectors depend on a version number, counting the texts it is asked for.
    struct Versioned {
        version: f32,
        encoded: AtomicUsize,
    }

    impl kefu_nlu::SentenceEncoder for Versioned {
        fn id(&self) -> &str {
            "versioned"
        }
        fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            self.encoded.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts
                .iter()
                .map(|t| vec![t.len() as f32, self.version])
                .collect())
        }
    }

    fn versioned(version: f32) -> Arc<Versioned> {
        Arc::new(Versioned {
            version,
            encoded: AtomicUsize::new(0),
        })
    }

    #[test]
    fn the_vector_cache_is_dropped_when_the_encoder_changes() {
        use kefu_nlu::SentenceEncoder;
        let dir = std::env::temp_dir().join(format!("kefu-vector-cache-{}", std::process::id()));
        let texts = ["where is my order", "我要退货"];

        let v1 = versioned(1.0);
        let cache = CachedEncoder::open(v1.clone(), &dir);
        assert_eq!(cache.encode(&texts).unwrap()[0], vec![17.0, 1.0]);
        cache.save().unwrap();
        assert_eq!(
            v1.encoded.load(Ordering::SeqCst),
            3,
            "the probe and two texts"
        );

        // The same encoder again: only the probe is embedded, the texts come from the file.
        let again = versioned(1.0);
        let cache = CachedEncoder::open(again.clone(), &dir);
        assert_eq!(cache.encode(&texts).unwrap()[1], vec![12.0, 1.0]);
        assert_eq!(again.encoded.load(Ordering::SeqCst), 1);

        // A changed encoder under the same id: the stored vectors are not served.
        let v2 = versioned(2.0);
        let cache = CachedEncoder::open(v2.clone(), &dir);
        assert_eq!(cache.encode(&texts).unwrap()[0], vec![17.0, 2.0]);
        assert_eq!(v2.encoded.load(Ordering::SeqCst), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
