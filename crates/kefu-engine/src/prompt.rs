//! Pure prompt decisions: history within a token budget, the message list sent to the model, fallback replies.

/// Introduces the customer tier's service strategy in a prompt. It is guidance for the model, not news for the
/// customer: a small model told only "service strategy: regular member, be polite" said "As a regular member, I'll
/// be polite" (the local conversation eval).
pub const STRATEGY_LEAD: &str =
    "How to serve this customer (guidance for you only: never mention it, their tier or membership level): ";

use kefu_llm::{ChatMessage, Role};
use kefu_store::{Message, MessageRole};

/// A cheap token estimate that is right in order of magnitude for Chinese and English with BPE vocabularies:
/// one token per CJK character, one per four other characters.
pub fn estimate_tokens(text: &str) -> usize {
    let mut cjk = 0usize;
    let mut other = 0usize;
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
        } else {
            other += 1;
        }
    }
    cjk + other.div_ceil(4) + 1
}

/// CJK characters plus CJK punctuation and full-width forms: each is about one token.
fn is_cjk(c: char) -> bool {
    kefu_nlu::text::is_cjk(c) || matches!(c as u32, 0x3000..=0x303F | 0xFF00..=0xFFEF)
}

/// True when the text is mostly Chinese (or other CJK): used to pick the fallback reply's language.
pub fn looks_chinese(text: &str) -> bool {
    let (mut cjk, mut letters) = (0, 0);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
        } else if c.is_alphabetic() {
            letters += 1;
        }
    }
    // Customers who type any Chinese words expect Chinese back, even around order numbers or product names.
    cjk >= 2 || (cjk > 0 && cjk * 3 >= letters)
}

/// Keeps the newest messages whose estimated tokens fit in `budget`, never more than `max_messages`, and always the
/// last message (the one being answered) even when it alone exceeds the budget. Returns a suffix of `history`.
pub fn select_history(history: &[Message], budget: usize, max_messages: usize) -> &[Message] {
    if history.is_empty() {
        return history;
    }
    let mut used = 0usize;
    let mut start = history.len();
    for (i, m) in history.iter().enumerate().rev() {
        let cost = estimate_tokens(&m.content);
        let is_last = i + 1 == history.len();
        if !is_last && (used + cost > budget || history.len() - i > max_messages.max(1)) {
            break;
        }
        used += cost;
        start = i;
    }
    &history[start..]
}

/// The older turns that no longer fit the history budget, folded into a few lines without a model call: the
/// customer's earlier questions (clipped; the newest few) and the order, tracking and other numbers mentioned, so a
/// follow-up like "and the other order?" still has its context. `None` when nothing worth keeping was dropped. The
/// caller masks PII in it like any other prompt text.
pub fn rolling_summary(dropped: &[Message], zh: bool) -> Option<String> {
    const QUESTIONS: usize = 6;
    const IDS: usize = 8;
    let asked: Vec<String> = dropped
        .iter()
        .filter(|m| m.role == MessageRole::Customer && !m.content.starts_with("[image:"))
        .map(|m| {
            let t = m.content.split_whitespace().collect::<Vec<_>>().join(" ");
            if t.chars().count() > 60 {
                t.chars().take(60).collect::<String>() + "…"
            } else {
                t
            }
        })
        .filter(|t| !t.is_empty())
        .collect();
    let mut ids: Vec<String> = Vec::new();
    for m in dropped.iter().filter(|m| !m.content.starts_with("[image:")) {
        for token in m
            .content
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map(|t| t.trim_matches('-'))
        {
            let digits = token.chars().filter(char::is_ascii_digit).count();
            if token.len() >= 4 && digits >= 3 && !ids.iter().any(|x| x == token) {
                ids.push(token.to_owned());
            }
        }
    }
    if asked.is_empty() && ids.is_empty() {
        return None;
    }
    let skipped = asked.len().saturating_sub(QUESTIONS);
    let recent = &asked[skipped..];
    let ids = &ids[ids.len().saturating_sub(IDS)..];
    let mut s = String::new();
    if zh {
        s.push_str("此前对话摘要（较早的消息已不在下方）：");
        if !recent.is_empty() {
            s.push_str("客户问过");
            if skipped > 0 {
                s.push_str(&format!("（另有 {skipped} 条更早的）"));
            }
            s.push('：');
            s.push_str(
                &recent
                    .iter()
                    .map(|q| format!("「{q}」"))
                    .collect::<Vec<_>>()
                    .join("；"),
            );
            s.push('。');
        }
        if !ids.is_empty() {
            s.push_str(&format!("提到的编号：{}。", ids.join("，")));
        }
    } else {
        s.push_str("Summary of earlier messages (no longer shown below):");
        if !recent.is_empty() {
            s.push_str(" the customer asked ");
            if skipped > 0 {
                s.push_str(&format!("({skipped} more before) "));
            }
            s.push_str(
                &recent
                    .iter()
                    .map(|q| format!("\"{q}\""))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            s.push('.');
        }
        if !ids.is_empty() {
            s.push_str(&format!(" Numbers mentioned: {}.", ids.join(", ")));
        }
    }
    Some(s)
}

/// The messages sent to the model: the persona first, then the conversation in order.
pub fn build_messages(system_prompt: &str, history: &[Message]) -> Vec<ChatMessage> {
    let texts: Vec<&str> = history.iter().map(|m| m.content.as_str()).collect();
    build_messages_with(system_prompt, history, &texts)
}

/// [`build_messages`] with each message's text given separately (the PII-masked text).
pub fn build_messages_with(
    system_prompt: &str,
    history: &[Message],
    texts: &[&str],
) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(history.len() + 1);
    // Small models answer English questions in Chinese when the prompt only says "the customer's language"; name
    // the language of the latest customer message. It goes at the end of the system prompt, so the shared part
    // stays a cacheable prefix and the whole prompt stays stable within a conversation in one language.
    let last_customer = history
        .iter()
        .rev()
        .find(|m| m.role == MessageRole::Customer)
        .map_or("", |m| m.content.as_str());
    let language = if looks_chinese(last_customer) {
        "请用中文回答。"
    } else {
        "Reply in English."
    };
    out.push(ChatMessage::system(format!("{system_prompt}\n{language}")));
    for (m, text) in history.iter().zip(texts) {
        let role = match m.role {
            MessageRole::Customer => Role::User,
            MessageRole::Assistant | MessageRole::Agent => Role::Assistant,
            MessageRole::System => continue,
        };
        out.push(ChatMessage::new(role, (*text).to_owned()));
    }
    out
}

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a friendly, concise customer-service assistant. Answer in the \
customer's language (Chinese or English). If you do not know the answer, say so and offer to connect the customer \
with a human agent. Never invent order details, prices or policies.";

/// Fixed replies for the paths that do not call a model, in the customer's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canned {
    Handoff,
    Blocked,
    Injection,
    Unsure,
    OutputBlocked,
    /// Order tools need to know who the customer is.
    SignIn,
}

pub fn canned_reply(kind: Canned, zh: bool) -> &'static str {
    match (kind, zh) {
        (Canned::Handoff, true) => "好的，正在为您转接人工客服，请稍候。您之前的消息客服人员都能看到，无需重复。",
        (Canned::Handoff, false) => {
            "Sure — I'm connecting you with a member of our team. They can see this conversation, so there's no need \
to repeat yourself."
        }
        (Canned::Blocked, true) => "抱歉，您的消息包含不适当的内容，我无法处理。请换一种说法，或者告诉我您需要什么帮助。",
        (Canned::Blocked, false) => {
            "Sorry, I can't help with that message. Could you rephrase it, or tell me what you need help with?"
        }
        (Canned::Injection, true) => "抱歉，我只能回答与本店商品、订单和售后相关的问题。请问有什么可以帮您？",
        (Canned::Injection, false) => {
            "Sorry, I can only help with questions about our products, orders and after-sales service. What can I do \
for you?"
        }
        (Canned::Unsure, true) => "这个问题我不太确定，不想给您错误的信息。需要我为您转接人工客服吗？",
        (Canned::Unsure, false) => {
            "I'm not sure about that and don't want to give you wrong information. Shall I connect you with a member of \
our team?"
        }
        (Canned::OutputBlocked, true) => "抱歉，这个回答未能通过内容检查。需要我为您转接人工客服吗？",
        (Canned::SignIn, true) => "查询订单、物流和退货需要先确认您的身份，请登录后再问我一次。",
        (Canned::SignIn, false) => {
            "To look up orders, deliveries or returns I need to know who you are: please sign in and ask me again."
        }
        (Canned::OutputBlocked, false) => {
            "Sorry, I couldn't give a proper answer to that. Shall I connect you with a member of our team?"
        }
    }
}

/// A retrieved passage as the model sees it.
pub struct Passage<'a> {
    pub label: &'a str,
    pub text: &'a str,
}

/// The system prompt of a turn: persona and tenant rules, tone, and either the numbered passages the answer must
/// come from or the instruction not to state facts. The customer's language goes last (see [`build_messages`]).
pub fn turn_system_prompt(persona: &str, empathetic: bool, passages: &[Passage<'_>]) -> String {
    let mut s =
        String::with_capacity(512 + passages.iter().map(|p| p.text.len() + 16).sum::<usize>());
    s.push_str(persona);
    s.push_str("\nKeep placeholders such as [PHONE_1] or [EMAIL_1] exactly as written; never guess what they hide.");
    if empathetic {
        s.push_str(
            "\nThe customer is upset. Start by acknowledging how they feel and apologising for the trouble, then be \
brief and concrete about what happens next.",
        );
    }
    if passages.is_empty() {
        s.push_str(
            "\nNo knowledge-base passage matched this message. Do not state prices, dates, durations, order details \
or policies; if the customer needs them, say you are not sure and offer to connect a human agent.",
        );
    } else {
        s.push_str(
            "\nAnswer only from the numbered passages below and cite the ones you use like [1]. If they do not answer \
the question, say you are not sure and offer to connect a human agent.\n",
        );
        for (i, p) in passages.iter().enumerate() {
            s.push_str(&format!("\n[{}] ({}) {}", i + 1, p.label, p.text.trim()));
        }
    }
    s
}

/// The polite reply when every model failed. The customer's message is stored and the conversation is flagged.
pub fn fallback_reply(customer_text: &str) -> &'static str {
    if looks_chinese(customer_text) {
        "抱歉，智能助手暂时无法回复。您的消息已保存，我们的客服人员会尽快与您联系。"
    } else {
        "Sorry, our assistant can't answer right now. Your message has been saved and a member of our team will get \
back to you shortly."
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_store::{from_ms, Generation};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn msg(seq: i64, role: MessageRole, content: &str) -> Message {
        Message {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            conversation_id: Uuid::nil(),
            seq,
            role,
            content: content.into(),
            idempotency_key: None,
            reply_to_seq: None,
            generation: Generation::default(),
            reply_pending: false,
            created_at: from_ms(0),
        }
    }

    #[test]
    fn fallback_reply_follows_the_customers_language() {
        assert!(fallback_reply("我的订单到哪里了？").starts_with("抱歉"));
        assert!(fallback_reply("Where is my order KF-1001?").starts_with("Sorry"));
        assert!(fallback_reply("订单 KF-1001 status").starts_with("抱歉"));
    }

    #[test]
    fn dropped_turns_fold_into_a_summary_of_questions_and_numbers() {
        let dropped = vec![
            msg(1, MessageRole::Customer, "我的订单 KF-1001 还没到"),
            msg(
                2,
                MessageRole::Assistant,
                "订单 KF-1001 已发货，运单号 SF1234567890。",
            ),
            msg(3, MessageRole::Customer, "[image:0195]"),
            msg(4, MessageRole::Customer, &"很长的问题".repeat(20)),
        ];
        let s = rolling_summary(&dropped, true).unwrap();
        assert!(s.starts_with("此前对话摘要"), "{s}");
        assert!(s.contains("「我的订单 KF-1001 还没到」"), "{s}");
        assert!(s.contains("…」") && !s.contains("[image:"), "{s}");
        assert!(s.contains("提到的编号：KF-1001，SF1234567890。"), "{s}");
        let en = rolling_summary(
            &[msg(1, MessageRole::Customer, "where is order 20241101?")],
            false,
        )
        .unwrap();
        assert_eq!(
            en,
            "Summary of earlier messages (no longer shown below): the customer asked \"where is order 20241101?\". \
             Numbers mentioned: 20241101."
        );
        // Only the newest questions are kept, with a count of the rest.
        let many: Vec<Message> = (0..9)
            .map(|i| msg(i, MessageRole::Customer, &format!("question {i}")))
            .collect();
        let s = rolling_summary(&many, false).unwrap();
        assert!(
            s.contains("(3 more before)")
                && !s.contains("question 2\"")
                && s.contains("question 8"),
            "{s}"
        );
        assert_eq!(
            rolling_summary(&[msg(1, MessageRole::Assistant, "hello")], false),
            None
        );
        assert_eq!(rolling_summary(&[], true), None);
    }

    #[test]
    fn estimates_count_cjk_per_character() {
        assert_eq!(estimate_tokens("退货政策"), 5);
        assert_eq!(estimate_tokens("abcdefgh"), 3);
    }

    #[test]
    fn prompt_puts_persona_first_and_maps_roles() {
        let h = vec![
            msg(1, MessageRole::Customer, "hi"),
            msg(2, MessageRole::Assistant, "hello"),
            msg(3, MessageRole::Customer, "退货"),
        ];
        let m = build_messages("persona", &h);
        let roles: Vec<_> = m.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(
            m[0].content, "persona\n请用中文回答。",
            "the latest customer message is Chinese"
        );
        assert_eq!(m[3].content, "退货");
        let en = build_messages("persona", &h[..2]);
        assert_eq!(en[0].content, "persona\nReply in English.");
    }

    proptest! {
        #[test]
        fn history_is_a_bounded_suffix_that_keeps_the_last_message(
            texts in proptest::collection::vec("[a-z 你好退货]{0,40}", 1..30),
            budget in 0usize..200,
            max in 1usize..20,
        ) {
            let h: Vec<_> = texts.iter().enumerate().map(|(i, t)| msg(i as i64, MessageRole::Customer, t)).collect();
            let kept = select_history(&h, budget, max);
            prop_assert!(!kept.is_empty());
            prop_assert_eq!(kept.last().unwrap().seq, h.last().unwrap().seq);
            prop_assert!(kept.len() <= max.max(1));
            let start = h.len() - kept.len();
            prop_assert_eq!(&h[start..], kept);
            if kept.len() > 1 {
                let used: usize = kept.iter().map(|m| estimate_tokens(&m.content)).sum();
                prop_assert!(used <= budget);
            }
        }
    }
}
