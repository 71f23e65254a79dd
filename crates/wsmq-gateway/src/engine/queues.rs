//! [`QueueStore`]: queue storage and delivery, the part of an engine that holds messages until
//! a client acknowledges them.
//!
//! Besides rsmq's vt, delay and maxsize a queue has wsmq's own [`QueueRules`]: a receive never
//! hands out a message that was received `max_receives` times already or that is older than
//! `ttl`; it moves it to the `dead_letter` queue (or deletes it) in the same atomic step, and
//! says so in [`Received::dead`]. Every engine applies them the same way.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::Notify;

pub use wsmq_rsmq::{DeadCounts, DeadLettered};

use super::{EngineError, InterestGuard};

/// wsmq's own attributes of a queue (rsmq's are left at their defaults by the gateway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueRules {
    /// Receives after which a message is dead; 0: no limit.
    pub max_receives: u64,
    /// Seconds after its send at which a message is dead; 0: never.
    pub ttl: u64,
    /// Where dead messages go; `None`: they are deleted.
    pub dead_letter: Option<String>,
}

impl QueueRules {
    /// Checks the rules for queue `queue` as rsmq's create does: ranges, and a dead-letter
    /// queue that is a valid name other than the queue's own.
    ///
    /// # Errors
    ///
    /// [`EngineError::Invalid`] saying what is wrong.
    pub fn validate(&self, queue: &str) -> Result<(), EngineError> {
        let invalid = |err: wsmq_rsmq::RsmqError| EngineError::Invalid(err.to_string());
        if self.max_receives > wsmq_rsmq::MAX_RECEIVES {
            return Err(EngineError::Invalid(format!(
                "maxreceives must be between 0 and {}",
                wsmq_rsmq::MAX_RECEIVES
            )));
        }
        if self.ttl > wsmq_rsmq::MAX_SECONDS {
            return Err(EngineError::Invalid(format!(
                "ttl must be between 0 and {}",
                wsmq_rsmq::MAX_SECONDS
            )));
        }
        match self.dead_letter.as_deref() {
            None => Ok(()),
            Some(name) if name == queue => Err(invalid(wsmq_rsmq::RsmqError::InvalidDeadLetter(
                "it is the queue itself",
            ))),
            Some(name) => wsmq_rsmq::validate_queue_name(name).map_err(invalid),
        }
    }
}

/// A message as one receive handed it out. Releases and dead-letterings name messages this
/// way so that they apply only while that receive still holds the message: once its vt ran
/// out and another consumer received it (a higher `rc`), a late release of the first must not
/// make it visible again under the second (a third delivery).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Held {
    /// The message id.
    pub id: String,
    /// The `rc` that receive returned.
    pub rc: u64,
}

/// A message handed out by [`QueueStore::receive`]; hidden from other consumers for the vt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
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
    pub messages: Vec<QueueMessage>,
    /// Time until the next message of the queue that is still hidden (delayed or in flight)
    /// becomes visible, when the engine knows it. Lets a subscriber sleep exactly that long
    /// instead of polling.
    pub next_visible: Option<Duration>,
    /// Messages the receive took out as dead (or skipped as corrupt) instead of handing out.
    pub dead: DeadCounts,
}

/// Queues: every call is one round trip to the backend, batches included.
pub trait QueueStore: Send + Sync + 'static {
    /// Creates the queue with default attributes unless it exists; `true` when it created it.
    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// Whether the queue exists (creating nothing).
    fn queue_exists<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// Creates the queue with default rsmq attributes and these rules unless it exists (an
    /// existing queue keeps its own); returns whether it was created.
    fn create_queue<'a>(
        &'a self,
        queue: &'a str,
        rules: &'a QueueRules,
    ) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// Receives up to `max` visible messages, hiding them for `vt` seconds (the queue's vt
    /// when `None`).
    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        vt: Option<u64>,
    ) -> BoxFuture<'a, Result<Received, EngineError>>;

    /// Deletes messages; returns how many existed.
    fn ack<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Makes received messages visible again after `delay_secs`, each only while that receive
    /// still holds it (see [`Held`]); returns how many were. Used for nacks and to hand back
    /// what a subscription held in flight when it ends.
    fn release<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<u64, EngineError>>;

    /// Makes one received message visible again after `delay_secs`; `false` if that receive
    /// no longer holds it.
    fn nack<'a>(
        &'a self,
        queue: &'a str,
        held: &'a Held,
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        Box::pin(async move {
            let released = self
                .release(queue, std::slice::from_ref(held), delay_secs)
                .await?;
            Ok(released == 1)
        })
    }

    /// Takes received messages out of the queue now, each only while that receive still holds
    /// it: to the queue's dead-letter queue, or deleted when it has none (`nack` with
    /// `"dead": true`). Counted in the queue's `totaldead`.
    fn dead_letter<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
    ) -> BoxFuture<'a, Result<DeadLettered, EngineError>>;

    /// Sends a message (visible after `delay` seconds) and wakes the queue's watchers on
    /// every node; returns its id.
    fn send<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
    ) -> BoxFuture<'a, Result<String, EngineError>>;

    /// Sends as [`send`](Self::send) does, and returns only once `replicas` replicas of the
    /// backend hold the message, so that it survives a failover (Redis: `WAIT`). An engine
    /// without replicas to wait for refuses with [`EngineError::Invalid`].
    fn send_replicated<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
        replicas: u32,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        let _ = (queue, body, delay, replicas);
        async {
            Err(EngineError::Invalid(
                "`replicas` needs the Redis engine (--redis-url)".to_owned(),
            ))
        }
        .boxed()
    }

    /// Starts (or joins) watching the queue for wake-ups.
    fn watch_queue(&self, queue: &str) -> QueueWatch;

    /// Checks that the backend answers (readiness).
    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// Wake-ups for one queue: notified whenever a message may have become receivable.
///
/// Holding it keeps the engine listening for the queue's notifications; dropping the last one
/// for a queue stops that (for Redis: `UNSUBSCRIBE {ns}:rt:{q}`).
pub struct QueueWatch {
    /// Woken with `notify_waiters` on every notification of the queue.
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
    pub async fn wait_on(&self) {
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
