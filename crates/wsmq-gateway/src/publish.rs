//! Publishing, for every way in: the v1 `publish` op and `POST /api/publish`.
//!
//! A queue message goes to the queue (created if missing, with the [`QueueRules`] the HTTP API
//! may give for that case) and wakes its consumers on every node; a channel message goes to the
//! broker, which hands it to every node that has subscribers. Callers authorize first; this
//! counts and logs engine failures once for all.

use wsmq_proto::{Publish, Target};

use crate::{
    engine::{EngineError, QueueRules},
    state::Gateway,
};

/// What a publish did.
#[derive(Debug)]
pub(crate) enum Published {
    /// The message is in the queue with this id.
    Queue { id: String },
    /// The message reached this many nodes.
    Channel { receivers: u64 },
}

/// Publishes one message; `rules` are those of a queue this publish creates (an existing queue
/// keeps its own).
///
/// # Errors
///
/// The engine's, already counted and logged.
pub(crate) async fn publish(
    gateway: &Gateway,
    publish: &Publish,
    rules: Option<&QueueRules>,
) -> Result<Published, EngineError> {
    let engine = &gateway.engine;
    match &publish.target {
        Target::Queue(queue) => {
            let delay = publish.delay.map(u64::from);
            let ensured = match rules {
                Some(rules) => engine
                    .queues
                    .create_queue(queue.as_str(), rules)
                    .await
                    .map(drop),
                None => engine.queues.ensure_queue(queue.as_str()).await,
            };
            let sent = match ensured {
                Ok(()) => {
                    let body = &publish.message;
                    engine.queues.send(queue.as_str(), body, delay).await
                }
                Err(err) => Err(err),
            };
            sent.map(|id| Published::Queue { id }).inspect_err(|err| {
                gateway
                    .metrics
                    .engine_failed("send", queue.as_str(), err, false);
            })
        }
        Target::Channel(channel) => engine
            .broker
            .publish(channel.as_str(), &publish.message)
            .await
            .map(|receivers| Published::Channel { receivers })
            .inspect_err(|err| {
                gateway
                    .metrics
                    .engine_failed("publish", channel.as_str(), err, false);
            }),
    }
}
