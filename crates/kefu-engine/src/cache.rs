//! When two customer questions are the same question, so that a verified answer to one may be reused for the other:
//! the matcher behind the answer cache, measured on the BQ corpus (`kefu eval cache`, bench/RESULTS.md).
//!
//! Reusing an answer for a *different* question is worse than not reusing it, so the matcher is built for
//! precision: besides lexical (character pairs) and semantic (sentence-embedding cosine) likeness, two guards veto
//! a match outright — the questions carry different figures ("3 天" vs "5 天", "KF20261101" vs "KF20261108"), or one is
//! negated and the other is not ("能退" vs "不能退").

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use uuid::Uuid;

/// The signals for one pair of questions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Likeness {
    /// Dice coefficient of the character pairs (CJK) and words (Latin), 0–1.
    pub lexical: f32,
    /// Cosine of the two sentence embeddings, when there are some.
    pub dense: Option<f32>,
    /// The figures differ.
    pub figures_differ: bool,
    /// One is negated, the other is not.
    pub negation_differs: bool,
}

/// How the signals are combined into one score (chosen by measurement; see `kefu eval cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scorer {
    Lexical,
    Dense,
    /// The mean of both.
    Mean,
    /// The mean, vetoed by the guards.
    Guarded,
    /// The dense cosine, vetoed by the guards.
    DenseGuarded,
    /// The lower of the two (both must agree), vetoed by the guards.
    MinGuarded,
}

impl Scorer {
    pub const ALL: [Scorer; 6] = [
        Scorer::Lexical,
        Scorer::Dense,
        Scorer::Mean,
        Scorer::Guarded,
        Scorer::DenseGuarded,
        Scorer::MinGuarded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scorer::Lexical => "lexical",
            Scorer::Dense => "dense",
            Scorer::Mean => "mean",
            Scorer::Guarded => "mean+guards",
            Scorer::DenseGuarded => "dense+guards",
            Scorer::MinGuarded => "min+guards",
        }
    }

    pub fn score(self, l: &Likeness) -> f32 {
        let dense = l.dense.unwrap_or(l.lexical);
        match self {
            Scorer::Lexical => l.lexical,
            Scorer::Dense => dense,
            Scorer::Mean => (l.lexical + dense) / 2.0,
            Scorer::Guarded | Scorer::DenseGuarded | Scorer::MinGuarded
                if l.figures_differ || l.negation_differs =>
            {
                0.0
            }
            Scorer::Guarded => (l.lexical + dense) / 2.0,
            Scorer::DenseGuarded => dense,
            Scorer::MinGuarded => l.lexical.min(dense),
        }
    }
}

/// The signals of a pair; `dense` is the cosine of their embeddings if the caller has them.
pub fn likeness(a: &str, b: &str, dense: Option<f32>) -> Likeness {
    let (ta, tb) = (units(a), units(b));
    let common = ta.intersection(&tb).count();
    let lexical = if ta.is_empty() && tb.is_empty() {
        1.0
    } else {
        2.0 * common as f32 / (ta.len() + tb.len()) as f32
    };
    Likeness {
        lexical,
        dense,
        figures_differ: figures(a) != figures(b),
        negation_differs: negated(a) != negated(b),
    }
}

/// Character pairs of CJK runs and lower-cased Latin words.
fn units(text: &str) -> BTreeSet<String> {
    let folded = kefu_nlu::text::fold_str(text);
    let mut out = BTreeSet::new();
    let chars: Vec<char> = folded
        .chars()
        .filter(|c| c.is_alphanumeric() || kefu_nlu::text::is_cjk(*c))
        .collect();
    for w in chars.windows(2) {
        if kefu_nlu::text::is_cjk(w[0]) || kefu_nlu::text::is_cjk(w[1]) {
            out.insert(w.iter().collect());
        }
    }
    for word in folded.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            out.insert(word.to_owned());
        }
    }
    out
}

/// The numbers in a text, as a sorted list (Chinese numerals for small counts included).
fn figures(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in kefu_nlu::text::fold_str(text).chars() {
        let d = match c {
            '0'..='9' => Some(c),
            '一' => Some('1'),
            '二' | '两' => Some('2'),
            '三' => Some('3'),
            '四' => Some('4'),
            '五' => Some('5'),
            '六' => Some('6'),
            '七' => Some('7'),
            '八' => Some('8'),
            '九' => Some('9'),
            '十' => Some('X'),
            _ => None,
        };
        match d {
            Some(d) => cur.push(d),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    // "一" is mostly a word part (一下, 一直, 一个), not a count: only longer runs or digits count.
    out.retain(|f| f != "1" || text.contains('1'));
    out.sort();
    out
}

/// Whether the question is negated (an odd number of negations).
fn negated(text: &str) -> bool {
    let t = kefu_nlu::text::fold_str(text);
    // Words that contain a negation character without negating.
    let t = [
        "不用谢",
        "不客气",
        "无线",
        "无理由",
        "不知道",
        "是不是",
        "能不能",
        "可不可以",
        "有没有",
        "会不会",
        "要不要",
    ]
    .iter()
    .fold(t, |t, w| t.replace(w, ""));
    let zh = t
        .chars()
        .filter(|c| matches!(c, '不' | '没' | '未' | '别' | '无' | '非'))
        .count();
    let en = t
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '\'')
        .filter(|w| matches!(*w, "not" | "no" | "never" | "cannot") || w.ends_with("n't"))
        .count();
    (zh + en) % 2 == 1
}

/// A source passage of a cached answer: its chunk and a fingerprint of its text, to notice when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub chunk: Uuid,
    pub fingerprint: u64,
}

/// The fingerprint of a passage's text (change detection, not security).
pub fn fingerprint(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// A verified answer: grounded, confident, not personal (no profile, tool result or PII in its prompt), from an
/// unflagged conversation, given to a customer who was not upset.
#[derive(Debug, Clone)]
pub struct Entry {
    pub language: String,
    /// The customer segment the answer was written for (their tier, when the business serves tiers differently);
    /// `None`: the same for everyone. Reused only within the same segment.
    pub segment: Option<String>,
    pub intent: Option<String>,
    /// The question as masked for the model.
    pub question: String,
    pub vector: Option<Vec<f32>>,
    pub answer: String,
    pub sources: Vec<Source>,
    /// Prompt + completion tokens the original answer cost: what each reuse saves.
    pub tokens: i64,
    pub expires: Instant,
    /// The conversations that got this answer (where it was written, then every reuse): a poor rating of any of
    /// them drops it.
    pub conversations: Vec<Uuid>,
}

/// A reuse.
#[derive(Debug, Clone)]
pub struct CacheHit {
    pub answer: String,
    pub score: f32,
    pub sources: Vec<Source>,
    pub tokens: i64,
    /// Its place, to drop it when a source changed.
    pub key: (Uuid, usize, Instant),
}

/// Per tenant: lookups, hits and tokens saved since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub lookups: u64,
    pub hits: u64,
    pub stored: u64,
    pub tokens_saved: i64,
}

/// The answer cache of one node: per tenant and language, the verified answers of the last hours, matched with
/// [`Scorer::DenseGuarded`] when both questions have embeddings, else [`Scorer::Guarded`] on the lexical signal. It is derived data — a restart starts it empty, and each node has its own.
pub struct AnswerCache {
    tenants: Mutex<HashMap<Uuid, Vec<Entry>>>,
    stats: Mutex<HashMap<Uuid, CacheStats>>,
    max_per_tenant: usize,
}

impl AnswerCache {
    pub fn new(max_per_tenant: usize) -> Self {
        Self {
            tenants: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            max_per_tenant,
        }
    }

    /// The best live entry of this language and customer segment for a question at or above the threshold
    /// (`dense_threshold` when both sides have vectors, else `lexical_threshold`).
    #[allow(clippy::too_many_arguments)]
    pub fn lookup(
        &self,
        tenant: Uuid,
        language: &str,
        segment: Option<&str>,
        question: &str,
        vector: Option<&[f32]>,
        thresholds: (f32, f32),
        now: Instant,
    ) -> Option<CacheHit> {
        self.stats.lock().entry(tenant).or_default().lookups += 1;
        let mut tenants = self.tenants.lock();
        let entries = tenants.get_mut(&tenant)?;
        entries.retain(|e| e.expires > now);
        let mut best: Option<(f32, usize)> = None;
        for (i, e) in entries.iter().enumerate() {
            if e.language != language || e.segment.as_deref() != segment {
                continue;
            }
            let dense = match (vector, e.vector.as_deref()) {
                (Some(a), Some(b)) if a.len() == b.len() => Some(cosine(a, b)),
                _ => None,
            };
            let threshold = if dense.is_some() {
                thresholds.0
            } else {
                thresholds.1
            };
            let scorer = if dense.is_some() {
                Scorer::DenseGuarded
            } else {
                Scorer::Guarded
            };
            let score = scorer.score(&likeness(question, &e.question, dense));
            if score >= threshold && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        let (score, i) = best?;
        let e = &entries[i];
        Some(CacheHit {
            answer: e.answer.clone(),
            score,
            sources: e.sources.clone(),
            tokens: e.tokens,
            key: (tenant, i, e.expires),
        })
    }

    /// Counts a hit that was served in `conversation`.
    pub fn served(&self, hit: &CacheHit, conversation: Uuid) {
        let (tenant, i, expires) = hit.key;
        {
            let mut stats = self.stats.lock();
            let s = stats.entry(tenant).or_default();
            s.hits += 1;
            s.tokens_saved += hit.tokens;
        }
        let mut tenants = self.tenants.lock();
        if let Some(e) = tenants
            .get_mut(&tenant)
            .and_then(|es| es.get_mut(i))
            .filter(|e| e.expires == expires)
        {
            if !e.conversations.contains(&conversation) {
                e.conversations.push(conversation);
            }
        }
    }

    /// The customer disliked a conversation (a poor rating): its answers are not reused. Returns how many left.
    pub fn disliked(&self, tenant: Uuid, conversation: Uuid) -> usize {
        let mut tenants = self.tenants.lock();
        let Some(entries) = tenants.get_mut(&tenant) else {
            return 0;
        };
        let before = entries.len();
        entries.retain(|e| !e.conversations.contains(&conversation));
        before - entries.len()
    }

    /// Drops the entry of a hit whose sources changed.
    pub fn invalidate(&self, hit: &CacheHit) {
        let (tenant, i, expires) = hit.key;
        let mut tenants = self.tenants.lock();
        if let Some(entries) = tenants.get_mut(&tenant) {
            if entries.get(i).is_some_and(|e| e.expires == expires) {
                entries.remove(i);
            }
        }
    }

    pub fn insert(&self, tenant: Uuid, entry: Entry) {
        let mut tenants = self.tenants.lock();
        let entries = tenants.entry(tenant).or_default();
        if entries.len() >= self.max_per_tenant {
            // The oldest goes first.
            entries.remove(0);
        }
        entries.push(entry);
        self.stats.lock().entry(tenant).or_default().stored += 1;
    }

    pub fn stats(&self, tenant: Uuid) -> CacheStats {
        self.stats.lock().get(&tenant).copied().unwrap_or_default()
    }

    /// How long an answer to this intent may be reused.
    pub fn ttl(policy: &crate::Policy, intent: Option<&str>) -> Duration {
        let secs = intent
            .and_then(|i| policy.cache_ttl_by_intent.get(i))
            .copied()
            .unwrap_or(policy.cache_ttl_secs);
        Duration::from_secs(secs)
    }
}

/// Cosine of two vectors, normalised or not (encoders differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    use kefu_llm::dot;
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paraphrases_are_alike_and_guards_veto() {
        let same = likeness("退款多久能到账", "退款多长时间到账", None);
        assert!(same.lexical > 0.4, "{same:?}");
        assert!(!same.figures_differ && !same.negation_differs);
        assert!(likeness("3天能到吗", "5天能到吗", None).figures_differ);
        assert!(likeness("订单 KF20261101", "订单 KF20261108", None).figures_differ);
        assert!(!likeness("一下子就到了吗", "很快到吗", None).figures_differ);
        assert!(likeness("可以退货吗", "不可以退货吗", None).negation_differs);
        assert!(!likeness("能不能退货", "可以退货吗", None).negation_differs);
        assert!(likeness("can I return it", "can't I return it", None).negation_differs);
        let g = Scorer::Guarded;
        assert_eq!(g.score(&likeness("3天能到吗", "3天能到吗", Some(1.0))), 1.0);
        assert_eq!(
            g.score(&likeness("3天能到吗", "5天能到吗", Some(0.99))),
            0.0
        );
        assert!(Scorer::Mean.score(&likeness("3天能到吗", "5天能到吗", Some(0.99))) > 0.5);
    }

    /// A cached answer to `q`, live for a minute from `now`, given in `conv`.
    fn test_entry(q: &str, lang: &str, conv: Uuid, now: Instant) -> Entry {
        Entry {
            language: lang.into(),
            segment: None,
            intent: None,
            question: q.into(),
            vector: None,
            answer: format!("answer to {q}"),
            sources: vec![],
            tokens: 100,
            expires: now + Duration::from_secs(60),
            conversations: vec![conv],
        }
    }

    #[test]
    fn a_poor_rating_drops_the_answers_that_conversation_got() {
        let cache = AnswerCache::new(10);
        let t = Uuid::new_v4();
        let now = Instant::now();
        let (writer, reuser) = (Uuid::new_v4(), Uuid::new_v4());
        let entry = |q: &str, conv: Uuid| test_entry(q, "zh", conv, now);
        cache.insert(t, entry("退款多久能到账", writer));
        cache.insert(t, entry("怎么开发票", writer));
        cache.insert(t, entry("支持货到付款吗", Uuid::new_v4()));
        let th = (0.9, 0.6);
        let hit = cache
            .lookup(t, "zh", None, "退款多久能到账呢", None, th, now)
            .unwrap();
        cache.served(&hit, reuser);
        assert_eq!(cache.stats(t).hits, 1);
        // The customer who got the reused answer rates the chat 1★: that answer goes, the others stay.
        assert_eq!(cache.disliked(t, reuser), 1);
        assert!(cache
            .lookup(t, "zh", None, "退款多久能到账呢", None, th, now)
            .is_none());
        assert!(cache
            .lookup(t, "zh", None, "怎么开发票呢", None, th, now)
            .is_some());
        assert_eq!(cache.disliked(t, writer), 1);
        assert_eq!(cache.disliked(Uuid::new_v4(), writer), 0);
        assert!(cache
            .lookup(t, "zh", None, "支持货到付款吗", None, th, now)
            .is_some());
    }

    #[test]
    fn the_cache_reuses_by_language_expires_and_invalidates() {
        let cache = AnswerCache::new(2);
        let t = Uuid::new_v4();
        let now = Instant::now();
        let entry = |q: &str, lang: &str| test_entry(q, lang, Uuid::nil(), now);
        cache.insert(t, entry("退款多久能到账", "zh"));
        let th = (0.9, 0.6);
        let hit = cache
            .lookup(t, "zh", None, "退款多久能到账呢", None, th, now)
            .expect("a paraphrase hits");
        assert_eq!(hit.answer, "answer to 退款多久能到账");
        assert!(cache
            .lookup(t, "en", None, "退款多久能到账呢", None, th, now)
            .is_none());
        assert!(cache
            .lookup(Uuid::new_v4(), "zh", None, "退款多久能到账", None, th, now)
            .is_none());
        assert!(cache
            .lookup(t, "zh", None, "怎么修改地址", None, th, now)
            .is_none());
        assert!(
            cache
                .lookup(
                    t,
                    "zh",
                    None,
                    "退款多久能到账",
                    None,
                    th,
                    now + Duration::from_secs(61)
                )
                .is_none(),
            "expired"
        );
        cache.insert(t, entry("运费谁出", "zh"));
        let hit = cache
            .lookup(t, "zh", None, "运费谁出", None, th, now)
            .unwrap();
        cache.invalidate(&hit);
        assert!(cache
            .lookup(t, "zh", None, "运费谁出", None, th, now)
            .is_none());
        cache.served(&hit, Uuid::new_v4());
        let s = cache.stats(t);
        assert_eq!((s.hits, s.tokens_saved, s.stored), (1, 100, 2));
    }

    /// An answer written for one customer segment is not reused for another, nor for customers of none.
    #[test]
    fn answers_are_reused_within_their_customer_segment() {
        let cache = AnswerCache::new(10);
        let t = Uuid::new_v4();
        let now = Instant::now();
        let th = (0.9, 0.6);
        let mut gold = test_entry("退货运费谁承担", "zh", Uuid::new_v4(), now);
        gold.segment = Some("gold".into());
        cache.insert(t, gold);
        let hit = cache.lookup(t, "zh", Some("gold"), "退货运费谁承担呢", None, th, now);
        assert!(hit.is_some());
        for other in [Some("regular"), None] {
            assert!(cache
                .lookup(t, "zh", other, "退货运费谁承担呢", None, th, now)
                .is_none());
        }
        cache.insert(t, test_entry("怎么开发票", "zh", Uuid::new_v4(), now));
        assert!(cache
            .lookup(t, "zh", None, "怎么开发票呢", None, th, now)
            .is_some());
        assert!(cache
            .lookup(t, "zh", Some("gold"), "怎么开发票呢", None, th, now)
            .is_none());
    }

    #[test]
    fn unrelated_questions_are_not() {
        let l = likeness("怎么修改收货地址", "优惠券怎么用", Some(0.2));
        assert!(Scorer::Guarded.score(&l) < 0.3, "{l:?}");
    }
}
