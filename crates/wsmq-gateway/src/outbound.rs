//! What a session sends: the outbound frame types, the bounded queue they wait in for the
//! socket writer, and the [`Closer`] that ends a session with a close code.
//!
//! Producers (replies, queue deliveries, channel frames) push with [`Outbound::push`], which
//! never waits: a full queue means the client is not reading, and closes the session (4008).
//!
//! Queue deliveries, and the replies to acks and nacks of them, go in with
//! [`Outbound::push_credit`] instead: they are bounded by the subscriptions' credit
//! (`--window` each, checked against `--max-subscriptions` at start), so they never count
//! against `--outbound-buffer`. Otherwise a healthy client that subscribes to a few queues
//! with a backlog (17 × 64 deliveries at once > 1,024) would be closed as slow, its messages
//! released, and the same would happen again on every reconnect.

use std::sync::{Arc, OnceLock};

use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use wsmq_proto::CloseCode;

use crate::mailbox::{self, TrySendError};

/// The protocol a session speaks, chosen at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The original Node gateway's: `/subscribe/<q>` in, `{"message":…}` out.
    Legacy,
    /// JSON ops (subprotocol `wsmq.v1`).
    V1,
}

/// A frame on its way to the socket.
///
/// Kept small: a busy session's outbound queue holds up to `--outbound-buffer` of these.
#[derive(Debug)]
pub(crate) struct OutFrame {
    /// What to send.
    pub payload: Payload,
    /// For queue deliveries: what to do once the frame is written.
    pub report: Option<WriteReport>,
}

/// The frames a session sends (the close frame is the writer's own).
#[derive(Debug)]
pub(crate) enum Payload {
    /// Text; cheap to clone, channel frames share one buffer.
    Text(Utf8Bytes),
    /// A keep-alive ping.
    Ping,
}

impl Payload {
    pub(crate) fn into_message(self) -> Message {
        match self {
            Payload::Text(text) => Message::Text(text),
            Payload::Ping => Message::Ping(Default::default()),
        }
    }
}

impl OutFrame {
    /// A frame with nothing to report.
    pub(crate) fn text(text: impl Into<Utf8Bytes>) -> OutFrame {
        OutFrame {
            payload: Payload::Text(text.into()),
            report: None,
        }
    }
}

/// What the writer does after writing a queue delivery.
#[derive(Debug)]
pub(crate) struct WriteReport {
    /// Send time, Unix ms (for the latency histogram).
    pub sent_ms: u64,
    /// Legacy: the message id, and where to report it as written so the message gets deleted.
    /// Boxed, so that v1 frames, the common case, stay small.
    pub ack_on_write: Option<Box<(String, mailbox::Sender<String>)>>,
}

/// Ends a session with a close code; the first code set wins.
#[derive(Debug, Clone)]
pub(crate) struct Closer {
    /// The session's token, a child of the root shutdown token.
    token: CancellationToken,
    /// The code to close with; unset when the root was cancelled (then 1012).
    code: Arc<OnceLock<CloseCode>>,
}

impl Closer {
    /// A closer cancelling `token`.
    pub(crate) fn new(token: CancellationToken) -> Closer {
        Closer {
            token,
            code: Arc::new(OnceLock::new()),
        }
    }

    /// Closes the session with `code` (unless it is already closing).
    pub(crate) fn close(&self, code: CloseCode) {
        let _ = self.code.set(code);
        self.token.cancel();
    }

    /// Whether the session is closing.
    pub(crate) fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the session is closing.
    pub(crate) async fn closed(&self) {
        self.token.cancelled().await;
    }

    /// The code the session closes with.
    pub(crate) fn code(&self) -> CloseCode {
        self.code
            .get()
            .copied()
            .unwrap_or(CloseCode::SERVICE_RESTART)
    }
}

/// The producer side of a session's bounded outbound queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// Bounded by `--outbound-buffer`.
    tx: mailbox::Sender<OutFrame>,
    /// Closes the session with 4008 when the queue is full.
    closer: Closer,
    /// The session's queue subscriptions: in a drain, the session closes (1012) once they
    /// have all ended, i.e. once the client has acked everything it held.
    pub deliveries: tokio_util::task::TaskTracker,
}

impl Outbound {
    /// The producer side of `tx`, closing the session through `closer` when it is full.
    pub(crate) fn new(tx: mailbox::Sender<OutFrame>, closer: Closer) -> Outbound {
        Outbound {
            tx,
            closer,
            deliveries: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Queues a frame; `false` when the session is closing or the client is too slow
    /// (which closes the session with 4008).
    pub(crate) fn push(&self, frame: OutFrame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                // A session already closing has stopped writing: its queue fills up (with
                // the last replies of its subscriptions), but that does not make the client
                // slow, and must not turn a 1000 or 1012 into 4008.
                if !self.closer.token.is_cancelled() {
                    self.closer.close(CloseCode::SLOW_CONSUMER);
                }
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame, waiting for room: for a burst the client asked for (a history replay),
    /// whose size says nothing about the client being slow. `false` once the session closes.
    pub(crate) async fn send(&self, frame: OutFrame) -> bool {
        tokio::select! {
            sent = self.tx.send(frame) => sent.is_ok(),
            () = self.closer.token.cancelled() => false,
        }
    }

    /// Queues a frame bounded by credit (a queue delivery, or the reply to an ack or nack of
    /// one): it never makes the client count as slow. `false` when the session is closing.
    pub(crate) fn push_credit(&self, frame: OutFrame) -> bool {
        self.tx.send_exempt(frame).is_ok()
    }
}
