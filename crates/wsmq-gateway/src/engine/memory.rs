//! The in-memory engine: one process, nothing durable, rsmq semantics.
//!
//! Used when no `--redis-url` is given, so `wsmq-gateway serve` works on a laptop without
//! Redis, and by the tests. It keeps rsmq's behaviour: a received message is hidden for the
//! queue's vt and its `rc` counts receives, delayed messages become visible later, several
//! consumers compete for one queue, deleting and changing visibility need the message to
//! exist. The queue rules (max receives, ttl, dead-letter queue) apply as in the Redis
//! receive script. All time comes from `tokio::time`, so tests can pause and advance the
//! clock.
//!
//! Channel history is a ring buffer per channel with the Redis engine's semantics: offsets
//! count up within an epoch, the last `size` publications are kept, and the whole history
//! (and so its epoch) is forgotten `ttl` after the channel's last publication.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
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
    DeadCounts, DeadLettered, Engine, EngineError, HandlerSlot, Held, HistoryEntry, HistoryPage,
    HistoryPolicy, HistoryRange, InterestGuard, Position, Published, QueueMessage, QueueRules,
    QueueStore, QueueWatch, Received, Revocation, new_epoch,
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
    /// channel → its history, for channels with history that were published to or read.
    histories: Mutex<HashMap<String, History>>,
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
    /// Max receives, ttl and dead-letter queue.
    rules: QueueRules,
    /// Messages taken out as dead over the queue's life (`totaldead`).
    totaldead: u64,
}

/// Dead messages on their way out of a queue: id, body and send time.
type DeadMessages = Vec<(String, String, u64)>;

/// One channel's history: a ring buffer of its last publications.
struct History {
    /// Changes when the history is dropped (expired).
    epoch: Arc<str>,
    /// Offset of the latest publication; 0 before the first.
    top: u64,
    /// The last publications, oldest first, at most the policy's size.
    entries: VecDeque<HistoryEntry>,
    /// When the history is forgotten: `ttl` after the last publication (or the read that
    /// created it).
    expires: Instant,
}

impl History {
    fn new(ttl: Duration) -> History {
        History {
            epoch: new_epoch().into(),
            top: 0,
            entries: VecDeque::new(),
            expires: Instant::now() + ttl,
        }
    }
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
            histories: Mutex::default(),
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

    /// Sets a queue's vt, creating it if needed (for tests; the gateway never changes it).
    #[cfg(any(test, feature = "test-util"))]
    pub fn set_vt_for_tests(&self, queue: &str, vt: u64) {
        self.ensure(queue).state.lock().expect("queue poisoned").vt = vt;
    }

    /// The queue's `totaldead` counter (for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn totaldead(&self, queue: &str) -> u64 {
        self.queue(queue)
            .map_or(0, |q| q.state.lock().expect("queue poisoned").totaldead)
    }

    /// Number of messages in a queue, visible or not (for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn queue_len(&self, queue: &str) -> usize {
        self.queue(queue).map_or(0, |q| {
            q.state.lock().expect("queue poisoned").messages.len()
        })
    }

    /// Forgets channel `channel`'s history, as if it had expired (for tests).
    #[cfg(any(test, feature = "test-util"))]
    pub fn drop_history_for_tests(&self, channel: &str) {
        self.histories
            .lock()
            .expect("histories poisoned")
            .remove(channel);
    }

    /// Runs `f` on the live history of `channel` (a new one when it expired or never was),
    /// under the history lock.
    fn with_history<T>(
        &self,
        channel: &str,
        ttl: Duration,
        f: impl FnOnce(&mut History) -> T,
    ) -> T {
        let mut histories = self.histories.lock().expect("histories poisoned");
        let now = Instant::now();
        // Reads of channels nobody publishes to create histories too: sweep the expired ones
        // now and then, so their number stays bounded by what lives within a ttl.
        if histories.len() >= 1024 && histories.len().is_power_of_two() {
            histories.retain(|_, h| h.expires > now);
        }
        let history = histories
            .entry(channel.to_owned())
            .or_insert_with(|| History::new(ttl));
        if history.expires <= now {
            *history = History::new(ttl);
        }
        f(history)
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
        self.ensure_with(name, &QueueRules::default()).0
    }

    /// The queue, created with `rules` if missing; and whether it was.
    fn ensure_with(&self, name: &str, rules: &QueueRules) -> (Arc<MemQueue>, bool) {
        let mut queues = self.queues.lock().expect("queue registry poisoned");
        if let Some(q) = queues.get(name) {
            return (Arc::clone(q), false);
        }
        let q = Arc::new(MemQueue {
            state: Mutex::new(QueueState {
                vt: wsmq_rsmq::DEFAULT_VT,
                maxsize: wsmq_rsmq::DEFAULT_MAXSIZE,
                rules: rules.clone(),
                ..QueueState::default()
            }),
            notify: Arc::new(Notify::new()),
        });
        queues.insert(name.to_owned(), Arc::clone(&q));
        (q, true)
    }

    /// Puts dead messages into the dead-letter queue `target` (created with the defaults if
    /// missing), ids, bodies and send times kept, visible now, never received. Called after
    /// the source queue's lock is released: no two queue locks are ever held at once.
    fn put_dead(&self, target: Option<&str>, dead: DeadMessages) {
        let Some(target) = target.filter(|_| !dead.is_empty()) else {
            return;
        };
        let q = self.ensure(target);
        let now = self.now_ms();
        {
            let mut state = q.state.lock().expect("queue poisoned");
            for (id, body, sent) in dead {
                state.visible.insert((now, id.clone()));
                let message = MemMessage {
                    body,
                    rc: 0,
                    sent,
                    visible_at: now,
                };
                if let Some(old) = state.messages.insert(id.clone(), message) {
                    state.visible.remove(&(old.visible_at, id));
                }
            }
        }
        q.notify.notify_waiters();
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
        // As the Redis script: dead messages are set aside and the batch goes on past them.
        let QueueRules {
            max_receives,
            ttl,
            ref dead_letter,
        } = state.rules;
        let mut counts = DeadCounts {
            dead_lettered: dead_letter.is_some(),
            ..DeadCounts::default()
        };
        let mut due: Vec<(u64, String)> = Vec::new();
        let mut dead_keys: Vec<(u64, String)> = Vec::new();
        for (at, id) in state.visible.iter().take_while(|(at, _)| *at <= now) {
            if due.len() == max {
                break;
            }
            let msg = &state.messages[id];
            if max_receives > 0 && msg.rc >= max_receives {
                counts.max_receives += 1;
                dead_keys.push((*at, id.clone()));
            } else if ttl > 0 && now.saturating_sub(msg.sent) > ttl * 1000 {
                counts.expired += 1;
                dead_keys.push((*at, id.clone()));
            } else {
                due.push((*at, id.clone()));
            }
        }
        let dead_letter = dead_letter.clone();
        let dead = take_dead(&mut state, dead_keys);
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
        drop(state);
        if dead.is_empty() {
            counts.dead_lettered = false;
        }
        self.put_dead(dead_letter.as_deref(), dead);
        Ok(Received {
            messages,
            next_visible,
            dead: counts,
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

    fn release_now(&self, queue: &str, held: &[Held], delay: u64) -> Result<u64, EngineError> {
        let q = self.existing(queue)?;
        let visible_at = self.now_ms() + delay * 1000;
        let mut state = q.state.lock().expect("queue poisoned");
        let mut released = 0;
        for Held { id, rc } in held {
            // Only while this receive holds it: a later receive has a higher rc.
            let Some(msg) = state.messages.get_mut(id).filter(|m| m.rc == *rc) else {
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

    fn dead_letter_now(&self, queue: &str, held: &[Held]) -> Result<DeadLettered, EngineError> {
        let q = self.existing(queue)?;
        let mut state = q.state.lock().expect("queue poisoned");
        let keys = held
            .iter()
            .filter_map(|Held { id, rc }| {
                let msg = state.messages.get(id).filter(|m| m.rc == *rc)?;
                Some((msg.visible_at, id.clone()))
            })
            .collect();
        let dead = take_dead(&mut state, keys);
        let target = state.rules.dead_letter.clone();
        drop(state);
        let outcome = DeadLettered {
            count: dead.len() as u64,
            moved: target.is_some() && !dead.is_empty(),
        };
        self.put_dead(target.as_deref(), dead);
        Ok(outcome)
    }
}

/// Removes the messages at `keys` (visible at, id) from the queue and counts them in
/// `totaldead`; returns their ids, bodies and send times.
fn take_dead(state: &mut QueueState, keys: Vec<(u64, String)>) -> DeadMessages {
    let mut dead = Vec::with_capacity(keys.len());
    for key in keys {
        state.visible.remove(&key);
        if let Some(msg) = state.messages.remove(&key.1) {
            dead.push((key.1, msg.body, msg.sent));
        }
    }
    state.totaldead += dead.len() as u64;
    dead
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

    fn create_queue<'a>(
        &'a self,
        queue: &'a str,
        rules: &'a QueueRules,
    ) -> BoxFuture<'a, Result<bool, EngineError>> {
        let created = rules
            .validate(queue)
            .map(|()| self.ensure_with(queue, rules).1);
        futures_util::future::ready(created).boxed()
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
        held: &'a [Held],
        delay_secs: u64,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        futures_util::future::ready(self.release_now(queue, held, delay_secs)).boxed()
    }

    fn dead_letter<'a>(
        &'a self,
        queue: &'a str,
        held: &'a [Held],
    ) -> BoxFuture<'a, Result<DeadLettered, EngineError>> {
        futures_util::future::ready(self.dead_letter_now(queue, held)).boxed()
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

    fn publish_with_history<'a>(
        &'a self,
        channel: &'a str,
        body: &'a str,
        history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Published, EngineError>> {
        let sent = self.now_ms();
        let listening = self
            .channels
            .lock()
            .expect("channels poisoned")
            .contains(channel);
        // The handler runs under the history lock, so concurrent publishers hand their
        // publications over in offset order, as Redis does.
        let position = self.with_history(channel, history.ttl, |h| {
            h.top += 1;
            h.expires = Instant::now() + history.ttl;
            h.entries.push_back(HistoryEntry {
                offset: h.top,
                body: body.to_owned(),
                sent,
            });
            while h.entries.len() as u64 > history.size.max(1) {
                h.entries.pop_front();
            }
            let position = Position {
                offset: h.top,
                epoch: Arc::clone(&h.epoch),
            };
            if listening {
                self.handler.on_positioned(channel, body, &position);
            }
            position
        });
        futures_util::future::ready(Ok(Published {
            receivers: u64::from(listening),
            position: Some(position),
        }))
        .boxed()
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        history: HistoryPolicy,
        range: HistoryRange,
        limit: u64,
    ) -> BoxFuture<'a, Result<HistoryPage, EngineError>> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = self.with_history(channel, history.ttl, |h| {
            let entries: Vec<HistoryEntry> = match range {
                HistoryRange::After(after) => h
                    .entries
                    .iter()
                    .filter(|e| e.offset > after)
                    .take(limit)
                    .cloned()
                    .collect(),
                HistoryRange::Before(before) => {
                    let before = before.unwrap_or(u64::MAX);
                    let mut latest: Vec<HistoryEntry> = h
                        .entries
                        .iter()
                        .rev()
                        .filter(|e| e.offset < before)
                        .take(limit)
                        .cloned()
                        .collect();
                    latest.reverse();
                    latest
                }
            };
            HistoryPage {
                epoch: Arc::clone(&h.epoch),
                top: h.top,
                entries,
            }
        });
        futures_util::future::ready(Ok(page)).boxed()
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
