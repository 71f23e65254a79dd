//! The wsmq gateway: authenticated WebSocket sessions that deliver rsmq queues at-least-once
//! and pub/sub channels at-most-once, on any number of nodes sharing one Redis.
//!
//! [`run`] is the whole server: it takes a bound listener, a validated [`Config`] and a
//! shutdown future, so `main` binds the configured address and tests bind `127.0.0.1:0`.
//!
//! # Layout
//!
//! Imports run one way, from the top of this list down (`docs/architecture.md` draws it):
//!
//! - [`config`]: clap `serve` options, TOML merge, validated [`Config`].
//! - `server`: the accept loops (connection limit, backoff, hyper with upgrades, drain).
//! - `routes`: `/healthz`, `/readyz`, `/metrics`, `/api/publish`, upgrade dispatch; `demo`:
//!   `/client/wsmq.js`, and with `--demo` the chat page and its token endpoint.
//! - `upgrade`: WebSocket handshake: validation, auth, subprotocol, 101; `sse`: `GET /sse`,
//!   admitted the same way; `acks`: `POST /api/ack|nack` for SSE streams, on any node
//!   (`acks::relay` asks the other nodes).
//! - `session`: one WebSocket session in one task, the legacy and v1 dialects, one
//!   module per v1 op under `session::ops`, subscribing in `session::subscribe`.
//! - `publish`: publishing for the v1 op and the HTTP API; `node`: heartbeats;
//!   `revocation`: closing revoked users' sessions, and re-checking them when an announcement
//!   may have been lost.
//! - `delivery`: one task per queue subscription: window, batched receive, realtime wake-ups,
//!   the precise timer and the poll fallback; `delivery::commands` batches acks and nacks.
//! - `state`: `Gateway`, what every connection shares: the engine, the channel hub, the
//!   authenticator, the session registry; `history`: which channels keep history; `auth`:
//!   identities, JWT and access tokens, grants.
//! - `hub`: the node's channel hub (encode once, fan out to local subscribers, coalesce
//!   presence frames), the engine's broker handler; `outbound`: the frames a session sends
//!   and the queue they wait in.
//! - `streams`: the node's SSE streams (for HTTP acks) and the relayed acks it waits for;
//!   `internal`: the node's own broker channels and its broker handler; `command`: the acks
//!   and nacks a queue subscription takes, and where their answers go.
//! - `presence`: the node's channel memberships, written to the engine in batches, refreshed
//!   with the heartbeat, and the joins and leaves announced once a second.
//! - [`engine`]: the four engine interfaces (queue store, broker, cluster state, presence)
//!   and their Redis and in-memory implementations, and the RabbitMQ one (queues, broker,
//!   cluster state; it refuses history and presence).
//! - `quota`: the per-user budget of queue creations.
//! - [`shutdown`], `metrics`, `mailbox`, `http`, `clock`, [`error`]: the ground floor; `abort`:
//!   the per-connection abort that resets the socket of a client that does not read.

mod abort;
mod acks;
mod auth;
mod clock;
mod command;
pub mod config;
mod delivery;
mod demo;
pub mod engine;
pub mod error;
mod history;
mod http;
mod hub;
mod internal;
mod mailbox;
mod metrics;
mod node;
mod outbound;
mod presence;
mod publish;
mod quota;
mod revocation;
mod routes;
pub mod server;
mod session;
pub mod shutdown;
mod sse;
mod state;
mod streams;
mod upgrade;

use std::future::Future;

use tokio::net::TcpListener;

pub use crate::{config::Config, error::GatewayError};
use crate::{
    engine::{
        Engine,
        amqp::AmqpEngine,
        memory::MemoryEngine,
        redis::{RedisEngine, RedisMetrics},
    },
    metrics::Metrics,
};

/// Runs the gateway on `listener` until `shutdown` resolves, then drains.
///
/// Connects the engine selected by the configuration (RabbitMQ with `--amqp-url`, Redis with
/// `--redis-url`, else in-memory) first, so an unreachable backend fails here rather than on
/// the first client.
///
/// # Errors
///
/// When the engine cannot be set up or the JWT key is unusable.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let metrics = Metrics::new();
    let redis = match &config.engine.redis_url {
        Some(url) => {
            let counters = RedisMetrics {
                pubsub_reconnects: metrics.pubsub_reconnects.clone(),
                command_reconnects: metrics.redis_reconnects.clone(),
            };
            let ns = &config.engine.rsmq_ns;
            Some(if config.engine.redis_cluster {
                RedisEngine::connect_cluster(url, ns, counters).await?
            } else {
                RedisEngine::connect(url, ns, counters).await?
            })
        }
        None => None,
    };
    let engine = match (&config.engine.amqp, redis) {
        // RabbitMQ holds queues and channels; a Redis beside it, the access-token registry.
        (Some(amqp), redis) => AmqpEngine::connect(amqp.options(config.limits.window), redis)
            .await?
            .engine(),
        (None, Some(redis)) => redis.engine(),
        (None, None) => MemoryEngine::new().engine(),
    };
    let addr = listener.local_addr()?;
    let gateway = state::Gateway::new(config, engine, metrics, addr)?;
    server::run(listener, gateway, shutdown).await
}

/// Like [`run`], with an engine built by the caller (tests use this to reach the
/// in-memory engine's registry of access tokens, and a new engine could be tried this way).
///
/// # Errors
///
/// When the JWT key is unusable.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    engine: Engine,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let addr = listener.local_addr()?;
    let gateway = state::Gateway::new(config, engine, Metrics::new(), addr)?;
    server::run(listener, gateway, shutdown).await
}

/// What is logged when `RUST_LOG` is not set: `info`, without lapin's channel events. lapin
/// logs every channel the broker closes at ERROR, and the RabbitMQ engine closes one on purpose
/// each time it checks a queue that does not exist (a passive declare answered `NOT_FOUND`,
/// which is how AMQP says "no such queue"); the engine reports the channel and connection
/// failures that matter itself, with their cause, at `warn`.
pub const DEFAULT_LOG_FILTER: &str = "info,lapin::channel=off";

/// Installs the tracing subscriber: human-readable text, or one JSON object per line.
/// The level comes from `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]).
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Logs go to stderr: stdout carries only the demo token, for scripts to pick up.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in files and log pipelines they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Development mode (no `--jwt-secret`): warns, and prints a token for user `demo` valid
/// for 24 h on stdout, for the developer to paste into a client. No other token is ever
/// printed or logged.
pub fn print_demo_token(config: &Config) {
    if !config.auth.jwt.secret_generated || config.auth.jwt.public_key_pem.is_some() {
        return;
    }
    tracing::warn!(
        "no --jwt-secret: using a random secret for this run (development only); \
         tokens stop working when the gateway restarts"
    );
    let Ok(auth) = auth::Authenticator::new(config) else {
        return;
    };
    if let Some(token) = auth.issue_token("demo", 24 * 3600) {
        println!("demo token (user `demo`, valid 24h): {token}");
        println!(
            "connect: websocat -H 'x-token: {token}' --protocol wsmq.v1 ws://{}/ws",
            config.listen.addr
        );
    }
}
