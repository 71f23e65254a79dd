//! The `wsmq-cli` binary: parses the command line, runs it, and turns a failure into one
//! `error: …` line on stderr and exit code 1.

use std::process::ExitCode;

use clap::Parser;
use wsmq_cli::Cli;

// One thread is plenty: every command is a handful of Redis round trips, and the pipelined
// `send --file` overlaps them on a single connection pool without needing more cores.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Usage errors (unknown flags, bad numbers) are clap's: its message, `--help` hint and exit 2.
    let cli = Cli::parse();
    match wsmq_cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
