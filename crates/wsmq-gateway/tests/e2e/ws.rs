//! A WebSocket client of one gateway process: handshakes with headers and subprotocols, JSON
//! frames, bounded waits, and the close code.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
    },
};
use wsmq_proto::token::{Claims, Grants, issue_hs256};

use crate::cluster::{Gateway, SECRET};

/// How long a test waits for one expected frame.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server sent next.
#[derive(Debug)]
pub(crate) enum Event {
    /// A text frame.
    Text(String),
    /// The server closed (with its close code, if it sent one) or the connection ended.
    Closed(Option<u16>),
}

/// A client connected to one node.
pub(crate) struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// "user@A", for messages.
    pub(crate) label: String,
}

impl Ws {
    /// Opens a WebSocket on `gateway` with extra headers and an optional subprotocol;
    /// `Err((status, body))` when the handshake is refused.
    pub(crate) async fn connect(
        gateway: &Gateway,
        label: &str,
        headers: &[(&str, &str)],
        protocol: Option<&str>,
    ) -> Result<Ws, (u16, String)> {
        let path = if protocol.is_some() { "/ws" } else { "/" };
        let mut request = gateway.ws_url(path).into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        if let Some(protocol) = protocol {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(protocol).unwrap(),
            );
        }
        let label = format!("{label}@{}", gateway.name);
        match tokio::time::timeout(FRAME_TIMEOUT, connect_async(request)).await {
            Ok(Ok((ws, _response))) => Ok(Ws { ws, label }),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((response.status().as_u16(), body))
            }
            Ok(Err(err)) => panic!("{label}: websocket connect failed: {err}"),
            Err(_) => panic!("{label}: no handshake answer within {FRAME_TIMEOUT:?}"),
        }
    }

    /// A v1 session (subprotocol `wsmq.v1`, JWT in `x-token`); returns it with its welcome.
    pub(crate) async fn v1(gateway: &Gateway, label: &str, token: &str) -> (Ws, Value) {
        let mut ws = Ws::connect(gateway, label, &[("x-token", token)], Some("wsmq.v1"))
            .await
            .unwrap_or_else(|(status, body)| panic!("{label}: v1 handshake {status}: {body}"));
        let welcome = ws.json().await;
        assert_eq!(welcome["op"], "welcome", "{}: {welcome}", ws.label);
        assert_eq!(welcome["node"], gateway.node_id.as_str(), "{}", ws.label);
        (ws, welcome)
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        let sent = self.ws.send(Message::text(text)).await;
        sent.unwrap_or_else(|err| panic!("{}: send failed: {err}", self.label));
    }

    pub(crate) async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a JSON frame; `false` when the connection is gone (say, its node crashed).
    pub(crate) async fn try_send_json(&mut self, value: &Value) -> bool {
        self.ws.send(Message::text(value.to_string())).await.is_ok()
    }

    /// The next text frame or the close, within `wait` (`None`: nothing came).
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(Message::Text(text))) => return Some(Event::Text(text.to_string())),
                Some(Ok(Message::Close(frame))) => {
                    return Some(Event::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Event::Closed(None)),
            }
        }
    }

    /// The next frame as JSON.
    ///
    /// # Panics
    ///
    /// On a timeout, a close, or text that is not JSON.
    pub(crate) async fn json(&mut self) -> Value {
        match self.next(FRAME_TIMEOUT).await {
            Some(Event::Text(text)) => serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{}: not JSON ({err}): {text}", self.label)),
            Some(Event::Closed(code)) => panic!("{}: closed ({code:?}) instead", self.label),
            None => panic!("{}: no frame within {FRAME_TIMEOUT:?}", self.label),
        }
    }

    /// Sends a request and returns the reply (no message may come in between).
    pub(crate) async fn request(&mut self, request: &Value) -> Value {
        self.send_json(request).await;
        self.json().await
    }

    /// Asserts that nothing arrives within `wait`.
    pub(crate) async fn expect_silence(&mut self, wait: Duration) {
        if let Some(event) = self.next(wait).await {
            panic!("{}: expected silence, got {event:?}", self.label);
        }
    }

    /// Waits for the server to close the session and returns its close code.
    pub(crate) async fn close_code(&mut self) -> Option<u16> {
        match self.next(FRAME_TIMEOUT).await {
            Some(Event::Closed(code)) => code,
            Some(Event::Text(text)) => panic!("{}: expected a close, got {text}", self.label),
            None => panic!("{}: not closed within {FRAME_TIMEOUT:?}", self.label),
        }
    }

    /// Closes from our side and waits (briefly) for the server's close, so the server has
    /// ended the session when this returns.
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(FRAME_TIMEOUT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// An HS256 JWT for `user` under the suite's secret, valid for 10 minutes, with `grants`.
pub(crate) fn jwt(user: &str, grants: Option<Grants>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let mut claims = Claims::new(user, now + 600);
    claims.wsmq = grants;
    issue_hs256(&claims, SECRET.as_bytes())
}
