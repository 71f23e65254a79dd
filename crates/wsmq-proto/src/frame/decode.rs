//! Decoding client frames (and, for tests and clients, server frames) from text.
//!
//! The input is first checked for nesting depth with a linear scan, then parsed into
//! [`RawFrame`], a flat struct whose fields are all `Option<Value>`: parsing can then only fail
//! on syntax or duplicate keys, and every type and presence check happens here with an error
//! that names the field. Unknown fields are skipped by serde.

use serde::Deserialize;
use serde_json::Value;
use serde_json::error::Category;

use super::{
    ClientFrame, ClientOp, DEFAULT_HISTORY_LIMIT, MAX_DELAY_SECS, MAX_EPOCH_LEN, MAX_HISTORY_LIMIT,
    MAX_REF_LEN, Publish, Ref, ServerFrame, StreamPosition, Target,
};
use crate::error::ProtoError;
use crate::json::{self, MAX_DEPTH};
use crate::name::NameError;

/// Longest op echoed back in [`ProtoError::UnknownOp`], in characters.
const MAX_ECHOED_OP: usize = 32;

const MALFORMED: &str = "malformed json";
const TOO_DEEP: &str = "json nested too deep";

/// A client frame that could not be decoded, with the `ref` to echo if one could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    /// The frame's `ref`, when the frame was an object with a valid `ref`.
    pub reference: Option<Ref>,
    /// Why the frame was refused.
    pub error: ProtoError,
}

impl Rejection {
    fn new(reference: Option<Ref>, error: impl Into<ProtoError>) -> Self {
        Rejection {
            reference,
            error: error.into(),
        }
    }
}

/// Decodes a v1 client frame.
///
/// # Errors
///
/// - not JSON, or not an object: `Invalid("malformed json")`
/// - nested deeper than 32 levels: `Invalid("json nested too deep")`
/// - unknown `op`: [`ProtoError::UnknownOp`]
/// - missing field, wrong type, invalid name or id, out-of-range delay: `Invalid(detail)`
pub fn decode_client(text: &str) -> Result<ClientFrame, ProtoError> {
    decode_request(text).map_err(|rejection| rejection.error)
}

/// Like [`decode_client`], but a failure keeps the frame's `ref` so that the `error` reply can
/// echo it: `Err(rejection) => send(ServerFrame::from(rejection))`.
///
/// # Errors
///
/// As [`decode_client`].
pub fn decode_request(text: &str) -> Result<ClientFrame, Rejection> {
    parse_raw(text)
        .map_err(|error| Rejection::new(None, error))?
        .into_frame()
}

/// Decodes the body of `POST /api/publish`: `{"queue": q, "message": s, "delay"?: n}` or
/// `{"channel": c, "message": s}`, with the same rules as a v1 `publish` frame (any `op` or
/// `ref` is ignored).
///
/// # Errors
///
/// As [`decode_client`], except that there is no op to be unknown.
pub fn decode_publish_body(text: &str) -> Result<Publish, ProtoError> {
    parse_raw(text)?.into_publish()
}

/// Decodes a server frame; for clients and tests.
///
/// # Errors
///
/// `Invalid("malformed json")` for bad JSON, `Invalid(detail)` for a frame that is not a
/// well-formed server frame.
pub fn decode_server(text: &str) -> Result<ServerFrame, ProtoError> {
    if json::too_deep(text, MAX_DEPTH) {
        return Err(ProtoError::invalid(TOO_DEEP));
    }
    serde_json::from_str(text).map_err(serde_error)
}

fn parse_raw(text: &str) -> Result<RawFrame, ProtoError> {
    if json::too_deep(text, MAX_DEPTH) {
        return Err(ProtoError::invalid(TOO_DEEP));
    }
    // A top-level array or scalar would otherwise produce serde's "invalid type … expected
    // struct", which can quote the input.
    if !text.trim_start().starts_with('{') {
        return Err(ProtoError::invalid(MALFORMED));
    }
    serde_json::from_str(text).map_err(serde_error)
}

/// Maps a serde_json error to a short message without the input or its position.
fn serde_error(err: serde_json::Error) -> ProtoError {
    match err.classify() {
        Category::Data => {
            let text = err.to_string();
            let text = match text.rfind(" at line ") {
                Some(at) => &text[..at],
                None => &text,
            };
            ProtoError::invalid(truncate(text, 120))
        }
        Category::Syntax | Category::Eof | Category::Io => ProtoError::invalid(MALFORMED),
    }
}

/// Every field any client op uses; anything else in the object is ignored.
#[derive(Deserialize)]
pub(super) struct RawFrame {
    op: Option<Value>,
    #[serde(rename = "ref")]
    reference: Option<Value>,
    queue: Option<Value>,
    channel: Option<Value>,
    id: Option<Value>,
    message: Option<Value>,
    delay: Option<Value>,
    dead: Option<Value>,
    token: Option<Value>,
    since: Option<Value>,
    limit: Option<Value>,
    before: Option<Value>,
}

impl RawFrame {
    pub(super) fn into_frame(mut self) -> Result<ClientFrame, Rejection> {
        let reference = parse_ref(self.reference.take()).map_err(|e| Rejection::new(None, e))?;
        match self.into_op() {
            Ok(op) => Ok(ClientFrame { op, reference }),
            Err(error) => Err(Rejection { reference, error }),
        }
    }

    fn into_op(mut self) -> Result<ClientOp, ProtoError> {
        let op = match self.op.take() {
            None => return Err(missing("op")),
            Some(Value::String(op)) => op,
            Some(_) => return Err(not_a_string("op")),
        };
        Ok(match op.as_str() {
            "subscribe" => match (target(self.queue, self.channel)?, self.since) {
                (target, None) => ClientOp::Subscribe(target),
                (Target::Channel(channel), Some(since)) => ClientOp::SubscribeSince {
                    channel,
                    since: position(since)?,
                },
                (Target::Queue(_), Some(_)) => {
                    return Err(ProtoError::invalid(
                        "`since` is only for channels: queues keep what is not acked",
                    ));
                }
            },
            "history" => ClientOp::History {
                channel: name(self.channel, "channel")?,
                limit: history_limit(self.limit)?,
                before: self.before.map(|b| offset(&b, "before")).transpose()?,
            },
            "unsubscribe" => ClientOp::Unsubscribe(target(self.queue, self.channel)?),
            "ack" => ClientOp::Ack {
                queue: name(self.queue, "queue")?,
                id: name(self.id, "id")?,
            },
            "nack" => {
                let queue = name(self.queue, "queue")?;
                let id = name(self.id, "id")?;
                let delay = delay(self.delay)?;
                let dead = match self.dead {
                    None | Some(Value::Bool(false)) => false,
                    Some(Value::Bool(true)) => true,
                    Some(_) => return Err(ProtoError::invalid("`dead` must be true or false")),
                };
                if dead && delay.is_some() {
                    return Err(ProtoError::invalid(
                        "`delay` and `dead` exclude each other: a dead message is not given back",
                    ));
                }
                ClientOp::Nack {
                    queue,
                    id,
                    delay,
                    dead,
                }
            }
            "publish" => ClientOp::Publish(self.into_publish()?),
            "auth" => {
                let token = string(self.token, "token")?;
                if token.is_empty() {
                    return Err(ProtoError::invalid("`token` must not be empty"));
                }
                ClientOp::Auth { token }
            }
            "ping" => ClientOp::Ping,
            _ => {
                return Err(ProtoError::UnknownOp(
                    truncate(&op, MAX_ECHOED_OP).to_owned(),
                ));
            }
        })
    }

    fn into_publish(self) -> Result<Publish, ProtoError> {
        let target = target(self.queue, self.channel)?;
        let message = string(self.message, "message")?;
        let delay = delay(self.delay)?;
        if matches!(target, Target::Channel(_)) && delay.is_some() {
            return Err(ProtoError::invalid("`delay` is not supported for channels"));
        }
        Ok(Publish {
            target,
            message,
            delay,
        })
    }
}

fn parse_ref(value: Option<Value>) -> Result<Option<Ref>, ProtoError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(Ref::Number(n))),
        Some(Value::String(s)) if s.len() <= MAX_REF_LEN => Ok(Some(Ref::String(s))),
        Some(Value::String(_)) => Err(ProtoError::Invalid(format!(
            "`ref` must be at most {MAX_REF_LEN} bytes"
        ))),
        Some(_) => Err(ProtoError::invalid("`ref` must be a number or a string")),
    }
}

fn target(queue: Option<Value>, channel: Option<Value>) -> Result<Target, ProtoError> {
    let queue = queue.map(|q| name(Some(q), "queue")).transpose()?;
    let channel = channel.map(|c| name(Some(c), "channel")).transpose()?;
    Target::from_parts(queue, channel)
}

fn name<T>(value: Option<Value>, field: &'static str) -> Result<T, ProtoError>
where
    T: TryFrom<String, Error = NameError>,
{
    Ok(T::try_from(string(value, field)?)?)
}

fn string(value: Option<Value>, field: &'static str) -> Result<String, ProtoError> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(not_a_string(field)),
        None => Err(missing(field)),
    }
}

fn delay(value: Option<Value>) -> Result<Option<u32>, ProtoError> {
    let Some(value) = value else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n <= MAX_DELAY_SECS)
        .map(Some)
        .ok_or_else(|| {
            ProtoError::Invalid(format!(
                "`delay` must be an integer from 0 to {MAX_DELAY_SECS}"
            ))
        })
}

/// `since`: `{"offset": u64, "epoch": string}`.
fn position(value: Value) -> Result<StreamPosition, ProtoError> {
    let Value::Object(mut fields) = value else {
        return Err(ProtoError::invalid(
            "`since` must be an object {\"offset\": integer, \"epoch\": string}",
        ));
    };
    let offset = match fields.remove("offset") {
        Some(value) => offset(&value, "since.offset")?,
        None => return Err(missing("since.offset")),
    };
    let epoch = match fields.remove("epoch") {
        Some(Value::String(epoch)) if !epoch.is_empty() && epoch.len() <= MAX_EPOCH_LEN => epoch,
        Some(Value::String(_)) => {
            return Err(ProtoError::Invalid(format!(
                "`since.epoch` must be 1 to {MAX_EPOCH_LEN} bytes"
            )));
        }
        Some(_) => return Err(not_a_string("since.epoch")),
        None => return Err(missing("since.epoch")),
    };
    Ok(StreamPosition { offset, epoch })
}

/// An offset: a JSON integer from 0 to 2^64-1 (no sign, no fraction, no string).
fn offset(value: &Value, field: &str) -> Result<u64, ProtoError> {
    value.as_u64().ok_or_else(|| {
        ProtoError::Invalid(format!(
            "`{field}` must be an integer from 0 to 18446744073709551615"
        ))
    })
}

fn history_limit(value: Option<Value>) -> Result<u32, ProtoError> {
    let Some(value) = value else {
        return Ok(DEFAULT_HISTORY_LIMIT);
    };
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
        .ok_or_else(|| {
            ProtoError::Invalid(format!(
                "`limit` must be an integer from 1 to {MAX_HISTORY_LIMIT}"
            ))
        })
}

fn missing(field: &str) -> ProtoError {
    ProtoError::Invalid(format!("missing field `{field}`"))
}

fn not_a_string(field: &str) -> ProtoError {
    ProtoError::Invalid(format!("`{field}` must be a string"))
}

/// The first `max` characters of `s`.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hi", 5), "hi");
    }

    #[test]
    fn serde_data_errors_lose_their_position() {
        let err = decode_client(r#"{"op":"ping","op":"ping"}"#).unwrap_err();
        assert_eq!(err, ProtoError::invalid("duplicate field `op`"));
    }
}
