//! JWT claims as wsmq reads and issues them, including the `wsmq` grants claim.
//!
//! Numeric dates are accepted as integers or as non-negative floats (some issuers write
//! `1700000000.5`); fractions are dropped. Unknown claims are ignored.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::TokenError;
use crate::name::UserId;

/// Prefix removed from `sub` to get the user id (`users/57c8…` → `57c8…`).
pub const USER_PREFIX: &str = "users/";

/// The claims of a wsmq JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user, optionally written `users/<id>`. Empty when absent.
    #[serde(default)]
    pub sub: String,
    /// Expiry, Unix seconds. Required: a token that never expires is refused as malformed.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    /// Not before, Unix seconds.
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub nbf: Option<u64>,
    /// Issued at, Unix seconds (informational; not checked).
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience: one string or an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Extra rights beyond the user's own queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsmq: Option<Grants>,
}

impl Claims {
    /// Claims with only `sub` and `exp` set.
    pub fn new(sub: impl Into<String>, exp: u64) -> Self {
        Claims {
            sub: sub.into(),
            exp,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
            wsmq: None,
        }
    }

    /// `sub` with one leading `users/` removed; may be empty.
    pub fn user_id(&self) -> &str {
        self.sub.strip_prefix(USER_PREFIX).unwrap_or(&self.sub)
    }

    /// The user id ([`Claims::user_id`]) validated as a [`UserId`]. Always `Ok` for claims
    /// returned by [`JwtVerifier::verify`](super::JwtVerifier::verify).
    ///
    /// # Errors
    ///
    /// [`TokenError::MissingSubject`] when the id is empty, [`TokenError::Malformed`] when it is
    /// not a valid [`UserId`] (too long, control characters).
    pub fn user(&self) -> Result<UserId, TokenError> {
        let id = self.user_id();
        if id.is_empty() {
            return Err(TokenError::MissingSubject);
        }
        UserId::new(id).map_err(|_| TokenError::Malformed("subject is not a valid user id"))
    }
}

/// The `aud` claim: a single string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is (one of) the token's audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// The `wsmq` claim: glob patterns granting rights beyond the user's own queue.
///
/// `consume` and `subscribe` match queue and channel names respectively; `publish` entries are
/// written `queue:NAME` or `channel:NAME`. Matching is the gateway's job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grants {
    /// Queue name patterns the user may consume.
    pub consume: Vec<String>,
    /// Channel name patterns the user may subscribe to.
    pub subscribe: Vec<String>,
    /// `queue:PATTERN` / `channel:PATTERN` entries the user may publish to.
    pub publish: Vec<String>,
}

fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(NumericDate)
}

fn opt_numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "numeric_date")] u64);

    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(n)| n))
}

/// Visits a JSON number as whole non-negative seconds.
struct NumericDate;

impl Visitor<'_> for NumericDate {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number of seconds")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| E::custom("negative date"))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<u64, E> {
        // 2^64 as f64; anything at or above it (or NaN, or negative) is not a date.
        if n.is_finite() && (0.0..18_446_744_073_709_551_616.0).contains(&n) {
            // In range and truncated toward zero on purpose: fractions of a second are dropped.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(n as u64)
        } else {
            Err(E::custom("date out of range"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_integers_and_floats() {
        let c: Claims =
            serde_json::from_str(r#"{"sub":"a","exp":10.9,"nbf":3,"iat":null}"#).unwrap();
        assert_eq!((c.exp, c.nbf, c.iat), (10, Some(3), None));
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":-1}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":"10"}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a"}"#).is_err());
    }

    #[test]
    fn user_id_strips_one_prefix() {
        assert_eq!(Claims::new("users/57c8", 0).user_id(), "57c8");
        assert_eq!(Claims::new("57c8", 0).user_id(), "57c8");
        assert_eq!(Claims::new("users/users/x", 0).user_id(), "users/x");
        assert_eq!(
            Claims::new("users/", 0).user(),
            Err(TokenError::MissingSubject)
        );
    }

    #[test]
    fn audience_one_or_many() {
        let c: Claims = serde_json::from_str(r#"{"exp":1,"aud":["a","b"]}"#).unwrap();
        assert!(c.aud.as_ref().unwrap().contains("b"));
        let c: Claims = serde_json::from_str(r#"{"exp":1,"aud":"a"}"#).unwrap();
        assert!(c.aud.as_ref().unwrap().contains("a"));
        assert!(!c.aud.unwrap().contains("b"));
    }

    #[test]
    fn grants_default_missing_lists() {
        let c: Claims = serde_json::from_str(r#"{"exp":1,"wsmq":{"consume":["jobs-*"]}}"#).unwrap();
        let grants = c.wsmq.unwrap();
        assert_eq!(grants.consume, ["jobs-*"]);
        assert!(grants.publish.is_empty());
    }
}
