//! [`Error`]: every way starting or stopping a [`RedisServer`](crate::RedisServer) or a
//! [`RabbitServer`](crate::RabbitServer) can fail.

use std::{io, path::PathBuf, process::ExitStatus, time::Duration};

/// Starting, stopping or restarting a `redis-server` failed.
///
/// The messages say what to do where there is something to do (install Redis, read its log),
/// so callers can show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `redis-server` is not on `PATH`.
    #[error(
        "redis-server not found on PATH: install it (Debian/Ubuntu: `apt-get install \
         redis-server`, macOS: `brew install redis`)"
    )]
    NotInstalled,
    /// `rabbitmq-server` (or `rabbitmqctl`) is not installed.
    #[error(
        "rabbitmq-server not found (neither /usr/lib/rabbitmq/bin nor PATH): install it \
         (Debian/Ubuntu: `apt-get install rabbitmq-server`, macOS: `brew install rabbitmq`)"
    )]
    RabbitNotInstalled,
    /// The RabbitMQ node exited before it accepted AMQP connections.
    #[error("rabbitmq-server on port {port} exited ({status}) before accepting AMQP; log: {log}")]
    RabbitExited {
        /// Its AMQP port.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// The end of its output.
        log: String,
    },
    /// The RabbitMQ node did not accept AMQP connections in time.
    #[error("rabbitmq-server on port {port} did not accept AMQP within {timeout:?}; log: {log}")]
    RabbitNotReady {
        /// Its AMQP port.
        port: u16,
        /// How long it was given.
        timeout: Duration,
        /// The end of its output.
        log: String,
    },
    /// `rabbitmqctl` exited non-zero.
    #[error("rabbitmqctl {args} failed: {output}")]
    Ctl {
        /// Its arguments after `-n node`.
        args: String,
        /// What it printed.
        output: String,
    },
    /// Spawning a server (or its watchdog) failed for another reason.
    #[error("cannot start redis-server: {0}")]
    Spawn(io::Error),
    /// No free loopback port could be found.
    #[error("cannot find a free loopback port: {0}")]
    FreePort(io::Error),
    /// The server's folder (for its AOF and log) could not be prepared.
    #[error("cannot prepare the redis-server folder {}: {err}", path.display())]
    Dir {
        /// The folder.
        path: PathBuf,
        /// What went wrong.
        err: io::Error,
    },
    /// The server exited before it answered `PING`.
    #[error("redis-server on port {port} exited ({status}) before answering PING{log}")]
    Exited {
        /// Its port.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// `"; log: …"` when the server logs to a file, else empty.
        log: String,
    },
    /// The server did not answer `PING` in time (a Redis loading its AOF answers `-LOADING`,
    /// which does not count).
    #[error("redis-server on port {port} did not answer PING within {timeout:?}{log}")]
    NotReady {
        /// Its port.
        port: u16,
        /// How long it was given.
        timeout: Duration,
        /// `"; log: …"` when the server logs to a file, else empty.
        log: String,
    },
    /// `kill -TERM` could not be run or failed.
    #[error("cannot send SIGTERM to redis-server {pid}: {reason}")]
    Signal {
        /// The server's PID.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// The server did not exit in time after SIGTERM; it has been killed instead.
    #[error("redis-server {pid} did not exit within {timeout:?} of SIGTERM")]
    StopTimeout {
        /// The server's PID.
        pid: u32,
        /// How long it was given.
        timeout: Duration,
    },
    /// A Redis Cluster could not be created, or is not healthy in time.
    #[error("redis cluster: {0}")]
    Cluster(String),
    /// [`stop`](crate::RedisServer::stop) was called while the server was stopped.
    #[error("redis-server is not running")]
    NotRunning,
    /// [`restart`](crate::RedisServer::restart) was called while the server was running.
    #[error("redis-server is already running")]
    AlreadyRunning,
}
