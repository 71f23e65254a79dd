//! The v1 dialect: welcome, refs, ok/error replies, every op, malformed frames.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use support::{TestGateway, unique};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn welcome_comes_first_and_ping_echoes_the_ref() {
    let gw = TestGateway::builder().start().await;
    let (mut c, welcome) = gw.v1("alice").await;
    assert_eq!(welcome["node"], "test-node");
    assert_eq!(
        c.request(json!({"op": "ping", "ref": 7})).await,
        json!({"op": "pong", "ref": 7})
    );
    assert_eq!(
        c.request(json!({"op": "ping", "ref": "abc"})).await,
        json!({"op": "pong", "ref": "abc"})
    );
    assert_eq!(
        c.request(json!({"op": "ping"})).await,
        json!({"op": "pong"})
    );
}

#[tokio::test]
async fn malformed_frames_get_invalid_errors_and_the_session_survives() {
    let gw = TestGateway::builder().start().await;
    let (mut c, _) = gw.v1("alice").await;
    for bad in [
        "not json",
        "[]",
        "{}",
        r#"{"op":42}"#,
        r#"{"op":"subscribe","ref":3}"#,
    ] {
        c.send_text(bad).await;
        let reply = c.recv_json().await;
        assert_eq!(reply["op"], "error", "{bad} -> {reply}");
        assert_eq!(reply["code"], "invalid", "{bad} -> {reply}");
    }
    c.send_text(r#"{"op":"subscribe","queue":"bad name!","ref":9}"#)
        .await;
    let reply = c.recv_json().await;
    assert_eq!(
        (reply["code"].as_str(), reply["ref"].as_i64()),
        (Some("invalid"), Some(9))
    );
    c.send_text(r#"{"op":"teleport","ref":1}"#).await;
    let reply = c.recv_json().await;
    assert_eq!(reply["code"], "invalid");
    assert!(
        reply["message"].as_str().unwrap().contains("teleport"),
        "{reply}"
    );
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(c.recv_json().await["code"], "invalid");
    assert_eq!(
        c.request(json!({"op": "ping", "ref": 1})).await["op"],
        "pong"
    );
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    let gw = TestGateway::builder().start().await;
    let (mut c, _) = gw.v1("alice").await;
    let big = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(70_000));
    c.send_text(&big).await;
    assert_eq!(c.close_code().await, Some(1009));
}

#[tokio::test]
async fn subscribe_ack_nack_unsubscribe_round_trip() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    let ok = c
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(ok, json!({"op": "ok", "ref": 1}));
    let sent = c
        .request(json!({"op": "publish", "queue": user, "message": "m1", "ref": 2}))
        .await;
    assert_eq!(sent["op"], "ok");
    let id = sent["id"].as_str().unwrap().to_owned();
    let msg = c.recv_json().await;
    assert_eq!(msg["op"], "message");
    assert_eq!(
        (
            msg["queue"].as_str(),
            msg["id"].as_str(),
            msg["message"].as_str()
        ),
        (Some(user.as_str()), Some(id.as_str()), Some("m1"))
    );
    assert_eq!(msg["rc"], 1);
    assert!(msg["sent"].as_u64().unwrap() > 1_600_000_000_000);
    // nack with delay 0 → delivered again with rc 2.
    let r = c
        .request(json!({"op": "nack", "queue": user, "id": id, "ref": 3}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 3}));
    let again = c.recv_json().await;
    assert_eq!(
        (again["id"].as_str(), again["rc"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": id, "ref": 4}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 4}));
    // Acking it again: no longer in flight.
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": id, "ref": 5}))
        .await;
    assert_eq!(
        (r["code"].as_str(), r["ref"].as_i64()),
        (Some("not_found"), Some(5))
    );
    let r = c
        .request(json!({"op": "unsubscribe", "queue": user, "ref": 6}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 6}));
    let r = c
        .request(json!({"op": "unsubscribe", "queue": user, "ref": 7}))
        .await;
    assert_eq!(r["code"], "not_found");
    assert_eq!(gw.memory.as_ref().unwrap().queue_len(&user), 0);
}

#[tokio::test]
async fn acking_a_message_never_delivered_is_not_found() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    let fake = "abcdefghijklmnopqrstuvwxyz012345";
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": fake, "ref": 1}))
        .await;
    assert_eq!(r["code"], "not_found", "not subscribed: {r}");
    c.request(json!({"op": "subscribe", "queue": user})).await;
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": fake, "ref": 2}))
        .await;
    assert_eq!(r["code"], "not_found", "subscribed, never delivered: {r}");
}

#[tokio::test]
async fn consuming_another_users_queue_is_forbidden_unless_open_or_granted() {
    let gw = TestGateway::builder().start().await;
    let (mut c, _) = gw.v1("mallory").await;
    let r = c
        .request(json!({"op": "subscribe", "queue": "alice", "ref": 1}))
        .await;
    assert_eq!(
        (r["op"].as_str(), r["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    let r = c
        .request(json!({"op": "subscribe", "channel": "news", "ref": 2}))
        .await;
    assert_eq!(r["code"], "forbidden");

    let open = TestGateway::builder()
        .config(|c| c.auth.open = true)
        .start()
        .await;
    let (mut c, _) = open.v1("mallory").await;
    let r = c
        .request(json!({"op": "subscribe", "queue": "alice", "ref": 1}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 1}));
}

#[tokio::test]
async fn grants_in_the_wsmq_claim_allow_globs() {
    let gw = TestGateway::builder().start().await;
    let mut claims = wsmq_proto::Claims::new("worker", support::now() + 600);
    claims.wsmq = Some(wsmq_proto::Grants {
        consume: vec!["jobs-*".into()],
        subscribe: vec!["room-*".into()],
        publish: vec!["queue:jobs-*".into(), "channel:room-*".into()],
    });
    let t = support::token_with(claims);
    let mut c = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    c.recv_json().await;
    let r = c
        .request(json!({"op": "subscribe", "queue": "jobs-1", "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok");
    let r = c
        .request(json!({"op": "subscribe", "queue": "other", "ref": 2}))
        .await;
    assert_eq!(r["code"], "forbidden");
    let r = c
        .request(json!({"op": "subscribe", "channel": "room-1", "ref": 3}))
        .await;
    assert_eq!(r["op"], "ok");
    let r = c
        .request(json!({"op": "publish", "channel": "lobby", "message": "x", "ref": 4}))
        .await;
    assert_eq!(r["code"], "forbidden");
}

#[tokio::test]
async fn subscription_limit_is_enforced() {
    let gw = TestGateway::builder()
        .config(|c| c.limits.max_subscriptions = 1)
        .start()
        .await;
    let mut claims = wsmq_proto::Claims::new("w", support::now() + 600);
    claims.wsmq = Some(wsmq_proto::Grants {
        consume: vec!["*".into()],
        ..Default::default()
    });
    let t = support::token_with(claims);
    let mut c = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    c.recv_json().await;
    assert_eq!(
        c.request(json!({"op": "subscribe", "queue": "a"})).await["op"],
        "ok"
    );
    let r: Value = c.request(json!({"op": "subscribe", "queue": "b"})).await;
    assert_eq!(r["code"], "invalid");
    c.expect_silence(Duration::from_millis(100)).await;
}
