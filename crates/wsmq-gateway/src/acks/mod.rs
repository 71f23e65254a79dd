//! `POST /api/ack` and `POST /api/nack`: the acks of SSE streams, which cannot send frames.
//!
//! The caller authenticates with the token of its stream (`Authorization: Bearer`) and names
//! one message, `{"queue":"q","id":"…"}` (a nack may add `"delay"` seconds or `"dead":true`,
//! as the v1 op). The ack goes to the queue subscription of one of the caller's own streams
//! that holds the message, through its command mailbox, exactly as a v1 `ack` frame would:
//! the subscription deletes (or releases) it in its next batch and its window frees at once.
//! A stream on this node is found in the node's stream registry; one on another node through
//! [`relay`], which asks the other nodes. An id none of the caller's streams holds is a 404.
//!
//! Bodies are bounded ([`MAX_BODY`], 413 past it), so a client cannot make the node buffer
//! more than that per request, and so is the time they take to arrive (408 past
//! `--handshake-timeout`, see `http::read_body`).

pub(crate) mod relay;

use std::time::Duration;

use hyper::{Request, Response, StatusCode, body::Incoming};
use serde_json::json;
use tokio::sync::oneshot;
use wsmq_proto::{MessageId, QueueName};

use crate::{
    command::{Command, ReplyTo},
    error::GatewayError,
    http::{Body, error_response, json_response, read_body},
    state::Gateway,
    upgrade,
};

/// The largest request body: one queue name and one id, with room to spare.
pub(crate) const MAX_BODY: usize = 4096;
/// How long a subscription may take to answer (it answers after its batched engine call).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `POST /api/ack`.
    Ack,
    /// `POST /api/nack`.
    Nack,
}

/// One ack or nack, as the endpoints and the relay carry it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckRequest {
    /// The queue.
    pub queue: QueueName,
    /// The message.
    pub id: MessageId,
    /// Nack: seconds until the message is visible again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<u32>,
    /// Nack: to the dead-letter queue instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead: bool,
}

/// Handles `POST /api/ack` or `/api/nack`.
pub(crate) async fn handle(req: Request<Incoming>, gateway: &Gateway, op: Op) -> Response<Body> {
    // Not `admit`: a draining node still takes acks, which is what lets its streams end.
    let identity = match upgrade::authenticate(&req, gateway).await {
        Ok(identity) => identity,
        Err(refused) => return refused,
    };
    let deadline = gateway.config.listen.handshake_timeout;
    let body = match read_body(req.into_body(), MAX_BODY, deadline).await {
        Ok(body) => body,
        Err(err) => return err.response(),
    };
    let request: AckRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error_response(&GatewayError::Invalid(format!(
                "body must be {{\"queue\": q, \"id\": message id{}}}: {err}",
                if op == Op::Nack {
                    ", \"delay\"?: s, \"dead\"?: bool"
                } else {
                    ""
                }
            )));
        }
    };
    if op == Op::Ack && (request.delay.is_some() || request.dead) {
        return error_response(&GatewayError::Invalid(
            "`delay` and `dead` are for nacks".into(),
        ));
    }
    let user = identity.user.as_str();
    let outcome = match apply_local(gateway, user, op, &request).await {
        Some(outcome) => outcome,
        None => relay::apply_remote(gateway, user, op, &request).await,
    };
    match outcome {
        Ok(()) => json_response(StatusCode::OK, &json!({"ok": true})),
        Err(err) => error_response(&err),
    }
}

/// Applies the ack to the first of `user`'s streams on this node that holds the message;
/// `None` when none does.
pub(crate) async fn apply_local(
    gateway: &Gateway,
    user: &str,
    op: Op,
    request: &AckRequest,
) -> Option<Result<(), GatewayError>> {
    for subscription in gateway.streams.subscriptions(user, request.queue.as_str()) {
        let (tx, rx) = oneshot::channel();
        let reply = ReplyTo::Http(tx);
        let id = request.id.clone();
        let command = match op {
            Op::Ack => Command::Ack { id, reply },
            Op::Nack => Command::Nack {
                id,
                delay: u64::from(request.delay.unwrap_or(0)),
                dead: request.dead,
                reply,
            },
        };
        if subscription.send(command).await.is_err() {
            // The subscription ended: it holds nothing any more.
            continue;
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(Err(GatewayError::NotFound(_)))) | Ok(Err(_)) => continue,
            Ok(Ok(outcome)) => return Some(outcome),
            Err(_) => {
                return Some(Err(GatewayError::Engine(
                    crate::engine::EngineError::Unavailable("ack timed out".into()),
                )));
            }
        }
    }
    None
}

/// The answer when no stream of the caller holds the message.
pub(crate) fn not_held(request: &AckRequest) -> GatewayError {
    GatewayError::NotFound(format!(
        "no stream of yours holds message {} of queue {}",
        request.id, request.queue
    ))
}
