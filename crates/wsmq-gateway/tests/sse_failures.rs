//! SSE streams when things go wrong: a client that stops reading (ended as a slow client, its
//! messages released at once, its connection reset and its permit given back), the node's
//! drain (the stream ends with 1012, what was acked stays acked, the rest comes back on
//! another node), and hostile clients that trickle the request headers of `GET /sse` or
//! `POST /api/ack`, or an ack's body (cut at the handshake timeout, 200 of them at once
//! included).

mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{
    RECV_TIMEOUT, RedisServer, TestGateway,
    slowloris::{status_of, trickle},
    sse::{Stream, bearer, own_stream, post, post_at},
    token, unique,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The value of an unlabelled (or fully labelled) metric, 0 when absent.
async fn metric(gw: &TestGateway, name: &str) -> f64 {
    let (_, text) = gw.http("GET", "/metrics", &[], "").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits up to `wait` for `name` to reach `at_least`; returns its last value.
async fn metric_reaches(gw: &TestGateway, name: &str, at_least: f64, wait: Duration) -> f64 {
    let deadline = Instant::now() + wait;
    loop {
        let value = metric(gw, name).await;
        if value >= at_least || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Message bodies near rsmq's largest (64 KiB), and as many in flight as it takes to hold more
/// (8 MiB) than the kernel (a send buffer of at most `tcp_wmem`'s 4 MiB, a 4 KiB receive
/// buffer), hyper and the stream's body channel keep for a client that does not read.
const BIG: usize = 63 * 1024;
const HELD: usize = 128;

#[tokio::test]
async fn a_stream_that_does_not_read_is_ended_as_slow_and_its_messages_go_to_another_consumer() {
    // Queue deliveries never count against the outbound buffer (the window bounds them): what
    // fills it while the body is stuck is the keep-alive, every 100 ms here.
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.window = HELD;
            c.limits.outbound_buffer = 4;
            c.limits.ping_interval = Duration::from_millis(100);
        })
        .start()
        .await;
    let q = format!("q{}", unique());
    let queues = gw.queues().await;
    queues.ensure_queue(&q).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(gw.addr).await.unwrap();
    let query = format!("queue={q}&token={}", token(&q));
    let slow = Stream::open_on(tcp, gw.addr, &query, &[])
        .await
        .expect("stream opens");
    let body = "x".repeat(BIG);
    let sent_at = Instant::now();
    let mut sent = BTreeSet::new();
    for _ in 0..HELD {
        sent.insert(queues.send(&q, &body, None).await.unwrap());
    }
    // The slow stream takes them all (its window is the whole backlog) before a competitor
    // subscribes, so each one the competitor gets is a release (rc 2), not a first delivery.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut other = own_stream(&gw, &q).await;
    let mut redelivered = BTreeSet::new();
    // The vt is 30 s: only the slow client's release brings them back within 10 s.
    let deadline = sent_at + Duration::from_secs(10);
    while redelivered.len() < HELD {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Some(event) = other.next_within(wait).await else {
            panic!(
                "{} of {HELD} messages came back within 10 s of the send: the stream that does \
                 not read still holds the rest",
                redelivered.len()
            );
        };
        if !event.event.is_empty() {
            continue;
        }
        let frame = event.json();
        assert_eq!(frame["rc"], 2, "a release, not a first delivery: {frame}");
        let id = frame["id"].as_str().unwrap().to_owned();
        assert!(sent.contains(&id), "{frame}");
        redelivered.insert(id);
    }
    // Counted once the session has ended, after the writer's close timeouts.
    let slow_clients = metric_reaches(&gw, "wsmq_slow_clients_total", 1.0, RECV_TIMEOUT).await;
    assert!(slow_clients >= 1.0, "no slow client counted");
    let closed = metric(&gw, "wsmq_sessions_closed_total{code=\"4008\"}").await;
    assert!(closed >= 1.0, "no session closed with 4008");
    // The connection itself is ended, with what the kernel still holds for the client
    // discarded: the client's socket sees the RST although it never read.
    let tcp = slow.reader.get_ref();
    let deadline = Instant::now() + RESET_WITHIN;
    let err = loop {
        if let Some(err) = tcp.take_error().unwrap() {
            break err;
        }
        assert!(
            Instant::now() < deadline,
            "the connection of the stream ended as slow is still open {RESET_WITHIN:?} after \
             its messages came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(metric(&gw, "wsmq_connections_reset_total").await >= 1.0);
}

/// How long after a stream is ended as slow its connection may still be open: the writer's
/// close timeouts (1 s each), the accept loop's grace (1 s), and slack for a busy machine.
const RESET_WITHIN: Duration = Duration::from_secs(6);

#[tokio::test]
async fn a_stream_ended_as_slow_gives_back_its_connection_permit() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.window = HELD;
            c.limits.outbound_buffer = 4;
            c.limits.ping_interval = Duration::from_millis(100);
            c.listen.max_connections = 1;
        })
        .start()
        .await;
    let q = format!("q{}", unique());
    let queues = gw.queues().await;
    queues.ensure_queue(&q).await.unwrap();
    let query = format!("queue={q}&token={}", token(&q));
    // The builder's start-up probe may still hold the one permit for a moment.
    let mut slow = None;
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(gw.addr).await.unwrap();
        if let Ok(stream) = Stream::open_on(tcp, gw.addr, &query, &[]).await {
            slow = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _slow = slow.expect("the stream opens");
    let (status, _) = gw.http("GET", "/healthz", &[], "").await;
    assert_eq!(status, 503, "the stream holds the one permit");
    let body = "x".repeat(BIG);
    for _ in 0..HELD {
        queues.send(&q, &body, None).await.unwrap();
    }
    // Never read: only ending the connection gives the permit back.
    let started = Instant::now();
    loop {
        let (status, _) = gw.http("GET", "/healthz", &[], "").await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a stream that does not read still holds its connection permit 10 s after its \
             messages were sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slow_clients = metric(&gw, "wsmq_slow_clients_total").await;
    assert!(
        slow_clients >= 1.0,
        "ended as a slow client: {slow_clients}"
    );
}

#[tokio::test]
async fn a_drain_ends_the_stream_with_1012_acked_stay_acked_and_unacked_come_back_elsewhere() {
    const DRAIN: Duration = Duration::from_secs(2);
    let redis = RedisServer::start();
    let node = |name: &'static str| {
        move |c: &mut wsmq_gateway::Config| {
            c.node_id = format!("{name}-{}", unique());
            c.limits.window = 4;
            c.listen.drain_timeout = DRAIN;
        }
    };
    let a = TestGateway::builder()
        .redis(&redis)
        .config(node("a"))
        .start()
        .await;
    let b = TestGateway::builder()
        .redis(&redis)
        .ns(&a.ns)
        .config(node("b"))
        .start()
        .await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&a, &user).await;
    let queues = a.queues().await;
    for n in 0..4 {
        queues.send(&user, &format!("m{n}"), None).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stream.message().await.json());
    }
    let ack = |m: &serde_json::Value| json!({"queue": user, "id": m["id"]});
    let (status, _) = post(&a, "/api/ack", &user, &ack(&held[0])).await;
    assert_eq!(status, 200);
    let addr = a.addr;
    let started = Instant::now();
    let stop = tokio::spawn(a.shutdown());
    // Acks are still taken while the drain waits for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = post_at(addr, "/api/ack", &user, &ack(&held[1])).await;
    assert_eq!(status, 200, "an ack during the drain: {body}");
    // Two stay unacked: after the ack grace the stream is closed, with 1012, then ends.
    let close = loop {
        let event = stream
            .next_within(DRAIN + Duration::from_secs(1))
            .await
            .expect("a close event within the drain timeout");
        if event.event == "close" {
            break event.json();
        }
        assert_ne!(event.event, "", "no new delivery in a drain: {event:?}");
    };
    assert_eq!(close["code"], 1012, "{close}");
    assert!(
        stream.next_within(RECV_TIMEOUT).await.is_none(),
        "the stream ends after its close event"
    );
    let ended = started.elapsed();
    assert!(
        ended < DRAIN + Duration::from_secs(1),
        "ended after {ended:?}"
    );
    stop.await.unwrap().unwrap();
    // A consumer on the other node gets the two unacked ones at once (vt 30 s), each a
    // redelivery, and never the two acked ones.
    let mut other = own_stream(&b, &user).await;
    let mut back = BTreeSet::new();
    for _ in 0..2 {
        let frame = other.message().await.json();
        assert_eq!(frame["rc"], 2, "{frame}");
        back.insert(frame["message"].as_str().unwrap().to_owned());
    }
    let unacked: BTreeSet<String> = held[2..]
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(back, unacked);
    other.expect_no_message(Duration::from_secs(1)).await;
}

/// The handshake timeout of the hostile-input tests: hyper's header read timeout, and the
/// time an ack's body has to arrive.
const HANDSHAKE: Duration = Duration::from_millis(500);
/// What a cut may take past [`HANDSHAKE`] on a busy machine.
const SLACK: Duration = Duration::from_millis(1500);

fn short_handshake(c: &mut wsmq_gateway::Config) {
    c.listen.handshake_timeout = HANDSHAKE;
}

#[tokio::test]
async fn request_headers_sent_a_byte_at_a_time_are_cut_at_the_handshake_timeout() {
    let gw = TestGateway::builder().config(short_handshake).start().await;
    let user = format!("u{}", unique());
    let auth = bearer(&user);
    let sse = format!(
        "GET /sse?queue={user}&token={} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
        token(&user)
    );
    let body = json!({"queue": user, "id": "x".repeat(32)}).to_string();
    let ack = format!(
        "POST /api/ack HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // 30 ms a byte: each request takes longer to send in full than the test waits.
    let gap = Duration::from_millis(30);
    for (name, request) in [("GET /sse", sse), ("POST /api/ack", ack)] {
        assert!(gap * request.len() as u32 > 2 * (HANDSHAKE + SLACK));
        let (closed, answer) =
            trickle(gw.addr, b"", request.into_bytes(), gap, HANDSHAKE + SLACK).await;
        let Some(closed) = closed else {
            panic!(
                "{name}: headers trickling in still open after {:?}; got {:?}",
                HANDSHAKE + SLACK,
                String::from_utf8_lossy(&answer)
            );
        };
        assert!(
            closed >= HANDSHAKE - Duration::from_millis(50),
            "{name}: closed after {closed:?}, before the timeout"
        );
        // Dropped, or told so first.
        assert!(
            matches!(status_of(&answer), None | Some(408)),
            "{name}: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert!(metric(&gw, "wsmq_handshake_timeouts_total").await >= 2.0);
}

/// An ack request whose headers are complete and whose body, of `length` bytes, is to come.
fn ack_head(user: &str, length: usize) -> String {
    format!(
        "POST /api/ack HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         content-type: application/json\r\ncontent-length: {length}\r\n\r\n",
        bearer(user)
    )
}

#[tokio::test]
async fn an_ack_body_that_trickles_or_never_ends_is_answered_408_in_bounded_time() {
    let gw = TestGateway::builder().config(short_handshake).start().await;
    let user = format!("u{}", unique());
    let body = json!({"queue": user, "id": "x".repeat(32)}).to_string();
    let head = ack_head(&user, body.len());
    assert!(Duration::from_millis(50) * body.len() as u32 > HANDSHAKE + SLACK);
    // The head at once, then a few bytes of the body and nothing more.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body.as_bytes()[..5]).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(HANDSHAKE + SLACK, tcp.read_to_end(&mut answer))
        .await
        .expect("a stalled body is answered within the timeout")
        .ok();
    let waited = started.elapsed();
    assert!(
        waited >= HANDSHAKE - Duration::from_millis(50),
        "{waited:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), Some(408), "{text}");
    assert!(text.contains(r#""error":"request_timeout""#), "{text}");
    // The head at once, then the body a byte every 50 ms: 3 s in all, past the timeout.
    let (closed, answer) = trickle(
        gw.addr,
        head.as_bytes(),
        body.clone().into_bytes(),
        Duration::from_millis(50),
        HANDSHAKE + SLACK,
    )
    .await;
    let closed = closed.expect("a trickling body is answered within the timeout");
    assert!(
        closed >= HANDSHAKE - Duration::from_millis(50),
        "{closed:?}"
    );
    assert_eq!(
        status_of(&answer),
        Some(408),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The node still takes acks that arrive whole.
    let (status, _) = post(
        &gw,
        "/api/ack",
        &user,
        &json!({"queue": user, "id": "x".repeat(32)}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn two_hundred_stalled_requests_are_all_closed_by_the_deadline() {
    const EACH: usize = 100;
    let gw = TestGateway::builder().config(short_handshake).start().await;
    let user = format!("u{}", unique());
    let partial_sse = format!("GET /sse?queue={user}&token={}", token(&user));
    let body = json!({"queue": user, "id": "x".repeat(32)}).to_string();
    let stalled_ack = format!("{}{}", ack_head(&user, body.len()), &body[..5]);
    let started = Instant::now();
    let mut open = Vec::with_capacity(2 * EACH);
    for request in [partial_sse, stalled_ack] {
        for _ in 0..EACH {
            let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            open.push(tcp);
        }
    }
    let opened = started.elapsed();
    // Each was opened by `started + opened`: all closed within the timeout and slack of that.
    let deadline = tokio::time::Instant::now() + HANDSHAKE + SLACK + SLACK;
    let answers = futures_util::future::join_all(open.into_iter().map(|mut tcp| async move {
        let mut answer = Vec::new();
        match tokio::time::timeout_at(deadline, tcp.read_to_end(&mut answer)).await {
            Ok(_) => Some(answer),
            Err(_) => None,
        }
    }))
    .await;
    let still_open = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(
        still_open,
        0,
        "{still_open} of {} stalled connections still open {:?} after they were all opened \
         (in {opened:?})",
        2 * EACH,
        HANDSHAKE + SLACK + SLACK
    );
    let timed_out_bodies = answers[EACH..]
        .iter()
        .filter(|a| a.as_deref().and_then(status_of) == Some(408))
        .count();
    assert_eq!(
        timed_out_bodies, EACH,
        "every stalled ack body is answered 408"
    );
    assert!(metric(&gw, "wsmq_handshake_timeouts_total").await >= EACH as f64);
    // And the node still serves.
    let (status, _) = gw.http("GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
}
