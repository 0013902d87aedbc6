//! The pure decision core: from the facts of one turn to the path it takes and why. No IO, no clock, no model:
//! every rule is a unit test.
//!
//! Order (first match wins): a conversation held by people → nothing; a blocked message → refusal; an injection
//! attempt → the tenant's injection policy; a hand-off trigger → hand-off; a running flow (or a request that starts
//! one) → its next step, without a search; a curated FAQ answer → verbatim; an answer-cache hit → reuse; a tool
//! intent → tool; retrieved passages → grounded answer; otherwise a cautious model answer (or hand-off, when the
//! tenant says so).

use serde::{Deserialize, Serialize};

use kefu_store::Handler;

/// What the turn does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// People hold the conversation: the message is stored, nothing is generated.
    HumanHeld,
    /// The message hit a blocking word: a fixed refusal, no model.
    Blocked,
    /// A prompt-injection attempt refused by policy: a fixed reply, no model.
    Injection,
    /// Handed to people: a fixed reply, the conversation is queued for an agent.
    Handoff,
    /// A curated FAQ answer, verbatim with its citation.
    Faq,
    /// A previously verified answer to the same question.
    Cache,
    /// The next step of an active flow.
    Flow,
    /// A tool call (order status, logistics, …).
    Tool,
    /// A model answer grounded in retrieved passages.
    Rag,
    /// A model answer without passages (greetings, small talk, or nothing found).
    Chat,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::HumanHeld => "human_held",
            Path::Blocked => "blocked",
            Path::Injection => "injection",
            Path::Handoff => "handoff",
            Path::Faq => "faq",
            Path::Cache => "cache",
            Path::Flow => "flow",
            Path::Tool => "tool",
            Path::Rag => "rag",
            Path::Chat => "chat",
        }
    }

    /// Whether this path calls a language model.
    /// (A flow's steps are rules; a model is asked only to place an answer the rules could not.)
    pub fn uses_model(self) -> bool {
        matches!(self, Path::Tool | Path::Rag | Path::Chat)
    }
}

/// Which model answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// No model call.
    None,
    /// The tenant's cheap model: simple, high-confidence intents.
    Cheap,
    /// The tenant's strong model: complex, multi-part, sensitive or upset turns.
    Strong,
}

/// How the answer should sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Normal,
    /// The customer is upset: acknowledge and apologise first, then be brief and concrete.
    Empathetic,
}

/// What to do with a message that scores as a prompt-injection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionPolicy {
    /// A fixed reply; the model never sees the message. The conversation is flagged.
    Refuse,
    /// Answer, but without tools and with the attempt flagged.
    AnswerWithoutTools,
}

/// The tenant's rules for deciding. Defaults are the product's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Minimum FAQ match (0–1, see [`FaqCandidate::score`]) to answer verbatim.
    pub faq_min_score: f32,
    /// Hand off after this many negative customer turns in a row.
    pub handoff_negative_streak: usize,
    /// Hand off when an angry message is at least this intense (0–1) and the previous turn was negative too.
    pub handoff_angry_intensity: f32,
    /// Hand off after this many answers in a row the engine was not sure of.
    pub handoff_after_unsure: usize,
    /// Injection score from which [`Policy::injection`] applies.
    pub injection_threshold: f32,
    pub injection: InjectionPolicy,
    /// With no passages and no small-talk intent: hand off instead of a cautious model answer.
    pub handoff_when_nothing_found: bool,
    /// Intent confidence from which a simple intent goes to the cheap model.
    pub cheap_min_confidence: f32,
    /// Intents that never go to the cheap model (complaints, legal, payment disputes).
    pub sensitive_intents: Vec<String>,
    /// Intents answered by small talk (no passages needed).
    pub smalltalk_intents: Vec<String>,
    /// Reuse verified answers for paraphrased questions.
    pub cache: bool,
    /// Minimum [`crate::cache::Scorer::Guarded`] score to reuse an answer when both questions have embeddings, and
    /// when they do not (measured on BQ: `kefu eval cache`, bench/RESULTS.md).
    pub cache_threshold: f32,
    pub cache_threshold_lexical: f32,
    /// How long an answer may be reused, and per intent (prices and stock change faster than a return policy).
    pub cache_ttl_secs: u64,
    pub cache_ttl_by_intent: std::collections::BTreeMap<String, u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            faq_min_score: 0.75,
            handoff_negative_streak: 3,
            handoff_angry_intensity: 0.7,
            handoff_after_unsure: 2,
            injection_threshold: 0.5,
            injection: InjectionPolicy::Refuse,
            handoff_when_nothing_found: false,
            cheap_min_confidence: 0.8,
            sensitive_intents: ["complaint", "legal", "payment_dispute", "投诉"]
                .map(String::from)
                .to_vec(),
            smalltalk_intents: ["greeting", "thanks", "goodbye", "问候", "感谢"]
                .map(String::from)
                .to_vec(),
            cache: true,
            // BQ, all 10,000 labelled pairs (bench/RESULTS.md): dense+guards ≥ 0.99 → 42 hits, 0 wrong; ≥ 0.985 → 97
            // hits, 1 wrong. Lexical+guards ≥ 0.9 → 4 hits, 0 wrong (≥ 0.8: 25 hits, 0 wrong; few hits either way).
            cache_threshold: 0.99,
            cache_threshold_lexical: 0.9,
            cache_ttl_secs: 6 * 3600,
            cache_ttl_by_intent: Default::default(),
        }
    }
}

/// The best curated FAQ entry found for the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaqCandidate {
    /// 0–1: how closely the message matches the entry's question (see [`crate::check::faq_match`]).
    pub score: f32,
}

/// The facts of one turn, gathered by the driver.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Facts {
    pub handler: Option<Handler>,
    /// A moderation word with the block action.
    pub blocked: bool,
    pub injection_score: f32,
    pub intent: Option<String>,
    pub intent_confidence: f32,
    pub out_of_scope: bool,
    /// The customer asked for a person (rules or the intent).
    pub asks_for_human: bool,
    /// This message is negative.
    pub negative: bool,
    /// The strongest of angry/frustrated in this message, 0–1.
    pub anger: f32,
    /// Negative customer turns in a row, this one included.
    pub negative_streak: usize,
    /// Answers in a row (before this turn) the engine was not sure of.
    pub unsure_streak: usize,
    /// More than one question, or long.
    pub complex: bool,
    pub faq: Option<FaqCandidate>,
    /// An answer-cache hit exists.
    pub cache_hit: bool,
    /// A flow is running (and not timed out), or this message starts one.
    pub flow_active: bool,
    /// The intent maps to a tool the customer may use.
    pub tool_intent: bool,
    /// The message is about the customer's own records ("我有哪些优惠券", "my order"): with a tool intent, the tool
    /// goes before a curated answer (which is the same for everyone). The passages still go into the prompt.
    pub personal: bool,
    /// Passages retrieved above the relevance threshold.
    pub passages: usize,
    /// The tenant sends this topic (intent or word) to people.
    pub human_topic: bool,
    /// A customer of a tier the tenant serves with people first, and this message is upset or complicated.
    pub vip_needs_care: bool,
}

/// The decision and its reasons, recorded with the turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub path: Path,
    /// A stable code for the rule that chose the path (`asked_for_human`, `faq_match`, …).
    pub reason: &'static str,
    pub tier: Tier,
    /// Why that model (a stable code).
    pub tier_reason: &'static str,
    pub tone: Tone,
    /// Flag the conversation for review with this reason.
    pub flag: Option<&'static str>,
    /// Offer tools to the model.
    pub tools_allowed: bool,
}

fn fixed(path: Path, reason: &'static str, flag: Option<&'static str>) -> Decision {
    Decision {
        path,
        reason,
        tier: Tier::None,
        tier_reason: "no_model",
        tone: Tone::Normal,
        flag,
        tools_allowed: false,
    }
}

/// A hand-off decided outside the rules here (a flow that failed repeatedly).
pub fn handoff(reason: &'static str) -> Decision {
    fixed(Path::Handoff, reason, None)
}

/// Decides one turn.
pub fn decide(f: &Facts, p: &Policy) -> Decision {
    before_retrieval(f, p).unwrap_or_else(|| after_retrieval(f, p))
}

/// The rules that need no retrieval (people hold it, blocked word, injection refused, hand-off triggers): when one
/// applies, the turn is decided without searching the knowledge base.
pub fn before_retrieval(f: &Facts, p: &Policy) -> Option<Decision> {
    let d = if matches!(f.handler, Some(Handler::Agent | Handler::Queued)) {
        fixed(Path::HumanHeld, "held_by_people", None)
    } else if f.blocked {
        fixed(Path::Blocked, "blocked_word", Some("moderation_block"))
    } else if f.injection_score >= p.injection_threshold && p.injection == InjectionPolicy::Refuse {
        fixed(
            Path::Injection,
            "injection_refused",
            Some("prompt_injection"),
        )
    } else if f.asks_for_human {
        fixed(Path::Handoff, "asked_for_human", None)
    } else if f.human_topic {
        fixed(Path::Handoff, "human_topic", None)
    } else if f.vip_needs_care {
        fixed(Path::Handoff, "vip_customer", None)
    } else if f.negative_streak >= p.handoff_negative_streak {
        fixed(Path::Handoff, "negative_streak", Some("upset_customer"))
    } else if f.anger >= p.handoff_angry_intensity && f.negative_streak >= 2 {
        fixed(Path::Handoff, "angry_again", Some("upset_customer"))
    } else if f.unsure_streak >= p.handoff_after_unsure {
        fixed(Path::Handoff, "unsure_again", None)
    } else if f.flow_active {
        // A running procedure (or a request that starts one: "我要退货", never a question about the policy) goes on
        // without a search; its answers are slot values, not questions for the knowledge base.
        Decision {
            tone: tone_of(f),
            ..fixed(Path::Flow, "flow_active", None)
        }
    } else {
        return None;
    };
    Some(d)
}

/// The rules that use what retrieval found (FAQ, passages) and the routing of model answers.
fn after_retrieval(f: &Facts, p: &Policy) -> Decision {
    let injection = f.injection_score >= p.injection_threshold;
    let tone = tone_of(f);
    let personal_tool = f.tool_intent && f.personal && !injection;
    // An upset customer gets a person's words or the strong model, never a canned FAQ answer that ignores it.
    if let Some(faq) = f.faq.as_ref().filter(|_| !personal_tool) {
        if faq.score >= p.faq_min_score && tone == Tone::Normal {
            return Decision {
                tone,
                ..fixed(Path::Faq, "faq_match", None)
            };
        }
    }
    if f.cache_hit && tone == Tone::Normal {
        return Decision {
            tone,
            ..fixed(Path::Cache, "cache_hit", None)
        };
    }
    let smalltalk = f
        .intent
        .as_deref()
        .is_some_and(|i| p.smalltalk_intents.iter().any(|s| s == i));
    let (path, reason) = if f.tool_intent && !injection {
        (Path::Tool, "tool_intent")
    } else if f.passages > 0 {
        (Path::Rag, "passages_found")
    } else if smalltalk {
        (Path::Chat, "smalltalk")
    } else if p.handoff_when_nothing_found {
        return fixed(Path::Handoff, "nothing_found", None);
    } else {
        (Path::Chat, "nothing_found")
    };
    let sensitive = f
        .intent
        .as_deref()
        .is_some_and(|i| p.sensitive_intents.iter().any(|s| s == i));
    let (tier, tier_reason) = if tone == Tone::Empathetic {
        (Tier::Strong, "upset_customer")
    } else if sensitive {
        (Tier::Strong, "sensitive_intent")
    } else if f.complex {
        (Tier::Strong, "complex_message")
    } else if injection {
        (Tier::Strong, "injection_suspected")
    } else if smalltalk || (f.intent.is_some() && f.intent_confidence >= p.cheap_min_confidence) {
        (Tier::Cheap, "simple_confident")
    } else {
        (Tier::Strong, "uncertain_intent")
    };
    Decision {
        path,
        reason,
        tier,
        tier_reason,
        tone,
        flag: injection.then_some("prompt_injection"),
        tools_allowed: !injection,
    }
}

fn tone_of(f: &Facts) -> Tone {
    if f.negative || f.anger > 0.0 {
        Tone::Empathetic
    } else {
        Tone::Normal
    }
}

/// Rules for "I want a person": short phrases in Chinese and English. The intent model may say so too.
pub fn asks_for_human(text: &str) -> bool {
    let t = kefu_nlu::text::fold_str(text);
    const ZH: &[&str] = &[
        "转人工",
        "人工客服",
        "人工服务",
        "找人工",
        "要人工",
        "真人",
        "人工坐席",
        "接人工",
        "客服人员",
        "活人",
    ];
    const EN: &[&str] = &[
        "human",
        "real person",
        "live agent",
        "an agent",
        "a person",
        "representative",
        "operator",
        "speak to someone",
        "talk to someone",
        "customer service agent",
    ];
    if ZH.iter().any(|w| t.contains(w)) {
        return true;
    }
    // Short messages only for the loose English words ("human", "operator"): in a long message they are usually
    // part of something else ("is this answer written by a human?").
    EN.iter().any(|w| contains_word(&t, w))
        && (t.split_whitespace().count() <= 12 || t.contains("speak to"))
        || t.trim_matches(|c: char| !c.is_alphanumeric() && !kefu_nlu::text::is_han(c)) == "人工"
}

fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, m)| {
        let before = text[..i].chars().next_back();
        let after = text[i + m.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric()) && !after.is_some_and(|c| c.is_alphanumeric())
    })
}

/// Whether a message asks about the customer's own records (their orders, coupons, points, returns).
pub fn is_personal(text: &str) -> bool {
    let t = kefu_nlu::text::fold_str(text);
    const ZH: &[&str] = &["我的", "我有", "我买的", "我下的", "我这", "我那"];
    const EN: &[&str] = &["my", "mine", "i have", "do i have", "i bought", "i ordered"];
    ZH.iter().any(|w| t.contains(w)) || EN.iter().any(|w| contains_word(&t, w))
}

/// More than one question, or a long message: goes to the strong model.
pub fn is_complex(text: &str) -> bool {
    let questions = text.chars().filter(|c| matches!(c, '?' | '？')).count();
    let joins = [
        "另外",
        "还有",
        "以及",
        "同时",
        " also ",
        " and also",
        "additionally",
    ]
    .iter()
    .filter(|w| text.contains(*w))
    .count();
    questions + joins >= 2 || text.chars().count() > 160
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            handler: Some(Handler::Bot),
            intent: Some("return_policy".into()),
            intent_confidence: 0.9,
            passages: 3,
            ..Default::default()
        }
    }

    #[test]
    fn people_hold_the_conversation_before_anything_else() {
        for h in [Handler::Agent, Handler::Queued] {
            let f = Facts {
                handler: Some(h),
                blocked: true,
                asks_for_human: true,
                faq: Some(FaqCandidate { score: 1.0 }),
                ..facts()
            };
            let d = decide(&f, &Policy::default());
            assert_eq!(d.path, Path::HumanHeld);
            assert_eq!(d.tier, Tier::None);
            assert!(!d.path.uses_model());
        }
    }

    #[test]
    fn the_tenants_topics_and_vips_go_to_people_before_answers_and_flows() {
        for (f, reason) in [
            (
                Facts {
                    human_topic: true,
                    flow_active: true,
                    faq: Some(FaqCandidate { score: 1.0 }),
                    ..facts()
                },
                "human_topic",
            ),
            (
                Facts {
                    vip_needs_care: true,
                    faq: Some(FaqCandidate { score: 1.0 }),
                    ..facts()
                },
                "vip_customer",
            ),
        ] {
            let d = decide(&f, &Policy::default());
            assert_eq!((d.path, d.reason), (Path::Handoff, reason));
        }
        // A blocked message is refused even on a hand-off topic.
        let d = decide(
            &Facts {
                human_topic: true,
                blocked: true,
                ..facts()
            },
            &Policy::default(),
        );
        assert_eq!(d.path, Path::Blocked);
    }

    #[test]
    fn blocked_and_injection_never_reach_a_model() {
        let d = decide(
            &Facts {
                blocked: true,
                ..facts()
            },
            &Policy::default(),
        );
        assert_eq!((d.path, d.flag), (Path::Blocked, Some("moderation_block")));
        assert!(!d.path.uses_model());
        let d = decide(
            &Facts {
                injection_score: 0.9,
                ..facts()
            },
            &Policy::default(),
        );
        assert_eq!(d.path, Path::Injection);
        assert!(!d.path.uses_model());
        // The lenient policy answers, without tools, with the strong model, flagged.
        let lenient = Policy {
            injection: InjectionPolicy::AnswerWithoutTools,
            ..Policy::default()
        };
        let d = decide(
            &Facts {
                injection_score: 0.9,
                tool_intent: true,
                ..facts()
            },
            &lenient,
        );
        assert_eq!(d.path, Path::Rag);
        assert!(!d.tools_allowed);
        assert_eq!(d.flag, Some("prompt_injection"));
        assert_eq!(d.tier, Tier::Strong);
    }

    #[test]
    fn hand_off_triggers() {
        let p = Policy::default();
        let ask = decide(
            &Facts {
                asks_for_human: true,
                ..facts()
            },
            &p,
        );
        assert_eq!((ask.path, ask.reason), (Path::Handoff, "asked_for_human"));
        let streak = decide(
            &Facts {
                negative: true,
                negative_streak: 3,
                ..facts()
            },
            &p,
        );
        assert_eq!(
            (streak.path, streak.reason),
            (Path::Handoff, "negative_streak")
        );
        let angry_once = decide(
            &Facts {
                negative: true,
                anger: 0.9,
                negative_streak: 1,
                ..facts()
            },
            &p,
        );
        assert_eq!(
            angry_once.path,
            Path::Rag,
            "one angry message is answered, with care"
        );
        assert_eq!(angry_once.tone, Tone::Empathetic);
        assert_eq!(angry_once.tier, Tier::Strong);
        let angry_twice = decide(
            &Facts {
                negative: true,
                anger: 0.9,
                negative_streak: 2,
                ..facts()
            },
            &p,
        );
        assert_eq!(angry_twice.path, Path::Handoff);
        let unsure = decide(
            &Facts {
                unsure_streak: 2,
                ..facts()
            },
            &p,
        );
        assert_eq!(
            (unsure.path, unsure.reason),
            (Path::Handoff, "unsure_again")
        );
    }

    #[test]
    fn only_answer_paths_wait_for_retrieval() {
        let p = Policy::default();
        assert!(before_retrieval(&facts(), &p).is_none());
        let held = Facts {
            handler: Some(Handler::Agent),
            ..facts()
        };
        assert_eq!(before_retrieval(&held, &p).unwrap().path, Path::HumanHeld);
        // "Nothing found" is a hand-off that depends on retrieval, so it is not decided early.
        let strict = Policy {
            handoff_when_nothing_found: true,
            ..Policy::default()
        };
        let empty = Facts {
            passages: 0,
            ..facts()
        };
        assert!(before_retrieval(&empty, &strict).is_none());
        assert_eq!(decide(&empty, &strict).path, Path::Handoff);
    }

    #[test]
    fn flow_then_faq_then_cache_then_tool_then_rag() {
        let p = Policy::default();
        let mut f = Facts {
            faq: Some(FaqCandidate { score: 0.9 }),
            cache_hit: true,
            flow_active: true,
            tool_intent: true,
            ..facts()
        };
        let mut order = Vec::new();
        for _ in 0..5 {
            let d = decide(&f, &p);
            order.push(d.path);
            match d.path {
                Path::Faq => f.faq = None,
                Path::Cache => f.cache_hit = false,
                Path::Flow => f.flow_active = false,
                Path::Tool => f.tool_intent = false,
                _ => f.passages = 0,
            }
        }
        assert_eq!(
            order,
            vec![Path::Flow, Path::Faq, Path::Cache, Path::Tool, Path::Rag]
        );
        assert_eq!(decide(&f, &p).path, Path::Chat);
        let weak = Facts {
            faq: Some(FaqCandidate { score: 0.5 }),
            ..facts()
        };
        assert_eq!(
            decide(&weak, &p).path,
            Path::Rag,
            "a weak FAQ match is only a passage"
        );
    }

    #[test]
    fn a_personal_question_with_a_tool_goes_to_the_tool_before_the_faq() {
        let p = Policy::default();
        let f = Facts {
            faq: Some(FaqCandidate { score: 0.9 }),
            tool_intent: true,
            personal: true,
            ..facts()
        };
        assert_eq!(decide(&f, &p).path, Path::Tool);
        let general = Facts {
            personal: false,
            ..f.clone()
        };
        assert_eq!(decide(&general, &p).path, Path::Faq);
        assert!(is_personal("我有哪些优惠券"));
        assert!(is_personal("Where is my order?"));
        assert!(!is_personal("怎么使用优惠券"));
        assert!(!is_personal("mystery box"));
    }

    #[test]
    fn an_upset_customer_never_gets_a_canned_answer() {
        let f = Facts {
            faq: Some(FaqCandidate { score: 0.95 }),
            cache_hit: true,
            negative: true,
            negative_streak: 1,
            ..facts()
        };
        let d = decide(&f, &Policy::default());
        assert_eq!(d.path, Path::Rag);
        assert_eq!(d.tone, Tone::Empathetic);
    }

    #[test]
    fn routing_by_confidence_sensitivity_and_complexity() {
        let p = Policy::default();
        assert_eq!(decide(&facts(), &p).tier, Tier::Cheap);
        let unsure = Facts {
            intent_confidence: 0.4,
            ..facts()
        };
        assert_eq!(decide(&unsure, &p).tier_reason, "uncertain_intent");
        let complaint = Facts {
            intent: Some("complaint".into()),
            ..facts()
        };
        assert_eq!(decide(&complaint, &p).tier_reason, "sensitive_intent");
        let complex = Facts {
            complex: true,
            ..facts()
        };
        assert_eq!(decide(&complex, &p).tier, Tier::Strong);
        let no_model = Facts {
            intent: None,
            ..facts()
        };
        assert_eq!(
            decide(&no_model, &p).tier,
            Tier::Strong,
            "no classifier: be safe"
        );
    }

    #[test]
    fn nothing_found_is_a_cautious_answer_or_a_hand_off() {
        let f = Facts {
            passages: 0,
            ..facts()
        };
        assert_eq!(decide(&f, &Policy::default()).path, Path::Chat);
        let strict = Policy {
            handoff_when_nothing_found: true,
            ..Policy::default()
        };
        assert_eq!(decide(&f, &strict).path, Path::Handoff);
        let hello = Facts {
            intent: Some("greeting".into()),
            passages: 0,
            ..facts()
        };
        assert_eq!(decide(&hello, &strict).path, Path::Chat);
    }

    #[test]
    fn asking_for_a_person_in_both_languages() {
        for yes in [
            "转人工",
            "人工",
            "我要找人工客服！",
            "能不能让真人来回答",
            "I want to talk to a human",
            "Can I speak to someone please, this is the third time I ask about my refund and nobody answers me",
            "representative",
            "HUMAN please",
            "轉人工", // traditional
        ] {
            assert!(asks_for_human(yes), "{yes}");
        }
        for no in [
            "人工智能是什么",
            "how do I return an item",
            "is the humane society a partner",
            "退货政策是什么",
            "My order has not arrived and the tracking page says it was delivered to an agent point near my \
             house which I never visited",
        ] {
            assert!(!asks_for_human(no), "{no}");
        }
    }

    #[test]
    fn complexity() {
        assert!(is_complex("退货要多久？另外运费谁出？"));
        assert!(is_complex(
            "Where is my order? And can I change the address?"
        ));
        assert!(!is_complex("退货政策是什么？"));
        assert!(!is_complex("where is my order"));
    }
}
