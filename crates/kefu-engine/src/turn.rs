//! One turn, the thin async driver around the pure stages: gather the facts (understand, history, retrieval),
//! [`decide`], run the decision's effects (generate and check, or a fixed reply, or nothing), record the reply with
//! its trace.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use kefu_knowledge::service::{SearchHit, SearchRequest};
use kefu_llm::{ChatEvent, ChatRequest, LlmError};
use kefu_nlu::emotion::{analyse, Polarity, Trajectory};
use kefu_nlu::{Understander, Understanding, Vault};
use kefu_store::{Appended, EventData, Generation, Message, MessageRole, NewMessage, StoreError};
use kefu_types::{TraceCache, TracePassage, TurnTrace};

use crate::business::{Evidence, FlowOutcome};
use crate::check::{self, ReplyFilter};
use crate::decide::{self, Decision, Facts, FaqCandidate, Path, Policy, Tier, Tone};
use crate::hub::TurnGuard;
use crate::prompt::{self, Canned, Passage};
use crate::{Engine, EngineError};

/// Passages offered to the model.
const PASSAGES: usize = 4;

/// What the business's side of a turn found before the decision ran.
#[derive(Default)]
struct Extras {
    /// The customer's id in the business's systems.
    customer: Option<String>,
    /// A flow step's reply.
    reply: Option<String>,
    /// A flow waits for an answer: said after the answer to the aside.
    reminder: Option<String>,
    /// A verified answer to the same question.
    cache_hit: Option<crate::cache::CacheHit>,
    /// The conversation is flagged for review: its answers are not reused.
    flagged: bool,
    /// The customer's segment (tier) when the business serves tiers differently: the service strategy the answer
    /// follows, and the scope of its reuse.
    segment: Option<String>,
}

struct Outcome {
    text: String,
    generation: Generation,
}

/// What generation produced, before checks.
struct Generated {
    text: String,
    /// The prompt held something about this customer (profile, tool results, PII): never reuse the answer.
    personal: bool,
    generation: Generation,
    output_moderation: Option<String>,
    output_blocked: bool,
    /// `cheap` or `main`: the chain that answered.
    chain: &'static str,
    cost: Option<f64>,
}

/// What retrieval found: the mode, the passages offered to the model, and the best FAQ entry among them (its
/// index and match score).
struct Retrieved {
    mode: String,
    hits: Vec<SearchHit>,
    faq: Option<(usize, f32)>,
    /// The question's embedding (the answer cache compares with it).
    vector: Option<Vec<f32>>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

impl Engine {
    pub(crate) async fn run_turn(self: Arc<Self>, question: Message) {
        let conv = question.conversation_id;
        let turn = self.hub.begin_turn(conv).await;
        // Someone may have answered it while we waited for the turn (e.g. recovery raced a live turn).
        match self
            .store
            .find_reply(question.tenant_id, conv, question.seq)
            .await
        {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read conversation; turn left pending");
                return;
            }
        }
        let run = tokio::time::timeout(self.settings.turn_timeout, self.answer(&question, &turn));
        let outcome = tokio::select! {
            r = run => match r {
                Ok(Ok(Some(o))) => o,
                // People hold the conversation: nothing to send.
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "turn failed; message stays pending");
                    return;
                }
                Err(_) => {
                    tracing::warn!("turn timed out; sending the fallback reply");
                    self.flag(&question, "model_unavailable").await;
                    Outcome {
                        text: prompt::fallback_reply(&question.content).to_owned(),
                        generation: Generation { fallback: true, ..Default::default() },
                    }
                }
            },
            _ = self.hard_stop.cancelled() => {
                tracing::warn!("turn cancelled by shutdown; message stays pending");
                return;
            }
        };
        self.store_reply(&question, outcome, turn).await;
    }

    async fn flag(&self, question: &Message, reason: &str) {
        match self
            .store
            .flag_conversation(question.tenant_id, question.conversation_id, reason)
            .await
        {
            Ok(ev) => self.hub.publish(ev),
            Err(e) => tracing::error!(error = %e, "could not flag the conversation"),
        }
    }

    async fn store_reply(&self, question: &Message, outcome: Outcome, turn: TurnGuard<'_>) {
        let conv = question.conversation_id;
        let stored = self
            .store
            .append_message(NewMessage {
                tenant_id: question.tenant_id,
                conversation_id: conv,
                role: MessageRole::Assistant,
                content: outcome.text,
                idempotency_key: Some(format!("reply:{}", question.seq)),
                reply_to_seq: Some(question.seq),
                generation: outcome.generation,
                require_open: false,
            })
            .await;
        match stored {
            Ok(Appended::Created(m)) => {
                let trace = m.generation.trace.as_ref();
                tracing::info!(
                    path = trace.and_then(|t| t["path"].as_str()).unwrap_or("-"),
                    model = m.generation.model.as_deref().unwrap_or("-"),
                    latency_ms = m.generation.latency_ms,
                    prompt_tokens = m.generation.prompt_tokens,
                    completion_tokens = m.generation.completion_tokens,
                    fallback = m.generation.fallback,
                    "reply stored"
                );
                drop(turn); // the partial is gone once the stored message is published
                self.hub.publish(kefu_store::Event {
                    tenant_id: m.tenant_id,
                    conversation_id: conv,
                    seq: m.seq,
                    data: EventData::MessageCreated(m.clone()),
                    created_at: m.created_at,
                });
            }
            // Answered already (a recovered turn raced a live one), or the conversation is gone.
            Ok(Appended::Duplicate(_)) | Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not store the reply; message stays pending")
            }
        }
    }

    /// The whole pipeline for one stored customer message. `None`: people hold the conversation.
    async fn answer(
        &self,
        question: &Message,
        turn: &TurnGuard<'_>,
    ) -> Result<Option<Outcome>, EngineError> {
        let started = Instant::now();
        let tenant = question.tenant_id;
        let conv = self
            .store
            .get_conversation(tenant, question.conversation_id)
            .await?
            .ok_or(EngineError::ConversationNotFound)?;
        let policy = &self.parts.policy;

        // Understand.
        let t = Instant::now();
        let understander = self.parts.understanding.understander(tenant).await;
        let (understood, query_vector) = self.understand(&understander, &question.content).await;
        let window = (self.settings.history_max_messages as i64) * 2 + 8;
        let history: Vec<Message> = self
            .store
            .list_messages(
                tenant,
                question.conversation_id,
                (question.seq - window).max(0),
                window as u32,
            )
            .await?
            .into_iter()
            .filter(|m| m.seq <= question.seq)
            .collect();
        let mut facts = self.facts(&question.content, &history, understood.as_ref());
        facts.handler = Some(conv.handler);
        let understand_ms = ms(t);
        let mut trace = base_trace(understood.as_ref(), &facts);
        trace.stages.understand_ms = understand_ms;
        let zh = understood.as_ref().map_or_else(
            || prompt::looks_chinese(&question.content),
            |u| u.language.lang == "zh",
        );

        // The business's procedures and systems: a running flow (or one this message starts), a tool intent.
        let now = chrono::Utc::now();
        let business = self.parts.business.clone();
        let mut extras = Extras::default();
        let mut flow = business.as_deref().and_then(|b| {
            self.active_flow(b, &history, &question.content, facts.intent.as_deref(), now)
        });
        facts.flow_active = flow.is_some();
        facts.personal = decide::is_personal(&question.content);
        facts.tool_intent = business.as_deref().is_some_and(|b| {
            b.triggered(&question.content, facts.intent.as_deref())
                .is_some()
        });
        if facts.flow_active || facts.tool_intent {
            extras.customer = self.customer_ref(tenant, conv.customer_id).await;
        }
        extras.flagged = conv.flagged;
        // The tenant's own hand-off rules (only while the assistant answers).
        let policy_owned;
        let mut policy = policy;
        if conv.handler == kefu_store::Handler::Bot {
            let rules = self.desk_config(tenant).await.handoff;
            facts.human_topic =
                crate::desk::matches_topic(&rules, facts.intent.as_deref(), &question.content);
            if let Some(n) = rules.negative_streak {
                policy_owned = Policy {
                    handoff_negative_streak: n.max(1),
                    ..policy.clone()
                };
                policy = &policy_owned;
            }
            if !rules.vip_tiers.is_empty() && (facts.negative || facts.complex) {
                if extras.customer.is_none() {
                    extras.customer = self.customer_ref(tenant, conv.customer_id).await;
                }
                if let (Some(set), Some(c)) = (business.as_deref(), extras.customer.as_deref()) {
                    facts.vip_needs_care = self
                        .customer_tier(set, c)
                        .await
                        .is_some_and(|t| rules.vip_tiers.contains(&t));
                }
            }
        }

        // Decide what needs no retrieval first: people, blocks, injections, hand-offs and flows come before any
        // search.
        let mut pre = decide::before_retrieval(&facts, policy);
        if let (Some(d), Some(f), Some(set)) = (&pre, flow.as_mut(), business.as_deref()) {
            if d.path == Path::Flow {
                match &extras.customer {
                    None => {
                        extras.reply = Some(prompt::canned_reply(Canned::SignIn, zh).to_owned())
                    }
                    Some(customer) => {
                        let t = Instant::now();
                        let step = self
                            .flow_step(
                                set,
                                f,
                                &question.content,
                                tenant,
                                customer,
                                &history,
                                &understander,
                                zh,
                                &mut trace,
                                now,
                            )
                            .await?;
                        trace.stages.tools_ms += ms(t);
                        match step {
                            FlowOutcome::Reply(text) => {
                                if let Some(n) = self.open_flow_ticket(set, f, &conv, zh).await {
                                    f.state.ticket = Some(n);
                                }
                                extras.reply = Some(text)
                            }
                            FlowOutcome::GiveUp => pre = Some(decide::handoff("flow_failed")),
                            FlowOutcome::Aside { reminder } => {
                                // Another question in the middle: answer it the usual way, keep the flow.
                                facts.flow_active = false;
                                extras.reminder = Some(reminder);
                                pre = decide::before_retrieval(&facts, policy);
                            }
                        }
                    }
                }
                trace.flow = serde_json::to_value(&f.state).ok();
            }
        }
        let (decision, retrieved) = match pre {
            Some(d) => (d, None),
            None => {
                let t = Instant::now();
                let masked = understood
                    .as_ref()
                    .map_or(question.content.as_str(), |u| u.masked.text.as_str());
                let retrieved = self.retrieve(tenant, masked, query_vector).await;
                trace.stages.retrieve_ms = ms(t);
                if let Some(r) = &retrieved {
                    trace.retrieval_mode = Some(r.mode.clone());
                    facts.passages = r.hits.len();
                    facts.faq = r.faq.map(|(_, score)| FaqCandidate { score });
                    trace.faq_score = r.faq.map(|(_, s)| s);
                }
                // Where the business treats tiers differently, answers differ by tier: a signed-in customer's tier is
                // fetched once here, for the prompt's service strategy and the cache's scope.
                if let Some(set) = business
                    .as_deref()
                    .filter(|b| !b.business.tier_strategies.is_empty())
                {
                    if extras.customer.is_none() {
                        extras.customer = self.customer_ref(tenant, conv.customer_id).await;
                    }
                    if let Some(c) = extras.customer.as_deref() {
                        let t = Instant::now();
                        extras.segment = self
                            .customer_tier(set, c)
                            .await
                            .filter(|tier| set.business.tier_strategies.contains_key(tier));
                        trace.stages.tools_ms += ms(t);
                    }
                }
                if policy.cache && !facts.tool_intent {
                    extras.cache_hit = self
                        .cached_answer(
                            tenant,
                            &trace.language,
                            extras.segment.as_deref(),
                            masked,
                            retrieved.as_ref().and_then(|r| r.vector.as_deref()),
                        )
                        .await;
                    facts.cache_hit = extras.cache_hit.is_some();
                }
                (decide::decide(&facts, policy), retrieved)
            }
        };
        if decision.path == Path::HumanHeld {
            // Stored, seen by the agent; no reply from us.
            self.store
                .mark_reply_settled(tenant, question.conversation_id, question.seq)
                .await?;
            return Ok(None);
        }
        self.run_decision(
            question,
            turn,
            &history,
            understood,
            &understander,
            decision,
            trace,
            retrieved,
            extras,
            zh,
            started,
        )
        .await
        .map(Some)
    }

    /// Facts known before retrieval.
    fn facts(&self, text: &str, history: &[Message], u: Option<&Understanding>) -> Facts {
        let mut f = Facts::default();
        // The emotion trajectory over the customer's recent turns (this one last).
        let mut readings: Vec<_> = history
            .iter()
            .filter(|m| m.role == MessageRole::Customer)
            .rev()
            .skip(1)
            .take(6)
            .map(|m| analyse(&m.content))
            .collect();
        readings.reverse();
        if let Some(u) = u {
            f.blocked = u.blocked();
            f.injection_score = u.injection.score;
            if let Some(i) = &u.intent {
                f.intent = i.intent.clone();
                f.intent_confidence = i.confidence;
                f.out_of_scope = i.out_of_scope;
            }
            f.negative = u.emotion.polarity == Polarity::Negative;
            f.anger = u
                .emotion
                .emotions
                .iter()
                .filter(|(e, _)| {
                    matches!(
                        e,
                        kefu_nlu::emotion::Emotion::Angry | kefu_nlu::emotion::Emotion::Frustrated
                    )
                })
                .map(|(_, s)| *s)
                .fold(0.0, f32::max);
            readings.push(u.emotion.clone());
        }
        f.negative_streak = Trajectory::of(&readings).negative_streak;
        let asked_by_intent =
            f.intent.as_deref().is_some_and(|i| {
                matches!(i, "human" | "human_agent" | "transfer_to_agent" | "人工")
            }) && f.intent_confidence >= 0.5;
        f.asks_for_human = decide::asks_for_human(text) || asked_by_intent;
        f.complex = decide::is_complex(text);
        // Answers we were not sure of, newest first, until one we were sure of.
        f.unsure_streak = history
            .iter()
            .rev()
            .filter(|m| m.role == MessageRole::Assistant)
            .take_while(|m| {
                m.generation
                    .trace
                    .as_ref()
                    .is_some_and(|t| t["unsure"].as_bool() == Some(true))
            })
            .count();
        f
    }

    /// The understanding step. When the tenant's intent classifier or the polarity anchors read the knowledge
    /// embedder's sentence vectors, or chosen layers of its model (`<embedder>@<layers>`), the message's query vector
    /// is computed here, in one pass, and returned for knowledge search to reuse; a classifier with other sentence
    /// encoders runs them off the async workers.
    async fn understand(
        &self,
        understander: &Arc<Understander>,
        text: &str,
    ) -> (Option<Understanding>, Option<Vec<f32>>) {
        let encoders: Vec<String> = understander
            .encoders()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if encoders.is_empty() {
            return (understander.understand(text).ok(), None);
        }
        let (given, vector) = match self.parts.knowledge.as_ref() {
            Some(k) => shared_vectors(k, &encoders, &understander.intent_text(text)).await,
            None => (Vec::new(), None),
        };
        let (u, text) = (understander.clone(), text.to_owned());
        let understood = tokio::task::spawn_blocking(move || {
            let given: Vec<(&str, &[f32])> = given
                .iter()
                .map(|(id, v)| (id.as_str(), v.as_slice()))
                .collect();
            u.understand_with(&text, &given)
        })
        .await
        .ok()
        .and_then(|r| {
            r.map_err(|e| tracing::warn!(error = %e, "understanding failed"))
                .ok()
        });
        (understood, vector)
    }

    /// Searches the knowledge base with the masked message (and its vector, when the understanding step computed
    /// it). Returns the mode, the passages offered to the model, and the best FAQ entry among them with its match
    /// score.
    async fn retrieve(
        &self,
        tenant: uuid::Uuid,
        masked: &str,
        vector: Option<Vec<f32>>,
    ) -> Option<Retrieved> {
        let knowledge = self.parts.knowledge.as_ref()?;
        let req = SearchRequest {
            query: masked.chars().take(2000).collect(),
            k: Some(PASSAGES),
            vector,
            ..Default::default()
        };
        let res = match knowledge.search(tenant, &req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "knowledge search failed; answering without passages");
                return None;
            }
        };
        // Keyword matches below the relevance threshold are not evidence.
        let hits = if res.keyword_fallback {
            Vec::new()
        } else {
            res.hits
        };
        let faq = hits.iter().enumerate().find_map(|(i, h)| {
            let entry = h.faq.as_ref()?;
            let mut qs: Vec<&str> = vec![entry.question.as_str()];
            qs.extend(entry.alternatives.iter().map(String::as_str));
            let dense = h.scores.dense.as_ref().map(|d| d.score);
            Some((i, check::faq_match(masked, &qs, dense)))
        });
        Some(Retrieved {
            mode: res.mode,
            hits,
            faq,
            vector: res.query_vector,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_decision(
        &self,
        question: &Message,
        turn: &TurnGuard<'_>,
        history: &[Message],
        understood: Option<Understanding>,
        understander: &Arc<Understander>,
        d: Decision,
        mut trace: TurnTrace,
        retrieved: Option<Retrieved>,
        mut extras: Extras,
        zh: bool,
        started: Instant,
    ) -> Result<Outcome, EngineError> {
        trace.path = d.path.as_str().into();
        trace.reason = d.reason.into();
        trace.tier = serde_plain(&d.tier);
        trace.tier_reason = d.tier_reason.into();
        trace.tone = serde_plain(&d.tone);
        trace.flag = d.flag.map(str::to_owned);
        if let Some(reason) = d.flag {
            self.flag(question, reason).await;
        }
        let mut retrieved_vector = retrieved.as_ref().and_then(|r| r.vector.clone());
        let hits = retrieved.map(|r| (r.hits, r.faq));
        let mut generation = Generation::default();
        let text = match d.path {
            Path::HumanHeld => unreachable!("handled before"),
            Path::Blocked => prompt::canned_reply(Canned::Blocked, zh).to_owned(),
            Path::Injection => prompt::canned_reply(Canned::Injection, zh).to_owned(),
            Path::Handoff => {
                let understood = (trace.intent.clone(), trace.language.clone());
                self.hand_off(
                    question,
                    d.reason,
                    (understood.0.as_deref(), &understood.1),
                    zh,
                )
                .await?
            }
            Path::Flow => extras.reply.take().unwrap_or_default(),
            Path::Cache => {
                let hit = extras.cache_hit.take().expect("a cache decision has a hit");
                self.cache.served(&hit, question.conversation_id);
                trace.grounded = Some(true);
                trace.confidence = hit.score;
                trace.cache = Some(TraceCache {
                    decision: "hit".into(),
                    score: Some(hit.score),
                    tokens_saved: Some(hit.tokens),
                    segment: extras.segment.clone(),
                });
                hit.answer
            }
            Path::Tool if extras.customer.is_none() => {
                prompt::canned_reply(Canned::SignIn, zh).to_owned()
            }
            Path::Faq => {
                let (hits, faq) = hits.expect("an FAQ decision has hits");
                let (i, _) = faq.expect("an FAQ decision has an entry");
                let hit = &hits[i];
                trace.passages = vec![passage(1, hit)];
                trace.grounded = Some(true);
                trace.confidence = trace.faq_score.unwrap_or(1.0);
                let entry = hit.faq.as_ref().expect("an FAQ hit");
                let source = if zh { "来源" } else { "Source" };
                format!(
                    "{}\n\n{source}: {}",
                    entry.answer.trim(),
                    hit.citation.title
                )
            }
            Path::Tool | Path::Rag | Path::Chat => {
                let hits = hits.map(|(h, _)| h).unwrap_or_default();
                let hits: &[SearchHit] = if d.path == Path::Chat { &[] } else { &hits };
                // The business's systems: the tool this turn needs, and who the customer is.
                let t = Instant::now();
                let mut evidence = Vec::new();
                let mut profile = None;
                if let (Some(set), Some(customer)) =
                    (self.parts.business.as_deref(), extras.customer.as_deref())
                {
                    if d.path == Path::Tool {
                        if let Some(tool) =
                            set.triggered(&question.content, trace.intent.as_deref())
                        {
                            evidence = self
                                .run_tool(
                                    set,
                                    tool,
                                    question.tenant_id,
                                    history,
                                    customer,
                                    understander,
                                    zh,
                                    &mut trace,
                                )
                                .await;
                        }
                        // Who the customer is matters to answers about their own orders and account.
                        profile = self
                            .profile(set, customer, understander, zh, &mut trace)
                            .await;
                    }
                }
                // Without the profile, the segment's service strategy alone: it says nothing about the person, so
                // the answer stays reusable within the segment.
                let strategy = match (&profile, self.parts.business.as_deref(), &extras.segment) {
                    (None, Some(set), Some(tier)) => set.business.strategy_line(tier, zh),
                    _ => None,
                };
                trace.stages.tools_ms += ms(t);
                trace.passages = hits
                    .iter()
                    .enumerate()
                    .map(|(i, h)| passage(i + 1, h))
                    .collect();
                let t = Instant::now();
                let generated = self
                    .generate(
                        question,
                        turn,
                        history,
                        understander,
                        &d,
                        hits,
                        &evidence,
                        profile.as_deref(),
                        strategy.as_deref(),
                    )
                    .await;
                trace.stages.generate_ms = ms(t);
                match generated {
                    Ok(g) => {
                        let t = Instant::now();
                        generation = g.generation;
                        trace.output_moderation = g.output_moderation.clone();
                        trace.chain = Some(g.chain.to_owned());
                        trace.cost = g.cost;
                        let text = if g.output_blocked {
                            turn.reset(question.seq);
                            prompt::canned_reply(Canned::OutputBlocked, zh).to_owned()
                        } else {
                            let passages: Vec<&str> = hits
                                .iter()
                                .map(|h| h.text.as_str())
                                .chain(evidence.iter().map(|e| e.text.as_str()))
                                .collect();
                            let said: Vec<&str> = history
                                .iter()
                                .filter(|m| m.role == MessageRole::Customer)
                                .map(|m| m.content.as_str())
                                .collect();
                            let g_check = check::check_grounding(&g.text, &passages, &said);
                            let retrieval = hits
                                .first()
                                .and_then(|h| h.scores.dense.as_ref())
                                .map(|s| ((s.score - 0.75) / 0.2).clamp(0.0, 1.0));
                            let intent = understood
                                .as_ref()
                                .and_then(|u| u.intent.as_ref())
                                .map(|i| i.confidence);
                            trace.confidence = check::confidence(g_check.score, intent, retrieval);
                            trace.grounded = Some(g_check.grounded);
                            trace.unsupported = g_check.unsupported.clone();
                            if g_check.grounded {
                                let reusable = self.parts.policy.cache
                                    && d.path == Path::Rag
                                    && d.tone == Tone::Normal
                                    && !g.personal
                                    && !extras.flagged
                                    && trace.output_moderation.is_none()
                                    && trace.confidence >= 0.5;
                                if reusable {
                                    let asked = understood
                                        .as_ref()
                                        .map_or(question.content.as_str(), |u| {
                                            u.masked.text.as_str()
                                        });
                                    let tokens = generation.prompt_tokens.unwrap_or(0)
                                        + generation.completion_tokens.unwrap_or(0);
                                    self.remember(
                                        question,
                                        asked,
                                        &trace,
                                        (&g.text, tokens),
                                        hits,
                                        retrieved_vector.take(),
                                        extras.segment.clone(),
                                    );
                                    trace.cache = Some(TraceCache {
                                        decision: "stored".into(),
                                        score: None,
                                        tokens_saved: None,
                                        segment: extras.segment.clone(),
                                    });
                                }
                                g.text
                            } else {
                                trace.unsure = true;
                                trace.rejected_answer =
                                    Some(understander.mask_with(&g.text, &mut Vault::default()));
                                turn.reset(question.seq);
                                prompt::canned_reply(Canned::Unsure, zh).to_owned()
                            }
                        };
                        trace.stages.check_ms = ms(t);
                        text
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "every model failed; sending the fallback reply");
                        let reason = match e {
                            LlmError::NotConfigured => "model_not_configured",
                            _ => "model_unavailable",
                        };
                        // Flag before the fallback reply is visible, so anyone who sees the reply sees the flag.
                        self.flag(question, reason).await;
                        trace.flag = Some(reason.into());
                        generation.fallback = true;
                        prompt::fallback_reply(&question.content).to_owned()
                    }
                }
            }
        };
        let text = match extras.reminder {
            // A flow is still waiting for an answer: remind the customer where we were.
            Some(r) if !matches!(d.path, Path::Handoff | Path::Blocked | Path::Injection) => {
                format!("{text}\n\n{r}")
            }
            _ => text,
        };
        if matches!(d.path, Path::Handoff | Path::Blocked | Path::Injection) {
            trace.flow = None;
        }
        trace.model = generation.model.clone();
        trace.prompt_tokens = generation.prompt_tokens;
        trace.completion_tokens = generation.completion_tokens;
        let total = ms(started);
        trace.stages.total_ms = total;
        generation.latency_ms = Some(total.round() as i64);
        generation.trace = serde_json::to_value(&trace).ok();
        Ok(Outcome { text, generation })
    }

    /// Streams the model's answer to subscribers: placeholders restored, then output moderation (a word split
    /// across chunks is held back until it is known), then published.
    #[allow(clippy::too_many_arguments)]
    async fn generate(
        &self,
        question: &Message,
        turn: &TurnGuard<'_>,
        history: &[Message],
        understander: &Arc<Understander>,
        d: &Decision,
        hits: &[SearchHit],
        evidence: &[Evidence],
        profile: Option<&str>,
        strategy: Option<&str>,
    ) -> Result<Generated, LlmError> {
        turn.start_reply(question.seq);
        let resolved = self.models.resolve(&question.tenant_id.to_string()).await?;
        let kept = prompt::select_history(
            history,
            self.settings.history_token_budget,
            self.settings.history_max_messages,
        );
        // One vault for the whole conversation: the same number gets the same placeholder in every message.
        let mut vault = Vault::default();
        let masked: Vec<String> = kept
            .iter()
            .map(|m| understander.mask_with(&m.content, &mut vault))
            .collect();
        let texts: Vec<&str> = masked.iter().map(String::as_str).collect();
        let persona = resolved
            .params
            .system_prompt
            .as_deref()
            .unwrap_or(&self.settings.default_system_prompt);
        // Tool answers are passages too, masked with the same vault as the history.
        let tool_texts: Vec<String> = evidence
            .iter()
            .map(|e| understander.mask_with(&e.text, &mut vault))
            .collect();
        let passages: Vec<Passage<'_>> = hits
            .iter()
            .map(|h| Passage {
                label: &h.citation.label,
                text: &h.text,
            })
            .chain(evidence.iter().zip(&tool_texts).map(|(e, t)| Passage {
                label: &e.label,
                text: t,
            }))
            .collect();
        let mut system = prompt::turn_system_prompt(persona, d.tone == Tone::Empathetic, &passages);
        if let Some(p) = profile.or(strategy) {
            system.push_str("\n\n");
            system.push_str(&understander.mask_with(p, &mut vault));
        }
        // What no longer fits the budget is not simply forgotten: a summary of it, masked like the rest.
        let dropped = &history[..history.len() - kept.len()];
        if let Some(summary) =
            prompt::rolling_summary(dropped, prompt::looks_chinese(&question.content))
        {
            system.push_str("\n\n");
            system.push_str(&understander.mask_with(&summary, &mut vault));
        }
        let request = ChatRequest {
            model: String::new(),
            messages: prompt::build_messages_with(&system, kept, &texts),
            temperature: resolved.params.temperature,
            max_tokens: resolved.params.max_tokens,
            tools: Vec::new(),
            tool_choice: Default::default(),
            json_schema: None,
        };
        let moderator = understander.moderator().map(|m| &**m);
        let mut filter = ReplyFilter::new(&vault, moderator);
        // The tier decides the chain: simple, confident turns go to the cheap one when the tenant has one.
        let (chain, which) = resolved.pick(d.tier == Tier::Cheap);
        let mut stream = chain.stream(request);
        let mut text = String::new();
        let mut generation = Generation::default();
        let show = |shown: String, text: &mut String| {
            if !shown.is_empty() {
                turn.delta(question.seq, &shown);
                text.push_str(&shown);
            }
        };
        while let Some(item) = stream.next().await {
            match item? {
                ChatEvent::Started { model } => generation.model = Some(model),
                ChatEvent::Delta(t) => {
                    show(filter.push(&t), &mut text);
                    if filter.blocked() {
                        break;
                    }
                }
                ChatEvent::Restart { reason } => {
                    tracing::info!(%reason, "model stream restarted");
                    text.clear();
                    filter = ReplyFilter::new(&vault, moderator);
                    turn.reset(question.seq);
                }
                ChatEvent::Usage(u) => {
                    generation.prompt_tokens = Some(i64::from(u.prompt_tokens));
                    generation.completion_tokens = Some(i64::from(u.completion_tokens));
                }
                ChatEvent::ToolCall(_) | ChatEvent::Finished(_) => {}
            }
        }
        show(filter.finish(), &mut text);
        let blocked = filter.blocked();
        if !blocked && text.trim().is_empty() {
            return Err(LlmError::InvalidResponse(
                "the model returned an empty answer".into(),
            ));
        }
        let cost = match (
            &generation.model,
            generation.prompt_tokens,
            generation.completion_tokens,
        ) {
            (Some(m), Some(p), Some(c)) => resolved.cost(m, p, c),
            _ => None,
        };
        Ok(Generated {
            personal: !vault.is_empty() || profile.is_some() || !evidence.is_empty(),
            text,
            generation,
            output_moderation: filter.action.map(|a| serde_plain(&a)),
            output_blocked: blocked,
            chain: which,
            cost,
        })
    }
}

impl Engine {
    /// A verified answer to the same question whose sources are unchanged (an entry whose source changed or went
    /// away is dropped).
    async fn cached_answer(
        &self,
        tenant: uuid::Uuid,
        language: &str,
        segment: Option<&str>,
        asked: &str,
        vector: Option<&[f32]>,
    ) -> Option<crate::cache::CacheHit> {
        let p = &self.parts.policy;
        let hit = self.cache.lookup(
            tenant,
            language,
            segment,
            asked,
            vector,
            (p.cache_threshold, p.cache_threshold_lexical),
            Instant::now(),
        )?;
        let ids: Vec<uuid::Uuid> = hit.sources.iter().map(|s| s.chunk).collect();
        let current = match self.store.kb_get_chunks(tenant, &ids).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a cached answer's sources; not reusing it");
                return None;
            }
        };
        let unchanged = hit.sources.iter().all(|s| {
            current
                .iter()
                .any(|c| c.id == s.chunk && crate::cache::fingerprint(&c.text) == s.fingerprint)
        });
        if unchanged {
            Some(hit)
        } else {
            self.cache.invalidate(&hit);
            None
        }
    }

    /// Keeps a verified answer for reuse.
    #[allow(clippy::too_many_arguments)]
    fn remember(
        &self,
        question: &Message,
        asked: &str,
        trace: &TurnTrace,
        (answer, tokens): (&str, i64),
        hits: &[SearchHit],
        vector: Option<Vec<f32>>,
        segment: Option<String>,
    ) {
        self.cache.insert(
            question.tenant_id,
            crate::cache::Entry {
                language: trace.language.clone(),
                segment,
                intent: trace.intent.clone(),
                question: asked.to_owned(),
                vector,
                answer: answer.to_owned(),
                sources: hits
                    .iter()
                    .map(|h| crate::cache::Source {
                        chunk: h.chunk_id,
                        fingerprint: crate::cache::fingerprint(&h.text),
                    })
                    .collect(),
                tokens,
                expires: Instant::now()
                    + crate::cache::AnswerCache::ttl(&self.parts.policy, trace.intent.as_deref()),
                conversations: vec![question.conversation_id],
            },
        );
    }
}

fn passage(n: usize, h: &SearchHit) -> TracePassage {
    TracePassage {
        n,
        chunk_id: h.chunk_id,
        document_id: h.document_id,
        citation: h.citation.label.clone(),
        score: h.scores.fused,
    }
}

/// A unit enum's serde name (`"strong"`).
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn base_trace(u: Option<&Understanding>, f: &Facts) -> TurnTrace {
    let mut t = TurnTrace {
        negative_streak: f.negative_streak,
        injection_score: f.injection_score,
        ..Default::default()
    };
    if let Some(u) = u {
        t.language = u.language.lang.clone();
        t.intent = u.intent.as_ref().and_then(|i| i.intent.clone());
        t.intent_confidence = u.intent.as_ref().map(|i| i.confidence);
        t.out_of_scope = u.intent.as_ref().is_some_and(|i| i.out_of_scope);
        t.polarity = serde_plain(&u.emotion.polarity);
        t.intensity = u.emotion.intensity;
        t.emotion = u.emotion.primary().map(|e| serde_plain(&e));
        t.moderation = u
            .moderation
            .as_ref()
            .and_then(|v| v.action)
            .map(|a| serde_plain(&a));
        t.pii_masked = u.masked.vault.len();
    }
    t
}

/// The sentence vectors of `text` that the knowledge embedder's pass gives the intent classifier's `encoders`: its
/// own vector for an encoder with its id, and the chosen layers' poolings for `<its id>@<layers>` (all from one
/// pass). Returns them by encoder id, with the knowledge vector when it was computed here (`None`: no encoder is
/// the knowledge embedder's, its query vectors are not what the classifier reads, or it failed; the classifier then
/// runs its own encoders).
async fn shared_vectors(
    knowledge: &kefu_knowledge::Knowledge,
    encoders: &[String],
    text: &str,
) -> (Vec<(String, Vec<f32>)>, Option<Vec<f32>>) {
    let Some(id) = knowledge.query_shared_with_classifier() else {
        return (Vec::new(), None);
    };
    let plain = encoders.iter().any(|e| e == id);
    let layered: Vec<(&String, Vec<usize>)> = encoders
        .iter()
        .filter_map(|e| match kefu_llm::split_layers(e) {
            Ok((model, Some(layers))) if model == id => Some((e, layers)),
            _ => None,
        })
        .collect();
    let mut asked: Vec<usize> = layered.iter().flat_map(|(_, l)| l.clone()).collect();
    asked.sort_unstable();
    asked.dedup();
    let mut given = Vec::new();
    let pass = if asked.is_empty() {
        None
    } else {
        knowledge.embed_query_layers(text, &asked).await
    };
    let vector = match pass {
        Some(v) if v.layers.len() == asked.len() * v.vector.len() => {
            let block = v.vector.len();
            for (name, layers) in layered {
                let pooled: Vec<f32> = layers
                    .iter()
                    .filter_map(|l| asked.binary_search(l).ok())
                    .flat_map(|i| v.layers[i * block..(i + 1) * block].iter().copied())
                    .collect();
                given.push((name.clone(), pooled));
            }
            Some(v.vector)
        }
        _ if plain => knowledge.embed_query(text).await,
        _ => None,
    };
    if plain {
        if let Some(v) = &vector {
            given.push((id.to_owned(), v.clone()));
        }
    }
    (given, vector)
}
