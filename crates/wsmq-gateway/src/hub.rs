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
//! Channels without history are at-most-once: a session whose outbound queue is full is
//! closed as a slow client (4008), like for any other frame.
//!
//! # Channels with history
//!
//! Their publications carry a [`Position`]. The hub remembers the last one it forwarded per
//! channel; when the next one skips offsets (the pub/sub link lost some, or the node
//! subscribed while they were on their way) it holds the channel's publications back, reads
//! the missing ones from the history and forwards them in order first. Each member remembers
//! the last position it got, so it skips what it already has (a repair, or a recovery, may
//! read what also arrives live) and is sent a `reset` frame when it would see a gap all the
//! same (the history no longer held it, or was lost): never a silent gap.
//!
//! A member that subscribes to such a channel starts *pending*: it is a member at once (so
//! nothing published from then on is missed), but what arrives is kept aside while its
//! session reads the history and sends the `ok` and the replay; [`ChannelSubscription::start_at`]
//! then sends what was kept aside past the replay, in order and without duplicates.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::metrics::gauge::Gauge;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::debug;
use wsmq_proto::{
    ChannelName, ServerFrame, encode_channel_message, encode_channel_publication, encode_server,
};

use crate::engine::{
    Broker, BrokerHandler, EngineError, HistoryPolicy, HistoryRange, Position,
    interest::{InterestGuard, Interests},
};

/// Where a local subscription's frames go: the session pushes them on its outbound queue.
pub(crate) type FrameSink = Box<dyn Fn(Utf8Bytes) + Send + Sync>;

/// Which history a channel keeps, if any (the node's configuration, resolved by name).
pub(crate) type PolicyOf = Box<dyn Fn(&str) -> Option<HistoryPolicy> + Send + Sync>;

/// Most publications one gap repair reads: a gap wider than this is reported with `reset`.
const MAX_REPAIR: u64 = 10_000;
/// Reads a repair tries before it gives up (and members get `reset`): a gap is most often
/// seen right after the link to the engine came back, when the command connection may be
/// failing over too. The channel's publications wait meanwhile.
const REPAIR_ATTEMPTS: u32 = 5;
/// Pause between two of them.
const REPAIR_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// One local subscription.
struct Member {
    /// Its session's outbound queue.
    sink: FrameSink,
    /// The last publication with history it was sent.
    at: Option<Position>,
    /// While its session reads the history: what arrived meanwhile, in order.
    pending: Option<Pending>,
}

/// What arrives for a member while its session replays the history, bounded.
struct Pending {
    frames: std::collections::VecDeque<(Option<Position>, Utf8Bytes)>,
    /// Most frames kept: a client that cannot take the replay and the live stream together
    /// must not grow the node's memory without bound.
    cap: usize,
}

impl Pending {
    fn new(cap: usize) -> Pending {
        Pending {
            frames: std::collections::VecDeque::new(),
            cap: cap.max(1),
        }
    }
}

impl IntoIterator for Pending {
    type Item = (Option<Position>, Utf8Bytes);
    type IntoIter = std::collections::vec_deque::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.frames.into_iter()
    }
}

/// One channel with local subscribers.
struct Channel {
    /// Its name, for `reset` frames (`None` for a name that is not a valid channel name, which
    /// nobody can subscribe to).
    name: Option<ChannelName>,
    /// The local subscriptions, by id.
    members: HashMap<u64, Member>,
    /// The last publication with history forwarded to the members.
    last: Option<Position>,
    /// While a gap is filled from the history: what arrived meanwhile, in order.
    repairing: Option<Vec<(Position, String)>>,
}

type Shared = Arc<Mutex<Channel>>;

/// What the hub needs to fill gaps: the broker's history and the node's policy.
struct Repairs {
    broker: Arc<dyn Broker>,
    policy_of: PolicyOf,
}

/// Local channel subscriptions of one node.
pub(crate) struct ChannelHub {
    /// channel name → its state, with the local subscriber count.
    channels: Arc<Interests<Shared>>,
    /// Ids of subscriptions, unique per hub.
    next_id: AtomicU64,
    /// Live subscriptions of the node (queue subscriptions count themselves in it too).
    gauge: Gauge,
    /// How gaps are filled; `None`: they are reported with `reset` at once.
    repairs: Option<Arc<Repairs>>,
}

/// A session's subscription to a broadcast channel: its sink gets every frame dispatched to
/// the channel until this is dropped. Dropping the last one ends the node's subscription.
pub(crate) struct ChannelSubscription {
    channel: Shared,
    id: u64,
    /// Counts this subscription while it lives.
    gauge: Gauge,
    /// Keeps the node's subscription to the channel alive; dropped after the member is gone.
    _guard: InterestGuard,
}

impl Drop for ChannelSubscription {
    fn drop(&mut self) {
        lock(&self.channel).members.remove(&self.id);
        self.gauge.dec();
    }
}

impl ChannelSubscription {
    /// Ends the pending state of a subscription made with [`ChannelHub::subscribe_pending`],
    /// once its session has sent the `ok` and the replay, which ended at `at`: sends what
    /// arrived meanwhile past `at`, then goes live, under the channel lock so nothing
    /// overtakes or is missed.
    pub(crate) fn start_at(&self, at: Position) {
        let mut channel = lock(&self.channel);
        let name = channel.name.clone();
        let Some(member) = channel.members.get_mut(&self.id) else {
            return;
        };
        member.at = Some(at);
        for (position, frame) in member.pending.take().into_iter().flatten() {
            deliver(member, name.as_ref(), &frame, position.as_ref());
        }
        // The hub's own position must not run ahead of a member: what lies between would
        // never be forwarded to it. Going back only costs a repair read that members skip.
        if let Some(reached) = member.at.clone() {
            let behind = match &channel.last {
                None => true,
                Some(last) => last.epoch == reached.epoch && reached.offset < last.offset,
            };
            if behind {
                channel.last = Some(reached);
            }
        }
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
            repairs: None,
        }
    }

    /// Fills gaps of channels with history (as `policy_of` says) from `broker`'s history.
    pub(crate) fn with_repairs(mut self, broker: Arc<dyn Broker>, policy_of: PolicyOf) -> Self {
        self.repairs = Some(Arc::new(Repairs { broker, policy_of }));
        self
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
        sink(first);
        self.join(channel, sink, None)
    }

    /// Subscribes `sink` to `channel` in the pending state: what arrives is kept until
    /// [`ChannelSubscription::start_at`], at most `cap` frames (past that, the oldest kept
    /// are dropped, and the member is sent `reset` for them when it starts).
    pub(crate) fn subscribe_pending(
        &self,
        channel: &str,
        sink: FrameSink,
        cap: usize,
    ) -> ChannelSubscription {
        self.join(channel, sink, Some(Pending::new(cap)))
    }

    fn join(
        &self,
        channel: &str,
        sink: FrameSink,
        pending: Option<Pending>,
    ) -> ChannelSubscription {
        let (shared, guard) = self.channels.join(channel, || {
            Arc::new(Mutex::new(Channel {
                name: ChannelName::new(channel).ok(),
                members: HashMap::new(),
                last: None,
                repairing: None,
            }))
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            sink,
            at: None,
            pending,
        };
        lock(&shared).members.insert(id, member);
        self.gauge.inc();
        ChannelSubscription {
            channel: shared,
            id,
            gauge: self.gauge.clone(),
            _guard: guard,
        }
    }

    /// Hands a channel message to every local subscriber; returns how many there were.
    pub(crate) fn dispatch(&self, channel: &str, body: &str) -> usize {
        let Some(shared) = self.channels.get(channel) else {
            return 0;
        };
        let Some(frame) = encode_channel_frame(channel, body) else {
            return 0;
        };
        let frame = Utf8Bytes::from(frame);
        // Held while pushing: pushes only queue (no await, no I/O), and holding it keeps one
        // channel's frames in the same order for every member.
        let mut locked = lock(&shared);
        let name = locked.name.clone();
        for member in locked.members.values_mut() {
            deliver(member, name.as_ref(), &frame, None);
        }
        locked.members.len()
    }

    /// Hands a publication with history to the local subscribers, filling a gap before it
    /// from the history first.
    fn dispatch_positioned(&self, channel: &str, body: &str, position: &Position) {
        let Some(shared) = self.channels.get(channel) else {
            return;
        };
        let mut locked = lock(&shared);
        if let Some(waiting) = &mut locked.repairing {
            waiting.push((position.clone(), body.to_owned()));
            return;
        }
        if let Some(last) = &locked.last
            && last.epoch == position.epoch
            && position.offset > last.offset + 1
            && let Some(repairs) = &self.repairs
            && let Some(policy) = (repairs.policy_of)(channel)
        {
            let from = last.clone();
            locked.repairing = Some(vec![(position.clone(), body.to_owned())]);
            drop(locked);
            debug!(
                channel,
                from = from.offset,
                to = position.offset,
                "channel gap: repairing from history"
            );
            tokio::spawn(repair(
                shared,
                Arc::clone(repairs),
                channel.to_owned(),
                policy,
                from,
            ));
            return;
        }
        forward(&mut locked, body, position);
    }

    /// After the broker's link came back: reads what each channel with history may have
    /// missed since its last forwarded publication.
    fn check_all(&self) {
        let Some(repairs) = &self.repairs else {
            return;
        };
        for (channel, shared) in self.channels.entries() {
            let Some(policy) = (repairs.policy_of)(&channel) else {
                continue;
            };
            let mut locked = lock(&shared);
            let Some(from) = locked.last.clone().filter(|_| locked.repairing.is_none()) else {
                continue;
            };
            locked.repairing = Some(Vec::new());
            drop(locked);
            tokio::spawn(repair(shared, Arc::clone(repairs), channel, policy, from));
        }
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

    fn on_positioned(&self, channel: &str, body: &str, position: &Position) {
        self.dispatch_positioned(channel, body, position);
    }

    fn on_link_restored(&self) {
        self.check_all();
    }
}

/// Reads what lies between `from` and the publications held back, forwards it, then what was
/// held back. Whatever the history no longer has shows as a gap to the members, who are sent
/// `reset`.
async fn repair(
    shared: Shared,
    repairs: Arc<Repairs>,
    channel: String,
    policy: HistoryPolicy,
    from: Position,
) {
    let limit = policy.size.clamp(1, MAX_REPAIR);
    let mut read = Err(EngineError::Unavailable("not read yet".into()));
    for attempt in 0..REPAIR_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(REPAIR_RETRY).await;
        }
        read = repairs
            .broker
            .history(&channel, policy, HistoryRange::After(from.offset), limit)
            .await;
        if read.is_ok() {
            break;
        }
    }
    let mut locked = lock(&shared);
    let waiting = locked.repairing.take().unwrap_or_default();
    match read {
        Ok(page) if page.epoch == from.epoch => {
            for entry in &page.entries {
                let position = Position {
                    offset: entry.offset,
                    epoch: Arc::clone(&page.epoch),
                };
                forward(&mut locked, &entry.body, &position);
            }
        }
        Ok(_) => debug!(channel, "channel gap: the history was lost"),
        Err(err) => debug!(channel, cause = %err, "channel gap: history unavailable"),
    }
    for (position, body) in waiting {
        forward(&mut locked, &body, &position);
    }
}

/// Forwards one publication with history to every member, unless the hub already did.
fn forward(channel: &mut Channel, body: &str, position: &Position) {
    if let Some(last) = &channel.last
        && last.epoch == position.epoch
        && position.offset <= last.offset
    {
        return;
    }
    channel.last = Some(position.clone());
    let Some(name) = channel.name.clone() else {
        return;
    };
    let mut out = String::new();
    encode_channel_publication(&mut out, &name, body, position.offset, &position.epoch);
    let frame = Utf8Bytes::from(out);
    for member in channel.members.values_mut() {
        deliver(member, Some(&name), &frame, Some(position));
    }
}

/// Sends one frame to one member: kept aside while it is pending, skipped when it has it
/// already, preceded by `reset` when it would see a gap.
fn deliver(
    member: &mut Member,
    name: Option<&ChannelName>,
    frame: &Utf8Bytes,
    position: Option<&Position>,
) {
    if let Some(pending) = &mut member.pending {
        if pending.frames.len() >= pending.cap {
            // The gap this leaves shows when the member starts: it is sent `reset`.
            pending.frames.pop_front();
        }
        pending.frames.push_back((position.cloned(), frame.clone()));
        return;
    }
    if let Some(position) = position {
        match &member.at {
            Some(at) if at.epoch == position.epoch && position.offset <= at.offset => return,
            Some(at) if at.epoch != position.epoch || position.offset > at.offset + 1 => {
                if let Some(name) = name {
                    let reset = ServerFrame::Reset {
                        channel: name.clone(),
                        offset: position.offset.saturating_sub(1),
                        epoch: position.epoch.to_string(),
                    };
                    (member.sink)(encode_server(&reset).into());
                }
            }
            _ => {}
        }
        member.at = Some(position.clone());
    }
    (member.sink)(frame.clone());
}

/// A sink that panicked while the lock was held leaves the channel as it was; it is still
/// usable.
fn lock(channel: &Mutex<Channel>) -> std::sync::MutexGuard<'_, Channel> {
    channel
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

    fn at(offset: u64, epoch: &str) -> Position {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }

    async fn frames(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Utf8Bytes>) -> Vec<String> {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut out = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            out.push(frame.as_str().to_owned());
        }
        out
    }

    fn message(offset: u64, epoch: &str) -> String {
        format!(
            r#"{{"op":"message","channel":"room","message":"m{offset}","offset":{offset},"epoch":"{epoch}"}}"#
        )
    }

    #[tokio::test]
    async fn members_skip_what_they_have_and_are_told_of_gaps() {
        let hub = ChannelHub::new(|_, _| {}, Gauge::default());
        let (a, mut rx) = sink();
        let sub = hub.subscribe_pending("room", a, 16);
        // Arrives while the member is pending: kept, and what the replay covered is skipped.
        hub.on_positioned("room", "m2", &at(2, "E"));
        hub.on_positioned("room", "m3", &at(3, "E"));
        assert!(frames(&mut rx).await.is_empty());
        sub.start_at(at(2, "E"));
        hub.on_positioned("room", "m3", &at(3, "E"));
        hub.on_positioned("room", "m5", &at(5, "E"));
        hub.on_positioned("room", "m1", &at(1, "F"));
        assert_eq!(
            frames(&mut rx).await,
            vec![
                message(3, "E"),
                r#"{"op":"reset","channel":"room","offset":4,"epoch":"E"}"#.to_owned(),
                message(5, "E"),
                r#"{"op":"reset","channel":"room","offset":0,"epoch":"F"}"#.to_owned(),
                message(1, "F"),
            ]
        );
    }

    #[tokio::test]
    async fn a_gap_is_filled_from_the_history_before_going_on() {
        let engine = crate::engine::memory::MemoryEngine::new();
        let policy = HistoryPolicy {
            size: 10,
            ttl: std::time::Duration::from_secs(60),
        };
        let broker: Arc<dyn Broker> = engine;
        for i in 1..=5 {
            broker
                .publish_with_history("room", &format!("m{i}"), policy)
                .await
                .unwrap();
        }
        let epoch = broker
            .history("room", policy, HistoryRange::After(0), 1)
            .await
            .unwrap()
            .epoch;
        let hub = ChannelHub::new(|_, _| {}, Gauge::default())
            .with_repairs(Arc::clone(&broker), Box::new(move |_| Some(policy)));
        let (a, mut rx) = sink();
        let sub = hub.subscribe_pending("room", a, 16);
        sub.start_at(at(1, &epoch));
        // 2 to 4 never arrived live.
        hub.on_positioned("room", "m5", &at(5, &epoch));
        let got = frames(&mut rx).await;
        let want: Vec<String> = (2..=5).map(|i| message(i, &epoch)).collect();
        assert_eq!(got, want);
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
