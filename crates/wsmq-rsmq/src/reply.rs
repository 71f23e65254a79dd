//! Reading script replies the way rsmq's JavaScript reads them: `parseInt` for hash
//! values, and bodies as text even when another writer stored invalid UTF-8.

use redis::Value;

use crate::RsmqError;

/// A bulk or simple string as text; `None` for nil. Invalid UTF-8 is replaced rather
/// than failing the call, since one bad body must not block a whole queue.
pub(crate) fn text(value: Value) -> Result<Option<String>, RsmqError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        })),
        Value::SimpleString(text) => Ok(Some(text)),
        Value::Int(n) => Ok(Some(n.to_string())),
        other => Err(unexpected("a string", &other)),
    }
}

/// An integer reply, or a string holding one, read as JavaScript's `parseInt(x, 10)`;
/// `None` for nil or where `parseInt` gives `NaN`.
pub(crate) fn int(value: Value) -> Result<Option<i64>, RsmqError> {
    match value {
        Value::Int(n) => Ok(Some(n)),
        other => Ok(text(other)?.as_deref().and_then(parse_int)),
    }
}

/// An integer that must be present and non-negative, named `field` in the error.
pub(crate) fn count(value: Value, field: &str) -> Result<u64, RsmqError> {
    int(value)?
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| RsmqError::UnexpectedReply(format!("{field} is not a count")))
}

/// A counter or timestamp that reads 0 when missing or not a number, as rsmq's
/// `parseInt(x, 10) || 0` and `Number(null)` do.
pub(crate) fn count_or_zero(value: Value) -> Result<u64, RsmqError> {
    Ok(int(value)?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// The error for a reply of the wrong shape.
pub(crate) fn unexpected(wanted: &str, got: &Value) -> RsmqError {
    RsmqError::UnexpectedReply(format!("wanted {wanted}, got {got:?}"))
}

/// JavaScript's `parseInt(s, 10)`: optional leading whitespace and sign, then as many
/// decimal digits as there are; anything after them is ignored.
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = rest
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    let magnitude: i64 = rest[..end].parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_behaves_like_javascript() {
        assert_eq!(parse_int("30"), Some(30));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int(" 42abc"), Some(42));
        assert_eq!(parse_int("12.9"), Some(12));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
    }

    #[test]
    fn values_decode() {
        assert_eq!(int(Value::Int(7)).unwrap(), Some(7));
        assert_eq!(
            int(Value::BulkString(b"65536".to_vec())).unwrap(),
            Some(65536)
        );
        assert_eq!(int(Value::Nil).unwrap(), None);
        assert_eq!(
            text(Value::BulkString(vec![0xff, b'a'])).unwrap().unwrap(),
            "\u{fffd}a"
        );
        assert!(count(Value::Int(-1), "msgs").is_err());
    }
}
