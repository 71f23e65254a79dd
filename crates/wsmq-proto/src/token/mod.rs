//! Token formats: JWTs ([`jwt`], with [`Claims`]) and `tokens2` access tokens ([`access`]).
//!
//! Both are pure: verifying takes the current time as an argument and issuing takes `iat`/`exp`
//! from the caller. Whether an access token is still registered in Redis (and so not revoked) is
//! the gateway's check, not this module's.
//!
//! Every failure is a [`TokenError`], whose [`reason`](TokenError::reason) is a fixed
//! snake_case string meant for a metric label (`auth_failures_total{reason="expired"}`).

pub mod access;
mod claims;
pub mod jwt;

pub use access::{AccessToken, decrypt_access_token, encrypt_access_token, issue_access_token};
pub use claims::{Audience, Claims, Grants, USER_PREFIX};
pub use jwt::{DEFAULT_LEEWAY_SECS, JwtAlgorithm, JwtVerifier, KeyError, issue_hs256};

use crate::error::ErrorCode;

/// Longest token accepted, in bytes, for both formats. Real tokens are a few hundred bytes; the
/// cap bounds the work an unauthenticated client can cause.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Longest JWT lifetime (`exp` − `iat`) the gateways accept, and the longest `wsmq-cli token
/// issue` mints: 30 days. Revocation rests on it: a revocation mark has to outlive every token
/// issued before it, so tokens must not outlive a bound the mark can be kept for
/// ([`REVOCATION_TTL_SECS`](crate::keys::REVOCATION_TTL_SECS)).
pub const MAX_JWT_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// Why a token was refused. Messages are safe to log: they never contain the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TokenError {
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not match the key.
    #[error("bad token signature")]
    BadSignature,
    /// Not a token of the expected shape; the text says what was wrong.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The JWT header names an algorithm other than the one configured (including `none`).
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// `iss` is missing or not the configured issuer.
    #[error("token issuer not accepted")]
    BadIssuer,
    /// `aud` is missing or does not contain the configured audience.
    #[error("token audience not accepted")]
    BadAudience,
    /// No user id: `sub` (JWT) or `userId`/`_id` (access token) is missing or empty.
    #[error("token has no subject")]
    MissingSubject,
}

impl TokenError {
    /// Every reason label, for pre-registering metrics.
    pub const REASONS: [&'static str; 8] = [
        "expired",
        "not_yet_valid",
        "bad_signature",
        "malformed",
        "wrong_algorithm",
        "bad_issuer",
        "bad_audience",
        "missing_subject",
    ];

    /// A fixed snake_case label for metrics, e.g. `"bad_signature"`.
    pub const fn reason(self) -> &'static str {
        match self {
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::BadSignature => "bad_signature",
            TokenError::Malformed(_) => "malformed",
            TokenError::WrongAlgorithm => "wrong_algorithm",
            TokenError::BadIssuer => "bad_issuer",
            TokenError::BadAudience => "bad_audience",
            TokenError::MissingSubject => "missing_subject",
        }
    }

    /// The wire code when a token is refused inside a session (`{"op":"auth"}`): always
    /// [`ErrorCode::Forbidden`]. Before the upgrade the gateway answers HTTP 401 instead.
    pub const fn code(self) -> ErrorCode {
        ErrorCode::Forbidden
    }
}
