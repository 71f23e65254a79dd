//! `{"op":"nack","queue","id","delay"?}`: give the message back, visible again after `delay`
//! seconds (0 by default), to be delivered again with `rc` incremented.

use wsmq_proto::{ErrorCode, MessageId, QueueName, Ref};

use super::{Reply, Session};
use crate::{delivery::Command, mailbox};

/// Forwards the nack to the subscription, which replies.
pub(super) async fn apply(
    session: &mut Session,
    queue: QueueName,
    id: MessageId,
    delay: Option<u32>,
    reference: Option<Ref>,
) -> Reply {
    let Some(subscription) = session.queues.get(&queue) else {
        return Reply::error(
            reference,
            ErrorCode::NotFound,
            "not subscribed to that queue",
        );
    };
    let command = Command::Nack {
        id,
        delay: u64::from(delay.unwrap_or(0)),
        reference: reference.map(Box::new),
    };
    match subscription.commands.send(command).await {
        Ok(()) => Reply::Deferred,
        Err(mailbox::SendError(
            Command::Nack { reference, .. } | Command::Ack { reference, .. },
        )) => Reply::error(
            reference.map(|r| *r),
            ErrorCode::Unavailable,
            "subscription ended",
        ),
    }
}
