//! The backends behind the gateway, as three object-safe interfaces that an engine implements.
//!
//! - [`QueueStore`]: queue storage and delivery: ensure, batched receive, ack, release (nack),
//!   send, and wake-ups when a queue may have become receivable.
//! - [`Broker`]: broadcast channels across nodes: publish, and the node's interest in a
//!   channel (subscribe/unsubscribe). What arrives is handed to the [`BrokerHandler`] the node
//!   gave the broker at [`Broker::start`]; the broker owns no local subscribers.
//! - [`ClusterState`]: what all nodes share besides messages: the access-token registry,
//!   revocations and node heartbeats.
//! - [`Presence`]: who is subscribed to which channel on every node, with expiring
//!   memberships and join/leave announcements (default methods refuse, for engines without).
//!
//! [`Engine`] bundles one of each, chosen at start: [`redis::RedisEngine`] implements all four
//! over one Redis shared by every node, [`memory::MemoryEngine`] all four in one process. A
//! future engine may implement some parts and take the others from another engine. See
//! `docs/architecture.md` for how the parts meet the node.
//!
//! Names arrive already validated (the session layer parses them with `wsmq-proto`), which is
//! why the interfaces take plain `&str`. No engine module knows about WebSockets.

pub mod amqp;
mod broker;
mod cluster;
pub mod interest;
pub mod memory;
mod presence;
mod queues;
pub mod redis;

use std::{fmt, sync::Arc};

pub use self::{
    broker::{
        Broker, BrokerHandler, HandlerSlot, HistoryEntry, HistoryPage, HistoryPolicy, HistoryRange,
        Position, Published, new_epoch,
    },
    cluster::{ClusterState, CredentialCheck, CredentialChecks, CredentialQuery, Revocation},
    interest::InterestGuard,
    presence::{Announcement, Membership, Presence, PresenceChanges, PresenceList},
    queues::{
        DeadCounts, DeadLettered, Held, Listening, QueueMessage, QueueRules, QueueStore,
        QueueWatch, Received,
    },
};

/// The parts of one engine, as the gateway holds them.
#[derive(Clone)]
pub struct Engine {
    /// A short name for logs and metrics (`redis`, `memory`).
    pub kind: &'static str,
    /// Queues.
    pub queues: Arc<dyn QueueStore>,
    /// Channels across nodes.
    pub broker: Arc<dyn Broker>,
    /// Tokens, revocations, heartbeats.
    pub cluster: Arc<dyn ClusterState>,
    /// Who is subscribed to which channel, on every node.
    pub presence: Arc<dyn Presence>,
}

impl Engine {
    /// An engine whose parts are one object.
    pub fn whole<E>(kind: &'static str, engine: Arc<E>) -> Engine
    where
        E: QueueStore + Broker + ClusterState + Presence,
    {
        Engine {
            kind,
            queues: engine.clone(),
            broker: engine.clone(),
            cluster: engine.clone(),
            presence: engine,
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Engine({})", self.kind)
    }
}

/// Why an engine operation failed; maps onto the wire codes `not_found`, `invalid`,
/// `too_large`, `unavailable` and `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The queue does not exist.
    #[error("queue not found")]
    QueueNotFound,
    /// The request was refused by the engine (bad name, out-of-range number, …).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The message is longer than the queue's maxsize.
    #[error("message too long")]
    TooLarge,
    /// The backend could not be reached or failed transiently.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// The backend answered, but refused the command or answered nonsense: data another
    /// writer left in a shape the queue cannot hold (a key of the wrong type), or a bug.
    /// Retrying will not help, and the backend is up: readiness does not depend on these.
    #[error("engine error: {0}")]
    Internal(String),
}

impl EngineError {
    /// Whether the backend could not be reached. An engine logs an outage once, so callers
    /// log these at debug level and keep warnings for the unexpected.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EngineError::Unavailable(_))
    }
}
