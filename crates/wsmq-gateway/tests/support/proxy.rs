//! A TCP proxy in front of Redis whose open connections can be frozen: they stay open but
//! carry nothing more, as when the peer vanished without a FIN or RST (a partition, a frozen
//! host). Connections opened after a freeze pass normally, like a reconnect to a Redis that
//! is reachable again.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::task::AbortOnDropHandle;

pub struct FreezingProxy {
    addr: SocketAddr,
    /// Bumped by each freeze; a connection accepted in an older generation stops forwarding.
    generation: Arc<AtomicU64>,
    _task: AbortOnDropHandle<()>,
}

impl FreezingProxy {
    /// Forwards a free loopback port to the Redis at `redis_url` (`redis://host:port…`).
    pub async fn start(redis_url: &str) -> FreezingProxy {
        let target = redis_url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let generation = Arc::new(AtomicU64::new(0));
        let accept_generation = Arc::clone(&generation);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let born = accept_generation.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let generation = Arc::clone(&accept_generation);
                tokio::spawn(forward(
                    client_read,
                    server_write,
                    born,
                    Arc::clone(&generation),
                ));
                tokio::spawn(forward(server_read, client_write, born, generation));
            }
        });
        FreezingProxy {
            addr,
            generation,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Every connection open now goes silent for good (its sockets stay open).
    pub fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends or the connection is frozen; a frozen connection
/// keeps both halves open and forwards nothing.
async fn forward(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    born: u64,
    generation: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if generation.load(Ordering::SeqCst) != born {
            // Hold the sockets (and so the connection) open, silent, until the test ends.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
