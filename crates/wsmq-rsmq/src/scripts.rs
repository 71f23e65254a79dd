//! The Lua scripts behind every multi-step operation, loaded once, and the one place
//! where their error replies become [`RsmqError`]s.
//!
//! Each script does what one (or, for batches, N) npm rsmq calls do across several
//! round trips, so every operation here costs one round trip: `EVALSHA`, falling back
//! to `SCRIPT LOAD` on `NOSCRIPT` (after a Redis restart or `SCRIPT FLUSH`).
//! [`Rsmq::connect`](crate::Rsmq::connect) preloads them all so even the first call of
//! each is one round trip. The scripts call `TIME`, which Redis (5 and later) allows in
//! scripts because it replicates their effects, not the scripts themselves.
//!
//! Scripts fail with `redis.error_reply("RSMQ <rsmqErrorName> [field]")`: the `RSMQ`
//! code keeps them apart from Redis's own errors, and a code is needed anyway since
//! Redis prefixes single-word error replies with `ERR`. The scripts that write check
//! everything that could fail before their first write, since Redis does not undo a
//! script's writes when a later command of it fails.
//!
//! The check "does the queue exist" and a few helpers are written once, in
//! `scripts/queue_prelude.lua` and `scripts/dead_letter_prelude.lua`, and put in front of
//! the scripts that use them when they are loaded.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisError, Script, ScriptInvocation};

use crate::RsmqError;
use crate::validate::MAX_SECONDS;

/// Shared helpers, put in front of the scripts that use them (see each file's header):
/// Redis runs one self-contained text per script, so this is how they share code.
const QUEUE_PRELUDE: &str = include_str!("scripts/queue_prelude.lua");
/// Taking messages out of a queue for good; needs [`QUEUE_PRELUDE`].
const DEAD_LETTER_PRELUDE: &str = include_str!("scripts/dead_letter_prelude.lua");

/// Script sources with their preludes, in the order [`preload`] loads them.
static SOURCES: LazyLock<[String; 12]> = LazyLock::new(|| {
    let plain = |body: &str| body.to_owned();
    let queue = |body: &str| format!("{QUEUE_PRELUDE}\n{body}");
    let dead = |body: &str| format!("{QUEUE_PRELUDE}\n{DEAD_LETTER_PRELUDE}\n{body}");
    [
        plain(include_str!("scripts/create_queue.lua")),
        plain(include_str!("scripts/get_queue_attributes.lua")),
        queue(include_str!("scripts/set_queue_attributes.lua")),
        queue(include_str!("scripts/send_messages.lua")),
        dead(include_str!("scripts/receive_messages.lua")),
        queue(include_str!("scripts/pop_message.lua")),
        plain(include_str!("scripts/delete_messages.lua")),
        queue(include_str!("scripts/change_message_visibility.lua")),
        dead(include_str!("scripts/return_messages.lua")),
        dead(include_str!("scripts/move_messages.lua")),
        plain(include_str!("scripts/put_dead.lua")),
        plain(include_str!("scripts/unpark.lua")),
    ]
});

/// `scripts/create_queue.lua`.
pub(crate) static CREATE_QUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[0]));
/// `scripts/get_queue_attributes.lua`.
pub(crate) static GET_QUEUE_ATTRIBUTES: LazyLock<Script> =
    LazyLock::new(|| Script::new(&SOURCES[1]));
/// `scripts/set_queue_attributes.lua`.
pub(crate) static SET_QUEUE_ATTRIBUTES: LazyLock<Script> =
    LazyLock::new(|| Script::new(&SOURCES[2]));
/// `scripts/send_messages.lua`.
pub(crate) static SEND_MESSAGES: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[3]));
/// `scripts/receive_messages.lua`.
pub(crate) static RECEIVE_MESSAGES: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[4]));
/// `scripts/pop_message.lua`.
pub(crate) static POP_MESSAGE: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[5]));
/// `scripts/delete_messages.lua`.
pub(crate) static DELETE_MESSAGES: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[6]));
/// `scripts/change_message_visibility.lua`.
pub(crate) static CHANGE_MESSAGE_VISIBILITY: LazyLock<Script> =
    LazyLock::new(|| Script::new(&SOURCES[7]));
/// `scripts/return_messages.lua`.
pub(crate) static RETURN_MESSAGES: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[8]));
/// `scripts/move_messages.lua`.
pub(crate) static MOVE_MESSAGES: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[9]));
/// `scripts/put_dead.lua` (Redis Cluster only).
pub(crate) static PUT_DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[10]));
/// `scripts/unpark.lua` (Redis Cluster only).
pub(crate) static UNPARK: LazyLock<Script> = LazyLock::new(|| Script::new(&SOURCES[11]));

/// Runs a prepared invocation and maps its error reply.
pub(crate) async fn invoke<T: FromRedisValue>(
    conn: &mut impl ConnectionLike,
    invocation: &ScriptInvocation<'_>,
) -> Result<T, RsmqError> {
    invocation.invoke_async(conn).await.map_err(script_error)
}

/// Loads every script with one pipelined round trip of `SCRIPT LOAD`s.
pub(crate) async fn preload(conn: &mut impl ConnectionLike) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    for source in SOURCES.iter() {
        pipe.cmd("SCRIPT").arg("LOAD").arg(source.as_str()).ignore();
    }
    pipe.query_async::<()>(conn).await
}

/// Loads every script on every node of a cluster, one `SCRIPT LOAD` at a time (a cluster
/// pipeline goes to one node, while a single `SCRIPT LOAD` goes to all of them). A node that
/// joins later loads them on first use, through `EVALSHA`'s `NOSCRIPT` fallback.
pub(crate) async fn preload_each(conn: &mut impl ConnectionLike) -> Result<(), RedisError> {
    for source in SOURCES.iter() {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source.as_str())
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Turns a script's `RSMQ <name> [field]` error reply into its typed error; any other
/// error is Redis's own and stays [`RsmqError::Redis`].
pub(crate) fn script_error(err: RedisError) -> RsmqError {
    if err.code() != Some("RSMQ") {
        return RsmqError::Redis(err);
    }
    let detail = err.detail().unwrap_or_default();
    match detail.split_once(' ').unwrap_or((detail, "")) {
        ("queueNotFound", _) => RsmqError::QueueNotFound,
        ("queueExists", _) => RsmqError::QueueExists,
        ("messageTooLong", _) => RsmqError::MessageTooLong,
        ("invalidValue", "vt") => seconds_out_of_range("vt"),
        ("invalidValue", "delay") => seconds_out_of_range("delay"),
        ("invalidDeadLetter", why) => RsmqError::InvalidDeadLetter(match why {
            "self" => "it is the queue itself",
            "cluster" => "dead-letter queues are not supported on a Redis Cluster yet",
            "type" => "its keys hold something other than a queue",
            _ => "it is not a valid queue name",
        }),
        _ => RsmqError::UnexpectedReply(format!("unknown script error {detail:?}")),
    }
}

fn seconds_out_of_range(field: &'static str) -> RsmqError {
    RsmqError::InvalidValue {
        field,
        min: 0,
        max: MAX_SECONDS as i64,
    }
}
