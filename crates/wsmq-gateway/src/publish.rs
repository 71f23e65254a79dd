//! Publishing, for every way in: the v1 `publish` op and `POST /api/publish`.
//!
//! A queue message goes to the queue (created if missing, with the [`QueueRules`] the HTTP API
//! may give for that case) and wakes its consumers on every node; a channel message goes to the
//! broker, which hands it to every node that has subscribers. Callers authorize first; this
//! counts and logs engine failures once for all.

use wsmq_proto::{Publish, Target};

use crate::{engine::QueueRules, error::GatewayError, state::Gateway};

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

/// Publishes one message, as `user` (whose budget of queue creations a missing queue takes
/// from), or for the publish API (`None`); `rules` are those of a queue this publish creates
/// (an existing queue keeps its own); a queue message returns only once `replicas` replicas
/// hold it (0: at once).
///
/// # Errors
///
/// The engine's, already counted and logged; [`GatewayError::RateLimited`] when the queue
/// is missing and the user may create no more.
pub(crate) async fn publish(
    gateway: &Gateway,
    user: Option<&str>,
    publish: &Publish,
    rules: Option<&QueueRules>,
    replicas: u32,
) -> Result<Published, GatewayError> {
    let engine = &gateway.engine;
    match &publish.target {
        Target::Queue(queue) => {
            gateway
                .ensure_queue_for(user, queue.as_str(), rules)
                .await
                .inspect_err(|err| {
                    if let GatewayError::Engine(err) = err {
                        gateway
                            .metrics
                            .engine_failed("send", queue.as_str(), err, false);
                    }
                })?;
            let delay = publish.delay.map(u64::from);
            let body = &publish.message;
            let sent = if replicas > 0 {
                let queues = &engine.queues;
                queues
                    .send_replicated(queue.as_str(), body, delay, replicas)
                    .await
            } else {
                engine.queues.send(queue.as_str(), body, delay).await
            };
            let sent = sent.map(|id| Published::Queue { id }).inspect_err(|err| {
                gateway
                    .metrics
                    .engine_failed("send", queue.as_str(), err, false);
            });
            Ok(sent?)
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
            published
                .inspect_err(|err| {
                    gateway
                        .metrics
                        .engine_failed("publish", channel.as_str(), err, false);
                })
                .map_err(GatewayError::Engine)
        }
    }
}
