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
    /// Redis URL; without it an in-memory engine runs (single node, not durable).
    #[arg(long, env = "WSMQ_REDIS_URL")]
    pub redis_url: Option<String>,
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
    /// Required `iss` of JWTs.
    #[arg(long, env = "WSMQ_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs.
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
    /// name: never in production.
    #[arg(long, env = "WSMQ_DEMO")]
    #[serde(default)]
    pub demo: bool,
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
    /// How long a new connection may take to send its request headers before it is dropped
    /// [default: 10s].
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
}

/// Where and how connections are accepted.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Listen address (as configured; tests pass their own listener).
    pub addr: SocketAddr,
    /// The internal admin address, if any.
    pub admin: Option<SocketAddr>,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Time a connection has to send its request headers (the handshake timeout).
    pub handshake_timeout: Duration,
    /// Shutdown deadline.
    pub drain_timeout: Duration,
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
}

/// Which engine, and how it is read.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Redis URL, or `None` for the in-memory engine. With `amqp`, only the access-token
    /// registry (and a copy of the heartbeats) lives there.
    pub redis_url: Option<String>,
    /// RabbitMQ, which then holds queues and channels.
    pub amqp: Option<AmqpConfig>,
    /// rsmq namespace.
    pub rsmq_ns: String,
    /// Poll fallback period.
    pub poll_interval: Duration,
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
        if max_connections == 0 {
            return bad("--max-connections must be at least 1");
        }
        let handshake_timeout = args.handshake_timeout.unwrap_or(default::HANDSHAKE_TIMEOUT);
        if handshake_timeout < Duration::from_millis(100) {
            return bad("--handshake-timeout must be at least 100ms");
        }
        Ok(ListenConfig {
            addr,
            admin: args.admin_listen,
            max_connections,
            handshake_timeout,
            drain_timeout: args.drain_timeout.unwrap_or(default::DRAIN_TIMEOUT),
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
        if args.demo && public_key_pem.is_some() {
            return bad("--demo mints HS256 tokens: it cannot be used with --jwt-public-key");
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
        if max_frame < 1024 {
            return bad(format!("--max-frame {max_frame} is below 1024"));
        }
        let ping_interval = args.ping_interval.unwrap_or(default::PING_INTERVAL);
        if ping_interval < Duration::from_millis(100) {
            return bad("--ping-interval must be at least 100ms");
        }
        let rate_limit = args.rate_limit.unwrap_or(default::RATE_LIMIT);
        Ok(Limits {
            window,
            max_frame,
            max_subscriptions: args
                .max_subscriptions
                .unwrap_or(default::MAX_SUBSCRIPTIONS)
                .max(1),
            outbound_buffer: args
                .outbound_buffer
                .unwrap_or(default::OUTBOUND_BUFFER)
                .max(16),
            ping_interval,
            rate_limit,
            rate_burst: args
                .rate_burst
                .unwrap_or_else(|| rate_limit.saturating_mul(2))
                .max(1),
        })
    }
}

impl EngineConfig {
    fn from_args(args: &ServeArgs) -> Result<EngineConfig, GatewayError> {
        let rsmq_ns = args.rsmq_ns.clone().unwrap_or(default::RSMQ_NS.to_owned());
        if rsmq_ns.is_empty() || rsmq_ns.contains(char::is_whitespace) {
            return bad(format!("--rsmq-ns {rsmq_ns:?} is not a valid namespace"));
        }
        if let Some(url) = &args.redis_url
            && !["redis://", "rediss://", "unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            return bad("--redis-url must start with redis://, rediss:// or unix://");
        }
        let poll_interval = args.poll_interval.unwrap_or(default::POLL_INTERVAL);
        if poll_interval < Duration::from_millis(10) {
            return bad("--poll-interval must be at least 10ms");
        }
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
        })
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
