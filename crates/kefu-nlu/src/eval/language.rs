//! `kefu eval language`: how often [`crate::lang::detect`] names the language a message is written in, per source
//! and expected language, and whether it marks code-mixed Chinese/English messages as mixed. The sources are public
//! customer messages whose language is known (the English and Chinese intent and sentiment sets) and the committed
//! `eval/datasets/language-set.jsonl`, written for kefu: shop questions in 14 other languages, short chat replies,
//! and code-mixed zh/en messages.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::lang::detect;
use crate::NluError;

/// A message and the language it is written in; `mixed` when the set says whether it mixes Chinese and English.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    pub text: String,
    pub lang: String,
    #[serde(default)]
    pub mixed: Option<bool>,
}

/// Reads a JSON-lines set of `{"text", "lang", "mixed"?}`; blank lines are skipped.
pub fn parse_set(jsonl: &str) -> Result<Vec<Labelled>, NluError> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| NluError::BadTrainingFile(format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// One source's messages of one expected language.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub source: String,
    pub lang: String,
    pub messages: usize,
    /// Messages detected as `lang`, and their share in per cent.
    pub right: usize,
    pub accuracy: f64,
    /// Messages labelled mixed or not, and how many of them `mixed` got right.
    pub mixed_labelled: usize,
    pub mixed_right: usize,
    /// What the wrong ones were detected as, with counts.
    pub confused_with: BTreeMap<String, usize>,
    /// Up to five wrong messages, as (text, detected).
    pub examples: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LanguageReport {
    pub rows: Vec<Row>,
    pub messages: usize,
    /// Mean time of one `detect` call over every message.
    pub us_per_message: f64,
}

/// Scores `detect` on each named source, one row per (source, expected language) in order of appearance.
pub fn run(sources: &[(String, Vec<Labelled>)]) -> LanguageReport {
    let mut rows: Vec<Row> = Vec::new();
    let mut messages = 0usize;
    let mut spent = 0f64;
    for (source, set) in sources {
        for m in set {
            let started = Instant::now();
            let guess = detect(&m.text);
            spent += started.elapsed().as_secs_f64();
            messages += 1;
            let at = match rows
                .iter()
                .position(|r| r.source == *source && r.lang == m.lang)
            {
                Some(at) => at,
                None => {
                    rows.push(Row {
                        source: source.clone(),
                        lang: m.lang.clone(),
                        messages: 0,
                        right: 0,
                        accuracy: 0.0,
                        mixed_labelled: 0,
                        mixed_right: 0,
                        confused_with: BTreeMap::new(),
                        examples: Vec::new(),
                    });
                    rows.len() - 1
                }
            };
            let row = &mut rows[at];
            row.messages += 1;
            if guess.lang == m.lang {
                row.right += 1;
            } else {
                *row.confused_with.entry(guess.lang.clone()).or_default() += 1;
                if row.examples.len() < 5 {
                    row.examples.push((m.text.clone(), guess.lang.clone()));
                }
            }
            if let Some(mixed) = m.mixed {
                row.mixed_labelled += 1;
                row.mixed_right += usize::from(guess.mixed == mixed);
            }
        }
    }
    for r in &mut rows {
        r.accuracy = 100.0 * r.right as f64 / r.messages.max(1) as f64;
    }
    LanguageReport {
        rows,
        messages,
        us_per_message: spent * 1e6 / messages.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(text: &str, lang: &str, mixed: Option<bool>) -> Labelled {
        Labelled {
            text: text.into(),
            lang: lang.into(),
            mixed,
        }
    }

    #[test]
    fn rows_count_right_wrong_and_mixed_per_source_and_language() {
        let sources = vec![
            (
                "a".to_owned(),
                vec![
                    labelled("where is my order", "en", None),
                    // Chinese text labelled French: counted wrong, confused with zh.
                    labelled("我的订单在哪里", "fr", None),
                    labelled("我的order还没到", "zh", Some(true)),
                    labelled("我的订单还没到", "zh", Some(true)),
                ],
            ),
            (
                "b".to_owned(),
                vec![labelled("Bonjour, où est ma commande ?", "fr", None)],
            ),
        ];
        let r = run(&sources);
        assert_eq!(r.messages, 5);
        let keys: Vec<(&str, &str, usize)> = r
            .rows
            .iter()
            .map(|x| (x.source.as_str(), x.lang.as_str(), x.messages))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", "en", 1),
                ("a", "fr", 1),
                ("a", "zh", 2),
                ("b", "fr", 1)
            ]
        );
        assert_eq!(r.rows[0].accuracy, 100.0);
        assert_eq!(r.rows[1].accuracy, 0.0);
        assert_eq!(r.rows[1].confused_with.get("zh"), Some(&1));
        assert_eq!(r.rows[1].examples[0].1, "zh");
        // Both Chinese rows are zh; only the first mixes in English, so one of the two mixed labels is right.
        assert_eq!(r.rows[2].accuracy, 100.0);
        assert_eq!((r.rows[2].mixed_labelled, r.rows[2].mixed_right), (2, 1));
        assert_eq!(r.rows[3].accuracy, 100.0);
    }

    #[test]
    fn a_bad_line_names_its_number() {
        let e = parse_set("{\"text\":\"hi\",\"lang\":\"en\"}\n\n{\"text\":1}\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let ok = parse_set("{\"text\":\"我的order\",\"lang\":\"zh\",\"mixed\":true}\n").unwrap();
        assert_eq!(ok[0].mixed, Some(true));
    }

    #[test]
    fn the_committed_set_parses_and_covers_its_languages() {
        let set = parse_set(include_str!("../../../../eval/datasets/language-set.jsonl")).unwrap();
        let langs: std::collections::BTreeSet<&str> = set.iter().map(|m| m.lang.as_str()).collect();
        assert!(langs.len() >= 16, "{langs:?}");
        assert!(set.iter().filter(|m| m.mixed == Some(true)).count() >= 20);
    }
}
