//! The driver's side of tools and flows: which tool a turn needs and with what arguments (rules first, the model
//! second, a fallback tool third), the customer's profile for the prompt, and one step of a running flow.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use kefu_llm::{ChatEvent, ChatMessage, ChatRequest, ToolChoice, ToolSpec};
use kefu_nlu::{Understander, Vault};
use kefu_store::{Message, MessageRole};
use kefu_types::{TraceTool, TurnTrace};

use crate::flows::{self, Applied, Choice, FlowDef, FlowState, Next, Stage};
use crate::prompt::{self, Canned};
use crate::tools::{ToolDef, ToolResult, ToolSet};
use crate::{Engine, EngineError};

/// A tool's answer as evidence for the model: a label and the JSON text (masked later, with the conversation's
/// vault, like every other prompt text).
pub(crate) struct Evidence {
    pub label: String,
    pub text: String,
}

/// What a flow step produced.
pub(crate) enum FlowOutcome {
    /// A reply (a question, the confirmation, the result) and the state to record.
    Reply(String),
    /// The message was another question: answer it the usual way, keep the flow and remind the customer after.
    Aside { reminder: String },
    /// The flow failed repeatedly: hand the conversation to people.
    GiveUp,
}

/// A running flow, or the one this message starts.
pub(crate) struct ActiveFlow {
    pub def: usize,
    pub state: FlowState,
    pub starting: bool,
}

const MAX_MISSES: u32 = 3;

/// Tool results are trimmed to this many characters in the prompt.
const EVIDENCE_CHARS: usize = 2500;

impl Engine {
    /// The conversation's customer id in the business's systems (its external id), if it has one.
    pub(crate) async fn customer_ref(&self, tenant: Uuid, customer: Uuid) -> Option<String> {
        match self.store.get_customer(tenant, customer).await {
            Ok(c) => c.and_then(|c| c.external_id),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the customer; tools will not run");
                None
            }
        }
    }

    /// The flow the last reply left running (not timed out), or the flow this message starts.
    pub(crate) fn active_flow(
        &self,
        set: &ToolSet,
        history: &[Message],
        text: &str,
        intent: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<ActiveFlow> {
        let last = history
            .iter()
            .rev()
            .find(|m| m.role != MessageRole::Customer)
            .and_then(|m| {
                m.generation
                    .trace
                    .as_ref()
                    .and_then(|t| t.get("flow"))
                    .and_then(|f| serde_json::from_value::<FlowState>(f.clone()).ok())
            });
        if let Some(state) = last {
            if let Some(def) = set.business.flows.iter().position(|d| d.name == state.name) {
                if state.in_progress(&set.business.flows[def], now) {
                    return Some(ActiveFlow {
                        def,
                        state,
                        starting: false,
                    });
                }
            }
        }
        let def = set
            .business
            .flows
            .iter()
            .position(|d| d.triggers.matches(text, intent))?;
        Some(ActiveFlow {
            def,
            state: FlowState::start(&set.business.flows[def], now),
            starting: true,
        })
    }

    /// Runs the tool this message needs. Arguments come from rules over the customer's words (this message, then
    /// older ones), else from the model (a required tool call, validated), else the tool's fallback runs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_tool(
        &self,
        set: &ToolSet,
        tool: &ToolDef,
        tenant: Uuid,
        history: &[Message],
        customer: &str,
        understander: &Understander,
        zh: bool,
        trace: &mut TurnTrace,
    ) -> Vec<Evidence> {
        let said: Vec<&str> = history
            .iter()
            .rev()
            .filter(|m| m.role == MessageRole::Customer)
            .map(|m| m.content.as_str())
            .collect();
        let mut args = set.extract(tool, &said);
        let mut from = "rules";
        if crate::tools::validate(&tool.parameters, &Value::Object(args.clone())).is_err() {
            if let Some(a) = self
                .model_arguments(tool, tenant, history, understander)
                .await
            {
                args = a;
                from = "model";
            }
        }
        let (tool, args) =
            match crate::tools::validate(&tool.parameters, &Value::Object(args.clone())) {
                Ok(()) => (tool, args),
                Err(_) => match tool.fallback.as_deref().and_then(|f| set.tool(f)) {
                    Some(fb) => {
                        from = "fallback";
                        (fb, set.extract(fb, &said))
                    }
                    None => (tool, args),
                },
            };
        let result = set.call(tool, &args, customer).await;
        record_tool(trace, &result, from, understander);
        vec![evidence(tool, &result, zh)]
    }

    /// The customer's profile and the tier's service strategy, for the prompt.
    pub(crate) async fn profile(
        &self,
        set: &ToolSet,
        customer: &str,
        understander: &Understander,
        zh: bool,
        trace: &mut TurnTrace,
    ) -> Option<String> {
        let tool = set.tool(set.business.profile_tool.as_deref()?)?;
        let result = set.call(tool, &Map::new(), customer).await;
        record_tool(trace, &result, "rules", understander);
        let profile = result.outcome.ok()?;
        let mut text = format!(
            "Customer profile (from the shop's systems): {}",
            clip(&profile.to_string())
        );
        if let Some(line) = profile["tier"]
            .as_str()
            .and_then(|t| set.business.strategy_line(t, zh))
        {
            text.push('\n');
            text.push_str(&line);
        }
        Some(text)
    }

    /// Asks the model to fill a tool's arguments from the conversation (one required tool call), validated.
    async fn model_arguments(
        &self,
        tool: &ToolDef,
        tenant: Uuid,
        history: &[Message],
        understander: &Understander,
    ) -> Option<Map<String, Value>> {
        let system = format!(
            "Fill in the arguments of the tool {} from the customer's messages. Use only values the customer wrote; \
             never invent one.",
            tool.name
        );
        let spec = ToolSpec {
            name: tool.name.clone(),
            description: tool.description.clone(),
            parameters: crate::tools::model_schema(tool),
        };
        let answer = self
            .ask_model(tenant, history, understander, &system, vec![spec], None)
            .await?;
        let args = answer.as_object()?.clone();
        crate::tools::validate(&tool.parameters, &Value::Object(args.clone())).ok()?;
        Some(args)
    }

    /// Asks the model which of the offered choices the customer meant (constrained to the choices or `none`).
    async fn model_choice(
        &self,
        tenant: Uuid,
        history: &[Message],
        understander: &Understander,
        choices: &[Choice],
    ) -> Option<usize> {
        let mut values: Vec<Value> = choices.iter().map(|c| json!(c.value)).collect();
        values.push(json!("none"));
        let listed: String = choices
            .iter()
            .map(|c| format!("\n- {}: {}", c.value, c.label))
            .collect();
        let system = format!(
            "The customer was asked to pick one of these:{listed}\nAnswer with the value they meant, or none if \
             their last message does not pick one."
        );
        let schema = json!({
            "type": "object",
            "properties": {"choice": {"type": "string", "enum": values}},
            "required": ["choice"],
        });
        let answer = self
            .ask_model(
                tenant,
                history,
                understander,
                &system,
                Vec::new(),
                Some(schema),
            )
            .await?;
        let picked = answer["choice"].as_str()?;
        choices.iter().position(|c| c.value == picked)
    }

    /// One short structured model call over the masked recent history: a tool call when `tools` is given, else JSON
    /// text of `schema`. `None` when there is no model or its answer is not JSON.
    async fn ask_model(
        &self,
        tenant: Uuid,
        history: &[Message],
        understander: &Understander,
        system: &str,
        tools: Vec<ToolSpec>,
        schema: Option<Value>,
    ) -> Option<Value> {
        let resolved = self.models.resolve(&tenant.to_string()).await.ok()?;
        let mut vault = Vault::default();
        let recent = &history[history.len().saturating_sub(6)..];
        let mut messages = vec![ChatMessage::system(system)];
        for m in recent {
            let text = understander.mask_with(&m.content, &mut vault);
            messages.push(match m.role {
                MessageRole::Customer => ChatMessage::user(text),
                _ => ChatMessage::assistant(text),
            });
        }
        let tool_call = !tools.is_empty();
        let request = ChatRequest {
            model: String::new(),
            messages,
            temperature: Some(0.0),
            max_tokens: Some(200),
            tool_choice: if tool_call {
                ToolChoice::Required
            } else {
                ToolChoice::Auto
            },
            tools,
            json_schema: schema,
        };
        let mut stream = resolved.chain.stream(request);
        let mut text = String::new();
        while let Some(ev) = stream.next().await {
            match ev.ok()? {
                ChatEvent::ToolCall(c) => return serde_json::from_str(&c.arguments).ok(),
                ChatEvent::Delta(t) => text.push_str(&t),
                ChatEvent::Restart { .. } => text.clear(),
                _ => {}
            }
        }
        if tool_call {
            return None;
        }
        let start = text.find('{')?;
        serde_json::from_str(&text[start..=text.rfind('}')?]).ok()
    }

    /// Opens the ticket a finished flow declares (after its action succeeded); its number goes into the flow's
    /// record. A failure to store it is logged, not shown to the customer, whose request did go through.
    pub(crate) async fn open_flow_ticket(
        &self,
        set: &ToolSet,
        flow: &ActiveFlow,
        conv: &kefu_store::Conversation,
        zh: bool,
    ) -> Option<i64> {
        let def = &set.business.flows[flow.def];
        let spec = def.ticket.as_ref()?;
        if flow.state.stage != flows::Stage::Done || flow.state.ticket.is_some() {
            return None;
        }
        let render = |t: &str| flows::render(t, &flow.state, None, None);
        let priority = spec
            .priority
            .as_deref()
            .and_then(kefu_store::TicketPriority::parse)
            .unwrap_or(kefu_store::TicketPriority::Normal);
        let new = kefu_store::NewTicket {
            tenant_id: conv.tenant_id,
            conversation_id: Some(conv.id),
            customer_id: Some(conv.customer_id),
            subject: render(spec.subject.get(zh)),
            description: render(def.confirm.get(zh)),
            department: spec.department.clone(),
            priority,
            source: "flow".into(),
            created_by: None,
            assignee_id: None,
            external_ref: spec.external_ref.as_deref().map(render),
        };
        match self.store.create_ticket(new).await {
            Ok(t) => Some(t.number),
            Err(e) => {
                tracing::error!(error = %e, flow = %def.name, "could not open the flow's ticket");
                None
            }
        }
    }

    /// One step of a flow: read the message against the state, fetch the choices that depend on it, and say what
    /// comes next; on confirmation run the action tool.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn flow_step(
        &self,
        set: &ToolSet,
        flow: &mut ActiveFlow,
        text: &str,
        tenant: Uuid,
        customer: &str,
        history: &[Message],
        understander: &Understander,
        zh: bool,
        trace: &mut TurnTrace,
        now: DateTime<Utc>,
    ) -> Result<FlowOutcome, EngineError> {
        let def = &set.business.flows[flow.def];
        let state = &mut flow.state;
        let mut fetched = HashMap::new();
        let mut choices = self
            .flow_choices(
                set,
                def,
                state,
                customer,
                understander,
                zh,
                trace,
                &mut fetched,
            )
            .await;
        let mut applied = flows::apply(def, state, text, &choices, flow.starting, now);
        // The rules could not place the answer among the choices: the model may.
        if applied == Applied::Missed && state.stage == Stage::Collecting {
            if let Next::Ask(slot) = flows::next(def, state) {
                if let Some(cs) = choices.get(&slot) {
                    if let Some(i) = self.model_choice(tenant, history, understander, cs).await {
                        state.slots.insert(slot, flows::Filled::from(&cs[i]));
                        state.misses = 0;
                        if flows::next(def, state) == Next::Confirm {
                            state.stage = Stage::Confirming;
                        }
                        applied = Applied::Progress;
                    }
                }
            }
        }
        let reply = match applied {
            Applied::Cancelled => def.cancelled.get(zh).to_owned(),
            Applied::Confirmed => {
                let tool = set
                    .tool(&def.action.tool)
                    .expect("checked when the flow loaded");
                let args = tool.accepted(&state.arguments());
                let result = set.call(tool, &args, customer).await;
                record_tool(trace, &result, "flow", understander);
                match result.outcome {
                    Ok(v) => {
                        state.stage = Stage::Done;
                        state.result = Some(v);
                        flows::render(def.done.get(zh), state, None, None)
                    }
                    Err(e) => {
                        state.stage = Stage::Failed;
                        state.result = Some(json!({"error": e.code()}));
                        let message = match &e {
                            crate::tools::ToolError::Refused { message, .. } => message.clone(),
                            other => other.to_string(),
                        };
                        flows::render(def.failed.get(zh), state, None, Some(&message))
                    }
                }
            }
            Applied::Aside => {
                return Ok(FlowOutcome::Aside {
                    reminder: self.ask_text(def, state, &choices, zh),
                })
            }
            Applied::Missed if state.misses >= MAX_MISSES => {
                state.stage = Stage::Failed;
                return Ok(FlowOutcome::GiveUp);
            }
            Applied::Missed => {
                let sorry = if zh {
                    "抱歉，我没能识别您的回答。"
                } else {
                    "Sorry, I didn't catch that. "
                };
                format!("{sorry}{}", self.ask_text(def, state, &choices, zh))
            }
            Applied::Progress => {
                // What is filled may change what the next slot offers (another order, other items); a slot with
                // exactly one choice needs no question.
                loop {
                    choices = self
                        .flow_choices(
                            set,
                            def,
                            state,
                            customer,
                            understander,
                            zh,
                            trace,
                            &mut fetched,
                        )
                        .await;
                    let only = match flows::next(def, state) {
                        Next::Ask(slot) => match choices.get(&slot) {
                            Some(cs) if cs.len() == 1 => Some((slot, flows::Filled::from(&cs[0]))),
                            _ => None,
                        },
                        Next::Confirm => None,
                    };
                    match only {
                        Some((slot, filled)) => {
                            state.slots.insert(slot, filled);
                        }
                        None => break,
                    }
                }
                if flows::next(def, state) == Next::Confirm {
                    state.stage = Stage::Confirming;
                }
                self.ask_text(def, state, &choices, zh)
            }
        };
        Ok(FlowOutcome::Reply(reply))
    }

    fn ask_text(
        &self,
        def: &FlowDef,
        state: &FlowState,
        choices: &BTreeMap<String, Vec<Choice>>,
        zh: bool,
    ) -> String {
        match flows::next(def, state) {
            Next::Ask(slot) => {
                let s = def
                    .slots
                    .iter()
                    .find(|s| s.name == slot)
                    .expect("next names a slot");
                flows::render(
                    s.ask.get(zh),
                    state,
                    choices.get(&slot).map(Vec::as_slice),
                    None,
                )
            }
            Next::Confirm => flows::render(def.confirm.get(zh), state, None, None),
        }
    }

    /// The choices of every slot whose choices tool can be called with what is filled so far.
    #[allow(clippy::too_many_arguments)]
    async fn flow_choices(
        &self,
        set: &ToolSet,
        def: &FlowDef,
        state: &FlowState,
        customer: &str,
        understander: &Understander,
        zh: bool,
        trace: &mut TurnTrace,
        fetched: &mut HashMap<String, Value>,
    ) -> BTreeMap<String, Vec<Choice>> {
        let mut out = BTreeMap::new();
        let filled = state.arguments();
        for slot in &def.slots {
            let Some(c) = &slot.choices else { continue };
            let Some(tool) = set.tool(&c.tool) else {
                continue;
            };
            let args = tool.accepted(&filled);
            if crate::tools::validate(&tool.parameters, &Value::Object(args.clone())).is_err() {
                continue;
            }
            // Within a turn the same call gives the same answer: the order list is fetched once, not again after
            // every filled slot.
            let key = format!("{}:{}", tool.name, Value::Object(args.clone()));
            if !fetched.contains_key(&key) {
                let result = set.call(tool, &args, customer).await;
                record_tool(trace, &result, "flow", understander);
                if let Ok(v) = result.outcome {
                    fetched.insert(key.clone(), v);
                }
            }
            if let Some(v) = fetched.get(&key) {
                out.insert(slot.name.clone(), flows::choices_from(c, v, zh));
            }
        }
        out
    }

    /// Hands the conversation to people (a flow gave up, a tool the customer needs failed), in the queue of the
    /// team the tenant's rules route it to.
    pub(crate) async fn hand_off(
        &self,
        question: &Message,
        reason: &'static str,
        understood: (Option<&str>, &str),
        zh: bool,
    ) -> Result<String, EngineError> {
        let (tenant, conversation) = (question.tenant_id, question.conversation_id);
        let cfg = self.desk_config(tenant).await;
        let conv = self
            .store
            .get_conversation(tenant, conversation)
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let hint = crate::desk::RouteHint {
            intent: understood.0.map(str::to_owned),
            text: question.content.clone(),
            language: Some(understood.1.to_owned()).filter(|l| !l.is_empty()),
        };
        let conv = self.queue_for_people(&cfg, &conv, reason, &hint).await?;
        let now = Utc::now();
        if let Some(schedule) = crate::desk::Schedule::closed_now(&cfg, now) {
            return Ok(self
                .after_hours(
                    tenant,
                    conversation,
                    &question.content,
                    reason,
                    &schedule,
                    now,
                    zh,
                )
                .await);
        }
        self.assign_with(&cfg, tenant, conversation, conv.team.as_deref(), now)
            .await?;
        Ok(prompt::canned_reply(Canned::Handoff, zh).to_owned())
    }

    /// Outside business hours: the conversation stays queued for the morning, a ticket makes sure it is followed
    /// up, and the customer is told honestly when people are back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn after_hours(
        &self,
        tenant: Uuid,
        conversation: Uuid,
        content: &str,
        reason: &str,
        schedule: &crate::desk::Schedule,
        now: DateTime<Utc>,
        zh: bool,
    ) -> String {
        let conv = self
            .store
            .get_conversation(tenant, conversation)
            .await
            .ok()
            .flatten();
        let subject = crate::desk::clip(content, 60);
        let ticket = match conv {
            Some(c) => self
                .store
                .create_ticket(kefu_store::NewTicket {
                    tenant_id: c.tenant_id,
                    conversation_id: Some(c.id),
                    customer_id: Some(c.customer_id),
                    subject: if subject.is_empty() {
                        "after-hours hand-off".into()
                    } else {
                        subject
                    },
                    description: format!("Handed off outside business hours ({reason}): {content}"),
                    department: None,
                    priority: kefu_store::TicketPriority::Normal,
                    source: "handoff".into(),
                    created_by: None,
                    assignee_id: None,
                    external_ref: None,
                })
                .await
                .map_err(|e| tracing::error!(error = %e, "could not open the after-hours ticket"))
                .ok(),
            None => None,
        };
        let next = schedule.next_open(now);
        let hours = schedule.describe(zh);
        let mut out = if zh {
            "现在是非工作时间，暂时没有客服在线".to_owned()
        } else {
            "Our team is offline right now".to_owned()
        };
        if !hours.is_empty() {
            out.push_str(&if zh {
                format!("（人工客服工作时间：{hours}）")
            } else {
                format!(" (hours: {hours})")
            });
        }
        out.push_str(if zh { "。" } else { ". " });
        if let Some(t) = ticket {
            out.push_str(&if zh {
                format!("我已为您创建工单 #{}，", t.number)
            } else {
                format!("I've opened ticket #{} so nothing gets lost; ", t.number)
            });
        }
        out.push_str(&match (zh, next) {
            (true, Some(n)) => format!(
                "客服会在 {} 上班后第一时间处理，回复会出现在这里，您无需重复说明。",
                n.format("%m-%d %H:%M")
            ),
            (false, Some(n)) => format!(
                "someone will pick it up when we open at {} and reply here — no need to repeat yourself.",
                n.format("%a %H:%M")
            ),
            (true, None) => "客服会尽快处理，回复会出现在这里，您无需重复说明。".to_owned(),
            (false, None) => {
                "someone will reply here as soon as possible — no need to repeat yourself.".to_owned()
            }
        });
        out
    }
}

fn clip(s: &str) -> String {
    crate::desk::clip(s, EVIDENCE_CHARS)
}

fn evidence(tool: &ToolDef, result: &ToolResult, zh: bool) -> Evidence {
    let label = tool
        .source
        .as_ref()
        .map_or_else(|| tool.name.clone(), |s| s.get(zh).to_owned());
    let text = match &result.outcome {
        Ok(v) => clip(&v.to_string()),
        Err(e) => json!({"error": e.code(), "message": e.to_string()}).to_string(),
    };
    Evidence { label, text }
}

fn record_tool(trace: &mut TurnTrace, r: &ToolResult, from: &str, understander: &Understander) {
    let masked = understander.mask_with(&r.arguments.to_string(), &mut Vault::default());
    trace.tools.push(TraceTool {
        name: r.name.clone(),
        arguments: serde_json::from_str(&masked).unwrap_or(Value::String(masked)),
        ok: r.outcome.is_ok(),
        error: r.outcome.as_ref().err().map(|e| e.code().to_owned()),
        arguments_from: from.into(),
        ms: r.ms,
    });
}
