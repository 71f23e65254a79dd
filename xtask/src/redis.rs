//! A throwaway `redis-server` for the e2e suites and the benchmarks: free port, no
//! persistence, killed by PID on drop.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::util;

/// A running `redis-server` owned by this process.
pub(crate) struct RedisServer {
    /// The child process; killed (by PID) and reaped in `Drop`.
    child: Child,
    /// The loopback port it listens on.
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers PING.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not installed (with an install hint) or does not come up in 10 s.
    pub(crate) fn start() -> anyhow::Result<RedisServer> {
        if !util::have("redis-server") {
            bail!(
                "redis-server not found on PATH: install it (Debian/Ubuntu: `apt-get install redis-server`, \
                 macOS: `brew install redis`) or run scripts/test.sh, which installs it"
            );
        }
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning redis-server")?;
        let server = RedisServer { child, port };
        server.wait_ready()?;
        eprintln!(
            "xtask: redis-server pid {} on port {port}",
            server.child.id()
        );
        Ok(server)
    }

    /// `redis://127.0.0.1:{port}`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's PID, for reading its CPU time from `/proc/<pid>/stat`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port).unwrap_or(false) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(port: u16) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf)?;
    Ok(&buf == b"+PONG\r\n")
}
