//! Wire types for wsmq: frames, legacy commands, names, error and close codes, token formats.
//!
//! This crate does **no I/O**: no sockets, no files, no async runtime and no clock. Everything
//! here is a pure function of its inputs, so the gateway, the CLI and the tests share one
//! definition of the protocol and can exercise it without a network. Functions that depend on
//! time (JWT expiry, access-token `iat`) take the current Unix time as an argument.
//!
//! # Layout
//!
//! - [`name`]: [`QueueName`], [`ChannelName`], [`MessageId`] and [`UserId`], validated newtypes.
//! - [`frame`]: the v1 JSON dialect: [`ClientFrame`] / [`ServerFrame`], [`decode_client`],
//!   [`encode_server`] and the allocation-light [`encode_queue_message`].
//! - [`legacy`]: the original Node `websocketmq` dialect (`/subscribe/<queue>` and
//!   `{"message":…}` frames).
//! - [`close`]: WebSocket [`CloseCode`]s and what a client should do after each.
//! - [`error`]: wire [`ErrorCode`]s and the decoding error [`ProtoError`].
//! - [`keys`]: names of the Redis keys and pub/sub channels wsmq owns (`wsmq:access:{user}`,
//!   `wsmq:node:{id}`, `wsmq:ch:{channel}`, `wsmq:revoke`), as pure string builders.
//! - [`node`]: [`NodeHeartbeat`], the JSON a gateway node keeps under `wsmq:node:{id}`.
//! - [`token`]: JWT verification ([`JwtVerifier`]) and the `tokens2` access-token format
//!   ([`AccessToken`]).
//! - `json` (private): a JSON string escaper identical to `JSON.stringify` and a nesting-depth
//!   guard, shared by `frame` and `legacy`.

#![warn(missing_docs)]

pub mod close;
pub mod error;
pub mod frame;
mod json;
pub mod keys;
pub mod legacy;
pub mod name;
pub mod node;
pub mod token;

pub use close::CloseCode;
pub use error::{ErrorCode, ProtoError};
pub use frame::{
    ClientFrame, ClientOp, DEFAULT_HISTORY_LIMIT, HistoryItem, MAX_EPOCH_LEN, MAX_HISTORY_LIMIT,
    MessageFrame, Publish, Ref, Rejection, ServerFrame, StreamPosition, Target, decode_client,
    decode_publish_body, decode_request, decode_server, encode_channel_message,
    encode_channel_publication, encode_client, encode_queue_message, encode_server,
};
pub use legacy::LegacyCommand;
pub use name::{ChannelName, MessageId, NameError, NameKind, QueueName, UserId};
pub use node::NodeHeartbeat;
pub use token::{
    AccessToken, Audience, Claims, Grants, JwtAlgorithm, JwtVerifier, KeyError, TokenError,
};
