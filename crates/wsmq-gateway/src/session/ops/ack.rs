//! `{"op":"ack","queue","id"}`: the message is done; delete it.
//!
//! The ack is handed to the queue's subscription task, which knows what it delivered (an id
//! it did not deliver is `not_found`) and deletes all acks waiting in one batch.

use wsmq_proto::{ErrorCode, MessageId, QueueName, Ref};

use super::{Reply, Session};
use crate::{
    delivery::{Command, ReplyTo},
    mailbox,
};

/// Forwards the ack to the subscription, which replies.
pub(super) async fn apply(
    session: &mut Session,
    queue: QueueName,
    id: MessageId,
    reference: Option<Ref>,
) -> Reply {
    let command = Command::Ack {
        id,
        reply: ReplyTo::frame(reference),
    };
    forward(session, &queue, command).await
}

/// Hands an ack or nack to the subscription of `queue`, which replies; replies itself when
/// there is no such subscription or it has ended.
pub(super) async fn forward(session: &Session, queue: &QueueName, command: Command) -> Reply {
    let Some(subscription) = session.queues.get(queue) else {
        return Reply::error(
            reference_of(command),
            ErrorCode::NotFound,
            "not subscribed to that queue",
        );
    };
    match subscription.commands.send(command).await {
        Ok(()) => Reply::Deferred,
        Err(mailbox::SendError(command)) => Reply::error(
            reference_of(command),
            ErrorCode::Unavailable,
            "subscription ended",
        ),
    }
}

/// The `ref` a v1 command echoes (v1 commands always answer with a frame).
fn reference_of(command: Command) -> Option<Ref> {
    match command.into_reply() {
        ReplyTo::Frame(reference) => reference.map(|r| *r),
        ReplyTo::Http(_) => None,
    }
}
