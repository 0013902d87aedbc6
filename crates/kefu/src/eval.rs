//! `kefu eval retrieval`: Recall@1/5/10, MRR@10 and nDCG@10 of BM25, dense and hybrid ranking on a FAQ dataset.
//! `kefu eval pii`: precision and recall of PII detection on a labelled set.

use std::path::PathBuf;
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
