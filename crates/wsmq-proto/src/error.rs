//! Wire error codes and the error type for decoding frames.
//!
//! [`ErrorCode`] is what a client sees in `{"op":"error","code":…}`; the set is closed and part
//! of the contract. [`ProtoError`] is what decoding a frame can fail with; each variant maps to
//! exactly one code through [`ProtoError::code`]. Messages are lowercase, end without a period
//! and never contain the offending input, so they can go on the wire and into logs as they are.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::NameError;

/// The `code` of an `error` frame (and of an HTTP API error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Authenticated, but not allowed to do this (authorization, revoked or bad token).
    Forbidden,
    /// The queue or message does not exist (e.g. acking an id that is not in flight).
    NotFound,
    /// The frame is malformed: bad JSON, unknown op, wrong field types, invalid names.
    Invalid,
    /// A message or frame is over a size limit.
    TooLarge,
    /// The client sends faster than its rate limit allows.
    RateLimited,
    /// A dependency (Redis) is unreachable or the node is draining; retry later.
    Unavailable,
    /// A bug or an unexpected failure on the server.
    Internal,
}

impl ErrorCode {
    /// Every code, in wire order; handy for pre-registering metric labels.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Invalid,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The wire spelling, e.g. `"not_found"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be decoded (or, for [`ProtoError::TooLarge`], accepted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The frame is not valid for its op: not JSON, not an object, a missing field, a field of
    /// the wrong type, an invalid name, nesting too deep. The text says which, briefly.
    #[error("{0}")]
    Invalid(String),
    /// The `op` is not one this server knows. Holds the op, cut to 32 characters.
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    /// A frame or message body is larger than allowed.
    #[error("too large: {size} bytes, limit {limit}")]
    TooLarge {
        /// Size of what was refused, in bytes.
        size: usize,
        /// The limit it exceeded, in bytes.
        limit: usize,
    },
}

impl ProtoError {
    /// The wire code for this error.
    pub const fn code(&self) -> ErrorCode {
        match self {
            ProtoError::Invalid(_) | ProtoError::UnknownOp(_) => ErrorCode::Invalid,
            ProtoError::TooLarge { .. } => ErrorCode::TooLarge,
        }
    }

    /// Shorthand for [`ProtoError::Invalid`].
    pub fn invalid(detail: impl Into<String>) -> Self {
        ProtoError::Invalid(detail.into())
    }
}

impl From<NameError> for ProtoError {
    fn from(err: NameError) -> Self {
        ProtoError::Invalid(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_spell_like_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn errors_map_to_codes() {
        assert_eq!(ProtoError::invalid("x").code(), ErrorCode::Invalid);
        assert_eq!(ProtoError::UnknownOp("x".into()).code(), ErrorCode::Invalid);
        let big = ProtoError::TooLarge { size: 10, limit: 5 };
        assert_eq!(big.code(), ErrorCode::TooLarge);
        assert_eq!(big.to_string(), "too large: 10 bytes, limit 5");
    }
}
