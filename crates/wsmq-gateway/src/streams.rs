//! The node's SSE streams, by user: where an HTTP ack (`POST /api/ack`, `/api/nack`, or one
//! relayed from another node) finds the queue subscription that holds the message.
//!
//! A stream registers the command mailbox of each of its queue subscriptions once they have
//! started and unregisters when it ends; a mailbox whose subscription ended meanwhile refuses
//! the command, which then counts as "not held here".

use std::{collections::HashMap, sync::Mutex};

use wsmq_proto::QueueName;

use crate::{command::Command, mailbox};

/// One stream's queue subscriptions, by queue.
type Queues = Vec<(QueueName, mailbox::Sender<Command>)>;

/// Open SSE streams by user, then by session number.
#[derive(Default)]
pub(crate) struct StreamRegistry {
    by_user: Mutex<HashMap<String, Vec<(u64, Queues)>>>,
}

impl StreamRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(u64, Queues)>>> {
        // A panic while holding it leaves a map that is still whole: keep using it.
        self.by_user.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers session `n` of `user` with the command mailboxes of its queue subscriptions.
    pub(crate) fn add(&self, user: &str, n: u64, queues: Queues) {
        self.lock()
            .entry(user.to_owned())
            .or_default()
            .push((n, queues));
    }

    /// Forgets session `n` of `user`.
    pub(crate) fn remove(&self, user: &str, n: u64) {
        let mut by_user = self.lock();
        if let Some(streams) = by_user.get_mut(user) {
            streams.retain(|(m, _)| *m != n);
            if streams.is_empty() {
                by_user.remove(user);
            }
        }
    }

    /// The command mailboxes of `user`'s subscriptions to `queue`, oldest stream first.
    pub(crate) fn subscriptions(&self, user: &str, queue: &str) -> Vec<mailbox::Sender<Command>> {
        self.lock()
            .get(user)
            .into_iter()
            .flatten()
            .flat_map(|(_, queues)| queues.iter())
            .filter(|(q, _)| q.as_str() == queue)
            .map(|(_, tx)| tx.clone())
            .collect()
    }
}
