//! Command-line flags of the xtask binary.

use clap::{Args, Parser, Subcommand};

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
