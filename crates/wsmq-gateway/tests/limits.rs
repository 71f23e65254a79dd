//! Limits: connection cap (503), idle timeout, handshake timeout, inbound rate limit
//! (`rate_limited`, 4029), slow clients (4008, their messages redelivered elsewhere, the
//! connection of one that reads nothing at all reset).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestGateway, now, token_with};
use wsmq_proto::{Claims, Grants};

#[tokio::test]
async fn connections_over_the_limit_get_a_503_with_a_json_body() {
    let gw = TestGateway::builder()
        .config(|c| c.listen.max_connections = 1)
        .start()
        .await;
    // The builder's start-up probe may still hold the one permit for a moment.
    let t = support::token("alice");
    let mut held = None;
    for _ in 0..100 {
        if let Ok(c) = gw.connect("/ws", &[("x-token", &t)], None).await {
            held = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = held.expect("one connection is admitted");
    let (status, body) = gw.http("GET", "/healthz", &[], "").await;
    assert_eq!(status, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "unavailable");
    held.close().await;
    // The permit comes back once the session has ended.
    let mut metrics = String::new();
    for _ in 0..100 {
        let (status, body) = gw.http("GET", "/metrics", &[], "").await;
        if status == 200 {
            metrics = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wsmq_connections_refused_total "))
        .and_then(|n| n.parse().ok())
        .expect("the refused counter");
    assert!(refused >= 1, "{metrics}");
}

#[tokio::test]
async fn a_silent_client_is_closed_and_a_live_one_is_not() {
    let gw = TestGateway::builder()
        .config(|c| c.limits.ping_interval = Duration::from_millis(200))
        .start()
        .await;
    let (mut live, _) = gw.v1("alice").await;
    let (mut silent, _) = gw.v1("bob").await;
    // Reading answers the server's pings (tungstenite replies with pongs by itself).
    live.expect_silence(Duration::from_millis(800)).await;
    assert_eq!(live.request(json!({"op": "ping"})).await["op"], "pong");
    // Not reading for that long means no pongs: the server gave up on it.
    assert_eq!(silent.close_code().await, Some(1008));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_with_4008() {
    let gw = TestGateway::builder()
        .config(|c| c.limits.outbound_buffer = 16)
        .start()
        .await;
    let mut claims = Claims::new("slow", now() + 600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["firehose".into()],
        ..Grants::default()
    });
    let t = token_with(claims);
    let mut c = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    c.recv_json().await;
    let r = c
        .request(json!({"op": "subscribe", "channel": "firehose"}))
        .await;
    assert_eq!(r["op"], "ok");
    let broker = gw.engine().await.broker;
    let body = "x".repeat(16 * 1024);
    // More than the socket buffers hold, so the writer blocks and the queue fills.
    for _ in 0..1000 {
        broker.publish("firehose", &body).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(c.close_code().await, Some(4008));
    let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
    assert!(metrics.contains("wsmq_slow_clients_total 1"), "{metrics}");
}

/// A v1 client closed as slow whose close frame cannot be written (it reads nothing at all)
/// has its connection reset: otherwise the kernel would keep the socket, full of frames, as an
/// orphan retrying for minutes after the session ended.
#[tokio::test]
async fn a_client_that_never_reads_is_reset_after_its_4008() {
    use tokio_tungstenite::MaybeTlsStream;
    let gw = TestGateway::builder()
        .config(|c| c.limits.outbound_buffer = 16)
        .start()
        .await;
    let mut claims = Claims::new("stuck", now() + 600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["firehose".into()],
        ..Grants::default()
    });
    let mut c = gw.v1_small_buffer(&token_with(claims), 4096).await;
    c.recv_json().await;
    let r = c
        .request(json!({"op": "subscribe", "channel": "firehose"}))
        .await;
    assert_eq!(r["op"], "ok");
    let broker = gw.engine().await.broker;
    let body = "x".repeat(16 * 1024);
    // From here on the client reads nothing, not even the close frame.
    for _ in 0..1000 {
        broker.publish("firehose", &body).await.unwrap();
        tokio::task::yield_now().await;
    }
    let MaybeTlsStream::Plain(tcp) = c.ws.get_ref() else {
        unreachable!("a plain socket")
    };
    // The session's close timeouts (1 s each) and slack for a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    let err = loop {
        if let Some(err) = tcp.take_error().unwrap() {
            break err;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the connection of a client closed as slow is still open 6 s after the flood"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
    assert!(metrics.contains("wsmq_slow_clients_total 1"), "{metrics}");
    assert!(
        metrics.contains("wsmq_connections_reset_total 1"),
        "{metrics}"
    );
}

/// The value of an unlabelled counter or gauge in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

#[tokio::test]
async fn a_silent_or_half_sent_handshake_is_dropped_after_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::builder()
        .config(|c| c.listen.handshake_timeout = Duration::from_millis(300))
        .start()
        .await;
    let partial = b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n".as_slice();
    for sent in [b"".as_slice(), partial] {
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        // The gateway closes the socket (EOF, maybe after a 408) instead of waiting forever.
        tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut buf))
            .await
            .expect("dropped within 3 s")
            .ok();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
    }
    let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
    assert!(
        metric(&metrics, "wsmq_handshake_timeouts_total") >= 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn frames_over_the_rate_get_rate_limited_and_a_flood_is_closed_with_4029() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.rate_limit = 5;
            c.limits.rate_burst = 5;
        })
        .start()
        .await;
    let (mut c, _) = gw.v1("alice").await;
    for n in 0..5 {
        assert_eq!(
            c.request(json!({"op": "ping", "ref": n})).await["op"],
            "pong"
        );
    }
    // The burst is spent: the next frame is refused, with its ref, and the session goes on.
    let refused = c.request(json!({"op": "ping", "ref": 99})).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["ref"], 99);
    // Far over the limit, without pause: after ten bursts' worth of refusals, closed.
    let mut sent = 0;
    for n in 0..1000 {
        use futures_util::SinkExt;
        let frame = json!({"op": "ping", "ref": n}).to_string();
        if c.ws
            .send(tokio_tungstenite::tungstenite::Message::text(frame))
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    assert!(sent >= 50, "{sent}");
    assert_eq!(c.close_code().await, Some(4029));
    let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
    assert!(
        metric(&metrics, "wsmq_rate_limited_total") >= 50.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("wsmq_sessions_closed_total{code=\"4029\"} 1"),
        "{metrics}"
    );
    // Other clients are unaffected.
    let (mut other, _) = gw.v1("bob").await;
    assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");
}

#[tokio::test]
async fn a_slow_client_is_closed_with_4008_and_its_messages_go_to_another_client() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.outbound_buffer = 16;
            c.limits.window = 8;
        })
        .start()
        .await;
    let q = format!("q{}", support::unique());
    let mut claims = Claims::new(&q, now() + 600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["firehose-*".into()],
        ..Grants::default()
    });
    let t = token_with(claims);
    let firehose = format!("firehose-{q}");
    // A small, fixed receive buffer: what the client leaves unread holds the gateway back.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gw.addr).await.unwrap();
    let mut request = gw.ws_url("/ws").into_client_request().unwrap();
    request.headers_mut().insert("x-token", t.parse().unwrap());
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "wsmq.v1".parse().unwrap());
    let (mut slow, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let engine = gw.engine().await;
    engine.queues.ensure_queue(&q).await.unwrap();
    for n in 0..8 {
        engine
            .queues
            .send(&q, &format!("m{n}"), None)
            .await
            .unwrap();
    }
    assert_eq!(next_json(&mut slow).await["op"], "welcome");
    for target in [json!({"queue": q}), json!({"channel": firehose})] {
        let mut frame = json!({"op": "subscribe"});
        frame
            .as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        slow.send(frame.to_string().into()).await.unwrap();
    }
    // The 8 queue messages arrive (and stay unacknowledged) ...
    let mut got = 0;
    while got < 8 {
        if next_json(&mut slow).await["op"] == "message" {
            got += 1;
        }
    }
    // ... then a competing consumer on the same queue gets nothing: all 8 are in flight.
    let (mut other, _) = gw.v1(&q).await;
    other.request(json!({"op": "subscribe", "queue": q})).await;
    other.expect_silence(Duration::from_millis(300)).await;
    // The slow client stops reading while its channel keeps going: closed with 4008.
    let body = "x".repeat(16 * 1024);
    for _ in 0..1000 {
        engine.broker.publish(&firehose, &body).await.unwrap();
        tokio::task::yield_now().await;
    }
    // Its 8 unacked messages are handed back at once (not after the 30 s vt): the other
    // consumer gets them, each a redelivery.
    let mut redelivered = std::collections::BTreeSet::new();
    while redelivered.len() < 8 {
        let m = other.recv_json().await;
        assert_eq!(m["op"], "message", "{m}");
        assert_eq!(m["rc"], 2, "{m}");
        redelivered.insert(m["message"].as_str().unwrap().to_owned());
    }
    // The session itself ends once its close frame is out or timed out (the client is not
    // reading), after the hand-back: wait for it to be counted.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = gw.http("GET", "/metrics", &[], "").await.1;
        if metric(&metrics, "wsmq_slow_clients_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&metrics, "wsmq_slow_clients_total"),
        1.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "wsmq_redeliveries_total") >= 8.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("wsmq_sessions_closed_total{code=\"4008\"} 1"),
        "{metrics}"
    );
    drop(slow);
}

/// The next frame of a raw client, as JSON.
async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(ws))
        .await
        .expect("a frame within 5 s")
        .expect("the stream is open")
        .expect("a good frame");
    serde_json::from_str(frame.into_text().unwrap().as_str()).unwrap()
}
