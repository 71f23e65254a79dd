//! Graceful drain of a real `wsmq-gateway` process on SIGTERM and SIGINT: `/readyz` turns 503,
//! the node stops taking messages but waits for the acks of what its clients hold, closes
//! sessions with 1012, and exits 0 within `--drain-timeout`; nothing is lost.

mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{
    RedisServer, TestGateway,
    process::{Process, try_status},
    token, unique,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A v1 session of `user` on `addr`, past its welcome.
async fn v1(addr: SocketAddr, user: &str) -> Ws {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("x-token", token(user).parse().unwrap());
    headers.insert("sec-websocket-protocol", "wsmq.v1".parse().unwrap());
    let (mut ws, _) = connect_async(request).await.expect("v1 handshake");
    assert_eq!(next(&mut ws).await.unwrap()["op"], "welcome");
    ws
}

/// The next text frame as JSON; `Err(close code)` when the session ends.
async fn next(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s");
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(close))) => return Err(close.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

#[tokio::test]
async fn sigterm_mid_stream_loses_nothing_and_exits_0_within_the_deadline() {
    const MESSAGES: usize = 60;
    const ACK_DELAY: Duration = Duration::from_millis(150);
    let redis = RedisServer::start();
    // Node B, in process; node A, the process to stop, on the same namespace.
    let b = TestGateway::builder().redis(&redis).start().await;
    let mut a = Process::start(&[
        "--redis-url",
        &redis.url(),
        "--rsmq-ns",
        &b.ns,
        "--drain-timeout",
        "4s",
        "--window",
        "4",
    ])
    .await;
    let q = format!("drain{}", unique());
    let engine = b.queues().await;
    engine.ensure_queue(&q).await.unwrap();
    for n in 0..MESSAGES {
        engine.send(&q, &format!("m{n}"), None).await.unwrap();
    }
    // A consumer on A that takes its time over each ack.
    let mut ws = v1(a.public, &q).await;
    send(&mut ws, json!({"op": "subscribe", "queue": q})).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut acked_in_drain = 0;
    let mut signalled = None;
    let readyz = Arc::new(Mutex::new(Vec::new()));
    let close = loop {
        let frame = match next(&mut ws).await {
            Ok(frame) => frame,
            Err(code) => break code,
        };
        match frame["op"].as_str() {
            Some("message") => {
                *seen
                    .entry(frame["message"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                tokio::time::sleep(ACK_DELAY).await;
                let id = frame["id"].clone();
                send(
                    &mut ws,
                    json!({"op": "ack", "queue": q, "id": id, "ref": "a"}),
                )
                .await;
            }
            Some("ok") if frame["ref"] == "a" && signalled.is_some() => acked_in_drain += 1,
            Some("error") => panic!("error during the drain: {frame}"),
            _ => {}
        }
        if signalled.is_none() && seen.len() >= 6 {
            a.signal("TERM");
            signalled = Some(Instant::now());
            // Health checks during the drain, on the admin port (it answers to the end).
            let (admin, readyz) = (a.admin, Arc::clone(&readyz));
            tokio::spawn(async move {
                while let Some(status) = try_status(admin, "/readyz").await {
                    readyz.lock().unwrap().push(status);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            });
        }
    };
    let signalled = signalled.expect("SIGTERM was sent");
    assert_eq!(close, Some(1012), "sessions close with 1012");
    let code = a.exit_code(Duration::from_secs(6)).await;
    let drain = signalled.elapsed();
    assert_eq!(code, Some(0));
    assert!(
        drain < Duration::from_secs(5),
        "exit {drain:?} after SIGTERM (deadline 4 s)"
    );
    assert!(
        readyz.lock().unwrap().contains(&503),
        "/readyz was never 503 during the drain: {:?}",
        readyz.lock().unwrap()
    );
    // What the client held when the drain began was acked during it, not handed back.
    assert!(acked_in_drain >= 1, "no ack was taken during the drain");
    // The client reconnects to B and gets the rest.
    let mut ws = v1(b.addr, &q).await;
    send(&mut ws, json!({"op": "subscribe", "queue": q})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "only {} of {MESSAGES} delivered",
            seen.len()
        );
        let frame = next(&mut ws).await.expect("B keeps the session");
        if frame["op"] == "message" {
            *seen
                .entry(frame["message"].as_str().unwrap().to_owned())
                .or_default() += 1;
            send(&mut ws, json!({"op": "ack", "queue": q, "id": frame["id"]})).await;
        }
    }
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "drain: exit 0 after {drain:?}; {acked_in_drain} acks taken during the drain; \
         {MESSAGES} messages delivered, {duplicates} duplicates"
    );
    // Everything acked: nothing is left in the queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = engine.receive(&q, 100, Some(0)).await.unwrap().messages;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn sigint_closes_sessions_with_1012_and_exits_0() {
    let mut a = Process::start(&["--drain-timeout", "2s"]).await;
    let mut ws = v1(a.public, "alice").await;
    send(&mut ws, json!({"op": "subscribe", "queue": "alice"})).await;
    assert_eq!(next(&mut ws).await.unwrap()["op"], "ok");
    a.signal("INT");
    let started = Instant::now();
    assert_eq!(next(&mut ws).await.unwrap_err(), Some(1012));
    assert_eq!(a.exit_code(Duration::from_secs(4)).await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
