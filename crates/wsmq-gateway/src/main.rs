//! `wsmq-gateway serve`: parse and validate the configuration, bind, run until a signal.

use clap::Parser;
use wsmq_gateway::config::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::from(64);
        }
    };
    wsmq_gateway::init_tracing(config.log_format == LogFormat::Json);
    wsmq_gateway::print_demo_token(&config);
    let result: anyhow::Result<()> = async {
        let listener = wsmq_gateway::server::bind(config.listen.addr)?;
        wsmq_gateway::run(listener, config, wsmq_gateway::shutdown::signal()).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
