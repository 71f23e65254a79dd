//! Clock reads shared by the sockets (token expiry) and the measurements (body
//! timestamps, send and receive times): a leaf module, so that neither imports the other.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, Unix µs: the clock of the body timestamps.
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Now, Unix seconds: the clock of JWT `exp`.
pub(crate) fn unix_secs() -> u64 {
    unix_micros() / 1_000_000
}
