//! Queue delivery: one task per (session, queue subscription).
//!
//! The task keeps up to `--window` messages in flight (delivered, not yet acknowledged) and
//! refills the window with ONE batched receive for all the free credit. When a receive comes
//! back short, the queue is empty for now and the task sleeps until the first of:
//!
//! - a realtime notification of the queue (a send on any node: `{ns}:rt:{q}`),
//! - the moment the next hidden or delayed message becomes visible, which the engine reports
//!   with the receive itself (so a delayed message arrives on time without polling),
//! - the poll interval (for publishers that send no realtime notification),
//! - a command from the session (an ack frees credit), or cancellation.
//!
//! No send is missed between a receive and the wait: the wake-up is armed before each
//! receive, and before the FIRST receive the task waits (briefly, bounded) until the engine
//! listens to the queue's notifications at all, which for Redis means the node's `SUBSCRIBE`
//! is confirmed. Otherwise a message sent in the few milliseconds between a new subscriber's
//! first receive and that `SUBSCRIBE` would wait for the poll.
//!
//! Acks are pipelined: the session forwards them without waiting, and the task deletes every
//! ack that has arrived by the time it looks in ONE batched delete, then answers each; nacks
//! that arrived with them go back in one batched visibility change per delay, sent together
//! with the delete.
//!
//! When Redis is unreachable the session stays open: a failed receive is retried after a
//! backoff (the poll interval, doubling up to [`RECEIVE_BACKOFF_MAX`]), and the engine wakes the
//! task as soon as it listens to Redis again, so delivery resumes without waiting the backoff
//! out. Failed acks and nacks are answered `unavailable`; their messages come back after the vt
//! (at-least-once) and stop counting against the window meanwhile.
//!
//! When the subscription ends (unsubscribe, disconnect, shutdown), it first applies what it was
//! already told: the acks and nacks the session forwarded before the end (a client that acks
//! and closes at once has them queued here), and the legacy deliveries the writer reports
//! written (it stops reporting when it stops writing). Only then are the messages still in
//! flight made visible again, in one call, so a reconnecting client or another node gets them
//! right away with `rc` incremented; if that fails they reappear after the vt anyway. Both
//! steps are bounded in time, so a dead Redis or a stuck socket cannot hold the shutdown.

mod commands;

use std::{collections::HashMap, pin::pin, sync::Arc, time::Duration};

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wsmq_proto::{MessageId, QueueName, encode_queue_message, legacy};

pub(crate) use crate::command::{Command, ReplyTo};
use crate::{
    engine::{QueueMessage, QueueWatch},
    mailbox,
    outbound::{Dialect, OutFrame, Outbound, Payload, WriteReport},
    state::Gateway,
};

/// How many session commands may wait for a subscription task (backpressure on the reader).
const COMMAND_BUFFER: usize = 256;
/// How long the end of a subscription may spend applying the acks, nacks and written reports
/// queued before it; what is left then is released with the rest.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long releasing in-flight messages may take at the end of a subscription.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a new subscription waits for the engine to listen to its queue before the first
/// receive (never longer than the poll interval, which would catch up anyway). Normally one
/// round trip, or nothing when the node already listens; this bound only matters while the
/// pub/sub connection is down.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest wait between two receives that failed (Redis down): the wait starts at the poll
/// interval and doubles up to this (or the poll interval, if longer). Recovery does not wait
/// for it: the engine wakes every consumer once it listens to Redis again.
const RECEIVE_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Most ids kept in [`DeliveryTask::unsettled`]; past that they are forgotten (their messages
/// reappear after the vt all the same).
const UNSETTLED_MAX: usize = 4096;

/// The session's end of a running subscription. Dropping it (or cancelling) ends the task,
/// which still applies the commands sent before (see the module docs).
#[derive(Debug)]
pub(crate) struct QueueSubscription {
    /// Ack and nack requests.
    pub commands: mailbox::Sender<Command>,
    /// Cancels the task (a child of the session's token).
    pub cancel: CancellationToken,
}

impl Drop for QueueSubscription {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The next written report; never resolves without a report channel (v1).
async fn next_written(written: &mut Option<mailbox::Receiver<String>>) -> Option<String> {
    match written {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts delivering `queue` to a session. The queue must exist.
pub(crate) fn spawn(
    gateway: &Arc<Gateway>,
    queue: QueueName,
    dialect: Dialect,
    out: Outbound,
    session_cancel: &CancellationToken,
) -> QueueSubscription {
    let (commands, command_rx) = mailbox::channel(COMMAND_BUFFER);
    // Only legacy deliveries are reported back once written; v1 sessions, most of them idle
    // much of the time, do not pay for a channel they never use.
    let (written_tx, written) = match dialect {
        Dialect::Legacy => {
            // Never full: what is reported is bounded by the window anyway, and the writer
            // must not wait. A mailbox rather than tokio's unbounded channel, which keeps a
            // 32-slot block per idle legacy subscription.
            let (tx, rx) = mailbox::channel(usize::MAX);
            (Some(tx), Some(rx))
        }
        Dialect::V1 => (None, None),
    };
    let cancel = session_cancel.child_token();
    let session_deliveries = out.deliveries.clone();
    let task = DeliveryTask {
        gateway: Arc::clone(gateway),
        queue,
        dialect,
        out,
        commands: command_rx,
        written_tx,
        written,
        cancel: cancel.clone(),
        in_flight: HashMap::new(),
        unsettled: HashMap::new(),
    };
    // Tracked for the node's drain and the session's: both wait for the acks of what is in
    // flight.
    let run = session_deliveries.track_future(gateway.shutdown.deliveries.track_future(task.run()));
    gateway.shutdown.spawn(run);
    QueueSubscription { commands, cancel }
}

/// The state of one subscription.
struct DeliveryTask {
    /// Engine, config and metrics.
    gateway: Arc<Gateway>,
    /// The queue consumed.
    queue: QueueName,
    /// How deliveries are encoded, and whether they are acked on write (legacy).
    dialect: Dialect,
    /// The session's outbound frames.
    out: Outbound,
    /// Acks and nacks from the session.
    commands: mailbox::Receiver<Command>,
    /// Cloned into legacy deliveries so the writer can report them written. Dropped at the
    /// end, so that `written` closes once the writer holds no more of our deliveries.
    written_tx: Option<mailbox::Sender<String>>,
    /// Ids of legacy deliveries that reached the socket (to delete); `None` for v1.
    written: Option<mailbox::Receiver<String>>,
    /// Ends the task.
    cancel: CancellationToken,
    /// Delivered, not yet acknowledged: id → the rc of that delivery, which is how a release
    /// or nack names the receive it gives back (a later receive elsewhere has a higher rc).
    in_flight: HashMap<String, u64>,
    /// Delivered, and an ack or nack of them failed (Redis unreachable): no longer counted
    /// against the window, since they reappear after the vt and may go to another consumer,
    /// but the client may still ack them. A later receipt moves an id back to `in_flight`.
    /// Not released at the end, for the same reason. Kept with their rc, as `in_flight`.
    unsettled: HashMap<String, u64>,
}

impl DeliveryTask {
    async fn run(mut self) {
        let gateway = Arc::clone(&self.gateway);
        let mut watch = gateway.engine.queues.watch_queue(self.queue.as_str());
        gateway.metrics.subscriptions.inc();
        let limit = LISTEN_TIMEOUT.min(gateway.config.engine.poll_interval);
        let listening = tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            listening = watch.wait_listening(limit) => Some(listening),
        };
        if let Some(listening) = listening {
            if !listening {
                debug!(queue = %self.queue, "not yet listening to the queue's notifications; receiving anyway");
            }
            self.deliver(&watch).await;
        }
        // Boxed: an idle subscription's task is sized by its largest state, and the ending
        // states would otherwise make every subscription pay for them all along.
        Box::pin(self.finish_queued()).await;
        // Stop watching before handing messages back: an engine whose consumer pushes
        // messages (RabbitMQ) then stops pushing to this node, rather than taking them back
        // at once and counting a delivery nobody saw.
        drop(watch);
        Box::pin(self.release()).await;
        gateway.metrics.subscriptions.dec();
    }

    /// The delivery loop (see the module docs), until cancelled or the session is gone.
    async fn deliver(&mut self, watch: &QueueWatch) {
        let gateway = Arc::clone(&self.gateway);
        let config = &gateway.config;
        // One wake-up future, re-armed before each receive and kept armed across everything
        // else, so a notification that arrives while an ack is being deleted is not lost.
        let mut notified = pin!(watch.notify.notified());
        // `true` while the queue may hold messages we have not tried to take.
        let mut may_have_more = true;
        let mut deadline = Instant::now() + config.engine.poll_interval;
        // Receives failed in a row: the backoff grows with them, and only the first of a run
        // may be logged above debug level.
        let mut failures = 0u32;
        let drain = gateway.shutdown.drain_started.clone();
        loop {
            // Draining: take no new messages, and end once the client has acked (or, legacy,
            // been written) everything in flight; the drain deadline ends the rest.
            let draining = drain.is_cancelled();
            if draining && self.in_flight.is_empty() {
                break;
            }
            let credit = if draining {
                0
            } else {
                config.limits.window.saturating_sub(self.in_flight.len())
            };
            if credit > 0 && may_have_more {
                // Armed before the receive, so a send between the receive and the wait still
                // wakes us.
                notified.set(watch.notify.notified());
                notified.as_mut().enable();
                match gateway
                    .engine
                    .queues
                    .receive(self.queue.as_str(), credit, None)
                    .await
                {
                    Ok(received) => {
                        if failures > 0 {
                            debug!(queue = %self.queue, failures, "receiving again");
                            failures = 0;
                        }
                        gateway.metrics.dead_messages(&received.dead);
                        let got = received.messages.len();
                        for message in received.messages {
                            if !self.forward(message) {
                                self.cancel.cancel();
                            }
                        }
                        // A full batch means more may be waiting; a short one emptied the queue.
                        may_have_more = got == credit;
                        let mut wait = config.engine.poll_interval;
                        if let Some(next) = received.next_visible {
                            wait = wait.min(next);
                        }
                        deadline = Instant::now() + wait;
                    }
                    Err(err) => {
                        let queue = self.queue.as_str();
                        let again = failures > 0;
                        gateway.metrics.engine_failed("receive", queue, &err, again);
                        let backoff = receive_backoff(config.engine.poll_interval, failures);
                        failures = failures.saturating_add(1);
                        may_have_more = false;
                        deadline = Instant::now() + backoff;
                    }
                }
                if may_have_more && !self.cancel.is_cancelled() {
                    // Take any acks that came in meanwhile, then receive again.
                    Box::pin(self.take_pending()).await;
                    continue;
                }
            }
            let receiving = credit > 0;
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                () = drain.cancelled(), if !draining => {}
                command = self.commands.recv() => match command {
                    Some(command) => {
                        let was_full = self.in_flight.len() >= config.limits.window;
                        // Boxed here and below: their state is needed while a batch is
                        // applied, not by every idle subscription for its whole life.
                        let nacked = Box::pin(self.handle_commands(command)).await;
                        // A nacked message is visible again now or later: receive to take it
                        // or to learn when.
                        may_have_more |= nacked || (was_full && self.in_flight.len() < config.limits.window);
                    }
                    None => break,
                },
                Some(id) = next_written(&mut self.written) => {
                    let was_full = self.in_flight.len() >= config.limits.window;
                    Box::pin(self.handle_written(id)).await;
                    may_have_more |= was_full && self.in_flight.len() < config.limits.window;
                }
                () = notified.as_mut(), if receiving => may_have_more = true,
                () = sleep_until(deadline), if receiving => may_have_more = true,
            }
        }
    }

    /// Queues one delivery for the socket; `false` if the session is gone or too slow.
    ///
    /// The message counts as in flight either way, so that the end of the subscription
    /// releases it.
    fn forward(&mut self, message: QueueMessage) -> bool {
        let QueueMessage { id, body, rc, sent } = message;
        self.unsettled.remove(&id);
        if rc > 1 {
            self.gateway.metrics.redeliveries.inc();
        }
        // The id moves into `in_flight`; only legacy, which reports it back once written,
        // needs a second copy.
        let (text, ack_on_write) = match self.dialect {
            Dialect::V1 => {
                let Ok(id) = MessageId::new(id) else {
                    warn!(queue = %self.queue, "skipping a message with an invalid id");
                    return true;
                };
                let mut text = String::new();
                encode_queue_message(&mut text, &self.queue, &id, &body, rc, sent);
                self.in_flight.insert(id.into_string(), rc);
                (text, None)
            }
            Dialect::Legacy => {
                // `written_tx` is only taken at the end, after the last delivery.
                let ack_on_write = self.written_tx.clone().map(|tx| Box::new((id.clone(), tx)));
                self.in_flight.insert(id, rc);
                (legacy::encode_message(&body), ack_on_write)
            }
        };
        // Credit-bounded: at most `--window` of these per subscription are unacknowledged.
        self.out.push_credit(OutFrame {
            payload: Payload::Text(text.into()),
            report: Some(WriteReport {
                sent_ms: sent,
                ack_on_write,
            }),
        })
    }
}

/// The wait after `failures` receives failed in a row (and one more now): the poll interval,
/// doubled per earlier failure, up to [`RECEIVE_BACKOFF_MAX`] or the poll interval if longer.
fn receive_backoff(poll_interval: Duration, failures: u32) -> Duration {
    let max = RECEIVE_BACKOFF_MAX.max(poll_interval);
    poll_interval.saturating_mul(1 << failures.min(16)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_backoff_doubles_from_the_poll_interval_to_the_cap() {
        let poll = Duration::from_secs(1);
        let waits: Vec<u64> = (0..6).map(|n| receive_backoff(poll, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert_eq!(receive_backoff(poll, u32::MAX), RECEIVE_BACKOFF_MAX);
        let slow = Duration::from_secs(30);
        assert_eq!(receive_backoff(slow, 3), slow);
    }
}
