//! The BM25 analyzer: Chinese runs segmented by jieba (search mode), other runs split at non-alphanumerics, then
//! lower-cased and stemmed with the English Snowball stemmer. Chinese text can additionally (or instead) be indexed
//! as single characters — which one is the default is decided by measurement (`kefu eval retrieval`).

use std::sync::LazyLock;

use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{
    Language, LowerCaser, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

use crate::text::is_cjk;

/// jieba's dictionary takes a few hundred milliseconds to load; it is loaded once, on first use, and shared.
static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// How runs of Chinese text become terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CjkMode {
    /// jieba words, search mode (long words also yield their dictionary sub-words).
    Words,
    /// One term per character.
    Chars,
    /// Both: words for precision, characters for recall on unseen or mis-segmented words.
    WordsAndChars,
}

impl CjkMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "words" => Some(CjkMode::Words),
            "chars" => Some(CjkMode::Chars),
            "words_and_chars" => Some(CjkMode::WordsAndChars),
            _ => None,
        }
    }
}

/// The analyzer registered with the BM25 index under [`ANALYZER`].
pub fn analyzer(mode: CjkMode) -> TextAnalyzer {
    TextAnalyzer::builder(MixedTokenizer { mode })
        .filter(LowerCaser)
        .filter(Stemmer::new(Language::English))
        .build()
}

pub const ANALYZER: &str = "kefu";

/// The terms an analyzer produces for `text`, in order (duplicates kept, as BM25 query terms).
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

#[derive(Clone)]
pub struct MixedTokenizer {
    mode: CjkMode,
}

pub struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

impl Tokenizer for MixedTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        let mut push = |from: usize, word: &str| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: from,
                offset_to: from + word.len(),
                position,
                text: word.to_owned(),
                position_length: 1,
            });
        };
        // Split into runs: CJK, alphanumeric (non-CJK), everything else (separators).
        let mut run_start: Option<(usize, bool)> = None;
        let emit = |start: usize, end: usize, cjk: bool, push: &mut dyn FnMut(usize, &str)| {
            let run = &text[start..end];
            if !cjk {
                push(start, run);
                return;
            }
            if matches!(self.mode, CjkMode::Words | CjkMode::WordsAndChars) {
                // Search mode: each word, preceded by its dictionary sub-words when it is long.
                for t in JIEBA.cut_for_search(run, true) {
                    if t.word.chars().any(is_cjk) {
                        push(start + t.byte_start, t.word);
                    }
                }
            }
            if matches!(self.mode, CjkMode::Chars | CjkMode::WordsAndChars) {
                for (i, c) in run.char_indices() {
                    push(start + i, &run[i..i + c.len_utf8()]);
                }
            }
        };
        for (i, c) in text.char_indices() {
            let class = if is_cjk(c) {
                Some(true)
            } else if c.is_alphanumeric() {
                Some(false)
            } else {
                None
            };
            match (run_start, class) {
                (Some((_, cjk)), Some(k)) if cjk == k => {}
                (Some((s, cjk)), _) => {
                    emit(s, i, cjk, &mut push);
                    run_start = class.map(|k| (i, k));
                }
                (None, Some(k)) => run_start = Some((i, k)),
                (None, None) => {}
            }
        }
        if let Some((s, cjk)) = run_start {
            emit(s, text.len(), cjk, &mut push);
        }
        VecTokenStream { tokens, next: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_text_segments_and_stems() {
        let mut a = analyzer(CjkMode::Words);
        let t = terms(
            &mut a,
            "iPhone 15的退款政策：Refunds processed within 3 days",
        );
        assert_eq!(
            t,
            vec![
                "iphon", "15", "的", "退款", "政策", "refund", "process", "within", "3", "day"
            ]
        );
        let mut c = analyzer(CjkMode::Chars);
        assert_eq!(terms(&mut c, "退款政策"), vec!["退", "款", "政", "策"]);
        let mut b = analyzer(CjkMode::WordsAndChars);
        assert_eq!(terms(&mut b, "退款"), vec!["退款", "退", "款"]);
    }

    #[test]
    fn search_mode_adds_sub_words_of_long_words() {
        let mut a = analyzer(CjkMode::Words);
        let t = terms(&mut a, "中华人民共和国");
        assert!(
            t.contains(&"中华人民共和国".to_string()) && t.contains(&"共和国".to_string()),
            "{t:?}"
        );
    }
}
