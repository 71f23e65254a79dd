//! Subscribing a session to a queue or a channel, for every dialect: authorize, check the
//! limit, then start the queue's delivery task (creating the queue if missing) or join the
//! channel's hub. The dialect only chooses how a [`Refusal`] is said (v1: an `error` frame;
//! legacy, which has none: a close code, or silence).

use tokio_tungstenite::tungstenite::Utf8Bytes;
use wsmq_proto::{ChannelName, ErrorCode, QueueName, Ref, ServerFrame};

use super::Session;
use crate::{delivery, engine::EngineError, error::GatewayError, outbound::OutFrame};

/// Why a subscription was not started.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The identity may not consume the queue or receive the channel; says which.
    Forbidden(String),
    /// The session holds the most subscriptions it may.
    TooMany { limit: usize },
    /// The queue could not be created.
    Engine(EngineError),
    /// The queue is missing and the user may create no more (`--queue-create-limit`).
    QueueBudget(String),
}

impl Refusal {
    /// The v1 `error` frame that says it.
    pub(super) fn into_frame(self, reference: Option<Ref>) -> ServerFrame {
        match self {
            Refusal::Forbidden(what) => ServerFrame::error(
                reference,
                ErrorCode::Forbidden,
                format!("you may not {what}"),
            ),
            Refusal::TooMany { limit } => ServerFrame::error(
                reference,
                ErrorCode::Invalid,
                format!("too many subscriptions (limit {limit})"),
            ),
            Refusal::Engine(err) => {
                let err = GatewayError::Engine(err);
                ServerFrame::error(reference, err.code(), err.public_message())
            }
            Refusal::QueueBudget(message) => {
                ServerFrame::error(reference, ErrorCode::RateLimited, message)
            }
        }
    }
}

/// Subscribes the session to `queue`; `first` (the v1 `ok`) is queued before any delivery.
/// Subscribing again to a queue already subscribed only sends `first`.
pub(super) async fn queue(
    session: &mut Session,
    queue: QueueName,
    first: Option<OutFrame>,
) -> Result<(), Refusal> {
    if !session.queues.contains_key(&queue) {
        let allowed = session
            .gateway
            .auth
            .policy
            .may_consume(&session.identity, &queue);
        admit(session, allowed, || format!("consume queue {queue}"))?;
        let gateway = &session.gateway;
        let user = session.identity.user.as_str();
        match gateway
            .ensure_queue_for(Some(user), queue.as_str(), None)
            .await
        {
            Ok(()) => {}
            Err(GatewayError::Engine(err)) => {
                gateway
                    .metrics
                    .engine_failed("ensure_queue", queue.as_str(), &err, false);
                return Err(Refusal::Engine(err));
            }
            Err(other) => return Err(Refusal::QueueBudget(other.to_string())),
        }
    }
    if let Some(first) = first {
        session.out.push(first);
    }
    if !session.queues.contains_key(&queue) {
        let subscription = delivery::spawn(
            &session.gateway,
            queue.clone(),
            session.dialect,
            session.out.clone(),
            &session.token,
        );
        session.queues.insert(queue, subscription);
    }
    Ok(())
}

/// Subscribes the session to `channel`; `first` (the `ok`) is queued before any publication.
/// Subscribing again to a channel already subscribed only sends `first`.
pub(super) fn channel(
    session: &mut Session,
    channel: ChannelName,
    first: Utf8Bytes,
) -> Result<(), Refusal> {
    if session.channels.contains_key(&channel) {
        session.out.push(OutFrame::text(first));
        return Ok(());
    }
    admit_channel(session, &channel)?;
    let out = session.out.clone();
    let sink = Box::new(move |frame| {
        out.push(OutFrame::text(frame));
    });
    let subscription = session.gateway.hub.subscribe(channel.as_str(), sink, first);
    session.channels.insert(channel, subscription);
    Ok(())
}

/// The checks a new channel subscription passes (also for one that recovers history).
pub(super) fn admit_channel(session: &Session, channel: &ChannelName) -> Result<(), Refusal> {
    let allowed = session
        .gateway
        .auth
        .policy
        .may_subscribe(&session.identity, channel);
    admit(session, allowed, || {
        format!("subscribe to channel {channel}")
    })
}

/// The checks every new subscription passes: authorized (`allowed`), and under the limit.
fn admit(session: &Session, allowed: bool, what: impl FnOnce() -> String) -> Result<(), Refusal> {
    if !allowed {
        let what = what();
        tracing::info!("subscribe refused: may not {what}");
        return Err(Refusal::Forbidden(what));
    }
    let limit = session.gateway.config.limits.max_subscriptions;
    if session.subscription_count() >= limit {
        return Err(Refusal::TooMany { limit });
    }
    Ok(())
}

/// Ends the subscriptions that the session's grants no longer allow (after an `auth` refresh
/// with narrower grants, or when adopted grants expire), and tells a v1 client which, in an
/// `error` frame (`forbidden`) without a `ref`. Ending a queue subscription releases the
/// messages it held, for redelivery.
pub(super) fn end_unallowed(session: &mut Session) {
    let policy = &session.gateway.auth.policy;
    let queues: Vec<QueueName> = session
        .queues
        .keys()
        .filter(|queue| !policy.may_consume(&session.identity, queue))
        .cloned()
        .collect();
    let channels: Vec<ChannelName> = session
        .channels
        .keys()
        .filter(|channel| !policy.may_subscribe(&session.identity, channel))
        .cloned()
        .collect();
    let mut ended = Vec::with_capacity(queues.len() + channels.len());
    for queue in queues {
        session.queues.remove(&queue);
        ended.push(format!("queue {queue}"));
    }
    for channel in channels {
        session.channels.remove(&channel);
        ended.push(format!("channel {channel}"));
    }
    for what in ended {
        tracing::info!("subscription ended: {what} is no longer allowed");
        if session.dialect == crate::outbound::Dialect::V1 {
            let frame = ServerFrame::error(
                None,
                ErrorCode::Forbidden,
                format!("subscription to {what} ended: no longer allowed"),
            );
            session.send(wsmq_proto::encode_server(&frame));
        }
    }
}
