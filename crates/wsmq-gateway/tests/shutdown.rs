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
    let a = TestGateway::builder().redis(&redis).start().await;
    let q = format!("q{}", unique());
    let (mut c, _) = a.v1(&q).await;
    c.request(json!({"op": "subscribe", "queue": q})).await;
    let engine = a.engine().await;
    engine.send(&q, "in flight", None).await.unwrap();
    assert_eq!(c.recv_json().await["rc"], 1);
    a.shutdown().await.unwrap();
    // Released at shutdown: visible again at once (not after the 30 s vt), with rc 2 next.
    let got = engine.receive(&q, 1, None).await.unwrap().deliveries;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rc, 2);
}
