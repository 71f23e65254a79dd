//! `{"op":"nack","queue","id","delay"?,"dead"?}`: give the message back, visible again after
//! `delay` seconds (0 by default), to be delivered again with `rc` incremented; or with
//! `"dead": true`, to the queue's dead-letter queue at once (deleted when it has none).

use wsmq_proto::{MessageId, QueueName, Ref};

use super::{Reply, Session};
use crate::delivery::Command;

/// Forwards the nack to the subscription, which replies.
pub(super) async fn apply(
    session: &mut Session,
    queue: QueueName,
    id: MessageId,
    delay: Option<u32>,
    dead: bool,
    reference: Option<Ref>,
) -> Reply {
    let command = Command::Nack {
        id,
        delay: u64::from(delay.unwrap_or(0)),
        dead,
        reference: reference.map(Box::new),
    };
    super::ack::forward(session, &queue, command).await
}
