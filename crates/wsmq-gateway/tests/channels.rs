//! Channels: at-most-once fan-out to every subscribed session, on one node and across nodes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, RedisServer, TestGateway, now, token_with, unique};
use wsmq_proto::{Claims, Grants};

async fn member(gw: &TestGateway, user: &str) -> Client {
    let mut claims = Claims::new(user, now() + 600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["room-*".into()],
        publish: vec!["channel:room-*".into()],
        ..Grants::default()
    });
    let t = token_with(claims);
    let mut c = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(c.recv_json().await["op"], "welcome");
    c
}

async fn fan_out(gw: &TestGateway, publisher_gw: &TestGateway) {
    let room = format!("room-{}", unique());
    let mut subscribers = Vec::new();
    for i in 0..3 {
        let mut c = member(gw, &format!("m{i}")).await;
        let r = c
            .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
            .await;
        assert_eq!(r, json!({"op": "ok", "ref": 1}));
        subscribers.push(c);
    }
    let mut publisher = member(publisher_gw, "pub").await;
    let r = publisher
        .request(json!({"op": "publish", "channel": room, "message": "hi all", "ref": 2}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 2}));
    for c in &mut subscribers {
        assert_eq!(
            c.recv_text().await,
            format!(r#"{{"op":"message","channel":"{room}","message":"hi all"}}"#)
        );
    }
    // Unsubscribed sessions stop receiving.
    let r = subscribers[0]
        .request(json!({"op": "unsubscribe", "channel": room}))
        .await;
    assert_eq!(r["op"], "ok");
    publisher
        .request(json!({"op": "publish", "channel": room, "message": "second"}))
        .await;
    subscribers[0]
        .expect_silence(Duration::from_millis(200))
        .await;
    assert_eq!(subscribers[1].recv_json().await["message"], "second");
}

#[tokio::test]
async fn a_channel_message_reaches_every_local_subscriber() {
    let gw = TestGateway::builder().start().await;
    fan_out(&gw, &gw).await;
}

#[tokio::test]
async fn a_channel_message_reaches_subscribers_on_other_nodes() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let b = TestGateway::builder()
        .config(|c| c.node_id = "node-b".into())
        .redis(&redis)
        .start()
        .await;
    fan_out(&a, &b).await;
    fan_out(&a, &a).await;
}

/// A pub/sub connection whose peer vanished without closing it (here: a proxy that stops
/// forwarding) is found by the node's PING and replaced: channel messages flow again within
/// seconds. Without the check they stopped for good, wake-ups and revocations with them.
#[tokio::test]
async fn a_silent_pub_sub_connection_is_replaced() {
    let redis = RedisServer::start();
    let proxy = support::proxy::FreezingProxy::start(&redis.url()).await;
    let gw = TestGateway::builder().redis_url(proxy.url()).start().await;
    let room = format!("room-{}", unique());
    let mut alice = member(&gw, "alice").await;
    let r = alice
        .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok");
    // Published straight to Redis, past the proxy.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut direct = client.get_multiplexed_async_connection().await.unwrap();
    let publish = |body: String| {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(wsmq_proto::keys::channel(&room)).arg(body);
        cmd
    };
    // The node's SUBSCRIBE may still be on its way: publish until one arrives.
    let mut got = None;
    for i in 0..40 {
        let _: i64 = publish(format!("before {i}"))
            .query_async(&mut direct)
            .await
            .unwrap();
        if let Some(text) = alice.next_text(Duration::from_millis(100)).await {
            got = Some(text);
            break;
        }
    }
    assert!(got.is_some(), "no channel message before the freeze");

    proxy.freeze();
    let frozen_at = std::time::Instant::now();
    let mut after = None;
    while frozen_at.elapsed() < Duration::from_secs(20) {
        let _: i64 = publish("after".to_owned())
            .query_async(&mut direct)
            .await
            .unwrap();
        let text = alice.next_text(Duration::from_millis(250)).await;
        if text.is_some_and(|text| text.contains("\"after\"")) {
            after = Some(frozen_at.elapsed());
            break;
        }
    }
    let after = after.expect("no channel message within 20 s of the connection going silent");
    eprintln!("channel messages flowed again {after:?} after the freeze");
}
