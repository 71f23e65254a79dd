//! Queue delivery: one task per (session, queue subscription).
//!
//! The task keeps up to `--window` messages in flight (delivered, not yet acknowledged) and
//! refills the window with ONE batched receive for all the free credit. When a receive comes
//! back short, the queue is drained for now and the task sleeps until the first of:
//!
//! - a realtime notification of the queue (a send on any node: `{ns}:rt:{q}`),
//! - the moment the next hidden or delayed message becomes visible, when the engine knows it
//!   (so a delayed message arrives on time without polling),
//! - the poll interval (for publishers that send no realtime notification),
//! - a command from the session (an ack frees credit), or cancellation.
//!
//! Acks are pipelined: the session forwards them without waiting, and the task deletes every
//! ack that has arrived by the time it looks in ONE batched delete, then answers each. When
//! the subscription ends (unsubscribe, disconnect, shutdown), messages still in flight are
//! made visible again at once, so a reconnecting client or another node gets them right away
//! with `rc` incremented; if that fails they reappear after the vt anyway.

use std::{collections::HashSet, pin::pin, sync::Arc, time::Duration};

use futures_util::future::join_all;
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wsmq_proto::{
    ErrorCode, MessageId, QueueName, Ref, ServerFrame, encode_queue_message, encode_server, legacy,
};

use crate::{
    engine::{Delivery, EngineError},
    session::{Dialect, OutFrame, Outbound, WriteReport},
    state::Gateway,
};

/// How many session commands may wait for a subscription task (backpressure on the reader).
const COMMAND_BUFFER: usize = 256;
/// How long releasing in-flight messages may take at the end of a subscription.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The session's end of a running subscription. Dropping it (or cancelling) ends the task.
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
        written_tx,
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
    /// Cloned into legacy deliveries so the writer can report them written.
    written_tx: mpsc::UnboundedSender<String>,
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
        let config = &gateway.config;
        let watch = gateway.engine.watch_queue(self.queue.as_str());
        gateway.metrics.subscriptions.inc();
        // `true` while the queue may hold messages we have not tried to take.
        let mut may_have_more = true;
        let mut deadline = Instant::now() + config.poll_interval;
        loop {
            let credit = config.window.saturating_sub(self.in_flight.len());
            // Registered before the receive, so a send between the receive and the wait
            // still wakes us.
            let mut notified = pin!(watch.notify.notified());
            notified.as_mut().enable();
            if credit > 0 && may_have_more {
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
                () = &mut notified, if receiving => may_have_more = true,
                () = sleep_until(deadline), if receiving => may_have_more = true,
            }
        }
        self.release().await;
        gateway.metrics.subscriptions.dec();
    }

    /// Queues one delivery for the socket; `false` if the session is gone or too slow.
    fn forward(&mut self, delivery: Delivery) -> bool {
        let metrics = &self.gateway.metrics;
        if delivery.rc > 1 {
            metrics.redeliveries.inc();
        }
        let text = match self.dialect {
            Dialect::V1 => {
                let Ok(id) = MessageId::new(delivery.id.clone()) else {
                    warn!(queue = %self.queue, "skipping a message with an invalid id");
                    return true;
                };
                let mut text = String::new();
                encode_queue_message(
                    &mut text,
                    &self.queue,
                    &id,
                    &delivery.body,
                    delivery.rc,
                    delivery.sent,
                );
                text
            }
            Dialect::Legacy => legacy::encode_message(&delivery.body),
        };
        let ack_on_write = (self.dialect == Dialect::Legacy).then(|| self.written_tx.clone());
        self.in_flight.insert(delivery.id.clone());
        self.out.push(OutFrame {
            message: Message::Text(text.into()),
            report: Some(WriteReport {
                id: delivery.id,
                sent_ms: delivery.sent,
                ack_on_write,
            }),
        })
    }

    /// Handles commands and written reports already waiting, without blocking.
    async fn drain_pending(&mut self) {
        if let Ok(command) = self.commands.try_recv() {
            let _ = self.handle_commands(command).await;
        }
        if let Ok(id) = self.written.try_recv() {
            self.handle_written(id).await;
        }
    }

    /// Handles `first` and every command already queued behind it; acks go in one batch.
    /// Returns whether a message was nacked.
    async fn handle_commands(&mut self, first: Command) -> bool {
        let mut nacked = false;
        let mut acks: Vec<(String, Option<Ref>)> = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Ack { id, reference } => {
                    if self.in_flight.contains(id.as_str()) {
                        acks.push((id.into_string(), reference));
                    } else {
                        self.reply_not_delivered(reference);
                    }
                }
                Command::Nack {
                    id,
                    delay,
                    reference,
                } => {
                    self.nack(id, delay, reference).await;
                    nacked = true;
                }
            }
            next = self.commands.try_recv().ok();
        }
        if acks.is_empty() {
            return nacked;
        }
        let ids: Vec<String> = acks.iter().map(|(id, _)| id.clone()).collect();
        match self.gateway.engine.ack(self.queue.as_str(), &ids).await {
            Ok(_) => {
                self.gateway.metrics.acks.inc_by(ids.len() as u64);
                for (id, reference) in acks {
                    self.in_flight.remove(&id);
                    self.reply(ServerFrame::ok(reference));
                }
            }
            Err(err) => {
                self.gateway.metrics.engine_error("ack");
                warn!(queue = %self.queue, cause = %err, count = ids.len(), "ack failed");
                for (_, reference) in acks {
                    self.reply(engine_error_frame(reference, &err));
                }
            }
        }
        nacked
    }

    async fn nack(&mut self, id: MessageId, delay: u64, reference: Option<Ref>) {
        if !self.in_flight.contains(id.as_str()) {
            self.reply_not_delivered(reference);
            return;
        }
        let result = self
            .gateway
            .engine
            .nack(self.queue.as_str(), id.as_str(), delay)
            .await;
        match result {
            Ok(_) => {
                // Gone or given back: either way it is no longer ours.
                self.in_flight.remove(id.as_str());
                self.gateway.metrics.nacks.inc();
                self.reply(ServerFrame::ok(reference));
            }
            Err(err) => {
                self.gateway.metrics.engine_error("nack");
                self.reply(engine_error_frame(reference, &err));
            }
        }
    }

    /// Deletes legacy deliveries that reached the socket, `first` and any queued with it.
    async fn handle_written(&mut self, first: String) {
        let mut ids = vec![first];
        while let Ok(id) = self.written.try_recv() {
            ids.push(id);
        }
        match self.gateway.engine.ack(self.queue.as_str(), &ids).await {
            Ok(_) => {
                self.gateway.metrics.acks.inc_by(ids.len() as u64);
                for id in &ids {
                    self.in_flight.remove(id);
                }
            }
            Err(err) => {
                // They stay in flight and are released (or reappear after vt): at-least-once.
                self.gateway.metrics.engine_error("ack");
                warn!(queue = %self.queue, cause = %err, "deleting written messages failed");
            }
        }
    }

    /// Makes every in-flight message visible again now.
    async fn release(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let engine = &self.gateway.engine;
        let queue = self.queue.as_str();
        let releases = self.in_flight.iter().map(|id| engine.nack(queue, id, 0));
        match tokio::time::timeout(RELEASE_TIMEOUT, join_all(releases)).await {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                if failed > 0 {
                    self.gateway.metrics.engine_error("release");
                    warn!(
                        queue,
                        failed, "could not release some messages; they reappear after vt"
                    );
                }
            }
            Err(_) => warn!(
                queue,
                "releasing in-flight messages timed out; they reappear after vt"
            ),
        }
        debug!(
            queue,
            count = self.in_flight.len(),
            "released in-flight messages"
        );
        self.in_flight.clear();
    }

    fn reply_not_delivered(&self, reference: Option<Ref>) {
        self.reply(ServerFrame::error(
            reference,
            ErrorCode::NotFound,
            format!(
                "no message with that id is in flight on queue {}",
                self.queue
            ),
        ));
    }

    fn reply(&self, frame: ServerFrame) {
        self.out.push(OutFrame::text(encode_server(&frame)));
    }
}

fn engine_error_frame(reference: Option<Ref>, err: &EngineError) -> ServerFrame {
    let err = crate::error::GatewayError::Engine(err.clone());
    ServerFrame::error(reference, err.code(), err.public_message())
}
