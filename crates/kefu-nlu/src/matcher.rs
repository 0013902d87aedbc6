//! A word matcher over normalised text, shared by moderation and the emotion lexicon: text and words are folded
//! (width, case, traditional → simplified), everything but letters and digits is skipped, and words in Latin
//! script must start and end at word edges. Matches come back as byte ranges of the original text.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use crate::text::fold;

/// The folded letters and digits of a text, each with its char index in the text.
struct Kept {
    text: String,
    /// Per byte of `text`: index into `chars` of the kept char starting there (only starts are read).
    char_at_byte: Vec<u32>,
    /// Per kept char: its index in the original chars.
    orig_char: Vec<u32>,
}

pub(crate) fn is_kept(c: char) -> bool {
    c.is_alphanumeric()
}

pub(crate) use crate::text::is_latin_letter;

fn keep(folded: &[char]) -> Kept {
    let mut k = Kept {
        text: String::with_capacity(folded.len()),
        char_at_byte: Vec::with_capacity(folded.len()),
        orig_char: Vec::new(),
    };
    for (i, &c) in folded.iter().enumerate() {
        if is_kept(c) {
            let idx = k.orig_char.len() as u32;
            for _ in 0..c.len_utf8() {
                k.char_at_byte.push(idx);
            }
            k.text.push(c);
            k.orig_char.push(i as u32);
        }
    }
    k.char_at_byte.push(k.orig_char.len() as u32);
    k
}

/// A match: the pattern's index and its byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WordMatch {
    pub pattern: usize,
    pub start: usize,
    pub end: usize,
}

pub(crate) struct WordMatcher {
    ac: Option<AhoCorasick>,
    latin: Vec<bool>,
    /// Length in kept chars of the longest pattern.
    pub longest: usize,
}

/// The matching key of a word: its folded letters and digits.
pub(crate) fn key(word: &str) -> String {
    fold(word)
        .chars
        .into_iter()
        .filter(|c| is_kept(*c))
        .collect()
}

impl WordMatcher {
    /// `keys` are [`key`]s, distinct and non-empty.
    pub fn new(keys: &[String]) -> Result<WordMatcher, aho_corasick::BuildError> {
        let latin = keys
            .iter()
            .map(|p| {
                p.chars().next().is_some_and(is_latin_letter)
                    || p.chars().last().is_some_and(is_latin_letter)
            })
            .collect();
        let longest = keys.iter().map(|p| p.chars().count()).max().unwrap_or(0);
        let ac = if keys.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    // A contiguous NFA builds fast for 100k+ words and scans at hundreds of MB/s.
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(keys)?,
            )
        };
        Ok(WordMatcher { ac, latin, longest })
    }

    /// Matches in `text`. `end_is_open`: the text may continue (a stream), so a Latin word touching the end is not
    /// yet known to end there and is not reported.
    pub fn find(&self, text: &str, end_is_open: bool) -> Vec<WordMatch> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        let folded = fold(text);
        let kept = keep(&folded.chars);
        let mut out = Vec::new();
        for m in ac.find_iter(&kept.text) {
            let first = kept.char_at_byte[m.start()] as usize;
            let last = kept.char_at_byte[m.end() - 1] as usize;
            let (o_first, o_last) = (
                kept.orig_char[first] as usize,
                kept.orig_char[last] as usize,
            );
            let p = m.pattern().as_usize();
            if self.latin[p] {
                let before = o_first.checked_sub(1).map(|i| folded.chars[i]);
                let after = folded.chars.get(o_last + 1).copied();
                if before.is_some_and(is_latin_letter) || after.is_some_and(is_latin_letter) {
                    continue;
                }
                if after.is_none() && end_is_open {
                    continue;
                }
            }
            out.push(WordMatch {
                pattern: p,
                start: folded.offsets[o_first],
                end: folded.offsets[o_last + 1],
            });
        }
        out
    }
}
