//! Flows: multi-turn procedures that fill slots and end in a tool call (a return request that ends in a return
//! ticket, an address change, an invoice request), defined in YAML beside the tools.
//!
//! The machine here is pure: [`apply`] reads one customer message against the flow's state (cancel, correction,
//! the slot being asked, the confirmation) and [`next`] says what to ask or do next. The driver fetches the
//! choices a slot offers (the customer's orders, an order's items) through read-only tools, asks a model only when
//! the rules cannot place an answer among the choices, and runs the action tool once the customer confirmed.
//!
//! The state travels in each reply's turn record, so a flow survives restarts and every step is visible to staff.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tools::{Text, Triggers};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowDef {
    pub name: String,
    pub title: Text,
    /// What starts it: say "我要退货", not "退货政策" (a question about the policy is an FAQ, not a request).
    pub triggers: Triggers,
    /// An unfinished flow is dropped after this long without an answer.
    #[serde(default = "default_timeout")]
    pub timeout_minutes: i64,
    pub slots: Vec<SlotDef>,
    /// Shown when every slot is filled; `{slot}` and `{slot.label}` are replaced.
    pub confirm: Text,
    pub action: Action,
    /// After the action succeeded; `{result.a.b}` reads the tool's answer.
    pub done: Text,
    /// After the action failed; `{error}` is the system's message.
    pub failed: Text,
    pub cancelled: Text,
    /// A ticket opened when the action succeeds, so people follow the request up (e.g. check the returned item).
    #[serde(default)]
    pub ticket: Option<FlowTicket>,
}

/// The ticket a finished flow opens. Templates as in `done` (`{order_id}`, `{result.return.id}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTicket {
    pub subject: Text,
    /// The reference in the business's system (a return's RMA number).
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    /// `low`, `normal` (default), `high` or `urgent`.
    #[serde(default)]
    pub priority: Option<String>,
}

fn default_timeout() -> i64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// A tool (usually a mutating one); its arguments are the slots of the same names.
    pub tool: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDef {
    pub name: String,
    /// `{choices}` lists the choices.
    pub ask: Text,
    /// Words that name this slot in a correction ("不对，是另一个订单").
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A value in the message matching this (first capture group or whole match) fills the slot at any time.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The values allowed, from a read-only tool.
    #[serde(default)]
    pub choices: Option<ChoicesDef>,
    /// Any answer of two or more characters fills it (a reason, a note).
    #[serde(default)]
    pub free_text: bool,
    /// "跳过 / skip" leaves it empty; a link fills it.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoicesDef {
    /// Called with the filled slots as arguments (those the tool accepts).
    pub tool: String,
    /// Where the list is in the tool's answer (`orders`, `items`).
    pub list: String,
    /// The field of each element that is the slot's value (`id`, `sku`).
    pub value: String,
    /// The field shown to the customer (`summary`, `name`); a `{zh, en}` object gives the customer's language.
    pub label: String,
}

impl FlowDef {
    pub(crate) fn check(&self, tools: &BTreeSet<String>) -> Result<(), String> {
        if self.slots.is_empty() {
            return Err("a flow needs at least one slot".into());
        }
        if !tools.contains(&self.action.tool) {
            return Err(format!("action tool {} is not a tool", self.action.tool));
        }
        let mut seen = BTreeSet::new();
        for s in &self.slots {
            if !seen.insert(&s.name) {
                return Err(format!("slot {} is defined twice", s.name));
            }
            if let Some(p) = &s.pattern {
                crate::tools::compiled(p).map_err(|e| format!("slot {}: {e}", s.name))?;
            }
            if let Some(c) = &s.choices {
                if !tools.contains(&c.tool) {
                    return Err(format!(
                        "slot {}: choices tool {} is not a tool",
                        s.name, c.tool
                    ));
                }
            }
            if s.pattern.is_none() && s.choices.is_none() && !s.free_text && !s.optional {
                return Err(format!(
                    "slot {} can never be filled: give it a pattern, choices, free_text or optional",
                    s.name
                ));
            }
        }
        Ok(())
    }

    fn slot(&self, name: &str) -> Option<&SlotDef> {
        self.slots.iter().find(|s| s.name == name)
    }
}

/// One offered value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// Reads the choices out of a tool's answer.
pub fn choices_from(def: &ChoicesDef, answer: &Value, zh: bool) -> Vec<Choice> {
    answer[def.list.as_str()]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let value = plain(&e[def.value.as_str()])?;
            let label = localised(&e[def.label.as_str()], zh).unwrap_or_else(|| value.clone());
            Some(Choice { value, label })
        })
        .collect()
}

fn plain(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn localised(v: &Value, zh: bool) -> Option<String> {
    match v {
        Value::Object(o) => o
            .get(if zh { "zh" } else { "en" })
            .and_then(plain)
            .or_else(|| o.values().find_map(plain)),
        other => plain(other),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Collecting,
    Confirming,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filled {
    pub value: String,
    pub label: String,
}

impl From<&Choice> for Filled {
    fn from(c: &Choice) -> Self {
        Filled {
            value: c.value.clone(),
            label: c.label.clone(),
        }
    }
}

/// A flow in progress, stored in each reply's turn record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowState {
    pub name: String,
    pub stage: Stage,
    pub slots: BTreeMap<String, Filled>,
    /// Optional slots the customer skipped.
    pub skipped: Vec<String>,
    /// Answers in a row that filled nothing.
    pub misses: u32,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the action returned (e.g. the return's number) or why it failed.
    pub result: Option<Value>,
    /// The number of the ticket the finished flow opened, if it declares one.
    #[serde(default)]
    pub ticket: Option<i64>,
}

impl FlowState {
    pub fn start(def: &FlowDef, now: DateTime<Utc>) -> FlowState {
        FlowState {
            name: def.name.clone(),
            stage: Stage::Collecting,
            slots: BTreeMap::new(),
            skipped: Vec::new(),
            misses: 0,
            started_at: now,
            updated_at: now,
            result: None,
            ticket: None,
        }
    }

    /// Still waiting for the customer, and not timed out.
    pub fn in_progress(&self, def: &FlowDef, now: DateTime<Utc>) -> bool {
        matches!(self.stage, Stage::Collecting | Stage::Confirming)
            && now - self.updated_at <= Duration::minutes(def.timeout_minutes)
    }

    /// The slots as tool arguments.
    pub fn arguments(&self) -> serde_json::Map<String, Value> {
        self.slots
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.value.clone())))
            .collect()
    }
}

/// What one message did to the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Something was filled (or corrected, or skipped).
    Progress,
    /// The customer confirmed: run the action.
    Confirmed,
    Cancelled,
    /// Nothing in the message fits; it looks like another question (answer it, keep the flow).
    Aside,
    /// Nothing fits and it is not a question either: ask again.
    Missed,
}

/// What to say or do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Ask for this slot.
    Ask(String),
    /// Every slot is filled: ask for confirmation.
    Confirm,
}

const CANCEL: &[&str] = &[
    "取消",
    "算了",
    "不退了",
    "不用了",
    "不要了",
    "不办了",
    "cancel",
    "never mind",
    "nevermind",
    "forget it",
    "stop",
];
const YES: &[&str] = &[
    "确认",
    "确定",
    "是的",
    "好的",
    "可以",
    "没问题",
    "对",
    "是",
    "嗯",
    "yes",
    "confirm",
    "ok",
    "okay",
    "sure",
    "correct",
    "go ahead",
    "y",
];
const NO: &[&str] = &["不是", "不对", "否", "no", "not right", "wrong"];
const CORRECTION: &[&str] = &[
    "不对",
    "不是这个",
    "不是这",
    "另一个",
    "另外一个",
    "换一个",
    "错了",
    "the other",
    "another",
    "wrong",
    "not that",
    "not this",
    "no,",
    "different",
];
const SKIP: &[&str] = &[
    "跳过",
    "没有",
    "不用",
    "不需要",
    "不上传",
    "skip",
    "no photo",
    "none",
    "no",
];
const QUESTION: &[&str] = &[
    "?",
    "？",
    "吗",
    "怎么",
    "多久",
    "多少",
    "什么",
    "为什么",
    "能不能",
    "how",
    "what",
    "when",
    "why",
    "can i",
    "do you",
];

fn fold(text: &str) -> String {
    kefu_nlu::text::fold_str(text).trim().to_owned()
}

/// Short confirmations and refusals are matched whole; longer ones by their leading word.
fn says(text: &str, words: &[&str]) -> bool {
    let t = fold(text);
    let t = t.trim_matches(|c: char| !c.is_alphanumeric() && !kefu_nlu::text::is_han(c));
    words.iter().any(|w| {
        t == *w
            || (t.starts_with(w)
                && t[w.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| !c.is_ascii_alphanumeric()))
    })
}

fn mentions(text: &str, words: &[&str]) -> bool {
    let t = fold(text);
    words.iter().any(|w| {
        if w.is_ascii() && w.len() <= 3 {
            t.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|tok| tok == *w)
        } else {
            t.contains(w)
        }
    })
}

fn looks_like_question(text: &str) -> bool {
    mentions(text, QUESTION)
}

fn pattern_value(slot: &SlotDef, text: &str) -> Option<String> {
    let re = crate::tools::compiled(slot.pattern.as_deref()?).ok()?;
    let c = re.captures(text)?;
    Some(c.get(1).or_else(|| c.get(0))?.as_str().to_uppercase())
}

/// The choice a message points at: its value, an ordinal ("第二个", "2", "the second"), or the label it shares the
/// most character pairs with (when that is unique).
pub fn match_choice(text: &str, choices: &[Choice]) -> Option<usize> {
    let t = fold(text);
    if let Some(i) = choices
        .iter()
        .position(|c| t.contains(&c.value.to_lowercase()))
    {
        return Some(i);
    }
    const ORD_ZH: [&str; 5] = ["一", "二", "三", "四", "五"];
    const ORD_EN: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];
    for i in 0..choices.len().min(5) {
        let n = (i + 1).to_string();
        let bare = t.trim_matches(|c: char| !c.is_alphanumeric()) == n;
        if bare
            || t.contains(&format!("第{}", ORD_ZH[i]))
            || t.contains(&format!("第{n}"))
            || mentions(&t, &[ORD_EN[i]])
        {
            return Some(i);
        }
    }
    if choices.len() == 1 && mentions(&t, &["这个", "就是", "that one", "this one", "it"]) {
        return Some(0);
    }
    let mine = label_tokens(&t);
    let scores: Vec<usize> = choices
        .iter()
        .map(|c| label_tokens(&fold(&c.label)).intersection(&mine).count())
        .collect();
    let best = *scores.iter().max()?;
    (best > 0 && scores.iter().filter(|s| **s == best).count() == 1)
        .then(|| scores.iter().position(|s| *s == best))
        .flatten()
}

/// Words that say nothing about which choice is meant.
const STOP: &[&str] = &[
    "the", "and", "one", "that", "this", "those", "these", "with", "from", "for", "want", "would",
    "like", "return", "item", "items", "order", "orders", "more", "please", "thanks", "yes", "not",
    "but", "its", "it's", "was",
];

/// What a label and an answer are compared on: pairs of adjacent Han characters, and English words of three or
/// more letters that are not [`STOP`] words (single letters and "the" would match any label).
fn label_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for w in chars.windows(2) {
        if kefu_nlu::text::is_han(w[0]) && kefu_nlu::text::is_han(w[1]) {
            out.insert(w.iter().collect());
        }
    }
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.len() >= 3 && !STOP.contains(&word) && !word.chars().all(|c| c.is_ascii_digit()) {
            out.insert(word.trim_end_matches('s').to_owned());
        }
    }
    out
}

/// The first slot still to fill.
pub fn next(def: &FlowDef, state: &FlowState) -> Next {
    def.slots
        .iter()
        .find(|s| !state.slots.contains_key(&s.name) && !state.skipped.contains(&s.name))
        .map_or(Next::Confirm, |s| Next::Ask(s.name.clone()))
}

/// Clears a slot and the later slots that offer choices (their choices may depend on it: another order has other
/// items); a reason already given stays.
fn clear_from(def: &FlowDef, state: &mut FlowState, name: &str) {
    let Some(at) = def.slots.iter().position(|s| s.name == name) else {
        return;
    };
    for (i, s) in def.slots[at..].iter().enumerate() {
        if i == 0 || s.choices.is_some() {
            state.slots.remove(&s.name);
            state.skipped.retain(|n| n != &s.name);
        }
    }
}

/// Reads one message. `choices` holds the choices of the slots that offer them, as far as they can be fetched
/// with what is filled; `starting` is the message that started the flow (it fills patterns and choices, never a
/// free-text slot: "我要退货" is not the reason).
pub fn apply(
    def: &FlowDef,
    state: &mut FlowState,
    text: &str,
    choices: &BTreeMap<String, Vec<Choice>>,
    starting: bool,
    now: DateTime<Utc>,
) -> Applied {
    state.updated_at = now;
    if !starting && (says(text, CANCEL) || mentions(text, &["取消", "cancel"])) {
        state.stage = Stage::Cancelled;
        return Applied::Cancelled;
    }
    let mut progressed = false;
    // A value with a pattern fills (or replaces) its slot whenever it appears.
    for slot in &def.slots {
        if let Some(v) = pattern_value(slot, text) {
            let allowed = choices.get(&slot.name);
            let label = match allowed {
                Some(cs) => match cs.iter().find(|c| c.value.eq_ignore_ascii_case(&v)) {
                    Some(c) => c.label.clone(),
                    None => continue, // not one of this customer's: ignore, the slot is asked again
                },
                None => v.clone(),
            };
            if state.slots.get(&slot.name).map(|f| &f.value) != Some(&v) {
                clear_from(def, state, &slot.name);
                state
                    .slots
                    .insert(slot.name.clone(), Filled { value: v, label });
                progressed = true;
            }
        }
    }
    if state.stage == Stage::Confirming && !progressed {
        if mentions(text, CORRECTION) {
            correct(def, state, text, choices);
            state.stage = Stage::Collecting;
            return Applied::Progress;
        }
        if says(text, NO) {
            state.stage = Stage::Cancelled;
            return Applied::Cancelled;
        }
        if says(text, YES) {
            return Applied::Confirmed;
        }
        state.misses += 1;
        return Applied::Missed;
    }
    // While a free-text answer is asked, "wrong size" is the answer, not a correction, unless a slot is named.
    let asking_free_text =
        matches!(next(def, state), Next::Ask(n) if def.slot(&n).is_some_and(|s| s.free_text));
    let names_slot = def.slots.iter().any(|s| {
        !s.aliases.is_empty()
            && mentions(
                text,
                &s.aliases.iter().map(String::as_str).collect::<Vec<_>>(),
            )
    });
    if !progressed
        && !starting
        && mentions(text, CORRECTION)
        && !state.slots.is_empty()
        && (!asking_free_text || names_slot)
    {
        correct(def, state, text, choices);
        state.stage = Stage::Collecting;
        state.misses = 0;
        return Applied::Progress;
    }
    // The slot being asked.
    if let Next::Ask(name) = next(def, state) {
        let slot = def.slot(&name).expect("next names a slot");
        let filled = if let Some(cs) = choices.get(&name) {
            match_choice(text, cs).map(|i| Filled::from(&cs[i]))
        } else if slot.free_text && !starting {
            let t = text.trim();
            (t.chars().count() >= 2).then(|| Filled {
                value: t.chars().take(300).collect(),
                label: t.chars().take(300).collect(),
            })
        } else {
            None
        };
        match filled {
            Some(f) => {
                state.slots.insert(name, f);
                progressed = true;
            }
            None if slot.optional && !starting => {
                let t = text.trim();
                if t.starts_with("http://") || t.starts_with("https://") {
                    state.slots.insert(
                        name,
                        Filled {
                            value: t.into(),
                            label: t.into(),
                        },
                    );
                    progressed = true;
                } else if says(text, SKIP) || mentions(text, &["跳过", "skip"]) {
                    state.skipped.push(name);
                    progressed = true;
                }
            }
            None => {}
        }
    }
    if progressed || starting {
        state.misses = 0;
        if next(def, state) == Next::Confirm {
            state.stage = Stage::Confirming;
        }
        return Applied::Progress;
    }
    if looks_like_question(text) {
        return Applied::Aside;
    }
    state.misses += 1;
    Applied::Missed
}

/// "No, the other order": clear the slot the message names (or the last filled one); with exactly two choices,
/// take the other one.
fn correct(
    def: &FlowDef,
    state: &mut FlowState,
    text: &str,
    choices: &BTreeMap<String, Vec<Choice>>,
) {
    let named = def
        .slots
        .iter()
        .find(|s| {
            !s.aliases.is_empty()
                && mentions(
                    text,
                    &s.aliases.iter().map(String::as_str).collect::<Vec<_>>(),
                )
        })
        .filter(|s| state.slots.contains_key(&s.name));
    let target = named.or_else(|| {
        def.slots
            .iter()
            .rev()
            .find(|s| state.slots.contains_key(&s.name))
    });
    let Some(slot) = target else { return };
    let old = state.slots.get(&slot.name).map(|f| f.value.clone());
    clear_from(def, state, &slot.name);
    if let Some(cs) = choices.get(&slot.name) {
        let others: Vec<&Choice> = cs
            .iter()
            .filter(|c| Some(&c.value) != old.as_ref())
            .collect();
        let pick = match_choice(text, cs)
            .map(|i| &cs[i])
            .filter(|c| Some(&c.value) != old.as_ref())
            .or_else(|| (others.len() == 1).then(|| others[0]));
        if let Some(c) = pick {
            state.slots.insert(slot.name.clone(), Filled::from(c));
        }
    }
}

/// Fills `{slot}`, `{slot.label}`, `{choices}`, `{result.a.b}` and `{error}` in a flow text.
pub fn render(
    template: &str,
    state: &FlowState,
    choices: Option<&[Choice]>,
    error: Option<&str>,
) -> String {
    static PLACEHOLDER: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = PLACEHOLDER.get_or_init(|| Regex::new(r"\{([a-z_]+(?:\.[a-z_]+)*)\}").expect("valid"));
    re.replace_all(template, |c: &regex::Captures<'_>| {
        let key = &c[1];
        if key == "choices" {
            return choices.map(list_choices).unwrap_or_default();
        }
        if key == "error" {
            return error.unwrap_or_default().to_owned();
        }
        if let Some(path) = key.strip_prefix("result.") {
            let mut v = state.result.as_ref().unwrap_or(&Value::Null);
            for part in path.split('.') {
                v = &v[part];
            }
            return plain(v).unwrap_or_default();
        }
        let (name, label) = match key.strip_suffix(".label") {
            Some(n) => (n, true),
            None => (key, false),
        };
        match state.slots.get(name) {
            Some(f) if label => f.label.clone(),
            Some(f) => f.value.clone(),
            None => String::new(),
        }
    })
    .into_owned()
}

fn list_choices(choices: &[Choice]) -> String {
    choices
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\n{}. {}", i + 1, c.label))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const FLOW: &str = r#"
name: return_request
title: {zh: 退货申请, en: return request}
triggers: {keywords: [我要退货, 申请退货, return an item]}
slots:
  - name: order_id
    aliases: [订单, order]
    pattern: "(?i)\\b(KF\\d{8})\\b"
    ask: {zh: "哪个订单？{choices}", en: "Which order?{choices}"}
    choices: {tool: list_orders, list: orders, value: id, label: summary}
  - name: sku
    aliases: [商品, item]
    ask: {zh: "哪件商品？{choices}", en: "Which item?{choices}"}
    choices: {tool: get_order, list: items, value: sku, label: name}
  - name: reason
    ask: {zh: 原因？, en: Why?}
    free_text: true
  - name: photo
    ask: {zh: 照片？, en: Photo?}
    optional: true
confirm: {zh: "确认退 {order_id} 的 {sku.label}，原因：{reason}？", en: "Return {sku.label} from {order_id} because {reason}?"}
action: {tool: create_return}
done: {zh: "已提交 {result.return.id}", en: "Done: {result.return.id}"}
failed: {zh: "失败：{error}", en: "Failed: {error}"}
cancelled: {zh: 已取消, en: Cancelled}
"#;

    fn def() -> FlowDef {
        serde_yaml_ng::from_str(FLOW).unwrap()
    }

    fn c(v: &str, l: &str) -> Choice {
        Choice {
            value: v.into(),
            label: l.into(),
        }
    }

    fn choices(with_items: bool) -> BTreeMap<String, Vec<Choice>> {
        let mut m = BTreeMap::new();
        m.insert(
            "order_id".into(),
            vec![
                c("KF20261108", "充电器等 2 件（运输中）"),
                c("KF20261101", "无线降噪耳机 Pro 等 2 件（已签收）"),
            ],
        );
        if with_items {
            m.insert(
                "sku".into(),
                vec![c("AUD-100", "无线降噪耳机 Pro"), c("ACC-200", "磁吸手机壳")],
            );
        }
        m
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_return_fills_slots_confirms_and_builds_the_arguments() {
        let d = def();
        let mut s = FlowState::start(&d, now());
        assert_eq!(
            apply(&d, &mut s, "我要退货", &choices(false), true, now()),
            Applied::Progress
        );
        assert_eq!(next(&d, &s), Next::Ask("order_id".into()));
        // By label words.
        assert_eq!(
            apply(&d, &mut s, "耳机那个订单", &choices(false), false, now()),
            Applied::Progress
        );
        assert_eq!(s.slots["order_id"].value, "KF20261101");
        assert_eq!(
            apply(&d, &mut s, "第二个", &choices(true), false, now()),
            Applied::Progress
        );
        assert_eq!(s.slots["sku"].value, "ACC-200");
        assert_eq!(
            apply(&d, &mut s, "壳子有裂纹", &choices(true), false, now()),
            Applied::Progress
        );
        assert_eq!(next(&d, &s), Next::Ask("photo".into()));
        assert_eq!(
            apply(&d, &mut s, "跳过", &choices(true), false, now()),
            Applied::Progress
        );
        assert_eq!(s.stage, Stage::Confirming);
        let text = render(&d.confirm.zh, &s, None, None);
        assert_eq!(text, "确认退 KF20261101 的 磁吸手机壳，原因：壳子有裂纹？");
        assert_eq!(
            apply(&d, &mut s, "确认", &choices(true), false, now()),
            Applied::Confirmed
        );
        let args = s.arguments();
        assert_eq!(args["sku"], "ACC-200");
        assert!(!args.contains_key("photo"));
    }

    #[test]
    fn the_starting_message_fills_patterns_but_not_free_text() {
        let d = def();
        let mut s = FlowState::start(&d, now());
        apply(
            &d,
            &mut s,
            "我要退货，订单 kf20261101",
            &choices(true),
            true,
            now(),
        );
        assert_eq!(
            s.slots["order_id"].label,
            "无线降噪耳机 Pro 等 2 件（已签收）"
        );
        assert_eq!(next(&d, &s), Next::Ask("sku".into()));
        // An order number that is not the customer's is ignored.
        let mut s = FlowState::start(&d, now());
        apply(
            &d,
            &mut s,
            "我要退货 KF99999999",
            &choices(false),
            true,
            now(),
        );
        assert!(s.slots.is_empty());
    }

    #[test]
    fn corrections_cancel_asides_misses_and_timeouts() {
        let d = def();
        let mut s = FlowState::start(&d, now());
        apply(
            &d,
            &mut s,
            "我要退货 KF20261101",
            &choices(true),
            true,
            now(),
        );
        // "No, the other order" with two orders: the other one, and the item is asked again.
        assert_eq!(
            apply(
                &d,
                &mut s,
                "不对，是另一个订单",
                &choices(true),
                false,
                now()
            ),
            Applied::Progress
        );
        assert_eq!(s.slots["order_id"].value, "KF20261108");
        assert_eq!(next(&d, &s), Next::Ask("sku".into()));
        assert_eq!(
            apply(
                &d,
                &mut s,
                "退货要多久到账？",
                &choices(false),
                false,
                now()
            ),
            Applied::Aside
        );
        assert_eq!(
            apply(&d, &mut s, "嗯嗯嗯", &choices(false), false, now()),
            Applied::Missed
        );
        assert_eq!(s.misses, 1);
        assert!(s.in_progress(&d, now() + Duration::minutes(29)));
        assert!(!s.in_progress(&d, now() + Duration::minutes(31)));
        assert_eq!(
            apply(&d, &mut s, "算了", &choices(false), false, now()),
            Applied::Cancelled
        );
        assert!(!s.in_progress(&d, now()));
    }

    #[test]
    fn generic_words_pick_nothing() {
        let cs = vec![
            c(
                "KF20261112",
                "KF20261112: Portable Bluetooth Speaker (in transit)",
            ),
            c(
                "KF20261103",
                "KF20261103: Lightweight Running Shoes and 1 more (delivered)",
            ),
        ];
        assert_eq!(match_choice("I want to return an item", &cs), None);
        assert_eq!(match_choice("the running shoes order", &cs), Some(1));
        assert_eq!(match_choice("the speaker", &cs), Some(0));
        assert_eq!(match_choice("我要退货", &choices(false)["order_id"]), None);
    }

    #[test]
    fn a_free_text_answer_with_a_correction_word_is_the_answer() {
        let d = def();
        let mut r = FlowState::start(&d, now());
        apply(
            &d,
            &mut r,
            "我要退货 KF20261101",
            &choices(true),
            true,
            now(),
        );
        apply(&d, &mut r, "耳机", &choices(true), false, now());
        assert_eq!(next(&d, &r), Next::Ask("reason".into()));
        apply(&d, &mut r, "wrong size", &choices(true), false, now());
        assert_eq!(r.slots["reason"].value, "wrong size");
        assert_eq!(r.slots["sku"].value, "AUD-100");
    }

    #[test]
    fn english_works_too() {
        let d = def();
        let mut s = FlowState::start(&d, now());
        apply(
            &d,
            &mut s,
            "I'd like to return an item",
            &choices(false),
            true,
            now(),
        );
        apply(&d, &mut s, "the first one", &choices(false), false, now());
        assert_eq!(s.slots["order_id"].value, "KF20261108");
        let mut cs = choices(false);
        cs.insert("sku".into(), vec![c("ACC-210", "65W GaN Charger")]);
        apply(&d, &mut s, "the charger", &cs, false, now());
        apply(&d, &mut s, "It stopped charging", &cs, false, now());
        apply(&d, &mut s, "no photo", &cs, false, now());
        assert_eq!(s.stage, Stage::Confirming);
        assert_eq!(
            apply(&d, &mut s, "no, wrong item", &cs, false, now()),
            Applied::Progress
        );
        assert_eq!(s.stage, Stage::Collecting);
        assert_eq!(next(&d, &s), Next::Ask("sku".into()));
    }

    #[test]
    fn definitions_are_checked() {
        let tools: BTreeSet<String> = ["list_orders", "get_order", "create_return"]
            .map(String::from)
            .into();
        assert!(def().check(&tools).is_ok());
        let mut bad = def();
        bad.action.tool = "nope".into();
        assert!(bad.check(&tools).is_err());
        let mut bad = def();
        bad.slots[2].free_text = false;
        assert!(bad.check(&tools).unwrap_err().contains("never be filled"));
    }
}
