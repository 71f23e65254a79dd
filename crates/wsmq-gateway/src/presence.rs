//! The node's presence accounting: which local sessions are members of which channel, written
//! to the engine's [`Presence`] in batches, refreshed with the heartbeat, and the joins and
//! leaves the engine reports, announced once a second per channel.
//!
//! Each channel subscription of a session holds a [`PresenceGuard`]; dropping it (unsubscribe,
//! the session ending, a grant withdrawn) removes the membership, so it is removed exactly
//! once whatever ended it. Neither joining nor leaving waits for the engine: the change is
//! queued and the worker writes everything queued in one batch (a reconnect storm of 10,000
//! sessions is a handful of round trips, not 10,000). A change that fails to be written is
//! not retried: the next refresh writes every local membership again, and one that should
//! have been removed expires within [`TTL`] and is swept.
//!
//! A node that dies leaves its memberships behind; they expire [`TTL`] after its last
//! refresh, reads skip them from then on, and the sweep of the nodes still running (each
//! sweeps the channels it has members in, a bounded number per channel and round) removes
//! them and announces that their users left.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;
use tracing::debug;

use crate::{
    engine::{EngineError, Membership, Presence, PresenceChanges, PresenceList, new_epoch},
    shutdown::Shutdown,
};

/// How long a membership lives unless its node refreshes it: a dead node's members are gone
/// from reads within this.
pub(crate) const TTL: Duration = Duration::from_secs(15);
/// How often the node refreshes its memberships and sweeps expired ones: three times per
/// [`TTL`], so one missed refresh does not make live members flicker.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often joins and leaves are announced, per channel, coalesced.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Memberships per engine call when refreshing: a channel of 100,000 members on one node is
/// refreshed in ten calls, each a pipeline of bounded script calls.
const REFRESH_BATCH: usize = 10_000;
/// Most expired memberships one sweep removes per channel: a dead node's 100,000 members are
/// removed over a few rounds, none of which blocks Redis for long.
const SWEEP_MAX: usize = 5_000;

// A membership must be refreshed several times per ttl, or live members would flicker.
const _: () = assert!(REFRESH_EVERY.as_secs() * 2 < TTL.as_secs());

/// One membership change not written yet.
struct Change {
    channel: Arc<str>,
    id: u64,
    user: Arc<str>,
    add: bool,
}

/// Joined and left users of one channel since its last announcement, net: a user who joined
/// and left again in between is in neither.
#[derive(Default)]
struct Delta {
    joined: BTreeSet<String>,
    left: BTreeSet<String>,
}

impl Delta {
    fn join(&mut self, user: String) {
        if !self.left.remove(&user) {
            self.joined.insert(user);
        }
    }

    fn leave(&mut self, user: String) {
        if !self.joined.remove(&user) {
            self.left.insert(user);
        }
    }
}

#[derive(Default)]
struct State {
    /// channel → membership id → user: what this node refreshes.
    local: HashMap<Arc<str>, HashMap<u64, Arc<str>>>,
    /// Changes not written yet, in order.
    pending: Vec<Change>,
    /// Joins and leaves not announced yet, per channel.
    unannounced: HashMap<String, Delta>,
}

/// The node's memberships and their worker.
pub(crate) struct PresenceTracker {
    /// Where memberships are kept.
    engine: Arc<dyn Presence>,
    /// `{node}/{instance}`: with a membership's number, a session id unique across nodes and
    /// restarts (tests run several nodes with one node id).
    prefix: String,
    /// Numbers of memberships.
    next: AtomicU64,
    /// Local memberships, pending changes, unannounced joins and leaves.
    state: Mutex<State>,
    /// Woken when a change is queued.
    wake: Notify,
    /// One writer at a time (the worker, or a `presence` op that flushes first), so writes
    /// reach the engine in the order they were queued.
    writing: tokio::sync::Mutex<()>,
}

/// Keeps one membership; dropping it removes the membership.
pub(crate) struct PresenceGuard {
    tracker: Arc<PresenceTracker>,
    channel: Arc<str>,
    id: u64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut state = self.tracker.lock();
        let Some(members) = state.local.get_mut(&self.channel) else {
            return;
        };
        let Some(user) = members.remove(&self.id) else {
            return;
        };
        if members.is_empty() {
            state.local.remove(&self.channel);
        }
        state.pending.push(Change {
            channel: Arc::clone(&self.channel),
            id: self.id,
            user,
            add: false,
        });
        drop(state);
        self.tracker.wake.notify_one();
    }
}

impl PresenceTracker {
    /// A tracker for node `node_id` over `engine`'s presence.
    pub(crate) fn new(engine: Arc<dyn Presence>, node_id: &str) -> Arc<PresenceTracker> {
        Arc::new(PresenceTracker {
            engine,
            prefix: format!("{node_id}/{}", new_epoch()),
            next: AtomicU64::new(1),
            state: Mutex::default(),
            wake: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Makes `user` a member of `channel` until the guard is dropped.
    pub(crate) fn join(self: &Arc<Self>, channel: &str, user: &str) -> PresenceGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let channel: Arc<str> = Arc::from(channel);
        let user: Arc<str> = Arc::from(user);
        let mut state = self.lock();
        state
            .local
            .entry(Arc::clone(&channel))
            .or_default()
            .insert(id, Arc::clone(&user));
        state.pending.push(Change {
            channel: Arc::clone(&channel),
            id,
            user,
            add: true,
        });
        drop(state);
        self.wake.notify_one();
        PresenceGuard {
            tracker: Arc::clone(self),
            channel,
            id,
        }
    }

    /// The users on `channel`, on all nodes, after this node's pending changes are written
    /// (so a session sees itself right after subscribing).
    ///
    /// # Errors
    ///
    /// The engine's.
    pub(crate) async fn members(
        &self,
        channel: &str,
        limit: usize,
    ) -> Result<PresenceList, EngineError> {
        self.flush().await;
        self.engine.members(channel, limit).await
    }

    /// Starts the worker: writes queued changes as they come, refreshes and sweeps every
    /// [`REFRESH_EVERY`], announces every [`ANNOUNCE_EVERY`]. It stops with the node;
    /// [`PresenceTracker::flush`] after the drain writes what the closing sessions left.
    pub(crate) fn spawn(self: &Arc<Self>, shutdown: &Shutdown) {
        let this = Arc::clone(self);
        let token = shutdown.token.clone();
        shutdown.spawn(async move {
            let mut refresh = tokio::time::interval(REFRESH_EVERY);
            let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = this.wake.notified() => this.flush().await,
                    _ = refresh.tick() => this.refresh().await,
                    _ = announce.tick() => this.announce().await,
                }
            }
        });
    }

    /// Writes every queued change: one `add` and one `remove` call for the lot. A membership
    /// added and removed again before this is not written at all.
    pub(crate) async fn flush(&self) {
        let _writing = self.writing.lock().await;
        let pending = std::mem::take(&mut self.lock().pending);
        if pending.is_empty() {
            return;
        }
        let mut last: HashMap<(&str, u64), &Change> = HashMap::new();
        let mut order = Vec::new();
        for change in &pending {
            let key = (&*change.channel, change.id);
            match last.get(&key) {
                // Added and removed within the batch: nothing to write.
                Some(previous) if previous.add && !change.add => {
                    last.remove(&key);
                }
                _ => {
                    if last.insert(key, change).is_none() {
                        order.push(key);
                    }
                }
            }
        }
        let ids: Vec<(String, &Change)> = order
            .iter()
            .filter_map(|key| last.get(key))
            .map(|change| (self.session_id(change.id), *change))
            .collect();
        let members = |add: bool| -> Vec<Membership<'_>> {
            ids.iter()
                .filter(|(_, c)| c.add == add)
                .map(|(session, c)| Membership {
                    channel: &c.channel,
                    session,
                    user: &c.user,
                })
                .collect()
        };
        let (adds, removes) = (members(true), members(false));
        if !adds.is_empty() {
            let added = self.engine.add(&adds, TTL).await;
            self.record("add", added);
        }
        if !removes.is_empty() {
            let removed = self.engine.remove(&removes).await;
            self.record("remove", removed);
        }
    }

    /// Writes every local membership again (they live another [`TTL`]), then sweeps the
    /// expired memberships of the channels this node has members in.
    async fn refresh(&self) {
        let _writing = self.writing.lock().await;
        let (owned, channels) = {
            let state = self.lock();
            let owned: Vec<(Arc<str>, String, Arc<str>)> = state
                .local
                .iter()
                .flat_map(|(channel, members)| {
                    members.iter().map(|(id, user)| {
                        (Arc::clone(channel), self.session_id(*id), Arc::clone(user))
                    })
                })
                .collect();
            let channels: Vec<Arc<str>> = state.local.keys().cloned().collect();
            (owned, channels)
        };
        for batch in owned.chunks(REFRESH_BATCH) {
            let members: Vec<Membership<'_>> = batch
                .iter()
                .map(|(channel, session, user)| Membership {
                    channel,
                    session,
                    user,
                })
                .collect();
            let added = self.engine.add(&members, TTL).await;
            self.record("refresh", added);
        }
        let names: Vec<&str> = channels.iter().map(|c| &**c).collect();
        if !names.is_empty() {
            let swept = self.engine.sweep(&names, SWEEP_MAX).await;
            self.record("sweep", swept);
        }
    }

    /// Announces the joins and leaves gathered since the last announcement: one message per
    /// channel that had any.
    async fn announce(&self) {
        let deltas = std::mem::take(&mut self.lock().unannounced);
        for (channel, delta) in deltas {
            if delta.joined.is_empty() && delta.left.is_empty() {
                continue;
            }
            let joined: Vec<String> = delta.joined.into_iter().collect();
            let left: Vec<String> = delta.left.into_iter().collect();
            if let Err(err) = self.engine.announce(&channel, &joined, &left).await {
                debug!(channel, cause = %err, "presence announcement failed");
            }
        }
    }

    /// Keeps the joins and leaves an engine call reported, for the next announcement.
    fn record(&self, what: &str, result: Result<PresenceChanges, EngineError>) {
        match result {
            Ok(changes) => {
                let mut state = self.lock();
                for (channel, user) in changes.joined {
                    state.unannounced.entry(channel).or_default().join(user);
                }
                for (channel, user) in changes.left {
                    state.unannounced.entry(channel).or_default().leave(user);
                }
            }
            // Not retried: see the module docs.
            Err(err) => debug!(cause = %err, "presence {what} failed"),
        }
    }

    fn session_id(&self, id: u64) -> String {
        format!("{}/{id}", self.prefix)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;

    #[tokio::test]
    async fn a_membership_is_counted_while_its_guard_lives() {
        let engine = MemoryEngine::new();
        let tracker = PresenceTracker::new(engine.clone(), "n1");
        let a = tracker.join("room", "alice");
        let b = tracker.join("room", "alice");
        let c = tracker.join("room", "bob");
        let list = tracker.members("room", 10).await.unwrap();
        assert_eq!(
            list.users,
            vec![("alice".to_owned(), 2), ("bob".to_owned(), 1)]
        );
        drop((a, c));
        let list = tracker.members("room", 10).await.unwrap();
        assert_eq!(list.users, vec![("alice".to_owned(), 1)]);
        assert_eq!(list.total, 1);
        drop(b);
        assert_eq!(tracker.members("room", 10).await.unwrap().total, 0);
        // Each user joined once and left once, net of what was added and removed between.
        let state = tracker.lock();
        let delta = &state.unannounced["room"];
        assert!(delta.joined.is_empty() && delta.left.is_empty());
    }

    #[tokio::test]
    async fn joined_then_left_within_a_batch_is_never_written() {
        let engine = MemoryEngine::new();
        let tracker = PresenceTracker::new(engine.clone(), "n1");
        drop(tracker.join("room", "alice"));
        tracker.flush().await;
        assert!(tracker.lock().unannounced.is_empty());
    }
}
