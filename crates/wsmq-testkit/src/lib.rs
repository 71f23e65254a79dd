//! Dev-only helpers shared by wsmq's integration tests and `cargo xtask`: a throwaway
//! `redis-server` (or a Redis Cluster of them) or `rabbitmq-server` that a test or task owns, and free loopback ports.
//!
//! Not published: the crates use it as a `[dev-dependencies]` entry, xtask as a normal one.
//!
//! ```no_run
//! # fn demo() -> Result<(), wsmq_testkit::Error> {
//! use wsmq_testkit::RedisServer;
//!
//! // `--save '' --appendonly no` on a free port, killed by PID on drop.
//! let redis = RedisServer::start()?;
//! println!("{}", redis.url());
//!
//! // AOF on in a folder of its own, so data survives `stop` + `restart` on the same port.
//! let mut durable = RedisServer::builder().append_only("outage").start()?;
//! durable.stop()?;
//! durable.restart()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `server`: [`RedisServer`], the process guard, and its [`Builder`].
//! - `cluster`: [`RedisCluster`], a Redis Cluster of such servers (3 masters, replicas on
//!   request), created with `redis-cli --cluster create`.
//! - `test_redis`: [`TestRedis`], for tests that may be pointed at an existing Redis by an
//!   environment variable instead.
//! - `rabbit`: [`RabbitServer`], a `rabbitmq-server` node of its own, and [`TestRabbit`], the
//!   broker of a test process (or of an environment variable).
//! - `net`: [`free_port`] and [`free_addr`].
//! - `error`: [`Error`], every way starting or stopping the server can fail.
//!
//! Library-style errors are typed; only [`TestRedis`], which exists for tests, panics.

#![warn(missing_docs)]

mod cluster;
mod error;
mod net;
mod rabbit;
mod server;
mod test_redis;

pub use cluster::{ClusterBuilder, RedisCluster};
pub use error::Error;
pub use net::{free_addr, free_port};
pub use rabbit::{RabbitServer, TestRabbit};
pub use server::{Builder, RedisServer};
pub use test_redis::TestRedis;
