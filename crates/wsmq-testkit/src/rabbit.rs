//! [`RabbitServer`]: a `rabbitmq-server` node of its own (node name, AMQP port, distribution
//! port, data and logs in a fresh folder), stopped by its PID; and [`TestRabbit`], the broker
//! one test process works against.
//!
//! A machine with RabbitMQ installed from the Debian package usually runs the system node too
//! (`rabbit@localhost` on 5672, with `/etc/rabbitmq/rabbitmq.conf`). Nothing here touches it:
//! the node gets its own name, config file, plugin list and ports, and the Erlang VM is run
//! directly (`RUNNING_UNDER_SYSTEMD=1` makes the start script `exec erl`), so the PID this
//! guard holds is the broker's own and SIGTERM stops it cleanly.
//!
//! A node takes seconds to boot, so tests share one per test process ([`TestRabbit::shared`])
//! and keep apart by unique queue and exchange names. A process-wide value is never dropped,
//! so that node is given a watchdog: a `sh` loop that stops it by PID once the test process is
//! gone.

use std::{
    fs,
    io::{self, Read},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use crate::Error;

/// How long a start waits for the AMQP port to answer: a node boots in 3 to 20 s depending on
/// the machine's load.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Tries of [`RabbitServer::start`] when the node exits during its boot.
const START_ATTEMPTS: u32 = 3;

/// How long [`RabbitServer::stop`] waits for the node to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the Debian package keeps the real scripts: `/usr/sbin/rabbitmq-server` is a wrapper
/// that switches to the `rabbitmq` user (whose Erlang cookie differs from ours), so the real
/// ones are preferred when present.
const DEBIAN_BIN: &str = "/usr/lib/rabbitmq/bin";

/// A running `rabbitmq-server` node owned by this process.
///
/// Dropping it kills the node by PID and removes its folder.
#[derive(Debug)]
pub struct RabbitServer {
    /// The Erlang VM; `None` once stopped.
    child: Option<Child>,
    /// Its PID.
    pid: u32,
    /// The AMQP port on 127.0.0.1.
    port: u16,
    /// The Erlang distribution port (for rabbitmqctl).
    dist_port: u16,
    /// `wsmq{port}@localhost`.
    node: String,
    /// Config, plugin list, mnesia and logs.
    dir: PathBuf,
}

impl RabbitServer {
    /// Starts a node on free loopback ports, with its data in a fresh folder, and waits until
    /// it accepts AMQP connections.
    ///
    /// # Errors
    ///
    /// When RabbitMQ is not installed ([`Error::RabbitNotInstalled`]), no port is free, the
    /// folder cannot be made, or the node exits or does not open its port within 90 s (the
    /// error then carries the end of its log).
    pub fn start() -> Result<RabbitServer, Error> {
        // A node that exits at once has usually lost a race for one of its ports (or for a
        // busy epmd) with another test process: try again on fresh ports.
        let mut attempt = 1;
        loop {
            match RabbitServer::start_once() {
                Err(Error::RabbitExited { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    /// One try of [`start`](Self::start).
    fn start_once() -> Result<RabbitServer, Error> {
        let (port, dist_port) = two_free_ports()?;
        let node = format!("wsmq{port}@localhost");
        let dir = std::env::temp_dir().join(format!("wsmq-rabbit-{}-{port}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let prepare = || -> io::Result<()> {
            fs::create_dir_all(&dir)?;
            // Our own config: the system's binds 5672, which the system node holds.
            fs::write(
                dir.join("rabbitmq.conf"),
                format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
            )?;
            fs::write(dir.join("enabled_plugins"), "[].\n")?;
            fs::write(dir.join("rabbitmq-env.conf"), "")?;
            Ok(())
        };
        prepare().map_err(|err| Error::Dir {
            path: dir.clone(),
            err,
        })?;
        let mut server = RabbitServer {
            child: None,
            pid: 0,
            port,
            dist_port,
            node,
            dir,
        };
        // On failure, dropping `server` kills the node and removes the folder.
        server.spawn()?;
        Ok(server)
    }
    /// `amqp://guest:guest@127.0.0.1:{port}/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The AMQP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node name (`wsmq{port}@localhost`), for `rabbitmqctl -n`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The PID of the Erlang VM.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The node's folder (config, mnesia, `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `rabbitmqctl -n <this node> <args>` (e.g. `close_all_connections reason`).
    ///
    /// # Errors
    ///
    /// When rabbitmqctl cannot run or exits non-zero (the error carries its output).
    pub fn ctl(&self, args: &[&str]) -> Result<Output, Error> {
        ctl(&self.node, args)
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    ///
    /// # Errors
    ///
    /// When it is not running, the signal cannot be sent, or it does not exit within 30 s
    /// (it is then killed).
    pub fn stop(&mut self) -> Result<(), Error> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        let pid = child.id();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if !signalled.as_ref().is_ok_and(|s| s.success()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Signal {
                pid,
                reason: format!("{signalled:?}"),
            });
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::StopTimeout {
                    pid,
                    timeout: STOP_TIMEOUT,
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the node again after [`stop`](Self::stop): same name, ports and data, so
    /// durable queues and their persistent messages are back.
    ///
    /// # Errors
    ///
    /// When it is running, or does not come back within 90 s.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.child.is_some() {
            return Err(Error::AlreadyRunning);
        }
        self.spawn()
    }

    /// Spawns the Erlang VM with this node's settings and waits for its AMQP port.
    fn spawn(&mut self) -> Result<(), Error> {
        let log = fs::File::create(self.dir.join("server.log")).map_err(|err| Error::Dir {
            path: self.dir.clone(),
            err,
        })?;
        let stderr = log.try_clone().map_err(|err| Error::Dir {
            path: self.dir.clone(),
            err,
        })?;
        let mut command = Command::new(script("rabbitmq-server"));
        command
            .current_dir(&self.dir)
            .env("RUNNING_UNDER_SYSTEMD", "1")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                self.dir.join("advanced.config"),
            )
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env(
                "RABBITMQ_PLUGINS_EXPAND_DIR",
                self.dir.join("plugins-expand"),
            )
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env("RABBITMQ_LOGS", "-")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = command.spawn().map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => Error::RabbitNotInstalled,
            _ => Error::Spawn(err),
        })?;
        self.pid = child.id();
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls until the AMQP port answers the protocol header, the node exits, or the timeout.
    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(Error::RabbitExited {
                    port: self.port,
                    status,
                    log: self.log_tail(),
                });
            }
            if answers_amqp(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::RabbitNotReady {
                    port: self.port,
                    timeout: START_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the node's output, for error messages.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Starts a watchdog that stops this node by PID (and removes its folder) once the
    /// process `owner` has exited: for a node that lives in a `static` and is never dropped.
    fn watch_owner(&self, owner: u32) -> Result<(), Error> {
        let script = format!(
            "while kill -0 {owner} 2>/dev/null; do sleep 1; done; kill -TERM {pid}; \
             i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done; \
             kill -KILL {pid} 2>/dev/null; rm -rf '{dir}'",
            pid = self.pid,
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(Error::Spawn)
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The RabbitMQ the tests of one process work against.
#[derive(Debug)]
pub struct TestRabbit {
    /// The node this process started; `None` when the environment named a broker.
    server: Option<RabbitServer>,
    /// Its URL.
    url: String,
}

impl TestRabbit {
    /// The broker at `$var` when that is set, else one node started for this whole test
    /// process (on first use) and stopped by a watchdog when the process exits. Tests on it
    /// must keep apart by unique names.
    ///
    /// # Panics
    ///
    /// When `var` is unset and `rabbitmq-server` cannot start; the message says why and how
    /// to fix it. A missing broker is a broken setup, not a skipped test.
    pub fn shared(var: &str) -> &'static TestRabbit {
        static SHARED: OnceLock<TestRabbit> = OnceLock::new();
        SHARED.get_or_init(|| {
            if let Ok(url) = std::env::var(var) {
                return TestRabbit { server: None, url };
            }
            let started = RabbitServer::start().and_then(|server| {
                server.watch_owner(std::process::id())?;
                Ok(server)
            });
            match started {
                Ok(server) => TestRabbit {
                    url: server.url(),
                    server: Some(server),
                },
                Err(err) => panic!("{err}; or set {var} to a RabbitMQ the tests may write to"),
            }
        })
    }

    /// The broker's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The node this process started, if it did (for `rabbitmqctl`).
    pub fn server(&self) -> Option<&RabbitServer> {
        self.server.as_ref()
    }
}

/// Two distinct free loopback ports (both held while picked, so they cannot be the same).
fn two_free_ports() -> Result<(u16, u16), Error> {
    let bind = || std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(Error::FreePort);
    let (a, b) = (bind()?, bind()?);
    let port =
        |l: &std::net::TcpListener| l.local_addr().map(|a| a.port()).map_err(Error::FreePort);
    Ok((port(&a)?, port(&b)?))
}

/// `rabbitmqctl -n node args…`.
fn ctl(node: &str, args: &[&str]) -> Result<Output, Error> {
    let output = Command::new(script("rabbitmqctl"))
        .arg("-n")
        .arg(node)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => Error::RabbitNotInstalled,
            _ => Error::Spawn(err),
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Ctl {
            args: args.join(" "),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// The real script `name` of the Debian package when present, else `name` from `PATH`.
fn script(name: &str) -> PathBuf {
    let debian = Path::new(DEBIAN_BIN).join(name);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

/// Whether something on `port` answers an AMQP 0-9-1 protocol header with a frame (a booting
/// node accepts TCP before its AMQP listener is up only when another process holds the port).
fn answers_amqp(port: u16) -> bool {
    let exchange = || -> io::Result<bool> {
        use std::io::Write;
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(b"AMQP\x00\x00\x09\x01")?;
        let mut frame = [0u8; 1];
        stream.read_exact(&mut frame)?;
        // Frame type 1: the server's connection.start method.
        Ok(frame[0] == 1)
    };
    exchange().unwrap_or(false)
}
