//! `GatewayError`: what can go wrong in the gateway, and how each case shows on the wire.
//!
//! Errors that reach a client become either an HTTP status (before the upgrade) or an `error`
//! frame with a wire code (in a v1 session); [`GatewayError::status`] and
//! [`GatewayError::code`] are the single place that mapping is decided.

use hyper::StatusCode;
use wsmq_proto::ErrorCode;

use crate::engine::EngineError;

/// Every failure the gateway reports.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid (exit code 64).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A socket or file operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A message or frame is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// The caller does this too often (a rate or budget is spent).
    #[error("{0}")]
    RateLimited(String),
}

impl GatewayError {
    /// The wire code of an `error` frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::Invalid(_) | GatewayError::Engine(EngineError::Invalid(_)) => {
                ErrorCode::Invalid
            }
            GatewayError::Forbidden(_) => ErrorCode::Forbidden,
            GatewayError::NotFound(_) | GatewayError::Engine(EngineError::QueueNotFound) => {
                ErrorCode::NotFound
            }
            GatewayError::TooLarge(_) | GatewayError::Engine(EngineError::TooLarge) => {
                ErrorCode::TooLarge
            }
            GatewayError::Engine(EngineError::Unavailable(_)) => ErrorCode::Unavailable,
            GatewayError::RateLimited(_) => ErrorCode::RateLimited,
            GatewayError::Config(_)
            | GatewayError::Io(_)
            | GatewayError::Engine(EngineError::Internal(_)) => ErrorCode::Internal,
        }
    }

    /// The HTTP status of a failed API request.
    pub fn status(&self) -> StatusCode {
        match self.code() {
            ErrorCode::Invalid => StatusCode::BAD_REQUEST,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see: internal details (addresses, Redis errors) stay in logs.
    pub fn public_message(&self) -> String {
        match self {
            GatewayError::Engine(EngineError::Unavailable(_)) => "engine unavailable".to_owned(),
            GatewayError::Config(_)
            | GatewayError::Io(_)
            | GatewayError::Engine(EngineError::Internal(_)) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}
