//! The legacy dialect of the original Node `websocketmq`.
//!
//! A legacy client sends the text `/subscribe/<queue>` and receives every message as
//! `{"message":"<body>"}`, exactly as `JSON.stringify({message: body})` writes it. Any other text
//! (the original clients send timestamps as keep-alives) is ignored, as the original did. There
//! is no ack: the gateway deletes a message once its frame has been written.

use crate::error::ProtoError;
use crate::json;
use crate::name::QueueName;

/// The prefix of the one legacy command.
pub const SUBSCRIBE_PREFIX: &str = "/subscribe/";

/// What a text frame from a legacy client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyCommand {
    /// `/subscribe/<queue>`: consume this queue (created if missing).
    Subscribe(QueueName),
    /// Anything else; the original ignored it and so do we.
    Ignored,
}

impl LegacyCommand {
    /// Parses a text frame from a legacy client.
    ///
    /// The match is exact and case-sensitive, as in the original: no trimming, so
    /// `/subscribe/q\n` is an invalid queue name rather than queue `q`.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Invalid`] when the text starts with `/subscribe/` but the rest is not a
    /// valid queue name.
    pub fn parse(text: &str) -> Result<Self, ProtoError> {
        match text.strip_prefix(SUBSCRIBE_PREFIX) {
            Some(queue) => Ok(LegacyCommand::Subscribe(QueueName::new(queue)?)),
            None => Ok(LegacyCommand::Ignored),
        }
    }
}

/// Encodes a message for a legacy client: `{"message":"<body>"}`, byte-identical to
/// `JSON.stringify({message: body})` in Node.
pub fn encode_message(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    encode_message_into(&mut out, body);
    out
}

/// Appends the legacy encoding of `body` to `out` (see [`encode_message`]).
pub fn encode_message_into(out: &mut String, body: &str) {
    out.reserve(body.len() + 14);
    out.push_str(r#"{"message":"#);
    json::push_string(out, body);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe() {
        let cmd = LegacyCommand::parse("/subscribe/57c8f0e2").unwrap();
        assert_eq!(
            cmd,
            LegacyCommand::Subscribe(QueueName::new("57c8f0e2").unwrap())
        );
    }

    #[test]
    fn other_text_is_ignored() {
        for text in [
            "1700000000123",
            "",
            "/subscribe",
            "/SUBSCRIBE/q",
            " /subscribe/q",
            "{}",
        ] {
            assert_eq!(LegacyCommand::parse(text).unwrap(), LegacyCommand::Ignored);
        }
    }

    #[test]
    fn subscribe_with_a_bad_name_is_an_error() {
        for text in [
            "/subscribe/",
            "/subscribe/a b",
            "/subscribe/q\n",
            "/subscribe/a/b",
        ] {
            let err = LegacyCommand::parse(text).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid queue name"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn encodes_like_json_stringify() {
        assert_eq!(encode_message("hi"), r#"{"message":"hi"}"#);
        assert_eq!(encode_message("{\"a\":1}"), r#"{"message":"{\"a\":1}"}"#);
    }
}
