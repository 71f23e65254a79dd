//! The commands, one module per group, and what they share: the connection to Redis, Redis'
//! clock, input checks and the wording of errors.
//!
//! Every command has the same shape: check its input (no I/O), connect, do its Redis work,
//! hand the result to [`Output`]. Checking first means a typo never costs a connection
//! attempt, and an unreachable Redis is never blamed for a bad argument.

mod amqp;
mod channel;
mod nodes;
mod publish;
mod queue;
mod receive;
mod send;
mod token;

use std::time::Duration;

use wsmq_proto::{ChannelName, QueueName, UserId};
use wsmq_rsmq::{Rsmq, RsmqConnection, RsmqError, RsmqOptions};

use crate::{
    cli::{ChannelCmd, Cli, Command, GlobalOpts, TokenCmd},
    output::Output,
    redact,
};

/// How long to wait for Redis to answer the first PING. Without a bound, a host that drops
/// packets would keep the command hanging for the kernel's TCP timeout (minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Dispatches the parsed command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        out: Output::new(cli.global.json),
        global: cli.global,
    };
    if ctx.global.amqp_url.is_some() {
        return amqp::run(&ctx, cli.command).await;
    }
    match cli.command {
        Command::Send(args) => send::run(&ctx, args).await,
        Command::Receive(args) => receive::run(&ctx, args).await,
        Command::Publish(args) => publish::run(&ctx, args).await,
        Command::Queue(cmd) => queue::run(&ctx, cmd).await,
        Command::Token(TokenCmd::Issue(args)) => token::issue(&ctx, args).await,
        Command::Token(TokenCmd::Revoke { user }) => token::revoke(&ctx, &user).await,
        Command::Channel(ChannelCmd::History {
            channel,
            limit,
            before,
        }) => channel::history(&ctx, &channel, limit, before).await,
        Command::Channel(ChannelCmd::Presence { channel }) => {
            channel::presence(&ctx, &channel).await
        }
        Command::Nodes => nodes::run(&ctx).await,
    }
}

/// What every command gets: the global options and the printer.
pub(crate) struct Ctx {
    /// `--redis-url`, `--ns`, `--amqp-*`, `--json`.
    global: GlobalOpts,
    /// Prints results, text or JSON.
    out: Output,
}

impl Ctx {
    /// Connects to Redis (and PINGs it) with the `--ns` namespace.
    ///
    /// `realtime` makes sends publish rsmq's `{ns}:rt:{queue}` notification, which wakes the
    /// gateways' idle subscribers at once instead of at their next poll.
    ///
    /// # Errors
    ///
    /// `cannot connect to redis at URL: cause`, with the URL's password masked.
    async fn connect(&self, realtime: bool) -> anyhow::Result<Rsmq> {
        let url = &self.global.redis_url;
        let cluster = self.global.redis_cluster;
        if !cluster && url.contains(',') {
            anyhow::bail!(
                "--redis-url holds several URLs: add --redis-cluster for a Redis Cluster's seed nodes"
            );
        }
        // A malformed URL is a usage mistake, not a connection failure; say which.
        for seed in url.split(',').map(str::trim) {
            if let Err(err) = redis::IntoConnectionInfo::into_connection_info(seed) {
                anyhow::bail!(
                    "invalid redis URL '{}': {} (expected redis://[user:password@]host[:port][/db] \
                     or redis+unix:///path)",
                    redact::url(seed),
                    tidy_cause(&err.to_string())
                );
            }
        }
        let options = RsmqOptions {
            ns: self.global.ns.clone(),
            realtime,
            cluster,
        };
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, Rsmq::connect(url, options));
        let cause = match connecting.await {
            Ok(Ok(rsmq)) => return Ok(rsmq),
            Ok(Err(RsmqError::Connect(cause))) => tidy_cause(&cause),
            Ok(Err(RsmqError::ClusterMismatch { server_is_cluster })) => {
                anyhow::bail!(
                    "redis at {} {}",
                    redact::url(url),
                    if server_is_cluster {
                        "is a cluster node: add --redis-cluster (and its nodes in --redis-url)"
                    } else {
                        "is not a cluster node: drop --redis-cluster"
                    }
                )
            }
            Ok(Err(other)) => tidy_cause(&other.to_string()),
            Err(_elapsed) => format!(
                "no answer within {}",
                humantime::format_duration(CONNECT_TIMEOUT)
            ),
        };
        anyhow::bail!("cannot connect to redis at {}: {cause}", redact::url(url))
    }
}

/// The useful end of a connection error from the Redis and pool libraries:
/// `redis pool: Error occurred while creating a new object: Connection refused (os error 111)`
/// becomes `connection refused`.
fn tidy_cause(cause: &str) -> String {
    let mut cause = cause.trim();
    for wrapper in [
        "redis pool: ",
        "Error occurred while creating a new object: ",
    ] {
        cause = cause.strip_prefix(wrapper).unwrap_or(cause);
    }
    // The errno and redis' error kind (`… - InvalidClientConfig`) are for programmers; the
    // words before them say the same.
    if let Some(at) = cause.rfind(" (os error ").filter(|_| cause.ends_with(')')) {
        cause = &cause[..at];
    }
    if let Some((words, kind)) = cause.rsplit_once(" - ")
        && !kind.is_empty()
        && kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        cause = words;
    }
    // Lowercase a capitalised sentence ("Connection refused"), not an acronym ("URL").
    let mut chars = cause.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => first
            .to_lowercase()
            .chain(cause[first.len_utf8()..].chars())
            .collect(),
        _ => cause.to_owned(),
    }
}

/// rsmq's connection, for wsmq's own keys and channels; on a cluster it routes each command
/// to the master of its keys.
async fn conn(rsmq: &Rsmq) -> anyhow::Result<RsmqConnection> {
    Ok(rsmq.connection().await?)
}

/// Redis' clock in Unix seconds. wsmq takes all time from Redis `TIME`, so that token expiry
/// and uptimes agree with the gateways even when this machine's clock is off.
async fn redis_time(conn: &mut RsmqConnection) -> anyhow::Result<u64> {
    let (secs, _micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs)
}

/// Rejects a queue name that rsmq would refuse, naming the rule.
fn check_queue_name(queue: &str) -> anyhow::Result<()> {
    QueueName::validate(queue).map_err(|_| {
        anyhow::anyhow!(
            "invalid queue name {} (allowed: A-Z a-z 0-9 _ -, 1 to 160 chars)",
            quoted(queue)
        )
    })
}

/// Rejects a channel name that the gateways would refuse, naming the rule.
fn check_channel_name(channel: &str) -> anyhow::Result<()> {
    ChannelName::validate(channel).map_err(|_| {
        anyhow::anyhow!(
            "invalid channel name {} (allowed: A-Z a-z 0-9 _ - . :, 1 to 160 chars)",
            quoted(channel)
        )
    })
}

/// The user id, or why no token could carry it. One leading `users/` is removed, as the
/// gateways do with a JWT's `sub`, so that `--user users/X` and `--user X` are the same user
/// for the JWT, the access token and its registry key alike.
fn user_id(user: &str) -> anyhow::Result<UserId> {
    let user = user
        .strip_prefix(wsmq_proto::token::USER_PREFIX)
        .unwrap_or(user);
    UserId::new(user).map_err(|_| {
        anyhow::anyhow!(
            "invalid user id {} (1 to 160 characters, no control characters)",
            quoted(user)
        )
    })
}

/// Turns an rsmq error about `queue` into a sentence that names the queue.
fn queue_error(queue: &str, err: RsmqError) -> anyhow::Error {
    match err {
        RsmqError::QueueNotFound => anyhow::anyhow!("queue '{queue}' not found"),
        RsmqError::QueueExists => anyhow::anyhow!("queue '{queue}' already exists"),
        RsmqError::MessageTooLong => anyhow::anyhow!(
            "message longer than the maxsize of queue '{queue}' (see `wsmq-cli queue stats {queue}`)"
        ),
        RsmqError::InvalidName(_) | RsmqError::MissingParameter { .. } => {
            check_queue_name(queue).err().unwrap_or_else(|| err.into())
        }
        RsmqError::NotReplicated {
            wanted,
            reached,
            ids,
        } => anyhow::anyhow!(
            "sent to queue '{queue}' ({} message(s), last id {}) but only {reached} of {wanted} \
             replicas confirmed within 2s: the messages may not survive a failover",
            ids.len(),
            ids.last().map_or("none", String::as_str)
        ),
        other => other.into(),
    }
}

/// `'name'`, with control characters escaped so that a bad name cannot break the error line.
fn quoted(name: &str) -> String {
    format!("'{}'", name.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_quoted_in_errors() {
        let err = check_queue_name("a b").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid queue name 'a b' (allowed: A-Z a-z 0-9 _ -, 1 to 160 chars)"
        );
        assert!(check_queue_name("jobs_1-a").is_ok());
        assert!(check_channel_name("prices:eu.fx").is_ok());
        assert!(user_id("a\nb").unwrap_err().to_string().contains("'a\\nb'"));
        assert_eq!(user_id("users/57c8").unwrap().as_str(), "57c8");
        assert_eq!(user_id("users/users/x").unwrap().as_str(), "users/x");
    }

    #[test]
    fn connection_causes_are_tidied() {
        assert_eq!(
            tidy_cause(
                "redis pool: Error occurred while creating a new object: Connection refused (os error 111)"
            ),
            "connection refused"
        );
        assert_eq!(
            tidy_cause("Redis URL did not parse - InvalidClientConfig"),
            "redis URL did not parse"
        );
        assert_eq!(tidy_cause("URL is odd"), "URL is odd");
        assert_eq!(tidy_cause("timed out"), "timed out");
    }

    #[test]
    fn rsmq_errors_name_the_queue() {
        let err = queue_error("q1", RsmqError::QueueNotFound);
        assert_eq!(err.to_string(), "queue 'q1' not found");
    }
}
