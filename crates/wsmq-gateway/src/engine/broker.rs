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

use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;

use super::EngineError;

/// What the node does with what the broker receives.
pub trait BrokerHandler: Send + Sync + 'static {
    /// A publication on `channel` arrived (from this node or another), for the local
    /// subscribers of the channel.
    fn on_publication(&self, channel: &str, body: &str);
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

    /// The node wants the channel's publications (its first local subscriber appeared).
    /// Calls for one channel come in the order the subscribers came and went.
    fn subscribe(&self, channel: &str);

    /// The node no longer wants the channel's publications (its last local subscriber left).
    fn unsubscribe(&self, channel: &str);
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
}
