//! [`Broker`]: broadcast channels across nodes, and the [`BrokerHandler`] it feeds.
//!
//! The split follows Centrifugo's `centrifuge` library: the broker carries publications
//! between nodes and knows which channels this node wants; the node (its channel hub) owns the
//! local subscribers and is handed every publication through the handler. So an engine never
//! sees a session, and the hub never sees a backend.
//!
//! Channel history, recovery and presence (issue "channels that lose nothing") extend these two
//! traits: history and its position travel with each publication, and the handler learns when
//! the broker's link was lost and restored, so the node can repair the gap.

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use futures_util::future::BoxFuture;

use super::{EngineError, Listening};

/// How much history a channel keeps (resolved by the node from its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// The last `size` publications are kept (at least 1).
    pub size: u64,
    /// The whole history is dropped this long after the channel's last publication.
    pub ttl: Duration,
}

/// Where a publication stands in its channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// +1 per publication of the channel within the epoch; the first is 1.
    pub offset: u64,
    /// Changes whenever the stored history is lost (shared, as many frames carry it).
    pub epoch: Arc<str>,
}

/// What a publish to a channel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Nodes that received it.
    pub receivers: u64,
    /// Its place in the history, when the channel has one.
    pub position: Option<Position>,
}

/// Which part of a history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    /// The oldest publications after this offset (exclusive): recovery.
    After(u64),
    /// The latest publications before this offset (exclusive; `None`: up to the latest):
    /// scroll-back.
    Before(Option<u64>),
}

/// One stored publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its offset.
    pub offset: u64,
    /// The body.
    pub body: String,
    /// When it was published, Unix ms.
    pub sent: u64,
}

/// A read of a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The history's epoch (a history that did not exist is created empty by the read, so
    /// that a position read now stays comparable with later publications).
    pub epoch: Arc<str>,
    /// The offset of the latest publication (0: none yet in this epoch).
    pub top: u64,
    /// The publications read, oldest first, contiguous.
    pub entries: Vec<HistoryEntry>,
}

/// What the node does with what the broker receives.
pub trait BrokerHandler: Send + Sync + 'static {
    /// A publication on `channel` arrived (from this node or another), for the local
    /// subscribers of the channel.
    fn on_publication(&self, channel: &str, body: &str);

    /// A publication of a channel with history arrived, at `position`. Handlers that do not
    /// track positions treat it as any publication.
    fn on_positioned(&self, channel: &str, body: &str, position: &Position) {
        let _ = position;
        self.on_publication(channel, body);
    }

    /// The broker's link was lost and is back (subscribed again): publications sent
    /// meanwhile never arrived, and a handler that tracks positions looks for them now rather
    /// than at the channel's next publication, which may never come.
    fn on_link_restored(&self) {}
}

/// Channels across nodes.
pub trait Broker: Send + Sync + 'static {
    /// Hands the broker the node's handler. The broker keeps only a weak reference (the node
    /// owns both), and drops publications that arrive before this or after the node is gone.
    fn start(&self, handler: &Arc<dyn BrokerHandler>);

    /// Broadcasts on a channel to every node; returns how many nodes received it.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Appends to the channel's history (size and ttl from `history`) and broadcasts, as one
    /// atomic step: the offset is taken, the publication stored and sent to every node
    /// together, so offsets reach each node in order and a stored publication was sent.
    fn publish_with_history<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
        history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Published, EngineError>>;

    /// Reads at most `limit` publications of the channel's history in `range`, with the
    /// history's epoch and latest offset.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        history: HistoryPolicy,
        range: HistoryRange,
        limit: u64,
    ) -> BoxFuture<'a, Result<HistoryPage, EngineError>>;

    /// The node wants the channel's publications (its first local subscriber appeared).
    /// Calls for one channel come in the order the subscribers came and went.
    fn subscribe(&self, channel: &str);

    /// The node no longer wants the channel's publications (its last local subscriber left).
    fn unsubscribe(&self, channel: &str);

    /// Whether the node's subscription to `channel` is in effect, for a broker whose
    /// subscribe takes effect later (Redis confirms it on its own connection). A subscriber
    /// that reads the history waits for it first, so that nothing published after the read
    /// can pass the node by. `None`: in effect from [`Broker::subscribe`] on.
    fn channel_listening(&self, channel: &str) -> Option<Arc<Listening>> {
        let _ = channel;
        None
    }
}

/// Where a broker keeps the node's handler: set once by [`Broker::start`], held weakly.
#[derive(Default)]
pub struct HandlerSlot(OnceLock<Weak<dyn BrokerHandler>>);

impl HandlerSlot {
    /// Keeps a weak reference to `handler` (the first one given wins).
    pub fn set(&self, handler: &Arc<dyn BrokerHandler>) {
        let _ = self.0.set(Arc::downgrade(handler));
    }

    /// Hands a publication to the handler, if the node has started the broker and still runs.
    pub fn on_publication(&self, channel: &str, body: &str) {
        if let Some(handler) = self.0.get().and_then(Weak::upgrade) {
            handler.on_publication(channel, body);
        }
    }

    /// Hands a publication of a channel with history to the handler, as
    /// [`HandlerSlot::on_publication`].
    pub fn on_positioned(&self, channel: &str, body: &str, position: &Position) {
        if let Some(handler) = self.0.get().and_then(Weak::upgrade) {
            handler.on_positioned(channel, body, position);
        }
    }
}

impl HandlerSlot {
    /// Tells the handler the broker's link is back, as [`BrokerHandler::on_link_restored`].
    pub fn on_link_restored(&self) {
        if let Some(handler) = self.0.get().and_then(Weak::upgrade) {
            handler.on_link_restored();
        }
    }
}

/// A new epoch: 8 random alphanumerics, enough that two histories of one channel never share
/// one by chance.
pub fn new_epoch() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}
