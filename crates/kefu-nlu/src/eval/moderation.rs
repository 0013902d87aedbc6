//! `kefu eval moderation`: how fast a large word list loads and scans, whether disguised words are still caught
//! (in whole messages and split across streamed chunks), how often clean customer messages are hit, and the
//! prompt-injection scorer's precision and recall on the committed zh/en set.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::injection::{score, ToolContext};
use crate::moderation::{parse_word_list, Action, Moderator, WordEntry};
use crate::NluError;

#[derive(Debug, Clone, Serialize)]
pub struct ModerationReport {
    pub list_words: usize,
    /// Disguised occurrences of listed words caught, whole message / streamed.
    pub variants: usize,
    pub variant_recall: f64,
    pub stream_recall: f64,
    /// Streamed replies where released text contained an unmasked listed word.
    pub stream_leaks: usize,
    pub clean_messages: usize,
    /// Clean messages with at least one hit, per 1,000.
    pub clean_hits_per_1000: f64,
    pub clean_hit_examples: Vec<String>,
    pub large_list_words: usize,
    pub large_list_load_ms: f64,
    pub scan_mb_per_s: f64,
    pub stream_mb_per_s: f64,
    pub injection: InjectionScores,
}

#[derive(Debug, Clone, Serialize)]
pub struct InjectionScores {
    pub attacks: usize,
    pub benign: usize,
    pub precision: f64,
    pub recall: f64,
    pub us_per_message: f64,
    pub missed: Vec<String>,
    pub false_alarms: Vec<String>,
}

/// Disguises of a word: as is, upper case, full-width, a symbol or a space between letters.
fn variants(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let join = |sep: &str| {
        chars
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(sep)
    };
    let full_width: String = chars
        .iter()
        .map(|&c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            ' ' => '\u{3000}',
            c => c,
        })
        .collect();
    vec![
        word.to_owned(),
        word.to_uppercase(),
        full_width,
        join("*"),
        join(" "),
        join("."),
    ]
}

const CARRIERS: &[(&str, &str)] = &[
    ("你这个", "，赶紧给我退款"),
    ("I told you ", " and I want my money back"),
    ("", ""),
    ("说真的 ", "!"),
];

/// A pseudo word list of `n` entries (half Chinese, half Latin), seeded.
pub fn synthetic_list(n: usize, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = String::with_capacity(n * 12);
    for i in 0..n {
        if i % 2 == 0 {
            let len = rng.gen_range(2..=4);
            for _ in 0..len {
                out.push(char::from_u32(rng.gen_range(0x4E00..0x9FA5)).unwrap_or('一'));
            }
        } else {
            let len = rng.gen_range(5..=10);
            for _ in 0..len {
                out.push(rng.gen_range(b'a'..=b'z') as char);
            }
        }
        out.push_str("\tsynthetic\tflag\n");
    }
    out
}

#[derive(Deserialize)]
struct InjectionRow {
    text: String,
    attack: bool,
}

pub fn injection_scores(jsonl: &str) -> Result<InjectionScores, NluError> {
    let rows: Vec<InjectionRow> = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| NluError::BadTrainingFile(format!("line {}: {e}", n + 1)))
        })
        .collect::<Result<_, _>>()?;
    let tools = ToolContext::default();
    let started = Instant::now();
    let flagged: Vec<bool> = rows
        .iter()
        .map(|r| score(&r.text, &tools).flagged())
        .collect();
    let us = started.elapsed().as_secs_f64() * 1e6 / rows.len().max(1) as f64;
    let tp = rows
        .iter()
        .zip(&flagged)
        .filter(|(r, f)| r.attack && **f)
        .count();
    let fp = rows
        .iter()
        .zip(&flagged)
        .filter(|(r, f)| !r.attack && **f)
        .count();
    let attacks = rows.iter().filter(|r| r.attack).count();
    Ok(InjectionScores {
        attacks,
        benign: rows.len() - attacks,
        precision: 100.0 * tp as f64 / (tp + fp).max(1) as f64,
        recall: 100.0 * tp as f64 / attacks.max(1) as f64,
        us_per_message: us,
        missed: rows
            .iter()
            .zip(&flagged)
            .filter(|(r, f)| r.attack && !**f)
            .map(|(r, _)| r.text.clone())
            .collect(),
        false_alarms: rows
            .iter()
            .zip(&flagged)
            .filter(|(r, f)| !r.attack && **f)
            .map(|(r, _)| r.text.clone())
            .collect(),
    })
}

/// Runs everything: `list` is the word list under test, `clean` customer messages that contain no listed word.
pub fn run(
    list: &str,
    clean: &[String],
    injection_jsonl: &str,
    large: usize,
) -> Result<ModerationReport, NluError> {
    let entries: Vec<WordEntry> = parse_word_list(list, "default", Action::Flag)?;
    let m = Moderator::new(entries.clone())?;

    let (mut total, mut caught, mut stream_caught, mut leaks) = (0usize, 0usize, 0usize, 0usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for e in &entries {
        for v in variants(&e.word) {
            for (pre, post) in CARRIERS {
                let text = format!("{pre}{v}{post}");
                total += 1;
                let whole = m.check(&text);
                let found = whole.hits.iter().any(|h| {
                    h.word == e.word
                        || crate::matcher::key(&h.word).contains(&crate::matcher::key(&e.word))
                });
                caught += usize::from(found);
                // Streamed in random chunks of 1–3 characters.
                let chars: Vec<char> = text.chars().collect();
                let mut s = m.stream();
                let mut shown = String::new();
                let mut hit = false;
                let mut i = 0;
                while i < chars.len() {
                    let n = rng.gen_range(1..=3).min(chars.len() - i);
                    let chunk: String = chars[i..i + n].iter().collect();
                    let out = s.push(&chunk);
                    hit |= !out.hits.is_empty();
                    shown.push_str(&out.text);
                    i += n;
                }
                let out = s.finish();
                hit |= !out.hits.is_empty() || s.blocked();
                shown.push_str(&out.text);
                stream_caught += usize::from(hit);
                if e.action >= Action::Mask && !s.blocked() && shown.contains(v.as_str()) {
                    leaks += 1;
                }
            }
        }
    }

    let mut clean_hit = 0;
    let mut examples = Vec::new();
    for t in clean {
        let v = m.check(t);
        if !v.hits.is_empty() {
            clean_hit += 1;
            if examples.len() < 10 {
                examples.push(format!("{} ← {}", v.hits[0].word, t));
            }
        }
    }

    let big = synthetic_list(large, 5);
    let started = Instant::now();
    let big_entries = parse_word_list(&big, "default", Action::Flag)?;
    let big_m = Moderator::new(big_entries)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let corpus: String = clean
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut corpus_big = corpus.clone();
    while corpus_big.len() < 1_000_000 && !corpus.is_empty() {
        corpus_big.push_str(&corpus);
    }
    let started = Instant::now();
    let v = big_m.check(&corpus_big);
    std::hint::black_box(&v);
    let scan = corpus_big.len() as f64 / 1e6 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut s = big_m.stream();
    let mut at = 0;
    let bytes = corpus_big.as_bytes();
    while at < bytes.len() {
        let mut end = (at + 12).min(bytes.len());
        while !corpus_big.is_char_boundary(end) {
            end += 1;
        }
        std::hint::black_box(s.push(&corpus_big[at..end]));
        at = end;
    }
    std::hint::black_box(s.finish());
    let stream = corpus_big.len() as f64 / 1e6 / started.elapsed().as_secs_f64();

    Ok(ModerationReport {
        list_words: m.len(),
        variants: total,
        variant_recall: 100.0 * caught as f64 / total.max(1) as f64,
        stream_recall: 100.0 * stream_caught as f64 / total.max(1) as f64,
        stream_leaks: leaks,
        clean_messages: clean.len(),
        clean_hits_per_1000: 1000.0 * clean_hit as f64 / clean.len().max(1) as f64,
        clean_hit_examples: examples,
        large_list_words: big_m.len(),
        large_list_load_ms: load_ms,
        scan_mb_per_s: scan,
        stream_mb_per_s: stream,
        injection: injection_scores(injection_jsonl)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo list and the committed injection set: every disguise caught whole and streamed, no leaks, and the
    /// injection scorer at its recorded quality (bench/RESULTS.md).
    #[test]
    fn committed_sets() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let list = std::fs::read_to_string(format!("{root}/demo/moderation/words.txt")).unwrap();
        let inj =
            std::fs::read_to_string(format!("{root}/eval/datasets/injection-zh-en.jsonl")).unwrap();
        let clean = vec![
            "where is my order".to_owned(),
            "我的快递到哪了".to_owned(),
            "this class is great".to_owned(),
        ];
        let r = run(&list, &clean, &inj, 1000).unwrap();
        assert_eq!(r.variant_recall, 100.0, "{r:?}");
        assert_eq!(r.stream_recall, 100.0);
        assert_eq!(r.stream_leaks, 0);
        assert_eq!(r.clean_hits_per_1000, 0.0, "{:?}", r.clean_hit_examples);
        assert!(
            r.injection.recall >= 90.0 && r.injection.precision >= 95.0,
            "{:?}",
            r.injection
        );
    }
}
