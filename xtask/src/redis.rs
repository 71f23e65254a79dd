//! The throwaway `redis-server` of the e2e suites and the benchmarks: `wsmq_testkit`'s guard
//! (free port, no persistence, killed by PID on drop), which also reports where it runs.

/// A running `redis-server` owned by this process.
pub(crate) struct RedisServer(wsmq_testkit::RedisServer);

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, waits until it answers PING, and prints
    /// its PID and port.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not installed (with an install hint) or does not come up in 10 s.
    pub(crate) fn start() -> anyhow::Result<RedisServer> {
        let server = wsmq_testkit::RedisServer::start().map_err(|err| match err {
            wsmq_testkit::Error::NotInstalled => {
                anyhow::anyhow!("{err}, or run scripts/test.sh, which installs it")
            }
            err => err.into(),
        })?;
        eprintln!(
            "xtask: redis-server pid {} on port {}",
            server.pid(),
            server.port()
        );
        Ok(RedisServer(server))
    }

    /// `redis://127.0.0.1:{port}`.
    pub(crate) fn url(&self) -> String {
        self.0.url()
    }

    /// The loopback port, for `INFO` over a bare socket.
    pub(crate) fn port(&self) -> u16 {
        self.0.port()
    }

    /// The server's PID, for reading its CPU time from `/proc/<pid>/stat`.
    pub(crate) fn pid(&self) -> u32 {
        self.0.pid()
    }
}
