//! `{"op":"publish","queue"|"channel","message","delay"?}`: publish from a client.
//!
//! A client may publish to its own queue and to what its `wsmq` grants name as `queue:GLOB`
//! or `channel:GLOB`. A queue is created if missing; the reply carries the new message id.

use tracing::{debug, warn};
use wsmq_proto::{ErrorCode, MessageId, Publish, Ref, ServerFrame, Target};

use super::{Reply, Session};
use crate::error::GatewayError;

/// Authorizes and publishes.
pub(super) async fn apply(
    session: &mut Session,
    publish: Publish,
    reference: Option<Ref>,
) -> Reply {
    let gateway = session.gateway.clone();
    let policy = &gateway.auth.policy;
    match &publish.target {
        Target::Queue(queue) => {
            if !policy.may_publish_queue(&session.identity, queue) {
                return Reply::error(
                    reference,
                    ErrorCode::Forbidden,
                    format!("you may not publish to queue {queue}"),
                );
            }
            let delay = publish.delay.map(u64::from);
            let engine = &gateway.engine;
            let sent = match engine.ensure_queue(queue.as_str()).await {
                Ok(()) => engine.send(queue.as_str(), &publish.message, delay).await,
                Err(err) => Err(err),
            };
            match sent {
                Ok(id) => Reply::Now(ServerFrame::Ok {
                    reference,
                    id: MessageId::new(id).ok(),
                }),
                Err(err) => {
                    gateway.metrics.engine_error("send");
                    if err.is_unavailable() {
                        debug!(queue = %queue, cause = %err, "publish failed");
                    } else {
                        warn!(queue = %queue, cause = %err, "publish failed");
                    }
                    Reply::failed(reference, &GatewayError::Engine(err))
                }
            }
        }
        Target::Channel(channel) => {
            if !policy.may_publish_channel(&session.identity, channel) {
                return Reply::error(
                    reference,
                    ErrorCode::Forbidden,
                    format!("you may not publish to channel {channel}"),
                );
            }
            match gateway
                .engine
                .publish(channel.as_str(), &publish.message)
                .await
            {
                Ok(_) => Reply::ok(reference),
                Err(err) => {
                    gateway.metrics.engine_error("publish");
                    if err.is_unavailable() {
                        debug!(channel = %channel, cause = %err, "publish failed");
                    } else {
                        warn!(channel = %channel, cause = %err, "publish failed");
                    }
                    Reply::failed(reference, &GatewayError::Engine(err))
                }
            }
        }
    }
}
