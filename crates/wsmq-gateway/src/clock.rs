//! The node's wall clock, read in one place.
//!
//! Used for token times (`exp`, `iat`), heartbeats and the delivery-latency histogram. Queue
//! times never come from here: they come from the engine (Redis `TIME` for rsmq).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, Unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_secs() -> u64 {
    unix_millis() / 1000
}

/// Now, Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
