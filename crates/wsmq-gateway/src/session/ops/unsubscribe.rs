//! `{"op":"unsubscribe","queue"|"channel":…}`: ends a subscription of this session.
//!
//! Ending a queue subscription releases its in-flight messages at once (the subscription
//! task does that as it stops), so they are redelivered without waiting for the vt.

use wsmq_proto::{ErrorCode, Ref, Target};

use super::{Reply, Session};

/// Ends the subscription, or answers `not_found` if there is none.
pub(super) fn apply(session: &mut Session, target: Target, reference: Option<Ref>) -> Reply {
    let removed = match &target {
        Target::Queue(queue) => session.queues.remove(queue).is_some(),
        Target::Channel(channel) => session.channels.remove(channel).is_some(),
    };
    if removed {
        Reply::ok(reference)
    } else {
        Reply::error(reference, ErrorCode::NotFound, "not subscribed")
    }
}
