//! The storage and messaging backend behind the gateway, as one object-safe trait.
//!
//! Two engines implement [`Engine`]: [`redis::RedisEngine`] (rsmq queues in Redis, pub/sub for
//! realtime wake-ups, channels and revocations; many nodes share it) and
//! [`memory::MemoryEngine`] (one process, nothing durable, same semantics). The gateway holds an
//! `Arc<dyn Engine>`, so every method returns a boxed future.
//!
//! Names arrive already validated (the session layer parses them with `wsmq-proto`), which is
//! why the trait takes plain `&str`.

pub mod interest;
pub mod memory;
pub mod redis;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, broadcast};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wsmq_proto::NodeHeartbeat;

pub use self::interest::InterestGuard;

/// A message handed out by [`Engine::receive`]; hidden from other consumers for the vt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The rsmq message id (32 chars).
    pub id: String,
    /// The message body.
    pub body: String,
    /// How many times it has been received, this time included.
    pub rc: u64,
    /// When it was sent, Unix milliseconds.
    pub sent: u64,
}

/// The result of one batched receive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    /// Up to `max` messages, oldest first.
    pub deliveries: Vec<Delivery>,
    /// Time until the next message of the queue that is still hidden (delayed or in flight)
    /// becomes visible, when the engine knows it. Lets a subscriber sleep exactly that long
    /// instead of polling.
    pub next_visible: Option<Duration>,
}

/// Wake-ups for one queue: notified whenever a message may have become receivable.
///
/// Holding it keeps the engine listening for the queue's realtime notifications; dropping the
/// last one for a queue stops that (for Redis: `UNSUBSCRIBE {ns}:rt:{q}`).
pub struct QueueWatch {
    /// Woken with `notify_waiters` on every realtime notification of the queue.
    pub notify: Arc<Notify>,
    /// `true` while the engine delivers the queue's notifications to `notify` (Redis: the
    /// node's `SUBSCRIBE {ns}:rt:{q}` is confirmed and its connection is up). `None` when
    /// that holds from the start, as in the in-memory engine.
    pub listening: Option<Arc<Listening>>,
    /// Keeps the node's interest in the queue alive.
    pub _guard: InterestGuard,
}

impl QueueWatch {
    /// Waits until the engine delivers the queue's notifications, for at most `limit`;
    /// returns whether it does. Immediate when the node already listens to the queue.
    ///
    /// A consumer calls this before its first receive: from then on, any message sent after
    /// that receive is announced to `notify`, so none waits for the poll. (Without it, a send
    /// between the first receive and the engine's `SUBSCRIBE` taking effect would.)
    pub async fn wait_listening(&mut self, limit: Duration) -> bool {
        let Some(listening) = &self.listening else {
            return true;
        };
        tokio::time::timeout(limit, listening.wait_on())
            .await
            .is_ok()
    }
}

/// Whether the engine delivers a queue's notifications, and a wake-up for those waiting for
/// it. One per queue with local consumers; a `watch` channel did the same in 344 bytes.
#[derive(Debug, Default)]
pub struct Listening {
    on: AtomicBool,
    /// Woken (all waiters) when `on` turns true.
    turned_on: Notify,
}

impl Listening {
    /// Sets the flag, waking the waiters when it turns on.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
        if on {
            self.turned_on.notify_waiters();
        }
    }

    /// Resolves once the flag is on.
    async fn wait_on(&self) {
        loop {
            // Registered before the check, so a `set(true)` in between is not missed.
            let turned_on = self.turned_on.notified();
            tokio::pin!(turned_on);
            turned_on.as_mut().enable();
            if self.on.load(Ordering::SeqCst) {
                return;
            }
            turned_on.await;
        }
    }
}

pub use crate::channels::{ChannelSubscription, FrameSink};

/// Why an engine operation failed; maps onto the wire codes `not_found`, `invalid`,
/// `unavailable` and `internal`.
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
}

impl EngineError {
    /// Whether the backend could not be reached. The Redis engine logs an outage once, so
    /// callers log these at debug level and keep warnings for the unexpected.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EngineError::Unavailable(_))
    }
}

/// What every engine offers the gateway. See the module docs.
pub trait Engine: Send + Sync + 'static {
    /// A short name for logs and metrics (`redis`, `memory`).
    fn kind(&self) -> &'static str;

    /// Creates the queue with default attributes unless it exists.
    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Receives up to `max` visible messages in one round trip, hiding them for `vt` seconds
    /// (the queue's vt when `None`).
    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        vt: Option<u64>,
    ) -> BoxFuture<'a, Result<Received, EngineError>>;

    /// Deletes messages in one round trip; returns how many existed.
    fn ack<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Makes received messages visible again after `delay_secs`, in one round trip; returns
    /// how many still existed. Used for nacks and to hand back what a subscription held in
    /// flight when it ends.
    fn release<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Makes one received message visible again after `delay_secs`; `false` if it is gone.
    fn nack<'a>(
        &'a self,
        queue: &'a str,
        id: &'a str,
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move {
            let ids = [id.to_owned()];
            Ok(self.release(queue, &ids, delay_secs).await? == 1)
        })
    }

    /// Sends a message (visible after `delay` seconds) and announces it on the realtime
    /// channel; returns its id.
    fn send<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
    ) -> BoxFuture<'a, Result<String, EngineError>>;

    /// Broadcasts on a channel to every node; returns how many nodes received it.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Starts (or joins) listening for the queue's realtime notifications.
    fn watch_queue(&self, queue: &str) -> QueueWatch;

    /// The node's local channel fan-out, which the engine feeds with channel messages.
    fn channels(&self) -> &crate::channels::ChannelHub;

    /// Subscribes `sink` locally to a channel (the node subscribes once per channel): it gets
    /// `first` (the subscribe's reply), then every message of the channel, encoded as a v1
    /// frame, until the subscription drops.
    fn subscribe_channel(
        &self,
        channel: &str,
        sink: FrameSink,
        first: Utf8Bytes,
    ) -> ChannelSubscription {
        self.channels().subscribe(channel, sink, first)
    }

    /// Whether `token` (hex) is registered for `user` (`wsmq:access:{user}`).
    fn is_access_token_registered<'a>(
        &'a self,
        user: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// User ids whose access was revoked, on any node, from now on.
    fn revocations(&self) -> broadcast::Receiver<String>;

    /// Checks that the backend answers (readiness).
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Writes this node's heartbeat with a TTL (no-op for a single-node engine).
    fn write_heartbeat<'a>(
        &'a self,
        heartbeat: &'a NodeHeartbeat,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// Removes this node's heartbeat on a clean shutdown.
    fn remove_heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
}

impl fmt::Debug for dyn Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Engine({})", self.kind())
    }
}
