//! Limits: connection cap (503), idle timeout, slow clients (4008).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestGateway, now, token_with};
use wsmq_proto::{Claims, Grants};

#[tokio::test]
async fn connections_over_the_limit_get_a_503_with_a_json_body() {
    let gw = TestGateway::builder()
        .config(|c| c.max_connections = 1)
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
        .config(|c| c.ping_interval = Duration::from_millis(200))
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
        .config(|c| c.outbound_buffer = 16)
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
    let engine = gw.engine().await;
    let body = "x".repeat(16 * 1024);
    // More than the socket buffers hold, so the writer blocks and the queue fills.
    for _ in 0..1000 {
        engine.publish("firehose", &body).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(c.close_code().await, Some(4008));
    let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
    assert!(metrics.contains("wsmq_slow_clients_total 1"), "{metrics}");
}
