//! Two real `wsmq-gateway serve` processes on one Redis, and the real `wsmq-cli` binary.
//!
//! [`Cluster::start`] starts node A and node B on free loopback ports, with the suite's Redis,
//! a fixed JWT secret and API key, distinct node ids and a namespace of the test's own, and
//! waits until both answer `GET /readyz` with 200. Each process's stderr goes to a file; when a
//! test panics, dropping a [`Gateway`] prints the tail of that file, then the process is killed
//! by its PID either way.
//!
//! The binaries are `WSMQ_GATEWAY_BIN` / `WSMQ_CLI_BIN` when set, else the gateway cargo built
//! for this test (`CARGO_BIN_EXE_wsmq-gateway`) and the `wsmq-cli` next to it, which
//! `cargo xtask e2e` builds first.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::store::test_redis_url;

/// The HS256 secret every gateway of the suite verifies JWTs (and access tokens) with.
pub(crate) const SECRET: &str = "e2e-secret-7f3a9c1d5e";
/// The key of `POST /api/publish` on every gateway of the suite.
pub(crate) const API_KEY: &str = "e2e-api-key-4b8d";
/// How long a gateway may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `wsmq-cli` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a gateway's stderr shown when a test fails.
const LOG_TAIL: usize = 40;

/// Node A and node B on one Redis and one rsmq namespace.
pub(crate) struct Cluster {
    /// Node A.
    pub(crate) a: Gateway,
    /// Node B.
    pub(crate) b: Gateway,
    /// The Redis both use.
    pub(crate) redis_url: String,
    /// The rsmq namespace of this test (`--rsmq-ns`), so tests can share the Redis.
    pub(crate) ns: String,
}

impl Cluster {
    /// Starts A and B for the test `test`, each with `extra` flags on top of the suite's.
    pub(crate) async fn start(test: &str, extra: &[&str]) -> Cluster {
        Cluster::start_on(test, &test_redis_url(), extra).await
    }

    /// As [`Cluster::start`], on the Redis at `redis_url` rather than the suite's (a test
    /// that stops its Redis needs one of its own).
    pub(crate) async fn start_on(test: &str, redis_url: &str, extra: &[&str]) -> Cluster {
        let redis_url = redis_url.to_owned();
        let ns = format!("e2e-{test}-{}", std::process::id());
        let a = Gateway::start("A", &format!("{ns}-a"), &redis_url, &ns, extra).await;
        let b = Gateway::start("B", &format!("{ns}-b"), &redis_url, &ns, extra).await;
        Cluster {
            a,
            b,
            redis_url,
            ns,
        }
    }

    /// Runs `wsmq-cli --redis-url … --ns … <args>` and returns its stdout.
    ///
    /// # Panics
    ///
    /// When it cannot start, fails, or takes over a minute.
    pub(crate) async fn cli(&self, args: &[&str]) -> String {
        let mut command = tokio::process::Command::new(cli_bin());
        command
            .args(["--redis-url", &self.redis_url, "--ns", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        clear_wsmq_env(command.as_std_mut());
        let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("wsmq-cli {args:?} did not finish within {CLI_TIMEOUT:?}"))
            .unwrap_or_else(|err| panic!("cannot run wsmq-cli: {err}"));
        assert!(
            output.status.success(),
            "wsmq-cli {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("wsmq-cli prints UTF-8")
    }

    /// `wsmq-cli --json queue stats <queue>`.
    pub(crate) async fn queue_stats(&self, queue: &str) -> Value {
        let out = self.cli(&["--json", "queue", "stats", queue]).await;
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("queue stats {out:?}: {err}"))
    }

    /// Polls `queue stats` until `done` holds for them, for at most `wait`; returns them.
    ///
    /// # Panics
    ///
    /// With the last stats when `done` never held.
    pub(crate) async fn wait_stats(
        &self,
        queue: &str,
        wait: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let stats = self.queue_stats(queue).await;
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "queue {queue}: {what} not reached within {wait:?}; stats: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One `wsmq-gateway serve` process.
pub(crate) struct Gateway {
    /// "A" or "B", for messages.
    pub(crate) name: &'static str,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its `--node-id`.
    pub(crate) node_id: String,
    /// The process; killed by PID on drop.
    child: Child,
    /// Its stderr (the logs).
    log: PathBuf,
}

impl Gateway {
    /// Starts one node on a free port and waits for `/readyz`.
    ///
    /// # Panics
    ///
    /// When it exits or is not ready within 20 s (with its log).
    async fn start(
        name: &'static str,
        node_id: &str,
        redis_url: &str,
        ns: &str,
        extra: &[&str],
    ) -> Gateway {
        let dir = std::env::temp_dir().join("wsmq-e2e");
        fs::create_dir_all(&dir).expect("create the log folder");
        // A port picked free can be taken before the gateway binds it: then try another.
        for attempt in 1..=3 {
            let port = wsmq_testkit::free_port().expect("find a free port");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = dir.join(format!("{node_id}-{port}.log"));
            let stderr = fs::File::create(&log).expect("create the gateway log");
            let mut command = Command::new(gateway_bin());
            command
                .arg("serve")
                .args(["--listen", &addr.to_string()])
                .args(["--redis-url", redis_url, "--rsmq-ns", ns])
                .args(["--jwt-secret", SECRET, "--api-key", API_KEY])
                .args(["--node-id", node_id])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            clear_wsmq_env(&mut command);
            let child = command.spawn().unwrap_or_else(|err| {
                panic!(
                    "cannot start {} ({err}): build it with `cargo build -p wsmq-gateway`",
                    gateway_bin().display()
                )
            });
            let mut gateway = Gateway {
                name,
                addr,
                node_id: node_id.to_owned(),
                child,
                log,
            };
            match gateway.wait_ready().await {
                Ok(()) => return gateway,
                Err(log) if attempt < 3 && log.contains("in use") => continue,
                Err(log) => panic!("gateway {name} did not become ready:\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Waits for `GET /readyz` → 200; `Err(log)` when the process exits or time runs out.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}\n{}", self.log_tail()));
            }
            if let Ok((200, _)) = self.http("GET", "/readyz", &[], "").await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!(
            "no 200 from /readyz within {READY_TIMEOUT:?}\n{}",
            self.log_tail()
        ))
    }

    /// `ws://addr{path}`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// One HTTP/1.1 request with `connection: close`; `(status, body)`.
    pub(crate) async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            let mut request = format!(
                "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\
                 content-length: {}\r\n",
                self.addr,
                body.len()
            );
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n");
            request.push_str(body);
            stream.write_all(request.as_bytes()).await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
        };
        let response = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))??;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line in {response:?}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// `kill -9` of the process, by its PID: a crash, with no drain and no goodbye. Takes
    /// `&self` so clients may still borrow the node; `Drop` reaps it later.
    ///
    /// # Panics
    ///
    /// When `kill` cannot be run or fails.
    pub(crate) fn kill(&self) {
        self.signal("KILL");
    }

    /// SIGTERM: a clean stop (drain, heartbeat removed). Takes `&self` like [`Gateway::kill`].
    pub(crate) fn terminate(&self) {
        self.signal("TERM");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed: {status}");
    }

    /// The process id (a test may stop the node with a signal of its own choosing).
    #[allow(
        dead_code,
        reason = "used by the browser target, which includes this file"
    )]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's stderr so far (its logs).
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|err| format!("(cannot read: {err})"))
    }

    /// The last lines of the process's stderr.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log, LOG_TAIL)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- gateway {} ({}, {}) stderr, last {LOG_TAIL} lines of {} ----\n{}",
                self.name,
                self.node_id,
                self.addr,
                self.log.display(),
                self.log_tail()
            );
        }
        // `Child::kill` signals this child's PID; `wait` reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_file(&self.log);
        }
    }
}

/// The gateway binary to run.
pub(crate) fn gateway_bin() -> PathBuf {
    std::env::var_os("WSMQ_GATEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wsmq-gateway")))
}

/// The CLI binary to run.
///
/// # Panics
///
/// When it is not there (it is built by `cargo xtask e2e`, not by `cargo test`).
pub(crate) fn cli_bin() -> PathBuf {
    let path = std::env::var_os("WSMQ_CLI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let gateway = PathBuf::from(env!("CARGO_BIN_EXE_wsmq-gateway"));
            let dir = gateway.parent().expect("a binary lives in a folder");
            dir.join(format!("wsmq-cli{}", std::env::consts::EXE_SUFFIX))
        });
    assert!(
        path.is_file(),
        "{} not found: run the suite with `cargo xtask e2e`, or `cargo build -p wsmq-cli` \
         first (or set WSMQ_CLI_BIN)",
        path.display()
    );
    path
}

/// Keeps the caller's `WSMQ_*` settings (say `WSMQ_OPEN=1`) out of the processes we start:
/// every test passes exactly the flags it means.
fn clear_wsmq_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WSMQ_") {
            command.env_remove(key);
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|err| format!("(cannot read: {err})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
