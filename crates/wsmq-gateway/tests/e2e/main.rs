//! End to end: two real `wsmq-gateway serve` processes (node A and node B) on one Redis,
//! with real clients around them: WebSocket sessions of both dialects, the `wsmq-cli` binary,
//! npm `rsmq` and tokens made by Node.
//!
//! Run by `cargo xtask e2e` (suite `gateway-two-nodes`), which installs `interop/`'s npm
//! packages, builds `wsmq-gateway` and `wsmq-cli`, starts one redis-server and sets
//! `WSMQ_TEST_REDIS_URL`; a plain `cargo test` lists these tests as ignored. Every test starts
//! its own pair of gateways in an rsmq namespace of its own, so the tests run in parallel on the
//! one Redis. Measured figures (lateness, duplicates) are written to stderr past the test
//! harness's capture, so they show in a passing run.
//!
//! # Layout
//!
//! - `cluster`: the gateway processes (free ports, `/readyz`, logs, kill on drop) and `wsmq-cli`.
//! - `store`: the suite's Redis: connection, `PUBSUB NUMSUB` waits, the Redis clock.
//! - `node`: Node-made tokens (`interop/make-tokens.js`) and npm rsmq sends.
//! - `ws`: the WebSocket client and JWTs.
//! - one file per scenario: `node_clients`, `redelivery`, `channels`, `delayed`, `authz`.

mod authz;
mod channels;
mod cluster;
mod delayed;
mod node;
mod node_clients;
mod redelivery;
mod store;
mod ws;

use std::io::Write;

/// Reports a measured figure on the raw stderr, which the test harness does not capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e: {line}");
}

/// A user id unique to this test run and `role`.
fn user(role: &str) -> String {
    format!("{role}-{}", std::process::id())
}
