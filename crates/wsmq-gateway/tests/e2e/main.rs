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
//! - one file per scenario: `node_clients`, `redelivery`, `channels`, `delayed`, `authz`,
//!   `outage` (Redis stopped and restarted mid-stream, on a `wsmq_testkit::RedisServer` of its
//!   own with AOF on), `crash` (kill -9 of a node mid-stream), `history` (kill -9 of a
//!   channel subscriber's node, recovery with `since` on the other), `sse` (kill -9 of the
//!   node holding an SSE stream whose acks went through the other node),
//!   `nodes` (`wsmq-cli nodes` against live nodes).

mod authz;
mod channels;
mod cluster;
mod crash;
mod delayed;
mod history;
mod node;
mod node_clients;
mod nodes;
mod outage;
mod redelivery;
mod sse;
mod store;
mod ws;

use std::io::Write;

/// The machine, as the suite's tests share it.
///
/// Every test runs two gateways, and they all run at once on two cores: a 10,000-message crash
/// test next to the 50 ms lateness bound would make that bound measure the neighbours rather
/// than the gateway. So tests that measure time take the machine whole, and the rest share it.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by a test that may run beside others.
async fn shared_machine() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

/// Held by a test whose assertions are about time.
async fn whole_machine() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// Reports a measured figure on the raw stderr, which the test harness does not capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e: {line}");
}

/// A user id unique to this test run and `role`.
fn user(role: &str) -> String {
    format!("{role}-{}", std::process::id())
}
