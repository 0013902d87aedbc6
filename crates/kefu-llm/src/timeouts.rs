//! Deadlines for a streaming answer: time to the first token, the longest silence between tokens, and the whole.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::{ChatEvent, ChatStream, LlmError, TimeoutPhase};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub first_token: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            first_token: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(180),
        }
    }
}

/// Wraps a stream so it ends with `LlmError::Timeout` when a deadline passes. `started` is when the request was
/// sent, so time spent waiting for response headers counts towards the first token and the total.
pub fn with_timeouts(stream: ChatStream, t: Timeouts, started: Instant) -> ChatStream {
    let deadline = started + t.total;
    let first_deadline = started + t.first_token;
    futures::stream::unfold(
        (stream, false, false),
        move |(mut s, got_token, done)| async move {
            if done {
                return None;
            }
            let phase_end = if got_token {
                Instant::now() + t.idle
            } else {
                first_deadline
            };
            let until = phase_end.min(deadline);
            match tokio::time::timeout_at(until, s.next()).await {
                Ok(Some(Ok(ev))) => {
                    let got =
                        got_token || matches!(ev, ChatEvent::Delta(_) | ChatEvent::ToolCall(_));
                    Some((Ok(ev), (s, got, false)))
                }
                Ok(Some(Err(e))) => Some((Err(e), (s, got_token, true))),
                Ok(None) => None,
                Err(_) => {
                    let phase = if until == deadline {
                        TimeoutPhase::Total
                    } else if got_token {
                        TimeoutPhase::Idle
                    } else {
                        TimeoutPhase::FirstToken
                    };
                    Some((Err(LlmError::Timeout(phase)), (s, got_token, true)))
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timeouts {
        Timeouts {
            first_token: Duration::from_secs(5),
            idle: Duration::from_secs(2),
            total: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_timeout_fires_on_a_silent_stream() {
        let s = futures::stream::pending().boxed();
        let mut s = with_timeouts(s, t(), Instant::now());
        assert_eq!(
            s.next().await,
            Some(Err(LlmError::Timeout(TimeoutPhase::FirstToken)))
        );
        assert_eq!(s.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_after_tokens_stop() {
        let s = futures::stream::iter(vec![Ok(ChatEvent::Delta("a".into()))])
            .chain(futures::stream::pending())
            .boxed();
        let mut s = with_timeouts(s, t(), Instant::now());
        assert_eq!(s.next().await, Some(Ok(ChatEvent::Delta("a".into()))));
        assert_eq!(
            s.next().await,
            Some(Err(LlmError::Timeout(TimeoutPhase::Idle)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn total_timeout_bounds_a_slow_trickle() {
        let trickle = futures::stream::unfold((), |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok(ChatEvent::Delta("x".into())), ()))
        })
        .boxed();
        let s = with_timeouts(
            trickle,
            Timeouts {
                total: Duration::from_secs(10),
                ..t()
            },
            Instant::now(),
        );
        let items: Vec<_> = s.collect().await;
        assert_eq!(
            items.last(),
            Some(&Err(LlmError::Timeout(TimeoutPhase::Total)))
        );
        assert!(items.len() >= 9 && items.len() <= 11, "{}", items.len());
    }
}
