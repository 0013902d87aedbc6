//! Pure checks on what goes to the customer: how well a message matches a curated FAQ entry, whether an answer is
//! grounded in its sources, the turn's confidence, and restoring PII placeholders in a streamed answer.

use serde::Serialize;

use kefu_nlu::moderation::{Action, ModerationStream, Moderator};
use kefu_nlu::text::{fold_str, is_han};
use kefu_nlu::Vault;

/// How closely `message` matches an FAQ entry (its question and alternatives), 0–1: the best character-bigram
/// Dice overlap of the folded texts (letters, digits and Han only), raised by the dense cosine when the embedder
/// found the entry (`dense`, scaled from 0.80–0.95 to 0–1, the range where e5 separates paraphrases).
pub fn faq_match(message: &str, questions: &[&str], dense: Option<f32>) -> f32 {
    let m = bigrams(message);
    let lexical = questions
        .iter()
        .map(|q| dice(&m, &bigrams(q)))
        .fold(0.0f32, f32::max);
    let dense = dense.map_or(0.0, |c| ((c - 0.80) / 0.15).clamp(0.0, 1.0));
    lexical.max(dense)
}

fn bigrams(text: &str) -> Vec<(char, char)> {
    let chars: Vec<char> = fold_str(text)
        .chars()
        .filter(|c| c.is_alphanumeric() || is_han(*c))
        .collect();
    let mut out: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
    if chars.len() == 1 {
        out.push((chars[0], ' '));
    }
    out.sort_unstable();
    out
}

fn dice(a: &[(char, char)], b: &[(char, char)]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    // Multiset intersection of two sorted lists.
    let (mut i, mut j, mut common) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f32 / (a.len() + b.len()) as f32
}

/// Whether an answer is backed by its sources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grounding {
    /// 0–1: share of the answer's figures found in a source, lowered when passages were given but none is cited.
    pub score: f32,
    /// Passage numbers cited (`[1]`), in order of first use.
    pub cited: Vec<usize>,
    /// Citations of passages that do not exist.
    pub bad_citations: Vec<usize>,
    /// Figures (amounts, days, order numbers, dates) that appear in no source.
    pub unsupported: Vec<String>,
    pub grounded: bool,
}

/// Checks an answer against the passages it was given (numbered from 1) and the other sources it may use (the
/// conversation, tool results). Figures are where invented facts do harm (prices, days, order numbers), so every
/// figure must appear in some source; when passages were given, at least one must be cited and every citation
/// must exist.
pub fn check_grounding(answer: &str, passages: &[&str], other_sources: &[&str]) -> Grounding {
    let (cited, bad_citations) = citations(answer, passages.len());
    let figures = figures(&strip_citations(answer));
    let total = figures.len().max(1) as f32;
    let sources: Vec<String> = passages
        .iter()
        .chain(other_sources)
        .map(|s| normalise_figures(s))
        .collect();
    let unsupported: Vec<String> = figures
        .into_iter()
        .filter(|f| !sources.iter().any(|s| s.contains(&normalise_figures(f))))
        .collect();
    let mut score = 1.0 - unsupported.len() as f32 / total;
    // Small models often answer from the passages without citing them: an uncited answer passes when most of its
    // wording comes from the passages, at a lower score.
    let needs_citation = !passages.is_empty();
    let mut supported = true;
    if needs_citation && cited.is_empty() {
        let overlap = overlap(&strip_citations(answer), passages);
        supported = overlap >= 0.5;
        score *= if supported { 0.8 } else { 0.6 };
    }
    let grounded = unsupported.is_empty() && bad_citations.is_empty() && supported;
    Grounding {
        score: score.clamp(0.0, 1.0),
        cited,
        bad_citations,
        unsupported,
        grounded,
    }
}

/// Share of the answer's character bigrams found in the passages.
fn overlap(answer: &str, passages: &[&str]) -> f32 {
    let a = bigrams(answer);
    if a.is_empty() {
        return 1.0;
    }
    let known: std::collections::HashSet<(char, char)> =
        passages.iter().flat_map(|p| bigrams(p)).collect();
    a.iter().filter(|b| known.contains(b)).count() as f32 / a.len() as f32
}

/// `[1]`, `[2][3]`, `[1, 2]` → passage numbers.
fn citations(answer: &str, passages: usize) -> (Vec<usize>, Vec<usize>) {
    let mut cited = Vec::new();
    let mut bad = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inner = &after[..close];
        let nums: Vec<Option<usize>> = inner
            .split([',', '，', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse().ok())
            .collect();
        if !nums.is_empty() && nums.iter().all(Option::is_some) {
            for n in nums.into_iter().flatten() {
                let list = if (1..=passages).contains(&n) {
                    &mut cited
                } else {
                    &mut bad
                };
                if !list.contains(&n) {
                    list.push(n);
                }
            }
        }
        rest = &after[close + 1..];
    }
    (cited, bad)
}

fn strip_citations(answer: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if after[..close]
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, ',' | '，' | ' ')) =>
            {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Digit runs with their separators (`1,299.00`, `2024-05-01`, `KF-1001`'s `1001`, `7`), skipping list markers
/// (`1.` or `1、` at the start of a line).
fn figures(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        // Digits glued to a letter are part of a name (`w0`, `MP3`, `iPhone15`), not a figure.
        let in_word = start > 0 && chars[start - 1].is_ascii_alphabetic();
        while i < chars.len()
            && (chars[i].is_ascii_digit()
                || (matches!(chars[i], '.' | ',' | ':' | '-' | '/')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
        {
            i += 1;
        }
        let fig: String = chars[start..i].iter().collect();
        let at_line_start = chars[..start]
            .iter()
            .rev()
            .take_while(|c| **c != '\n')
            .all(|c| c.is_whitespace() || matches!(c, '-' | '*'));
        let list_marker =
            at_line_start && fig.len() <= 2 && matches!(chars.get(i), Some('.' | '、' | ')'));
        if !list_marker && !in_word {
            out.push(fig);
        }
    }
    out
}

/// Thousands separators and full-width digits do not make a figure different.
fn normalise_figures(text: &str) -> String {
    fold_str(text).replace(',', "")
}

/// The turn's confidence, 0–1: grounding weighs half, the classifier and retrieval a quarter each (a missing
/// signal counts as 0.5, neither good nor bad).
pub fn confidence(grounding: f32, intent: Option<f32>, retrieval: Option<f32>) -> f32 {
    (0.5 * grounding + 0.25 * intent.unwrap_or(0.5) + 0.25 * retrieval.unwrap_or(0.5))
        .clamp(0.0, 1.0)
}

/// Restores PII placeholders in a streamed answer: text from an unclosed `[` is held back until it closes (or is
/// clearly not a placeholder), so a placeholder split across chunks is restored whole.
pub struct RestoreStream<'a> {
    vault: &'a Vault,
    pending: String,
}

/// Longest placeholder (`[BANK_CARD_12]`, `[CUSTOM_LABEL_3]`) plus margin.
const MAX_PLACEHOLDER: usize = 40;

impl<'a> RestoreStream<'a> {
    pub fn new(vault: &'a Vault) -> Self {
        RestoreStream {
            vault,
            pending: String::new(),
        }
    }

    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let hold = match self.pending.rfind('[') {
            Some(i)
                if !self.pending[i..].contains(']') && self.pending.len() - i < MAX_PLACEHOLDER =>
            {
                i
            }
            _ => self.pending.len(),
        };
        let rest = self.pending.split_off(hold);
        let ready = std::mem::replace(&mut self.pending, rest);
        self.vault.restore(&ready)
    }

    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.vault.restore(&rest)
    }
}

/// What the customer sees of a streamed answer: placeholders restored, then the word list applied (a word split
/// across chunks is held back until it is known). After a blocking word nothing more is released.
pub struct ReplyFilter<'a> {
    restore: RestoreStream<'a>,
    moderation: Option<ModerationStream<'a>>,
    /// The strongest moderation action so far.
    pub action: Option<Action>,
}

impl<'a> ReplyFilter<'a> {
    pub fn new(vault: &'a Vault, moderator: Option<&'a Moderator>) -> Self {
        ReplyFilter {
            restore: RestoreStream::new(vault),
            moderation: moderator.map(Moderator::stream),
            action: None,
        }
    }

    /// Adds a chunk from the model; returns what can be shown now (possibly nothing).
    pub fn push(&mut self, chunk: &str) -> String {
        let restored = self.restore.push(chunk);
        self.moderate(restored, false)
    }

    /// The end of the answer: everything held back, checked.
    pub fn finish(&mut self) -> String {
        if self.blocked() {
            return String::new();
        }
        let restored = self.restore.finish();
        self.moderate(restored, true)
    }

    pub fn blocked(&self) -> bool {
        self.moderation.as_ref().is_some_and(|m| m.blocked())
    }

    fn moderate(&mut self, chunk: String, end: bool) -> String {
        let Some(m) = &mut self.moderation else {
            return chunk;
        };
        let mut v = m.push(&chunk);
        if end {
            let rest = m.finish();
            v.text.push_str(&rest.text);
            v.action = v.action.max(rest.action);
        }
        self.action = self.action.max(v.action);
        v.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_nlu::PiiDetector;
    use proptest::prelude::*;

    #[test]
    fn faq_match_is_high_for_the_same_question_and_low_for_another() {
        let qs = ["退货政策是什么", "怎么退货"];
        assert!(faq_match("退货政策是什么？", &qs, None) > 0.95);
        assert!(faq_match("你们的退货政策是什么", &qs, None) >= 0.75);
        assert!(faq_match("发票怎么开", &qs, None) < 0.35);
        let en = ["What is your return policy?"];
        assert!(faq_match("what's your return policy", &en, None) > 0.8);
        assert!(faq_match("how do I change my address", &en, None) < 0.35);
        // A strong dense match lifts a paraphrase with little word overlap.
        assert!(faq_match("can I send it back", &en, Some(0.95)) >= 0.99);
        assert!(faq_match("can I send it back", &en, Some(0.70)) < 0.3);
        assert_eq!(faq_match("", &en, None), 0.0);
    }

    #[test]
    fn grounded_answers_cite_and_use_only_known_figures() {
        let passages = [
            "签收后7天内可无理由退货，运费由买家承担。",
            "退款在审核通过后1-3个工作日到账。",
        ];
        let ok = check_grounding(
            "您可以在签收后7天内退货[1]，退款1-3个工作日到账[2]。",
            &passages,
            &[],
        );
        assert!(ok.grounded, "{ok:?}");
        assert_eq!(ok.cited, vec![1, 2]);
        assert_eq!(ok.score, 1.0);

        let invented = check_grounding("签收后15天内可以退货[1]。", &passages, &[]);
        assert!(!invented.grounded);
        assert_eq!(invented.unsupported, vec!["15"]);

        let unrelated = check_grounding("我们支持货到付款，请放心购买。", &passages, &[]);
        assert!(!unrelated.grounded, "uncited and not from the passages");
        assert!(unrelated.score < 0.7);
        let paraphrase =
            check_grounding("签收后7天内可无理由退货，运费由买家承担。", &passages, &[]);
        assert!(paraphrase.grounded, "uncited but taken from the passages");
        assert!(paraphrase.score < 1.0);

        let bad = check_grounding("见[3]。", &passages, &[]);
        assert_eq!(bad.bad_citations, vec![3]);
        assert!(!bad.grounded);

        // Figures from the conversation or a tool result are fine; list markers and separators are not figures.
        let order = check_grounding(
            "1. 您的订单 KF-1001 已发货\n2. 金额 1,299.00 元",
            &[],
            &["订单 KF-1001 金额 1299.00"],
        );
        assert!(order.grounded, "{order:?}");
        // No passages, no figures: nothing to contradict.
        assert!(check_grounding("您好！有什么可以帮您？", &[], &[]).grounded);
        assert!(!check_grounding("Your refund arrives in 5 days.", &[], &[]).grounded);
        assert!(
            check_grounding("The MP3 player and the iPhone15 case", &[], &[]).grounded,
            "names, not figures"
        );
    }

    #[test]
    fn confidence_weights() {
        assert_eq!(confidence(1.0, Some(1.0), Some(1.0)), 1.0);
        assert_eq!(confidence(0.0, Some(0.0), Some(0.0)), 0.0);
        assert_eq!(confidence(1.0, None, None), 0.75);
    }

    #[test]
    fn placeholders_split_across_chunks_are_restored_whole() {
        let masked = PiiDetector::new().mask("我的手机号是13812345678");
        let mut s = RestoreStream::new(&masked.vault);
        let mut out = String::new();
        for chunk in [
            "好的，已记录您的号码 [PH",
            "ONE_",
            "1]，稍后",
            "联系您 [注意]",
        ] {
            out.push_str(&s.push(chunk));
        }
        out.push_str(&s.finish());
        assert_eq!(out, "好的，已记录您的号码 13812345678，稍后联系您 [注意]");
    }

    proptest! {
        #[test]
        fn restoring_a_stream_equals_restoring_the_whole(cuts in proptest::collection::vec(0usize..60, 0..8)) {
            let masked = PiiDetector::new().mask("call 13812345678 or mail a@b.com, id 110101199003074514");
            let answer = format!("OK: {} and [{}] [x", masked.text, "not a placeholder");
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(answer.len())).filter(|c| answer.is_char_boundary(*c)).collect();
            bounds.sort_unstable();
            bounds.push(answer.len());
            let mut s = RestoreStream::new(&masked.vault);
            let (mut out, mut last) = (String::new(), 0);
            for b in bounds {
                out.push_str(&s.push(&answer[last..b]));
                last = b;
            }
            out.push_str(&s.finish());
            prop_assert_eq!(out, masked.vault.restore(&answer));
        }
    }
}
