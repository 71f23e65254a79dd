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
