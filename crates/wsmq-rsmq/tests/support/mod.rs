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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use redis::aio::MultiplexedConnection;
use wsmq_rsmq::{Rsmq, RsmqOptions};

/// How long a fresh redis-server gets to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis for one test: a child `redis-server` on a free port that is killed on drop,
/// or the server named by `WSMQ_REDIS_URL`.
pub struct RedisServer {
    /// The spawned server, `None` when using `WSMQ_REDIS_URL`.
    child: Option<Child>,
    /// `redis://…` URL of the server.
    url: String,
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
        let ns = format!("test-{}", random_text(8));
        if let Ok(url) = std::env::var("WSMQ_REDIS_URL") {
            return Self {
                child: None,
                url,
                ns,
            };
        }

        // Bind port 0 to have the OS pick a free port, then free it for Redis. Another
        // process could grab it in between; that is rare enough for tests.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("redis-server not found ({err}): apt-get install redis-server")
            });
        let server = Self {
            child: Some(child),
            url: format!("redis://127.0.0.1:{port}/"),
            ns,
        };
        server.wait_for_ping(port);
        server
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this test has the server to itself (not `WSMQ_REDIS_URL`), so that
    /// server-wide observations such as MONITOR see only its own traffic.
    pub fn is_private(&self) -> bool {
        self.child.is_some()
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
        };
        Rsmq::connect(&self.url, options)
            .await
            .expect("connect to test redis")
    }

    /// A plain connection for reading keys raw.
    pub async fn conn(&self) -> MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// A raw key of this test's namespace, e.g. `key("QUEUES")`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.ns)
    }

    fn wait_for_ping(&self, port: u16) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if ping(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Child::kill signals exactly this PID; reap it so no zombie is left.
            let _ = child.kill();
            let _ = child.wait();
        }
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

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut reply = [0; 7];
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
