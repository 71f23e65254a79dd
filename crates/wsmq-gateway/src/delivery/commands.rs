//! What a subscription does with the session's acks and nacks, the writer's reports of legacy
//! deliveries written, and, when it ends, with what is still queued and then still in flight:
//! each as few engine calls as the batch allows, answered once they are done.

use std::sync::Arc;

use futures_util::future::join_all;
use tracing::{debug, warn};
use wsmq_proto::{ErrorCode, Ref, ServerFrame, encode_server};

use super::{Command, DeliveryTask, RELEASE_TIMEOUT, SETTLE_TIMEOUT, UNSETTLED_MAX};
use crate::{
    engine::{EngineError, Held},
    outbound::OutFrame,
};

impl DeliveryTask {
    /// Handles commands and written reports already waiting, without blocking.
    pub(super) async fn take_pending(&mut self) {
        if let Ok(command) = self.commands.try_recv() {
            let _ = self.handle_commands(command).await;
        }
        if let Some(id) = self.try_written() {
            self.handle_written(id).await;
        }
    }

    /// A written report already waiting (legacy subscriptions only).
    fn try_written(&mut self) -> Option<String> {
        self.written.as_mut()?.try_recv().ok()
    }

    /// Handles `first` and every command already queued behind it: the acks become one
    /// batched delete, the nacks one batched release per delay and the dead nacks one batched
    /// dead-lettering, sent together (they share one connection, so this costs about one round
    /// trip). Returns whether a message was nacked.
    pub(super) async fn handle_commands(&mut self, first: Command) -> bool {
        let mut acks = Claimed::default();
        let mut dead = Claimed::default();
        // (delay, messages): clients nack with one delay or very few.
        let mut nacks: Vec<(u64, Claimed)> = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            let (id, boxed, delay) = match command {
                Command::Ack { id, reference } => (id, reference, None),
                Command::Nack {
                    id,
                    dead: true,
                    reference,
                    ..
                } => (id, reference, Some(None)),
                Command::Nack {
                    id,
                    delay,
                    reference,
                    ..
                } => (id, reference, Some(Some(delay))),
            };
            let reference = boxed.map(|r| *r);
            // Claimed by this command: a second ack or nack of it in the same batch finds it
            // gone. A message whose earlier ack failed may be acked again.
            let holding = self.in_flight.remove(id.as_str());
            if let Some(rc) = holding.or_else(|| self.unsettled.remove(id.as_str())) {
                let claimed = match delay {
                    None => &mut acks,
                    Some(None) => &mut dead,
                    Some(Some(delay)) => match nacks.iter().position(|(d, _)| *d == delay) {
                        Some(i) => &mut nacks[i].1,
                        None => {
                            nacks.push((delay, Claimed::default()));
                            &mut nacks.last_mut().expect("just pushed").1
                        }
                    },
                };
                claimed.held.push(Held {
                    id: id.into_string(),
                    rc,
                });
                claimed.refs.push(reference);
            } else {
                self.reply_not_delivered(reference);
            }
            next = self.commands.try_recv().ok();
        }

        let engine = &self.gateway.engine.queues;
        let queue = self.queue.as_str();
        let deleting = async {
            if acks.held.is_empty() {
                Ok(0)
            } else {
                let ids: Vec<String> = acks.held.iter().map(|h| h.id.clone()).collect();
                engine.ack(queue, &ids).await
            }
        };
        let releasing = join_all(
            nacks
                .iter()
                .map(|(delay, claimed)| engine.release(queue, &claimed.held, *delay)),
        );
        let burying = async {
            if dead.held.is_empty() {
                Ok(None)
            } else {
                engine.dead_letter(queue, &dead.held).await.map(Some)
            }
        };
        let (deleted, released, buried) = tokio::join!(deleting, releasing, burying);

        let gateway = Arc::clone(&self.gateway);
        let metrics = &gateway.metrics;
        if !acks.held.is_empty() {
            if deleted.is_ok() {
                metrics.acks.inc_by(acks.held.len() as u64);
            }
            self.settle(acks, deleted, "ack");
        }
        let nacked = !nacks.is_empty();
        for ((_, claimed), result) in nacks.into_iter().zip(released) {
            if result.is_ok() {
                // Gone or given back: either way no longer ours.
                metrics.nacks.inc_by(claimed.held.len() as u64);
            }
            self.settle(claimed, result, "nack");
        }
        if !dead.held.is_empty() {
            let buried = buried.map(|outcome| {
                let outcome = outcome.unwrap_or_default();
                metrics.dead_nacked(outcome);
                outcome.count
            });
            self.settle(dead, buried, "nack");
        }
        nacked
    }

    /// Answers the commands of `claimed` after their engine call: `ok` each, or on failure an
    /// error each, the messages then [unsettled](DeliveryTask::unsettled): they stay hidden
    /// until the vt and are delivered again then, so they no longer hold the window (with
    /// Redis down, a window of failed acks would otherwise stop the subscription for good).
    fn settle(&mut self, claimed: Claimed, result: Result<u64, EngineError>, op: &'static str) {
        match result {
            Ok(_) => {
                for reference in claimed.refs {
                    self.reply_claimed(ServerFrame::ok(reference));
                }
            }
            Err(err) => {
                let metrics = &self.gateway.metrics;
                metrics.engine_failed(op, self.queue.as_str(), &err, false);
                self.unsettle(claimed.held);
                for reference in claimed.refs {
                    self.reply_claimed(engine_error_frame(reference, &err));
                }
            }
        }
    }

    /// Deletes legacy deliveries that reached the socket, `first` and any queued with it.
    pub(super) async fn handle_written(&mut self, first: String) {
        let mut ids = vec![first];
        while let Some(id) = self.try_written() {
            ids.push(id);
        }
        match self
            .gateway
            .engine
            .queues
            .ack(self.queue.as_str(), &ids)
            .await
        {
            Ok(_) => {
                self.gateway.metrics.acks.inc_by(ids.len() as u64);
                for id in &ids {
                    self.in_flight.remove(id);
                }
            }
            Err(err) => {
                // They reappear after the vt and are delivered again: at-least-once. Legacy
                // clients never ack, so they are not kept as unsettled either.
                let metrics = &self.gateway.metrics;
                metrics.engine_failed("ack", self.queue.as_str(), &err, false);
                for id in &ids {
                    self.in_flight.remove(id);
                }
            }
        }
    }

    /// At the end of the subscription: applies every command and written report already on
    /// its way, so that an ack sent just before a close deletes its message instead of the
    /// release below handing it out again.
    ///
    /// Closing the command channel gives this an end: the session can send no more, and
    /// `recv` returns what it sent before, then `None`. The writer is done with our legacy
    /// deliveries once the report channel closes: it reports each written one and drops the
    /// rest when it stops (v1 deliveries carry no reporter, so that is at once). Bounded by
    /// [`SETTLE_TIMEOUT`]: a dead engine or a socket that takes no more bytes cannot hold the
    /// shutdown. What was not taken by then stays in flight and is released; a batch whose
    /// engine call was cut short reappears after the vt.
    pub(super) async fn finish_queued(&mut self) {
        self.commands.close();
        self.written_tx = None;
        let settling = async {
            let (mut commands_open, mut written_open) = (true, self.written.is_some());
            while commands_open || written_open {
                tokio::select! {
                    command = self.commands.recv(), if commands_open => match command {
                        Some(command) => {
                            let _ = self.handle_commands(command).await;
                        }
                        None => commands_open = false,
                    },
                    id = super::next_written(&mut self.written), if written_open => match id {
                        Some(id) => self.handle_written(id).await,
                        None => written_open = false,
                    },
                }
            }
        };
        if tokio::time::timeout(SETTLE_TIMEOUT, settling)
            .await
            .is_err()
        {
            warn!(
                queue = %self.queue,
                timeout = ?SETTLE_TIMEOUT,
                "applying queued acks and written reports timed out; releasing the rest"
            );
        }
    }

    /// Makes every in-flight message visible again now, in one call.
    pub(super) async fn release(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let ids: Vec<Held> = self
            .in_flight
            .drain()
            .map(|(id, rc)| Held { id, rc })
            .collect();
        let queue = self.queue.as_str();
        let releasing = self.gateway.engine.queues.release(queue, &ids, 0);
        match tokio::time::timeout(RELEASE_TIMEOUT, releasing).await {
            Ok(Ok(released)) => debug!(
                queue,
                count = ids.len(),
                released,
                "released in-flight messages"
            ),
            Ok(Err(err)) => {
                // They reappear after the vt.
                self.gateway
                    .metrics
                    .engine_failed("release", queue, &err, false);
            }
            Err(_) => warn!(
                queue,
                count = ids.len(),
                timeout = ?RELEASE_TIMEOUT,
                "releasing in-flight messages timed out; they reappear after vt"
            ),
        }
    }

    /// Moves ids whose ack or nack failed out of the window (see [`Self::settle`]), keeping at
    /// most [`UNSETTLED_MAX`] of them.
    fn unsettle(&mut self, held: Vec<Held>) {
        if self.unsettled.len() + held.len() > UNSETTLED_MAX {
            self.unsettled.clear();
        }
        self.unsettled
            .extend(held.into_iter().map(|Held { id, rc }| (id, rc)));
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

    /// The reply to an ack or nack of a message delivered here: one per delivery at most, so
    /// bounded by the credit like the deliveries themselves (a client that acks a backlog
    /// as fast as it reads it is not slow).
    fn reply_claimed(&self, frame: ServerFrame) {
        self.out.push_credit(OutFrame::text(encode_server(&frame)));
    }
}

/// Messages claimed from `in_flight` by acks or nacks of one batch, and the refs to answer.
#[derive(Default)]
struct Claimed {
    /// The messages as delivered here, in command order.
    held: Vec<Held>,
    /// The `ref` of each command, in the same order.
    refs: Vec<Option<Ref>>,
}

fn engine_error_frame(reference: Option<Ref>, err: &EngineError) -> ServerFrame {
    let err = crate::error::GatewayError::Engine(err.clone());
    ServerFrame::error(reference, err.code(), err.public_message())
}
