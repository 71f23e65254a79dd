//! `{"op":"subscribe","queue"|"channel":…}`: start consuming a queue or receiving a channel.
//!
//! A queue is created if missing and consumed by a delivery task with the session's window;
//! a channel joins the node's hub. `ok` is queued before the first message can be, so the
//! client always sees the reply first. Subscribing twice to the same thing is a no-op `ok`.

use tracing::{info, warn};
use wsmq_proto::{ErrorCode, Ref, ServerFrame, Target, encode_server};

use super::{Reply, Session};
use crate::{channels, delivery, error::GatewayError, session::OutFrame};

/// Authorizes and starts the subscription.
pub(super) async fn apply(session: &mut Session, target: Target, reference: Option<Ref>) -> Reply {
    let already = match &target {
        Target::Queue(queue) => session.queues.contains_key(queue),
        Target::Channel(channel) => session.channels.contains_key(channel),
    };
    if already {
        return Reply::ok(reference);
    }
    let limit = session.gateway.config.max_subscriptions;
    if session.subscription_count() >= limit {
        return Reply::error(
            reference,
            ErrorCode::Invalid,
            format!("too many subscriptions (limit {limit})"),
        );
    }
    let gateway = session.gateway.clone();
    let policy = &gateway.auth.policy;
    match target {
        Target::Queue(queue) => {
            if !policy.may_consume(&session.identity, &queue) {
                info!(queue = %queue, "subscribe refused");
                return Reply::error(
                    reference,
                    ErrorCode::Forbidden,
                    format!("you may not consume queue {queue}"),
                );
            }
            if let Err(err) = gateway.engine.ensure_queue(queue.as_str()).await {
                gateway.metrics.engine_error("ensure_queue");
                warn!(queue = %queue, cause = %err, "cannot create queue");
                return Reply::failed(reference, &GatewayError::Engine(err));
            }
            session.send(encode_server(&ServerFrame::ok(reference)));
            let subscription = delivery::spawn(
                &gateway,
                queue.clone(),
                session.dialect,
                session.out.clone(),
                &session.token,
            );
            session.queues.insert(queue, subscription);
            Reply::Deferred
        }
        Target::Channel(channel) => {
            if !policy.may_subscribe(&session.identity, &channel) {
                info!(channel = %channel, "subscribe refused");
                return Reply::error(
                    reference,
                    ErrorCode::Forbidden,
                    format!("you may not subscribe to channel {channel}"),
                );
            }
            let out = session.out.clone();
            let sink = Box::new(move |frame| {
                out.push(OutFrame::text(frame));
            });
            let ok = encode_server(&ServerFrame::ok(reference)).into();
            let subscription = gateway.engine.subscribe_channel(channel.as_str(), sink, ok);
            let membership =
                channels::Membership::new(subscription, &gateway.metrics.subscriptions);
            session.channels.insert(channel, membership);
            Reply::Deferred
        }
    }
}
