//! A resumable subscription to one conversation: stored events after a sequence number from the database, then live
//! events, with the partial answer in progress delivered as one delta. Gaps (publish order, a lagging subscriber) are
//! filled from the database, so a subscriber sees every stored event exactly once and in order.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use kefu_store::{Event, EventData};

use crate::hub::{LiveEvent, Partial, Subscription};
use crate::Engine;

/// What a subscriber receives: a live event (stored, delta, reset), or the end of the stream.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Live(LiveEvent),
    Shutdown,
    Error { code: &'static str, message: String },
}

pub(crate) struct Subscriber {
    engine: Arc<Engine>,
    tenant: Uuid,
    conversation: Uuid,
    last_seq: i64,
    /// Replies already delivered as stored messages: their deltas are stale.
    completed: HashSet<i64>,
    buffer: VecDeque<Outgoing>,
    sub: Option<Subscription>,
    ended: bool,
}

const PAGE: u32 = 500;

impl Subscriber {
    pub(crate) fn start(
        engine: Arc<Engine>,
        tenant: Uuid,
        conversation: Uuid,
        after: i64,
    ) -> BoxStream<'static, Outgoing> {
        let s = Subscriber {
            engine,
            tenant,
            conversation,
            last_seq: after.max(0),
            completed: HashSet::new(),
            buffer: VecDeque::new(),
            sub: None,
            ended: false,
        };
        futures::stream::unfold(s, |mut s| async move { s.next().await.map(|o| (o, s)) }).boxed()
    }

    fn push_stored(&mut self, ev: Arc<Event>) {
        if ev.seq <= self.last_seq {
            return;
        }
        self.last_seq = ev.seq;
        if let EventData::MessageCreated(m) = &ev.data {
            if let Some(to) = m.reply_to_seq {
                self.completed.insert(to);
            }
        }
        self.buffer.push_back(Outgoing::Live(LiveEvent::Stored(ev)));
    }

    fn push_partial(&mut self, p: Option<Partial>) {
        if let Some(p) = p.filter(|p| !p.text.is_empty() && !self.completed.contains(&p.reply_to)) {
            self.buffer.push_back(Outgoing::Live(LiveEvent::Delta {
                reply_to: p.reply_to,
                offset: 0,
                text: Arc::from(p.text),
            }));
        }
    }

    async fn catch_up(&mut self) -> bool {
        loop {
            match self
                .engine
                .store
                .list_events(self.tenant, self.conversation, self.last_seq, PAGE)
                .await
            {
                Ok(evs) => {
                    let n = evs.len();
                    for ev in evs {
                        self.push_stored(Arc::new(ev));
                    }
                    if n < PAGE as usize {
                        return true;
                    }
                }
                Err(e) => {
                    tracing::error!(conversation_id = %self.conversation, error = %e, "subscription catch-up failed");
                    self.buffer.push_back(Outgoing::Error {
                        code: "stream_unavailable",
                        message: "events could not be read; reconnect with `after` to resume"
                            .into(),
                    });
                    self.ended = true;
                    return false;
                }
            }
        }
    }

    async fn next(&mut self) -> Option<Outgoing> {
        loop {
            if let Some(o) = self.buffer.pop_front() {
                return Some(o);
            }
            if self.ended {
                return None;
            }
            if self.sub.is_none() {
                // Subscribe before reading the database so nothing published in between is missed.
                let (sub, snapshot) = self.engine.hub.subscribe(self.conversation);
                self.sub = Some(sub);
                if self.catch_up().await {
                    self.push_partial(snapshot);
                }
                continue;
            }
            let shutting_down = self.engine.shutting_down.clone();
            let rx = &mut self.sub.as_mut().expect("subscribed").rx;
            let received = tokio::select! {
                _ = shutting_down.cancelled() => {
                    self.ended = true;
                    return Some(Outgoing::Shutdown);
                }
                r = rx.recv() => r,
            };
            match received {
                Ok(LiveEvent::Stored(ev)) => {
                    if ev.tenant_id != self.tenant || ev.seq <= self.last_seq {
                        continue;
                    }
                    if ev.seq == self.last_seq + 1 {
                        self.push_stored(ev);
                    } else {
                        self.catch_up().await;
                    }
                }
                Ok(ev @ (LiveEvent::Delta { reply_to, .. } | LiveEvent::Reset { reply_to })) => {
                    if !self.completed.contains(&reply_to) {
                        self.buffer.push_back(Outgoing::Live(ev));
                    }
                }
                Ok(ev @ LiveEvent::Signal(_)) => self.buffer.push_back(Outgoing::Live(ev)),
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(conversation_id = %self.conversation, skipped = n, "subscriber lagged; resyncing");
                    if self.catch_up().await {
                        let p = self.engine.hub.partial(self.conversation);
                        self.push_partial(p);
                    }
                }
                Err(RecvError::Closed) => self.ended = true,
            }
        }
    }
}
