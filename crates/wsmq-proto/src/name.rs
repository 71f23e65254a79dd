//! Validated names: queues, channels, message ids and user ids.
//!
//! Each name is a newtype over `String` that can only be built through validation, so code that
//! holds a [`QueueName`] never has to re-check it. Deserializing validates too: a frame carrying
//! a bad name fails to decode with a message naming the rule, never echoing the input.
//!
//! | type | rule |
//! |---|---|
//! | [`QueueName`] | `^[A-Za-z0-9_-]{1,160}$` (the rsmq rule) |
//! | [`ChannelName`] | `^[A-Za-z0-9_.:-]{1,160}$` |
//! | [`MessageId`] | `^[A-Za-z0-9:]{32}$` (the rsmq id format) |
//! | [`UserId`] | 1 to 160 characters, no control characters |

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest queue name, channel name or user id, in characters.
pub const MAX_NAME_LEN: usize = 160;

/// Exact length of a message id.
pub const MESSAGE_ID_LEN: usize = 32;

/// Which kind of name failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A [`QueueName`].
    Queue,
    /// A [`ChannelName`].
    Channel,
    /// A [`MessageId`].
    MessageId,
    /// A [`UserId`].
    User,
}

impl NameKind {
    /// The rule a name of this kind must follow, in words, for error messages.
    pub const fn rule(self) -> &'static str {
        match self {
            NameKind::Queue => "must be 1 to 160 characters of A-Z a-z 0-9 _ -",
            NameKind::Channel => "must be 1 to 160 characters of A-Z a-z 0-9 _ - . :",
            NameKind::MessageId => "must be exactly 32 characters of A-Z a-z 0-9 :",
            NameKind::User => "must be 1 to 160 characters without control characters",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Queue => "queue name",
            NameKind::Channel => "channel name",
            NameKind::MessageId => "message id",
            NameKind::User => "user id",
        })
    }
}

/// A name that does not follow its rule. The message states the rule, not the rejected input,
/// so it is safe to send back to a client or to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {}", kind.rule())]
pub struct NameError {
    kind: NameKind,
}

impl NameError {
    /// Which kind of name was rejected.
    pub const fn kind(&self) -> NameKind {
        self.kind
    }
}

fn is_queue_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_channel_byte(b: u8) -> bool {
    is_queue_byte(b) || b == b'.' || b == b':'
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b':'
}

fn check_queue(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len()) && s.bytes().all(is_queue_byte)
}

fn check_channel(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len()) && s.bytes().all(is_channel_byte)
}

fn check_message_id(s: &str) -> bool {
    s.len() == MESSAGE_ID_LEN && s.bytes().all(is_id_byte)
}

fn check_user(s: &str) -> bool {
    // Counted in characters, not bytes: user ids come from tokens and may be non-ASCII.
    !s.is_empty() && s.chars().count() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

/// Defines a validated string newtype with the conversions every name shares.
macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $kind:expr, $check:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            ///
            /// # Errors
            ///
            /// [`NameError`] when `s` does not follow the rule in the module docs.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                Self::validate(&s)?;
                Ok(Self(s))
            }

            /// Checks `s` against the rule without allocating.
            ///
            /// # Errors
            ///
            /// [`NameError`] when `s` does not follow the rule in the module docs.
            pub fn validate(s: &str) -> Result<(), NameError> {
                if $check(s) { Ok(()) } else { Err(NameError { kind: $kind }) }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the inner `String`.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A queue name: `^[A-Za-z0-9_-]{1,160}$`, exactly what npm `rsmq` accepts.
    QueueName,
    NameKind::Queue,
    check_queue
);

name_type!(
    /// A broadcast channel name: `^[A-Za-z0-9_.:-]{1,160}$`. The extra `.` and `:` allow
    /// hierarchical names such as `prices:eu.fx`.
    ChannelName,
    NameKind::Channel,
    check_channel
);

name_type!(
    /// An rsmq message id: `^[A-Za-z0-9:]{32}$`.
    MessageId,
    NameKind::MessageId,
    check_message_id
);

name_type!(
    /// An authenticated user's id: 1 to 160 characters, no control characters. It comes from a
    /// JWT `sub` (minus `users/`) or an access token's `userId`/`_id`.
    ///
    /// A user id is not necessarily a valid [`QueueName`]; the gateway checks the queue it
    /// derives from it (`--own-queue`) separately.
    UserId,
    NameKind::User,
    check_user
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_rule() {
        assert!(QueueName::new("a").is_ok());
        assert!(QueueName::new("A-z_09").is_ok());
        assert!(QueueName::new("q".repeat(160)).is_ok());
        assert!(QueueName::new("q".repeat(161)).is_err());
        assert!(QueueName::new("").is_err());
        assert!(QueueName::new("a.b").is_err());
        assert!(QueueName::new("a b").is_err());
        assert!(QueueName::new("é").is_err());
    }

    #[test]
    fn channel_rule() {
        assert!(ChannelName::new("prices:eu.fx-1_2").is_ok());
        assert!(ChannelName::new("a/b").is_err());
        assert!(ChannelName::new("c".repeat(161)).is_err());
    }

    #[test]
    fn message_id_rule() {
        assert!(MessageId::new("abcdefghijklmnopqrstuvwxyz012345").is_ok());
        assert!(MessageId::new("abcdefghijklmnopqrstuvwxyz01234").is_err());
        assert!(MessageId::new("abcdefghijklmnopqrstuvwxyz01234_").is_err());
    }

    #[test]
    fn user_rule() {
        assert!(UserId::new("57c8f0e2").is_ok());
        assert!(UserId::new("Zoë 😀").is_ok());
        assert!(UserId::new("é".repeat(160)).is_ok());
        assert!(UserId::new("é".repeat(161)).is_err());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("a\nb").is_err());
        assert!(UserId::new("a\u{85}b").is_err());
    }

    #[test]
    fn error_names_the_rule_not_the_input() {
        let err = QueueName::new("<script>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid queue name: must be 1 to 160 characters of A-Z a-z 0-9 _ -"
        );
        assert_eq!(err.kind(), NameKind::Queue);
    }

    #[test]
    fn serde_validates() {
        let ok: QueueName = serde_json::from_str("\"jobs\"").unwrap();
        assert_eq!(ok, "jobs");
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"jobs\"");
        let err = serde_json::from_str::<QueueName>("\"a b\"").unwrap_err();
        assert!(err.to_string().starts_with("invalid queue name"));
    }
}
