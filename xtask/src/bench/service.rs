//! The servers under load, each a child process stopped by PID when dropped: the
//! wsmq gateway, the Node design (`bench/node/ws-rsmq-worker.js`) and nginx with Nchan
//! (own prefix and config in a temporary folder).

use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{redis::RedisServer, util};

/// The HS256 secret the gateway verifies and the load tool signs with.
pub(crate) const JWT_SECRET: &str = "wsmq-bench-secret";

/// A server the bench started.
pub(crate) struct Service {
    /// What it is, for messages.
    name: &'static str,
    /// The process; killed by PID and reaped on drop.
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its temporary folder (nginx), removed on drop.
    dir: Option<PathBuf>,
}

impl Service {
    /// `wsmq-gateway serve` on a free loopback port against the bench's Redis.
    pub(crate) fn gateway(redis: &RedisServer) -> anyhow::Result<Service> {
        Service::gateway_on(&redis.url(), false)
    }

    /// `wsmq-gateway serve --redis-cluster` on a free loopback port, `seeds` being the
    /// cluster's nodes, comma-separated.
    pub(crate) fn gateway_cluster(seeds: &str) -> anyhow::Result<Service> {
        Service::gateway_on(seeds, true)
    }

    fn gateway_on(redis_url: &str, cluster: bool) -> anyhow::Result<Service> {
        let addr = free_addr()?;
        let program = super::release_binary("wsmq-gateway");
        let log = log_file(if cluster {
            "gateway-cluster"
        } else {
            "gateway"
        })?;
        let mut command = Command::new(&program);
        command.arg("serve");
        if cluster {
            command.arg("--redis-cluster");
        }
        let child = command
            .args(["--listen", &addr.to_string()])
            .args(["--redis-url", redis_url])
            .args(["--jwt-secret", JWT_SECRET])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Service::started("wsmq-gateway", child, addr, None)
    }

    /// `wsmq-gateway serve` on a free loopback port on RabbitMQ (`WSMQ_AMQP_URL`, so the
    /// URL and its password stay out of the process list).
    pub(crate) fn gateway_amqp(amqp_url: &str) -> anyhow::Result<Service> {
        let addr = free_addr()?;
        let program = super::release_binary("wsmq-gateway");
        let log = log_file("gateway-amqp")?;
        let child = Command::new(&program)
            .arg("serve")
            .args(["--listen", &addr.to_string()])
            .args(["--jwt-secret", JWT_SECRET])
            .args(["--log-format", "json"])
            .env("WSMQ_AMQP_URL", amqp_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Service::started("wsmq-gateway (RabbitMQ)", child, addr, None)
    }

    /// The Node chat's RabbitMQ design: `ws` + npm amqplib, an exclusive auto-delete queue
    /// per subscription consumed with `noAck` (`bench/node/ws-amqplib.js`).
    pub(crate) fn node_amqp(amqp_url: &str) -> anyhow::Result<Service> {
        let addr = free_addr()?;
        let script = util::project_root().join("bench/node/ws-amqplib.js");
        let child = Command::new("node")
            .arg(&script)
            .args(["--port", &addr.port().to_string()])
            .args(["--amqp-url", amqp_url])
            .stdout(Stdio::null())
            .stderr(log_file("node-amqp")?)
            .spawn()
            .context("starting node")?;
        Service::started("node ws + amqplib", child, addr, None)
    }

    /// The Node design: `ws` + one `rsmq-worker` per subscription.
    pub(crate) fn node(redis: &RedisServer) -> anyhow::Result<Service> {
        let addr = free_addr()?;
        let script = util::project_root().join("bench/node/ws-rsmq-worker.js");
        let child = Command::new("node")
            .arg(&script)
            .args(["--port", &addr.port().to_string()])
            .args(["--redis-url", &redis.url()])
            .stdout(Stdio::null())
            .stderr(log_file("node")?)
            .spawn()
            .context("starting node")?;
        Service::started("node ws + rsmq-worker", child, addr, None)
    }

    /// nginx with Nchan: `/sub/<channel>` websocket subscribers, `/pub/<channel>` HTTP
    /// publisher, in the foreground (`daemon off`) so that its PID is the master's.
    pub(crate) fn nchan() -> anyhow::Result<Service> {
        let addr = free_addr()?;
        let dir = std::env::temp_dir().join(format!("wsmq-bench-nginx-{}", std::process::id()));
        fs::create_dir_all(dir.join("logs"))?;
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_conf(addr, &dir))?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log_file("nginx")?)
            .spawn()
            .context("starting nginx")?;
        Service::started("nginx + nchan", child, addr, Some(dir))
    }

    fn started(
        name: &'static str,
        mut child: Child,
        addr: SocketAddr,
        dir: Option<PathBuf>,
    ) -> anyhow::Result<Service> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{name} exited with {status} before listening (see its log in /tmp)");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} did not listen on {addr} in 20 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("xtask bench: {name} pid {} on {addr}", child.id());
        Ok(Service {
            name,
            child,
            addr,
            dir,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // nginx stops its workers when the master gets SIGTERM; kill() would orphan them.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
        eprintln!("xtask bench: stopped {} (pid {pid})", self.name);
    }
}

/// Whether nginx and the Nchan module are installed; installs them with apt-get when
/// root and they are not. `Err` says how to get them.
pub(crate) fn ensure_nchan() -> anyhow::Result<()> {
    let module = nchan_module();
    if util::have("nginx") && module.is_some() {
        return Ok(());
    }
    let root = fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    anyhow::ensure!(
        root && util::have("apt-get"),
        "nginx with Nchan not found: install them (Debian: `apt-get install nginx-light libnginx-mod-nchan`)"
    );
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "nginx-light", "libnginx-mod-nchan"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    anyhow::ensure!(
        status.success(),
        "apt-get install nginx-light libnginx-mod-nchan failed"
    );
    Ok(())
}

fn nchan_module() -> Option<PathBuf> {
    [
        "/usr/lib/nginx/modules/ngx_nchan_module.so",
        "/usr/share/nginx/modules/ngx_nchan_module.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn nginx_conf(addr: SocketAddr, dir: &std::path::Path) -> String {
    let module = nchan_module().unwrap_or_else(|| "ngx_nchan_module.so".into());
    let dir = dir.display();
    format!(
        "load_module {module};
worker_processes auto;
worker_rlimit_nofile 40000;
pid {dir}/nginx.pid;
daemon off;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {addr};
        location ~ ^/sub/([A-Za-z0-9_-]+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
        }}
        location ~ ^/pub/([A-Za-z0-9_-]+)$ {{
            nchan_publisher http;
            nchan_channel_id $1;
        }}
    }}
}}
",
        module = module.display()
    )
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The server's stderr, kept in the temp folder for when something goes wrong.
fn log_file(name: &str) -> anyhow::Result<fs::File> {
    let path = std::env::temp_dir().join(format!("wsmq-bench-{name}.log"));
    Ok(fs::File::create(path)?)
}
