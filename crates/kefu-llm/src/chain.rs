//! The fallback chain: try each (provider, model) link in order, with retries and a circuit breaker per provider.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{ChatEvent, ChatModel, ChatRequest, ChatStream, CircuitBreaker, LlmError, RetryPolicy};

#[derive(Clone)]
pub struct ChainLink {
    pub provider: Arc<dyn ChatModel>,
    pub model: String,
    /// Shared by every link of the same provider, and kept across configuration reloads.
    pub breaker: Arc<CircuitBreaker>,
}

impl ChainLink {
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider.name(), self.model)
    }
}

pub struct FallbackChain {
    links: Vec<ChainLink>,
    retry: RetryPolicy,
}

impl FallbackChain {
    pub fn new(links: Vec<ChainLink>, retry: RetryPolicy) -> Self {
        Self { links, retry }
    }

    pub fn links(&self) -> &[ChainLink] {
        &self.links
    }

    /// Streams an answer from the first link that works. Each successful attempt starts with
    /// `ChatEvent::Started`; a stream that breaks after sending text is followed by `ChatEvent::Restart` before the
    /// next attempt. When every link fails the stream ends with `LlmError::Exhausted`. Dropping the stream cancels
    /// the work in flight.
    pub fn stream(self: &Arc<Self>, request: ChatRequest) -> ChatStream {
        let (tx, rx) = mpsc::channel(64);
        let chain = self.clone();
        tokio::spawn(async move { chain.drive(request, tx).await });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }

    async fn drive(&self, request: ChatRequest, tx: mpsc::Sender<Result<ChatEvent, LlmError>>) {
        let mut failures: Vec<String> = Vec::new();
        for link in &self.links {
            let label = link.label();
            let mut attempt = 0u32;
            loop {
                if !link.breaker.try_acquire() {
                    failures.push(format!("{label}: circuit open"));
                    break;
                }
                let mut req = request.clone();
                req.model = link.model.clone();
                let outcome = match link.provider.stream(req).await {
                    Err(e) => Err(e),
                    Ok(mut s) => {
                        if tx
                            .send(Ok(ChatEvent::Started {
                                model: label.clone(),
                            }))
                            .await
                            .is_err()
                        {
                            return; // the consumer went away
                        }
                        let mut sent_text = false;
                        let mut result = Ok(());
                        while let Some(item) = s.next().await {
                            match item {
                                Ok(ev) => {
                                    sent_text |=
                                        matches!(ev, ChatEvent::Delta(_) | ChatEvent::ToolCall(_));
                                    if tx.send(Ok(ev)).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                        if let Err(e) = &result {
                            if sent_text
                                && tx
                                    .send(Ok(ChatEvent::Restart {
                                        reason: e.to_string(),
                                    }))
                                    .await
                                    .is_err()
                            {
                                return;
                            }
                        }
                        result
                    }
                };
                match outcome {
                    Ok(()) => {
                        link.breaker.on_success();
                        return;
                    }
                    Err(e) => {
                        link.breaker.on_failure();
                        tracing::warn!(model = %label, attempt, error = %e, "model attempt failed");
                        failures.push(format!("{label}: {e}"));
                        match self.retry.delay_random(attempt, &e) {
                            Some(d) => {
                                tokio::select! {
                                    _ = tokio::time::sleep(d) => {}
                                    _ = tx.closed() => return,
                                }
                                attempt += 1;
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        if failures.is_empty() {
            failures.push("no model configured".into());
        }
        let _ = tx.send(Err(LlmError::Exhausted(failures))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FinishReason, Usage};
    use async_trait::async_trait;
    use parking_lot::Mutex;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// One scripted call: the stream's items, or an error before the stream starts.
    type Outcome = Result<Vec<Result<ChatEvent, LlmError>>, LlmError>;

    /// A provider that plays back scripted outcomes: this is a unit test of the chain's control flow; the HTTP
    /// provider is tested against the real fake server in `kefu-llm-openai`.
    struct Scripted {
        name: String,
        script: Mutex<VecDeque<Outcome>>,
        calls: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ChatModel for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        async fn stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
            self.calls.lock().push(request.model);
            match self
                .script
                .lock()
                .pop_front()
                .unwrap_or(Err(LlmError::Connect("script empty".into())))
            {
                Ok(events) => Ok(futures::stream::iter(events).boxed()),
                Err(e) => Err(e),
            }
        }
    }

    fn scripted(
        name: &str,
        script: Vec<Result<Vec<Result<ChatEvent, LlmError>>, LlmError>>,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            name: name.into(),
            script: Mutex::new(script.into()),
            calls: Mutex::new(vec![]),
        })
    }

    fn ok(text: &str) -> Outcome {
        Ok(vec![
            Ok(ChatEvent::Delta(text.into())),
            Ok(ChatEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
            })),
            Ok(ChatEvent::Finished(FinishReason::Stop)),
        ])
    }

    fn link(p: &Arc<Scripted>, model: &str, breaker: &Arc<CircuitBreaker>) -> ChainLink {
        ChainLink {
            provider: p.clone(),
            model: model.into(),
            breaker: breaker.clone(),
        }
    }

    fn breaker() -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(5, Duration::from_secs(30)))
    }

    async fn collect(chain: FallbackChain) -> Vec<Result<ChatEvent, LlmError>> {
        Arc::new(chain)
            .stream(ChatRequest::default())
            .collect()
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn retries_a_retryable_error_then_succeeds() {
        let p = scripted(
            "a",
            vec![
                Err(LlmError::Server {
                    status: 503,
                    retry_after: None,
                    message: "".into(),
                }),
                ok("hi"),
            ],
        );
        let events = collect(FallbackChain::new(
            vec![link(&p, "m1", &breaker())],
            RetryPolicy::default(),
        ))
        .await;
        assert_eq!(
            events[0],
            Ok(ChatEvent::Started {
                model: "a/m1".into()
            })
        );
        assert_eq!(events[1], Ok(ChatEvent::Delta("hi".into())));
        assert_eq!(p.calls.lock().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn falls_back_to_the_next_link_after_a_non_retryable_error() {
        let a = scripted(
            "a",
            vec![Err(LlmError::Rejected {
                status: 401,
                message: "bad key".into(),
            })],
        );
        let b = scripted("b", vec![ok("from b")]);
        let chain = FallbackChain::new(
            vec![link(&a, "m1", &breaker()), link(&b, "m2", &breaker())],
            RetryPolicy::default(),
        );
        let events = collect(chain).await;
        assert_eq!(a.calls.lock().len(), 1, "401 is not retried");
        assert_eq!(
            events[0],
            Ok(ChatEvent::Started {
                model: "b/m2".into()
            })
        );
        assert_eq!(*b.calls.lock(), vec!["m2".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_stream_restarts_before_the_retry() {
        let broken = Ok(vec![
            Ok(ChatEvent::Delta("par".into())),
            Err(LlmError::StreamBroken("eof".into())),
        ]);
        let p = scripted("a", vec![broken, ok("full")]);
        let events = collect(FallbackChain::new(
            vec![link(&p, "m", &breaker())],
            RetryPolicy::default(),
        ))
        .await;
        let kinds: Vec<_> = events.iter().map(|e| format!("{e:?}")).collect();
        assert!(
            matches!(events[2], Ok(ChatEvent::Restart { .. })),
            "{kinds:?}"
        );
        assert_eq!(events[4], Ok(ChatEvent::Delta("full".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_when_every_link_fails_and_open_breakers_are_skipped() {
        let a = scripted("a", vec![]);
        let b = scripted("b", vec![]);
        let open = Arc::new(CircuitBreaker::new(1, Duration::from_secs(60)));
        open.on_failure();
        let chain = FallbackChain::new(
            vec![link(&a, "m", &breaker()), link(&b, "m", &open)],
            RetryPolicy::default(),
        );
        let events = collect(chain).await;
        assert_eq!(a.calls.lock().len(), 3, "three attempts on the first link");
        assert!(b.calls.lock().is_empty(), "open circuit is not called");
        let Some(Err(LlmError::Exhausted(why))) = events.last() else {
            panic!("{events:?}")
        };
        assert!(why.iter().any(|w| w.contains("circuit open")), "{why:?}");
    }
}
