//! The accept loop: connection limit, accept backoff, hyper HTTP/1 with upgrades, drain.
//!
//! Each accepted socket takes a permit of a semaphore sized `--max-connections`. A socket over
//! the limit is answered `503` with a JSON body (and counted) rather than dropped, so a client
//! or load balancer sees why. The permit is shared with the WebSocket session an upgrade
//! starts, so an upgraded connection keeps counting until its session ends.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::{error::GatewayError, node, routes, state::Gateway};

/// How long a client may take to send its request headers (the handshake timeout).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves, then drains: not ready, stop accepting,
/// cancel sessions (they close with 1012), wait up to `--drain-timeout`.
///
/// # Errors
///
/// None at present: accept errors are logged and retried with backoff.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let limit = Arc::new(Semaphore::new(gateway.config.max_connections));
    node::spawn_workers(&gateway);
    info!(
        addr = %gateway.addr,
        node = %gateway.config.node_id,
        engine = gateway.engine.kind(),
        "listening"
    );
    if gateway.config.open {
        warn!("--open: any authenticated user may consume any queue");
    }
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: wait for sockets to free up instead of exiting.
                    error!(cause = %err, backoff = ?backoff, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(5);
        match Arc::clone(&limit).try_acquire_owned() {
            Ok(permit) => {
                let gateway2 = Arc::clone(&gateway);
                let span = info_span!("conn", %peer);
                gateway
                    .shutdown
                    .spawn(serve_connection(stream, peer, gateway2, permit).instrument(span));
            }
            Err(_) => {
                gateway.metrics.connections_refused.inc();
                warn!(%peer, limit = gateway.config.max_connections, "connection refused: limit reached");
                tokio::spawn(refuse(stream));
            }
        }
    }
    gateway
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    drop(listener);
    info!(deadline = ?gateway.config.drain_timeout, "draining");
    let clean = gateway.shutdown.drain(gateway.config.drain_timeout).await;
    node::remove_heartbeat(&gateway).await;
    info!(clean, "stopped");
    Ok(())
}

/// Serves one HTTP/1 connection (and hands an upgraded one to its session).
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let permit = Arc::new(permit);
    let token = gateway.shutdown.token.clone();
    let service = {
        let gateway = Arc::clone(&gateway);
        service_fn(move |req| {
            let gateway = Arc::clone(&gateway);
            let permit = Arc::clone(&permit);
            async move { Ok::<_, Infallible>(routes::handle(req, gateway, peer, permit).await) }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = token.cancelled() => {
            // Finish the request in progress, then close; upgraded sockets are no longer ours.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        debug!(cause = %err, "connection ended with an error");
    }
}

/// Answers a socket over the connection limit with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"unavailable","reason":"too many connections"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}
