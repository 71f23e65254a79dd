//! [`RedisServer`]: a `redis-server` child process on a free loopback port, stopped by its
//! PID on drop.
//!
//! By default it keeps nothing on disk (`--save '' --appendonly no`), which is what almost
//! every test and benchmark wants. A test that stops Redis and expects the data back after a
//! restart turns the append-only file on instead ([`Builder::append_only`]), the way a
//! production Redis keeps its data.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, free_port};

/// How long start and restart wait for `PING`, and stop for the exit, unless the builder
/// says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(10);

/// The name of the server's log inside its folder (append-only servers only).
const LOG: &str = "redis.log";

/// A running `redis-server` owned by this process.
///
/// Dropping it kills the process (`Child::kill` signals exactly this PID), reaps it, and
/// removes its folder if it has one.
#[derive(Debug)]
pub struct RedisServer {
    /// The running process; `None` while stopped.
    child: Option<Child>,
    /// The PID of the process started last; still set after a stop.
    pid: u32,
    /// The loopback port, kept across restarts.
    port: u16,
    /// `--dir` of an append-only server (its AOF and [`LOG`] live here) or of a cluster node
    /// (its `nodes.conf` and [`LOG`]).
    dir: Option<PathBuf>,
    /// Whether the append-only file is on.
    append_only: bool,
    /// `Some(node timeout in ms)` for a cluster node.
    cluster: Option<u64>,
    /// How long start and restart wait for `PING`, and stop for the exit.
    timeout: Duration,
}

/// Options for a [`RedisServer`], from [`RedisServer::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    /// `Some(label)`: AOF on, in a fresh folder named after `label`.
    append_only: Option<String>,
    /// See [`Builder::cluster_node`].
    cluster: Option<u64>,
    /// See [`Builder::timeout`].
    timeout: Duration,
}

impl RedisServer {
    /// Starts `redis-server --save '' --appendonly no` on a free loopback port and waits
    /// until it answers `PING`.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not installed ([`Error::NotInstalled`], with an install hint),
    /// cannot start, or does not answer within 10 s.
    pub fn start() -> Result<RedisServer, Error> {
        RedisServer::builder().start()
    }

    /// Options: append-only file, timeouts.
    pub fn builder() -> Builder {
        Builder {
            append_only: None,
            cluster: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID of the server process started last (for reading its CPU time from
    /// `/proc/<pid>/stat`); after [`stop`](Self::stop) it names a process that has exited.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the server is running (not [`stop`](Self::stop)ped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The folder with the AOF (or `nodes.conf`) and `redis.log`, for an append-only server
    /// or a cluster node.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it; nothing is written on
    /// the way out. [`restart`](Self::restart) starts it again on the same port (a cluster
    /// node then rejoins with the identity in its `nodes.conf`).
    ///
    /// # Errors
    ///
    /// When it is not running.
    pub fn kill(&mut self) -> Result<(), Error> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Stops the server with SIGTERM and waits for it to exit. An append-only server writes
    /// and fsyncs its AOF first, so [`restart`](Self::restart) finds the data again.
    ///
    /// # Errors
    ///
    /// When it is not running, the signal cannot be sent, or it does not exit within the
    /// timeout (it is then killed).
    pub fn stop(&mut self) -> Result<(), Error> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        let pid = child.id();
        // `Child` can only SIGKILL, and the crate forbids `unsafe`, so ask kill(1).
        let signalled = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let reason = match signalled {
            Ok(status) if status.success() => None,
            Ok(status) => Some(format!("kill exited with {status}")),
            Err(err) => Some(format!("cannot run kill: {err}")),
        };
        if let Some(reason) = reason {
            // Still running: keep it, so that drop kills it.
            self.child = Some(child);
            return Err(Error::Signal { pid, reason });
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::StopTimeout {
                    pid,
                    timeout: self.timeout,
                });
            }
            thread::sleep(POLL);
        }
    }

    /// Starts the server again on the same port (and folder), and waits until it answers
    /// `PING`; an append-only server has then loaded its AOF (while loading, Redis answers
    /// `-LOADING`, which does not count).
    ///
    /// # Errors
    ///
    /// When it is running, cannot start, or does not answer within the timeout.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.child.is_some() {
            return Err(Error::AlreadyRunning);
        }
        self.spawn()
    }

    /// Spawns `redis-server` with this server's options and waits for `PING`.
    fn spawn(&mut self) -> Result<(), Error> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.append_only { "yes" } else { "no" }])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(node_timeout) = self.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", &node_timeout.to_string()]);
        }
        match &self.dir {
            Some(dir) => {
                // Appended to, so a restarted node's log keeps what the killed one said.
                let log = File::options()
                    .create(true)
                    .append(true)
                    .open(dir.join(LOG))
                    .map_err(|err| Error::Dir {
                        path: dir.clone(),
                        err,
                    })?;
                command.arg("--dir").arg(dir).stdout(log);
            }
            None => {
                command.stdout(Stdio::null());
            }
        }
        let child = command.spawn().map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => Error::NotInstalled,
            _ => Error::Spawn(err),
        })?;
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls until the server answers `PING`, exits, or the timeout passes.
    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(Error::Exited {
                    port: self.port,
                    status,
                    log: self.log(),
                });
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    port: self.port,
                    timeout: self.timeout,
                    log: self.log(),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// `"; log: …"` with the server's log, for error messages; empty without a log file.
    fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|dir| fs::read_to_string(dir.join(LOG)).ok())
            .map(|log| format!("; log: {log}"))
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl Builder {
    /// Turns the append-only file on (`--appendonly yes --dir …`, still no RDB snapshots, so
    /// the AOF is the one source), so the data survives [`RedisServer::stop`] and
    /// [`RedisServer::restart`]. The folder is fresh, named after `label` under the system
    /// temporary directory, holds the AOF and `redis.log`, and is removed on drop.
    pub fn append_only(mut self, label: &str) -> Builder {
        self.append_only = Some(label.to_owned());
        self
    }

    /// Makes the server a Redis Cluster node (`--cluster-enabled yes`, its `nodes.conf` in a
    /// fresh folder removed on drop) with `--cluster-node-timeout` `node_timeout_ms`, on a
    /// port whose cluster bus port (port + 10000) is free too. It serves nothing until it is
    /// part of a cluster: see [`RedisCluster`](crate::RedisCluster).
    pub fn cluster_node(mut self, node_timeout_ms: u64) -> Builder {
        self.cluster = Some(node_timeout_ms);
        self
    }

    /// How long start and restart wait for `PING`, and stop for the exit (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = timeout;
        self
    }

    /// Starts the server on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// When no port is free, the folder cannot be made, `redis-server` is not installed
    /// ([`Error::NotInstalled`]) or cannot start, or it does not answer within the timeout.
    pub fn start(self) -> Result<RedisServer, Error> {
        let port = if self.cluster.is_some() {
            free_cluster_port()?
        } else {
            free_port().map_err(Error::FreePort)?
        };
        let dir = match (&self.append_only, self.cluster) {
            (Some(label), _) => Some(fresh_dir(label, port)?),
            (None, Some(_)) => Some(fresh_dir("cluster", port)?),
            (None, None) => None,
        };
        let mut server = RedisServer {
            child: None,
            pid: 0,
            port,
            dir,
            append_only: self.append_only.is_some(),
            cluster: self.cluster,
            timeout: self.timeout,
        };
        // On failure, dropping `server` kills what was spawned and removes the folder.
        server.spawn()?;
        Ok(server)
    }
}

/// An empty folder `wsmq-redis-{label}-{our pid}-{port}` under the temporary directory.
fn fresh_dir(label: &str, port: u16) -> Result<PathBuf, Error> {
    let path =
        std::env::temp_dir().join(format!("wsmq-redis-{label}-{}-{port}", std::process::id()));
    // A leftover of an earlier run with the same PID and port would hold a stale AOF.
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).map_err(|err| Error::Dir {
        path: path.clone(),
        err,
    })?;
    Ok(path)
}

/// A free loopback port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> Result<u16, Error> {
    for _ in 0..100 {
        let port = free_port().map_err(Error::FreePort)?;
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::FreePort(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port with a free cluster bus port (port + 10000) in 100 tries",
    )))
}

/// Whether Redis on `port` answers `+PONG` now.
fn ping(port: u16) -> bool {
    let exchange = || -> io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    exchange().unwrap_or(false)
}
