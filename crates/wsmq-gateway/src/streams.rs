//! The node's SSE streams, by user: where an HTTP ack (`POST /api/ack`, `/api/nack`, or one
//! relayed from another node) finds the queue subscription that holds the message.
//!
//! [`AckRelay`] keeps the acks this node asked the other nodes to apply, until the node that
//! holds the message answers, or every node has said it does not.
//!
//! A stream registers the command mailbox of each of its queue subscriptions once they have
//! started and unregisters when it ends; a mailbox whose subscription ended meanwhile refuses
//! the command, which then counts as "not held here".

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::oneshot;
use wsmq_proto::QueueName;

use crate::{command::Command, error::GatewayError, mailbox};

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

/// What a relayed ack came to: `Some` outcome from the node that held the message, `None`
/// when every node said it holds none.
pub(crate) type RelayOutcome = Option<Result<(), GatewayError>>;

/// Ack requests sent to the other nodes, by number, waiting for their answers.
#[derive(Default)]
pub(crate) struct AckRelay {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

struct Pending {
    /// Where the outcome goes; taken when it is known.
    tx: oneshot::Sender<RelayOutcome>,
    /// How many nodes were asked, once the publish said so.
    asked: Option<u64>,
    /// How many said they do not hold it.
    not_held: u64,
}

impl AckRelay {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new request: its number, and where its outcome arrives.
    pub(crate) fn start(&self) -> (u64, oneshot::Receiver<RelayOutcome>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            tx,
            asked: None,
            not_held: 0,
        };
        self.lock().insert(n, pending);
        (n, rx)
    }

    /// Request `n` reached `asked` other nodes (answers may have come in already).
    pub(crate) fn asked(&self, n: u64, asked: u64) {
        let mut pending = self.lock();
        if let Some(p) = pending.get_mut(&n) {
            p.asked = Some(asked);
        }
        Self::settle_if_all_said_no(&mut pending, n);
    }

    /// A node answered request `n`: `Some` outcome when it held the message.
    pub(crate) fn answer(&self, n: u64, outcome: RelayOutcome) {
        let mut pending = self.lock();
        match outcome {
            Some(outcome) => {
                if let Some(p) = pending.remove(&n) {
                    let _ = p.tx.send(Some(outcome));
                }
            }
            None => {
                if let Some(p) = pending.get_mut(&n) {
                    p.not_held += 1;
                }
                Self::settle_if_all_said_no(&mut pending, n);
            }
        }
    }

    /// Gives up on request `n` (timed out).
    pub(crate) fn forget(&self, n: u64) {
        self.lock().remove(&n);
    }

    fn settle_if_all_said_no(pending: &mut HashMap<u64, Pending>, n: u64) {
        let done = pending
            .get(&n)
            .is_some_and(|p| p.asked.is_some_and(|asked| p.not_held >= asked));
        if done && let Some(p) = pending.remove(&n) {
            let _ = p.tx.send(None);
        }
    }
}
