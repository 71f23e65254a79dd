//! Acks of streams on other nodes: the node that takes the `POST` and holds no stream with
//! the message asks every node, on the broker channel [`internal::ACK_REQUESTS`]; the node
//! whose stream holds it applies it there (`apply_local`: its subscription deletes or releases
//! the message and frees its window at once) and answers on the asking node's own channel,
//! as do the nodes that hold nothing. The asker knows from the publish how many nodes it
//! reached, so "nobody holds it" is a prompt 404 rather than a timeout.
//!
//! The requests carry the user the asking node authenticated; nodes trust one another (they
//! share the broker already). With one node (the in-memory engine) nobody else is asked.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{AckRequest, Op, apply_local, not_held};
use crate::{
    engine::EngineError,
    error::GatewayError,
    internal::{self, InternalMessage},
    state::Gateway,
};

/// How long the asking node waits for the others.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// An ack request to the other nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The asking node (answers go to its channel).
    from: String,
    /// The request's number on that node.
    n: u64,
    /// Whose streams.
    user: String,
    /// Nack rather than ack.
    nack: bool,
    /// The message.
    ack: AckRequest,
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    /// The request's number.
    n: u64,
    /// Whether a stream of this node held the message.
    held: bool,
    /// When held and it failed: the wire code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<(String, String)>,
}

/// Asks the other nodes to apply the ack to one of `user`'s streams there.
pub(crate) async fn apply_remote(
    gateway: &Gateway,
    user: &str,
    op: Op,
    ack: &AckRequest,
) -> Result<(), GatewayError> {
    let (n, outcome) = gateway.relay.start();
    let request = Request {
        from: gateway.config.node_id.clone(),
        n,
        user: user.to_owned(),
        nack: op == Op::Nack,
        ack: ack.clone(),
    };
    let body = serde_json::to_string(&request).map_err(|e| GatewayError::Invalid(e.to_string()))?;
    let reached = match gateway
        .engine
        .broker
        .publish(internal::ACK_REQUESTS, &body)
        .await
    {
        Ok(reached) => reached,
        Err(err) => {
            gateway.relay.forget(n);
            return Err(GatewayError::Engine(err));
        }
    };
    // This node listens too, and ignores its own requests.
    gateway.relay.asked(n, reached.saturating_sub(1));
    match tokio::time::timeout(ANSWER_TIMEOUT, outcome).await {
        Ok(Ok(Some(outcome))) => outcome,
        Ok(Ok(None)) => Err(not_held(ack)),
        Ok(Err(_)) | Err(_) => {
            gateway.relay.forget(n);
            Err(GatewayError::Engine(EngineError::Unavailable(
                "not every node answered".into(),
            )))
        }
    }
}

/// Starts the node's relay worker: answers other nodes' requests, and hands the answers to
/// this node's requests to [`crate::streams::AckRelay`].
pub(crate) fn spawn(gateway: &Arc<Gateway>) {
    let Some(mut inbox) = gateway.relay_inbox.take() else {
        return;
    };
    let tracker = Arc::clone(gateway);
    let gateway = Arc::clone(gateway);
    let cancel = gateway.shutdown.token.clone();
    let node = gateway.config.node_id.clone();
    let answers = internal::ack_answers(&node);
    let worker = async move {
        loop {
            let (channel, body): InternalMessage = tokio::select! {
                () = cancel.cancelled() => break,
                message = inbox.recv() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            if channel == answers {
                match serde_json::from_str::<Answer>(&body) {
                    Ok(answer) => gateway.relay.answer(answer.n, outcome_of(answer)),
                    Err(err) => debug!(cause = %err, "unreadable ack answer"),
                }
            } else if channel == internal::ACK_REQUESTS {
                match serde_json::from_str::<Request>(&body) {
                    Ok(request) if request.from != node => {
                        // Its own task: applying waits for a subscription's engine call.
                        let gateway = Arc::clone(&gateway);
                        tokio::spawn(async move { answer(&gateway, request).await });
                    }
                    Ok(_) => {}
                    Err(err) => debug!(cause = %err, "unreadable ack request"),
                }
            }
        }
    };
    tracker.shutdown.spawn(worker);
}

/// Applies another node's request here if a stream of this node holds the message, and
/// answers either way.
async fn answer(gateway: &Gateway, request: Request) {
    let op = if request.nack { Op::Nack } else { Op::Ack };
    let outcome = apply_local(gateway, &request.user, op, &request.ack).await;
    let answer = Answer {
        n: request.n,
        held: outcome.is_some(),
        error: match outcome {
            Some(Err(err)) => Some((err.code().as_str().to_owned(), err.public_message())),
            _ => None,
        },
    };
    let Ok(body) = serde_json::to_string(&answer) else {
        return;
    };
    let channel = internal::ack_answers(&request.from);
    if let Err(err) = gateway.engine.broker.publish(&channel, &body).await {
        debug!(cause = %err, "cannot answer an ack request");
    }
}

/// What an answer says: `None` when not held.
fn outcome_of(answer: Answer) -> Option<Result<(), GatewayError>> {
    if !answer.held {
        return None;
    }
    Some(match answer.error {
        None => Ok(()),
        Some((code, message)) => Err(match code.as_str() {
            "not_found" => GatewayError::NotFound(message),
            "invalid" => GatewayError::Invalid(message),
            "forbidden" => GatewayError::Forbidden(message),
            _ => GatewayError::Engine(EngineError::Unavailable(message)),
        }),
    })
}
