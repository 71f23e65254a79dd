//! Client sockets and WebSocket handshakes, and the connecting of a process's clients
//! (WebSocket or SSE) with bounded concurrency.
//!
//! Each socket is bound to `127.0.0.(2 + index % sources):0` before it connects: one
//! source address has about 28,000 ephemeral ports, fewer than a big run needs once
//! closed sockets linger in TIME_WAIT.

use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest as _, protocol::WebSocketConfig},
};
use wsmq_proto::{Claims, Grants, token::issue_hs256};

use crate::{
    cli::{Common, Target},
    clock::unix_secs,
};

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// How long one handshake (connect, upgrade, welcome, subscribe) may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long legacy clients wait, once all are connected, before reporting ready.
const LEGACY_SETTLE: Duration = Duration::from_millis(250);

/// What a client subscribes to once connected.
#[derive(Debug, Clone)]
pub(crate) enum Subscribe {
    /// Its own queue (wsmq: the user's own queue, named like the user).
    Queue(String),
    /// A channel.
    Channel(String),
}

/// Connects client `index` to the target and subscribes it; returns the socket once the
/// subscription is confirmed (v1) or sent (legacy; Nchan subscribes by its URL).
///
/// # Errors
///
/// On a refused connection, a failed upgrade, an error reply or a timeout.
pub(crate) async fn connect(common: &Common, index: usize, what: &Subscribe) -> anyhow::Result<Ws> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_inner(common, index, what))
        .await
        .context("handshake timed out")?
}

async fn connect_inner(common: &Common, index: usize, what: &Subscribe) -> anyhow::Result<Ws> {
    let stream = dial(source(common, index), common.server).await?;
    let server = common.server;
    let path = match (common.target, what) {
        (Target::Wsmq, _) => "/ws".to_owned(),
        (Target::Legacy | Target::WsmqLegacy, _) => "/".to_owned(),
        (Target::Nchan, Subscribe::Channel(name) | Subscribe::Queue(name)) => {
            format!("/sub/{name}")
        }
        (Target::WsmqSse, _) => anyhow::bail!("SSE clients open streams, not WebSockets"),
    };
    let mut request = format!("ws://{server}{path}").into_client_request()?;
    if let Target::Wsmq | Target::WsmqLegacy = common.target {
        request
            .headers_mut()
            .insert("x-token", token(common, index, what).parse()?);
    }
    if common.target == Target::Wsmq {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "wsmq.v1".parse()?);
    }
    // tungstenite's default 128 KiB read buffer, zero-filled per socket, cost the load
    // processes more CPU in page faults than the servers spent on some runs (10,000 clients
    // = 1.3 GB). 16 KiB still takes a burst of deliveries per read.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .context("upgrade")?;
    match (common.target, what) {
        (Target::Wsmq, what) => {
            expect_op(&mut ws, "welcome").await?;
            let frame = match what {
                Subscribe::Queue(queue) => {
                    serde_json::json!({"op": "subscribe", "queue": queue, "ref": 1})
                }
                Subscribe::Channel(channel) => {
                    serde_json::json!({"op": "subscribe", "channel": channel, "ref": 1})
                }
            };
            ws.send(Message::text(frame.to_string())).await?;
            expect_op(&mut ws, "ok").await?;
        }
        (
            Target::Legacy | Target::WsmqLegacy,
            Subscribe::Queue(queue) | Subscribe::Channel(queue),
        ) => {
            ws.send(Message::text(format!("/subscribe/{queue}")))
                .await?;
        }
        (Target::Nchan | Target::WsmqSse, _) => {}
    }
    Ok(ws)
}

/// The source address of client `index`: `127.0.0.(2 + index % sources)`.
pub(crate) fn source(common: &Common, index: usize) -> Ipv4Addr {
    let sources = usize::from(common.sources.max(1));
    Ipv4Addr::new(127, 0, 0, 2 + (index % sources) as u8)
}

/// A TCP connection from `source` (any port) to `server`, without Nagle's delay.
pub(crate) async fn dial(source: Ipv4Addr, server: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A fresh HS256 JWT for client `index` (wsmq): its user is its queue's name (the gateway's
/// default own queue), or for channels `<prefix><index>` with a grant to subscribe to any.
pub(crate) fn token(common: &Common, index: usize, what: &Subscribe) -> String {
    let user = match what {
        Subscribe::Queue(queue) => queue.clone(),
        Subscribe::Channel(_) => format!("{}{index}", common.prefix),
    };
    let mut claims = Claims::new(user, unix_secs() + 24 * 3600);
    if let Subscribe::Channel(_) = what {
        claims.wsmq = Some(Grants {
            subscribe: vec!["*".to_owned()],
            ..Grants::default()
        });
    }
    issue_hs256(&claims, common.jwt_secret.as_bytes())
}

/// Reads frames until one with `op`, failing on an `error` frame or the end.
async fn expect_op(ws: &mut Ws, op: &str) -> anyhow::Result<()> {
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message? {
            let frame: serde_json::Value = serde_json::from_str(&text)?;
            match frame["op"].as_str() {
                Some(got) if got == op => return Ok(()),
                Some("error") => anyhow::bail!("error frame: {text}"),
                _ => {}
            }
        }
    }
    anyhow::bail!("closed while waiting for {op}")
}

/// What connecting a process's clients took.
pub(crate) struct Connected<T = Ws> {
    /// The sockets (or SSE clients), with their client index.
    pub(crate) sockets: Vec<(usize, T)>,
    /// Clients that could not connect, and the first reason.
    pub(crate) failures: usize,
    pub(crate) first_error: Option<String>,
    /// From the first connect to the last confirmed subscription.
    pub(crate) seconds: f64,
    /// Per client: connect → subscription confirmed, µs.
    pub(crate) handshakes: crate::stats::Micros,
}

/// Connects and subscribes every WebSocket client of `common`, `connect_concurrency` at a
/// time.
pub(crate) async fn connect_all(common: &Common, what: impl Fn(usize) -> Subscribe) -> Connected {
    connect_all_with(common, |index| {
        let what = what(index);
        async move { connect(common, index, &what).await }
    })
    .await
}

/// Runs `connect` for every client index of `common`, `connect_concurrency` at a time, and
/// times each: the WebSocket handshakes of [`connect_all`], or SSE streams.
pub(crate) async fn connect_all_with<T, F, Fut>(common: &Common, connect: F) -> Connected<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = std::time::Instant::now();
    let handshakes = crate::stats::Micros::new();
    let connect = &connect;
    let results: Vec<_> = futures_util::stream::iter(common.first..common.first + common.clients)
        .map(|index| {
            let handshakes = &handshakes;
            async move {
                let began = std::time::Instant::now();
                let result = connect(index).await;
                if result.is_ok() {
                    handshakes.record(began.elapsed().as_micros() as u64);
                }
                (index, result)
            }
        })
        .buffer_unordered(common.connect_concurrency.max(1))
        .collect()
        .await;
    let seconds = start.elapsed().as_secs_f64();
    if let Target::Legacy | Target::WsmqLegacy = common.target {
        // The dialect confirms no subscription: without this pause the first messages
        // would wait for `/subscribe` lines the server has not acted on yet, and that
        // wait would count as delivery latency.
        tokio::time::sleep(LEGACY_SETTLE).await;
    }
    let mut connected = Connected {
        sockets: Vec::with_capacity(results.len()),
        failures: 0,
        first_error: None,
        seconds,
        handshakes,
    };
    for (index, result) in results {
        match result {
            Ok(ws) => connected.sockets.push((index, ws)),
            Err(err) => {
                connected.failures += 1;
                connected
                    .first_error
                    .get_or_insert_with(|| format!("{err:#}"));
            }
        }
    }
    connected
}

impl<T> Connected<T> {
    /// The `ready` line's fields.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "ready",
            "connected": self.sockets.len(),
            "connect_failures": self.failures,
            "first_error": self.first_error,
            "connect_seconds": self.seconds,
            "handshakes": self.handshakes.encode(),
        })
    }
}

/// Closes a socket politely, without waiting long for the server.
pub(crate) async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}
