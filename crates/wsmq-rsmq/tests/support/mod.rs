//! Shared test support: a throwaway `redis-server` per test, and an [`Rsmq`] on it
//! under a namespace of its own.
//!
//! Set `WSMQ_REDIS_URL` to run against an existing Redis instead (as `cargo xtask ci`
//! may do); every test then uses a random namespace, so it never touches other keys.
//!
//! The interop suite's npm side lives in [`node`], and [`peers`] puts both libraries
//! behind one set of operations.

// Each test binary uses a different part of this module, and `pub` here only means
// "for the test files", which unreachable_pub would flag.
#![allow(dead_code, unreachable_pub)]

pub mod node;
pub mod peers;

use rand::Rng;
use rand::distr::Alphanumeric;
use redis::aio::MultiplexedConnection;
use wsmq_rsmq::{Rsmq, RsmqOptions};
use wsmq_testkit::TestRedis;

/// A Redis for one test: a child `redis-server` on a free port that is killed on drop,
/// or the server named by `WSMQ_REDIS_URL`, plus a namespace of the test's own.
pub struct RedisServer {
    /// The server (`wsmq_testkit` starts it and stops it on drop).
    redis: TestRedis,
    /// Random namespace for this test's keys.
    ns: String,
}

impl RedisServer {
    /// Starts a server, or uses `WSMQ_REDIS_URL`.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed or does not answer PING in time.
    pub fn start() -> Self {
        Self {
            redis: TestRedis::from_env_or_start("WSMQ_REDIS_URL"),
            ns: format!("test-{}", random_text(8)),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        self.redis.url()
    }

    /// Whether this test has the server to itself (not `WSMQ_REDIS_URL`), so that
    /// server-wide observations such as MONITOR see only its own traffic.
    pub fn is_private(&self) -> bool {
        !self.redis.is_shared()
    }

    /// This test's key namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// A connected [`Rsmq`] in this test's namespace.
    pub async fn rsmq(&self) -> Rsmq {
        self.rsmq_with(false).await
    }

    /// A connected [`Rsmq`] in this test's namespace with realtime on or off.
    pub async fn rsmq_with(&self, realtime: bool) -> Rsmq {
        let options = RsmqOptions {
            ns: self.ns.clone(),
            realtime,
            cluster: false,
        };
        Rsmq::connect(self.url(), options)
            .await
            .expect("connect to test redis")
    }

    /// A plain connection for reading keys raw.
    pub async fn conn(&self) -> MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// A raw key of this test's namespace, e.g. `key("QUEUES")`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.ns)
    }
}

/// Redis `TIME` in ms, for comparing with stored timestamps.
pub async fn redis_time_ms(conn: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}

/// `n` random alphanumeric characters.
pub fn random_text(n: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A well-formed message id that no queue holds.
pub fn unknown_id() -> String {
    format!("zzzzzzzzzz{}", random_text(22))
}
