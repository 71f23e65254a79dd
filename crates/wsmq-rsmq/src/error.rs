//! [`RsmqError`]: every way an rsmq operation can fail, with rsmq's own error names.
//!
//! "Nothing to receive" is not an error: receives answer `Ok(None)` or an empty `Vec`.

/// An rsmq operation failed.
///
/// The first group of variants are the errors npm rsmq 0.12 raises, and
/// [`kind`](Self::kind) returns rsmq's name for each so that interop tests can compare
/// the two libraries. The rest are transport failures, which rsmq passes through from
/// its Redis client.
#[derive(Debug, thiserror::Error)]
pub enum RsmqError {
    /// The queue's hash does not exist (rsmq `queueNotFound`).
    #[error("queue not found")]
    QueueNotFound,
    /// `create_queue` found the queue already there (rsmq `queueExists`).
    #[error("queue exists")]
    QueueExists,
    /// The body is longer than the queue's maxsize, counted in UTF-16 code units as
    /// JavaScript's `string.length` does (rsmq `messageTooLong`).
    #[error("message too long")]
    MessageTooLong,
    /// A queue name or message id was empty (rsmq `missingParameter`).
    #[error("no {field} supplied")]
    MissingParameter {
        /// `qname` or `id`, rsmq's parameter names.
        field: &'static str,
    },
    /// The queue name does not match `^[A-Za-z0-9_-]{1,160}$` (rsmq `invalidFormat`).
    #[error("invalid queue name {0:?}")]
    InvalidName(String),
    /// The message id does not match `^[A-Za-z0-9:]{32}$` (rsmq `invalidFormat`).
    #[error("invalid message id")]
    InvalidId,
    /// A number is out of range (rsmq `invalidValue`).
    #[error("{field} must be between {min} and {max}")]
    InvalidValue {
        /// `vt`, `delay`, `maxsize`, `maxreceives` or `ttl`.
        field: &'static str,
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value (maxsize also accepts -1).
        max: i64,
    },
    /// A queue's dead-letter queue cannot be used (wsmq's own attribute, no rsmq name):
    /// the queue itself, a malformed name, or keys that hold something else. Set by
    /// `create_queue`/`set_queue_attributes`, or met by a receive that has a dead message.
    #[error("invalid dead-letter queue: {0}")]
    InvalidDeadLetter(&'static str),
    /// `set_queue_attributes` was given nothing to set (rsmq `noAttributeSupplied`).
    #[error("no attribute supplied")]
    NoAttributeSupplied,
    /// [`Rsmq::connect`](crate::Rsmq::connect) could not reach Redis. The text is the
    /// cause only: the URL may hold a password, so it is never included.
    #[error("cannot connect to redis: {0}")]
    Connect(String),
    /// [`Rsmq::connect`](crate::Rsmq::connect) reached a cluster node without cluster mode,
    /// or a server without cluster support in cluster mode.
    #[error("{}", if *server_is_cluster {
        "redis is a cluster node: connect in cluster mode"
    } else {
        "redis is not a cluster node (cluster support disabled): connect without cluster mode"
    })]
    ClusterMismatch {
        /// Whether the server runs in cluster mode.
        server_is_cluster: bool,
    },
    /// The operation cannot be done in this layout (say, one that spans two queues on a
    /// Redis Cluster, whose keys are in two slots).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// A send that was to wait for replicas saw fewer confirm it in time: the messages
    /// are on the master, and may or may not survive its failover.
    #[error("written to the master but only {reached} of {wanted} replicas confirmed in time")]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that confirmed.
        reached: u64,
        /// The ids of the messages sent.
        ids: Vec<String>,
    },
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No pooled connection could be had.
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// Redis answered with something this crate did not expect, such as a queue hash
    /// whose `vt` is not a number.
    #[error("unexpected reply from redis: {0}")]
    UnexpectedReply(String),
}

impl RsmqError {
    /// rsmq's name for this error (its `Error.name`), e.g. `"queueNotFound"`.
    ///
    /// Transport failures, which rsmq does not name, get `"connect"`, `"redis"`,
    /// `"pool"` or `"unexpectedReply"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::QueueNotFound => "queueNotFound",
            Self::QueueExists => "queueExists",
            Self::MessageTooLong => "messageTooLong",
            Self::MissingParameter { .. } => "missingParameter",
            Self::InvalidName(_) | Self::InvalidId => "invalidFormat",
            Self::InvalidValue { .. } => "invalidValue",
            Self::NoAttributeSupplied => "noAttributeSupplied",
            Self::InvalidDeadLetter(_) => "invalidDeadLetter",
            Self::Connect(_) | Self::ClusterMismatch { .. } => "connect",
            Self::Unsupported(_) => "unsupported",
            Self::NotReplicated { .. } => "notReplicated",
            Self::Redis(_) => "redis",
            Self::Pool(_) => "pool",
            Self::UnexpectedReply(_) => "unexpectedReply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let errors = [
            RsmqError::QueueNotFound,
            RsmqError::QueueExists,
            RsmqError::MessageTooLong,
            RsmqError::MissingParameter { field: "qname" },
            RsmqError::InvalidName("a b".into()),
            RsmqError::InvalidId,
            RsmqError::InvalidValue {
                field: "vt",
                min: 0,
                max: 9_999_999,
            },
            RsmqError::NoAttributeSupplied,
            RsmqError::Connect("refused".into()),
        ];
        for err in errors {
            let text = err.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        }
    }

    #[test]
    fn kinds_use_rsmq_names() {
        assert_eq!(RsmqError::QueueNotFound.kind(), "queueNotFound");
        assert_eq!(RsmqError::InvalidId.kind(), "invalidFormat");
        assert_eq!(
            RsmqError::InvalidName(String::new()).kind(),
            "invalidFormat"
        );
        let value = RsmqError::InvalidValue {
            field: "maxsize",
            min: 1024,
            max: 65536,
        };
        assert_eq!(value.kind(), "invalidValue");
        assert_eq!(value.to_string(), "maxsize must be between 1024 and 65536");
    }
}
