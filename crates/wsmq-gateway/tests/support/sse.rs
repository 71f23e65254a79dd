//! A raw Server-Sent Events client of `GET /sse` (HTTP/1.0, so the body runs until the
//! connection closes, with no chunking to undo) and the `POST /api/ack|nack` helpers.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use super::{RECV_TIMEOUT, TestGateway, token};

/// One event of a stream.
#[derive(Debug)]
pub struct Event {
    /// `event:` (empty: a `message` event).
    pub event: String,
    /// `id:`, if any.
    pub id: Option<String>,
    /// `data:` lines joined.
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// A raw SSE client over HTTP/1.0, so the body is the bytes until close (no chunking).
pub struct Stream {
    pub reader: BufReader<TcpStream>,
}

impl Stream {
    /// Opens `/sse?{query}`; `Err((status, body))` when refused.
    pub async fn open(
        addr: SocketAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Stream, (u16, String)> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Stream::open_on(tcp, addr, query, headers).await
    }

    /// As [`Stream::open`], over a socket the caller connected (say, with a small fixed
    /// receive buffer).
    pub async fn open_on(
        mut tcp: TcpStream,
        addr: SocketAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Stream, (u16, String)> {
        let mut request = format!("GET /sse?{query} HTTP/1.0\r\nhost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(tcp);
        let mut status_line = String::new();
        tokio::time::timeout(RECV_TIMEOUT, reader.read_line(&mut status_line))
            .await
            .expect("a status line in time")
            .unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-type")
            {
                content_type = value.trim().to_owned();
            }
        }
        if status != 200 {
            let mut body = String::new();
            let _ = tokio::time::timeout(
                RECV_TIMEOUT,
                tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut body),
            )
            .await;
            return Err((status, body));
        }
        assert_eq!(content_type, "text/event-stream");
        Ok(Stream { reader })
    }

    /// The next event (comments skipped) within `wait`; `None` on timeout or end.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }

    /// The next comment or event line block; `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Event> {
        let mut event = Event {
            event: String::new(),
            id: None,
            data: String::new(),
        };
        let mut seen = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if seen {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            seen = true;
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                "data" => event.data.push_str(value),
                other => panic!("unexpected field {other}"),
            }
        }
    }

    /// The next `message` event, failing the test if none comes in time.
    pub async fn message(&mut self) -> Event {
        loop {
            let event = self
                .next_within(RECV_TIMEOUT)
                .await
                .expect("a message event in time");
            if event.event.is_empty() {
                return event;
            }
        }
    }

    /// Reads for `wait`; fails on any `message` event.
    pub async fn expect_no_message(&mut self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        while let Some(event) = self
            .next_within(until.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            assert!(!event.event.is_empty(), "unexpected message {event:?}");
        }
    }
}

/// `Bearer <JWT of user>`.
pub fn bearer(user: &str) -> String {
    format!("Bearer {}", token(user))
}

/// `POST {path}` with `user`'s token and a JSON body; (status, JSON body or null).
pub async fn post(gw: &TestGateway, path: &str, user: &str, body: &Value) -> (u16, Value) {
    post_at(gw.addr, path, user, body).await
}

/// As [`post`], to the gateway at `addr` (one that is shutting down, say).
pub async fn post_at(addr: SocketAddr, path: &str, user: &str, body: &Value) -> (u16, Value) {
    let auth = bearer(user);
    let (status, body) = super::http(
        addr,
        "POST",
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A stream of `user`'s own queue (named after the user), the token in the query.
pub async fn own_stream(gw: &TestGateway, user: &str) -> Stream {
    let query = format!("queue={user}&token={}", token(user));
    Stream::open(gw.addr, &query, &[])
        .await
        .expect("stream opens")
}
