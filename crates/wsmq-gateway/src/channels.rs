//! The per-node channel hub: local fan-out of broadcast channel messages.
//!
//! Each channel with local subscribers has one bounded `tokio::sync::broadcast` sender. A
//! message arriving for the channel (from Redis pub/sub, or from a local publish with the
//! in-memory engine) is encoded into its v1 frame ONCE, and every local subscriber receives a
//! clone of the same `Utf8Bytes` (a reference-counted buffer), so fan-out to N sessions costs
//! N pointer copies rather than N JSON encodings.
//!
//! Channels are at-most-once: a subscriber that falls more than [`CHANNEL_BUFFER`] frames
//! behind loses the oldest ones (and the loss is counted).

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use tokio_util::sync::{CancellationToken, DropGuard};
use wsmq_proto::{ChannelName, encode_channel_message};

use crate::{
    engine::{ChannelSubscription, interest::Interests},
    session::{OutFrame, Outbound},
    state::Gateway,
};

/// Frames buffered per channel for the slowest local subscriber.
pub const CHANNEL_BUFFER: usize = 1024;

/// Local channel subscriptions of one node.
pub struct ChannelHub {
    /// channel name → sender of encoded frames, with its local subscriber count.
    channels: Arc<Interests<broadcast::Sender<Utf8Bytes>>>,
}

impl ChannelHub {
    /// A hub that calls `on_change(channel, true)` when the first local session subscribes to
    /// a channel and `(channel, false)` after the last one left.
    pub fn new(on_change: impl Fn(&str, bool) + Send + Sync + 'static) -> ChannelHub {
        ChannelHub {
            channels: Interests::new(Box::new(move |channel, _, first| {
                on_change(channel, first);
            })),
        }
    }

    /// Subscribes one local session to `channel`.
    pub fn subscribe(&self, channel: &str) -> ChannelSubscription {
        let (sender, guard) = self
            .channels
            .join(channel, || broadcast::channel(CHANNEL_BUFFER).0);
        ChannelSubscription {
            frames: sender.subscribe(),
            _guard: guard,
        }
    }

    /// Hands a channel message to every local subscriber; returns how many there were.
    pub fn dispatch(&self, channel: &str, body: &str) -> usize {
        let Some(sender) = self.channels.get(channel) else {
            return 0;
        };
        let Some(frame) = encode_channel_frame(channel, body) else {
            return 0;
        };
        let frame = Utf8Bytes::from(frame);
        sender.send(frame).unwrap_or(0)
    }

    /// The channels that have local subscribers (to re-subscribe after a reconnect).
    pub fn channels(&self) -> Vec<String> {
        self.channels.names()
    }
}

/// Forwards a channel subscription's frames to a session until the returned guard drops or
/// the session ends. A subscriber that lagged loses frames (at-most-once) and they are counted.
pub fn spawn_forwarder(
    gateway: &Arc<Gateway>,
    subscription: ChannelSubscription,
    out: Outbound,
    session_token: &CancellationToken,
) -> DropGuard {
    let token = session_token.child_token();
    let cancel = token.clone();
    let metrics_gateway = Arc::clone(gateway);
    gateway.shutdown.spawn(async move {
        // Bind the whole subscription: an `async move` block would otherwise capture only the
        // fields it uses, dropping the guard (and the node's interest) at once.
        let mut subscription = subscription;
        let metrics = &metrics_gateway.metrics;
        metrics.subscriptions.inc();
        loop {
            let frame = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                frame = subscription.frames.recv() => frame,
            };
            match frame {
                Ok(frame) => {
                    if !out.push(OutFrame::text(frame)) {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    metrics.channel_lagged.inc_by(lost);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        metrics.subscriptions.dec();
    });
    token.drop_guard()
}

/// `{"op":"message","channel":…,"message":…}`, encoded by `wsmq-proto`; `None` for a name
/// that is not a valid channel name (nobody can be subscribed to it).
pub fn encode_channel_frame(channel: &str, body: &str) -> Option<String> {
    let channel = ChannelName::new(channel).ok()?;
    let mut out = String::new();
    encode_channel_message(&mut out, &channel, body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_encoding_reaches_every_subscriber() {
        let hub = ChannelHub::new(|_, _| {});
        let mut a = hub.subscribe("news");
        let mut b = hub.subscribe("news");
        assert_eq!(hub.dispatch("news", "hi"), 2);
        assert_eq!(hub.dispatch("other", "hi"), 0);
        let fa = a.frames.recv().await.unwrap();
        let fb = b.frames.recv().await.unwrap();
        assert_eq!(
            fa.as_str(),
            r#"{"op":"message","channel":"news","message":"hi"}"#
        );
        // Same buffer, not a copy.
        assert_eq!(fa.as_str().as_ptr(), fb.as_str().as_ptr());
    }
}
