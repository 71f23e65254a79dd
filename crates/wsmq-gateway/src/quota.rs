//! The per-user budget of queue creations on this node (`--queue-create-limit` an hour).
//!
//! Subscribing and publishing create a queue that is missing, and with `--open` or a
//! `queue:*` grant a user may name any queue: without a budget one client could fill Redis
//! with empty queues. Each user has a bucket of `limit` creations refilled at `limit` an hour;
//! a subscribe or publish that would create a queue with the bucket empty is refused with
//! `rate_limited`, while existing queues stay usable. Several nodes each keep their own
//! budget, and creations racing on one node may pass the budget by a few: it bounds the
//! growth, it is not an exact count.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// Users tracked before full buckets are forgotten (a full bucket is what a new user gets).
const PRUNE_AT: usize = 10_000;
/// The refill period of a whole bucket.
const PERIOD: Duration = Duration::from_secs(3600);

/// The budgets of every user who created queues recently.
#[derive(Debug)]
pub(crate) struct QueueQuota {
    /// Creations per [`PERIOD`] and size of each bucket; 0: unlimited.
    limit: u32,
    /// user → (creations left, last refill).
    users: Mutex<HashMap<String, (f64, Instant)>>,
}

impl QueueQuota {
    /// A budget of `limit` creations an hour per user (0: unlimited).
    pub(crate) fn new(limit: u32) -> QueueQuota {
        QueueQuota {
            limit,
            users: Mutex::default(),
        }
    }

    /// The configured limit; 0 when creations are not limited.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `user` may create a queue now.
    pub(crate) fn has_room(&self, user: &str) -> bool {
        self.limit == 0 || self.left(user, Instant::now()) >= 1.0
    }

    /// Counts one creation by `user`.
    pub(crate) fn spend(&self, user: &str) {
        if self.limit == 0 {
            return;
        }
        let now = Instant::now();
        let left = self.left(user, now);
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if users.len() >= PRUNE_AT {
            let full = f64::from(self.limit);
            users.retain(|_, (tokens, last)| refilled(*tokens, *last, now, full) < full);
        }
        users.insert(user.to_owned(), ((left - 1.0).max(0.0), now));
    }

    /// Creations `user` has left at `now`.
    fn left(&self, user: &str, now: Instant) -> f64 {
        let full = f64::from(self.limit);
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .get(user)
            .map_or(full, |&(tokens, last)| refilled(tokens, last, now, full))
    }
}

/// `tokens` at `last`, refilled at `full` per [`PERIOD`] until `now`, capped at `full`.
fn refilled(tokens: f64, last: Instant, now: Instant, full: f64) -> f64 {
    let elapsed = now.saturating_duration_since(last).as_secs_f64();
    (tokens + elapsed * full / PERIOD.as_secs_f64()).min(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_user_gets_the_limit_then_one_more_per_share_of_the_hour() {
        let quota = QueueQuota::new(3);
        for _ in 0..3 {
            assert!(quota.has_room("u"));
            quota.spend("u");
        }
        assert!(!quota.has_room("u"));
        assert!(quota.has_room("other"), "budgets are per user");
        tokio::time::advance(PERIOD / 3 + Duration::from_secs(1)).await;
        assert!(quota.has_room("u"));
        quota.spend("u");
        assert!(!quota.has_room("u"));
        let unlimited = QueueQuota::new(0);
        for _ in 0..1000 {
            unlimited.spend("u");
        }
        assert!(unlimited.has_room("u"));
    }
}
