//! A `redis-server` of one test's own, which the test can stop and start again on the same port.
//!
//! The suite's shared Redis cannot be stopped without breaking the tests running beside it, so
//! an outage test starts this one. It keeps its data across a restart the way a production
//! Redis would: append-only file on, in a folder of its own (`--appendonly yes --dir …`), and
//! no RDB snapshots (`--save ''`) so the AOF is the one source. [`OwnRedis::stop`] sends
//! SIGTERM, on which Redis writes and fsyncs the AOF before it exits; [`OwnRedis::restart`]
//! starts it again on the same port and folder and waits until it has loaded the AOF and
//! answers `PING`. Dropping it kills the process by its PID and removes the folder.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long Redis may take to start (or to load its AOF) and to stop.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A `redis-server` owned by one test.
pub(crate) struct OwnRedis {
    /// The running process; `None` while stopped.
    child: Option<Child>,
    /// The loopback port, kept across restarts.
    port: u16,
    /// Its `--dir`: the AOF lives here.
    dir: PathBuf,
}

impl OwnRedis {
    /// Starts a Redis with AOF on a free port, in a fresh folder named after `test`.
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot start or does not answer within 15 s.
    pub(crate) fn start(test: &str) -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "wsmq-e2e-redis-{test}-{}-{port}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the Redis folder");
        let mut redis = OwnRedis {
            child: None,
            port,
            dir,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:{port}`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops Redis with SIGTERM (it persists the AOF first) and waits for it to exit.
    ///
    /// # Panics
    ///
    /// When it is not running or does not exit within 15 s.
    pub(crate) fn stop(&mut self) {
        let mut child = self.child.take().expect("redis is running");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server {pid} did not exit within {TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts Redis (again) on the same port and folder, and waits until it answers `PING`
    /// (a Redis still loading its AOF answers `-LOADING`, which does not count).
    ///
    /// # Panics
    ///
    /// When it is running, cannot start or does not answer within 15 s.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let log = fs::File::create(self.dir.join("redis.log")).expect("create the Redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-server: {err}"));
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {TIMEOUT:?}; log: {}",
                self.port,
                fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` signals this child's PID; `wait` reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether Redis on `port` answers `+PONG` now.
fn ping(port: u16) -> bool {
    let exchange = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        stream.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    };
    exchange().unwrap_or(false)
}
