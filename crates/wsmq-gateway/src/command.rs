//! What a session, or an HTTP ack on behalf of an SSE stream, asks of one of its queue
//! subscriptions, and where the answer goes.
//!
//! A leaf module: the delivery task consumes these, the sessions and the HTTP ack endpoints
//! make them, and the node's registry of SSE streams holds the senders.

use tokio::sync::oneshot;
use wsmq_proto::{MessageId, Ref};

use crate::error::GatewayError;

/// An ack or nack for a queue subscription.
#[derive(Debug)]
pub(crate) enum Command {
    /// Delete a delivered message; answer `ok` (or `not_found` if it was not delivered here).
    Ack {
        /// The message.
        id: MessageId,
        /// Where the answer goes.
        reply: ReplyTo,
    },
    /// Give a delivered message back, visible again after `delay` seconds, or (`dead`) to the
    /// queue's dead-letter queue at once.
    Nack {
        /// The message.
        id: MessageId,
        /// Seconds until it is visible again.
        delay: u64,
        /// To the dead-letter queue instead.
        dead: bool,
        /// Where the answer goes.
        reply: ReplyTo,
    },
}

impl Command {
    /// Where the answer goes, for an answer made without the subscription.
    pub(crate) fn into_reply(self) -> ReplyTo {
        match self {
            Command::Ack { reply, .. } | Command::Nack { reply, .. } => reply,
        }
    }
}

/// Who is waiting for the outcome of a command.
#[derive(Debug)]
pub(crate) enum ReplyTo {
    /// The session's client, in a frame echoing the request's `ref`. Boxed, as most requests
    /// carry none and commands queue up by the window-full.
    Frame(Option<Box<Ref>>),
    /// An HTTP request (`POST /api/ack`, `/api/nack`): the SSE stream gets no frame, the
    /// request its status.
    Http(oneshot::Sender<Result<(), GatewayError>>),
}

impl ReplyTo {
    /// A frame echoing `reference`.
    pub(crate) fn frame(reference: Option<Ref>) -> ReplyTo {
        ReplyTo::Frame(reference.map(Box::new))
    }
}
