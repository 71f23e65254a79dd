//! Shutdown: sessions close with 1012, readiness drops, unacked messages come back.

mod support;

use serde_json::json;
use support::{RedisServer, TestGateway, unique};

#[tokio::test]
async fn drain_closes_sessions_with_1012() {
    let gw = TestGateway::builder().start().await;
    let (mut c, _) = gw.v1("alice").await;
    let mut legacy = gw.legacy("bob").await;
    let stop = tokio::spawn(gw.shutdown());
    assert_eq!(c.close_code().await, Some(1012));
    assert_eq!(legacy.close_code().await, Some(1012));
    stop.await.unwrap().unwrap();
}

#[tokio::test]
async fn unacked_messages_are_handed_back_on_shutdown() {
    let redis = RedisServer::start();
    // The client never acks: after the ack grace (1 s of 2 s) the message is handed back.
    let a = TestGateway::builder()
        .redis(&redis)
        .config(|c| c.listen.drain_timeout = std::time::Duration::from_secs(2))
        .start()
        .await;
    let q = format!("q{}", unique());
    let (mut c, _) = a.v1(&q).await;
    c.request(json!({"op": "subscribe", "queue": q})).await;
    let engine = a.queues().await;
    engine.send(&q, "in flight", None).await.unwrap();
    assert_eq!(c.recv_json().await["rc"], 1);
    a.shutdown().await.unwrap();
    // Released at shutdown: visible again at once (not after the 30 s vt), with rc 2 next.
    let got = engine.receive(&q, 1, None).await.unwrap().messages;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rc, 2);
}

#[tokio::test]
async fn drain_stops_delivering_but_waits_for_acks_of_in_flight_messages() {
    use std::time::{Duration, Instant};
    let gw = TestGateway::builder()
        .config(|c| {
            c.listen.drain_timeout = Duration::from_secs(6);
            c.limits.window = 2;
        })
        .start()
        .await;
    let q = format!("q{}", unique());
    let engine = gw.queues().await;
    engine.ensure_queue(&q).await.unwrap();
    for n in 0..5 {
        engine.send(&q, &format!("m{n}"), None).await.unwrap();
    }
    let (mut c, _) = gw.v1(&q).await;
    let (mut idle, _) = gw.v1("idle").await;
    c.request(json!({"op": "subscribe", "queue": q})).await;
    let held = [c.recv_json().await, c.recv_json().await];
    let addr = gw.addr;
    let started = Instant::now();
    let stop = tokio::spawn(gw.shutdown());
    // A session holding nothing closes at once.
    assert_eq!(idle.close_code().await, Some(1012));
    // Not ready, and no new sessions, while the drain waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = support::http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(status, 503);
    // The holder may still ack what it holds (and gets no new messages for it) ...
    for m in &held {
        let reply = c
            .request(json!({"op": "ack", "queue": q, "id": m["id"], "ref": 1}))
            .await;
        assert_eq!(reply, json!({"op": "ok", "ref": 1}));
    }
    // ... and once it holds nothing, it is closed with 1012 well before the deadline.
    assert_eq!(c.close_code().await, Some(1012));
    stop.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The two acked messages are gone; the three never delivered wait in the queue.
    let left = engine.receive(&q, 10, None).await.unwrap().messages;
    let bodies: Vec<_> = left.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(bodies, ["m2", "m3", "m4"]);
    assert!(left.iter().all(|d| d.rc == 1));
}
