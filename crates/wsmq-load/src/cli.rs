//! The command line of `wsmq-load`.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for `cargo xtask bench`: connects clients, prints a `ready` line, waits
/// for a line on stdin, runs, prints a `result` line (JSON).
#[derive(Debug, Parser)]
#[command(name = "wsmq-load")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options every scenario takes.
#[derive(Debug, Args)]
pub struct Common {
    /// What the clients talk to.
    #[arg(long, value_enum, default_value = "wsmq")]
    pub target: Target,
    /// The server, `host:port` on loopback.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub server: std::net::SocketAddr,
    /// HS256 secret for the clients' JWTs (wsmq).
    #[arg(long, default_value = "bench-secret")]
    pub jwt_secret: String,
    /// Clients in this process.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Index of this process's first client: names and source addresses follow it.
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Queue, user or channel names are this prefix followed by the client index.
    #[arg(long, default_value = "bench-")]
    pub prefix: String,
    /// Source addresses 127.0.0.2 … 127.0.0.(1+N), so that many sockets do not run out
    /// of ephemeral ports.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Upper bound on the whole run, connecting included.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

/// The server under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// wsmq, v1 dialect (`wsmq.v1` subprotocol, JWT in `x-token`).
    Wsmq,
    /// The legacy dialect, no token: `/subscribe/<queue>`, `{"message":…}` (the Node design).
    Legacy,
    /// wsmq, legacy dialect: `/subscribe/<queue>` on `/` without subprotocol, JWT in
    /// `x-token`.
    WsmqLegacy,
    /// Nchan: websocket subscriber at `/sub/<channel>`, HTTP publisher at `/pub/<channel>`.
    Nchan,
    /// wsmq over Server-Sent Events: `GET /sse?queue=<queue>` with the JWT in
    /// `Authorization: Bearer` (as wsmq.js sends it), acks over `POST /api/ack`.
    WsmqSse,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Each client consumes its own queue; this process publishes to those queues.
    Queue(QueueArgs),
    /// Every client subscribes to one channel; with --publish this process publishes.
    Fanout(FanoutArgs),
    /// Idle sessions, each subscribed to its own queue (or channel), held until a second
    /// line on stdin.
    Sessions,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The Redis that holds the queues (the gateway's Redis engine): this process creates
    /// them and publishes with `send_batch`.
    #[arg(
        long,
        required_unless_present = "amqp_url",
        conflicts_with = "amqp_url"
    )]
    pub redis_url: Option<String>,
    /// Publish over RabbitMQ instead: to the direct exchange `--amqp-exchange` with the
    /// queue's name as routing key, as the Node chat's servers do, each message confirmed
    /// by the broker. The queues are the subscribers' to declare (the gateway declares a
    /// user's queue on subscribe; the Node chat binds an exclusive one per socket).
    #[arg(long)]
    pub amqp_url: Option<String>,
    /// The direct exchange of `--amqp-url`.
    #[arg(long, default_value = "wsmq.direct")]
    pub amqp_exchange: String,
    /// `--redis-url` is a comma-separated list of Redis Cluster seed nodes: the queues are
    /// created and published to in the gateway's cluster layout (`{ns}:{q}`, one master per
    /// queue), as the gateway's `--redis-cluster` expects.
    #[arg(long, requires = "redis_url")]
    pub redis_cluster: bool,
    /// Messages this process publishes, spread over its clients' queues.
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Messages per second from this process; 0 for full speed.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Bytes per body.
    #[arg(long, default_value_t = 100)]
    pub body_size: usize,
    /// Most messages per `send_batch` call (one queue each).
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Only consume: a publisher outside this process sends the `--messages` messages,
    /// numbered 0.., message k to the queue of client k mod N, N being the clients of all
    /// load processes together. This process waits for its own clients' share.
    #[arg(long, value_name = "N")]
    pub external: Option<usize>,
    /// SSE clients (`--target wsmq-sse`): keep-alive HTTP/1.1 connections per client for
    /// `POST /api/ack`, each carrying one request at a time (a browser's `fetch` spreads
    /// requests over up to 6 connections per host, the stream taking one).
    #[arg(long, default_value_t = 4)]
    pub ack_connections: usize,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The channel.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Messages published to the channel.
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// This process publishes (after the go-ahead).
    #[arg(long)]
    pub publish: bool,
    /// Messages per second; 0 for full speed.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// The Redis the gateway listens on, for publishing to wsmq.
    #[arg(long, conflicts_with = "amqp_url")]
    pub redis_url: Option<String>,
    /// `--redis-url` is a comma-separated list of Redis Cluster seed nodes: publish with
    /// `SPUBLISH wsmq:ch:{channel}` (braces literal), the sharded channel that gateways
    /// started with `--redis-cluster` subscribe to.
    #[arg(long, requires = "redis_url")]
    pub redis_cluster: bool,
    /// Publish to wsmq over RabbitMQ instead: to the topic exchange `wsmq.channels` with the
    /// channel as routing key.
    #[arg(long)]
    pub amqp_url: Option<String>,
    /// Bytes per body.
    #[arg(long, default_value_t = 100)]
    pub body_size: usize,
    /// A subscriber stops after this long without a message, once messages have come.
    #[arg(long, default_value_t = 2.0)]
    pub quiet_secs: f64,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Scenario};

    #[test]
    fn queue_publishes_through_exactly_one_of_redis_and_rabbitmq() {
        assert!(Cli::try_parse_from(["wsmq-load", "queue"]).is_err());
        let both = [
            "wsmq-load",
            "queue",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--amqp-url",
            "amqp://127.0.0.1:1",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        let cli = Cli::try_parse_from(["wsmq-load", "queue", "--amqp-url", "amqp://127.0.0.1:1"])
            .unwrap();
        let Scenario::Queue(args) = cli.scenario else {
            panic!("not the queue scenario");
        };
        assert_eq!(
            (
                args.redis_url,
                args.amqp_url.as_deref(),
                args.amqp_exchange.as_str()
            ),
            (None, Some("amqp://127.0.0.1:1"), "wsmq.direct")
        );
    }

    #[test]
    fn redis_cluster_needs_the_seed_nodes() {
        assert!(Cli::try_parse_from(["wsmq-load", "queue", "--redis-cluster"]).is_err());
        assert!(
            Cli::try_parse_from(["wsmq-load", "fanout", "--publish", "--redis-cluster"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "wsmq-load",
            "queue",
            "--redis-cluster",
            "--redis-url",
            "redis://127.0.0.1:1,redis://127.0.0.1:2",
        ])
        .unwrap();
        let Scenario::Queue(args) = cli.scenario else {
            panic!("not the queue scenario");
        };
        assert!(args.redis_cluster);
    }
}
