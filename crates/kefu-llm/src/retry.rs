//! Retry policy: exponential backoff with full jitter; a provider's `Retry-After` wins when it asks for longer.

use std::time::Duration;

use rand::Rng;

use crate::LlmError;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per chain link, including the first.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this moves on to the next link instead of waiting.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before attempt `attempt + 1` after `err` on attempt `attempt` (0-based), or `None` to give
    /// up on this link. `jitter` is a uniform sample in `[0, 1)`, passed in so the decision is a pure function.
    pub fn delay(&self, attempt: u32, err: &LlmError, jitter: f64) -> Option<Duration> {
        if !err.is_retryable() || attempt + 1 >= self.max_attempts {
            return None;
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let backoff = exp.min(self.max_delay).mul_f64(jitter.clamp(0.0, 1.0));
        match err.retry_after() {
            Some(ra) if ra > self.max_retry_after => None,
            Some(ra) => Some(ra.max(backoff)),
            None => Some(backoff),
        }
    }

    pub fn delay_random(&self, attempt: u32, err: &LlmError) -> Option<Duration> {
        self.delay(attempt, err, rand::thread_rng().gen::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server() -> LlmError {
        LlmError::Server {
            status: 503,
            retry_after: None,
            message: String::new(),
        }
    }

    #[test]
    fn honours_retry_after_over_backoff() {
        let p = RetryPolicy::default();
        let e = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(p.delay(0, &e, 0.5), Some(Duration::from_secs(2)));
    }

    #[test]
    fn too_long_retry_after_gives_up_on_the_link() {
        let p = RetryPolicy::default();
        let e = LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(p.delay(0, &e, 0.5), None);
    }

    #[test]
    fn non_retryable_errors_and_last_attempt_stop() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(
                0,
                &LlmError::Rejected {
                    status: 401,
                    message: String::new()
                },
                0.5
            ),
            None
        );
        assert_eq!(p.delay(p.max_attempts - 1, &server(), 0.5), None);
        assert!(p.delay(p.max_attempts - 2, &server(), 0.5).is_some());
    }

    proptest! {
        #[test]
        fn backoff_is_bounded_and_grows(attempt in 0u32..2, jitter in 0.0f64..1.0) {
            let p = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
            let d = p.delay(attempt, &server(), jitter).unwrap();
            prop_assert!(d <= p.max_delay);
            let cap = p.base_delay * 2u32.pow(attempt);
            prop_assert!(d <= cap);
            // Full jitter: the same jitter at a later attempt never waits less.
            let later = p.delay(attempt + 1, &server(), jitter).unwrap();
            prop_assert!(later >= d);
        }
    }
}
