//! `{"op":"publish","queue"|"channel","message","delay"?}`: publish from a client.
//!
//! A client may publish to its own queue and to what its `wsmq` grants name as `queue:GLOB`
//! or `channel:GLOB`. A queue is created if missing; the reply carries the new message id,
//! or, on a channel with history, the publication's `offset` and `epoch`.

use wsmq_proto::{ErrorCode, MessageId, Publish, Ref, ServerFrame, Target};

use super::{Reply, Session};
use crate::publish::{self, Published};

/// Authorizes and publishes.
pub(super) async fn apply(
    session: &mut Session,
    publish: Publish,
    reference: Option<Ref>,
) -> Reply {
    let policy = &session.gateway.auth.policy;
    let refused = match &publish.target {
        Target::Queue(queue) => (!policy.may_publish_queue(&session.identity, queue))
            .then(|| format!("you may not publish to queue {queue}")),
        Target::Channel(channel) => (!policy.may_publish_channel(&session.identity, channel))
            .then(|| format!("you may not publish to channel {channel}")),
    };
    if let Some(message) = refused {
        return Reply::error(reference, ErrorCode::Forbidden, message);
    }
    let user = session.identity.user.as_str();
    match publish::publish(&session.gateway, Some(user), &publish, None, 0).await {
        Ok(Published::Queue { id }) => Reply::Now(ServerFrame::Ok {
            reference,
            id: MessageId::new(id).ok(),
            offset: None,
            epoch: None,
            recovered: None,
            messages: None,
            users: None,
            total: None,
        }),
        Ok(Published::Channel { position, .. }) => Reply::Now(ServerFrame::Ok {
            reference,
            id: None,
            offset: position.as_ref().map(|p| p.offset),
            epoch: position.map(|p| p.epoch.to_string()),
            recovered: None,
            messages: None,
            users: None,
            total: None,
        }),
        Err(err) => Reply::failed(reference, &err),
    }
}
