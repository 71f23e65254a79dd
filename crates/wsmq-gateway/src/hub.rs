//! The node's channel hub: local fan-out of broadcast channel messages.
//!
//! The hub is the engine's [`BrokerHandler`]: the broker hands it every publication of a
//! channel this node subscribed to, and the hub tells the broker (through `on_change`) when a
//! channel gets its first local subscriber and loses its last.
//!
//! Each channel with local subscribers has a member list: one [`FrameSink`] per local
//! subscription, which queues a frame on its session's outbound queue. A publication of the
//! channel (from any node) is
//! encoded into its v1 frame ONCE and handed to every member as a clone of the same
//! `Utf8Bytes` (a reference-counted buffer), so fan-out to N sessions costs N pointer copies
//! and N queue pushes: no JSON re-encoding, and no task per subscription between the hub and
//! the session's writer (which would cost a wake-up per delivery and a task per idle
//! subscriber).
//!
//! Channels are at-most-once: a session whose outbound queue is full is closed as a slow
//! client (4008), like for any other frame.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::metrics::gauge::Gauge;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wsmq_proto::{ChannelName, encode_channel_message};

use crate::engine::{
    BrokerHandler,
    interest::{InterestGuard, Interests},
};

/// Where a local subscription's frames go: the session pushes them on its outbound queue.
pub(crate) type FrameSink = Box<dyn Fn(Utf8Bytes) + Send + Sync>;

/// The local subscriptions of one channel, by subscription id.
type Members = Mutex<HashMap<u64, FrameSink>>;

/// Local channel subscriptions of one node.
pub(crate) struct ChannelHub {
    /// channel name → its members, with the local subscriber count.
    channels: Arc<Interests<Arc<Members>>>,
    /// Ids of subscriptions, unique per hub.
    next_id: AtomicU64,
    /// Live subscriptions of the node (queue subscriptions count themselves in it too).
    gauge: Gauge,
}

/// A session's subscription to a broadcast channel: its sink gets every frame dispatched to
/// the channel until this is dropped. Dropping the last one ends the node's subscription.
pub(crate) struct ChannelSubscription {
    members: Arc<Members>,
    id: u64,
    /// Counts this subscription while it lives.
    gauge: Gauge,
    /// Keeps the node's subscription to the channel alive; dropped after the member is gone.
    _guard: InterestGuard,
}

impl Drop for ChannelSubscription {
    fn drop(&mut self) {
        lock(&self.members).remove(&self.id);
        self.gauge.dec();
    }
}

impl ChannelHub {
    /// A hub that calls `on_change(channel, true)` when the first local session subscribes to
    /// a channel and `(channel, false)` after the last one left, and counts its subscriptions
    /// in `gauge`.
    pub(crate) fn new(
        on_change: impl Fn(&str, bool) + Send + Sync + 'static,
        gauge: Gauge,
    ) -> ChannelHub {
        ChannelHub {
            channels: Interests::new(Box::new(move |channel, _, first| {
                on_change(channel, first);
            })),
            next_id: AtomicU64::new(0),
            gauge,
        }
    }

    /// Subscribes `sink` to `channel`: it gets `first` (the subscribe's `ok`), then every
    /// frame dispatched to the channel. Both happen under the member lock, so no message
    /// overtakes `first` and none dispatched after it is missed.
    pub(crate) fn subscribe(
        &self,
        channel: &str,
        sink: FrameSink,
        first: Utf8Bytes,
    ) -> ChannelSubscription {
        let (members, guard) = self.channels.join(channel, Arc::default);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut locked = lock(&members);
        sink(first);
        locked.insert(id, sink);
        drop(locked);
        self.gauge.inc();
        ChannelSubscription {
            members,
            id,
            gauge: self.gauge.clone(),
            _guard: guard,
        }
    }

    /// Hands a channel message to every local subscriber; returns how many there were.
    pub(crate) fn dispatch(&self, channel: &str, body: &str) -> usize {
        let Some(members) = self.channels.get(channel) else {
            return 0;
        };
        let Some(frame) = encode_channel_frame(channel, body) else {
            return 0;
        };
        let frame = Utf8Bytes::from(frame);
        // Held while pushing: pushes only queue (no await, no I/O), and holding it keeps one
        // channel's frames in the same order for every member.
        let members = lock(&members);
        for sink in members.values() {
            sink(frame.clone());
        }
        members.len()
    }

    /// The channels that have local subscribers.
    #[cfg(test)]
    fn channels(&self) -> Vec<String> {
        self.channels.names()
    }
}

impl BrokerHandler for ChannelHub {
    fn on_publication(&self, channel: &str, body: &str) {
        self.dispatch(channel, body);
    }
}

/// A sink that panicked while the lock was held leaves the member list as it was; it is still
/// usable.
fn lock(members: &Members) -> std::sync::MutexGuard<'_, HashMap<u64, FrameSink>> {
    members
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `{"op":"message","channel":…,"message":…}`, encoded by `wsmq-proto`; `None` for a name
/// that is not a valid channel name (nobody can be subscribed to it).
pub(crate) fn encode_channel_frame(channel: &str, body: &str) -> Option<String> {
    let channel = ChannelName::new(channel).ok()?;
    let mut out = String::new();
    encode_channel_message(&mut out, &channel, body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_encoding_reaches_every_subscriber() {
        let hub = ChannelHub::new(|_, _| {}, Gauge::default());
        let (a, mut a_rx) = sink();
        let (b, mut b_rx) = sink();
        let a = hub.subscribe("news", a, "ok".into());
        let _b = hub.subscribe("news", b, "ok".into());
        assert_eq!(a_rx.recv().await.unwrap().as_str(), "ok");
        assert_eq!(b_rx.recv().await.unwrap().as_str(), "ok");
        assert_eq!(hub.dispatch("news", "hi"), 2);
        assert_eq!(hub.dispatch("other", "hi"), 0);
        let fa = a_rx.recv().await.unwrap();
        let fb = b_rx.recv().await.unwrap();
        assert_eq!(
            fa.as_str(),
            r#"{"op":"message","channel":"news","message":"hi"}"#
        );
        // Same buffer, not a copy.
        assert_eq!(fa.as_str().as_ptr(), fb.as_str().as_ptr());
        drop(a);
        assert_eq!(hub.dispatch("news", "bye"), 1);
        assert!(a_rx.try_recv().is_err());
        assert_eq!(
            b_rx.recv().await.unwrap().as_str(),
            r#"{"op":"message","channel":"news","message":"bye"}"#
        );
    }

    #[tokio::test]
    async fn the_last_member_leaving_ends_the_interest() {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&changes);
        let gauge = Gauge::default();
        let hub = ChannelHub::new(
            move |channel, first| {
                seen.lock().unwrap().push((channel.to_owned(), first));
            },
            gauge.clone(),
        );
        let a = hub.subscribe("room", sink().0, "ok".into());
        let b = hub.subscribe("room", sink().0, "ok".into());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(hub.channels(), vec!["room".to_owned()]);
        drop(b);
        assert!(hub.channels().is_empty());
        assert_eq!(gauge.get(), 0);
        assert_eq!(
            *changes.lock().unwrap(),
            vec![("room".to_owned(), true), ("room".to_owned(), false)]
        );
        assert_eq!(hub.dispatch("room", "nobody"), 0);
    }

    fn sink() -> (FrameSink, tokio::sync::mpsc::UnboundedReceiver<Utf8Bytes>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Box::new(move |frame| {
                let _ = tx.send(frame);
            }),
            rx,
        )
    }
}
