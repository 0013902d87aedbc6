//! One turn: answer a stored customer message with the tenant's model chain and record the reply.

use std::sync::Arc;

use futures::StreamExt;
use tokio::time::Instant;

use kefu_llm::{ChatEvent, ChatRequest, LlmError};
use kefu_store::{Appended, EventData, Generation, Message, MessageRole, NewMessage, StoreError};

use crate::prompt;
use crate::Engine;

struct Outcome {
    text: String,
    generation: Generation,
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
        turn.start_reply(question.seq);
        let started = Instant::now();
        let generated = tokio::select! {
            r = tokio::time::timeout(self.settings.turn_timeout, self.generate(&question, &turn)) => match r {
                Ok(r) => r,
                Err(_) => Err(LlmError::Timeout(kefu_llm::TimeoutPhase::Total)),
            },
            _ = self.hard_stop.cancelled() => {
                tracing::warn!("turn cancelled by shutdown; message stays pending");
                return;
            }
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let (outcome, failed) = match generated {
            Ok(mut o) => {
                o.generation.latency_ms = Some(latency_ms);
                (o, None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "every model failed; sending the fallback reply");
                let o = Outcome {
                    text: prompt::fallback_reply(&question.content).to_owned(),
                    generation: Generation {
                        latency_ms: Some(latency_ms),
                        fallback: true,
                        ..Default::default()
                    },
                };
                (o, Some(e))
            }
        };
        // Flag before the fallback reply is visible, so anyone who sees the reply also sees the flag.
        if let Some(e) = &failed {
            let reason = match e {
                LlmError::NotConfigured => "model_not_configured",
                _ => "model_unavailable",
            };
            match self
                .store
                .flag_conversation(question.tenant_id, conv, reason)
                .await
            {
                Ok(ev) => self.hub.publish(ev),
                Err(e) => tracing::error!(error = %e, "could not flag the conversation"),
            }
        }
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
                tracing::info!(
                    model = m.generation.model.as_deref().unwrap_or("-"),
                    latency_ms,
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

    async fn generate(
        &self,
        question: &Message,
        turn: &crate::hub::TurnGuard<'_>,
    ) -> Result<Outcome, LlmError> {
        let resolved = self.models.resolve(&question.tenant_id.to_string()).await?;
        let window = (self.settings.history_max_messages as i64) * 2 + 8;
        let history = self
            .store
            .list_messages(
                question.tenant_id,
                question.conversation_id,
                (question.seq - window).max(0),
                window as u32,
            )
            .await
            .map_err(|e| LlmError::InvalidResponse(format!("history unavailable: {e}")))?;
        let history: Vec<Message> = history
            .into_iter()
            .filter(|m| m.seq <= question.seq)
            .collect();
        let kept = prompt::select_history(
            &history,
            self.settings.history_token_budget,
            self.settings.history_max_messages,
        );
        let system = resolved
            .params
            .system_prompt
            .as_deref()
            .unwrap_or(&self.settings.default_system_prompt);
        let request = ChatRequest {
            model: String::new(),
            messages: prompt::build_messages(system, kept),
            temperature: resolved.params.temperature,
            max_tokens: resolved.params.max_tokens,
            tools: Vec::new(),
            tool_choice: Default::default(),
            json_schema: None,
        };
        let mut stream = resolved.chain.stream(request);
        let mut text = String::new();
        let mut generation = Generation::default();
        while let Some(item) = stream.next().await {
            match item? {
                ChatEvent::Started { model } => generation.model = Some(model),
                ChatEvent::Delta(t) => {
                    turn.delta(question.seq, &t);
                    text.push_str(&t);
                }
                ChatEvent::Restart { reason } => {
                    tracing::info!(%reason, "model stream restarted");
                    text.clear();
                    turn.reset(question.seq);
                }
                ChatEvent::Usage(u) => {
                    generation.prompt_tokens = Some(i64::from(u.prompt_tokens));
                    generation.completion_tokens = Some(i64::from(u.completion_tokens));
                }
                ChatEvent::ToolCall(_) | ChatEvent::Finished(_) => {}
            }
        }
        if text.trim().is_empty() {
            return Err(LlmError::InvalidResponse(
                "the model returned an empty answer".into(),
            ));
        }
        Ok(Outcome { text, generation })
    }
}
