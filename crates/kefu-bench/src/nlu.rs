//! `kefu-bench nlu`: latency of the whole understanding step (language, PII masking, moderation, injection score,
//! intent with its sentence embedding, emotion) per message on one thread, each part on its own, and the memory it
//! takes: the embedder, a trained intent model and a word list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kefu_nlu::moderation::{parse_word_list, Action, Moderator};
use kefu_nlu::{
    IntentClassifier, IntentModel, PiiDetector, SentenceEncoder, TrainConfig, Understander,
};

use crate::kb::rss_mib;

/// zh + en customer messages from the committed sets: BANKING77 test questions, the Chinese shop FAQ queries and
/// the PII set's messages.
fn messages(n: usize) -> anyhow::Result<Vec<String>> {
    let b77 = std::fs::read_to_string("eval/datasets/banking77/test.csv")
        .context("run from the repository root")?;
    let en: Vec<String> = kefu_nlu::intent::read_examples("test.csv", b77.as_bytes())?
        .into_iter()
        .map(|e| e.text)
        .collect();
    let shop: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("eval/datasets/shop-faq-zh.json")?)?;
    let zh: Vec<String> = shop["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["text"].as_str().map(str::to_owned))
        .collect();
    let pii: Vec<String> = std::fs::read_to_string("eval/datasets/pii-zh-en.jsonl")?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    let mut out = Vec::with_capacity(n);
    let (mut a, mut b, mut c) = (en.iter().cycle(), zh.iter().cycle(), pii.iter().cycle());
    while out.len() < n {
        out.push(a.next().context("no messages")?.clone());
        out.push(b.next().context("no messages")?.clone());
        out.push(c.next().context("no messages")?.clone());
    }
    out.truncate(n);
    Ok(out)
}

/// p50, p99 and mean ms of `f` over `messages`, one at a time, each after `gap` idle.
fn time_each(messages: &[String], gap: Duration, mut f: impl FnMut(&str)) -> (f64, f64, f64) {
    kefu_nlu::eval::latency_summary(
        messages
            .iter()
            .map(|m| kefu_nlu::eval::timed_after_idle(gap, || f(m)).1)
            .collect(),
    )
}

/// The understanding step's parts and the whole, per message on one thread. With `gap`, each timed message comes
/// after that long idle, as a service between customers' messages sees it: caches and the CPU's vector units may
/// have gone cold (back to back, they stay warm).
pub fn bench_nlu(encoder_path: Option<&str>, n: usize, gap: Duration) -> anyhow::Result<()> {
    let messages = messages(n)?;
    let rss_start = rss_mib();
    let encoders: Vec<Arc<dyn SentenceEncoder>> = match encoder_path {
        Some(p) => vec![Arc::new(kefu_embed_local::LocalEmbedder::load(
            p, "e5-small",
        )?)],
        None => vec![],
    };
    let rss_encoder = rss_mib();
    let data = std::fs::read("demo/intents/shop-intents.csv")?;
    let examples = kefu_nlu::intent::parse_examples("shop-intents.csv", &data)?;
    let started = Instant::now();
    let model = IntentModel::train(&examples, None, &encoders, &TrainConfig::default())?;
    let train_s = started.elapsed().as_secs_f64();
    let classifier = IntentClassifier::new(model, encoders)?;
    let words = std::fs::read_to_string("demo/moderation/words.txt")?;
    let moderator = Arc::new(Moderator::new(parse_word_list(
        &words,
        "default",
        Action::Flag,
    )?)?);
    let pii = PiiDetector::new();
    let u = Understander::new(pii.clone())
        .with_moderator(moderator.clone())
        .with_intent(classifier.clone());
    let rss_ready = rss_mib();
    // Warm up (jieba's dictionary, the lexicons, regexes).
    for m in messages.iter().take(20) {
        u.understand(m)?;
    }

    println!(
        "{} messages (zh + en), one thread, {} ms idle before each; embedder {}; intent model trained in {train_s:.1} s on demo/intents",
        messages.len(),
        gap.as_millis(),
        encoder_path.unwrap_or("none")
    );
    println!("| step | p50 ms | p99 ms | mean ms |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, (p50, p99, mean): (f64, f64, f64)| {
        println!("| {name} | {p50:.3} | {p99:.3} | {mean:.3} |");
    };
    row(
        "language",
        time_each(&messages, gap, |m| {
            drop(std::hint::black_box(kefu_nlu::lang::detect(m)))
        }),
    );
    row(
        "PII masking",
        time_each(&messages, gap, |m| drop(std::hint::black_box(pii.mask(m)))),
    );
    row(
        "moderation",
        time_each(&messages, gap, |m| {
            drop(std::hint::black_box(moderator.check(m)))
        }),
    );
    row(
        "injection score",
        time_each(&messages, gap, |m| {
            drop(std::hint::black_box(kefu_nlu::injection::score(
                m,
                &Default::default(),
            )))
        }),
    );
    row(
        "emotion",
        time_each(&messages, gap, |m| {
            drop(std::hint::black_box(kefu_nlu::emotion::analyse(m)))
        }),
    );
    row(
        "intent (embedding included)",
        time_each(&messages, gap, |m| {
            drop(std::hint::black_box(classifier.predict(m)))
        }),
    );
    row(
        "**whole understand()**",
        time_each(&messages, gap, |m| {
            drop(std::hint::black_box(u.understand(m)))
        }),
    );
    // Absolute figures, not differences: loading the embedder leaves buffers the allocator may hand back while the
    // intent model trains, which made the second difference negative on some hosts.
    println!(
        "\nRSS: {rss_start:.0} MiB at start, {rss_encoder:.0} MiB with the embedder loaded, {rss_ready:.0} MiB ready \
         (intent model, word list and lexicons too)"
    );
    Ok(())
}
