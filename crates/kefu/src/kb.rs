//! `kefu kb import | search | reindex`: the knowledge base from the command line, straight against the database.
//! A running server picks up what these commands write through the knowledge change log.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use kefu_knowledge::parse::Format;
use kefu_knowledge::service::{ImportFile, ImportTarget, SearchRequest};
use kefu_knowledge::Knowledge;
use kefu_store::Store;
use uuid::Uuid;

use crate::progress::say;
use crate::Settings;

/// Opens the database and the knowledge service (with the configured embedder, pulled if allowed and missing).
pub async fn open(settings: &Settings) -> anyhow::Result<(Arc<dyn Store>, Arc<Knowledge>)> {
    let store = kefu_store_sql::connect(&settings.database_url(), 4)
        .await
        .context("opening the database")?;
    let embedding = crate::local::prepare_embedder(settings).await;
    if let Some(check) = embedding.check.as_ref().filter(|c| !c.ok) {
        eprintln!("warning: {}", check.detail.clone().unwrap_or_default());
    }
    let knowledge = Knowledge::new(
        store.clone(),
        embedding.embedder,
        settings.knowledge_options(),
    )?;
    Ok((store, Arc::new(knowledge)))
}

pub async fn tenant_id(store: &dyn Store, slug: &str) -> anyhow::Result<Uuid> {
    match store.get_tenant_by_slug(slug).await? {
        Some(t) => Ok(t.id),
        None => bail!(
            "no tenant {slug:?} (create one with `kefu tenant create`, or start the server once)"
        ),
    }
}

/// Every importable file under the given paths, with the source name it is stored under: the path relative to
/// the folder it was found in (or the file name), so importing the same folder again replaces what changed.
pub fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).with_context(|| format!("{}", p.display()))?;
        if meta.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("{}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    let hidden = e
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    if hidden {
                        continue;
                    }
                    if e.is_dir() {
                        stack.push(e);
                    } else if Format::from_name(&e.to_string_lossy()).is_some() {
                        let source = e
                            .strip_prefix(p)
                            .unwrap_or(&e)
                            .to_string_lossy()
                            .replace('\\', "/");
                        out.push((e, source));
                    }
                }
            }
        } else {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((p.clone(), name));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

pub async fn import(
    settings: &Settings,
    tenant: &str,
    collection: &str,
    tags: Vec<String>,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    let files = collect(paths)?;
    if files.is_empty() {
        bail!("no .md, .html, .pdf, .txt, .csv or .json files under the given paths");
    }
    let (store, kb) = open(settings).await?;
    let target = ImportTarget {
        tenant: tenant_id(store.as_ref(), tenant).await?,
        collection: collection.into(),
        tags,
    };
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} [{bar:30}] {elapsed_precise} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let (mut imported, mut unchanged, mut failed, mut chunks) = (0, 0, 0, 0);
    for (path, source) in files {
        bar.set_message(source.clone());
        let report = match std::fs::read(&path) {
            Ok(bytes) => {
                kb.import(
                    &target,
                    ImportFile {
                        source: source.clone(),
                        bytes,
                        format: None,
                    },
                )
                .await
            }
            Err(e) => {
                say(&bar, format!("  failed    {source}: cannot read: {e}"));
                failed += 1;
                bar.inc(1);
                continue;
            }
        };
        match report.status.as_str() {
            "imported" => {
                imported += 1;
                chunks += report.chunks;
                say(
                    &bar,
                    format!("  imported  {source} ({} chunks)", report.chunks),
                );
            }
            "unchanged" => unchanged += 1,
            _ => {
                failed += 1;
                let e = report
                    .error
                    .unwrap_or_else(|| kefu_knowledge::service::FileError {
                        code: "failed".into(),
                        message: String::new(),
                    });
                say(
                    &bar,
                    format!("  failed    {source}: {} ({})", e.message, e.code),
                );
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("{imported} imported ({chunks} chunks), {unchanged} unchanged, {failed} failed");
    if failed > 0 {
        bail!("{failed} file(s) could not be imported (see above); the others were imported");
    }
    Ok(())
}

pub async fn search(
    settings: &Settings,
    tenant: &str,
    query: &str,
    k: usize,
    json: bool,
) -> anyhow::Result<()> {
    let (store, kb) = open(settings).await?;
    let tenant = tenant_id(store.as_ref(), tenant).await?;
    kb.rebuild().await?;
    let res = kb
        .search(
            tenant,
            &SearchRequest {
                query: query.into(),
                k: Some(k),
                ..Default::default()
            },
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&res)?);
        return Ok(());
    }
    println!(
        "{} hits ({}, {:.1} ms){}",
        res.hits.len(),
        res.mode,
        res.took_ms,
        if res.keyword_fallback {
            ", keyword fallback"
        } else {
            ""
        }
    );
    for (i, h) in res.hits.iter().enumerate() {
        let fmt = |s: Option<kefu_knowledge::RankedScore>| {
            s.map_or("-".to_owned(), |s| match s.rank {
                Some(r) => format!("{:.3} #{r}", s.score),
                None => format!("{:.3}", s.score),
            })
        };
        println!(
            "\n{}. {}  [fused {:.3} | bm25 {} | dense {}]",
            i + 1,
            h.citation.label,
            h.scores.fused,
            fmt(h.scores.bm25),
            fmt(h.scores.dense)
        );
        let text: String = h.text.chars().take(300).collect();
        println!("   {}", text.replace('\n', "\n   "));
    }
    Ok(())
}

pub async fn reindex(settings: &Settings) -> anyhow::Result<()> {
    let (_store, kb) = open(settings).await?;
    let Some(model) = kb.embedder_id().map(str::to_owned) else {
        bail!("no embedding model is configured (models.embedder); nothing to compute");
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "documents {pos}/{len} [{bar:30}] {elapsed_precise}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let n = kb
        .reembed(|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await?;
    bar.finish_and_clear();
    let docs = kb.rebuild().await?;
    println!(
        "{n} chunks embedded with {model}; the index builds from {docs} documents ({} chunks). Running servers apply \
         the new vectors from the change log.",
        kb.stats().chunks
    );
    Ok(())
}
