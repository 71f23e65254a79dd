//! Queue delivery: one task per (session, queue subscription).
//!
//! The task keeps up to `--window` messages in flight (delivered, not yet acknowledged) and
//! refills the window with ONE batched receive for all the free credit. When a receive comes
//! back short, the queue is drained for now and the task sleeps until the first of:
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
//! When the subscription ends (unsubscribe, disconnect, shutdown), it first applies what it was
//! already told: the acks and nacks the session forwarded before the end (a client that acks
//! and closes at once has them queued here), and the legacy deliveries the writer reports
//! written (it stops reporting when it stops writing). Only then are the messages still in
//! flight made visible again, in one call, so a reconnecting client or another node gets them
//! right away with `rc` incremented; if that fails they reappear after the vt anyway. Both
//! steps are bounded in time, so a dead Redis or a stuck socket cannot hold the shutdown.

mod commands;

use std::{collections::HashSet, pin::pin, sync::Arc, time::Duration};

use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wsmq_proto::{MessageId, QueueName, Ref, encode_queue_message, legacy};

use crate::{
    engine::{Delivery, QueueWatch},
    session::{Dialect, OutFrame, Outbound, WriteReport},
    state::Gateway,
};

/// How many session commands may wait for a subscription task (backpressure on the reader).
const COMMAND_BUFFER: usize = 256;
/// How long the end of a subscription may spend applying the acks, nacks and written reports
/// queued before it; what is left then is released with the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long releasing in-flight messages may take at the end of a subscription.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a new subscription waits for the engine to listen to its queue before the first
/// receive (never longer than the poll interval, which would catch up anyway). Normally one
/// round trip, or nothing when the node already listens; this bound only matters while the
/// pub/sub connection is down.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(1);

/// What a session asks of one of its queue subscriptions.
#[derive(Debug)]
pub enum Command {
    /// Delete a delivered message; reply `ok` (or `not_found` if it was not delivered here).
    Ack {
        /// The message.
        id: MessageId,
        /// Echoed in the reply.
        reference: Option<Ref>,
    },
    /// Give a delivered message back, visible again after `delay` seconds.
    Nack {
        /// The message.
        id: MessageId,
        /// Seconds until it is visible again.
        delay: u64,
        /// Echoed in the reply.
        reference: Option<Ref>,
    },
}

/// The session's end of a running subscription. Dropping it (or cancelling) ends the task,
/// which still applies the commands sent before (see the module docs).
#[derive(Debug)]
pub struct Subscription {
    /// Ack and nack requests.
    pub commands: mpsc::Sender<Command>,
    /// Cancels the task (a child of the session's token).
    pub cancel: CancellationToken,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts delivering `queue` to a session. The queue must exist.
pub fn spawn(
    gateway: &Arc<Gateway>,
    queue: QueueName,
    dialect: Dialect,
    out: Outbound,
    session_cancel: &CancellationToken,
) -> Subscription {
    let (commands, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let (written_tx, written_rx) = mpsc::unbounded_channel();
    let cancel = session_cancel.child_token();
    let task = DeliveryTask {
        gateway: Arc::clone(gateway),
        queue,
        dialect,
        out,
        commands: command_rx,
        written_tx: Some(written_tx),
        written: written_rx,
        cancel: cancel.clone(),
        in_flight: HashSet::new(),
    };
    gateway.shutdown.spawn(task.run());
    Subscription { commands, cancel }
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
    commands: mpsc::Receiver<Command>,
    /// Cloned into legacy deliveries so the writer can report them written. Dropped at the
    /// end, so that `written` closes once the writer holds no more of our deliveries.
    written_tx: Option<mpsc::UnboundedSender<String>>,
    /// Ids of legacy deliveries that reached the socket (to delete).
    written: mpsc::UnboundedReceiver<String>,
    /// Ends the task.
    cancel: CancellationToken,
    /// Delivered, not yet acknowledged.
    in_flight: HashSet<String>,
}

impl DeliveryTask {
    async fn run(mut self) {
        let gateway = Arc::clone(&self.gateway);
        let mut watch = gateway.engine.watch_queue(self.queue.as_str());
        gateway.metrics.subscriptions.inc();
        let limit = LISTEN_TIMEOUT.min(gateway.config.poll_interval);
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
        self.drain_queued().await;
        self.release().await;
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
        let mut deadline = Instant::now() + config.poll_interval;
        loop {
            let credit = config.window.saturating_sub(self.in_flight.len());
            if credit > 0 && may_have_more {
                // Armed before the receive, so a send between the receive and the wait still
                // wakes us.
                notified.set(watch.notify.notified());
                notified.as_mut().enable();
                match gateway
                    .engine
                    .receive(self.queue.as_str(), credit, None)
                    .await
                {
                    Ok(received) => {
                        let got = received.deliveries.len();
                        for delivery in received.deliveries {
                            if !self.forward(delivery) {
                                self.cancel.cancel();
                            }
                        }
                        // A full batch means more may be waiting; a short one drained the queue.
                        may_have_more = got == credit;
                        let mut wait = config.poll_interval;
                        if let Some(next) = received.next_visible {
                            wait = wait.min(next);
                        }
                        deadline = Instant::now() + wait;
                    }
                    Err(err) => {
                        gateway.metrics.engine_error("receive");
                        warn!(queue = %self.queue, cause = %err, "receive failed; retrying after the poll interval");
                        may_have_more = false;
                        deadline = Instant::now() + config.poll_interval;
                    }
                }
                if may_have_more && !self.cancel.is_cancelled() {
                    // Take any acks that came in meanwhile, then receive again.
                    self.drain_pending().await;
                    continue;
                }
            }
            let receiving = credit > 0;
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => {
                        let was_full = self.in_flight.len() >= config.window;
                        let nacked = self.handle_commands(command).await;
                        // A nacked message is visible again now or later: receive to take it
                        // or to learn when.
                        may_have_more |= nacked || (was_full && self.in_flight.len() < config.window);
                    }
                    None => break,
                },
                Some(id) = self.written.recv() => {
                    let was_full = self.in_flight.len() >= config.window;
                    self.handle_written(id).await;
                    may_have_more |= was_full && self.in_flight.len() < config.window;
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
    fn forward(&mut self, delivery: Delivery) -> bool {
        let Delivery { id, body, rc, sent } = delivery;
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
                self.in_flight.insert(id.into_string());
                (text, None)
            }
            Dialect::Legacy => {
                // `written_tx` is only taken at the end, after the last delivery.
                let ack_on_write = self.written_tx.clone().map(|tx| (id.clone(), tx));
                self.in_flight.insert(id);
                (legacy::encode_message(&body), ack_on_write)
            }
        };
        self.out.push(OutFrame {
            message: Message::Text(text.into()),
            report: Some(WriteReport {
                sent_ms: sent,
                ack_on_write,
            }),
        })
    }
}
