//! Publishing, for every way in: the v1 `publish` op and `POST /api/publish`.
//!
//! A queue message goes to the queue (created if missing) and wakes its consumers on every
//! node; a channel message goes to the broker, which hands it to every node that has
//! subscribers. Callers authorize first; this counts and logs engine failures once for all.

use wsmq_proto::{Publish, Target};

use crate::{engine::EngineError, state::Gateway};

/// What a publish did.
#[derive(Debug)]
pub(crate) enum Published {
    /// The message is in the queue with this id.
    Queue { id: String },
    /// The message reached this many nodes; on a channel with history, at this offset.
    Channel {
        receivers: u64,
        position: Option<crate::engine::Position>,
    },
}

/// Publishes one message.
///
/// # Errors
///
/// The engine's, already counted and logged.
pub(crate) async fn publish(
    gateway: &Gateway,
    publish: &Publish,
) -> Result<Published, EngineError> {
    let engine = &gateway.engine;
    match &publish.target {
        Target::Queue(queue) => {
            let delay = publish.delay.map(u64::from);
            let sent = match engine.queues.ensure_queue(queue.as_str()).await {
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
        Target::Channel(channel) => {
            let published = match gateway.history_policy(channel.as_str()) {
                Some(policy) => engine
                    .broker
                    .publish_with_history(channel.as_str(), &publish.message, policy)
                    .await
                    .map(|p| Published::Channel {
                        receivers: p.receivers,
                        position: p.position,
                    }),
                None => engine
                    .broker
                    .publish(channel.as_str(), &publish.message)
                    .await
                    .map(|receivers| Published::Channel {
                        receivers,
                        position: None,
                    }),
            };
            published.inspect_err(|err| {
                gateway
                    .metrics
                    .engine_failed("publish", channel.as_str(), err, false);
            })
        }
    }
}
