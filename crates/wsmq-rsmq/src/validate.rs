//! rsmq's input rules: name and id formats and the accepted ranges of vt, delay and
//! maxsize, checked before anything is sent to Redis.
//!
//! rsmq reports an empty name or id as `missingParameter` and a malformed one as
//! `invalidFormat`; both are kept apart here so error kinds match.

use crate::RsmqError;

/// Largest vt or delay in seconds that rsmq accepts (the smallest is 0).
pub const MAX_SECONDS: u64 = 9_999_999;
/// Smallest bounded maxsize.
pub const MIN_MAXSIZE: i64 = 1024;
/// Largest bounded maxsize, also the default.
pub const MAX_MAXSIZE: i64 = 65536;
/// The maxsize that turns the size check off.
pub const UNLIMITED_MAXSIZE: i64 = -1;
/// Largest `maxreceives` (wsmq's own attribute; 0 is no limit).
pub const MAX_RECEIVES: u64 = 1_000_000;
/// Longest queue name.
pub const MAX_QUEUE_NAME_LEN: usize = 160;
/// Length of every message id.
pub const MESSAGE_ID_LEN: usize = 32;

/// Checks a queue name against rsmq's `^[A-Za-z0-9_-]{1,160}$`.
///
/// # Errors
///
/// [`RsmqError::MissingParameter`] when empty, [`RsmqError::InvalidName`] otherwise.
pub fn validate_queue_name(qname: &str) -> Result<(), RsmqError> {
    if qname.is_empty() {
        return Err(RsmqError::MissingParameter { field: "qname" });
    }
    let valid = qname.len() <= MAX_QUEUE_NAME_LEN
        && qname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(RsmqError::InvalidName(qname.to_owned()))
    }
}

/// Checks a message id against rsmq's `^[A-Za-z0-9:]{32}$`.
///
/// # Errors
///
/// [`RsmqError::MissingParameter`] when empty, [`RsmqError::InvalidId`] otherwise.
pub fn validate_message_id(id: &str) -> Result<(), RsmqError> {
    if id.is_empty() {
        return Err(RsmqError::MissingParameter { field: "id" });
    }
    let valid =
        id.len() == MESSAGE_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':');
    if valid {
        Ok(())
    } else {
        Err(RsmqError::InvalidId)
    }
}

/// Checks a vt or delay (`field`) against 0..=[`MAX_SECONDS`].
pub(crate) fn validate_seconds(field: &'static str, value: u64) -> Result<(), RsmqError> {
    if value <= MAX_SECONDS {
        Ok(())
    } else {
        Err(RsmqError::InvalidValue {
            field,
            min: 0,
            max: MAX_SECONDS as i64,
        })
    }
}

/// Checks a maxreceives against 0..=[`MAX_RECEIVES`].
pub(crate) fn validate_max_receives(value: u64) -> Result<(), RsmqError> {
    if value <= MAX_RECEIVES {
        Ok(())
    } else {
        Err(RsmqError::InvalidValue {
            field: "maxreceives",
            min: 0,
            max: MAX_RECEIVES as i64,
        })
    }
}

/// Checks a maxsize against [`MIN_MAXSIZE`]..=[`MAX_MAXSIZE`] or [`UNLIMITED_MAXSIZE`].
pub(crate) fn validate_maxsize(value: i64) -> Result<(), RsmqError> {
    if (MIN_MAXSIZE..=MAX_MAXSIZE).contains(&value) || value == UNLIMITED_MAXSIZE {
        Ok(())
    } else {
        Err(RsmqError::InvalidValue {
            field: "maxsize",
            min: MIN_MAXSIZE,
            max: MAX_MAXSIZE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_rsmq_regex() {
        assert!(validate_queue_name("a").is_ok());
        assert!(validate_queue_name("Jobs_2-x").is_ok());
        assert!(validate_queue_name(&"q".repeat(160)).is_ok());
        assert_eq!(
            validate_queue_name("").unwrap_err().kind(),
            "missingParameter"
        );
        for bad in ["a b", "a:b", "é", "a.b", &"q".repeat(161)] {
            assert_eq!(
                validate_queue_name(bad).unwrap_err().kind(),
                "invalidFormat"
            );
        }
    }

    #[test]
    fn message_ids_follow_rsmq_regex() {
        assert!(validate_message_id("gqll7vdgzkABCDEFGHIJKLMNOPQRSTUV").is_ok());
        assert!(validate_message_id("gqll7vdgzk:BCDEFGHIJKLMNOPQRSTUV").is_ok());
        assert_eq!(
            validate_message_id("").unwrap_err().kind(),
            "missingParameter"
        );
        for bad in [
            "short",
            "gqll7vdgzkABCDEFGHIJKLMNOPQRSTU-",
            "gqll7vdgzkABCDEFGHIJKLMNOPQRSTUVW",
        ] {
            assert_eq!(
                validate_message_id(bad).unwrap_err().kind(),
                "invalidFormat"
            );
        }
    }

    #[test]
    fn ranges_match_rsmq() {
        assert!(validate_seconds("vt", 0).is_ok());
        assert!(validate_seconds("vt", MAX_SECONDS).is_ok());
        assert!(validate_seconds("vt", MAX_SECONDS + 1).is_err());
        for ok in [-1, 1024, 65536] {
            assert!(validate_maxsize(ok).is_ok(), "{ok}");
        }
        for bad in [-2, 0, 1023, 65537] {
            assert!(validate_maxsize(bad).is_err(), "{bad}");
        }
    }
}
