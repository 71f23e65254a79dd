//! Shared test support: running Node for interop checks, and a tiny seeded PRNG.
//!
//! Interop tests call [`run_node`]. When `node` is not on PATH they print why and pass, unless
//! `WSMQ_REQUIRE_NODE=1` (set by CI), in which case they fail: a missing Node must never turn
//! the compatibility checks into silent no-ops where they are supposed to run.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `script` with `node`, writing `input` to its stdin, and returns its stdout.
///
/// Data goes through stdin, never argv, so nothing shows up in process listings. Returns
/// `None` (after printing a notice) when node is missing and not required.
///
/// # Panics
///
/// When node is required but missing, or when the script fails.
pub(crate) fn run_node(script: &str, input: &str) -> Option<String> {
    let spawned = Command::new("node")
        .args(["--no-deprecation", "--no-warnings", "-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            let required = std::env::var("WSMQ_REQUIRE_NODE").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "node is required (WSMQ_REQUIRE_NODE=1) but could not be started: {err}"
            );
            // Written to the raw stderr handle so that the test harness does not capture it:
            // a skipped interop check must be visible in a passing run.
            let _ = writeln!(
                std::io::stderr(),
                "skipping Node interop check: `node` could not be started ({err}); \
                 set WSMQ_REQUIRE_NODE=1 to make this a failure"
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("write to node's stdin");
    let output = child.wait_with_output().expect("wait for node");
    assert!(
        output.status.success(),
        "node failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("node prints UTF-8"))
}

/// A xorshift64* generator: enough randomness for test data, no dependency, and the seed is
/// printed so a failure can be replayed with `WSMQ_TEST_SEED`.
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeds from `WSMQ_TEST_SEED` or the clock, and prints the seed.
    pub(crate) fn from_env() -> Self {
        let seed = std::env::var("WSMQ_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos();
                // Truncation is fine: any 64 bits of the clock make a seed.
                nanos as u64 | 1
            });
        eprintln!("WSMQ_TEST_SEED={seed}");
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A string of up to `max_chars` characters drawn from a mix that stresses JSON escaping
    /// and UTF-8: controls, quotes, backslashes, `/`, DEL, U+2028/2029, BOM, accents, emoji.
    pub(crate) fn tricky_string(&mut self, max_chars: usize) -> String {
        const EXTRA: &[char] = &[
            '"',
            '\\',
            '/',
            '\u{7f}',
            '\u{85}',
            '\u{a0}',
            '\u{2028}',
            '\u{2029}',
            '\u{feff}',
            '\u{fffd}',
            'é',
            'ß',
            '中',
            '😀',
            '\u{10ffff}',
            '<',
            '>',
            '&',
            '\'',
        ];
        let len = self.below(max_chars + 1);
        (0..len)
            .map(|_| match self.below(4) {
                0 => char::from(self.below(0x20) as u8),
                1 => EXTRA[self.below(EXTRA.len())],
                _ => char::from(0x20 + self.below(0x5f) as u8),
            })
            .collect()
    }
}
