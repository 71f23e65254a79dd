//! The node's own broker channels, beside the clients' ones: where nodes ask one another to
//! apply an HTTP ack to a stream they hold (`acks::relay`).
//!
//! Their names start with `#`, which no [`wsmq_proto::ChannelName`] may contain, so no
//! client can subscribe to them, publish on them or collide with them. [`NodeHandler`] is
//! the broker handler of the node: publications of these channels go to the relay's inbox,
//! everything else to the channel hub.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::{
    engine::{BrokerHandler, Position},
    hub::ChannelHub,
};

/// Ack requests, to every node.
pub(crate) const ACK_REQUESTS: &str = "#sseack";
/// How many relay messages may wait for the relay's worker; past that they are dropped and
/// their requester times out (a flood of them is no reason to buffer without bound).
const INBOX: usize = 1024;

/// The channel on which `node` receives the answers to its ack requests.
pub(crate) fn ack_answers(node: &str) -> String {
    format!("{ACK_REQUESTS}.{node}")
}

/// A publication on one of the node's own channels: (channel, body).
pub(crate) type InternalMessage = (String, String);

/// The node's broker handler: its own channels to the relay, the rest to the hub.
pub(crate) struct NodeHandler {
    hub: Arc<ChannelHub>,
    inbox: mpsc::Sender<InternalMessage>,
}

impl NodeHandler {
    /// A handler for `hub`, and the inbox the relay's worker takes (once).
    pub(crate) fn new(hub: Arc<ChannelHub>) -> (NodeHandler, Inbox) {
        let (tx, rx) = mpsc::channel(INBOX);
        let inbox = Inbox(Mutex::new(Some(rx)));
        (NodeHandler { hub, inbox: tx }, inbox)
    }
}

/// The receiving end of the relay's messages, until its worker takes it.
pub(crate) struct Inbox(Mutex<Option<mpsc::Receiver<InternalMessage>>>);

impl Inbox {
    /// Takes the receiver (`None` once taken).
    pub(crate) fn take(&self) -> Option<mpsc::Receiver<InternalMessage>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl BrokerHandler for NodeHandler {
    fn on_publication(&self, channel: &str, body: &str) {
        if channel.starts_with('#') {
            let _ = self.inbox.try_send((channel.to_owned(), body.to_owned()));
        } else {
            self.hub.on_publication(channel, body);
        }
    }

    fn on_positioned(&self, channel: &str, body: &str, position: &Position) {
        self.hub.on_positioned(channel, body, position);
    }

    fn on_link_restored(&self) {
        self.hub.on_link_restored();
    }

    fn on_presence(&self, channel: &str, joined: &[String], left: &[String]) {
        self.hub.on_presence(channel, joined, left);
    }
}
