//! Shared test support: an in-process gateway on `127.0.0.1:0`, a throwaway `redis-server`,
//! WebSocket and raw HTTP clients.
#![allow(dead_code, unreachable_pub)]

/// Runs `$body` with `$gw` bound to a memory gateway, then to a Redis gateway (each built
/// from `$config`), so one behaviour test covers both engines. Test files that use it
/// declare `#[macro_use] mod support;`.
#[allow(unused_macros)]
macro_rules! on_both_engines {
    (|$gw:ident| $body:expr, $config:expr) => {{
        let $gw = $crate::support::TestGateway::builder()
            .config($config)
            .start()
            .await;
        $body;
        let redis = $crate::support::RedisServer::start();
        let $gw = $crate::support::TestGateway::builder()
            .config($config)
            .redis(&redis)
            .start()
            .await;
        $body;
    }};
}

pub mod process;
pub mod proxy;
pub mod slowloris;
pub mod sse;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
    },
};
use wsmq_gateway::{
    Config, GatewayError,
    engine::{Engine, QueueStore, memory::MemoryEngine},
};
use wsmq_proto::{Claims, UserId, token::issue_access_token, token::issue_hs256};

/// The JWT secret of every test gateway.
pub const SECRET: &str = "test-secret-0123456789";

/// How long a test waits for a frame before failing.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// A running gateway; shut down on drop (or with [`TestGateway::shutdown`]).
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The in-memory engine, when that is the engine.
    pub memory: Option<Arc<MemoryEngine>>,
    /// The rsmq namespace (Redis).
    pub ns: String,
    /// The Redis URL, when that is the engine.
    pub redis_url: Option<String>,
    /// The RabbitMQ options, when that is the engine.
    pub amqp: Option<wsmq_gateway::engine::amqp::AmqpOptions>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), GatewayError>>>,
}

/// Builds a [`TestGateway`].
pub struct Builder {
    config: Config,
    redis: Option<String>,
    /// The rsmq namespace, when it is to be another gateway's rather than one of its own.
    ns: Option<String>,
    amqp: Option<wsmq_gateway::engine::amqp::AmqpOptions>,
}

impl TestGateway {
    pub fn builder() -> Builder {
        Builder {
            config: Config::for_tests(SECRET),
            redis: None,
            ns: None,
            amqp: None,
        }
    }

    /// `ws://addr{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// An engine on the same data as the gateway, to publish and inspect from the test: the
    /// gateway's own in-memory engine, or a second Redis engine on the same namespace.
    pub async fn engine(&self) -> Engine {
        if let Some(options) = &self.amqp {
            return wsmq_gateway::engine::amqp::AmqpEngine::connect(options.clone(), None)
                .await
                .expect("amqp engine connects")
                .engine();
        }
        match (&self.memory, &self.redis_url) {
            (Some(memory), _) => memory.engine(),
            (None, Some(url)) => {
                wsmq_gateway::engine::redis::RedisEngine::connect(url, &self.ns, Default::default())
                    .await
                    .expect("redis engine connects")
                    .engine()
            }
            (None, None) => unreachable!("a gateway has an engine"),
        }
    }

    /// The queues of [`TestGateway::engine`].
    pub async fn queues(&self) -> Arc<dyn QueueStore> {
        self.engine().await.queues
    }

    /// Stops the gateway and waits for its drain.
    pub async fn shutdown(mut self) -> Result<(), GatewayError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("gateway stops within 15 s")
            .expect("gateway task does not panic")
    }

    /// Opens a v1 session (subprotocol `wsmq.v1`, token in `x-token`) and reads the welcome.
    pub async fn v1(&self, user: &str) -> (Client, Value) {
        let mut client = self
            .connect("/ws", &[("x-token", &token(user))], Some("wsmq.v1"))
            .await
            .expect("v1 handshake succeeds");
        let welcome = client.recv_json().await;
        assert_eq!(welcome["op"], "welcome", "{welcome}");
        (client, welcome)
    }

    /// Opens a legacy session (no subprotocol, token in `x-token`) on `/`.
    pub async fn legacy(&self, user: &str) -> Client {
        self.connect("/", &[("x-token", &token(user))], None)
            .await
            .expect("legacy handshake succeeds")
    }

    /// Opens a legacy session over a socket whose receive buffer is fixed at `recv_buffer`
    /// bytes (no autotuning): what the client has not read yet holds the gateway's writes
    /// back, as with a client on a slow link.
    pub async fn legacy_small_buffer(&self, user: &str, recv_buffer: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let mut request = self.ws_url("/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-token", HeaderValue::from_str(&token(user)).unwrap());
        let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("legacy handshake succeeds");
        Client {
            ws,
            protocol: None,
            pending: Default::default(),
        }
    }

    /// Opens a v1 session with the token `token` over a socket whose receive buffer is fixed
    /// at `recv_buffer` bytes (see [`TestGateway::legacy_small_buffer`]); the welcome is
    /// left unread.
    pub async fn v1_small_buffer(&self, token: &str, recv_buffer: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let mut request = self.ws_url("/ws").into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("x-token", HeaderValue::from_str(token).unwrap());
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("wsmq.v1"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("v1 handshake succeeds");
        Client {
            ws,
            protocol: Some("wsmq.v1".into()),
            pending: Default::default(),
        }
    }

    /// Opens a WebSocket with extra headers and an optional subprotocol; `Err((status, body))`
    /// when the handshake is refused.
    pub async fn connect(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        protocol: Option<&str>,
    ) -> Result<Client, (u16, String)> {
        connect_at(self.addr, path, headers, protocol).await
    }

    /// A raw HTTP/1.1 request; returns (status, body).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        http(self.addr, method, path, headers, body).await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Builder {
    /// Changes the configuration.
    pub fn config(mut self, change: impl FnOnce(&mut Config)) -> Builder {
        change(&mut self.config);
        self
    }

    /// Uses the Redis engine on `server`, in a namespace of its own.
    pub fn redis(mut self, server: &RedisServer) -> Builder {
        self.redis = Some(server.url());
        self
    }

    /// Shares the rsmq namespace `ns` (another gateway's [`TestGateway::ns`]), as a second
    /// node of the same deployment does.
    pub fn ns(mut self, ns: &str) -> Builder {
        self.ns = Some(ns.to_owned());
        self
    }

    /// Uses the Redis engine at `url` (say, through a proxy), in a namespace of its own.
    pub fn redis_url(mut self, url: String) -> Builder {
        self.redis = Some(url);
        self
    }

    /// Uses the Redis engine on the Redis Cluster whose seed nodes `urls` lists (as
    /// `wsmq_testkit::RedisCluster::urls` gives them), in a namespace of its own.
    pub fn redis_cluster(mut self, urls: String) -> Builder {
        self.config.engine.redis_cluster = true;
        self.redis = Some(urls);
        self
    }

    /// Uses the RabbitMQ engine with these options (see [`amqp_options`]); a Redis given
    /// too serves the access-token registry.
    pub fn amqp(mut self, options: wsmq_gateway::engine::amqp::AmqpOptions) -> Builder {
        self.amqp = Some(options);
        self
    }

    /// Starts the gateway on `127.0.0.1:0`.
    pub async fn start(self) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let mut config = self.config;
        let ns = self.ns.unwrap_or_else(|| format!("t{}", unique()));
        let redis_url = self.redis.clone();
        let amqp = self.amqp.clone();
        if let Some(options) = self.amqp {
            config.engine.amqp = Some(wsmq_gateway::engine::amqp::AmqpConfig {
                url: options.url,
                queue_prefix: options.queue_prefix,
                exchange: options.exchange,
            });
        }
        let (memory, task) = match self.redis {
            _ if amqp.is_some() => {
                config.engine.redis_url = self.redis;
                config.engine.rsmq_ns = ns.clone();
                (
                    None,
                    tokio::spawn(wsmq_gateway::run(listener, config, shutdown)),
                )
            }
            Some(url) => {
                config.engine.redis_url = Some(url);
                config.engine.rsmq_ns = ns.clone();
                let task = tokio::spawn(wsmq_gateway::run(listener, config, shutdown));
                (None, task)
            }
            None => {
                let engine = MemoryEngine::new();
                let task = tokio::spawn(wsmq_gateway::serve(
                    listener,
                    config,
                    engine.engine(),
                    shutdown,
                ));
                (Some(engine), task)
            }
        };
        // Wait until it answers, so tests never race the start.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        TestGateway {
            addr,
            memory,
            ns,
            redis_url,
            amqp,
            shutdown: Some(tx),
            task: Some(task),
        }
    }
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
    /// Message frames that arrived while [`Client::request`] waited for its reply.
    pending: std::collections::VecDeque<String>,
}

impl Client {
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// The next text frame (pings and pongs skipped); panics on timeout or close.
    pub async fn recv_text(&mut self) -> String {
        match self.next_text(RECV_TIMEOUT).await {
            Some(text) => text,
            None => panic!("no text frame within {RECV_TIMEOUT:?}"),
        }
    }

    /// The next text frame within `wait`, or `None` (timeout or close).
    pub async fn next_text(&mut self, wait: Duration) -> Option<String> {
        if let Some(text) = self.pending.pop_front() {
            return Some(text);
        }
        self.read_text(wait).await
    }

    async fn read_text(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame.ok()? {
                Message::Text(text) => return Some(text.to_string()),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    pub async fn recv_json(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).unwrap()
    }

    /// Sends a request and returns the next frame that is not a queue/channel message or a
    /// `presence` frame; those that arrive meanwhile are kept for the next `recv`.
    pub async fn request(&mut self, value: Value) -> Value {
        self.send_json(value).await;
        loop {
            let Some(text) = self.read_text(RECV_TIMEOUT).await else {
                panic!("no reply within {RECV_TIMEOUT:?}");
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["op"] != "message" && frame["op"] != "presence" {
                return frame;
            }
            self.pending.push_back(text);
        }
    }

    /// Asserts that nothing arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(text) = self.next_text(wait).await {
            panic!("expected silence, got {text}");
        }
    }

    /// Waits for the server's close frame and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("no close frame within {RECV_TIMEOUT:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close arrives, so the server has seen ours.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// Opens a WebSocket to the gateway at `addr` (in-process or not) with extra headers and an
/// optional subprotocol; `Err((status, body))` when the handshake is refused.
pub async fn connect_at(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    protocol: Option<&str>,
) -> Result<Client, (u16, String)> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
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
    match connect_async(request).await {
        Ok((ws, response)) => Ok(Client {
            ws,
            protocol: response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned()),
            pending: Default::default(),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Err(err) => panic!("websocket connect failed: {err}"),
    }
}

/// Opens a v1 session on the gateway at `addr` (say, a [`process::Process`]) and reads the
/// welcome.
pub async fn v1_at(addr: SocketAddr, user: &str) -> (Client, Value) {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("x-token", HeaderValue::from_str(&token(user)).unwrap());
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("wsmq.v1"),
    );
    let (ws, _) = connect_async(request).await.expect("v1 handshake succeeds");
    let mut client = Client {
        ws,
        protocol: Some("wsmq.v1".to_owned()),
        pending: Default::default(),
    };
    let welcome = client.recv_json().await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    (client, welcome)
}

/// An HS256 JWT for `user`, valid for an hour.
pub fn token(user: &str) -> String {
    token_with(Claims::new(user, now() + 3600))
}

/// An HS256 JWT with these claims, signed with [`SECRET`].
pub fn token_with(claims: Claims) -> String {
    issue_hs256(&claims, SECRET.as_bytes())
}

/// An access token for `user` under [`SECRET`] (not registered anywhere yet).
pub fn access_token(user: &str) -> String {
    issue_access_token(SECRET.as_bytes(), &UserId::new(user).unwrap(), now())
}

/// Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A name unique within this test process, for queues and users.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A raw HTTP/1.1 request with `connection: close`; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("response within the timeout")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A throwaway `redis-server` on a free port (no persistence), killed on drop; or the server
/// named by `WSMQ_TEST_REDIS_URL` when set (tests then keep apart by namespace and names).
pub struct RedisServer(wsmq_testkit::TestRedis);

impl RedisServer {
    /// Starts one.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed or does not answer within 10 s.
    pub fn start() -> RedisServer {
        RedisServer(wsmq_testkit::TestRedis::from_env_or_start(
            "WSMQ_TEST_REDIS_URL",
        ))
    }

    pub fn url(&self) -> String {
        self.0.url().to_owned()
    }
}

/// The RabbitMQ of this test process: `WSMQ_TEST_AMQP_URL` when set, else one
/// `rabbitmq-server` node started on first use (own node name, ports and data folder) and
/// stopped by PID when the process exits. Tests keep apart by unique names.
pub fn rabbit() -> &'static wsmq_testkit::TestRabbit {
    wsmq_testkit::TestRabbit::shared("WSMQ_TEST_AMQP_URL")
}

/// AMQP engine options with names of their own (queue prefix and direct exchange), so tests
/// sharing a broker never see each other's messages.
pub fn amqp_options() -> wsmq_gateway::engine::amqp::AmqpOptions {
    let id = unique();
    wsmq_gateway::engine::amqp::AmqpOptions {
        url: rabbit().url().parse().expect("a valid AMQP URL"),
        queue_prefix: format!("t{id}."),
        exchange: format!("wsmq.direct.t{id}"),
        prefetch: 64,
    }
}
