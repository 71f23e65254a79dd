//! `wsmq-cli`: send, receive and publish messages, and administer the queues, tokens and nodes
//! of a wsmq deployment, straight through the Redis the gateways share.
//!
//! The binary is `src/main.rs`; this library holds everything else so that it can be tested
//! without a process boundary.
//!
//! # Layout
//!
//! - [`cli`]: the clap command tree (all clap types, and their help text).
//! - `cmd`: one module of plain async functions per command group (`send`, `receive`,
//!   `publish`, `queue`, `token`, `nodes`), plus the connection and error helpers they share.
//! - `output`: all printing, text or `--json`, in one place.
//! - `redact`: keeps Redis passwords and token secrets out of everything printed.

pub mod cli;
mod cmd;
mod output;
mod redact;

pub use cli::Cli;

/// Runs the command `cli` describes.
///
/// # Errors
///
/// Any failure, as a single line (no newlines) ready to print after `error: `, with the Redis
/// password and the token secrets masked.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let secrets = secrets(&cli);
    cmd::run(cli).await.map_err(|err| {
        // `{:#}` joins the context chain with ": ", which reads as one sentence.
        let text = redact::scrub(&format!("{err:#}"), secrets.iter().map(String::as_str));
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        anyhow::Error::msg(lines.join(" "))
    })
}

/// Every secret that `cli` carries and an error message must never show.
fn secrets(cli: &Cli) -> Vec<String> {
    let mut secrets: Vec<String> = redact::url_password(&cli.global.redis_url)
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(url) = &cli.global.amqp_url {
        secrets.extend(redact::url_password(url).map(str::to_owned));
    }
    if let cli::Command::Token(cli::TokenCmd::Issue(args)) = &cli.command {
        secrets.extend(args.jwt_secret.iter().cloned());
        secrets.extend(args.access_token_secret.iter().cloned());
    }
    secrets
}
