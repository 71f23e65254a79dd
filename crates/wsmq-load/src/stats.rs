//! What a process measures: latency and handshake histograms, counts, and the result
//! line that carries them to the driver.

use std::{
    borrow::Cow,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use base64::Engine as _;
use hdrhistogram::{
    Histogram,
    serialization::{Serializer as _, V2Serializer},
};
use serde::Deserialize;

use crate::clock::unix_micros;

/// Highest latency the histograms track, µs (10 minutes); larger values are clamped.
const MAX_MICROS: u64 = 600_000_000;

/// A histogram of µs values, shared by the client tasks of a process.
pub(crate) struct Micros(Mutex<Histogram<u64>>);

impl Micros {
    pub(crate) fn new() -> Micros {
        Micros(Mutex::new(
            Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
        ))
    }

    pub(crate) fn record(&self, micros: u64) {
        let mut histogram = self.0.lock().unwrap_or_else(|e| e.into_inner());
        histogram.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Serialized V2, base64: what the driver merges.
    pub(crate) fn encode(&self) -> String {
        let histogram = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&histogram, &mut bytes)
            .expect("serializing into memory");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// Counters of one process.
#[derive(Default)]
pub(crate) struct Counts {
    /// Messages published by this process.
    pub(crate) sent: AtomicU64,
    /// Message frames received, duplicates included.
    pub(crate) received: AtomicU64,
    /// Distinct messages received (per subscriber for fan-out).
    pub(crate) unique: AtomicU64,
    /// Messages received again.
    pub(crate) duplicates: AtomicU64,
    /// Frames that were not ours: error frames, bodies without a timestamp.
    pub(crate) other: AtomicU64,
    /// `ok` and `pong` replies (wsmq answers every ack with an `ok`), and acks over
    /// `POST /api/ack` answered 200.
    pub(crate) replies: AtomicU64,
    /// Acks over `POST /api/ack` not applied: another status, or no answer.
    pub(crate) failed_acks: AtomicU64,
    /// Sockets closed by the server during the run.
    pub(crate) closed: AtomicU64,
    /// Unix µs of the first publish.
    pub(crate) first_send_us: AtomicU64,
    /// Unix µs of the last publish.
    pub(crate) last_send_us: AtomicU64,
    /// Unix µs of the first and last message received.
    pub(crate) first_recv_us: AtomicU64,
    pub(crate) last_recv_us: AtomicU64,
}

impl Counts {
    pub(crate) fn note_send(&self, n: u64) {
        let now = unix_micros();
        self.sent.fetch_add(n, Ordering::Relaxed);
        let _ = self
            .first_send_us
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_send_us.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn note_receive(&self, now: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .first_recv_us
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_recv_us.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        serde_json::json!({
            "sent": get(&self.sent),
            "received": get(&self.received),
            "unique": get(&self.unique),
            "duplicates": get(&self.duplicates),
            "other": get(&self.other),
            "replies": get(&self.replies),
            "failed_acks": get(&self.failed_acks),
            "closed": get(&self.closed),
            "first_send_us": get(&self.first_send_us),
            "last_send_us": get(&self.last_send_us),
            "first_recv_us": get(&self.first_recv_us),
            "last_recv_us": get(&self.last_recv_us),
        })
    }
}

/// A body of `size` bytes: `<seq> <unix µs> <padding>`.
pub(crate) fn body(seq: u64, size: usize) -> String {
    let mut body = format!("{seq} {} ", unix_micros());
    while body.len() < size {
        body.push('x');
    }
    body
}

/// `(seq, sent µs)` from a body made by [`body`].
pub(crate) fn parse_body(body: &str) -> Option<(u64, u64)> {
    let mut parts = body.splitn(3, ' ');
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((seq, sent))
}

/// A frame from the server, v1 or legacy; only the fields the load tool reads, borrowed
/// from the text where possible (no allocation per delivery).
#[derive(Deserialize)]
pub(crate) struct Frame<'a> {
    #[serde(borrow, default)]
    pub(crate) op: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) message: Option<Cow<'a, str>>,
}

/// This process's CPU time so far (utime + stime), seconds.
pub(crate) fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::{body, parse_body};

    #[test]
    fn bodies_carry_their_sequence_and_timestamp() {
        let text = body(42, 100);
        assert_eq!(text.len(), 100);
        let (seq, sent) = parse_body(&text).unwrap();
        assert_eq!(seq, 42);
        assert!(sent > 1_600_000_000_000_000);
        assert_eq!(parse_body("hello"), None);
    }
}
