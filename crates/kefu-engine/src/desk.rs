//! The human desk's side of the engine: agents taking conversations, agents' messages, the customer's rating and
//! the hand-off brief an agent reads on taking over.
//!
//! The brief is assembled from what is already recorded (every reply's `TurnTrace`, the hand-off event) plus the
//! business's own systems (profile and orders tools); nothing here calls a model, so a brief is instant and costs
//! nothing, and its suggested reply is a template the agent edits.

use chrono::{DateTime, Utc};
use kefu_store::{Conversation, Customer, EventData, Handler, Message, MessageRole, NewMessage};
use kefu_types::{BriefAttempt, BriefEmotion, TicketDraft, TurnTrace};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::engine::{Accepted, Engine, EngineError};

/// The brief without the conversation and customer records (which the caller already converts).
#[derive(Debug, Clone, PartialEq)]
pub struct BriefFacts {
    pub language: String,
    pub handoff_reason: Option<String>,
    pub summary: String,
    pub intent: Option<String>,
    pub emotions: Vec<BriefEmotion>,
    pub attempts: Vec<BriefAttempt>,
    pub profile: Option<Value>,
    pub recent_orders: Option<Value>,
    pub suggested_reply: String,
    pub ticket: TicketDraft,
}

/// A rating this low (1–5) marks the conversation's answers as disliked.
pub const DISLIKED_AT_MOST: i32 = 2;

/// At most this many messages are read for a brief (the newest ones).
const BRIEF_MESSAGES: u32 = 400;

impl Engine {
    /// Gives a conversation to `agent`: an accept from the queue (`from = None`) or a transfer from the agent
    /// holding it (`from = Some(holder)`). Exactly one of two racing accepts wins; the other gets `HeldByAnother`.
    pub async fn assign(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        agent: Uuid,
        from: Option<Uuid>,
        reason: &str,
    ) -> Result<Conversation, EngineError> {
        let r = self
            .store
            .assign_conversation(tenant, conversation, agent, from, reason)
            .await;
        self.handed_over(r)
    }

    /// A hand-over's outcome: its event published; a lost compare-and-set is `HeldByAnother`.
    fn handed_over(
        &self,
        r: kefu_store::Result<(Conversation, Option<kefu_store::Event>)>,
    ) -> Result<Conversation, EngineError> {
        let (conv, event) = r.map_err(|e| match e {
            kefu_store::StoreError::Conflict(_) => EngineError::HeldByAnother,
            e => e.into(),
        })?;
        if let Some(ev) = event {
            self.hub.publish(ev);
        }
        Ok(conv)
    }

    /// Stores an agent's message (exactly once per idempotency key) and sends it to the conversation's
    /// subscribers. Only the agent holding the conversation may speak in it.
    pub async fn post_agent_message(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        agent: Uuid,
        content: String,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, EngineError> {
        let conv = self
            .store
            .get_conversation(tenant, conversation)
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        if conv.handler != Handler::Agent || conv.assignee_id != Some(agent) {
            return Err(EngineError::NotHolder);
        }
        self.store_and_publish(NewMessage {
            tenant_id: tenant,
            conversation_id: conversation,
            role: MessageRole::Agent,
            content,
            idempotency_key,
            reply_to_seq: None,
            generation: Default::default(),
            require_open: true,
        })
        .await
    }

    /// The customer asked for a person (the widget's button): the conversation joins the queue of the team its
    /// conversation so far routes to. Outside business hours the customer is also told, in a message, when people
    /// are back, and a ticket is opened. A conversation an agent already holds stays with them.
    pub async fn request_human(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        reason: &str,
    ) -> Result<Conversation, EngineError> {
        let conv = self
            .store
            .get_conversation(tenant, conversation)
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let recent = self
            .store
            .list_messages(tenant, conversation, (conv.last_seq - 50).max(0), 50)
            .await?;
        let last = recent
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::Customer)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        // What the assistant last understood of the customer (intent, language), from its recorded turn.
        let understood = recent
            .iter()
            .rev()
            .filter(|m| m.role == MessageRole::Assistant)
            .find_map(|m| serde_json::from_value::<TurnTrace>(m.generation.trace.clone()?).ok());
        let zh = match &understood {
            Some(t) if !t.language.is_empty() => t.language == "zh",
            _ => last.is_empty() || last.chars().any(is_han),
        };
        let cfg = self.desk_config(tenant).await;
        let hint = RouteHint {
            intent: understood.as_ref().and_then(|t| t.intent.clone()),
            text: last.clone(),
            language: Some(if zh { "zh" } else { "en" }.to_owned()),
        };
        let conv = match self.queue_for_people(&cfg, &conv, reason, &hint).await {
            Ok(c) => c,
            // An agent has it already: the customer is with a person.
            Err(EngineError::HeldByAnother) => {
                return self.conversation(tenant, conversation).await
            }
            Err(e) => return Err(e),
        };
        let now = Utc::now();
        let Some(schedule) = Schedule::closed_now(&cfg, now) else {
            self.assign_with(&cfg, tenant, conversation, conv.team.as_deref(), now)
                .await?;
            return self.conversation(tenant, conversation).await;
        };
        let text = self
            .after_hours(tenant, conversation, &last, reason, &schedule, now, zh)
            .await;
        self.store_and_publish(NewMessage {
            tenant_id: tenant,
            conversation_id: conversation,
            role: MessageRole::System,
            content: text,
            idempotency_key: None,
            reply_to_seq: None,
            generation: Default::default(),
            require_open: true,
        })
        .await?;
        Ok(conv)
    }

    async fn conversation(&self, tenant: Uuid, id: Uuid) -> Result<Conversation, EngineError> {
        self.store
            .get_conversation(tenant, id)
            .await?
            .ok_or(EngineError::ConversationNotFound)
    }

    /// Puts a conversation no agent holds in the queue of the team the tenant's rules route it to (or the general
    /// queue) and tells subscribers. `HeldByAnother` when an agent holds it.
    pub(crate) async fn queue_for_people(
        &self,
        cfg: &kefu_types::DeskConfig,
        conv: &Conversation,
        reason: &str,
        hint: &RouteHint,
    ) -> Result<Conversation, EngineError> {
        let mut tier = None;
        if cfg.teams.iter().any(|t| !t.tiers.is_empty()) {
            if let (Some(set), Some(customer)) = (
                self.parts.business.as_deref(),
                self.customer_ref(conv.tenant_id, conv.customer_id).await,
            ) {
                tier = self.customer_tier(set, &customer).await;
            }
        }
        let team = route_team(
            &cfg.teams,
            hint.intent.as_deref(),
            &hint.text,
            hint.language.as_deref(),
            tier.as_deref(),
        );
        self.route(conv.tenant_id, conv.id, team, None, reason)
            .await
    }

    /// Moves a conversation to a team's queue (`None`: the general queue): a transfer by the agent holding it
    /// (`from`), or re-routing a queued one (`from = None`).
    pub async fn route(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        team: Option<&str>,
        from: Option<Uuid>,
        reason: &str,
    ) -> Result<Conversation, EngineError> {
        let r = self
            .store
            .route_conversation(tenant, conversation, team, from, reason)
            .await;
        self.handed_over(r)
    }

    /// The customer's tier from the business's profile tool, if it has one.
    pub(crate) async fn customer_tier(
        &self,
        set: &crate::tools::ToolSet,
        customer: &str,
    ) -> Option<String> {
        let tool = set.tool(set.business.profile_tool.as_deref()?)?;
        let profile = set.call(tool, &Map::new(), customer).await.outcome.ok()?;
        profile["tier"].as_str().map(str::to_owned)
    }

    /// The tenant's desk settings (default when unset; an unreadable stored value is logged and ignored).
    pub async fn desk_config(&self, tenant: Uuid) -> kefu_types::DeskConfig {
        let Ok(Some(t)) = self.store.get_tenant(tenant).await else {
            return Default::default();
        };
        t.desk_config
            .and_then(|v| {
                serde_json::from_value(v)
                    .map_err(|e| tracing::warn!(error = %e, "ignoring the tenant's unreadable desk settings"))
                    .ok()
            })
            .unwrap_or_default()
    }

    /// The names of the tenant's desk teams, in routing order.
    pub async fn desk_team_names(&self, tenant: Uuid) -> Vec<String> {
        self.desk_config(tenant)
            .await
            .teams
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    /// Gives a queued conversation (routed to `team`) to an online agent when the tenant (settings `cfg`)
    /// assigns automatically. Returns the agent.
    pub(crate) async fn assign_with(
        &self,
        cfg: &kefu_types::DeskConfig,
        tenant: Uuid,
        conversation: Uuid,
        team: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, EngineError> {
        let mode = Assignment::parse(cfg.assignment.as_deref()).unwrap_or(Assignment::Manual);
        if mode == Assignment::Manual {
            return Ok(None);
        }
        let agents = self.store.desk_agents(tenant).await?;
        let capacity = cfg.agent_capacity.unwrap_or(DEFAULT_CAPACITY);
        let Some(agent) = pick_agent(&agents, mode, capacity, team, now) else {
            return Ok(None);
        };
        match self
            .assign(tenant, conversation, agent, None, "auto_assigned")
            .await
        {
            Ok(_) => Ok(Some(agent)),
            // Someone accepted it first, or it closed: nothing to do.
            Err(EngineError::HeldByAnother | EngineError::ConversationClosed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The desk's housekeeping, run every few seconds by the server (on every node; each change is a
    /// compare-and-set, so nodes do not fight): conversations held by agents whose console went silent return to
    /// the queue, and queued conversations go to online agents where the tenant assigns automatically.
    /// Returns (requeued, assigned).
    pub async fn desk_sweep(&self, now: DateTime<Utc>) -> Result<(usize, usize), EngineError> {
        let cutoff = now - chrono::Duration::seconds(ONLINE_WINDOW_SECS);
        let mut requeued = 0;
        for (tenant, conv, agent) in self.store.stale_holds(cutoff, 200).await? {
            if let Some(ev) = self
                .store
                .requeue_conversation(tenant, conv, agent, "agent_disconnected")
                .await?
            {
                self.hub.publish(ev);
                requeued += 1;
            }
        }
        let mut assigned = 0;
        // Each tenant's settings are read once per sweep. A team's queue is skipped for the rest of the round once
        // nobody could take one of its conversations; a manual tenant's at once.
        let mut tenants: std::collections::HashMap<Uuid, kefu_types::DeskConfig> =
            Default::default();
        let mut stuck: std::collections::HashSet<(Uuid, Option<String>)> = Default::default();
        for q in self.store.queued_conversations(500).await? {
            let key = (q.tenant_id, q.team.clone());
            if stuck.contains(&key) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = tenants.entry(q.tenant_id) {
                v.insert(self.desk_config(q.tenant_id).await);
            }
            let cfg = &tenants[&q.tenant_id];
            match self
                .assign_with(cfg, q.tenant_id, q.id, q.team.as_deref(), now)
                .await?
            {
                Some(_) => assigned += 1,
                None => {
                    stuck.insert(key);
                }
            }
        }
        Ok((requeued, assigned))
    }

    /// Stores an image and the message that shows it (`[image:<id>]`), from the customer or the agent holding the
    /// conversation (the caller checks who may). No turn runs for it: the assistant does not read images.
    pub async fn post_attachment(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        role: MessageRole,
        content_type: &str,
        data: &[u8],
    ) -> Result<Accepted, EngineError> {
        let att = self
            .store
            .add_attachment(tenant, conversation, content_type, data)
            .await?;
        self.store_and_publish(NewMessage {
            tenant_id: tenant,
            conversation_id: conversation,
            role,
            content: format!("[image:{}]", att.id),
            idempotency_key: None,
            reply_to_seq: None,
            generation: Default::default(),
            require_open: true,
        })
        .await
    }

    /// Records the customer's rating (1–5; the caller checks the range) and tells subscribers.
    pub async fn rate(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        rating: i32,
        comment: Option<&str>,
    ) -> Result<Conversation, EngineError> {
        let (conv, event) = self
            .store
            .rate_conversation(tenant, conversation, rating, comment)
            .await?;
        self.hub.publish(event);
        // A disliked conversation's answers are not reused for anyone else.
        if rating <= DISLIKED_AT_MOST {
            let dropped = self.cache.disliked(tenant, conversation);
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    rating,
                    "answers of a poorly rated conversation left the cache"
                );
            }
        }
        Ok(conv)
    }

    /// Why each conversation was handed to people: the reason of its latest hand-off event.
    pub async fn handoff_reason(
        &self,
        tenant: Uuid,
        conversation: &Conversation,
    ) -> Result<Option<String>, EngineError> {
        if conversation.handler == Handler::Bot {
            return Ok(None);
        }
        let after = (conversation.last_seq - 200).max(0);
        let events = self
            .store
            .list_events(tenant, conversation.id, after, 200)
            .await?;
        Ok(events.iter().rev().find_map(|e| match &e.data {
            EventData::HandlerChanged {
                handler: Handler::Queued,
                reason,
                ..
            } => Some(reason.clone()),
            _ => None,
        }))
    }

    /// The hand-off brief of a conversation (staff only; the caller checks).
    pub async fn brief(
        &self,
        tenant: Uuid,
        conversation: Uuid,
    ) -> Result<(Conversation, Customer, BriefFacts), EngineError> {
        let conv = self
            .store
            .get_conversation(tenant, conversation)
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let customer = self
            .store
            .get_customer(tenant, conv.customer_id)
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let after = (conv.last_seq - i64::from(BRIEF_MESSAGES)).max(0);
        let messages = self
            .store
            .list_messages(tenant, conversation, after, BRIEF_MESSAGES)
            .await?;
        let handoff_reason = self.handoff_reason(tenant, &conv).await?;
        let (profile, recent_orders) = match &customer.external_id {
            Some(ext) => self.shop_context(ext).await,
            None => (None, None),
        };
        let facts = assemble(&messages, handoff_reason, profile, recent_orders, &customer);
        Ok((conv, customer, facts))
    }

    /// The profile and recent orders from the business's systems, when it declares tools for them.
    async fn shop_context(&self, customer: &str) -> (Option<Value>, Option<Value>) {
        let Some(set) = &self.parts.business else {
            return (None, None);
        };
        let call = |name: Option<&String>| {
            let tool = name.and_then(|n| set.tool(n));
            async move {
                let tool = tool?;
                match set.call(tool, &Map::new(), customer).await.outcome {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::warn!(tool = %tool.name, error = %e, "brief: the tool failed");
                        None
                    }
                }
            }
        };
        let (profile, orders) = tokio::join!(
            call(set.business.profile_tool.as_ref()),
            call(set.business.orders_tool.as_ref())
        );
        // A brief shows the latest few orders, not the whole history.
        let orders = orders.map(|o| match o {
            Value::Array(a) => Value::Array(a.into_iter().take(5).collect()),
            Value::Object(mut m) => {
                if let Some(Value::Array(a)) = m.get_mut("orders") {
                    a.truncate(5);
                }
                Value::Object(m)
            }
            v => v,
        });
        (profile, orders)
    }
}

/// Builds the brief from the stored messages (oldest first) and what the shop said. Pure.
pub fn assemble(
    messages: &[Message],
    handoff_reason: Option<String>,
    profile: Option<Value>,
    recent_orders: Option<Value>,
    customer: &Customer,
) -> BriefFacts {
    let question = |seq: i64| {
        messages
            .iter()
            .find(|m| m.seq == seq)
            .map(|m| m.content.clone())
            .unwrap_or_default()
    };
    let mut emotions = Vec::new();
    let mut attempts = Vec::new();
    let mut intent = None;
    // Customer turns detected as Chinese and as anything else: the brief speaks the majority's language.
    let (mut zh_turns, mut other_turns) = (0usize, 0usize);
    for m in messages.iter().filter(|m| m.role == MessageRole::Assistant) {
        let (Some(seq), Some(trace)) = (m.reply_to_seq, &m.generation.trace) else {
            continue;
        };
        let Ok(t) = serde_json::from_value::<TurnTrace>(trace.clone()) else {
            continue;
        };
        emotions.push(BriefEmotion {
            seq,
            polarity: t.polarity.clone(),
            intensity: t.intensity,
            emotion: t.emotion.clone(),
        });
        if t.intent.is_some() {
            intent = t.intent.clone();
        }
        if t.language == "zh" {
            zh_turns += 1;
        } else {
            other_turns += 1;
        }
        let mut sources: Vec<String> = t.passages.iter().map(|p| p.citation.clone()).collect();
        sources.extend(t.tools.iter().map(|x| {
            if x.ok {
                format!("tool {}", x.name)
            } else {
                format!(
                    "tool {} failed ({})",
                    x.name,
                    x.error.as_deref().unwrap_or("error")
                )
            }
        }));
        attempts.push(BriefAttempt {
            seq,
            question: question(seq),
            path: t.path,
            reason: t.reason,
            answer: m.content.clone(),
            confidence: t.confidence,
            unsure: t.unsure,
            sources,
        });
    }
    let customer_lines: Vec<&Message> = messages
        .iter()
        .filter(|m| m.role == MessageRole::Customer)
        .collect();
    let zh = match zh_turns.cmp(&other_turns) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        // No record, or a tie (mixed messages such as "<img src=x>你好" detect as English): any Chinese wins.
        std::cmp::Ordering::Equal => customer_lines.iter().any(|m| m.content.chars().any(is_han)),
    };
    let name = profile
        .as_ref()
        .and_then(|p| p["name"].as_str().map(str::to_owned))
        .or_else(|| customer.display_name.clone());
    let tier = profile
        .as_ref()
        .and_then(|p| p["tier"].as_str().map(str::to_owned));
    let upset = emotions
        .iter()
        .rev()
        .take(3)
        .any(|e| e.polarity == "negative");
    let angry = emotions.iter().rev().take(3).any(|e| {
        e.emotion.as_deref() == Some("angry") || e.intensity >= 0.7 && e.polarity == "negative"
    });

    let first = customer_lines.first().map(|m| clip(&m.content, 80));
    let last = customer_lines
        .last()
        .filter(|_| customer_lines.len() > 1)
        .map(|m| clip(&m.content, 80));
    let unsure = attempts.iter().filter(|a| a.unsure).count();
    let trajectory: Vec<&str> = emotions.iter().map(|e| e.polarity.as_str()).collect();
    let summary = summarise(&SummaryParts {
        zh,
        name: name.as_deref(),
        tier: tier.as_deref(),
        turns: customer_lines.len(),
        first: first.as_deref(),
        last: last.as_deref(),
        intent: intent.as_deref(),
        trajectory: &trajectory,
        attempts: attempts.len(),
        unsure,
        reason: handoff_reason.as_deref(),
    });
    let suggested_reply = suggest(zh, name.as_deref(), upset, first.as_deref());
    let priority = if angry || tier.as_deref() == Some("platinum") {
        "urgent"
    } else if upset || tier.as_deref() == Some("gold") {
        "high"
    } else {
        "normal"
    };
    let transcript: Vec<String> = messages
        .iter()
        .rev()
        .take(12)
        .rev()
        .filter(|m| m.role != MessageRole::System)
        .map(|m| format!("{}: {}", m.role.as_str(), clip(&m.content, 200)))
        .collect();
    let ticket = TicketDraft {
        subject: first.clone().map(|f| clip(&f, 60)).unwrap_or_else(|| {
            if zh {
                "客户咨询"
            } else {
                "Customer enquiry"
            }
            .to_owned()
        }),
        priority: priority.to_owned(),
        category: intent.clone(),
        description: format!("{summary}\n\n{}", transcript.join("\n")),
    };
    BriefFacts {
        language: if zh { "zh" } else { "en" }.to_owned(),
        handoff_reason,
        summary,
        intent,
        emotions,
        attempts,
        profile,
        recent_orders,
        suggested_reply,
        ticket,
    }
}

struct SummaryParts<'a> {
    zh: bool,
    name: Option<&'a str>,
    tier: Option<&'a str>,
    turns: usize,
    first: Option<&'a str>,
    last: Option<&'a str>,
    intent: Option<&'a str>,
    trajectory: &'a [&'a str],
    attempts: usize,
    unsure: usize,
    reason: Option<&'a str>,
}

fn summarise(p: &SummaryParts<'_>) -> String {
    let mut out = Vec::new();
    let who = match (p.name, p.tier) {
        (Some(n), Some(t)) => format!("{n} ({t})"),
        (Some(n), None) => n.to_owned(),
        (None, Some(t)) => format!("({t})"),
        (None, None) => {
            if p.zh {
                "客户".to_owned()
            } else {
                "The customer".to_owned()
            }
        }
    };
    if p.zh {
        out.push(format!("{who}共发了 {} 条消息", p.turns));
        if let Some(f) = p.first {
            out.push(format!("最初问：「{f}」"));
        }
        if let Some(l) = p.last {
            out.push(format!("最近说：「{l}」"));
        }
        if let Some(i) = p.intent {
            out.push(format!("意图：{i}"));
        }
        if !p.trajectory.is_empty() {
            out.push(format!("情绪：{}", p.trajectory.join(" → ")));
        }
        out.push(format!(
            "AI 回答了 {} 次，其中 {} 次没有把握",
            p.attempts, p.unsure
        ));
        if let Some(r) = p.reason {
            out.push(format!("转人工原因：{r}"));
        }
        out.join("；") + "。"
    } else {
        out.push(format!("{who} sent {} message(s)", p.turns));
        if let Some(f) = p.first {
            out.push(format!("first asked: \"{f}\""));
        }
        if let Some(l) = p.last {
            out.push(format!("latest: \"{l}\""));
        }
        if let Some(i) = p.intent {
            out.push(format!("intent: {i}"));
        }
        if !p.trajectory.is_empty() {
            out.push(format!("emotion: {}", p.trajectory.join(" → ")));
        }
        out.push(format!(
            "the assistant answered {} time(s), unsure {} time(s)",
            p.attempts, p.unsure
        ));
        if let Some(r) = p.reason {
            out.push(format!("handed off because: {r}"));
        }
        out.join("; ") + "."
    }
}

fn suggest(zh: bool, name: Option<&str>, upset: bool, first: Option<&str>) -> String {
    let topic = first.map(|f| clip(f, 40));
    match (zh, upset) {
        (true, true) => format!(
            "{}您好，非常抱歉让您久等了，也抱歉给您带来了不好的体验。我是人工客服，已经看过您和智能助手的对话{}，现在由我来帮您处理。",
            name.map(|n| format!("{n}，")).unwrap_or_default(),
            topic.map(|t| format!("（关于「{t}」）")).unwrap_or_default()
        ),
        (true, false) => format!(
            "{}您好，我是人工客服，已经看过您和智能助手的对话{}，现在由我来帮您处理。",
            name.map(|n| format!("{n}，")).unwrap_or_default(),
            topic.map(|t| format!("（关于「{t}」）")).unwrap_or_default()
        ),
        (false, true) => format!(
            "Hi{}, I'm sorry for the wait and for the trouble. I'm a member of the support team, I've read your chat with our assistant{}, and I'll take it from here.",
            name.map(|n| format!(" {n}")).unwrap_or_default(),
            topic.map(|t| format!(" about \"{t}\"")).unwrap_or_default()
        ),
        (false, false) => format!(
            "Hi{}, I'm a member of the support team. I've read your chat with our assistant{} and I'll take it from here.",
            name.map(|n| format!(" {n}")).unwrap_or_default(),
            topic.map(|t| format!(" about \"{t}\"")).unwrap_or_default()
        ),
    }
}

fn is_han(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c)
}

/// At most `n` characters, with an ellipsis when cut.
pub(crate) fn clip(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Whether the tenant's rules send this message to people: its intent is listed, or it contains a listed word
/// (case-insensitive).
pub fn matches_topic(rules: &kefu_types::HandoffRules, intent: Option<&str>, text: &str) -> bool {
    if intent.is_some_and(|i| rules.intents.iter().any(|x| x == i)) {
        return true;
    }
    let lower = text.to_lowercase();
    rules
        .keywords
        .iter()
        .filter(|k| !k.trim().is_empty())
        .any(|k| lower.contains(&k.to_lowercase()))
}

/// What a hand-off is routed by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteHint {
    pub intent: Option<String>,
    /// The customer's latest message.
    pub text: String,
    pub language: Option<String>,
}

/// The first team whose rule matches (any listed intent, word, tier or language), or `None` (the general queue).
/// Pure.
pub fn route_team<'a>(
    teams: &'a [kefu_types::TeamRule],
    intent: Option<&str>,
    text: &str,
    language: Option<&str>,
    tier: Option<&str>,
) -> Option<&'a str> {
    let lower = text.to_lowercase();
    teams
        .iter()
        .find(|t| {
            intent.is_some_and(|i| t.intents.iter().any(|x| x == i))
                || t.keywords
                    .iter()
                    .filter(|k| !k.trim().is_empty())
                    .any(|k| lower.contains(&k.to_lowercase()))
                || tier.is_some_and(|x| t.tiers.iter().any(|y| y == x))
                || language.is_some_and(|l| t.languages.iter().any(|y| y == l))
        })
        .map(|t| t.name.as_str())
}

/// An agent counts as online this long after their console's last heartbeat.
pub const ONLINE_WINDOW_SECS: i64 = 60;

/// How queued conversations reach agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    Manual,
    LeastLoaded,
    RoundRobin,
}

impl Assignment {
    pub fn parse(s: Option<&str>) -> Result<Assignment, String> {
        match s {
            None | Some("manual") => Ok(Assignment::Manual),
            Some("least_loaded") => Ok(Assignment::LeastLoaded),
            Some("round_robin") => Ok(Assignment::RoundRobin),
            Some(other) => Err(format!(
                "`assignment` must be manual, least_loaded or round_robin, not {other:?}"
            )),
        }
    }
}

pub const DEFAULT_CAPACITY: u32 = 5;

pub fn is_online(a: &kefu_store::AgentLoad, now: DateTime<Utc>) -> bool {
    a.last_seen_at
        .is_some_and(|t| now - t <= chrono::Duration::seconds(ONLINE_WINDOW_SECS))
}

/// The agent to give the next queued conversation: online, below capacity, then by the mode's order. A team's
/// conversation goes to its members first, then to generalists (agents in no team); when nobody belongs to the
/// team, to anyone. Pure.
pub fn pick_agent(
    agents: &[kefu_store::AgentLoad],
    mode: Assignment,
    capacity: u32,
    team: Option<&str>,
    now: DateTime<Utc>,
) -> Option<Uuid> {
    let free = |a: &&kefu_store::AgentLoad| is_online(a, now) && a.held < i64::from(capacity);
    match team {
        Some(t) if agents.iter().any(|a| a.teams.iter().any(|x| x == t)) => {
            let members: Vec<_> = agents
                .iter()
                .filter(|a| a.teams.iter().any(|x| x == t))
                .filter(free)
                .collect();
            if let Some(a) = pick_from(members, mode) {
                return Some(a);
            }
            pick_from(
                agents
                    .iter()
                    .filter(|a| a.teams.is_empty())
                    .filter(free)
                    .collect(),
                mode,
            )
        }
        _ => pick_from(agents.iter().filter(free).collect(), mode),
    }
}

fn pick_from(eligible: Vec<&kefu_store::AgentLoad>, mode: Assignment) -> Option<Uuid> {
    let eligible = eligible.into_iter();
    // `None` (never assigned) sorts before any time: new agents get the next one.
    match mode {
        Assignment::Manual => None,
        Assignment::LeastLoaded => eligible
            .min_by_key(|a| (a.held, a.last_assigned_at, a.id))
            .map(|a| a.id),
        Assignment::RoundRobin => eligible
            .min_by_key(|a| (a.last_assigned_at, a.id))
            .map(|a| a.id),
    }
}

/// Opening hours, checked: when a tenant's desk is staffed.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    offset: chrono::FixedOffset,
    /// Minutes from midnight (open, close) per weekday, Monday first.
    days: [Option<(u32, u32)>; 7],
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Schedule {
    /// The tenant's hours when the desk is closed at `now`; `None` when it is open or has no hours (a stored value
    /// that no longer parses is logged and treated as "always open").
    pub fn closed_now(cfg: &kefu_types::DeskConfig, now: DateTime<Utc>) -> Option<Schedule> {
        let schedule = Schedule::parse(cfg.business_hours.as_ref()?)
            .map_err(|e| tracing::warn!(error = %e, "ignoring the tenant's business hours"))
            .ok()?;
        (!schedule.is_open(now)).then_some(schedule)
    }

    pub fn parse(h: &kefu_types::BusinessHours) -> Result<Schedule, String> {
        let offset = parse_offset(&h.utc_offset)
            .ok_or_else(|| format!("`utc_offset` must look like +08:00, not {:?}", h.utc_offset))?;
        let mut days = [None; 7];
        for (k, v) in &h.days {
            let i = WEEKDAYS.iter().position(|d| d == k).ok_or_else(|| {
                format!("unknown day {k:?}: use mon, tue, wed, thu, fri, sat, sun")
            })?;
            let (a, b) = v
                .split_once('-')
                .and_then(|(a, b)| Some((hhmm(a.trim())?, hhmm(b.trim())?)))
                .filter(|(a, b)| a < b)
                .ok_or_else(|| format!("{k}: hours must look like 09:00-18:00, not {v:?}"))?;
            days[i] = Some((a, b));
        }
        Ok(Schedule { offset, days })
    }

    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let local = now.with_timezone(&self.offset);
        let minute = local.hour() * 60 + local.minute();
        self.days[local.weekday().num_days_from_monday() as usize]
            .is_some_and(|(open, close)| open <= minute && minute < close)
    }

    /// When the desk next opens (local time), if it ever does.
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<chrono::FixedOffset>> {
        use chrono::{Datelike, Timelike};
        let local = now.with_timezone(&self.offset);
        let minute = local.hour() * 60 + local.minute();
        (0..8).find_map(|d| {
            let day = local.date_naive() + chrono::Duration::days(d);
            let (open, _) = self.days[day.weekday().num_days_from_monday() as usize]?;
            if d == 0 && minute >= open {
                return None;
            }
            let t = day.and_hms_opt(open / 60, open % 60, 0)?;
            t.and_local_timezone(self.offset).single()
        })
    }

    /// "周一至周五 09:00-18:00" / "Mon–Fri 09:00-18:00", for telling customers.
    pub fn describe(&self, zh: bool) -> String {
        let names_zh = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"];
        let names_en = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let mut parts: Vec<String> = Vec::new();
        let mut i = 0;
        while i < 7 {
            let Some(h) = self.days[i] else {
                i += 1;
                continue;
            };
            let mut j = i;
            while j + 1 < 7 && self.days[j + 1] == Some(h) {
                j += 1;
            }
            let name = |k: usize| if zh { names_zh[k] } else { names_en[k] };
            let span = if i == j {
                name(i).to_owned()
            } else if zh {
                format!("{}至{}", name(i), name(j))
            } else {
                format!("{}–{}", name(i), name(j))
            };
            parts.push(format!("{span} {}-{}", fmt_hhmm(h.0), fmt_hhmm(h.1)));
            i = j + 1;
        }
        parts.join(if zh { "，" } else { ", " })
    }
}

fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let m = hhmm(rest)?;
    chrono::FixedOffset::east_opt(sign * (m as i32) * 60)
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    // 24:00 closes a day that runs to midnight.
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

fn fmt_hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_store::Generation;

    fn msg(seq: i64, role: MessageRole, text: &str, trace: Option<Value>) -> Message {
        Message {
            id: Uuid::now_v7(),
            tenant_id: Uuid::nil(),
            conversation_id: Uuid::nil(),
            seq,
            role,
            content: text.into(),
            idempotency_key: None,
            reply_to_seq: (role == MessageRole::Assistant).then_some(seq - 1),
            generation: Generation {
                trace,
                ..Default::default()
            },
            reply_pending: false,
            created_at: kefu_store::now_ms(),
        }
    }

    fn trace(path: &str, polarity: &str, intensity: f32, emotion: Option<&str>) -> Value {
        serde_json::to_value(TurnTrace {
            path: path.into(),
            reason: "r".into(),
            language: "zh".into(),
            intent: Some("order_status".into()),
            polarity: polarity.into(),
            intensity,
            emotion: emotion.map(str::to_owned),
            unsure: path == "rag",
            passages: vec![kefu_types::TracePassage {
                n: 1,
                chunk_id: Uuid::nil(),
                document_id: Uuid::nil(),
                citation: "物流说明 › 发货时间".into(),
                score: 0.9,
            }],
            ..Default::default()
        })
        .unwrap()
    }

    fn customer() -> Customer {
        Customer {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            external_id: Some("C1003".into()),
            display_name: None,
            created_at: kefu_store::now_ms(),
        }
    }

    #[test]
    fn an_angry_platinum_customer_gets_an_urgent_ticket_and_an_apology_first() {
        let messages = vec![
            msg(1, MessageRole::Customer, "我的订单 KF20261020 到哪了", None),
            msg(
                2,
                MessageRole::Assistant,
                "您的订单已发货 [1]",
                Some(trace("tool", "neutral", 0.1, None)),
            ),
            msg(3, MessageRole::Customer, "三天了还没到！太差了", None),
            msg(
                4,
                MessageRole::Assistant,
                "我不太确定",
                Some(trace("rag", "negative", 0.9, Some("angry"))),
            ),
            msg(5, MessageRole::Customer, "转人工", None),
        ];
        let profile = serde_json::json!({"name": "陈静", "tier": "platinum"});
        let b = assemble(
            &messages,
            Some("asked_for_human".into()),
            Some(profile),
            None,
            &customer(),
        );
        assert_eq!(b.language, "zh");
        assert_eq!(b.ticket.priority, "urgent");
        assert_eq!(b.intent.as_deref(), Some("order_status"));
        assert_eq!(b.emotions.len(), 2);
        assert_eq!(b.attempts.len(), 2);
        assert_eq!(b.attempts[1].question, "三天了还没到！太差了");
        assert!(b.attempts[0]
            .sources
            .contains(&"物流说明 › 发货时间".to_owned()));
        assert!(b.summary.contains("陈静 (platinum)"), "{}", b.summary);
        assert!(b.summary.contains("neutral → negative"), "{}", b.summary);
        assert!(b.summary.contains("1 次没有把握"), "{}", b.summary);
        assert!(b.summary.contains("asked_for_human"), "{}", b.summary);
        assert!(b.suggested_reply.contains("抱歉"), "{}", b.suggested_reply);
        assert!(b.ticket.description.contains("customer: 转人工"));
    }

    fn hours(days: &[(&str, &str)]) -> kefu_types::BusinessHours {
        kefu_types::BusinessHours {
            utc_offset: "+08:00".into(),
            days: days
                .iter()
                .map(|(d, h)| (d.to_string(), h.to_string()))
                .collect(),
        }
    }

    #[test]
    fn business_hours_in_the_business_time_zone() {
        let week: Vec<(&str, &str)> = ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| (*d, "09:00-18:00"))
            .collect();
        let s = Schedule::parse(&hours(&week)).unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        // Friday 2026-11-20 10:00 in Beijing is 02:00 UTC.
        assert!(s.is_open(at("2026-11-20T02:00:00Z")));
        assert!(
            !s.is_open(at("2026-11-20T10:00:00Z")),
            "18:00 local is closed"
        );
        assert!(s.is_open(at("2026-11-20T09:59:00Z")));
        // Friday evening: next opening Monday 09:00 local.
        let next = s.next_open(at("2026-11-20T12:00:00Z")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-23T09:00:00+08:00");
        // Early Monday: the same day.
        let next = s.next_open(at("2026-11-22T23:00:00Z")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-23T09:00:00+08:00");
        assert_eq!(s.describe(true), "周一至周五 09:00-18:00");
        assert_eq!(s.describe(false), "Mon–Fri 09:00-18:00");
        let never = Schedule::parse(&hours(&[])).unwrap();
        assert!(!never.is_open(at("2026-11-20T02:00:00Z")));
        assert_eq!(never.next_open(at("2026-11-20T02:00:00Z")), None);
    }

    fn load(
        n: u8,
        held: i64,
        seen_secs_ago: Option<i64>,
        assigned_secs_ago: Option<i64>,
    ) -> kefu_store::AgentLoad {
        let now = t_now();
        kefu_store::AgentLoad {
            id: Uuid::from_u128(u128::from(n)),
            role: kefu_store::StaffRole::Agent,
            display_name: None,
            last_seen_at: seen_secs_ago.map(|s| now - chrono::Duration::seconds(s)),
            last_assigned_at: assigned_secs_ago.map(|s| now - chrono::Duration::seconds(s)),
            held,
            teams: vec![],
        }
    }

    fn t_now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn assignment_respects_presence_capacity_and_order() {
        let agents = vec![
            load(1, 1, Some(5), Some(30)),
            load(2, 0, Some(10), Some(10)),
            load(3, 0, Some(90), None),     // offline
            load(4, 0, None, None),         // never used the console
            load(5, 2, Some(1), Some(100)), // at capacity (2)
        ];
        let id = |n: u128| Some(Uuid::from_u128(n));
        let now = t_now();
        assert_eq!(
            pick_agent(&agents, Assignment::LeastLoaded, 2, None, now),
            id(2)
        );
        // Round robin: whoever was given one longest ago among the eligible (5 is full).
        assert_eq!(
            pick_agent(&agents, Assignment::RoundRobin, 2, None, now),
            id(1)
        );
        assert_eq!(
            pick_agent(&agents, Assignment::RoundRobin, 3, None, now),
            id(5)
        );
        assert_eq!(pick_agent(&agents, Assignment::Manual, 2, None, now), None);
        assert_eq!(
            pick_agent(&agents[2..4], Assignment::LeastLoaded, 2, None, now),
            None
        );
        assert!(Assignment::parse(Some("random")).is_err());
    }

    #[test]
    fn a_teams_conversation_goes_to_members_then_generalists() {
        let member = |n, held, team: &str| kefu_store::AgentLoad {
            teams: vec![team.to_owned()],
            ..load(n, held, Some(5), Some(30))
        };
        let agents = vec![
            member(1, 0, "billing"),
            member(2, 1, "售后"),
            load(3, 0, Some(5), Some(60)), // a generalist
            member(4, 0, "售后"),
        ];
        let id = |n: u128| Some(Uuid::from_u128(n));
        let now = t_now();
        let pick = |agents: &[kefu_store::AgentLoad], team| {
            pick_agent(agents, Assignment::LeastLoaded, 2, team, now)
        };
        assert_eq!(pick(&agents, Some("售后")), id(4));
        // Members full: a generalist, never another team's member.
        let full = [member(2, 2, "售后"), agents[0].clone(), agents[2].clone()];
        assert_eq!(pick(&full, Some("售后")), id(3));
        assert_eq!(pick(&full[..2], Some("售后")), None);
        // A team nobody is in, and the general queue: anyone (3 waited longest for one).
        assert_eq!(pick(&agents, Some("vip")), id(3));
        assert_eq!(pick(&agents, None), id(3));
    }

    #[test]
    fn hand_offs_go_to_the_first_matching_team() {
        let team = |name: &str, f: &dyn Fn(&mut kefu_types::TeamRule)| {
            let mut t = kefu_types::TeamRule {
                name: name.into(),
                ..Default::default()
            };
            f(&mut t);
            t
        };
        let teams = vec![
            team("vip", &|t| t.tiers = vec!["gold".into()]),
            team("售后", &|t| {
                t.intents = vec!["return_request".into()];
                t.keywords = vec!["退货".into(), "Refund".into()];
            }),
            team("english", &|t| t.languages = vec!["en".into()]),
        ];
        let route = |intent, text, lang, tier| route_team(&teams, intent, text, lang, tier);
        assert_eq!(route(None, "我要退货", Some("zh"), None), Some("售后"));
        assert_eq!(
            route(None, "I want a REFUND", Some("en"), None),
            Some("售后")
        );
        assert_eq!(
            route(Some("return_request"), "人工", Some("zh"), None),
            Some("售后")
        );
        // Order matters: a gold customer's return goes to the VIP team.
        assert_eq!(
            route(None, "我要退货", Some("zh"), Some("gold")),
            Some("vip")
        );
        assert_eq!(route(None, "hello", Some("en"), None), Some("english"));
        assert_eq!(route(None, "你好", Some("zh"), Some("silver")), None);
        assert_eq!(route_team(&[], Some("x"), "退货", None, None), None);
    }

    #[test]
    fn bad_business_hours_are_refused_with_the_reason() {
        for (days, offset, want) in [
            (vec![("mon", "9-18")], "+08:00", "09:00-18:00"),
            (vec![("monday", "09:00-18:00")], "+08:00", "unknown day"),
            (vec![("mon", "18:00-09:00")], "+08:00", "09:00-18:00"),
            (vec![("mon", "09:00-25:00")], "+08:00", "09:00-18:00"),
            (vec![("mon", "09:00-18:00")], "Asia/Shanghai", "utc_offset"),
        ] {
            let mut h = hours(&days);
            h.utc_offset = offset.into();
            let e = Schedule::parse(&h).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(Schedule::parse(&hours(&[("sun", "00:00-24:00")])).is_ok());
    }

    #[test]
    fn the_brief_speaks_the_language_most_turns_were_in() {
        let mut mixed = trace("rag", "neutral", 0.1, None);
        mixed["language"] = "en".into();
        let messages = vec![
            msg(1, MessageRole::Customer, "退货运费谁承担？", None),
            msg(
                2,
                MessageRole::Assistant,
                "由我们承担 [1]",
                Some(trace("faq", "neutral", 0.1, None)),
            ),
            msg(3, MessageRole::Customer, "<img src=x>你好", None),
            msg(4, MessageRole::Assistant, "您好", Some(mixed)),
        ];
        let b = assemble(&messages, None, None, None, &customer());
        assert_eq!(b.language, "zh");
        assert!(
            b.suggested_reply.contains("人工客服"),
            "{}",
            b.suggested_reply
        );
    }

    #[test]
    fn a_calm_english_customer_without_traces_gets_a_normal_brief() {
        let messages = vec![
            msg(1, MessageRole::Customer, "I want to talk to a person", None),
            msg(2, MessageRole::System, "queued", None),
        ];
        let b = assemble(&messages, None, None, None, &customer());
        assert_eq!(b.language, "en");
        assert_eq!(b.ticket.priority, "normal");
        assert!(b.emotions.is_empty());
        assert!(
            !b.suggested_reply.contains("sorry"),
            "{}",
            b.suggested_reply
        );
        assert!(
            b.summary.starts_with("The customer sent 1 message(s)"),
            "{}",
            b.summary
        );
        assert_eq!(b.ticket.subject, "I want to talk to a person");
    }
}
