//! The legacy dialect of the original Node `websocketmq`.
//!
//! The client sends `/subscribe/<queue>`; the queue is created if missing and every message is
//! written as `{"message":"<body>"}` and deleted once its frame has been written to the socket
//! (the writer reports it). Any other text is ignored, as the original ignored the timestamps
//! its clients send. The original had no authorization; here a legacy client may consume what
//! a v1 client may, and a refused subscribe closes the session with 4003 (the dialect has no
//! error frame to say so).

use tracing::{info, warn};
use wsmq_proto::{CloseCode, LegacyCommand};

use super::{Dialect, Session};
use crate::delivery;

/// Handles one text frame from a legacy client.
pub async fn on_text(session: &mut Session, text: &str) {
    let queue = match LegacyCommand::parse(text) {
        Ok(LegacyCommand::Subscribe(queue)) => queue,
        // Not a command, or `/subscribe/` with a bad name: the original ignored both.
        Ok(LegacyCommand::Ignored) | Err(_) => return,
    };
    if session.queues.contains_key(&queue) {
        return;
    }
    let gateway = &session.gateway;
    if !gateway.auth.policy.may_consume(&session.identity, &queue) {
        info!(queue = %queue, "legacy subscribe refused");
        session.closer.close(CloseCode::FORBIDDEN);
        return;
    }
    if session.queues.len() >= gateway.config.max_subscriptions {
        warn!(queue = %queue, "legacy subscribe over the subscription limit ignored");
        return;
    }
    if let Err(err) = gateway.engine.ensure_queue(queue.as_str()).await {
        gateway.metrics.engine_error("ensure_queue");
        warn!(queue = %queue, cause = %err, "cannot create queue; closing so the client retries");
        session.closer.close(CloseCode::INTERNAL);
        return;
    }
    let subscription = delivery::spawn(
        gateway,
        queue.clone(),
        Dialect::Legacy,
        session.out.clone(),
        &session.token,
    );
    info!(queue = %queue, "legacy subscribed");
    session.queues.insert(queue, subscription);
}
