//! `{"op":"subscribe","queue"|"channel":…}`: start consuming a queue or receiving a channel.
//!
//! A queue is created if missing and consumed by a delivery task with the session's window; a
//! channel joins the node's hub (both in `session::subscribe`, shared with the legacy
//! dialect). `ok` is queued before the first message can be, so the client always sees the
//! reply first. Subscribing twice to the same thing is a no-op `ok`.

use wsmq_proto::{Ref, ServerFrame, Target, encode_server};

use super::{Reply, Session};
use crate::{outbound::OutFrame, session::subscribe};

/// Authorizes and starts the subscription.
pub(super) async fn apply(session: &mut Session, target: Target, reference: Option<Ref>) -> Reply {
    let ok = encode_server(&ServerFrame::ok(reference.clone()));
    let subscribed = match target {
        Target::Queue(queue) => subscribe::queue(session, queue, Some(OutFrame::text(ok))).await,
        Target::Channel(channel) if session.gateway.history_policy(channel.as_str()).is_some() => {
            return super::recover::apply(session, channel, None, reference).await;
        }
        Target::Channel(channel) => subscribe::channel(session, channel, ok.into()),
    };
    match subscribed {
        Ok(()) => Reply::Deferred,
        Err(refusal) => Reply::Now(refusal.into_frame(reference)),
    }
}
