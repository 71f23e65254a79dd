//! Every clap type of `wsmq-cli`: the command tree, its options and their help text.
//!
//! Only syntax is checked here (types, required options, exclusive groups). Rules that need a
//! sentence to explain (queue names, secrets, durations) are checked by the commands before they
//! connect, so that they fail with one readable line and exit code 1.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

/// Send, receive and inspect wsmq queues, channels, tokens and gateway nodes
///
/// wsmq-cli talks to the Redis that the wsmq gateways share. Queues use the rsmq layout, so
/// anything it sends is delivered by the gateways to the WebSocket sessions that consume the
/// queue, and anything rsmq publishers send can be received with it.
///
/// Examples:
///
///   wsmq-cli send --queue orders --message '{"id":1}'
///   wsmq-cli --json queue stats orders
///   WSMQ_JWT_SECRET=s3cret wsmq-cli token issue --user alice --ttl 1h
#[derive(Debug, Parser)]
#[command(name = "wsmq-cli", version, verbatim_doc_comment)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalOpts,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where Redis is and how to print; accepted before or after the command name.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Redis URL: redis://[user:password@]host[:port][/db] or redis+unix:///path
    // The environment value is hidden from --help because it may hold a password.
    #[arg(
        long,
        env = "WSMQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub redis_url: String,

    /// --redis-url lists Redis Cluster seed nodes, comma-separated: queues and wsmq's keys in
    /// the cluster layout, as the gateways' --redis-cluster
    #[arg(
        long,
        env = "WSMQ_REDIS_CLUSTER",
        global = true,
        help_heading = "Global options"
    )]
    pub redis_cluster: bool,

    /// rsmq namespace: the prefix of the queue keys, as the gateways' --rsmq-ns
    #[arg(
        long,
        env = "WSMQ_RSMQ_NS",
        default_value = "rsmq",
        global = true,
        value_name = "NS",
        help_heading = "Global options"
    )]
    pub ns: String,

    /// RabbitMQ URL (amqp://user:pass@host:5672/vhost): send, queue create|stats|delete and
    /// publish go to RabbitMQ, as the gateways' --amqp-url
    // Hidden from --help for the same reason as --redis-url.
    #[arg(
        long,
        env = "WSMQ_AMQP_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub amqp_url: Option<String>,

    /// With --amqp-url: the prefix of queue names on RabbitMQ, as the gateways' flag [default: none]
    #[arg(
        long,
        env = "WSMQ_AMQP_QUEUE_PREFIX",
        global = true,
        value_name = "PREFIX",
        help_heading = "Global options"
    )]
    pub amqp_queue_prefix: Option<String>,

    /// With --amqp-url: the direct exchange of the queues, as the gateways' flag [default: wsmq.direct]
    #[arg(
        long,
        env = "WSMQ_AMQP_EXCHANGE",
        global = true,
        value_name = "EXCHANGE",
        help_heading = "Global options"
    )]
    pub amqp_exchange: Option<String>,

    /// Print JSON on stdout instead of text (notes and progress still go to stderr)
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    // The help of these three is the doc of their argument structs.
    Send(SendArgs),
    Receive(ReceiveArgs),
    Publish(PublishArgs),

    /// List, inspect, create, change and delete queues
    #[command(subcommand)]
    Queue(QueueCmd),

    /// Issue and revoke client tokens
    #[command(subcommand)]
    Token(TokenCmd),

    /// Read channels' history and presence
    #[command(subcommand)]
    Channel(ChannelCmd),

    /// List the live gateway nodes (from their heartbeats in Redis)
    Nodes,
}

/// Channel commands.
#[derive(Debug, Subcommand)]
pub enum ChannelCmd {
    /// Print the latest publications a channel with history keeps, oldest first
    ///
    /// Reads the channel's stream as the gateways wrote it (with --history-size or
    /// [[history]]); nothing is changed. Prints the epoch and the latest offset too.
    ///
    /// Examples:
    ///
    ///   wsmq-cli channel history room-1
    ///   wsmq-cli --json channel history room-1 --limit 500 --before 1200
    #[command(verbatim_doc_comment)]
    History {
        /// The channel
        #[arg(value_name = "CHANNEL")]
        channel: String,
        /// Most publications printed, 1 to 1000
        #[arg(long, short = 'n', default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Only publications before this offset (exclusive)
        #[arg(long, value_name = "OFFSET")]
        before: Option<u64>,
    },

    /// Print who is subscribed to a channel, on all nodes, with their session counts
    ///
    /// Reads the presence the gateways keep in Redis; memberships whose node stopped
    /// refreshing them (a node that died) are not counted. Nothing is changed.
    ///
    /// Examples:
    ///
    ///   wsmq-cli channel presence room-1
    ///   wsmq-cli --json channel presence room-1
    #[command(verbatim_doc_comment)]
    Presence {
        /// The channel
        #[arg(value_name = "CHANNEL")]
        channel: String,
    },
}

/// Send a message, or one message per line of a file, to a queue
///
/// Prints the id of every message sent. Messages are sent with an rsmq realtime notification,
/// so idle gateways deliver them at once.
///
/// With --file, lines are sent in order, in batches of 500 with several batches in flight;
/// empty lines are skipped. A progress bar is drawn when stderr is a terminal. If a batch
/// fails, the messages sent before it stay sent and the error says how many there were.
///
/// Examples:
///
///   wsmq-cli send --queue alice --message 'hello'
///   wsmq-cli send --queue alice --file messages.txt --delay 60
///   producer | wsmq-cli --json send --queue alice --file -
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SendArgs {
    /// The queue to send to
    #[arg(long, short, value_name = "QUEUE")]
    pub queue: String,

    /// The message body, or the file of messages.
    #[command(flatten)]
    pub source: SendSource,

    /// Keep the messages hidden for this many seconds after sending
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<u64>,

    /// Return only once N replicas of the queue's master hold each message (Redis WAIT, up
    /// to 2 s), so that it survives a failover; fails when fewer confirm [default: 0]
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub replicas: u32,
}

/// Exactly one of `--message` and `--file`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SendSource {
    /// The message body
    #[arg(long, short, value_name = "TEXT")]
    pub message: Option<String>,

    /// Send each line of FILE as a message; `-` reads stdin
    #[arg(long, short, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Receive messages from a queue; they stay hidden for the visibility timeout
///
/// Each message received is hidden from other consumers for the visibility timeout (the
/// queue's vt, or --vt) and its receive count goes up; it is not deleted unless --delete is
/// given, so it becomes visible again afterwards, as with a client that does not ack.
///
/// Examples:
///
///   wsmq-cli receive --queue alice --count 10
///   wsmq-cli --json receive --queue alice --delete
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ReceiveArgs {
    /// The queue to receive from
    #[arg(long, short, value_name = "QUEUE")]
    pub queue: String,

    /// Receive up to N messages
    #[arg(
        long,
        short = 'n',
        default_value_t = 1,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub count: u32,

    /// Hide the received messages for this many seconds instead of the queue's vt
    #[arg(long, value_name = "SECONDS")]
    pub vt: Option<u64>,

    /// Delete the messages after printing them (acknowledge them)
    #[arg(long)]
    pub delete: bool,
}

/// Broadcast a message on a channel to the sessions subscribed to it on every node
///
/// Channels are at-most-once: only sessions subscribed at this moment get the message. Prints
/// how many gateway nodes received it (each node subscribes once per channel in use).
///
/// Example:
///
///   wsmq-cli publish --channel news --message 'deploy at 17:00'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PublishArgs {
    /// The channel to publish on
    #[arg(long, short, value_name = "CHANNEL")]
    pub channel: String,

    /// The message body
    #[arg(long, short, value_name = "TEXT")]
    pub message: String,
}

/// Queue administration.
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List the queues of the namespace
    List,

    /// Show a queue's attributes and message counts
    Stats {
        /// The queue
        #[arg(value_name = "QUEUE")]
        queue: String,
    },

    /// Create a queue
    ///
    /// Gateways create a queue when a client subscribes to it; create it yourself to set its
    /// attributes first or to send to it before anyone subscribed.
    ///
    /// Example:
    ///
    ///   wsmq-cli queue create alice --vt 60 --maxsize -1
    #[command(verbatim_doc_comment)]
    Create {
        /// The queue
        #[arg(value_name = "QUEUE")]
        queue: String,

        /// Attributes other than the defaults.
        #[command(flatten)]
        attrs: QueueAttrArgs,
    },

    /// Change a queue's attributes (at least one of them)
    ///
    /// Examples:
    ///
    ///   wsmq-cli queue set alice --vt 120
    ///   wsmq-cli queue set jobs --max-receives 5 --dead-letter jobs-dead --ttl 3600
    ///   wsmq-cli queue set jobs --max-receives 0 --no-dead-letter
    #[command(verbatim_doc_comment)]
    Set {
        /// The queue
        #[arg(value_name = "QUEUE")]
        queue: String,

        /// The attributes to change.
        #[command(flatten)]
        attrs: QueueAttrArgs,
    },

    /// Delete a queue and all its messages
    Delete {
        /// The queue
        #[arg(value_name = "QUEUE")]
        queue: String,
    },

    /// Move messages from a dead-letter queue back to a queue, ids and bodies kept
    ///
    /// Moves the visible messages of QUEUE (oldest first; those being received stay) to the
    /// queue given by --to, where they are visible at once and start with a receive count of
    /// 0. Each batch of up to 1000 is one atomic step, so an interrupted redrive leaves
    /// every message in exactly one of the two queues. A progress bar is drawn when stderr
    /// is a terminal. A message older than the target's --ttl is dead again at its next
    /// receive there: its age comes from its id, which is kept.
    ///
    /// Example:
    ///
    ///   wsmq-cli queue redrive jobs-dead --to jobs --count 100
    #[command(verbatim_doc_comment)]
    Redrive {
        /// The queue to move messages from (usually a dead-letter queue)
        #[arg(value_name = "QUEUE")]
        queue: String,

        /// The queue to move them to
        #[arg(long, value_name = "QUEUE")]
        to: String,

        /// Move at most N messages (default: all)
        #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
}

/// The settable attributes of a queue; each defaults to "unchanged" (or the rsmq default).
#[derive(Debug, Args)]
pub struct QueueAttrArgs {
    /// Visibility timeout: seconds a received message stays hidden (0..9999999; default 30)
    #[arg(long, value_name = "SECONDS")]
    pub vt: Option<u64>,

    /// Seconds a new message stays hidden after sending (0..9999999; default 0)
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<u64>,

    /// Longest message, in characters as rsmq counts them (1024..65536, or -1 for unlimited;
    /// default 65536)
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub maxsize: Option<i64>,

    /// Receives after which a message is dead: the next receive moves it to the dead-letter
    /// queue, or deletes it when there is none (0..1000000; default 0, no limit)
    // Text, so that a negative or non-numeric value gets the same one-line error as a value
    // out of range, from the command.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_receives: Option<String>,

    /// Seconds after its send at which a message is dead, never delivered (0..9999999;
    /// default 0, never)
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub ttl: Option<String>,

    /// Where dead messages go: a queue (created on first use), not the queue itself
    /// (default: none, dead messages are deleted)
    #[arg(long, value_name = "QUEUE", conflicts_with = "no_dead_letter")]
    pub dead_letter: Option<String>,

    /// Remove the dead-letter queue setting (dead messages are deleted)
    #[arg(long)]
    pub no_dead_letter: bool,
}

/// Token administration.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    // The help is the doc of `IssueArgs`.
    Issue(IssueArgs),

    /// Revoke all tokens of a user and close the user's sessions on every node
    ///
    /// Removes the user's access tokens and sets the user's revocation mark: from now on the
    /// gateways refuse every JWT of the user issued until now (the ones `token issue` printed,
    /// the ones gateways handed to access-token sessions, and any without `iat`), and the
    /// sessions open now are closed (4003). Tokens issued afterwards work.
    ///
    /// Example:
    ///
    ///   wsmq-cli token revoke --user alice
    #[command(verbatim_doc_comment)]
    Revoke {
        /// The user id
        #[arg(long, value_name = "USER")]
        user: String,
    },
}

/// Issue a JWT and an access token for a user, and register the access token
///
/// The JWT (HS256, sub = the user, iat from Redis' clock) lets the user open sessions until
/// it expires or the user is revoked. The access
/// token (the tokens2 format) does not expire: it is accepted as long as it is registered in
/// Redis, until `token revoke`. Grants give access beyond the user's own queue; publish
/// patterns name `queue:NAME` or `channel:NAME`.
///
/// Prefer the environment variables for the secrets: command lines are visible to other users
/// of the machine.
///
/// Examples:
///
///   WSMQ_JWT_SECRET=s3cret wsmq-cli token issue --user alice
///   wsmq-cli token issue --user bot --ttl 24h --subscribe 'news*' --publish 'channel:news'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct IssueArgs {
    /// The user id (the JWT's sub)
    #[arg(long, value_name = "USER")]
    pub user: String,

    /// How long the JWT is valid, e.g. 90s, 15m, 12h, 7d (at most 30d)
    #[arg(long, default_value = "15m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// The JWT's `iss`: the gateways' --jwt-issuer, when they require one
    #[arg(long, env = "WSMQ_JWT_ISSUER", value_name = "ISSUER")]
    pub issuer: Option<String>,

    /// The JWT's `aud`: the gateways' --jwt-audience, when they require one
    #[arg(long, env = "WSMQ_JWT_AUDIENCE", value_name = "AUDIENCE")]
    pub audience: Option<String>,

    /// Grant consuming the queues matching GLOB (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub consume: Vec<String>,

    /// Grant subscribing to the channels matching GLOB (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub subscribe: Vec<String>,

    /// Grant publishing to `queue:GLOB` or `channel:GLOB` (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub publish: Vec<String>,

    /// The HS256 secret the gateways verify JWTs with (required)
    // Optional for clap so that a missing secret is reported by `token issue` in one line.
    #[arg(
        long,
        env = "WSMQ_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub jwt_secret: Option<String>,

    /// The access token secret of the gateways [default: the JWT secret]
    #[arg(
        long,
        env = "WSMQ_ACCESS_TOKEN_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub access_token_secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_work_after_the_command() {
        let cli =
            Cli::try_parse_from(["wsmq-cli", "queue", "list", "--json", "--ns", "x"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.ns, "x");
    }

    #[test]
    fn send_takes_exactly_one_source() {
        assert!(Cli::try_parse_from(["wsmq-cli", "send", "-q", "a"]).is_err());
        assert!(
            Cli::try_parse_from(["wsmq-cli", "send", "-q", "a", "-m", "x", "-f", "-"]).is_err()
        );
    }

    #[test]
    fn maxsize_accepts_minus_one() {
        let cli =
            Cli::try_parse_from(["wsmq-cli", "queue", "create", "q", "--maxsize", "-1"]).unwrap();
        let Command::Queue(QueueCmd::Create { attrs, .. }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(attrs.maxsize, Some(-1));
    }
}
