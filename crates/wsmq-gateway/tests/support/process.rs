//! A real `wsmq-gateway serve` process (the binary cargo built for these tests) on free
//! loopback ports, with `--admin-listen`, killed on drop.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::SECRET;

/// A gateway process, killed on drop unless it has exited.
pub struct Process {
    /// The process.
    pub child: Child,
    /// `--listen`.
    pub public: SocketAddr,
    /// `--admin-listen`.
    pub admin: SocketAddr,
}

impl Process {
    /// Starts `wsmq-gateway serve` on free loopback ports with `extra` flags, and waits for
    /// `/readyz` 200 on its admin port.
    pub async fn start(extra: &[&str]) -> Process {
        let (public, admin) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_wsmq-gateway"))
            .arg("serve")
            .args(["--listen", &public.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--jwt-secret", SECRET, "--node-id", "proc-gw"])
            .args(extra)
            .env_clear()
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the gateway binary starts");
        let process = Process {
            child,
            public,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(200) = try_status(admin, "/readyz").await {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway was not ready within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the signal `name` (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the exit; returns the exit code.
    pub async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback address (bound, then released).
pub fn free_addr() -> SocketAddr {
    wsmq_testkit::free_addr().expect("binding a free loopback port")
}

/// The status of `GET path`, or `None` when nothing answers.
pub async fn try_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}
