//! Memory stays bounded when 1,000 clients stop reading while messages keep coming: the slow
//! ones are closed with 4008 instead of the gateway buffering for them.
//!
//! A gateway process (so its RSS is its own) serves 1,000 v1 sessions, each on a socket with a
//! small fixed receive buffer, each subscribed to one channel, none reading. 192 messages of
//! 32 KiB are then published on the channel: 6 MiB per client, more than the kernel buffers
//! of one connection hold (the gateway's send buffer grows to at most `tcp_wmem`'s 4 MiB, the
//! client's receive buffer is fixed at a few KiB), so every writer blocks and every session's
//! outbound queue fills: each is closed with 4008, and the test asserts it (with the
//! `Full` guard of the outbound queue deleted, no session is, and the test fails).
//!
//! What the gateway may hold meanwhile: the published frames once (channel frames share one
//! buffer between sessions), and per session tungstenite's write buffer (16 KiB) plus the
//! frame being written and the one being fed to it. So growth over the idle baseline must stay
//! under sessions × (16 KiB + 2 × 32 KiB) + 192 × 32 KiB ≈ 84 MiB, where keeping a copy of
//! everything unread would take 6 GiB.

mod support;

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use support::{http, now, process::Process, token_with};
use tokio_tungstenite::{
    MaybeTlsStream, client_async,
    tungstenite::{Message, client::IntoClientRequest},
};
use wsmq_proto::{Claims, Grants};

const CLIENTS: usize = 1000;
const MESSAGES: usize = 192;
const MESSAGE_SIZE: usize = 32 * 1024;
const OUTBOUND: usize = 16;
/// tungstenite's write buffer per session (`upgrade::socket_config`).
const WRITE_BUFFER: usize = 16 * 1024;
const API_KEY: &str = "memory-test-key";

/// The gateway's resident set, KiB, from `/proc/<pid>/status` (`field` is `VmRSS` or `VmHWM`).
fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A counter from the admin port's metrics.
async fn counter(admin: std::net::SocketAddr, name: &str) -> f64 {
    let (_, text) = http(admin, "GET", "/metrics", &[], "").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_that_stop_reading_do_not_grow_the_gateway_without_bound() {
    let outbound = OUTBOUND.to_string();
    let gw = Process::start(&[
        "--outbound-buffer",
        &outbound,
        "--api-key",
        API_KEY,
        "--max-connections",
        "5000",
    ])
    .await;
    let pid = gw.child.id();
    let mut claims = Claims::new("reader", now() + 3600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["storm".into()],
        ..Grants::default()
    });
    let token = token_with(claims);
    // Connect and subscribe in batches; the clients never read.
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS / 50 {
        let batch = (0..50).map(|_| {
            let token = token.clone();
            let addr = gw.public;
            async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                let stream = socket.connect(addr).await.unwrap();
                let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
                request
                    .headers_mut()
                    .insert("x-token", token.parse().unwrap());
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", "wsmq.v1".parse().unwrap());
                let (mut ws, _) = client_async(request, MaybeTlsStream::Plain(stream))
                    .await
                    .expect("handshake");
                let subscribe = json!({"op": "subscribe", "channel": "storm"});
                ws.send(Message::text(subscribe.to_string())).await.unwrap();
                ws
            }
        });
        clients.extend(futures_util::future::join_all(batch).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(gw.admin, "wsmq_subscriptions").await < CLIENTS as f64 {
        assert!(Instant::now() < deadline, "not all clients subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let baseline = rss_kib(pid, "VmRSS");
    // The storm: 256 publishes, each fanned out to every client.
    let body = json!({"channel": "storm", "message": "x".repeat(MESSAGE_SIZE)}).to_string();
    let auth = format!("apikey {API_KEY}");
    let mut peak = baseline;
    for _ in 0..MESSAGES {
        let (status, reply) = http(
            gw.admin,
            "POST",
            "/api/publish",
            &[("authorization", &auth)],
            &body,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        peak = peak.max(rss_kib(pid, "VmRSS"));
    }
    // Let the writers run out of room (or of data), sampling the RSS meanwhile.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        peak = peak.max(rss_kib(pid, "VmRSS"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A session is counted once it has ended, which for a client that does not read takes
    // the writer's close timeouts (about 3 s) after the 4008 itself.
    let mut slow = 0.0;
    let mut closed_4008 = 0.0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(pid, "VmRSS"));
        slow = counter(gw.admin, "wsmq_slow_clients_total").await;
        closed_4008 = counter(gw.admin, "wsmq_sessions_closed_total{code=\"4008\"}").await;
        if slow >= CLIENTS as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = rss_kib(pid, "VmRSS");
    let hwm = rss_kib(pid, "VmHWM");
    let bound =
        ((CLIENTS * (WRITE_BUFFER + 2 * MESSAGE_SIZE) + MESSAGES * MESSAGE_SIZE) / 1024) as u64;
    let grown = peak.saturating_sub(baseline);
    let _ = writeln_stderr(&format!(
        "memory: {CLIENTS} non-reading clients, {MESSAGES} x {MESSAGE_SIZE} B published to \
         each: gateway RSS idle {baseline} KiB, peak {peak} KiB (+{grown} KiB; VmHWM {hwm} \
         KiB), {after} KiB at the end; bound +{bound} KiB; {slow} slow clients, {closed_4008} \
         sessions closed with 4008"
    ));
    assert!(
        grown < bound,
        "RSS grew by {grown} KiB, over the bound of {bound} KiB"
    );
    // Every session got more than its socket holds: each was a slow client, closed with 4008.
    assert!(
        slow >= 1.0 && closed_4008 >= 1.0,
        "no session was closed as slow: slow {slow}, 4008 {closed_4008}"
    );
    // The node still serves: ready, and a new session is answered.
    assert_eq!(super_status(gw.admin).await, 200);
    let (mut fresh, _) = {
        let mut request = format!("ws://{}/ws", gw.public)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("x-token", support::token("fresh").parse().unwrap());
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "wsmq.v1".parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .expect("a new session is admitted")
    };
    fresh
        .send(Message::text(json!({"op": "ping"}).to_string()))
        .await
        .unwrap();
    drop(clients);
}

/// Writes past the test harness's capture, so the figures show in a passing run.
fn writeln_stderr(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr(), "{line}")
}

async fn super_status(admin: std::net::SocketAddr) -> u16 {
    http(admin, "GET", "/readyz", &[], "").await.0
}
