//! wsmq over Server-Sent Events, as wsmq.js falls back to it: a client's `GET /sse` stream
//! (hyper's HTTP/1.1 client, the JWT in `Authorization: Bearer`), an incremental parser of
//! its events, and acks over `POST /api/ack` on keep-alive connections of the client's own,
//! one request in flight on each (as a browser's `fetch` uses its connections per host).

use std::{
    collections::VecDeque,
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    pin::Pin,
    sync::Arc,
};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{StreamExt as _, stream::FuturesUnordered};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::{
    Request, StatusCode,
    body::Incoming,
    client::conn::http1::{self, SendRequest},
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use crate::{
    cli::Common,
    net::{self, HANDSHAKE_TIMEOUT, Subscribe},
};

/// An open stream of one client's own queue.
pub(crate) struct Stream {
    body: Incoming,
    parser: EventParser,
    /// Kept so that hyper keeps the connection for the response in progress.
    _sender: SendRequest<Empty<Bytes>>,
    /// Drives the connection; aborted on drop, which closes the socket.
    conn: JoinHandle<()>,
}

/// An SSE client's stream and the acker of its deliveries.
pub(crate) struct Client {
    pub(crate) stream: Stream,
    pub(crate) acker: Acker,
}

/// Opens client `index`'s stream of `queue` (the user's own queue, named like the user), and
/// with `ack_connections` > 0 its ack connections; ready once the gateway has answered 200,
/// which it does after subscribing the queue.
///
/// # Errors
///
/// On a refused connection, a status other than 200 or a timeout.
pub(crate) async fn connect(
    common: &Common,
    index: usize,
    queue: &str,
    ack_connections: usize,
) -> anyhow::Result<Client> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let source = net::source(common, index);
        let subscribe = Subscribe::Queue(queue.to_owned());
        let authorization: HeaderValue =
            format!("Bearer {}", net::token(common, index, &subscribe)).parse()?;
        let stream = open(source, common.server, queue, &authorization).await?;
        let target = Arc::new(AckTarget {
            source,
            server: common.server,
            host: common.server.to_string().parse()?,
            authorization,
            queue: queue.to_owned(),
        });
        let mut idle = Vec::with_capacity(ack_connections);
        for _ in 0..ack_connections {
            idle.push(Some(target.connect().await?));
        }
        Ok::<_, anyhow::Error>(Client {
            stream,
            acker: Acker {
                target,
                idle,
                pending: VecDeque::new(),
                in_flight: FuturesUnordered::new(),
            },
        })
    })
    .await
    .context("SSE handshake timed out")?
}

async fn open(
    source: Ipv4Addr,
    server: SocketAddr,
    queue: &str,
    authorization: &HeaderValue,
) -> anyhow::Result<Stream> {
    let tcp = net::dial(source, server).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::get(format!("/sse?queue={queue}"))
        .header(HOST, server.to_string())
        .header(AUTHORIZATION, authorization.clone())
        .header(ACCEPT, "text/event-stream")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await.context("GET /sse")?;
    let status = response.status();
    if status != StatusCode::OK {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        conn.abort();
        anyhow::bail!("GET /sse: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(Stream {
        body: response.into_body(),
        parser: EventParser::default(),
        _sender: sender,
        conn,
    })
}

impl Stream {
    /// The next event (comments skipped); `None` once the stream has ended.
    ///
    /// Cancel-safe: bytes are only taken from the body when they can be parsed at once.
    pub(crate) async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.parser.push(&data);
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// One event of a stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// `event:`; empty for a `message` event (a delivery).
    pub(crate) event: String,
    /// `id:`, if any.
    pub(crate) id: Option<String>,
    /// The `data:` lines, joined by newlines.
    pub(crate) data: String,
}

/// Splits a `text/event-stream` body, arriving in chunks of any size, into events.
#[derive(Default)]
pub(crate) struct EventParser {
    /// Bytes received and not parsed yet, from `start`.
    buf: Vec<u8>,
    start: usize,
    /// The event being read, and whether it has a field yet.
    event: Event,
    seen: bool,
}

impl EventParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes so far hold one.
    pub(crate) fn next_event(&mut self) -> Option<Event> {
        while let Some(len) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buf[self.start..self.start + len];
            self.start += len + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                if std::mem::take(&mut self.seen) {
                    return Some(std::mem::take(&mut self.event));
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            self.seen = true;
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            let value = String::from_utf8_lossy(value);
            match field {
                b"event" => self.event.event = value.into_owned(),
                b"id" => self.event.id = Some(value.into_owned()),
                b"data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(&value);
                }
                _ => {}
            }
        }
        None
    }
}

/// Where a client's acks go, and with what credentials.
struct AckTarget {
    source: Ipv4Addr,
    server: SocketAddr,
    host: HeaderValue,
    authorization: HeaderValue,
    queue: String,
}

/// A keep-alive connection for acks.
struct AckConn {
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; aborted on drop.
    conn: JoinHandle<()>,
}

impl Drop for AckConn {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

type AckFuture = Pin<Box<dyn Future<Output = (Option<AckConn>, bool)> + Send>>;

/// A client's acks: queued ids, each posted on the first free connection.
pub(crate) struct Acker {
    target: Arc<AckTarget>,
    /// Free connection slots; `None` is a slot whose connection failed, dialled again when
    /// next used.
    idle: Vec<Option<AckConn>>,
    pending: VecDeque<String>,
    in_flight: FuturesUnordered<AckFuture>,
}

impl Acker {
    /// Queues an ack of message `id`, posted at once if a connection is free.
    pub(crate) fn push(&mut self, id: String) {
        self.pending.push_back(id);
        self.start();
    }

    fn start(&mut self) {
        while !self.pending.is_empty()
            && let Some(slot) = self.idle.pop()
            && let Some(id) = self.pending.pop_front()
        {
            let target = Arc::clone(&self.target);
            self.in_flight.push(Box::pin(target.ack(slot, id)));
        }
    }

    /// Waits for the next ack to finish: whether the gateway applied it (200). Never
    /// returns while no ack is in flight. Cancel-safe.
    pub(crate) async fn next(&mut self) -> bool {
        match self.in_flight.next().await {
            Some((slot, applied)) => {
                self.idle.push(slot);
                self.start();
                applied
            }
            None => std::future::pending().await,
        }
    }
}

impl AckTarget {
    async fn connect(&self) -> anyhow::Result<AckConn> {
        let tcp = net::dial(self.source, self.server).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(AckConn { sender, conn })
    }

    /// Posts the ack of `id` on `slot`'s connection, dialling a new one when there is none or
    /// the gateway closed it (it closes connections idle for its handshake timeout), and once
    /// more if the request fails. Returns the slot for the next ack and whether it was applied.
    async fn ack(self: Arc<Self>, slot: Option<AckConn>, id: String) -> (Option<AckConn>, bool) {
        let body = Bytes::from(format!(r#"{{"queue":"{}","id":"{id}"}}"#, self.queue));
        let mut slot = slot.filter(|conn| !conn.sender.is_closed());
        for _ in 0..2 {
            let mut conn = match slot.take() {
                Some(conn) => conn,
                None => match self.connect().await {
                    Ok(conn) => conn,
                    Err(_) => return (None, false),
                },
            };
            if let Ok(status) = self.post(&mut conn, body.clone()).await {
                return (Some(conn), status == StatusCode::OK);
            }
        }
        (None, false)
    }

    async fn post(&self, conn: &mut AckConn, body: Bytes) -> anyhow::Result<StatusCode> {
        conn.sender.ready().await?;
        let request = Request::post("/api/ack")
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let response = conn.sender.send_request(request).await?;
        let status = response.status();
        // Read to the end, so that the connection can carry the next request.
        response.into_body().collect().await?;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::{Event, EventParser};

    fn events(parser: &mut EventParser) -> Vec<Event> {
        std::iter::from_fn(|| parser.next_event()).collect()
    }

    #[test]
    fn events_are_parsed_across_chunks_and_comments_skipped() {
        let mut parser = EventParser::default();
        parser.push(b": stream open\n\nid: abc\nda");
        assert!(events(&mut parser).is_empty());
        parser.push(b"ta: {\"op\":\"message\"}\n\n: keep-alive\n\nevent: close\r\ndata: {\"code\":1012}\r\n");
        assert_eq!(
            events(&mut parser),
            [Event {
                event: String::new(),
                id: Some("abc".to_owned()),
                data: r#"{"op":"message"}"#.to_owned(),
            }]
        );
        parser.push(b"\r\n");
        assert_eq!(
            events(&mut parser),
            [Event {
                event: "close".to_owned(),
                id: None,
                data: r#"{"code":1012}"#.to_owned(),
            }]
        );
    }

    #[test]
    fn data_lines_join_with_newlines() {
        let mut parser = EventParser::default();
        parser.push(b"data: a\ndata:b\n\ndata: c\n\n");
        let got: Vec<String> = events(&mut parser).into_iter().map(|e| e.data).collect();
        assert_eq!(got, ["a\nb", "c"]);
    }
}
