//! Sparse TF-IDF features for the intent classifier: word uni/bigrams (jieba words inside Chinese runs) and
//! character n-grams over the folded text, each block L2-normalised on its own, plus the sentence embeddings of
//! the configured encoders appended as dense blocks.

use std::collections::HashMap;
use std::sync::OnceLock;

use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};

use crate::text::{fold_str, is_cjk, strip_controls};

fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Longest word n-gram (1 = unigrams only).
    pub word_ngrams: usize,
    /// Character n-gram lengths, inclusive.
    pub char_min: usize,
    pub char_max: usize,
    /// Terms seen in fewer training texts are dropped.
    pub min_df: u32,
    /// Weight of each block after its own L2 normalisation.
    pub word_weight: f32,
    pub char_weight: f32,
    pub dense_weight: f32,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            word_ngrams: 2,
            char_min: 1,
            char_max: 4,
            min_df: 2,
            word_weight: 1.0,
            char_weight: 1.0,
            // Chosen on BANKING77's development tenth with e5 and MiniLM vectors (bench/RESULTS.md).
            dense_weight: 2.0,
        }
    }
}

/// Word and character terms of a text, prefixed by block (`w:` / `c:`) so the two never share an id.
pub(crate) fn terms(text: &str, cfg: &FeatureConfig) -> (Vec<String>, Vec<String>) {
    let folded = fold_str(&strip_controls(text));
    let mut words: Vec<String> = Vec::new();
    // Letter and digit runs as they stand (Chinese not cut into words), for the character n-grams.
    let mut runs: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut run_cjk = false;
    let flush = |run: &mut String, cjk: bool, words: &mut Vec<String>| {
        if run.is_empty() {
            return;
        }
        if cjk {
            words.extend(
                jieba()
                    .cut_for_search(run, true)
                    .into_iter()
                    .map(|t| t.word.to_owned()),
            );
        } else {
            words.push(std::mem::take(run));
        }
        run.clear();
    };
    let mut whole = String::new();
    for c in folded.chars() {
        if c.is_alphanumeric() {
            let cjk = is_cjk(c);
            if cjk != run_cjk {
                flush(&mut run, run_cjk, &mut words);
                run_cjk = cjk;
            }
            run.push(c);
            whole.push(c);
        } else {
            if !whole.is_empty() {
                runs.push(std::mem::take(&mut whole));
            }
            flush(&mut run, run_cjk, &mut words);
        }
    }
    flush(&mut run, run_cjk, &mut words);
    if !whole.is_empty() {
        runs.push(whole);
    }

    let mut word_terms = Vec::with_capacity(words.len() * cfg.word_ngrams.max(1));
    for n in 1..=cfg.word_ngrams.max(1) {
        for w in words.windows(n) {
            word_terms.push(format!("w:{}", w.join(" ")));
        }
    }

    // Character n-grams over the letter and digit runs joined by single spaces, with a space at each end so
    // prefixes and suffixes are their own grams. Chinese stays as written: joining its jieba words with spaces
    // would break every gram that crosses a word boundary (SMP2017: −1 point, bench/RESULTS.md).
    let joined: Vec<char> = std::iter::once(' ')
        .chain(runs.join(" ").chars())
        .chain(std::iter::once(' '))
        .collect();
    let mut char_terms = Vec::new();
    if cfg.char_max > 0 {
        for n in cfg.char_min.max(1)..=cfg.char_max {
            for g in joined.windows(n) {
                if n == 1 && g[0] == ' ' {
                    continue;
                }
                let mut s = String::with_capacity(2 + 4 * n);
                s.push_str("c:");
                s.extend(g);
                char_terms.push(s);
            }
        }
    }
    (word_terms, char_terms)
}

/// A sparse vector: sorted, distinct feature ids with values.
pub(crate) type Sparse = Vec<(u32, f32)>;

/// The fitted vocabulary with inverse document frequencies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Vectorizer {
    pub config: FeatureConfig,
    /// Term of each feature id.
    pub terms: Vec<String>,
    pub idf: Vec<f32>,
    #[serde(skip)]
    pub index: HashMap<String, u32>,
}

impl Vectorizer {
    pub fn fit(texts: &[&str], config: &FeatureConfig) -> Vectorizer {
        let mut df: HashMap<String, u32> = HashMap::new();
        for t in texts {
            let (w, c) = terms(t, config);
            let mut seen: Vec<String> = w.into_iter().chain(c).collect();
            seen.sort_unstable();
            seen.dedup();
            for s in seen {
                *df.entry(s).or_default() += 1;
            }
        }
        let n = texts.len() as f32;
        let mut kept: Vec<(String, u32)> = df
            .into_iter()
            .filter(|(_, d)| *d >= config.min_df)
            .collect();
        // Sorted so the same data always gives the same feature ids (reproducible training).
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let idf = kept
            .iter()
            .map(|(_, d)| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        let terms: Vec<String> = kept.into_iter().map(|(t, _)| t).collect();
        let mut v = Vectorizer {
            config: config.clone(),
            terms,
            idf,
            index: HashMap::new(),
        };
        v.build_index();
        v
    }

    pub fn build_index(&mut self) {
        self.index = self
            .terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Sublinear TF × IDF, each block normalised to its weight.
    pub fn transform(&self, text: &str) -> Sparse {
        let (w, c) = terms(text, &self.config);
        let mut out = self.block(&w, self.config.word_weight);
        out.extend(self.block(&c, self.config.char_weight));
        out.sort_unstable_by_key(|e| e.0);
        out
    }

    fn block(&self, terms: &[String], weight: f32) -> Sparse {
        let mut tf: HashMap<u32, f32> = HashMap::new();
        for t in terms {
            if let Some(&id) = self.index.get(t) {
                *tf.entry(id).or_default() += 1.0;
            }
        }
        let mut v: Sparse = tf
            .into_iter()
            .map(|(id, f)| (id, (1.0 + f.ln()) * self.idf[id as usize]))
            .collect();
        // Sorted before summing: the same text must give bit-identical features (reproducible training).
        v.sort_unstable_by_key(|e| e.0);
        let norm = v.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
        if norm > 0.0 {
            for e in &mut v {
                e.1 *= weight / norm;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_runs_are_cut_into_words_and_chars() {
        let cfg = FeatureConfig::default();
        let (w, c) = terms("我要退款 refund please", &cfg);
        assert!(w.contains(&"w:退款".to_owned()), "{w:?}");
        assert!(w.contains(&"w:refund please".to_owned()), "{w:?}");
        assert!(c.contains(&"c:退款".to_owned()));
        assert!(c.contains(&"c: ref".to_owned()));
    }

    #[test]
    fn transform_normalises_each_block() {
        let cfg = FeatureConfig {
            min_df: 1,
            ..FeatureConfig::default()
        };
        let v = Vectorizer::fit(&["where is my card", "我的卡在哪里"], &cfg);
        let x = v.transform("where is my card");
        let norm2: f32 = x.iter().map(|e| e.1 * e.1).sum();
        // Two blocks of unit length.
        assert!((norm2 - 2.0).abs() < 1e-4, "{norm2}");
        assert!(v.transform("完全无关 zzz").len() < x.len());
    }
}
