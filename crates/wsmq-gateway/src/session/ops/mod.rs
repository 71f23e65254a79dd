//! The v1 ops, one module each, all the same shape: authorize → apply → reply.
//!
//! Each op returns a [`Reply`]: most answer at once; `ack` and `nack` are handed to the
//! queue's subscription task, which answers after its batched delete (pipelining: the session
//! does not wait for Redis between two acks).

mod ack;
mod auth;
mod history;
mod nack;
mod ping;
mod publish;
mod recover;
mod subscribe;
mod unsubscribe;

use wsmq_proto::{ClientFrame, ClientOp, ErrorCode, Ref, ServerFrame, encode_server};

use super::Session;
use crate::error::GatewayError;

/// What an op answers.
pub(super) enum Reply {
    /// This frame, now.
    Now(ServerFrame),
    /// Someone else (a subscription task) answers.
    Deferred,
}

impl Reply {
    /// `ok` with the ref.
    pub(super) fn ok(reference: Option<Ref>) -> Reply {
        Reply::Now(ServerFrame::ok(reference))
    }

    /// `error` with the ref, code and message.
    pub(super) fn error(
        reference: Option<Ref>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Reply {
        Reply::Now(ServerFrame::error(reference, code, message))
    }

    /// `error` for a gateway error (internal details are not shown).
    pub(super) fn failed(reference: Option<Ref>, err: &GatewayError) -> Reply {
        Reply::error(reference, err.code(), err.public_message())
    }
}

/// Runs one decoded client frame and sends its reply.
pub(super) async fn dispatch(session: &mut Session, frame: ClientFrame) {
    let reference = frame.reference;
    let cost = match &frame.op {
        ClientOp::Subscribe(_) | ClientOp::Unsubscribe(_) | ClientOp::Publish(_) => 1.0,
        ClientOp::Auth { .. } => super::rate::AUTH_COST,
        _ => 0.0,
    };
    if cost > 0.0 && !session.ops.take(cost) {
        session.gateway.metrics.rate_limited.inc();
        let frame = ServerFrame::error(
            reference,
            ErrorCode::RateLimited,
            "too many subscribe, unsubscribe, publish or auth ops; slow down",
        );
        session.send(encode_server(&frame));
        return;
    }
    let reply = match frame.op {
        ClientOp::Subscribe(target) => subscribe::apply(session, target, reference).await,
        ClientOp::SubscribeSince { channel, since } => {
            recover::apply(session, channel, Some(since), reference).await
        }
        ClientOp::History {
            channel,
            limit,
            before,
        } => history::apply(session, channel, limit, before, reference).await,
        ClientOp::Unsubscribe(target) => unsubscribe::apply(session, target, reference),
        ClientOp::Ack { queue, id } => ack::apply(session, queue, id, reference).await,
        ClientOp::Nack {
            queue,
            id,
            delay,
            dead,
        } => nack::apply(session, queue, id, delay, dead, reference).await,
        ClientOp::Publish(publish) => publish::apply(session, publish, reference).await,
        ClientOp::Auth { token } => auth::apply(session, &token, reference).await,
        ClientOp::Ping => ping::apply(reference),
    };
    if let Reply::Now(frame) = reply {
        session.send(encode_server(&frame));
    }
}
