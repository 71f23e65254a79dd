//! The accept loops (public and admin port): connection limit, accept backoff, handshake
//! timeout, hyper HTTP/1 with upgrades, and the two-phase drain.
//!
//! Each accepted socket takes a permit of a semaphore sized `--max-connections`. A socket over
//! the limit is answered `503` with a JSON body (and counted) rather than dropped, so a client
//! or load balancer sees why. The permit is shared with the WebSocket session an upgrade
//! starts, so an upgraded connection keeps counting until its session ends.
//!
//! Each socket also carries a [`ConnAbort`] (see `crate::abort`), with which a stream or
//! session that gave up on a client that does not read ends the connection with a RST.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::{
    abort::{AbortableStream, ConnAbort},
    error::GatewayError,
    node,
    routes::{self, Port},
    state::Gateway,
};

/// Connections the admin port serves at once: a few scrapers and health checkers, which must
/// not compete with clients for `--max-connections`.
const ADMIN_CONNECTIONS: usize = 256;
/// The longest part of `--drain-timeout` kept for closing sessions and handing back what is
/// still unacknowledged (see [`ack_grace`]).
const CLOSE_MARGIN: Duration = Duration::from_secs(3);

/// Pending connections the kernel holds for `accept` (capped by `net.core.somaxconn`).
///
/// A node that dies sends all its clients to the others at once, and a client sees a full
/// queue as a dropped SYN, retried only after a second. tokio's default of 128 overflowed
/// with 256 clients connecting at once in `cargo xtask bench sessions`.
const LISTEN_BACKLOG: u32 = 4096;

/// How long a connection whose abort was requested may still take to finish its response
/// (the client reads again) before it is reset.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Binds a listener with a backlog sized for reconnection storms.
///
/// # Errors
///
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted node can bind at once despite TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `listener` (and `--admin-listen`, when set) until `shutdown` resolves, then drains.
///
/// The drain, within `--drain-timeout`:
///
/// 1. not ready (`/readyz` 503) and new sessions refused (upgrade 503), while the ports stay
///    open for health checks; queue subscriptions stop taking new messages, and the sessions
///    stay open so their clients can still ack what they hold, for at most [`ack_grace`];
/// 2. the public port closes, every session is closed with 1012 and hands back what is still
///    unacknowledged (visible again at once, for another node);
/// 3. the heartbeat key is deleted and the admin port closes.
///
/// # Errors
///
/// When `--admin-listen` cannot be bound. Accept errors are logged and retried with backoff.
pub(crate) async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let limit = Arc::new(Semaphore::new(gateway.config.listen.max_connections));
    let admin = match gateway.config.listen.admin {
        Some(addr) => Some(bind(addr)?),
        None => None,
    };
    node::spawn_workers(&gateway);
    crate::acks::relay::spawn(&gateway);
    info!(
        addr = %gateway.addr,
        node = %gateway.config.node_id,
        engine = gateway.engine.kind,
        "listening"
    );
    if gateway.config.auth.open {
        warn!("--open: any authenticated user may consume any queue");
    }
    crate::demo::warn_at_start(&gateway);
    // The admin port answers until the very end, so a health check sees the whole drain. The
    // accept loops are aborted if `run` itself is dropped, so no listener outlives it.
    let admin_stop = CancellationToken::new();
    let mut _admin_task = None;
    if let Some(admin) = admin {
        info!(addr = %admin.local_addr()?, "admin listening");
        let admin_limit = Arc::new(Semaphore::new(ADMIN_CONNECTIONS));
        let accept = accept_loop(
            admin,
            Arc::clone(&gateway),
            admin_limit,
            Port::Admin,
            admin_stop.clone(),
        );
        _admin_task = Some(AbortOnDropHandle::new(tokio::spawn(accept)));
    }
    let public_stop = CancellationToken::new();
    let mut public = AbortOnDropHandle::new(tokio::spawn(accept_loop(
        listener,
        Arc::clone(&gateway),
        limit,
        Port::Public,
        public_stop.clone(),
    )));
    shutdown.await;
    let started = Instant::now();
    let deadline = gateway.config.listen.drain_timeout;
    let grace = ack_grace(deadline);
    info!(deadline = ?deadline, grace = ?grace, "draining: new sessions refused, waiting for acks of in-flight messages");
    if !gateway.shutdown.stop_receiving(grace).await {
        info!("messages still unacknowledged; closing sessions, they are handed back");
    }
    public_stop.cancel();
    let _ = (&mut public).await;
    let clean = gateway
        .shutdown
        .drain(deadline.saturating_sub(started.elapsed()))
        .await;
    node::leave_presence(&gateway).await;
    node::remove_heartbeat(&gateway).await;
    admin_stop.cancel();
    let elapsed = started.elapsed();
    gateway.metrics.drain_seconds.set(elapsed.as_secs_f64());
    info!(clean, elapsed = ?elapsed, "stopped");
    Ok(())
}

/// The part of `--drain-timeout` in which clients may still ack what they hold: all of it but
/// a margin (half of it, at most [`CLOSE_MARGIN`]) for closing sessions and handing back.
pub(crate) fn ack_grace(deadline: Duration) -> Duration {
    deadline.saturating_sub((deadline / 2).min(CLOSE_MARGIN))
}

/// Accepts connections on one port until `stop`; each takes a permit of `limit` or is refused.
async fn accept_loop(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limit: Arc<Semaphore>,
    port: Port,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
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
                let serve = serve_connection(stream, peer, gateway2, permit, port);
                gateway.shutdown.spawn(serve.instrument(span));
            }
            Err(_) => {
                if port == Port::Public {
                    gateway.metrics.connections_refused.inc();
                }
                warn!(%peer, ?port, "connection refused: limit reached");
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// Serves one HTTP/1 connection (and hands an upgraded one to its session).
///
/// The socket is an [`AbortableStream`] whose [`ConnAbort`] every request carries in its
/// extensions: an SSE stream ended as a slow client requests the abort, and the connection
/// then gets [`ABORT_GRACE`] to finish its response (a client that reads again gets the
/// stream's last event) before it is dropped with a RST, which frees its permit and the
/// kernel's buffers at once.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    permit: OwnedSemaphorePermit,
    port: Port,
) {
    let _ = stream.set_nodelay(true);
    let abort = ConnAbort::new();
    let stream = AbortableStream::new(stream, abort.clone());
    let permit = Arc::new(permit);
    let token = gateway.shutdown.token.clone();
    let service = {
        let gateway = Arc::clone(&gateway);
        let abort = abort.clone();
        service_fn(move |mut req| {
            req.extensions_mut().insert(abort.clone());
            let gateway = Arc::clone(&gateway);
            let permit = Arc::clone(&permit);
            async move { Ok::<_, Infallible>(routes::handle(req, gateway, peer, permit, port).await) }
        })
    };
    // The header read timeout is the handshake timeout: it runs from the accept (and again
    // after each response), so a client that connects and sends nothing, or half a request,
    // is dropped rather than holding a socket and a connection permit.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(gateway.config.listen.handshake_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut shutting_down = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = token.cancelled(), if !shutting_down => {
                // Finish the request in progress, then close; upgraded sockets are no longer
                // ours.
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            () = abort.requested() => {
                if !shutting_down {
                    conn.as_mut().graceful_shutdown();
                }
                match tokio::time::timeout(ABORT_GRACE, conn.as_mut()).await {
                    Ok(result) => break result,
                    Err(_) => {
                        info!("connection reset: the client does not read");
                        gateway.metrics.connections_reset.inc();
                        abort.reset_on_drop();
                        return;
                    }
                }
            }
        }
    };
    if let Err(err) = result {
        if err.is_timeout() {
            gateway.metrics.handshake_timeouts.inc();
            info!("handshake timeout: request headers did not arrive in time");
        } else {
            debug!(cause = %err, "connection ended with an error");
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;

    /// A burst of connections larger than the usual default backlog (128) completes while
    /// nobody accepts: with a short queue the kernel drops the extra SYNs and those clients
    /// wait a second for the retry.
    #[tokio::test]
    async fn a_reconnection_burst_fits_in_the_backlog() {
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            let connect =
                tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(addr));
            match connect.await {
                Ok(stream) => held.push(stream.unwrap()),
                Err(_) => panic!("connection {i} waited for a SYN retry: the backlog is full"),
            }
        }
        drop(listener);
    }
}
