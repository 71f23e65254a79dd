//! An async Redis Simple Message Queue over `deadpool-redis`, byte-compatible with the
//! npm [`rsmq`](https://github.com/smrchy/rsmq) 0.12 layout and semantics, plus batch
//! operations that do the work of N calls in one round trip.
//!
//! A message sent by npm rsmq can be received, deleted and counted here, and the other
//! way round, on the same Redis. Every operation is one round trip: where rsmq needs
//! two or three, a Lua script does the same steps atomically.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsmq_rsmq::RsmqError> {
//! use wsmq_rsmq::{QueueOptions, Rsmq, RsmqOptions};
//!
//! let rsmq = Rsmq::connect("redis://127.0.0.1/", RsmqOptions::default()).await?;
//! rsmq.create_queue("jobs", &QueueOptions::default()).await?;
//! let id = rsmq.send_message("jobs", "hello", None).await?;
//! if let Some(msg) = rsmq.receive_message("jobs", None).await? {
//!     assert_eq!(msg.id, id);
//!     rsmq.delete_message("jobs", &msg.id).await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Modules:
//!
//! - `client`: [`Rsmq`] and [`RsmqOptions`]; building the handle, and reaching Redis
//!   in one round trip per call over a shared multiplexed connection from the pool,
//!   which callers can use for their own commands too ([`Rsmq::query`]).
//! - `queue`: create, delete, list, get and set attributes; [`QueueOptions`],
//!   [`QueueAttributes`].
//! - `message`: send, receive, pop, delete, change visibility and their batch forms;
//!   [`Message`], and [`ReceivedBatch`] for a batch that also says when to look again
//!   and what it took out as dead ([`DeadCounts`]).
//! - `dead`: giving back what one receive holds ([`Held`]: release, dead-letter) and
//!   moving messages between queues (redrive).
//! - `cluster`: what a Redis Cluster needs beyond routing by key (listing the queues of
//!   every master).
//! - [`keys`]: every Redis key name, in rsmq's layout and in the cluster layout.
//! - `id`: message ids from Redis `TIME`, and the send time read back from one.
//! - `validate`: rsmq's name, id and range rules.
//! - `scripts`: the Lua scripts (`src/scripts/*.lua`) and their error mapping.
//! - `reply`: reading replies the way rsmq's JavaScript does.
//! - `error`: [`RsmqError`].
//!
//! Redis keys, for namespace `ns` (default `rsmq`) and queue `q`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:QUEUES` | SET | queue names |
//! | `{ns}:{q}:Q` | HASH | `vt`, `delay` (seconds), `maxsize`, `created`, `modified` (Unix seconds), `totalsent`, `totalrecv`; per message `{id}` (body), `{id}:rc` (receive count), `{id}:fr` (first receive, Unix ms); wsmq's own, only when set: `maxreceives`, `ttl` (seconds), `deadletter` (a queue name), `totaldead` |
//! | `{ns}:{q}` | ZSET | message ids, scored by the Unix ms at which each becomes visible |
//! | `{ns}:rt:{q}` | channel | with realtime on, each send publishes the queue's ZCARD |
//!
//! Every number is stored as its decimal string (`"30"`, `"1700000000123"`). All times
//! come from Redis `TIME`, never the local clock, so clients with skewed clocks agree.
//! A queue exists while its hash has `vt`, `delay` and `maxsize`; hiding, delaying and
//! receiving are all ZSET score changes, and "visible" means score <= now in ms.
//!
//! wsmq's own queue attributes are extra fields of the hash, which npm rsmq never reads
//! or writes, so it keeps working on such a queue (and does not apply them). A receive
//! here does not hand out a message that was already received `maxreceives` times or was
//! sent more than `ttl` seconds ago: it moves it, id and body kept, to the `deadletter`
//! queue (created on first use) or deletes it, and counts it in `totaldead`.
//!
//! Message ids are 32 characters: the lowercase base-36 of `TIME` in microseconds
//! (seconds followed by the six-digit zero-padded microseconds; 10 characters until
//! 2085), then 22 random `[A-Za-z0-9]`. They sort by send time, and
//! [`message_sent_ms`] reads the send time back.

#![warn(missing_docs)]

mod client;
mod cluster;
mod dead;
mod error;
mod id;
pub mod keys;
mod message;
mod queue;
mod reply;
mod scripts;
mod validate;

pub use client::{Rsmq, RsmqConnection, RsmqOptions};
pub use dead::{DeadLettered, Held, MAX_MOVE_BATCH, Moved};
pub use error::RsmqError;
pub use id::{message_sent_ms, new_message_id};
pub use message::{DeadCounts, Message, ReceivedBatch, message_length};
pub use queue::{DEFAULT_DELAY, DEFAULT_MAXSIZE, DEFAULT_VT, QueueAttributes, QueueOptions};
pub use validate::{
    MAX_MAXSIZE, MAX_QUEUE_NAME_LEN, MAX_RECEIVES, MAX_SECONDS, MESSAGE_ID_LEN, MIN_MAXSIZE,
    UNLIMITED_MAXSIZE, validate_message_id, validate_queue_name,
};
