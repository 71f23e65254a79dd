//! A load generator for WebSocket message gateways: wsmq (v1 or legacy dialect, or its
//! Server-Sent Events with HTTP acks), the Node design it replaces (legacy dialect) and
//! Nchan, driven by `cargo xtask bench`.
//!
//! One process holds up to a few thousand client sockets (a process here may not open
//! more than 20,000 files, so xtask starts several for large counts). Each process
//! talks to its driver over stdio, in JSON lines:
//!
//! 1. it connects every client (and subscribes it), then prints `{"event":"ready",…}`;
//! 2. it waits for one line on stdin (or its end), then runs the scenario: publishes
//!    and/or receives, bounded by counts and by `--timeout-secs`;
//! 3. it prints `{"event":"result",…}` with its counts and its HDR histograms
//!    (serialized V2, base64) so that the driver can merge them across processes.
//!
//! Latency is publish → deliver, from the microsecond timestamp the publisher puts in
//! each body (`<seq> <unix µs> <padding>`): publisher and clients run on one machine and
//! read the same clock, so no offset needs calibrating.
//!
//! # Layout
//!
//! - `cli`: the command line.
//! - `clock`: Unix time in µs and s, read by the sockets and the measurements alike.
//! - `net`: client sockets over several loopback source addresses, and the handshakes.
//! - `sse`: wsmq's SSE streams, their events, and acks over `POST /api/ack`.
//! - `stats`: histograms, duplicate detection and the result line.
//! - `publish`: publishers: rsmq queues (batched sends with realtime notification) or
//!   RabbitMQ's direct exchange (confirmed `basic.publish`, routing key = queue), Redis or
//!   RabbitMQ channels, Nchan over HTTP; paced or at full speed.
//! - `queue`: N consumers of a queue each, acking over v1 or `POST /api/ack` (SSE), or
//!   deleted on send (legacy); this process publishes, or another does (`--external`).
//! - `fanout`: N subscribers of one channel.
//! - `sessions`: N idle subscribed sessions, held until told to stop.

pub mod cli;
mod clock;
mod fanout;
mod net;
mod publish;
mod queue;
mod sessions;
mod sse;
mod stats;

use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Runs the scenario of `cli` to the end.
///
/// # Errors
///
/// When the target cannot be reached at all, or Redis cannot be used to publish.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cli.common.timeout_secs);
    match cli.scenario {
        cli::Scenario::Queue(args) => queue::run(&cli.common, &args, deadline).await,
        cli::Scenario::Fanout(args) => fanout::run(&cli.common, &args, deadline).await,
        cli::Scenario::Sessions => sessions::run(&cli.common, deadline).await,
    }
}

/// Prints one JSON line on stdout, the channel to the driver.
///
/// # Errors
///
/// When stdout is closed: the driver is gone, and so is any reason to go on.
fn emit(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")
        .and_then(|()| out.flush())
        .context("writing to the driver on stdout")
}

/// Waits for one line on stdin (or its end): the driver's go-ahead.
async fn wait_for_driver() {
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;
}
