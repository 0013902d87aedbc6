//! Rate limits per client IP (every request) and per API key, answered with `429` and `Retry-After`.
//!
//! In-process GCRA limiters (governor). With several nodes each enforces its own share; a shared limiter on Redis
//! comes with the scale-out work.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

#[derive(Debug, Clone, Copy)]
pub struct RateLimitSettings {
    /// Sustained requests per minute per client IP; 0 disables.
    pub per_ip_per_minute: u32,
    pub per_ip_burst: u32,
    /// Sustained requests per minute per API key; 0 disables.
    pub per_key_per_minute: u32,
    pub per_key_burst: u32,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

pub struct RateLimits {
    ip: Option<Keyed<IpAddr>>,
    key: Option<Keyed<Uuid>>,
    trust_forwarded_for: bool,
}

fn quota(per_minute: u32, burst: u32) -> Option<Quota> {
    let per_minute = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst.max(1)).expect("max(1)");
    Some(Quota::per_minute(per_minute).allow_burst(burst))
}

fn retry_after(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
}

impl RateLimits {
    pub fn new(s: RateLimitSettings) -> Arc<Self> {
        Arc::new(Self {
            ip: quota(s.per_ip_per_minute, s.per_ip_burst).map(RateLimiter::keyed),
            key: quota(s.per_key_per_minute, s.per_key_burst).map(RateLimiter::keyed),
            trust_forwarded_for: s.trust_forwarded_for,
        })
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.ip {
            Some(l) => l.check_key(&ip).map_err(retry_after),
            None => Ok(()),
        }
    }

    pub fn check_key(&self, key: Uuid) -> Result<(), ApiError> {
        match &self.key {
            Some(l) => l.check_key(&key).map_err(retry_after),
            None => Ok(()),
        }
    }

    /// Forgets idle clients so memory stays bounded.
    pub fn housekeeping(&self) {
        if let Some(l) = &self.ip {
            l.retain_recent();
        }
        if let Some(l) = &self.key {
            l.retain_recent();
        }
    }

    pub fn spawn_housekeeping(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match me.upgrade() {
                    Some(l) => l.housekeeping(),
                    None => return,
                }
            }
        });
    }
}

pub(crate) fn client_ip(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let fwd = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if fwd.is_some() {
            return fwd;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub(crate) async fn limit_by_ip(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(ip) = client_ip(&req, state.limits.trust_forwarded_for) {
        if let Err(e) = state.limits.check_ip(ip) {
            return e.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_429_with_retry_after() {
        let l = RateLimits::new(RateLimitSettings {
            per_ip_per_minute: 60,
            per_ip_burst: 3,
            per_key_per_minute: 0,
            per_key_burst: 0,
            trust_forwarded_for: false,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            l.check_ip(ip).unwrap();
        }
        match l.check_ip(ip) {
            Err(ApiError::RateLimited(secs)) => assert!((1..=2).contains(&secs), "{secs}"),
            other => panic!("{other:?}"),
        }
        l.check_ip("10.0.0.2".parse().unwrap())
            .expect("another client has its own budget");
        l.check_key(Uuid::new_v4()).expect("key limit disabled");
    }
}
