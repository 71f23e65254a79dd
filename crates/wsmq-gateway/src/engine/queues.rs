//! [`QueueStore`]: queue storage and delivery, the part of an engine that holds messages until
//! a client acknowledges them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::{EngineError, InterestGuard};

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
}

/// Queues: every call is one round trip to the backend, batches included.
pub trait QueueStore: Send + Sync + 'static {
    /// Creates the queue with default attributes unless it exists; `true` when it created it.
    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>>;

    /// Whether the queue exists (creating nothing).
    fn queue_exists<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>>;

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

    /// Makes received messages visible again after `delay_secs`; returns how many still
    /// existed. Used for nacks and to hand back what a subscription held in flight when it
    /// ends.
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

    /// Sends a message (visible after `delay` seconds) and wakes the queue's watchers on
    /// every node; returns its id.
    fn send<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
    ) -> BoxFuture<'a, Result<String, EngineError>>;

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
