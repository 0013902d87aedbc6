//! Emotion of a customer message: polarity (−1…1), intensity (0…1) and the emotions customer service acts on
//! (angry, anxious, frustrated, satisfied), from a zh/en lexicon written for customer service, with negation,
//! intensifiers, exclamation and shouting; and the conversation-level [`Trajectory`] that hand-off rules read
//! ("three negative turns in a row", "getting worse").
//!
//! The lexicon ships with kefu (no licensed training data is needed). A tenant with labelled messages can train a
//! polarity model with the intent classifier instead; `kefu eval emotion` measures both on ChnSentiCorp and the
//! airline tweets.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::matcher::{key, WordMatcher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Angry,
    Anxious,
    Frustrated,
    Satisfied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Polarity {
    Negative,
    Neutral,
    Positive,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmotionReading {
    pub polarity: Polarity,
    /// −1 (very negative) … 1 (very positive).
    pub score: f32,
    /// 0 (calm) … 1 (intense).
    pub intensity: f32,
    /// Emotions present, strongest first, with strengths in 0…1.
    pub emotions: Vec<(Emotion, f32)>,
}

impl EmotionReading {
    pub fn primary(&self) -> Option<Emotion> {
        self.emotions.first().map(|e| e.0)
    }
}

use Emotion::{Angry as A, Anxious as X, Frustrated as F, Satisfied as S};

/// (word, polarity weight, emotion). Weights: ±1 ordinary, ±2 strong.
const LEXICON: &[(&str, f32, Option<Emotion>)] = &[
    // Chinese: anger.
    ("生气", -2.0, Some(A)),
    ("气死", -2.0, Some(A)),
    ("愤怒", -2.0, Some(A)),
    ("火大", -2.0, Some(A)),
    ("恼火", -2.0, Some(A)),
    ("垃圾", -2.0, Some(A)),
    ("骗子", -2.0, Some(A)),
    ("欺骗", -2.0, Some(A)),
    ("坑人", -2.0, Some(A)),
    ("黑心", -2.0, Some(A)),
    ("投诉", -1.5, Some(A)),
    ("举报", -1.5, Some(A)),
    ("曝光", -1.5, Some(A)),
    ("报警", -1.5, Some(A)),
    ("消协", -1.5, Some(A)),
    ("12315", -1.5, Some(A)),
    ("太过分", -2.0, Some(A)),
    ("过分", -1.5, Some(A)),
    ("无耻", -2.0, Some(A)),
    ("恶心", -2.0, Some(A)),
    ("什么破", -2.0, Some(A)),
    ("破玩意", -2.0, Some(A)),
    ("态度差", -2.0, Some(A)),
    ("态度恶劣", -2.0, Some(A)),
    ("不像话", -1.5, Some(A)),
    ("岂有此理", -2.0, Some(A)),
    ("滚", -1.5, Some(A)),
    ("退钱", -1.5, Some(A)),
    // Chinese: anxiety.
    ("着急", -1.5, Some(X)),
    ("急死", -2.0, Some(X)),
    ("急用", -1.0, Some(X)),
    ("担心", -1.0, Some(X)),
    ("焦虑", -1.5, Some(X)),
    ("害怕", -1.0, Some(X)),
    ("怎么办", -1.0, Some(X)),
    ("赶紧", -1.0, Some(X)),
    ("尽快", -0.5, Some(X)),
    ("马上", -0.5, Some(X)),
    ("催", -1.0, Some(X)),
    ("万一", -0.5, Some(X)),
    ("来不及", -1.5, Some(X)),
    // Chinese: frustration.
    ("失望", -2.0, Some(F)),
    ("无语", -1.5, Some(F)),
    ("郁闷", -1.5, Some(F)),
    ("烦", -1.5, Some(F)),
    ("麻烦", -1.0, Some(F)),
    ("折腾", -1.5, Some(F)),
    ("还没", -1.0, Some(F)),
    ("一直没", -1.5, Some(F)),
    ("到现在", -1.0, Some(F)),
    ("等了", -1.0, Some(F)),
    ("好几天", -1.0, Some(F)),
    ("又是", -1.0, Some(F)),
    ("没人管", -2.0, Some(F)),
    ("没人理", -2.0, Some(F)),
    ("没用", -1.5, Some(F)),
    ("没反应", -1.5, Some(F)),
    ("敷衍", -2.0, Some(F)),
    ("推脱", -1.5, Some(F)),
    ("白等", -2.0, Some(F)),
    ("浪费", -1.5, Some(F)),
    ("后悔", -1.5, Some(F)),
    ("再也不", -2.0, Some(F)),
    ("算了", -1.0, Some(F)),
    ("受够", -2.0, Some(F)),
    // Chinese: general negative quality (reviews).
    ("差", -1.0, None),
    ("很差", -2.0, None),
    ("太差", -2.0, None),
    ("不好", -1.5, None),
    ("糟糕", -2.0, None),
    ("脏", -1.5, None),
    ("吵", -1.0, None),
    ("旧", -1.0, None),
    ("破", -1.0, None),
    ("贵", -0.5, None),
    ("不值", -1.5, None),
    ("慢", -1.0, None),
    ("坏了", -1.5, None),
    ("质量问题", -1.5, None),
    ("问题", -0.5, None),
    ("不满", -1.5, Some(F)),
    ("不满意", -2.0, Some(F)),
    ("一般", -0.5, None),
    ("简陋", -1.5, None),
    ("异味", -1.5, None),
    ("潮湿", -1.0, None),
    ("隔音差", -1.5, None),
    ("不方便", -1.0, None),
    ("不推荐", -2.0, None),
    ("不会再", -1.5, None),
    ("缺点", -1.0, None),
    ("可惜", -1.0, None),
    ("不足", -1.0, None),
    ("冷淡", -1.0, None),
    ("小", -0.3, None),
    ("难吃", -1.5, None),
    ("臭", -1.5, None),
    ("蚊子", -1.0, None),
    ("漏水", -1.5, None),
    ("退房", -0.2, None),
    ("延误", -1.0, Some(F)),
    ("丢了", -1.5, Some(X)),
    ("丢失", -1.5, Some(X)),
    ("损坏", -1.5, None),
    ("破损", -1.5, None),
    ("错发", -1.5, Some(F)),
    ("少发", -1.5, Some(F)),
    // Chinese: satisfaction and positive quality.
    ("满意", 2.0, Some(S)),
    ("谢谢", 1.0, Some(S)),
    ("感谢", 1.5, Some(S)),
    ("多谢", 1.0, Some(S)),
    ("好评", 2.0, Some(S)),
    ("点赞", 2.0, Some(S)),
    ("给力", 2.0, Some(S)),
    ("不错", 1.5, Some(S)),
    ("很好", 2.0, Some(S)),
    ("好", 0.7, None),
    ("棒", 2.0, Some(S)),
    ("赞", 1.5, Some(S)),
    ("喜欢", 1.5, Some(S)),
    ("推荐", 1.0, Some(S)),
    ("干净", 1.5, None),
    ("方便", 1.0, None),
    ("舒适", 1.5, None),
    ("舒服", 1.5, None),
    ("热情", 1.5, None),
    ("周到", 1.5, None),
    ("实惠", 1.0, None),
    ("划算", 1.0, None),
    ("值得", 1.5, None),
    ("安静", 1.0, None),
    ("宽敞", 1.0, None),
    ("丰富", 1.0, None),
    ("新", 0.3, None),
    ("快", 0.5, None),
    ("及时", 1.0, None),
    ("耐心", 1.5, Some(S)),
    ("专业", 1.0, None),
    ("完美", 2.0, Some(S)),
    ("惊喜", 2.0, Some(S)),
    ("开心", 1.5, Some(S)),
    ("放心", 1.0, Some(S)),
    ("解决了", 1.5, Some(S)),
    ("下次还", 1.5, Some(S)),
    ("还会再", 1.5, Some(S)),
    ("优点", 1.0, None),
    ("温馨", 1.5, None),
    ("齐全", 1.0, None),
    ("便利", 1.0, None),
    ("友好", 1.5, None),
    ("亲切", 1.5, None),
    ("漂亮", 1.5, None),
    ("美味", 1.5, None),
    ("好吃", 1.5, None),
    ("物超所值", 2.0, Some(S)),
    ("性价比高", 2.0, Some(S)),
    // English: anger.
    ("angry", -2.0, Some(A)),
    ("furious", -2.0, Some(A)),
    ("outraged", -2.0, Some(A)),
    ("pissed", -2.0, Some(A)),
    ("mad", -1.5, Some(A)),
    ("livid", -2.0, Some(A)),
    ("ridiculous", -2.0, Some(A)),
    ("unacceptable", -2.0, Some(A)),
    ("disgusting", -2.0, Some(A)),
    ("disgrace", -2.0, Some(A)),
    ("scam", -2.0, Some(A)),
    ("fraud", -2.0, Some(A)),
    ("rude", -2.0, Some(A)),
    ("worst", -2.0, Some(A)),
    ("terrible", -2.0, None),
    ("horrible", -2.0, None),
    ("awful", -2.0, None),
    ("pathetic", -2.0, Some(A)),
    ("complaint", -1.5, Some(A)),
    ("sue", -1.5, Some(A)),
    ("lawyer", -1.5, Some(A)),
    ("wtf", -2.0, Some(A)),
    ("hate", -2.0, Some(A)),
    ("shame", -1.5, Some(A)),
    ("incompetent", -2.0, Some(A)),
    ("useless", -2.0, Some(F)),
    ("joke", -1.0, Some(A)),
    ("never again", -2.0, Some(F)),
    ("lied", -2.0, Some(A)),
    ("lie", -1.0, Some(A)),
    // English: anxiety.
    ("worried", -1.5, Some(X)),
    ("anxious", -1.5, Some(X)),
    ("nervous", -1.0, Some(X)),
    ("urgent", -1.0, Some(X)),
    ("urgently", -1.0, Some(X)),
    ("asap", -1.0, Some(X)),
    ("help", -0.3, Some(X)),
    ("please help", -1.0, Some(X)),
    ("scared", -1.5, Some(X)),
    ("afraid", -1.0, Some(X)),
    ("stuck", -1.5, Some(X)),
    ("stranded", -2.0, Some(X)),
    ("missed", -1.5, Some(X)),
    ("miss my", -1.5, Some(X)),
    ("lost", -1.5, Some(X)),
    ("missing", -1.0, Some(X)),
    ("emergency", -1.5, Some(X)),
    ("hurry", -1.0, Some(X)),
    // English: frustration.
    ("frustrated", -2.0, Some(F)),
    ("frustrating", -2.0, Some(F)),
    ("annoyed", -1.5, Some(F)),
    ("annoying", -1.5, Some(F)),
    ("disappointed", -2.0, Some(F)),
    ("disappointing", -2.0, Some(F)),
    ("still", -0.7, Some(F)),
    ("still waiting", -2.0, Some(F)),
    ("again", -0.5, Some(F)),
    ("waiting", -1.0, Some(F)),
    ("hours", -0.7, Some(F)),
    ("hold", -0.7, Some(F)),
    ("delayed", -1.5, Some(F)),
    ("delay", -1.5, Some(F)),
    ("delays", -1.5, Some(F)),
    ("cancelled", -1.5, Some(F)),
    ("canceled", -1.5, Some(F)),
    ("late", -1.0, Some(F)),
    ("no one", -1.0, Some(F)),
    ("nobody", -1.0, Some(F)),
    ("no response", -2.0, Some(F)),
    ("no answer", -1.5, Some(F)),
    ("ignored", -2.0, Some(F)),
    ("waste", -1.5, Some(F)),
    ("fail", -1.5, Some(F)),
    ("failed", -1.5, Some(F)),
    ("fails", -1.5, Some(F)),
    ("broken", -1.5, None),
    ("bad", -1.5, None),
    ("poor", -1.5, None),
    ("problem", -0.7, None),
    ("issue", -0.5, None),
    ("issues", -0.7, None),
    ("wrong", -1.0, None),
    ("damaged", -1.5, None),
    ("not working", -1.5, Some(F)),
    ("sucks", -2.0, Some(A)),
    ("suck", -2.0, Some(A)),
    ("fuck", -2.0, Some(A)),
    ("fucking", -2.0, Some(A)),
    ("hell", -1.0, Some(A)),
    ("damn", -1.0, Some(A)),
    ("ugh", -1.5, Some(F)),
    ("seriously", -1.0, Some(F)),
    ("unhelpful", -2.0, Some(F)),
    ("sorry", -0.3, None),
    ("mess", -1.5, Some(F)),
    ("nightmare", -2.0, Some(F)),
    // English: satisfaction.
    ("thanks", 1.5, Some(S)),
    ("thank you", 1.5, Some(S)),
    ("thx", 1.0, Some(S)),
    ("great", 1.5, Some(S)),
    ("awesome", 2.0, Some(S)),
    ("amazing", 2.0, Some(S)),
    ("love", 1.5, Some(S)),
    ("loved", 1.5, Some(S)),
    ("excellent", 2.0, Some(S)),
    ("perfect", 2.0, Some(S)),
    ("happy", 1.5, Some(S)),
    ("appreciate", 1.5, Some(S)),
    ("good", 1.0, None),
    ("nice", 1.0, None),
    ("best", 1.5, Some(S)),
    ("helpful", 1.5, Some(S)),
    ("friendly", 1.5, None),
    ("kind", 1.0, None),
    ("fantastic", 2.0, Some(S)),
    ("wonderful", 2.0, Some(S)),
    ("pleased", 1.5, Some(S)),
    ("satisfied", 1.5, Some(S)),
    ("glad", 1.0, Some(S)),
    ("resolved", 1.5, Some(S)),
    ("fast", 0.7, None),
    ("quick", 0.7, None),
    ("smooth", 1.0, None),
    ("comfortable", 1.0, None),
    ("cool", 0.7, None),
    ("enjoy", 1.0, Some(S)),
];

const NEGATORS_ZH: &[&str] = &[
    "不",
    "没",
    "没有",
    "别",
    "未",
    "无",
    "并不",
    "一点也不",
    "不太",
    "不是很",
    "不怎么",
];
const NEGATORS_EN: &[&str] = &[
    "not", "no", "never", "don't", "dont", "isn't", "isnt", "wasn't", "wasnt", "aren't", "didn't",
    "didnt", "hardly", "without", "n't", "nothing",
];
const INTENSIFIERS_ZH: &[&str] = &[
    "很", "非常", "太", "特别", "超", "极", "真", "十分", "相当", "超级", "真的", "实在", "简直",
];
const INTENSIFIERS_EN: &[&str] = &[
    "very",
    "so",
    "really",
    "extremely",
    "too",
    "super",
    "totally",
    "absolutely",
    "completely",
    "incredibly",
    "such",
];

struct Lexicon {
    matcher: WordMatcher,
    entries: Vec<(f32, Option<Emotion>)>,
}

fn lexicon() -> &'static Lexicon {
    static L: OnceLock<Lexicon> = OnceLock::new();
    L.get_or_init(|| {
        let mut keys: Vec<String> = Vec::new();
        let mut entries = Vec::new();
        for (word, w, e) in LEXICON {
            let k = key(word);
            if !keys.contains(&k) {
                keys.push(k);
                entries.push((*w, *e));
            }
        }
        Lexicon {
            matcher: WordMatcher::new(&keys).expect("the emotion lexicon compiles"),
            entries,
        }
    })
}

/// The words just before byte `at` (zh: up to 3 characters; en: up to 3 words), lower-cased.
fn context_before(text: &str, at: usize) -> (String, Vec<String>) {
    // Only the last few dozen characters can hold the context: reading the whole prefix for every hit would make a
    // long message quadratic.
    let before = &text[..at];
    let start = before.char_indices().rev().nth(40).map_or(0, |(i, _)| i);
    let before = &before[start..];
    let zh: String = before
        .chars()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let en: Vec<String> = before
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .rev()
        .take(3)
        .map(str::to_owned)
        .collect();
    (zh, en)
}

/// Reads one message (its first 5,000 characters).
pub fn analyse(text: &str) -> EmotionReading {
    let text = crate::text::clip(text, 5000);
    let lex = lexicon();
    let mut total = 0.0f32;
    let mut emotions: Vec<(Emotion, f32)> = Vec::new();
    for m in lex.matcher.find(text, false) {
        let (mut w, emotion) = lex.entries[m.pattern];
        let (zh, en) = context_before(text, m.start);
        let negated = NEGATORS_ZH.iter().any(|n| zh.contains(n))
            || en
                .iter()
                .any(|w| NEGATORS_EN.contains(&w.as_str()) || w.ends_with("n't"));
        let intensified = INTENSIFIERS_ZH.iter().any(|i| zh.ends_with(i))
            || en
                .first()
                .is_some_and(|w| INTENSIFIERS_EN.contains(&w.as_str()));
        if intensified {
            w *= 1.5;
        }
        if negated {
            // "not good" is mildly negative, "not bad" mildly positive; the emotion does not hold.
            w *= -0.8;
        }
        total += w;
        if let (Some(e), false) = (emotion, negated) {
            match emotions.iter_mut().find(|x| x.0 == e) {
                Some(x) => x.1 += w.abs(),
                None => emotions.push((e, w.abs())),
            }
        }
    }
    // Shouting and exclamation marks make whatever is there stronger; repeated question marks read as pressing.
    let exclaims = text
        .chars()
        .filter(|c| *c == '!' || *c == '！')
        .count()
        .min(5) as f32;
    let questions = text.chars().filter(|c| *c == '?' || *c == '？').count();
    let shouted = text
        .split_whitespace()
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_uppercase()))
        .count();
    let boost = 1.0 + 0.15 * exclaims + 0.2 * shouted.min(3) as f32;
    total *= boost;
    if total < 0.0 && (shouted >= 2 || exclaims >= 3.0) {
        let add = 0.5 * (shouted as f32 + exclaims).min(4.0);
        match emotions.iter_mut().find(|x| x.0 == Emotion::Angry) {
            Some(x) => x.1 += add,
            None => emotions.push((Emotion::Angry, add)),
        }
    }
    if questions >= 3 && total < 0.0 {
        match emotions.iter_mut().find(|x| x.0 == Emotion::Frustrated) {
            Some(x) => x.1 += 1.0,
            None => emotions.push((Emotion::Frustrated, 1.0)),
        }
    }
    // Satisfaction does not coexist with an overall negative message, nor the negative emotions with a clearly
    // positive one.
    emotions.retain(|(e, _)| {
        if *e == Emotion::Satisfied {
            total > 0.0
        } else {
            total < 0.5
        }
    });
    for e in &mut emotions {
        e.1 = (e.1 / 3.0).min(1.0);
    }
    emotions.sort_by(|a, b| b.1.total_cmp(&a.1));
    let score = (total / 3.0).tanh();
    let polarity = if score <= -0.2 {
        Polarity::Negative
    } else if score >= 0.2 {
        Polarity::Positive
    } else {
        Polarity::Neutral
    };
    EmotionReading {
        polarity,
        score,
        intensity: (total.abs() / 5.0).min(1.0),
        emotions,
    }
}

/// How a conversation's emotion has moved, for hand-off rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trajectory {
    /// Negative customer turns in a row, ending with the latest.
    pub negative_streak: usize,
    /// The latest turn is clearly more negative than the customer's first (by 0.4 or more).
    pub worsening: bool,
    /// Strongest intensity so far.
    pub peak_intensity: f32,
    /// Turns in which the customer was angry.
    pub angry_turns: usize,
    pub latest: Option<Polarity>,
}

impl Trajectory {
    /// From the customer's turns, oldest first.
    pub fn of(turns: &[EmotionReading]) -> Trajectory {
        let negative_streak = turns
            .iter()
            .rev()
            .take_while(|t| t.polarity == Polarity::Negative)
            .count();
        let worsening = match (turns.first(), turns.last()) {
            (Some(a), Some(b)) if turns.len() >= 2 => b.score <= a.score - 0.4,
            _ => false,
        };
        Trajectory {
            negative_streak,
            worsening,
            peak_intensity: turns.iter().map(|t| t.intensity).fold(0.0, f32::max),
            angry_turns: turns
                .iter()
                .filter(|t| t.emotions.iter().any(|e| e.0 == Emotion::Angry))
                .count(),
            latest: turns.last().map(|t| t.polarity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polarity_and_emotions_in_both_languages() {
        let angry = analyse("你们这是什么破服务！！！我要投诉！");
        assert_eq!(angry.polarity, Polarity::Negative);
        assert_eq!(angry.primary(), Some(Emotion::Angry));
        let anxious = analyse("快递丢了怎么办，我很着急");
        assert_eq!(anxious.polarity, Polarity::Negative);
        assert!(
            anxious.emotions.iter().any(|e| e.0 == Emotion::Anxious),
            "{anxious:?}"
        );
        let frustrated = analyse("I'm still waiting for my refund, this is so frustrating");
        assert_eq!(
            frustrated.primary(),
            Some(Emotion::Frustrated),
            "{frustrated:?}"
        );
        let happy = analyse("Thank you so much, that was really helpful!");
        assert_eq!(happy.polarity, Polarity::Positive);
        assert_eq!(happy.primary(), Some(Emotion::Satisfied));
        let calm = analyse("我想查一下订单");
        assert_eq!(calm.polarity, Polarity::Neutral);
        assert!(calm.emotions.is_empty());
        let shouting = analyse("THIS IS UNACCEPTABLE. WHERE IS MY ORDER");
        assert_eq!(shouting.primary(), Some(Emotion::Angry));
        assert!(shouting.intensity > analyse("this is unacceptable").intensity);
    }

    #[test]
    fn negation_flips() {
        assert_eq!(analyse("服务不好").polarity, Polarity::Negative);
        assert_eq!(analyse("not good at all").polarity, Polarity::Negative);
        assert!(analyse("not bad").score > analyse("bad").score);
        assert_eq!(analyse("一点也不满意").polarity, Polarity::Negative);
    }

    #[test]
    fn trajectory_counts_the_negative_streak() {
        let turns: Vec<EmotionReading> = [
            "你好",
            "怎么还没发货",
            "等了好几天了，太失望了",
            "我要投诉！！",
        ]
        .iter()
        .map(|t| analyse(t))
        .collect();
        let t = Trajectory::of(&turns);
        assert_eq!(t.negative_streak, 3, "{turns:?}");
        assert!(t.worsening);
        assert_eq!(t.angry_turns, 1);
        assert_eq!(Trajectory::of(&[]), Trajectory::default());
    }

    #[test]
    fn odd_input() {
        for t in ["", "\u{0}", "!!!!!!!!", &"差".repeat(100_000)] {
            let r = analyse(t);
            assert!(r.score.is_finite() && (0.0..=1.0).contains(&r.intensity));
        }
    }
}
