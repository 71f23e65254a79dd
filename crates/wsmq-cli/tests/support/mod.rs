//! Test support: a throwaway `redis-server` per test and a runner for the built `wsmq-cli`.
//!
//! Each test gets its own Redis (a free port, no persistence, killed by PID on drop), so tests
//! run in parallel without seeing each other's queues, tokens or node heartbeats. With
//! `WSMQ_TEST_REDIS_URL` set, tests share that Redis instead and keep apart by a unique `--ns`
//! and unique user and node ids.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of this module.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use serde_json::Value;

/// The environment variables `wsmq-cli` reads; cleared for every run so that the developer's
/// own settings cannot leak into a test.
const CLI_ENV: [&str; 8] = [
    "WSMQ_REDIS_URL",
    "WSMQ_REDIS_CLUSTER",
    "WSMQ_RSMQ_NS",
    "WSMQ_JWT_SECRET",
    "WSMQ_ACCESS_TOKEN_SECRET",
    "WSMQ_AMQP_URL",
    "WSMQ_AMQP_QUEUE_PREFIX",
    "WSMQ_AMQP_EXCHANGE",
];

/// Makes names unique within this test process.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A Redis for one test.
pub struct TestRedis {
    /// The server (`wsmq_testkit` starts it and stops it on drop), or the shared one that
    /// `WSMQ_TEST_REDIS_URL` names.
    redis: wsmq_testkit::TestRedis,
    /// The rsmq namespace this test's commands use.
    ns: String,
}

impl TestRedis {
    /// Starts a fresh `redis-server`, or uses `WSMQ_TEST_REDIS_URL` with a unique namespace.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing or does not answer PING within 10 s.
    pub fn start() -> TestRedis {
        TestRedis {
            redis: wsmq_testkit::TestRedis::from_env_or_start("WSMQ_TEST_REDIS_URL"),
            ns: unique("wsmqcli"),
        }
    }

    /// `redis://127.0.0.1:{port}` (or the shared URL).
    pub fn url(&self) -> &str {
        self.redis.url()
    }

    /// The `--ns` every [`cli`](Self::cli) run passes.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Whether other tests use this Redis too, so that global keys (`wsmq:node:*`) may hold
    /// their data.
    pub fn shared(&self) -> bool {
        self.redis.is_shared()
    }

    /// A name unique to this test, for user and node ids, which no `--ns` separates.
    pub fn unique(&self, prefix: &str) -> String {
        unique(prefix)
    }

    /// A plain Redis connection for checking what the CLI wrote.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connecting to the test redis")
    }

    /// `wsmq-cli --redis-url URL --ns NS ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.command(args).run()
    }

    /// The same, as a [`Cli`] to add environment variables or stdin to.
    pub fn command(&self, args: &[&str]) -> Cli {
        Cli::plain()
            .args(&["--redis-url", self.url(), "--ns", &self.ns])
            .args(args)
    }
}

/// A `wsmq-cli` invocation being put together.
pub struct Cli {
    /// The command, with a clean environment.
    command: Command,
    /// What to write to its stdin, if anything.
    stdin: Option<Vec<u8>>,
}

impl Cli {
    /// `wsmq-cli` with none of the `WSMQ_*` variables set.
    pub fn plain() -> Cli {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsmq-cli"));
        for var in CLI_ENV {
            command.env_remove(var);
        }
        Cli {
            command,
            stdin: None,
        }
    }

    /// Appends arguments.
    pub fn args(mut self, args: &[&str]) -> Cli {
        self.command.args(args);
        self
    }

    /// Sets an environment variable for the child only.
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.command.env(key, value);
        self
    }

    /// Feeds `input` to stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cli {
        self.stdin = Some(input.into());
        self
    }

    /// Runs to completion.
    pub fn run(mut self) -> Run {
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("spawning wsmq-cli");
        if let Some(input) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("piped stdin");
            // A writer thread: the child may fill stdout before it has read all of stdin.
            thread::spawn(move || pipe.write_all(&input));
        }
        Run::from(child.wait_with_output().expect("waiting for wsmq-cli"))
    }
}

/// What a `wsmq-cli` run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Run {
    /// Asserts exit code 0 and returns the run.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "wsmq-cli failed: {self:#?}");
        self
    }

    /// Asserts exit code 1 with exactly one `error: …` line on stderr, and returns that line.
    pub fn error(self) -> String {
        assert_eq!(self.code, Some(1), "expected exit 1: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0].to_owned()
    }

    /// Stdout parsed as JSON (asserting success first).
    pub fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {run:#?}"))
    }

    /// The lines of stdout.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// A file under Cargo's per-target temporary directory, unique to this test.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(name));
    std::fs::write(&path, contents).expect("writing a temporary file");
    path
}

/// A loopback port on which nothing listens (it was free a moment ago).
pub fn closed_port() -> u16 {
    wsmq_testkit::free_port().expect("binding a free port")
}

/// `{prefix}-{pid}-{n}`: a name no other test of this process uses.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
