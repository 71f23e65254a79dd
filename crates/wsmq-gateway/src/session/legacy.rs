//! The legacy dialect of the original Node `websocketmq`.
//!
//! The client sends `/subscribe/<queue>`; the queue is created if missing and every message is
//! written as `{"message":"<body>"}` and deleted once its frame has been written to the socket
//! (the writer reports it). Any other text is ignored, as the original ignored the timestamps
//! its clients send. The original had no authorization; here a legacy client may consume what
//! a v1 client may, and a refused subscribe closes the session with 4003 (the dialect has no
//! error frame to say so).

use tracing::warn;
use wsmq_proto::{CloseCode, LegacyCommand};

use super::{
    Session,
    subscribe::{self, Refusal},
};

/// Handles one text frame from a legacy client.
pub(super) async fn on_text(session: &mut Session, text: &str) {
    let queue = match LegacyCommand::parse(text) {
        Ok(LegacyCommand::Subscribe(queue)) => queue,
        // Not a command, or `/subscribe/` with a bad name: the original ignored both.
        Ok(LegacyCommand::Ignored) | Err(_) => return,
    };
    let name = queue.clone();
    if !session.ops.take(1.0) {
        // No error frame in this dialect: dropped, as frames over the rate are.
        session.gateway.metrics.rate_limited.inc();
        warn!(queue = %name, "legacy subscribe over --op-rate-limit ignored");
        return;
    }
    match subscribe::queue(session, queue, None).await {
        Ok(()) => tracing::info!(queue = %name, "legacy subscribed"),
        Err(Refusal::Forbidden(_)) => session.closer.close(CloseCode::FORBIDDEN),
        Err(Refusal::TooMany { .. }) => {
            warn!(queue = %name, "legacy subscribe over the subscription limit ignored");
        }
        Err(Refusal::QueueBudget(_)) => {
            warn!(queue = %name, "legacy subscribe to a new queue over the creation budget ignored");
        }
        // Closed, so that the client reconnects and tries again.
        Err(Refusal::Engine(_)) => session.closer.close(CloseCode::INTERNAL),
    }
}
