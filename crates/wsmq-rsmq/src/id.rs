//! Message ids in rsmq's format, and reading the send time back out of one.
//!
//! An id is the base-36 (lowercase) of the Redis `TIME` at send in microseconds,
//! i.e. seconds followed by the six-digit zero-padded microseconds, then 22 random
//! `[A-Za-z0-9]` characters. Until the year 2085 the time part is 10 characters, so ids
//! are 32 characters and sort by send time. The Lua send script builds the time part
//! from `TIME` itself; this module supplies the random part and the decoding.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Length of the random part of an id.
pub(crate) const RANDOM_LEN: usize = 22;
/// Length of the base-36 time part, as rsmq reads it back (`id.slice(0, 10)`).
const TIME_LEN: usize = 10;

/// The send time of a message in whole ms, read from its id as rsmq does
/// (`parseInt(id.slice(0, 10), 36) / 1000`, which rsmq keeps fractional; this truncates).
///
/// Returns `None` if the id is shorter than 10 characters or its time part is not base 36.
pub fn message_sent_ms(id: &str) -> Option<u64> {
    let time = id.get(..TIME_LEN)?;
    // from_str_radix accepts a leading '+', which is not a base-36 digit.
    if !time.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    u64::from_str_radix(time, 36)
        .ok()
        .map(|micros| micros / 1000)
}

/// A fresh id for a message sent at `micros` µs since the epoch, in the same format
/// the send script produces. Useful to engines that store rsmq-style messages without
/// Redis; messages sent through [`Rsmq`](crate::Rsmq) get their ids from Redis `TIME`.
pub fn new_message_id(micros: u64) -> String {
    let mut id = to_base36(micros);
    id.push_str(&random_suffix());
    id
}

/// 22 random `[A-Za-z0-9]` characters, as rsmq's `_makeid(22)`.
pub(crate) fn random_suffix() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(RANDOM_LEN)
        .map(char::from)
        .collect()
}

/// Lowercase base 36, as JavaScript's `Number.prototype.toString(36)`.
fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // Least significant digit first, reversed at the end.
    let mut digits = Vec::with_capacity(13);
    loop {
        digits.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate_message_id;

    /// Values printed by node: `n.toString(36)` and `parseInt(id.slice(0,10),36)/1000`.
    const JS_CASES: [(u64, &str, u64); 4] = [
        (1_700_000_000_123_456, "gqll7vdgzk", 1_700_000_000_123),
        (1_000_000_000_000_000, "9ugxnorjls", 1_000_000_000_000),
        (1_795_308_794_050_622, "hodth2h7we", 1_795_308_794_050),
        (3_656_158_440_062_975, "zzzzzzzzzz", 3_656_158_440_062),
    ];

    #[test]
    fn base36_matches_javascript() {
        for (micros, b36, _) in JS_CASES {
            assert_eq!(to_base36(micros), b36);
        }
        assert_eq!(to_base36(0), "0");
        assert_eq!(to_base36(35), "z");
        assert_eq!(to_base36(36), "10");
    }

    #[test]
    fn sent_time_decodes_like_rsmq() {
        for (_, b36, ms) in JS_CASES {
            let id = format!("{b36}ABCDEFGHIJKLMNOPQRSTUV");
            assert_eq!(message_sent_ms(&id), Some(ms));
        }
        // parseInt is case-insensitive; so is from_str_radix.
        assert_eq!(
            message_sent_ms("GQLL7VDGZKabcdefghijklmnopqrstuv"),
            Some(1_700_000_000_123)
        );
    }

    #[test]
    fn sent_time_rejects_garbage() {
        assert_eq!(message_sent_ms("short"), None);
        assert_eq!(message_sent_ms("gqll7vdg:kABCDEFGHIJKLMNOPQRSTUV"), None);
        assert_eq!(message_sent_ms("+qll7vdgzkABCDEFGHIJKLMNOPQRSTUV"), None);
        assert_eq!(message_sent_ms("ééééé"), None);
    }

    #[test]
    fn new_ids_are_valid_and_round_trip() {
        let id = new_message_id(1_700_000_000_123_456);
        assert_eq!(id.len(), 32);
        assert!(id.starts_with("gqll7vdgzk"));
        assert!(validate_message_id(&id).is_ok());
        assert_eq!(message_sent_ms(&id), Some(1_700_000_000_123));
        assert_ne!(random_suffix(), random_suffix());
    }
}
