//! `{"op":"ping"}` → `{"op":"pong"}` (with the ref): an application-level liveness check.

use wsmq_proto::{Ref, ServerFrame};

use super::Reply;

/// Answers a ping.
pub(super) fn apply(reference: Option<Ref>) -> Reply {
    Reply::Now(ServerFrame::Pong { reference })
}
