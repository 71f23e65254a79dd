//! Command line, environment and TOML configuration, validated in full before anything binds.
//!
//! The flow is: clap derive ([`Cli`], every flag with a `WSMQ_*` environment equivalent) →
//! optional `--config FILE` (TOML, same names in kebab-case) filling what the flags and
//! environment left unset → [`ServeArgs::into_config`] producing a validated [`Config`].
//! Flags and environment win over the file; the file wins over the defaults. Flags therefore
//! have no clap defaults: the defaults are applied last, in [`ServeArgs::into_config`].

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::{Rng, distr::Alphanumeric};
use serde::Deserialize;

use crate::{
    engine::amqp::{AmqpConfig, AmqpUrlArg},
    error::GatewayError,
};

/// `wsmq-gateway`: WebSocket delivery of rsmq queues and pub/sub channels.
#[derive(Debug, Parser)]
#[command(name = "wsmq-gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and WebSocket on one port.
    Serve(Box<ServeArgs>),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `serve`. Each flag can also come from its `WSMQ_*` variable or the TOML file.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these options (kebab-case keys); flags and environment win.
    #[arg(long, env = "WSMQ_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:3000].
    #[arg(long, env = "WSMQ_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Redis URL; without it an in-memory engine runs (single node, not durable). With
    /// --redis-cluster, a comma-separated list of cluster seed nodes.
    #[arg(long, env = "WSMQ_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// --redis-url names Redis Cluster seed nodes: queues, channels and every key on the
    /// cluster, each queue's keys in one slot (docs/configuration.md, "Redis Cluster").
    #[arg(long, env = "WSMQ_REDIS_CLUSTER")]
    #[serde(default)]
    pub redis_cluster: bool,
    /// RabbitMQ URL, amqp://user:pass@host:5672/vhost: queues and channels on RabbitMQ; a
    /// --redis-url beside it serves only the access-token registry (docs/amqp.md)
    /// [default: none].
    #[arg(long, env = "WSMQ_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<AmqpUrlArg>,
    /// Put before every queue name on RabbitMQ [default: none].
    #[arg(long, env = "WSMQ_AMQP_QUEUE_PREFIX")]
    pub amqp_queue_prefix: Option<String>,
    /// Durable direct exchange the user queues are bound to on RabbitMQ
    /// [default: wsmq.direct].
    #[arg(long, env = "WSMQ_AMQP_EXCHANGE")]
    pub amqp_exchange: Option<String>,
    /// rsmq namespace [default: rsmq].
    #[arg(long, env = "WSMQ_RSMQ_NS")]
    pub rsmq_ns: Option<String>,
    /// HS256 secret of client JWTs; without it a random one is made and a demo token printed.
    #[arg(long, env = "WSMQ_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC) to verify RS256/ES256 JWTs instead of HS256.
    #[arg(long, env = "WSMQ_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// Required `iss` of JWTs (also set in the tokens the gateway mints).
    #[arg(long, env = "WSMQ_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs (also set in the tokens the gateway mints).
    #[arg(long, env = "WSMQ_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Secret of tokens2 access tokens [default: the JWT secret].
    #[arg(long, env = "WSMQ_ACCESS_TOKEN_SECRET", hide_env_values = true)]
    pub access_token_secret: Option<String>,
    /// The queue each user owns; `{user}` is replaced by the user id [default: {user}].
    #[arg(long, env = "WSMQ_OWN_QUEUE")]
    pub own_queue: Option<String>,
    /// Let any authenticated user consume any queue (as the original gateway did).
    #[arg(long, env = "WSMQ_OPEN")]
    #[serde(default)]
    pub open: bool,
    /// Serve the chat demo at /demo with a token endpoint that gives anyone a token for any
    /// name (and keep history for its rooms, `room-*`): never in production. Refused beside
    /// --jwt-secret, --jwt-public-key or --access-token-secret unless --demo-secret is given.
    #[arg(long, env = "WSMQ_DEMO")]
    #[serde(default)]
    pub demo: bool,
    /// Own HS256 secret of demo tokens: with it, demo users are named `demo-NAME`, may only
    /// publish to `demo-*` queues, and a real token for a `demo-*` user is refused here.
    #[arg(long, env = "WSMQ_DEMO_SECRET", hide_env_values = true)]
    pub demo_secret: Option<String>,
    /// Key for `POST /api/publish` (`Authorization: apikey KEY`); without it the route is 404.
    #[arg(long, env = "WSMQ_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Unacknowledged messages per subscription [default: 64].
    #[arg(long, env = "WSMQ_WINDOW")]
    pub window: Option<usize>,
    /// Poll for messages without a realtime notification this often [default: 1s].
    #[arg(long, env = "WSMQ_POLL_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub poll_interval: Option<Duration>,
    /// Largest frame or message a client may send, bytes [default: 65536].
    #[arg(long, env = "WSMQ_MAX_FRAME")]
    pub max_frame: Option<usize>,
    /// Concurrent connections; more are answered 503 [default: 100000].
    #[arg(long, env = "WSMQ_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How long a shutdown waits for sessions to finish [default: 10s].
    #[arg(long, env = "WSMQ_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub drain_timeout: Option<Duration>,
    /// This node's id [default: hostname-port-random].
    #[arg(long, env = "WSMQ_NODE_ID")]
    pub node_id: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "WSMQ_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Subscriptions one session may hold [default: 64].
    #[arg(long, env = "WSMQ_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,
    /// Frames buffered for a client before it counts as slow and is closed with 4008
    /// [default: 1024].
    #[arg(long, env = "WSMQ_OUTBOUND_BUFFER")]
    pub outbound_buffer: Option<usize>,
    /// Send a WebSocket ping this often; a client silent for two intervals is closed
    /// [default: 30s].
    #[arg(long, env = "WSMQ_PING_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub ping_interval: Option<Duration>,
    /// How long a new connection may take to send its request headers before it is dropped,
    /// and an `/api/ack` or `/api/nack` its body before it is answered 408 [default: 10s].
    #[arg(long, env = "WSMQ_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub handshake_timeout: Option<Duration>,
    /// Frames per second one session may send; more get `rate_limited`, and a flood of over
    /// ten times that is closed with 4029; 0 turns the limit off [default: 10000].
    #[arg(long, env = "WSMQ_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Frames a session may send at once above `--rate-limit` [default: twice the limit].
    #[arg(long, env = "WSMQ_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Internal address for `/metrics`, `/api/publish`, `/healthz` and `/readyz`; when set,
    /// the public port no longer serves `/metrics` and `/api/publish` [default: none].
    #[arg(long, env = "WSMQ_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Origins (`https://app.example.com`, comma-separated) whose pages may open sessions; an
    /// upgrade with another `Origin` header is answered 403 (clients that send no `Origin`,
    /// i.e. not browsers, are not affected) [default: any origin].
    #[arg(long, env = "WSMQ_ALLOWED_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Costly ops (subscribe, unsubscribe, publish; auth counts ten) one session may run per
    /// second, within --rate-limit; more get `rate_limited`; 0 turns it off [default: 1000].
    #[arg(long, env = "WSMQ_OP_RATE_LIMIT")]
    pub op_rate_limit: Option<u32>,
    /// Queues one user may create per hour on this node (by subscribe or publish); more are
    /// refused with `rate_limited`; 0 turns it off [default: 100].
    #[arg(long, env = "WSMQ_QUEUE_CREATE_LIMIT")]
    pub queue_create_limit: Option<u32>,
    /// Publications every channel keeps for recovery and the `history` op; 0 turns history
    /// off (`[[history]]` entries of the config file set it per channel pattern) [default: 0].
    #[arg(long, env = "WSMQ_HISTORY_SIZE")]
    pub history_size: Option<u64>,
    /// How long a channel's history lives after its last publication [default: 1day].
    #[arg(long, env = "WSMQ_HISTORY_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub history_ttl: Option<Duration>,
    /// `[[history]]` entries (config file only): `pattern` (a channel glob), `size`, `ttl`;
    /// the first whose pattern matches a channel overrides the flags for it.
    #[arg(skip)]
    #[serde(default)]
    pub history: Vec<HistoryRuleArgs>,
}

/// One `[[history]]` entry of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRuleArgs {
    /// Channel-name glob (`*`, `?`).
    pub pattern: String,
    /// Publications kept; 0: no history for these channels [default: `--history-size`].
    pub size: Option<u64>,
    /// Lifetime after the last publication [default: `--history-ttl`].
    #[serde(default, with = "humantime_serde_opt")]
    pub ttl: Option<Duration>,
}

/// Channel history: the default for every channel and the per-pattern overrides, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// `--history-size`, `--history-ttl`.
    pub default: HistoryRule,
    /// `[[history]]` entries, then (with `--demo`) the demo's rooms; the first match wins.
    pub rules: Vec<(String, HistoryRule)>,
}

/// How much history some channels keep; `size` 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRule {
    /// Publications kept.
    pub size: u64,
    /// Lifetime after the last publication.
    pub ttl: Duration,
}

/// A secret that never shows in `Debug` output or logs; its value is read with
/// [`Secret::expose`], so every place that uses it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How JWTs are verified.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// HS256 secret: given, or random for this run.
    pub secret: Secret,
    /// Whether `secret` was generated (development mode: a demo token is printed).
    pub secret_generated: bool,
    /// PEM of the RS256/ES256 public key; when set, HS256 is not accepted.
    pub public_key_pem: Option<String>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required audience.
    pub audience: Option<String>,
}

/// The validated configuration the gateway runs with, in parts that each validate themselves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where and how connections are accepted.
    pub listen: ListenConfig,
    /// Who may connect and what they may do.
    pub auth: AuthConfig,
    /// What one session may do and hold.
    pub limits: Limits,
    /// Which engine, and how it is read.
    pub engine: EngineConfig,
    /// Node id.
    pub node_id: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Serve the chat demo and its token endpoint (`--demo`).
    pub demo: bool,
    /// Which channels keep history, and how much.
    pub history: HistoryConfig,
}

/// Prefix of demo user names when demo tokens have their own secret (`--demo-secret`).
pub const DEMO_USER_PREFIX: &str = "demo-";

/// Where and how connections are accepted.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Listen address (as configured; tests pass their own listener).
    pub addr: SocketAddr,
    /// The internal admin address, if any.
    pub admin: Option<SocketAddr>,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Time a connection has to send its request headers (the handshake timeout), and an ack
    /// request its body.
    pub handshake_timeout: Duration,
    /// Shutdown deadline.
    pub drain_timeout: Duration,
    /// Origins allowed to open sessions (exact, lowercase); empty: any.
    pub allowed_origins: Vec<String>,
}

/// Who may connect and what they may do.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// JWT verification.
    pub jwt: JwtConfig,
    /// Secret of tokens2 access tokens.
    pub access_token_secret: Secret,
    /// Own-queue template containing `{user}` (or a fixed name).
    pub own_queue: String,
    /// Any authenticated user may consume any queue.
    pub open: bool,
    /// Key of `/api/publish`; `None` disables the route.
    pub api_key: Option<Secret>,
    /// How often every open session is re-checked against the revocation records, in case an
    /// announcement was lost (not a flag: 60 s; tests shorten it).
    pub revocation_sweep: Duration,
    /// Own secret of demo tokens (`--demo-secret`): demo users are then `demo-NAME`.
    pub demo_secret: Option<Secret>,
}

/// What one session may do and hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Unacknowledged messages per subscription.
    pub window: usize,
    /// Largest inbound frame / message.
    pub max_frame: usize,
    /// Subscriptions per session.
    pub max_subscriptions: usize,
    /// Outbound frames buffered per session.
    pub outbound_buffer: usize,
    /// WebSocket ping period (idle timeout: twice this).
    pub ping_interval: Duration,
    /// Inbound frames per second per session; 0: unlimited.
    pub rate_limit: u32,
    /// Frames a session may send at once above the rate.
    pub rate_burst: u32,
    /// Costly ops per second per session (auth counts ten); 0: unlimited.
    pub op_rate_limit: u32,
    /// Queues one user may create per hour on this node; 0: unlimited.
    pub queue_create_limit: u32,
}

/// Which engine, and how it is read. `Debug` shows the Redis URL without its password.
#[derive(Clone)]
pub struct EngineConfig {
    /// Redis URL, or `None` for the in-memory engine. With `amqp`, only the access-token
    /// registry (and a copy of the heartbeats) lives there. With `redis_cluster`, the
    /// comma-separated seed nodes of a Redis Cluster.
    pub redis_url: Option<String>,
    /// Whether `redis_url` names a Redis Cluster.
    pub redis_cluster: bool,
    /// RabbitMQ, which then holds queues and channels.
    pub amqp: Option<AmqpConfig>,
    /// rsmq namespace.
    pub rsmq_ns: String,
    /// Poll fallback period.
    pub poll_interval: Duration,
}

impl fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineConfig")
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_cluster", &self.redis_cluster)
            .field("rsmq_ns", &self.rsmq_ns)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

/// `url` with the password of its userinfo (`redis://user:PASSWORD@host`) replaced by `***`,
/// for logs and `Debug` output; each URL of a comma-separated list of cluster seeds alike.
pub fn redact_url(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

/// The defaults, each used by validation and written in its flag's help text (a test holds
/// the two together).
mod default {
    use std::{
        net::{IpAddr, Ipv4Addr, SocketAddr},
        time::Duration,
    };

    pub(super) const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3000);
    pub(super) const RSMQ_NS: &str = "rsmq";
    pub(super) const OWN_QUEUE: &str = "{user}";
    pub(super) const WINDOW: usize = 64;
    pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(1);
    pub(super) const MAX_FRAME: usize = 65536;
    pub(super) const MAX_CONNECTIONS: usize = 100_000;
    pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    pub(super) const MAX_SUBSCRIPTIONS: usize = 64;
    pub(super) const OUTBOUND_BUFFER: usize = 1024;
    pub(super) const PING_INTERVAL: Duration = Duration::from_secs(30);
    pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub(super) const RATE_LIMIT: u32 = 10_000;
    pub(super) const HISTORY_SIZE: u64 = 0;
    pub(super) const HISTORY_TTL: Duration = Duration::from_secs(24 * 3600);
    /// The demo's rooms keep this many publications (with `--demo`).
    pub(super) const DEMO_HISTORY_SIZE: u64 = 100;
    /// Most publications a channel may keep: a bound on memory (Redis or the node's).
    pub(super) const MAX_HISTORY_SIZE: u64 = 1_000_000;
    pub(super) const REVOCATION_SWEEP: Duration = Duration::from_secs(60);
    pub(super) const OP_RATE_LIMIT: u32 = 1000;
    pub(super) const QUEUE_CREATE_LIMIT: u32 = 100;
}

/// Upper bounds of values that come from outside: past them, timers and buffers would
/// overflow or make no sense, so they are refused at start.
mod bound {
    use std::time::Duration;

    /// Longest duration option (poll, ping, handshake, drain).
    pub(super) const DURATION: Duration = Duration::from_secs(3600);
    /// Largest `--max-frame`: tungstenite's own default message limit.
    pub(super) const MAX_FRAME: usize = 64 << 20;
    /// Most `--max-connections` (tokio's semaphore holds at most `usize::MAX >> 3` permits).
    pub(super) const MAX_CONNECTIONS: usize = 10_000_000;
    /// Most `--max-subscriptions`.
    pub(super) const MAX_SUBSCRIPTIONS: usize = 10_000;
    /// Most `--outbound-buffer`.
    pub(super) const OUTBOUND_BUFFER: usize = 1_000_000;
    /// Most unacknowledged deliveries one session may hold: `--window` × `--max-subscriptions`.
    /// They wait in the session's outbound queue without counting against
    /// `--outbound-buffer`, so this is what bounds that queue for queue deliveries.
    pub(super) const SESSION_CREDIT: usize = 100_000;
}

/// `value` if it is at most [`bound::DURATION`], else a configuration error naming `flag`.
fn at_most_an_hour(flag: &str, value: Duration) -> Result<Duration, GatewayError> {
    if value > bound::DURATION {
        return bad(format!(
            "{flag} {} is over the limit of 1h",
            humantime::format_duration(value)
        ));
    }
    Ok(value)
}

/// Whether the own-queue template gives each user a queue of its own.
fn own_queue_has_user(args: &ServeArgs) -> bool {
    args.own_queue
        .as_deref()
        .unwrap_or(default::OWN_QUEUE)
        .contains("{user}")
}

/// A configuration error.
fn bad<T>(msg: impl Into<String>) -> Result<T, GatewayError> {
    Err(GatewayError::Config(msg.into()))
}

impl ListenConfig {
    fn from_args(args: &ServeArgs) -> Result<ListenConfig, GatewayError> {
        let addr = args.listen.unwrap_or(default::LISTEN);
        if args.admin_listen.is_some_and(|admin| admin == addr) {
            return bad("--admin-listen must differ from --listen");
        }
        let max_connections = args.max_connections.unwrap_or(default::MAX_CONNECTIONS);
        if !(1..=bound::MAX_CONNECTIONS).contains(&max_connections) {
            return bad(format!(
                "--max-connections {max_connections} is outside 1..={}",
                bound::MAX_CONNECTIONS
            ));
        }
        let handshake_timeout = args.handshake_timeout.unwrap_or(default::HANDSHAKE_TIMEOUT);
        if handshake_timeout < Duration::from_millis(100) {
            return bad("--handshake-timeout must be at least 100ms");
        }
        let mut allowed_origins = Vec::with_capacity(args.allowed_origins.len());
        for origin in &args.allowed_origins {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            let Some((scheme, host)) = origin.split_once("://") else {
                return bad(format!(
                    "--allowed-origins {origin:?} is not an origin like https://app.example.com"
                ));
            };
            if scheme.is_empty() || host.is_empty() || host.contains('/') {
                return bad(format!(
                    "--allowed-origins {origin:?} is not an origin like https://app.example.com"
                ));
            }
            allowed_origins.push(origin);
        }
        Ok(ListenConfig {
            addr,
            admin: args.admin_listen,
            max_connections,
            handshake_timeout: at_most_an_hour("--handshake-timeout", handshake_timeout)?,
            drain_timeout: at_most_an_hour(
                "--drain-timeout",
                args.drain_timeout.unwrap_or(default::DRAIN_TIMEOUT),
            )?,
            allowed_origins,
        })
    }
}

impl AuthConfig {
    fn from_args(args: &ServeArgs) -> Result<AuthConfig, GatewayError> {
        let public_key_pem = match &args.jwt_public_key {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                GatewayError::Config(format!("--jwt-public-key {}: {e}", path.display()))
            })?),
            None => None,
        };
        let (secret, secret_generated) = match &args.jwt_secret {
            Some(s) if s.is_empty() => return bad("--jwt-secret must not be empty"),
            Some(s) => (s.clone(), false),
            None => (random_string(48), true),
        };
        let demo_secret = match &args.demo_secret {
            Some(s) if s.is_empty() => return bad("--demo-secret must not be empty"),
            Some(s) if args.jwt_secret.as_ref() == Some(s) => {
                return bad("--demo-secret must differ from --jwt-secret");
            }
            Some(s) => Some(Secret(s.clone())),
            None => None,
        };
        // A demo signing with the real key would let anyone mint a token for any real user.
        let production_keys = args.jwt_secret.is_some()
            || public_key_pem.is_some()
            || args.access_token_secret.is_some();
        if demo_secret.is_some() && !own_queue_has_user(args) {
            return bad(
                "--demo-secret needs an --own-queue with {user}: demo users would share a real queue",
            );
        }
        if args.demo && production_keys && demo_secret.is_none() {
            return bad(
                "--demo gives anyone a token for any user name: beside --jwt-secret, \
                 --jwt-public-key or --access-token-secret it needs its own --demo-secret",
            );
        }
        let access_token_secret =
            Secret(args.access_token_secret.clone().unwrap_or(secret.clone()));
        let own_queue = args
            .own_queue
            .clone()
            .unwrap_or(default::OWN_QUEUE.to_owned());
        if own_queue.is_empty() {
            return bad("--own-queue must not be empty");
        }
        let api_key = match &args.api_key {
            Some(k) if k.len() < 8 => return bad("--api-key must be at least 8 characters"),
            other => other.clone().map(Secret),
        };
        Ok(AuthConfig {
            jwt: JwtConfig {
                secret: Secret(secret),
                secret_generated,
                public_key_pem,
                issuer: args.jwt_issuer.clone(),
                audience: args.jwt_audience.clone(),
            },
            access_token_secret,
            own_queue,
            open: args.open,
            api_key,
            revocation_sweep: default::REVOCATION_SWEEP,
            demo_secret,
        })
    }
}

impl Limits {
    fn from_args(args: &ServeArgs) -> Result<Limits, GatewayError> {
        let window = args.window.unwrap_or(default::WINDOW);
        if !(1..=10_000).contains(&window) {
            return bad(format!("--window {window} is outside 1..=10000"));
        }
        let max_frame = args.max_frame.unwrap_or(default::MAX_FRAME);
        if !(1024..=bound::MAX_FRAME).contains(&max_frame) {
            return bad(format!(
                "--max-frame {max_frame} is outside 1024..={}",
                bound::MAX_FRAME
            ));
        }
        let ping_interval = args.ping_interval.unwrap_or(default::PING_INTERVAL);
        if ping_interval < Duration::from_millis(100) {
            return bad("--ping-interval must be at least 100ms");
        }
        let ping_interval = at_most_an_hour("--ping-interval", ping_interval)?;
        let max_subscriptions = args
            .max_subscriptions
            .unwrap_or(default::MAX_SUBSCRIPTIONS)
            .max(1);
        if max_subscriptions > bound::MAX_SUBSCRIPTIONS {
            return bad(format!(
                "--max-subscriptions {max_subscriptions} is over {}",
                bound::MAX_SUBSCRIPTIONS
            ));
        }
        // Every subscription may have `window` deliveries waiting for the client at once.
        let credit = window * max_subscriptions;
        if credit > bound::SESSION_CREDIT {
            return bad(format!(
                "--window {window} x --max-subscriptions {max_subscriptions} = {credit} \
                 unacknowledged messages per session is over {}; lower one of them",
                bound::SESSION_CREDIT
            ));
        }
        let outbound_buffer = args
            .outbound_buffer
            .unwrap_or(default::OUTBOUND_BUFFER)
            .max(16);
        if outbound_buffer > bound::OUTBOUND_BUFFER {
            return bad(format!(
                "--outbound-buffer {outbound_buffer} is over {}",
                bound::OUTBOUND_BUFFER
            ));
        }
        let rate_limit = args.rate_limit.unwrap_or(default::RATE_LIMIT);
        Ok(Limits {
            window,
            max_frame,
            max_subscriptions,
            outbound_buffer,
            ping_interval,
            rate_limit,
            rate_burst: args
                .rate_burst
                .unwrap_or_else(|| rate_limit.saturating_mul(2))
                .max(1),
            op_rate_limit: args.op_rate_limit.unwrap_or(default::OP_RATE_LIMIT),
            queue_create_limit: args
                .queue_create_limit
                .unwrap_or(default::QUEUE_CREATE_LIMIT),
        })
    }
}

impl EngineConfig {
    fn from_args(args: &ServeArgs) -> Result<EngineConfig, GatewayError> {
        let rsmq_ns = args.rsmq_ns.clone().unwrap_or(default::RSMQ_NS.to_owned());
        if rsmq_ns.is_empty() || rsmq_ns.contains(char::is_whitespace) {
            return bad(format!("--rsmq-ns {rsmq_ns:?} is not a valid namespace"));
        }
        if let Some(url) = &args.redis_url {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            if seeds.len() > 1 && !args.redis_cluster {
                return bad(
                    "--redis-url holds several URLs: add --redis-cluster for a Redis Cluster",
                );
            }
            let schemes: &[&str] = if args.redis_cluster {
                &["redis://", "rediss://"]
            } else {
                &["redis://", "rediss://", "unix://"]
            };
            if seeds
                .iter()
                .any(|seed| !schemes.iter().any(|scheme| seed.starts_with(scheme)))
            {
                return bad(if args.redis_cluster {
                    "--redis-url with --redis-cluster must be redis:// or rediss:// URLs, separated by commas"
                } else {
                    "--redis-url must start with redis://, rediss:// or unix://"
                });
            }
        } else if args.redis_cluster {
            return bad("--redis-cluster needs --redis-url with the cluster's seed nodes");
        }
        let poll_interval = args.poll_interval.unwrap_or(default::POLL_INTERVAL);
        if poll_interval < Duration::from_millis(10) {
            return bad("--poll-interval must be at least 10ms");
        }
        let poll_interval = at_most_an_hour("--poll-interval", poll_interval)?;
        let amqp = AmqpConfig::from_args(
            args.amqp_url.as_ref(),
            args.amqp_queue_prefix.as_deref(),
            args.amqp_exchange.as_deref(),
        )
        .map_err(GatewayError::Config)?;
        if amqp.is_some() && args.redis_url.is_none() && args.access_token_secret.is_some() {
            return bad(
                "--access-token-secret with --amqp-url needs --redis-url beside it: RabbitMQ \
                 has no place for the access-token registry",
            );
        }
        Ok(EngineConfig {
            redis_url: args.redis_url.clone(),
            redis_cluster: args.redis_cluster,
            amqp,
            rsmq_ns,
            poll_interval,
        })
    }
}

impl ServeArgs {
    /// Fills unset options from `--config`, applies defaults and validates everything.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Config`] with a one-line reason.
    pub fn into_config(self) -> Result<Config, GatewayError> {
        let args = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    GatewayError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                let file: ServeArgs = toml::from_str(&text).map_err(|e| {
                    let msg = e.message().to_owned();
                    GatewayError::Config(format!("{}: {msg}", path.display()))
                })?;
                self.or(file)
            }
            None => self,
        };
        args.validate()
    }

    /// `self` where set, else `file`.
    fn or(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            listen: self.listen.or(file.listen),
            redis_url: self.redis_url.or(file.redis_url),
            redis_cluster: self.redis_cluster || file.redis_cluster,
            amqp_url: self.amqp_url.or(file.amqp_url),
            amqp_queue_prefix: self.amqp_queue_prefix.or(file.amqp_queue_prefix),
            amqp_exchange: self.amqp_exchange.or(file.amqp_exchange),
            rsmq_ns: self.rsmq_ns.or(file.rsmq_ns),
            jwt_secret: self.jwt_secret.or(file.jwt_secret),
            jwt_public_key: self.jwt_public_key.or(file.jwt_public_key),
            jwt_issuer: self.jwt_issuer.or(file.jwt_issuer),
            jwt_audience: self.jwt_audience.or(file.jwt_audience),
            access_token_secret: self.access_token_secret.or(file.access_token_secret),
            own_queue: self.own_queue.or(file.own_queue),
            open: self.open || file.open,
            demo: self.demo || file.demo,
            demo_secret: self.demo_secret.or(file.demo_secret),
            api_key: self.api_key.or(file.api_key),
            window: self.window.or(file.window),
            poll_interval: self.poll_interval.or(file.poll_interval),
            max_frame: self.max_frame.or(file.max_frame),
            max_connections: self.max_connections.or(file.max_connections),
            drain_timeout: self.drain_timeout.or(file.drain_timeout),
            node_id: self.node_id.or(file.node_id),
            log_format: self.log_format.or(file.log_format),
            max_subscriptions: self.max_subscriptions.or(file.max_subscriptions),
            outbound_buffer: self.outbound_buffer.or(file.outbound_buffer),
            ping_interval: self.ping_interval.or(file.ping_interval),
            handshake_timeout: self.handshake_timeout.or(file.handshake_timeout),
            rate_limit: self.rate_limit.or(file.rate_limit),
            rate_burst: self.rate_burst.or(file.rate_burst),
            admin_listen: self.admin_listen.or(file.admin_listen),
            history_size: self.history_size.or(file.history_size),
            history_ttl: self.history_ttl.or(file.history_ttl),
            history: if self.history.is_empty() {
                file.history
            } else {
                self.history
            },
            allowed_origins: if self.allowed_origins.is_empty() {
                file.allowed_origins
            } else {
                self.allowed_origins
            },
            op_rate_limit: self.op_rate_limit.or(file.op_rate_limit),
            queue_create_limit: self.queue_create_limit.or(file.queue_create_limit),
        }
    }

    fn validate(self) -> Result<Config, GatewayError> {
        let listen = ListenConfig::from_args(&self)?;
        let node_id = match &self.node_id {
            Some(id) if id.is_empty() || id.contains(char::is_whitespace) => {
                return bad(format!("--node-id {id:?} must be non-empty without spaces"));
            }
            Some(id) => id.clone(),
            None => default_node_id(listen.addr.port()),
        };
        Ok(Config {
            auth: AuthConfig::from_args(&self)?,
            limits: Limits::from_args(&self)?,
            engine: EngineConfig::from_args(&self)?,
            listen,
            node_id,
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            demo: self.demo,
            history: HistoryConfig::from_args(&self)?,
        })
    }
}

impl HistoryConfig {
    fn from_args(args: &ServeArgs) -> Result<HistoryConfig, GatewayError> {
        let check = |size: u64, ttl: Duration, what: &str| {
            if size > default::MAX_HISTORY_SIZE {
                return bad(format!(
                    "{what} size must be at most {}",
                    default::MAX_HISTORY_SIZE
                ));
            }
            if ttl < Duration::from_secs(1) {
                return bad(format!("{what} ttl must be at least 1s"));
            }
            Ok(HistoryRule { size, ttl })
        };
        let default = check(
            args.history_size.unwrap_or(default::HISTORY_SIZE),
            args.history_ttl.unwrap_or(default::HISTORY_TTL),
            "--history",
        )?;
        // RabbitMQ's topic exchange keeps and numbers nothing (docs/amqp.md): refused at start
        // rather than a history that silently stays empty.
        if args.amqp_url.is_some() {
            if default.size > 0 {
                return bad(
                    "--history-size needs the Redis or in-memory engine: RabbitMQ channels \
                     (--amqp-url) keep no history",
                );
            }
            if let Some(rule) = args.history.first() {
                return bad(format!(
                    "[[history]] {:?} needs the Redis or in-memory engine: RabbitMQ channels \
                     (--amqp-url) keep no history",
                    rule.pattern
                ));
            }
        }
        let mut rules = Vec::new();
        for rule in &args.history {
            if rule.pattern.is_empty() {
                return bad("[[history]] pattern must not be empty");
            }
            let what = format!("[[history]] {:?}", rule.pattern);
            let size = rule.size.unwrap_or(default.size);
            let ttl = rule.ttl.unwrap_or(default.ttl);
            rules.push((rule.pattern.clone(), check(size, ttl, &what)?));
        }
        // Not on RabbitMQ: the demo runs there too, its rooms without history.
        if args.demo && args.amqp_url.is_none() {
            // After the file's entries, so a file can still say otherwise for the rooms.
            let size = default.size.max(default::DEMO_HISTORY_SIZE);
            rules.push((
                "room-*".to_owned(),
                HistoryRule {
                    size,
                    ttl: default.ttl,
                },
            ));
        }
        Ok(HistoryConfig { default, rules })
    }
}

impl Config {
    /// The defaults with a fixed JWT secret: what tests start from.
    #[cfg(any(test, feature = "test-util"))]
    pub fn for_tests(jwt_secret: &str) -> Config {
        ServeArgs {
            jwt_secret: Some(jwt_secret.to_owned()),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            node_id: Some("test-node".to_owned()),
            ..ServeArgs::default()
        }
        .validate()
        .expect("the test defaults are valid")
    }
}

/// `hostname-port-abcd`.
fn default_node_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wsmq".to_owned());
    format!("{host}-{port}-{}", random_string(4).to_lowercase())
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// serde support for `Option<Duration>` written as humantime strings ("1s", "250ms").
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, GatewayError> {
        let mut argv = vec!["wsmq-gateway", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let Command::Serve(serve) = cli.command;
        serve.into_config()
    }

    #[test]
    fn defaults_work_on_a_laptop() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.addr, "0.0.0.0:3000".parse().unwrap());
        assert!(config.engine.redis_url.is_none());
        assert!(config.auth.jwt.secret_generated);
        assert_eq!(config.auth.access_token_secret, config.auth.jwt.secret);
        assert_eq!((config.limits.window, config.limits.max_frame), (64, 65536));
        assert_eq!(config.engine.poll_interval, Duration::from_secs(1));
        assert!(config.node_id.contains("-3000-"));
    }

    #[test]
    fn durations_are_humantime_and_bad_values_are_refused() {
        let config = parse(&["--poll-interval", "250ms", "--drain-timeout", "2s"]).unwrap();
        assert_eq!(config.engine.poll_interval, Duration::from_millis(250));
        assert_eq!(config.listen.drain_timeout, Duration::from_secs(2));
        assert!(parse(&["--window", "0"]).is_err());
        assert!(parse(&["--redis-url", "http://x"]).is_err());
    }

    #[test]
    fn the_file_fills_what_flags_leave_unset() {
        let dir = std::env::temp_dir().join(format!("wsmq-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            "window = 8\nrsmq-ns = \"other\"\npoll-interval = \"2s\"\n",
        )
        .unwrap();
        let config = parse(&["--config", path.to_str().unwrap(), "--window", "16"]).unwrap();
        assert_eq!(config.limits.window, 16);
        assert_eq!(config.engine.rsmq_ns, "other");
        assert_eq!(config.engine.poll_interval, Duration::from_secs(2));
        std::fs::write(&path, "windw = 8\n").unwrap();
        assert!(parse(&["--config", path.to_str().unwrap()]).is_err());
    }

    #[test]
    fn history_has_flags_file_rules_and_the_demo_rooms() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.history.default.size, 0);
        assert_eq!(config.history.default.ttl, Duration::from_secs(86_400));
        assert!(config.history.rules.is_empty());

        let dir = std::env::temp_dir().join(format!("wsmq-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        let file = "history-size = 10\n[[history]]\npattern = \"chat-*\"\nsize = 500\nttl = \"1h\"\n\
                    [[history]]\npattern = \"noisy-*\"\nsize = 0\n";
        std::fs::write(&path, file).unwrap();
        let config = parse(&["--config", path.to_str().unwrap(), "--demo"]).unwrap();
        assert_eq!(config.history.default.size, 10);
        let rules: Vec<(&str, u64, u64)> = config
            .history
            .rules
            .iter()
            .map(|(p, r)| (p.as_str(), r.size, r.ttl.as_secs()))
            .collect();
        assert_eq!(
            rules,
            vec![
                ("chat-*", 500, 3600),
                ("noisy-*", 0, 86_400),
                ("room-*", 100, 86_400)
            ]
        );

        for bad in [
            "[[history]]\npattern = \"\"\n",
            "[[history]]\npattern = \"a\"\nsize = 2000000\n",
            "[[history]]\npattern = \"a\"\nttl = \"0s\"\n",
            "[[history]]\npattern = \"a\"\nsise = 3\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                parse(&["--config", path.to_str().unwrap()]).is_err(),
                "{bad}"
            );
        }
        assert!(parse(&["--history-size", "1000001"]).is_err());
        assert!(parse(&["--history-ttl", "0s"]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn limits_and_the_admin_address_have_flags_and_defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.handshake_timeout, Duration::from_secs(10));
        assert_eq!(
            (config.limits.rate_limit, config.limits.rate_burst),
            (10_000, 20_000)
        );
        assert_eq!(config.listen.admin, None);
        let config = parse(&[
            "--handshake-timeout",
            "2s",
            "--rate-limit",
            "5",
            "--admin-listen",
            "127.0.0.1:9000",
        ])
        .unwrap();
        assert_eq!(config.listen.handshake_timeout, Duration::from_secs(2));
        assert_eq!(
            (config.limits.rate_limit, config.limits.rate_burst),
            (5, 10)
        );
        assert_eq!(config.listen.admin, Some("127.0.0.1:9000".parse().unwrap()));
        assert!(
            parse(&[
                "--listen",
                "127.0.0.1:9000",
                "--admin-listen",
                "127.0.0.1:9000"
            ])
            .is_err()
        );
        assert!(parse(&["--handshake-timeout", "10ms"]).is_err());
    }

    /// Each flag's help text states the default that validation applies.
    #[test]
    fn help_texts_state_the_defaults_in_force() {
        use clap::CommandFactory;

        let secs = |d: Duration| humantime::format_duration(d).to_string();
        let expected = [
            ("listen", default::LISTEN.to_string()),
            ("rsmq_ns", default::RSMQ_NS.to_owned()),
            ("own_queue", default::OWN_QUEUE.to_owned()),
            ("window", default::WINDOW.to_string()),
            ("poll_interval", secs(default::POLL_INTERVAL)),
            ("max_frame", default::MAX_FRAME.to_string()),
            ("max_connections", default::MAX_CONNECTIONS.to_string()),
            ("drain_timeout", secs(default::DRAIN_TIMEOUT)),
            ("max_subscriptions", default::MAX_SUBSCRIPTIONS.to_string()),
            ("outbound_buffer", default::OUTBOUND_BUFFER.to_string()),
            ("ping_interval", secs(default::PING_INTERVAL)),
            ("handshake_timeout", secs(default::HANDSHAKE_TIMEOUT)),
            ("rate_limit", default::RATE_LIMIT.to_string()),
            ("history_size", default::HISTORY_SIZE.to_string()),
            ("history_ttl", secs(default::HISTORY_TTL)),
            ("op_rate_limit", default::OP_RATE_LIMIT.to_string()),
            (
                "queue_create_limit",
                default::QUEUE_CREATE_LIMIT.to_string(),
            ),
            (
                "amqp_exchange",
                crate::engine::amqp::DEFAULT_EXCHANGE.to_owned(),
            ),
        ];
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve subcommand");
        for (id, value) in expected {
            let arg = serve
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no flag {id}"));
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(
                help.contains(&format!("[default: {value}]")),
                "--{id}: help {help:?} does not say [default: {value}]"
            );
        }
        // And the defaults are what a configuration without flags gets.
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.addr, default::LISTEN);
        assert_eq!(config.limits.window, default::WINDOW);
        assert_eq!(config.engine.poll_interval, default::POLL_INTERVAL);
        assert_eq!(config.limits.outbound_buffer, default::OUTBOUND_BUFFER);
        assert_eq!(config.auth.own_queue, default::OWN_QUEUE);
    }

    #[test]
    fn amqp_flags_select_rabbitmq_and_keep_the_password_out_of_sight() {
        let url = "amqp://app:hunter2-pw@rabbit:5672/prod";
        let config = parse(&["--amqp-url", url, "--amqp-queue-prefix", "chat."]).unwrap();
        let amqp = config.engine.amqp.as_ref().expect("amqp selected");
        assert_eq!(amqp.url.expose(), url);
        assert_eq!(
            (amqp.queue_prefix.as_str(), amqp.exchange.as_str()),
            ("chat.", "wsmq.direct")
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        let err = parse(&["--amqp-url", "amqps://app:hunter2-pw@rabbit"]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Access tokens need a registry: Redis beside RabbitMQ, or a refusal at start.
        let err =
            parse(&["--amqp-url", url, "--access-token-secret", "s3cret-s3cret"]).unwrap_err();
        assert!(err.to_string().contains("--redis-url"), "{err}");
        let both = [
            "--amqp-url",
            url,
            "--access-token-secret",
            "s3cret-s3cret",
            "--redis-url",
            "redis://127.0.0.1:6379",
        ];
        assert!(parse(&both).is_ok());
    }

    #[test]
    fn history_is_refused_beside_rabbitmq_and_the_demo_runs_there_without_it() {
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        let err = parse(&["--amqp-url", url, "--history-size", "10"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--history-size") && err.contains("RabbitMQ"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        assert!(parse(&["--amqp-url", url, "--history-size", "0"]).is_ok());

        let dir = std::env::temp_dir().join(format!("wsmq-amqp-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, "[[history]]\npattern = \"chat-*\"\nsize = 5\n").unwrap();
        let with_file = ["--amqp-url", url, "--config", path.to_str().unwrap()];
        let err = parse(&with_file).unwrap_err().to_string();
        assert!(
            err.contains("[[history]] \"chat-*\"") && err.contains("RabbitMQ"),
            "{err}"
        );
        // The same file is fine on the other engines.
        assert!(parse(&["--config", path.to_str().unwrap()]).is_ok());

        // --demo keeps its rooms' history on Redis and in memory, but adds none on RabbitMQ.
        let demo = parse(&["--demo"]).unwrap();
        assert_eq!(demo.history.rules.len(), 1);
        let demo = parse(&["--demo", "--amqp-url", url]).unwrap();
        assert!(demo.history.rules.is_empty(), "{:?}", demo.history.rules);
        assert_eq!(demo.history.default.size, 0);
    }

    #[test]
    fn outside_values_have_upper_bounds() {
        for args in [
            &["--poll-interval", "100000000000s"][..],
            &["--ping-interval", "2h"],
            &["--handshake-timeout", "2h"],
            &["--drain-timeout", "30000000y"],
            &["--max-frame", "18446744073709551615"],
            &["--max-connections", "2305843009213693952"],
            &["--max-subscriptions", "1000000"],
            &["--outbound-buffer", "18446744073709551615"],
        ] {
            let err = parse(args).expect_err(args[0]).to_string();
            assert!(err.contains(args[0]), "{args:?}: {err}");
        }
        assert!(parse(&["--poll-interval", "1h", "--max-frame", "67108864"]).is_ok());
    }

    #[test]
    fn the_credit_of_a_session_is_bounded_at_start() {
        // 10,000 x 64 deliveries could wait for one client: refused with one line naming both.
        let err = parse(&["--window", "10000"]).unwrap_err().to_string();
        assert!(
            err.contains("--window 10000 x --max-subscriptions 64") && !err.contains('\n'),
            "{err}"
        );
        assert!(parse(&["--window", "10000", "--max-subscriptions", "10"]).is_ok());
        assert!(parse(&["--window", "1000"]).is_ok());
    }

    #[test]
    fn demo_mode_is_refused_beside_production_keys_without_its_own_secret() {
        assert!(parse(&["--demo"]).is_ok());
        for key in ["--jwt-secret", "--access-token-secret"] {
            let err = parse(&["--demo", key, "prod-secret"])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--demo-secret"), "{err}");
        }
        let config = parse(&["--demo", "--jwt-secret", "prod", "--demo-secret", "play"]).unwrap();
        assert_eq!(config.auth.demo_secret, Some(Secret::new("play")));
        assert!(parse(&["--demo", "--jwt-secret", "same", "--demo-secret", "same"]).is_err());
        let fixed = ["--demo", "--demo-secret", "play", "--own-queue", "shared"];
        assert!(parse(&fixed).unwrap_err().to_string().contains("{user}"));
    }

    #[test]
    fn origins_are_checked_and_normalised() {
        let config = parse(&[
            "--allowed-origins",
            "https://App.example.com/,http://localhost:8080",
        ])
        .unwrap();
        assert_eq!(
            config.listen.allowed_origins,
            ["https://app.example.com", "http://localhost:8080"]
        );
        assert!(parse(&["--allowed-origins", "app.example.com"]).is_err());
        assert!(parse(&[]).unwrap().listen.allowed_origins.is_empty());
    }

    #[test]
    fn urls_lose_their_password_in_debug_output_and_help() {
        use clap::CommandFactory;

        assert_eq!(
            redact_url("redis://user:hunter2@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://:hunter2@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact_url("redis://:pw1@a:7001,redis://u:pw2@b:7002/0"),
            "redis://:***@a:7001,redis://u:***@b:7002/0"
        );
        let config = parse(&["--redis-url", "redis://:hunter2@127.0.0.1:6379"]).unwrap();
        let text = format!("{config:?}");
        assert!(
            !text.contains("hunter2") && text.contains("127.0.0.1"),
            "{text}"
        );
        // `serve --help` shows no environment value of a secret or URL.
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve subcommand");
        for id in [
            "redis_url",
            "jwt_secret",
            "access_token_secret",
            "api_key",
            "demo_secret",
        ] {
            let arg = serve.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert!(arg.is_hide_env_values_set(), "--{id} shows its env value");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = parse(&[
            "--jwt-secret",
            "hunter2-hunter2",
            "--api-key",
            "key-key-key",
        ])
        .unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2") && !text.contains("key-key-key"));
    }
}
