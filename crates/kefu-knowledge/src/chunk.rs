//! Blocks → chunks. A chunk never crosses a heading, packs whole paragraphs while they fit, splits a paragraph that
//! does not fit at sentence ends (so no chunk cuts a Chinese or English sentence), and cuts inside a sentence only
//! when that one sentence alone is over the budget. Sizes are in estimated model tokens ([`text::estimate_tokens`]).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::parse::{Block, FaqEntry, Location, Parsed};
use crate::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkOptions {
    /// Upper bound of a passage chunk, in estimated tokens. FAQ entries are kept whole whatever their length.
    pub max_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        // Under half of e5's 512-token window with the heading path prepended; long enough to hold a policy
        // paragraph with its conditions, short enough that a hit points at the answer rather than a page.
        Self { max_tokens: 256 }
    }
}

/// A chunk before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkDraft {
    pub headings: Vec<String>,
    pub text: String,
    pub location: Location,
    pub tokens: usize,
    pub lang: &'static str,
    pub faq: Option<FaqEntry>,
}

impl ChunkDraft {
    /// Identity of the content for deduplication and embedding reuse: whitespace and case do not count.
    pub fn content_hash(&self) -> String {
        content_hash(&self.headings, &self.text)
    }
}

pub fn content_hash(headings: &[String], text: &str) -> String {
    let mut h = Sha256::new();
    for part in headings.iter().map(String::as_str).chain([text]) {
        for c in part
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
        {
            let mut b = [0u8; 4];
            h.update(c.encode_utf8(&mut b).as_bytes());
        }
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The text the embedder sees for a passage: the heading path (and the document title) give it its context.
pub fn embed_text(title: Option<&str>, headings: &[String], text: &str) -> String {
    let mut path: Vec<&str> = Vec::new();
    if let Some(t) = title.filter(|t| headings.first().map(String::as_str) != Some(*t)) {
        path.push(t);
    }
    path.extend(headings.iter().map(String::as_str));
    if path.is_empty() {
        text.to_owned()
    } else {
        format!("{}\n{text}", path.join(" > "))
    }
}

/// Chunks a parsed file; identical chunks within it are kept once.
pub fn chunk(parsed: &Parsed, opts: ChunkOptions) -> Vec<ChunkDraft> {
    let drafts = match parsed {
        Parsed::Passages { blocks, .. } => chunk_blocks(blocks, opts),
        Parsed::Faq(entries) => entries.iter().map(faq_chunk).collect(),
    };
    let mut seen = HashSet::new();
    drafts
        .into_iter()
        .filter(|d| seen.insert(d.content_hash()))
        .collect()
}

fn faq_chunk(e: &FaqEntry) -> ChunkDraft {
    let text = format!("{}\n{}", e.question, e.answer);
    ChunkDraft {
        headings: Vec::new(),
        tokens: text::estimate_tokens(&text),
        lang: text::detect_lang(&text),
        text,
        location: e.location.clone(),
        faq: Some(e.clone()),
    }
}

/// One unit the packer places: a whole block, a sentence of a long block, or a piece of an over-long sentence.
struct Piece<'a> {
    text: &'a str,
    tokens: usize,
    location: &'a Location,
    /// First piece of its block: joined to the previous piece with a paragraph break.
    starts_block: bool,
}

pub fn chunk_blocks(blocks: &[Block], opts: ChunkOptions) -> Vec<ChunkDraft> {
    let max = opts.max_tokens.max(8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        // A section: consecutive blocks under the same headings.
        let j = blocks[i..]
            .iter()
            .position(|b| b.headings != blocks[i].headings)
            .map_or(blocks.len(), |p| i + p);
        let mut pieces = Vec::new();
        for b in &blocks[i..j] {
            let text = b.text.trim();
            if text.is_empty() {
                continue;
            }
            let tokens = text::estimate_tokens(text);
            if tokens <= max {
                pieces.push(Piece {
                    text,
                    tokens,
                    location: &b.location,
                    starts_block: true,
                });
                continue;
            }
            let mut first = true;
            for sentence in text::split_sentences(text) {
                for part in split_to_budget(sentence, max) {
                    let tokens = text::estimate_tokens(part);
                    if tokens == 0 && part.trim().is_empty() {
                        continue;
                    }
                    pieces.push(Piece {
                        text: part,
                        tokens,
                        location: &b.location,
                        starts_block: first,
                    });
                    first = false;
                }
            }
        }
        pack(&blocks[i].headings, &pieces, max, &mut out);
        i = j;
    }
    out
}

fn pack(headings: &[String], pieces: &[Piece<'_>], max: usize, out: &mut Vec<ChunkDraft>) {
    let mut text = String::new();
    let mut tokens = 0usize;
    let mut location: Option<Location> = None;
    let mut flush = |text: &mut String, tokens: &mut usize, location: &mut Option<Location>| {
        let t = text.trim();
        if !t.is_empty() {
            out.push(ChunkDraft {
                headings: headings.to_vec(),
                text: t.to_owned(),
                tokens: text::estimate_tokens(t),
                lang: text::detect_lang(t),
                location: location.take().unwrap_or_default(),
                faq: None,
            });
        }
        text.clear();
        *tokens = 0;
        *location = None;
    };
    for p in pieces {
        if tokens > 0 && tokens + p.tokens > max {
            flush(&mut text, &mut tokens, &mut location);
        }
        if !text.is_empty() && p.starts_block {
            text.truncate(text.trim_end().len());
            text.push_str("\n\n");
        }
        text.push_str(p.text);
        tokens += p.tokens;
        location = Some(match location {
            Some(l) => l.merge(p.location),
            None => p.location.clone(),
        });
    }
    flush(&mut text, &mut tokens, &mut location);
}

/// Cuts an over-long sentence into pieces of at most `max` estimated tokens, preferring a space near the end of
/// each piece so Latin words stay whole. Returns the sentence itself when it fits.
fn split_to_budget(sentence: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = sentence;
    while text::estimate_tokens(rest) > max {
        // Largest char-boundary prefix within budget (binary search over char positions).
        let bounds: Vec<usize> = rest
            .char_indices()
            .map(|(i, _)| i)
            .skip(1)
            .chain([rest.len()])
            .collect();
        let (mut lo, mut hi) = (0usize, bounds.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if text::estimate_tokens(&rest[..bounds[mid]]) <= max {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut cut = bounds[lo];
        if let Some(space) = rest[..cut]
            .rfind(char::is_whitespace)
            .filter(|&s| s > cut / 2)
        {
            cut = space + rest[space..].chars().next().map_or(1, char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(headings: &[&str], text: &str, line: u32) -> Block {
        Block {
            headings: headings.iter().map(|h| h.to_string()).collect(),
            text: text.to_owned(),
            location: Location::lines(line, line),
        }
    }

    #[test]
    fn sections_do_not_mix_and_paragraphs_pack() {
        let blocks = vec![
            block(&["退货"], "收到商品7天内可以退货。", 1),
            block(&["退货"], "退货运费由买家承担。", 2),
            block(&["退款"], "退款3到5个工作日到账。", 3),
        ];
        let c = chunk_blocks(&blocks, ChunkOptions::default());
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].text, "收到商品7天内可以退货。\n\n退货运费由买家承担。");
        assert_eq!(c[0].location, Location::lines(1, 2));
        assert_eq!(c[1].headings, vec!["退款".to_string()]);
        assert_eq!(c[1].lang, "zh");
    }

    #[test]
    fn long_chinese_paragraphs_split_only_at_sentence_ends() {
        let sentence = "会员在活动期间购买指定商品可以享受额外的积分奖励和专属优惠券。";
        let para = sentence.repeat(20);
        let c = chunk_blocks(&[block(&[], &para, 1)], ChunkOptions { max_tokens: 100 });
        assert!(c.len() >= 6, "{}", c.len());
        for ch in &c {
            assert!(ch.text.ends_with('。'), "cut mid-sentence: {}", ch.text);
            assert!(ch.tokens <= 100);
            assert_eq!(
                ch.text.matches(sentence).count() * sentence.len(),
                ch.text.len()
            );
        }
    }

    #[test]
    fn over_long_sentences_are_cut_at_spaces_within_budget() {
        let s = "word ".repeat(500);
        let c = chunk_blocks(&[block(&[], &s, 1)], ChunkOptions { max_tokens: 64 });
        assert!(c
            .iter()
            .all(|ch| ch.tokens <= 64 && !ch.text.contains("wo rd")));
        assert_eq!(
            c.iter()
                .map(|ch| ch.text.split_whitespace().count())
                .sum::<usize>(),
            500
        );
    }

    #[test]
    fn identical_chunks_are_kept_once_and_hash_ignores_whitespace() {
        let parsed = Parsed::Passages {
            title: None,
            blocks: vec![
                block(&["A"], "Same text.", 1),
                block(&["B"], "Other.", 2),
                block(&["A"], "Same  text.", 3),
            ],
        };
        let c = chunk(&parsed, ChunkOptions::default());
        assert_eq!(c.len(), 2);
        assert_eq!(content_hash(&[], "a b"), content_hash(&[], "A  B"));
        assert_ne!(content_hash(&["x".into()], "a"), content_hash(&[], "a"));
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("退款将在三个工作日内原路返回。".to_string()),
            Just("请提供订单号".to_string()),
            Just("Refunds take 3-5 days. ".to_string()),
            Just("averyveryverylongwordwithoutspaces".to_string()),
            Just("\n".to_string()),
            Just("！？".to_string()),
            Just(" ".to_string()),
            "[a-z0-9 ]{0,12}",
            "[\\u4e00-\\u9fa5]{0,30}",
        ];
        prop::collection::vec(piece, 0..80).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn chunks_cover_the_text_and_respect_the_budget(
            paras in prop::collection::vec((0usize..3, text_strategy()), 1..6),
            max in 8usize..200,
        ) {
            let blocks: Vec<Block> = paras.iter().enumerate()
                .map(|(i, (h, t))| block(&[["A", "B", "C"][*h]], t, i as u32 + 1))
                .collect();
            let chunks = chunk_blocks(&blocks, ChunkOptions { max_tokens: max });
            let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            let expected: String = blocks.iter().map(|b| squash(&b.text)).collect();
            let got: String = chunks.iter().map(|c| squash(&c.text)).collect();
            prop_assert_eq!(got, expected);
            for c in &chunks {
                prop_assert!(!c.text.trim().is_empty());
                prop_assert!(c.tokens <= max, "{} tokens > {}: {:?}", c.tokens, max, c.text);
            }
        }
    }
}
