//! The in-memory engine: one process, nothing durable, rsmq semantics.
//!
//! Used when no `--redis-url` is given, so `wsmq-gateway serve` works on a laptop without
//! Redis, and by the tests. It keeps rsmq's behaviour: a received message is hidden for the
//! queue's vt and its `rc` counts receives, delayed messages become visible later, several
//! consumers compete for one queue, deleting and changing visibility need the message to
//! exist. All time comes from `tokio::time`, so tests can pause and advance the clock.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use tokio::{
    sync::{Notify, broadcast},
    time::Instant,
};
use tracing::warn;
use wsmq_proto::{NodeHeartbeat, keys};

use super::{
    Broker, BrokerHandler, ClusterState, CredentialCheck, CredentialChecks, CredentialQuery,
    Engine, EngineError, HandlerSlot, InterestGuard, QueueMessage, QueueStore, QueueWatch,
    Received, Revocation,
};
use crate::clock;

/// The single-node, non-durable engine.
pub struct MemoryEngine {
    /// queue name → queue.
    queues: Mutex<HashMap<String, Arc<MemQueue>>>,
    /// user → registered access tokens (`wsmq:access:{user}`).
    access: Mutex<HashMap<String, HashSet<String>>>,
    /// user → revocation mark (Unix seconds) and when it expires (Unix seconds), as
    /// `wsmq:revoked:{user}` with its TTL.
    revoked: Mutex<HashMap<String, (u64, u64)>>,
    /// Revoked user ids, announced to every session of this process.
    revocations: broadcast::Sender<Revocation>,
    /// Channels the node subscribed to: a publication on one of them reached "one node".
    channels: Mutex<HashSet<String>>,
    /// The node's channel hub, fed with every publication.
    handler: HandlerSlot,
    /// Wall clock at creation, Unix ms; with `origin` gives a clock that follows tokio time.
    epoch_ms: u64,
    /// tokio instant at creation.
    origin: Instant,
    /// Last id timestamp handed out, µs: ids strictly increase, so messages sent in the same
    /// millisecond keep their order (rsmq gets that from Redis `TIME` in µs).
    last_id_us: AtomicU64,
}

/// One queue.
struct MemQueue {
    /// Messages and their visibility index.
    state: Mutex<QueueState>,
    /// Woken when a message is sent without delay.
    notify: Arc<Notify>,
}

#[derive(Default)]
struct QueueState {
    /// id → message.
    messages: HashMap<String, MemMessage>,
    /// (visible at ms, id): what rsmq keeps in the queue's ZSET.
    visible: BTreeSet<(u64, String)>,
    /// Visibility timeout, seconds.
    vt: u64,
    /// Longest body, in rsmq's units ([`wsmq_rsmq::message_length`]); -1: no limit.
    maxsize: i64,
}

struct MemMessage {
    body: String,
    rc: u64,
    sent: u64,
    visible_at: u64,
}

impl MemoryEngine {
    /// A fresh, empty engine. Logs that it is single-node and not durable.
    pub fn new() -> Arc<MemoryEngine> {
        warn!("in-memory engine: single node, nothing is durable; use --redis-url for production");
        Arc::new(MemoryEngine {
            queues: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
            revoked: Mutex::default(),
            revocations: broadcast::channel(64).0,
            channels: Mutex::default(),
            handler: HandlerSlot::default(),
            epoch_ms: clock::unix_millis(),
            origin: Instant::now(),
            last_id_us: AtomicU64::new(0),
        })
    }

    /// Registers an access token for `user`, as `wsmq-cli token issue` does in Redis.
    pub fn register_access_token(&self, user: &str, token: &str) {
        let mut access = self.access.lock().expect("access registry poisoned");
        access
            .entry(user.to_owned())
            .or_default()
            .insert(token.to_owned());
    }

    /// Revokes `user` as `wsmq-cli token revoke` does in Redis: forgets the user's access
    /// tokens, marks every JWT issued until now as revoked, and closes the user's sessions.
    pub fn revoke(&self, user: &str) {
        self.revoke_quietly(user);
        let _ = self.revocations.send(Revocation::User(user.to_owned()));
    }

    /// [`MemoryEngine::revoke`] without the announcement, as when it is lost on its way to a
    /// node: only the records change (for tests of the checks that do not rely on it).
    pub fn revoke_quietly(&self, user: &str) {
        self.access
            .lock()
            .expect("access registry poisoned")
            .remove(user);
        let now = clock::unix_secs();
        let mut revoked = self.revoked.lock().expect("revocation marks poisoned");
        let mark = revoked
            .get(user)
            .filter(|(_, expires)| *expires > now)
            .map_or(now, |(mark, _)| now.max(*mark));
        revoked.insert(user.to_owned(), (mark, now + keys::REVOCATION_TTL_SECS));
    }

    /// This engine as the gateway holds it.
    pub fn engine(self: &Arc<Self>) -> Engine {
        Engine::whole("memory", Arc::clone(self))
    }

    /// Creates the queue if needed and sends a message now, without a future (for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn send_now_for_tests(&self, queue: &str, body: &str) -> String {
        self.ensure(queue);
        self.send_now(queue, body, None).expect("the queue exists")
    }

    /// Number of messages in a queue, visible or not (for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn queue_len(&self, queue: &str) -> usize {
        self.queue(queue).map_or(0, |q| {
            q.state.lock().expect("queue poisoned").messages.len()
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch_ms + self.origin.elapsed().as_millis() as u64
    }

    fn queue(&self, name: &str) -> Option<Arc<MemQueue>> {
        self.queues
            .lock()
            .expect("queue registry poisoned")
            .get(name)
            .cloned()
    }

    fn existing(&self, name: &str) -> Result<Arc<MemQueue>, EngineError> {
        self.queue(name).ok_or(EngineError::QueueNotFound)
    }

    fn ensure(&self, name: &str) -> Arc<MemQueue> {
        let mut queues = self.queues.lock().expect("queue registry poisoned");
        Arc::clone(queues.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(MemQueue {
                state: Mutex::new(QueueState {
                    vt: wsmq_rsmq::DEFAULT_VT,
                    maxsize: wsmq_rsmq::DEFAULT_MAXSIZE,
                    ..QueueState::default()
                }),
                notify: Arc::new(Notify::new()),
            })
        }))
    }

    fn receive_now(
        &self,
        queue: &str,
        max: usize,
        vt: Option<u64>,
    ) -> Result<Received, EngineError> {
        let q = self.existing(queue)?;
        let now = self.now_ms();
        let mut state = q.state.lock().expect("queue poisoned");
        let vt_ms = vt.unwrap_or(state.vt) * 1000;
        let due: Vec<(u64, String)> = state
            .visible
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .cloned()
            .collect();
        let mut messages = Vec::with_capacity(due.len());
        for key in due {
            state.visible.remove(&key);
            let id = key.1;
            let msg = state
                .messages
                .get_mut(&id)
                .expect("index and messages agree");
            msg.rc += 1;
            msg.visible_at = now + vt_ms;
            messages.push(QueueMessage {
                id: id.clone(),
                body: msg.body.clone(),
                rc: msg.rc,
                sent: msg.sent,
            });
            state.visible.insert((now + vt_ms, id));
        }
        let next_visible = state
            .visible
            .iter()
            .find(|(at, _)| *at > now)
            .map(|(at, _)| Duration::from_millis(at - now));
        Ok(Received {
            messages,
            next_visible,
        })
    }

    fn send_now(&self, queue: &str, body: &str, delay: Option<u64>) -> Result<String, EngineError> {
        let q = self.existing(queue)?;
        let maxsize = q.state.lock().expect("queue poisoned").maxsize;
        if usize::try_from(maxsize).is_ok_and(|max| wsmq_rsmq::message_length(body) > max) {
            return Err(EngineError::TooLarge);
        }
        let now = self.now_ms();
        let us = now * 1000;
        let prev = self
            .last_id_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(last.max(us.saturating_sub(1)) + 1)
            })
            .unwrap_or(us);
        let id = wsmq_rsmq::new_message_id(prev.max(us.saturating_sub(1)) + 1);
        let delay = delay.unwrap_or(0);
        let visible_at = now + delay * 1000;
        {
            let mut state = q.state.lock().expect("queue poisoned");
            state.messages.insert(
                id.clone(),
                MemMessage {
                    body: body.to_owned(),
                    rc: 0,
                    sent: now,
                    visible_at,
                },
            );
            state.visible.insert((visible_at, id.clone()));
        }
        // Also for delayed messages, as rsmq's realtime publish: a sleeping consumer wakes,
        // receives nothing, and learns when to look again.
        q.notify.notify_waiters();
        Ok(id)
    }

    fn ack_now(&self, queue: &str, ids: &[String]) -> Result<u64, EngineError> {
        let q = self.existing(queue)?;
        let mut state = q.state.lock().expect("queue poisoned");
        let mut deleted = 0;
        for id in ids {
            if let Some(msg) = state.messages.remove(id) {
                state.visible.remove(&(msg.visible_at, id.clone()));
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn release_now(&self, queue: &str, ids: &[String], delay: u64) -> Result<u64, EngineError> {
        let q = self.existing(queue)?;
        let visible_at = self.now_ms() + delay * 1000;
        let mut state = q.state.lock().expect("queue poisoned");
        let mut released = 0;
        for id in ids {
            let Some(msg) = state.messages.get_mut(id) else {
                continue;
            };
            let old = std::mem::replace(&mut msg.visible_at, visible_at);
            state.visible.remove(&(old, id.clone()));
            state.visible.insert((visible_at, id.clone()));
            released += 1;
        }
        drop(state);
        if released > 0 {
            // Competing consumers learn the new visibility time (or take them at once).
            q.notify.notify_waiters();
        }
        Ok(released)
    }
}

impl QueueStore for MemoryEngine {
    fn ensure_queue<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        let existed = self.queue(queue).is_some();
        self.ensure(queue);
        futures_util::future::ready(Ok(!existed)).boxed()
    }

    fn queue_exists<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<bool, EngineError>> {
        futures_util::future::ready(Ok(self.queue(queue).is_some())).boxed()
    }

    fn receive<'a>(
        &'a self,
        queue: &'a str,
        max: usize,
        vt: Option<u64>,
    ) -> BoxFuture<'a, Result<Received, EngineError>> {
        futures_util::future::ready(self.receive_now(queue, max, vt)).boxed()
    }

    fn ack<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        futures_util::future::ready(self.ack_now(queue, ids)).boxed()
    }

    fn release<'a>(
        &'a self,
        queue: &'a str,
        ids: &'a [String],
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        futures_util::future::ready(self.release_now(queue, ids, delay_secs)).boxed()
    }

    fn send<'a>(
        &'a self,
        queue: &'a str,
        body: &'a str,
        delay: Option<u64>,
    ) -> BoxFuture<'a, Result<String, EngineError>> {
        futures_util::future::ready(self.send_now(queue, body, delay)).boxed()
    }

    fn watch_queue(&self, queue: &str) -> QueueWatch {
        // Sends notify in the same process, synchronously: listening from the start.
        QueueWatch {
            notify: Arc::clone(&self.ensure(queue).notify),
            listening: None,
            _guard: InterestGuard::none(),
        }
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

impl Broker for MemoryEngine {
    fn start(&self, handler: &Arc<dyn BrokerHandler>) {
        self.handler.set(handler);
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        // With one node, "nodes that received it" is 1 when this node listens.
        let listening = self
            .channels
            .lock()
            .expect("channels poisoned")
            .contains(channel);
        if listening {
            self.handler.on_publication(channel, body);
        }
        futures_util::future::ready(Ok(u64::from(listening))).boxed()
    }

    fn subscribe(&self, channel: &str) {
        let mut channels = self.channels.lock().expect("channels poisoned");
        channels.insert(channel.to_owned());
    }

    fn unsubscribe(&self, channel: &str) {
        self.channels
            .lock()
            .expect("channels poisoned")
            .remove(channel);
    }
}

impl ClusterState for MemoryEngine {
    fn check_credentials<'a>(
        &'a self,
        queries: &'a [CredentialQuery<'a>],
    ) -> BoxFuture<'a, Result<CredentialChecks, EngineError>> {
        let now = clock::unix_secs();
        let access = self.access.lock().expect("access registry poisoned");
        let mut revoked = self.revoked.lock().expect("revocation marks poisoned");
        revoked.retain(|_, (_, expires)| *expires > now);
        let checks = queries
            .iter()
            .map(|query| CredentialCheck {
                revoked_at: revoked.get(query.user).map(|(mark, _)| *mark),
                registered: query.access_token.map(|token| {
                    access
                        .get(query.user)
                        .is_some_and(|set| set.contains(token))
                }),
            })
            .collect();
        futures_util::future::ready(Ok(CredentialChecks { now, checks })).boxed()
    }

    fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.revocations.subscribe()
    }

    fn write_heartbeat<'a>(
        &'a self,
        _heartbeat: &'a NodeHeartbeat,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn remove_heartbeat<'a>(&'a self, _node_id: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}
