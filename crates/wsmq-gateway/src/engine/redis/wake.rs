//! [`QueueWake`]: the wake-up of one queue with local consumers, shared by the pub/sub task
//! (which fires it and marks it listening) and the wishes waiting for that task ([`Changes`]).
//!
//! [`Changes`]: super::changes::Changes

use std::sync::Arc;

use tokio::sync::Notify;

use crate::engine::Listening;

/// The wake-up of one queue with local consumers, shared by all of them.
#[derive(Debug)]
pub(super) struct QueueWake {
    /// Woken with `notify_waiters` on each realtime notification of the queue.
    pub(super) notify: Arc<Notify>,
    /// Whether the node's `SUBSCRIBE` to the queue's realtime channel is in effect.
    pub(super) listening: Arc<Listening>,
}

impl QueueWake {
    /// Not listening yet: the `SUBSCRIBE` is still to be made.
    pub(super) fn new() -> QueueWake {
        QueueWake {
            notify: Arc::new(Notify::new()),
            listening: Arc::default(),
        }
    }
}
