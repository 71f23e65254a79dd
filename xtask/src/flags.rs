//! Command-line flags of the xtask binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Automation for the wsmq workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) task: Task,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Task {
    /// Everything CI checks: fmt, clippy, every test, then the e2e suites.
    Ci(Ci),
    /// Suites against a real redis-server and Node.js (npm rsmq interop).
    E2e(E2e),
    /// Benchmarks against one throwaway redis-server; a full run records its figures in
    /// docs/benchmarks.md.
    Bench(Bench),
}

#[derive(Debug, Args)]
pub(crate) struct Ci {
    /// Skip the e2e suites (for a quick local check; CI never sets this).
    #[arg(long)]
    pub(crate) no_e2e: bool,
}

#[derive(Debug, Args)]
pub(crate) struct E2e {
    /// Only run suites whose name contains this text.
    pub(crate) filter: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// The scenario to run; all of them when omitted.
    #[arg(value_enum)]
    pub(crate) scenario: Option<BenchScenario>,
    /// Messages per run of the wsmq-rsmq scenarios; npm rsmq, being slower, gets a
    /// fifth of them [default: 100000, or 10000 with --quick]. The WebSocket scenarios
    /// (delivery, fanout, sessions) use the sizes of issue 5, or small ones with --quick.
    #[arg(long, value_name = "N")]
    pub(crate) messages: Option<usize>,
    /// Timed runs per scenario, of which the median is reported [default: 3, or 1 with
    /// --quick].
    #[arg(long, value_name = "R")]
    pub(crate) runs: Option<usize>,
    /// A small version (well under 2 minutes once built) to check the tool: it prints
    /// the report instead of writing docs/benchmarks.md, unless --out is given.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Write the report into this file instead of docs/benchmarks.md.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

/// A benchmark scenario of `cargo xtask bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchScenario {
    /// send -> receive -> delete: npm rsmq vs wsmq-rsmq single calls vs batched.
    Rsmq,
    /// Queue delivery over WebSocket with acks: wsmq v1 vs the Node design (legacy); then
    /// npm rsmq publishing to wsmq's legacy dialect.
    Delivery,
    /// One channel to many subscribers: wsmq vs Nchan.
    Fanout,
    /// Idle subscribed sessions: memory per session and handshakes/s; wsmq (v1 and legacy)
    /// vs peers.
    Sessions,
    /// On RabbitMQ (a rabbitmq-server node of its own): queue delivery with acks and channel
    /// fan-out, wsmq's RabbitMQ engine vs its Redis engine vs the Node chat's amqplib design.
    /// Not part of a run without a scenario.
    Amqp,
    /// On a Redis Cluster of 3 masters (started by the bench) against the single Redis in the
    /// same run: queue delivery with acks over 1,000 queues and channel fan-out, with Redis CPU
    /// per message and each master's share of commands and CPU. Not part of a run without a
    /// scenario.
    Cluster,
}
