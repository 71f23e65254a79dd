//! The v1 JSON dialect: client and server frames, tagged by `"op"`.
//!
//! A client frame is a [`ClientOp`] plus an optional `ref` that the server echoes in its reply
//! ([`ClientFrame`]); the `ref` lives beside the op rather than in every variant so that the
//! session code can match on the op and still reply with the ref in one place, including for
//! frames that fail to decode ([`Rejection`]).
//!
//! Decoding is done by hand over a flat struct of optional fields instead of serde's tagged-enum
//! derive: that gives precise, short errors ("`delay` must be an integer from 0 to 9999999"),
//! tells an unknown op apart from a bad field, never echoes the input, and ignores unknown fields
//! for forward compatibility. See [`decode_request`].
//!
//! ```text
//! {"op":"subscribe","queue":"q","ref":1}        -> ClientOp::Subscribe(Target::Queue(q))
//! {"op":"ok","ref":1}                           <- ServerFrame::Ok
//! {"op":"message","queue":"q","id":"…","message":"…","rc":1,"sent":1700000000123}
//! ```

mod decode;
mod encode;

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub use decode::{Rejection, decode_client, decode_publish_body, decode_request, decode_server};
pub use encode::{
    encode_channel_message, encode_channel_publication, encode_client, encode_queue_message,
    encode_server,
};

use crate::error::ErrorCode;
use crate::name::{ChannelName, MessageId, QueueName, UserId};

/// Longest accepted string `ref`, in bytes. Refs are correlation ids, not payloads; the cap
/// keeps a client from making the server echo large strings.
pub const MAX_REF_LEN: usize = 128;

/// Largest accepted `delay`, in seconds (the rsmq limit).
pub const MAX_DELAY_SECS: u32 = 9_999_999;

/// Most publications one `history` request returns.
pub const MAX_HISTORY_LIMIT: u32 = 1000;

/// Publications a `history` request without `limit` returns.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// Longest accepted `epoch`, in bytes. Epochs are short tokens made by the server; the cap
/// keeps a client from making the server hold or compare large strings.
pub const MAX_EPOCH_LEN: usize = 64;

/// A place in a channel's history: the `offset` of a publication within an `epoch`.
///
/// On the wire: `{"offset":41,"epoch":"…"}`, the `since` of a recovering `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The publication's number, +1 per publication of the channel (the first is 1; 0 means
    /// "before the first").
    pub offset: u64,
    /// Changes whenever the channel's stored history is lost; offsets of two epochs do not
    /// compare.
    pub epoch: String,
}

/// One publication of a channel's history, in a `history` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Its offset.
    pub offset: u64,
    /// The body.
    pub message: String,
    /// When it was published, Unix milliseconds.
    pub sent: u64,
}

/// A client-chosen correlation id, echoed in the reply: a JSON number or string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ref {
    /// A JSON number, echoed as it was parsed (integers exactly).
    Number(serde_json::Number),
    /// A JSON string of at most [`MAX_REF_LEN`] bytes.
    String(String),
}

impl From<u64> for Ref {
    fn from(n: u64) -> Self {
        Ref::Number(n.into())
    }
}

impl From<&str> for Ref {
    fn from(s: &str) -> Self {
        Ref::String(s.to_owned())
    }
}

impl From<String> for Ref {
    fn from(s: String) -> Self {
        Ref::String(s)
    }
}

/// What a subscribe, unsubscribe or publish addresses: a queue or a channel, never both.
///
/// Serializes as `{"queue":"q"}` or `{"channel":"c"}` (flattened into frames). Deserializing
/// from an object reads only those two keys, ignores the rest and rejects both or neither.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// An rsmq queue: at-least-once, acknowledged, one consumer per message.
    Queue(QueueName),
    /// A broadcast channel: at-most-once fan-out to every subscriber.
    Channel(ChannelName),
}

impl Target {
    /// Combines the optional `queue` and `channel` fields of a frame.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Invalid`](crate::ProtoError::Invalid) when both or neither are present.
    pub fn from_parts(
        queue: Option<QueueName>,
        channel: Option<ChannelName>,
    ) -> Result<Self, crate::ProtoError> {
        match (queue, channel) {
            (Some(q), None) => Ok(Target::Queue(q)),
            (None, Some(c)) => Ok(Target::Channel(c)),
            (Some(_), Some(_)) => Err(crate::ProtoError::invalid(BOTH_TARGETS)),
            (None, None) => Err(crate::ProtoError::invalid(NO_TARGET)),
        }
    }
}

const BOTH_TARGETS: &str = "give either `queue` or `channel`, not both";
const NO_TARGET: &str = "missing field `queue` or `channel`";

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;

        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = Target;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with `queue` or `channel`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Target, A::Error> {
                let mut queue: Option<QueueName> = None;
                let mut channel: Option<ChannelName> = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "queue" if queue.is_some() => {
                            return Err(de::Error::duplicate_field("queue"));
                        }
                        "channel" if channel.is_some() => {
                            return Err(de::Error::duplicate_field("channel"));
                        }
                        "queue" => queue = map.next_value()?,
                        "channel" => channel = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Target::from_parts(queue, channel).map_err(de::Error::custom)
            }
        }

        deserializer.deserialize_map(TargetVisitor)
    }
}

/// A publish request: a v1 `publish` frame, and also the body of `POST /api/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publish {
    /// Where to publish.
    #[serde(flatten)]
    pub target: Target,
    /// The message body, any string (size limits are the gateway's to enforce).
    pub message: String,
    /// Seconds before a queue message becomes visible; `None` means the queue's default.
    /// Always `None` for channels (decoding refuses a channel publish with a delay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<u32>,
}

/// One client operation, tagged by `"op"` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientOp {
    /// Consume a queue (created if missing) or receive a channel.
    Subscribe(Target),
    /// Stop consuming a queue or receiving a channel.
    Unsubscribe(Target),
    /// Done with a message: delete it.
    Ack {
        /// The queue the message came from.
        queue: QueueName,
        /// The message id from the `message` frame.
        id: MessageId,
    },
    /// Give a message back, visible again after `delay` seconds (`None` = now); or, with
    /// `dead`, to the queue's dead-letter queue at once (deleted when the queue has none).
    Nack {
        /// The queue the message came from.
        queue: QueueName,
        /// The message id from the `message` frame.
        id: MessageId,
        /// Seconds until the message is visible again, at most [`MAX_DELAY_SECS`]. Never
        /// given together with `dead`.
        #[serde(skip_serializing_if = "Option::is_none")]
        delay: Option<u32>,
        /// The client cannot handle the message: dead-letter it instead of giving it back
        /// (`"dead": true`; absent is `false`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dead: bool,
    },
    /// Receive a channel, starting after `since` in its history (recovery after a reconnect).
    /// On the wire: a `subscribe` to a channel with `"since":{"offset":…,"epoch":"…"}`.
    #[serde(rename = "subscribe")]
    SubscribeSince {
        /// The channel.
        channel: ChannelName,
        /// The last publication the client has; it gets every one after it.
        since: StreamPosition,
    },
    /// Page back through a channel's history.
    History {
        /// The channel.
        channel: ChannelName,
        /// Most publications returned, 1 to [`MAX_HISTORY_LIMIT`].
        limit: u32,
        /// Only publications before this offset (exclusive); `None`: up to the latest.
        #[serde(skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
    },
    /// Publish to a queue or channel.
    Publish(Publish),
    /// Replace the session's JWT before it expires.
    Auth {
        /// The new JWT.
        token: String,
    },
    /// Liveness check; answered with `pong`.
    Ping,
}

impl ClientOp {
    /// The wire name of the op, e.g. `"subscribe"`; a bounded set, fit for a metric label.
    pub const fn name(&self) -> &'static str {
        match self {
            ClientOp::Subscribe(_) | ClientOp::SubscribeSince { .. } => "subscribe",
            ClientOp::History { .. } => "history",
            ClientOp::Unsubscribe(_) => "unsubscribe",
            ClientOp::Ack { .. } => "ack",
            ClientOp::Nack { .. } => "nack",
            ClientOp::Publish(_) => "publish",
            ClientOp::Auth { .. } => "auth",
            ClientOp::Ping => "ping",
        }
    }
}

/// A decoded client frame: the operation and the `ref` to echo in the reply.
///
/// Deserializing (e.g. with `serde_json::from_str`) applies the same rules as
/// [`decode_client`], minus the nesting-depth guard; prefer the `decode_*` functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientFrame {
    /// What the client asks for.
    #[serde(flatten)]
    pub op: ClientOp,
    /// Correlation id to echo in the reply, if the client sent one.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<Ref>,
}

impl ClientFrame {
    /// A frame without a `ref`.
    pub fn new(op: ClientOp) -> Self {
        ClientFrame {
            op,
            reference: None,
        }
    }

    /// Sets the `ref`.
    pub fn with_ref(mut self, reference: impl Into<Ref>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}

impl<'de> Deserialize<'de> for ClientFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        decode::RawFrame::deserialize(deserializer)?
            .into_frame()
            .map_err(|rejection| de::Error::custom(rejection.error))
    }
}

/// A message delivered to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageFrame {
    /// From a queue: must be acked (or nacked) by `id`.
    Queue {
        /// The queue it came from.
        queue: QueueName,
        /// The rsmq message id.
        id: MessageId,
        /// The body.
        message: String,
        /// Receive count, 1 on first delivery.
        rc: u64,
        /// When it was sent, Unix milliseconds (read from the id).
        sent: u64,
    },
    /// From a channel: fire and forget.
    Channel {
        /// The channel it was published to.
        channel: ChannelName,
        /// The body.
        message: String,
        /// The publication's offset, when the channel has history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        /// The history's epoch, when the channel has history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
}

/// A frame from server to client, tagged by `"op"` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of a v1 session.
    Welcome {
        /// The authenticated user.
        user: UserId,
        /// The node that holds the session (for debugging and `wsmq-cli nodes`).
        node: String,
        /// A fresh JWT when the session was admitted by access token; `null` otherwise.
        token: Option<String>,
    },
    /// A request succeeded.
    Ok {
        /// The request's `ref`.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        /// The new message's id, after a publish to a queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<MessageId>,
        /// The channel's latest offset: after a subscribe to (or a publish on) a channel with
        /// history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        /// The epoch of that offset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// After a subscribe with `since`: whether every publication after it follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// After `history`: the publications, oldest first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messages: Option<Vec<HistoryItem>>,
    },
    /// A request failed.
    Error {
        /// The request's `ref`, when it could be read.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
        /// What kind of failure.
        code: ErrorCode,
        /// A short human-readable explanation; never contains secrets or the whole request.
        message: String,
    },
    /// A delivered message.
    Message(MessageFrame),
    /// Publications of a subscribed channel were lost (its history no longer holds them, or
    /// was lost): the next message of the channel follows `offset` in `epoch`.
    Reset {
        /// The channel.
        channel: ChannelName,
        /// The publication before the next one delivered.
        offset: u64,
        /// The channel's epoch now.
        epoch: String,
    },
    /// Reply to `ping`.
    Pong {
        /// The ping's `ref`.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Ref>,
    },
}

impl ServerFrame {
    /// `{"op":"ok","ref":…}`.
    pub fn ok(reference: Option<Ref>) -> Self {
        ServerFrame::Ok {
            reference,
            id: None,
            offset: None,
            epoch: None,
            recovered: None,
            messages: None,
        }
    }

    /// `{"op":"error","ref":…,"code":…,"message":…}`.
    pub fn error(reference: Option<Ref>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error {
            reference,
            code,
            message: message.into(),
        }
    }

    /// `{"op":"pong","ref":…}`.
    pub fn pong(reference: Option<Ref>) -> Self {
        ServerFrame::Pong { reference }
    }
}

impl From<Rejection> for ServerFrame {
    fn from(rejection: Rejection) -> Self {
        ServerFrame::error(
            rejection.reference,
            rejection.error.code(),
            rejection.error.to_string(),
        )
    }
}
