//! The changes of what the node listens to, waiting for the pub/sub task, coalesced per
//! channel.
//!
//! Sessions that subscribe and unsubscribe make the interest registries ask for `SUBSCRIBE`
//! and `UNSUBSCRIBE` commands. Queued one by one (as they were), a client looping subscribe /
//! unsubscribe grew the queue without bound and every other session's subscribe waited behind
//! its commands. Here only the latest wish per channel is kept, and a wish that undoes one not
//! yet sent cancels out, so what waits is bounded by the channels that changed (at most the
//! node's subscriptions plus those it is leaving), and the task sends everything that waits in
//! one `SUBSCRIBE` and one `UNSUBSCRIBE` (in chunks) per round trip, whoever asked.

use std::{
    collections::{HashMap, HashSet},
    mem,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::Notify;

use super::wake::QueueWake;

/// What the node should do about one channel.
#[derive(Debug)]
enum Wish {
    /// Subscribe; for a queue's realtime channel, the wake-up to mark listening once Redis
    /// confirmed.
    Subscribe(Option<Arc<QueueWake>>),
    /// Unsubscribe.
    Unsubscribe,
}

/// The wishes not yet sent, and what the connection is subscribed to.
#[derive(Debug, Default)]
struct State {
    /// channel → the latest wish not yet sent.
    wishes: HashMap<String, Wish>,
    /// Channels the current connection is subscribed to, or about to be (updated when a batch
    /// is taken, so a wish made while it is on its way is judged against it).
    subscribed: HashSet<String>,
}

/// Shared by the interest registries (which add wishes) and the pub/sub task (which takes
/// them).
#[derive(Debug, Default)]
pub(super) struct Changes {
    state: Mutex<State>,
    /// Wakes the task: a wish was added.
    pub(super) added: Notify,
}

/// One batch for the task: what to subscribe to (with the wake-ups to mark listening), what to
/// unsubscribe from, and wake-ups of channels already subscribed to (listening at once).
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) subscribe: Vec<String>,
    pub(super) wakes: Vec<Arc<QueueWake>>,
    pub(super) unsubscribe: Vec<String>,
    pub(super) already: Vec<Arc<QueueWake>>,
}

impl Batch {
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty() && self.already.is_empty()
    }
}

impl Changes {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first holder of `channel` appeared (`first`), or the last one left.
    pub(super) fn toggle(&self, channel: String, wake: Option<Arc<QueueWake>>, first: bool) {
        let mut state = self.lock();
        if first {
            state.wishes.insert(channel, Wish::Subscribe(wake));
        } else if state.subscribed.contains(&channel) {
            state.wishes.insert(channel, Wish::Unsubscribe);
        } else {
            // Never subscribed: leaving undoes the pending subscribe, and nothing is sent.
            state.wishes.remove(&channel);
        }
        drop(state);
        self.added.notify_one();
    }

    /// Takes every wish waiting, as one batch.
    pub(super) fn take(&self) -> Batch {
        let mut state = self.lock();
        let wishes = mem::take(&mut state.wishes);
        let mut batch = Batch::default();
        for (channel, wish) in wishes {
            match wish {
                Wish::Subscribe(wake) if state.subscribed.contains(&channel) => {
                    batch.already.extend(wake);
                }
                Wish::Subscribe(wake) => {
                    state.subscribed.insert(channel.clone());
                    batch.subscribe.push(channel);
                    batch.wakes.extend(wake);
                }
                Wish::Unsubscribe => {
                    if state.subscribed.remove(&channel) {
                        batch.unsubscribe.push(channel);
                    }
                }
            }
        }
        batch
    }

    /// A new connection subscribed to `channels`: that is what it holds now. Wishes still
    /// waiting are kept (they are judged against this).
    pub(super) fn connected(&self, channels: HashSet<String>) {
        self.lock().subscribed = channels;
    }

    /// Asks to unsubscribe from `channel` unless another wish for it waits (after a reconnect
    /// subscribed to a channel whose last holder left meanwhile).
    pub(super) fn drop_stale(&self, channel: &str) {
        let mut state = self.lock();
        if !state.wishes.contains_key(channel) && state.subscribed.contains(channel) {
            state.wishes.insert(channel.to_owned(), Wish::Unsubscribe);
            drop(state);
            self.added.notify_one();
        }
    }

    /// Wishes waiting (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().wishes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscribe_unsubscribe_loop_leaves_nothing_waiting() {
        let changes = Changes::default();
        for n in 0..10_000 {
            let channel = format!("c{n}");
            changes.toggle(channel.clone(), None, true);
            changes.toggle(channel, None, false);
        }
        assert_eq!(changes.waiting(), 0);
        assert!(changes.take().is_empty());
        // The same channel toggled while its subscribe is on its way: one unsubscribe waits.
        changes.toggle("x".into(), None, true);
        let batch = changes.take();
        assert_eq!(batch.subscribe, ["x"]);
        for _ in 0..1000 {
            changes.toggle("x".into(), None, false);
            changes.toggle("x".into(), None, true);
        }
        assert_eq!(changes.waiting(), 1);
        let batch = changes.take();
        assert!(batch.subscribe.is_empty() && batch.unsubscribe.is_empty());
        changes.toggle("x".into(), None, false);
        assert_eq!(changes.take().unsubscribe, ["x"]);
    }

    #[test]
    fn wishes_of_many_channels_go_in_one_batch() {
        let changes = Changes::default();
        for n in 0..100 {
            changes.toggle(format!("c{n}"), None, true);
        }
        let batch = changes.take();
        assert_eq!(batch.subscribe.len(), 100);
        changes.connected(HashSet::from(["c1".to_owned()]));
        changes.drop_stale("c1");
        changes.drop_stale("c2");
        assert_eq!(changes.take().unsubscribe, ["c1"]);
    }
}
