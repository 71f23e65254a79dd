//! Scenario 3: channel fan-out across processes. A message published through node B, by
//! `POST /api/publish` and by a v1 client, reaches the v1 subscribers on node A and on node B.

use std::time::Duration;

use serde_json::{Value, json};
use wsmq_proto::{Grants, keys};

use crate::{
    cluster::{API_KEY, Cluster, Gateway},
    store::{self, wait_subscribers},
    user,
    ws::{Ws, jwt},
};

#[tokio::test]
#[ignore = "two gateway processes + node: run by cargo xtask e2e"]
async fn a_channel_message_published_through_node_b_reaches_subscribers_on_a_and_b() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("channels", &[]).await;
    let channel = format!("news-{}", std::process::id());
    let mut on_a = subscriber(&cluster.a, &user("reader-a"), &channel).await;
    let mut on_b = subscriber(&cluster.b, &user("reader-b"), &channel).await;
    // Both nodes' Redis subscriptions are live (one per node), so a publish reaches both.
    let mut conn = store::connect(&cluster.redis_url).await;
    wait_subscribers(&mut conn, &keys::channel(&channel), 2).await;

    // Through the HTTP API of node B.
    let body = json!({"channel": channel, "message": "from the api on B"}).to_string();
    let auth = format!("apikey {API_KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let (status, reply) = cluster
        .b
        .http("POST", "/api/publish", &headers, &body)
        .await
        .expect("POST /api/publish");
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["receivers"], 2, "both nodes listen: {reply}");
    for ws in [&mut on_a, &mut on_b] {
        let frame = ws.json().await;
        let want = json!({"op": "message", "channel": channel, "message": "from the api on B"});
        assert_eq!(frame, want, "{}", ws.label);
    }

    // A wrong key publishes nothing.
    let wrong = [("authorization", "apikey not-the-key")];
    let (status, _) = cluster
        .b
        .http("POST", "/api/publish", &wrong, &body)
        .await
        .expect("POST /api/publish");
    assert_eq!(status, 401);

    // Through a v1 client on node B, allowed to publish there.
    let grants = Grants {
        publish: vec![format!("channel:{channel}")],
        ..Grants::default()
    };
    let publisher_id = user("publisher");
    let (mut publisher, _) =
        Ws::v1(&cluster.b, &publisher_id, &jwt(&publisher_id, Some(grants))).await;
    let request = json!({"op": "publish", "channel": channel, "message": "from v1 on B", "ref": 9});
    assert_eq!(
        publisher.request(&request).await,
        json!({"op": "ok", "ref": 9})
    );
    for ws in [&mut on_a, &mut on_b] {
        let frame = ws.json().await;
        let want = json!({"op": "message", "channel": channel, "message": "from v1 on B"});
        assert_eq!(frame, want, "{}", ws.label);
    }

    // Exactly once each, and the publisher (not subscribed) gets nothing.
    for ws in [&mut on_a, &mut on_b, &mut publisher] {
        ws.expect_silence(Duration::from_millis(300)).await;
    }
    for ws in [on_a, on_b, publisher] {
        ws.close().await;
    }
}

/// A v1 session of `user` on `gateway`, allowed to and subscribed to `channel`.
async fn subscriber(gateway: &Gateway, user: &str, channel: &str) -> Ws {
    let grants = Grants {
        subscribe: vec![channel.to_owned()],
        ..Grants::default()
    };
    let (mut ws, _) = Ws::v1(gateway, user, &jwt(user, Some(grants))).await;
    let reply = ws
        .request(&json!({"op": "subscribe", "channel": channel, "ref": 1}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 1}), "{}", ws.label);
    ws
}
