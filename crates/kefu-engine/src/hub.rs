//! In-process fan-out of a conversation's live events, plus the partial answer being generated right now, so a
//! subscriber that (re)connects mid-answer first gets the text so far and then the rest.
//!
//! Stored events are published after their transaction commits; the database stays the source of truth and the
//! subscription fills any gap from it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use uuid::Uuid;

use kefu_store::Event;

#[derive(Debug, Clone)]
pub enum LiveEvent {
    Stored(Arc<Event>),
    /// `text` starts at character `offset` of the reply to customer message `reply_to`.
    Delta {
        reply_to: i64,
        offset: usize,
        text: Arc<str>,
    },
    Reset {
        reply_to: i64,
    },
    /// Ephemeral: who is typing, who has read up to where. Not stored; only live subscribers see it.
    Signal(Signal),
}

/// Something the other side should see at once and never needs to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `role` (customer or agent) started or stopped typing.
    Typing {
        role: kefu_store::MessageRole,
        typing: bool,
    },
    /// `role` has seen every message up to `seq`.
    Read {
        role: kefu_store::MessageRole,
        seq: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub reply_to: i64,
    pub text: String,
    pub chars: usize,
}

struct Channel {
    tx: broadcast::Sender<LiveEvent>,
    partial: Mutex<Option<Partial>>,
    /// Serialises turns of one conversation so replies are generated in order.
    turn: Arc<tokio::sync::Mutex<()>>,
}

pub struct EventHub {
    capacity: usize,
    channels: Mutex<HashMap<Uuid, Arc<Channel>>>,
}

/// A live subscription. Dropping it releases the channel when nobody else uses it.
pub struct Subscription {
    pub rx: broadcast::Receiver<LiveEvent>,
    hub: Arc<EventHub>,
    conversation: Uuid,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver is still alive here; release it first so the count below is right.
        let (tx, rx) = broadcast::channel(1);
        drop(tx);
        drop(std::mem::replace(&mut self.rx, rx));
        self.hub.release(self.conversation);
    }
}

impl EventHub {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(16),
            channels: Mutex::new(HashMap::new()),
        })
    }

    fn channel(&self, id: Uuid) -> Arc<Channel> {
        self.channels
            .lock()
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Channel {
                    tx: broadcast::channel(self.capacity).0,
                    partial: Mutex::new(None),
                    turn: Arc::new(tokio::sync::Mutex::new(())),
                })
            })
            .clone()
    }

    fn release(&self, id: Uuid) {
        let mut map = self.channels.lock();
        if let Some(ch) = map.get(&id) {
            if ch.tx.receiver_count() == 0
                && ch.partial.lock().is_none()
                && Arc::strong_count(&ch.turn) == 1
            {
                map.remove(&id);
            }
        }
    }

    /// Subscribes and returns the partial answer at that instant: every later delta continues from it.
    pub fn subscribe(self: &Arc<Self>, id: Uuid) -> (Subscription, Option<Partial>) {
        let ch = self.channel(id);
        let guard = ch.partial.lock();
        let rx = ch.tx.subscribe();
        let snapshot = guard.clone();
        drop(guard);
        (
            Subscription {
                rx,
                hub: self.clone(),
                conversation: id,
            },
            snapshot,
        )
    }

    pub fn partial(&self, id: Uuid) -> Option<Partial> {
        self.channels
            .lock()
            .get(&id)
            .and_then(|c| c.partial.lock().clone())
    }

    /// Sends an ephemeral signal to the conversation's current subscribers (none: nothing to do).
    pub fn signal(&self, id: Uuid, signal: Signal) {
        let ch = self.channels.lock().get(&id).cloned();
        if let Some(ch) = ch {
            let _ = ch.tx.send(LiveEvent::Signal(signal));
        }
    }

    pub fn publish(&self, event: Event) {
        let id = event.conversation_id;
        let ch = self.channel(id);
        let _ = ch.tx.send(LiveEvent::Stored(Arc::new(event)));
        drop(ch);
        self.release(id);
    }

    /// Waits for this conversation's previous turn to finish; the guard holds the turn.
    pub async fn begin_turn(&self, id: Uuid) -> TurnGuard<'_> {
        let lock = self.channel(id).turn.clone();
        let guard = lock.lock_owned().await;
        TurnGuard {
            hub: self,
            id,
            _guard: Some(guard),
        }
    }

    fn start_reply(&self, id: Uuid, reply_to: i64) {
        let ch = self.channel(id);
        *ch.partial.lock() = Some(Partial {
            reply_to,
            text: String::new(),
            chars: 0,
        });
    }

    fn delta(&self, id: Uuid, reply_to: i64, text: &str) {
        let ch = self.channel(id);
        let mut p = ch.partial.lock();
        let Some(partial) = p.as_mut().filter(|p| p.reply_to == reply_to) else {
            return;
        };
        let offset = partial.chars;
        partial.text.push_str(text);
        partial.chars += text.chars().count();
        // Sent under the lock so a concurrent subscribe sees either the old snapshot and this delta, or both.
        let _ = ch.tx.send(LiveEvent::Delta {
            reply_to,
            offset,
            text: Arc::from(text),
        });
    }

    fn reset(&self, id: Uuid, reply_to: i64) {
        let ch = self.channel(id);
        let mut p = ch.partial.lock();
        if let Some(partial) = p.as_mut().filter(|p| p.reply_to == reply_to) {
            partial.text.clear();
            partial.chars = 0;
            let _ = ch.tx.send(LiveEvent::Reset { reply_to });
        }
    }

    fn end_reply(&self, id: Uuid) {
        if let Some(ch) = self.channels.lock().get(&id) {
            *ch.partial.lock() = None;
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }
}

/// Holds a conversation's turn; records the reply in progress.
pub struct TurnGuard<'a> {
    hub: &'a EventHub,
    id: Uuid,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl TurnGuard<'_> {
    pub fn start_reply(&self, reply_to: i64) {
        self.hub.start_reply(self.id, reply_to);
    }
    pub fn delta(&self, reply_to: i64, text: &str) {
        self.hub.delta(self.id, reply_to, text);
    }
    pub fn reset(&self, reply_to: i64) {
        self.hub.reset(self.id, reply_to);
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.hub.end_reply(self.id);
        self._guard = None;
        self.hub.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_subscriber_gets_the_partial_then_continuous_deltas() {
        let hub = EventHub::new(64);
        let id = Uuid::new_v4();
        let turn = hub.begin_turn(id).await;
        turn.start_reply(1);
        turn.delta(1, "你好，");
        let (mut sub, snap) = hub.subscribe(id);
        assert_eq!(
            snap,
            Some(Partial {
                reply_to: 1,
                text: "你好，".into(),
                chars: 3
            })
        );
        turn.delta(1, "world");
        match sub.rx.recv().await.unwrap() {
            LiveEvent::Delta { offset, text, .. } => {
                assert_eq!(offset, 3);
                assert_eq!(&*text, "world");
            }
            other => panic!("{other:?}"),
        }
        drop(turn);
        assert_eq!(hub.partial(id), None);
    }

    #[tokio::test]
    async fn channels_are_released_when_unused() {
        let hub = EventHub::new(16);
        let id = Uuid::new_v4();
        {
            let (_s1, _) = hub.subscribe(id);
            let (_s2, _) = hub.subscribe(id);
            assert_eq!(hub.channel_count(), 1);
        }
        assert_eq!(hub.channel_count(), 0);
        drop(hub.begin_turn(id).await);
        assert_eq!(hub.channel_count(), 0);
    }

    #[tokio::test]
    async fn turns_of_one_conversation_run_one_at_a_time() {
        let hub = EventHub::new(16);
        let id = Uuid::new_v4();
        let first = hub.begin_turn(id).await;
        let hub2 = hub.clone();
        let second = tokio::spawn(async move {
            let _t = hub2.begin_turn(id).await;
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        second.await.unwrap();
    }
}
