//! The npm side of the interop suite: [`NodeRsmq`] runs `interop/rsmq-driver.js`, which
//! drives the real npm `rsmq` 0.12.4, and [`test_redis_url`] names the Redis both sides
//! share.
//!
//! The driver reads one JSON request per line and answers one JSON line each. It runs
//! requests concurrently, so [`NodeRsmq::call`] takes `&mut self`: one request is in
//! flight at a time and replies come back in order.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The npm rsmq version the suite proves compatibility with.
const RSMQ_VERSION: &str = "0.12.4";
/// How long one driver call may take: generous, since a 1 MB body crosses JSON twice.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The Redis the interop tests share, from `WSMQ_TEST_REDIS_URL`.
///
/// # Panics
///
/// When the variable is unset: these tests are meant to run under `cargo xtask e2e`.
pub fn test_redis_url() -> String {
    std::env::var("WSMQ_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "WSMQ_TEST_REDIS_URL is not set: run the interop suite with `cargo xtask e2e`, \
             which starts a redis-server, installs npm rsmq and sets it \
             (or set it to a Redis the tests may write to, e.g. redis://127.0.0.1:6379/)"
        )
    })
}

/// An error npm rsmq reported: its `Error.name` (e.g. `queueNotFound`) and message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeErr {
    /// rsmq's error name, comparable with [`wsmq_rsmq::RsmqError::kind`].
    pub name: String,
    /// rsmq's human text.
    pub message: String,
}

/// One reply line of the driver.
#[derive(Debug, Deserialize)]
struct Reply {
    seq: Option<u64>,
    #[serde(default)]
    ok: Option<Value>,
    #[serde(default)]
    err: Option<NodeErr>,
}

/// A running `node rsmq-driver.js`, connected to the test Redis under one namespace.
///
/// Dropping it kills the process (the driver would also exit on its own once its stdin
/// closes).
pub struct NodeRsmq {
    /// The driver process; killed on drop.
    child: Child,
    /// Where requests go, one JSON line each.
    stdin: ChildStdin,
    /// Where replies come from, one JSON line each.
    stdout: Lines<BufReader<ChildStdout>>,
    /// Sequence number of the last request.
    seq: u64,
}

impl NodeRsmq {
    /// Starts the driver against `redis_url` with namespace `ns`.
    ///
    /// The driver and its `node_modules` are found in `WSMQ_NODE_DIR` (set by
    /// `cargo xtask e2e`), else in the workspace's `interop/` folder.
    ///
    /// # Panics
    ///
    /// When npm rsmq 0.12.4 is not installed there or `node` cannot be started.
    pub async fn start(redis_url: &str, ns: &str) -> Self {
        let dir = node_dir();
        let (host, port) = host_and_port(redis_url);
        let mut child = Command::new("node")
            .arg(dir.join("rsmq-driver.js"))
            .args([port.as_str(), ns, host.as_str()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start node ({err}): install Node.js 18+ and run `cargo xtask e2e`")
            });
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        Self {
            child,
            stdin,
            stdout,
            seq: 0,
        }
    }

    /// Calls rsmq's `method` with `args` (its options object) and waits for the result.
    ///
    /// # Panics
    ///
    /// When the driver dies, answers out of turn or not within 30 s.
    pub async fn call(&mut self, method: &str, args: Value) -> Result<Value, NodeErr> {
        self.seq += 1;
        let seq = self.seq;
        let mut line = json!({ "seq": seq, "method": method, "args": args }).to_string();
        line.push('\n');
        let what = format!("node {method}({})", brief(&args));
        if let Err(err) = self.stdin.write_all(line.as_bytes()).await {
            panic!(
                "{what}: cannot write to the driver ({err}): {}",
                self.status()
            );
        }
        let read = tokio::time::timeout(CALL_TIMEOUT, self.stdout.next_line()).await;
        let text = match read {
            Ok(Ok(Some(text))) => text,
            Ok(Ok(None)) => panic!("{what}: the driver closed stdout: {}", self.status()),
            Ok(Err(err)) => panic!("{what}: reading the driver failed: {err}"),
            Err(_) => {
                panic!("{what}: no reply within {CALL_TIMEOUT:?} (is Redis reachable from node?)")
            }
        };
        let reply: Reply = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{what}: reply is not a driver reply ({err}): {text}"));
        assert_eq!(reply.seq, Some(seq), "{what}: reply out of turn: {text}");
        match (reply.ok, reply.err) {
            (_, Some(err)) => Err(err),
            (Some(ok), None) => Ok(ok),
            (None, None) => panic!("{what}: reply has neither ok nor err: {text}"),
        }
    }

    /// Like [`call`](Self::call), for a call that must succeed.
    pub async fn ok(&mut self, method: &str, args: Value) -> Value {
        match self.call(method, args.clone()).await {
            Ok(value) => value,
            Err(err) => panic!("node {method}({}) failed: {err:?}", brief(&args)),
        }
    }

    /// What became of the process, for failure messages.
    fn status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("node exited with {status}"),
            Ok(None) => "node is still running".to_owned(),
            Err(err) => format!("node's status is unknown: {err}"),
        }
    }
}

/// A JSON value for a failure message, with long strings (1 MB bodies) cut short.
pub fn brief(value: &Value) -> String {
    const LIMIT: usize = 200;
    let text = value.to_string();
    if text.len() <= LIMIT {
        return text;
    }
    let cut = (0..=LIMIT)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// The folder holding `rsmq-driver.js` and `node_modules/rsmq`, checked for the
/// pinned rsmq version.
fn node_dir() -> PathBuf {
    let dir = std::env::var_os("WSMQ_NODE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop"),
        PathBuf::from,
    );
    let manifest = dir.join("node_modules/rsmq/package.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|err| {
        panic!(
            "npm rsmq is not installed ({}: {err}): run `cargo xtask e2e`, or `npm ci` in {}",
            manifest.display(),
            dir.display()
        )
    });
    let package: Value = serde_json::from_str(&text).expect("rsmq's package.json is JSON");
    assert_eq!(
        package["version"],
        RSMQ_VERSION,
        "{} holds another rsmq version; run `npm ci` in {}",
        manifest.display(),
        dir.display()
    );
    dir
}

/// Host and port of a `redis://host:port/db` URL, which is all the driver takes.
fn host_and_port(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("the interop driver takes redis:// URLs only, not {url:?}"));
    let authority = rest.split('/').next().unwrap_or_default();
    assert!(
        !authority.contains('@'),
        "the interop driver does not pass credentials: use a Redis without a password"
    );
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => (authority.to_owned(), "6379".to_owned()),
    }
}
