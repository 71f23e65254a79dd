//! Scenario 5: a user cannot consume another user's queue, in either dialect, on either node.
//! v1 refuses the subscribe with `forbidden` and keeps the session; legacy has no error frame,
//! so the gateway closes the session with 4003 (`session/legacy.rs`). The owner's message is
//! left untouched and still reaches the owner.

use std::time::Duration;

use serde_json::json;

use crate::{
    cluster::Cluster,
    store, user,
    ws::{Ws, jwt},
};

#[tokio::test]
#[ignore = "two gateway processes + node: run by cargo xtask e2e"]
async fn a_user_cannot_consume_another_users_queue() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("authz", &[]).await;
    let owner = user("owner");
    let intruder = user("intruder");
    cluster.cli(&["queue", "create", &owner]).await;
    let id = cluster
        .cli(&["send", "--queue", &owner, "--message", "for the owner only"])
        .await
        .trim()
        .to_owned();

    // v1 on node A: `forbidden`, with the ref; the session stays open and usable.
    let token = jwt(&intruder, None);
    let (mut v1, _) = Ws::v1(&cluster.a, &intruder, &token).await;
    let reply = v1
        .request(&json!({"op": "subscribe", "queue": owner, "ref": 1}))
        .await;
    assert_eq!(
        (&reply["op"], &reply["code"], &reply["ref"]),
        (&json!("error"), &json!("forbidden"), &json!(1)),
        "{reply}"
    );
    // Nor can it delete the message by id.
    let reply = v1
        .request(&json!({"op": "ack", "queue": owner, "id": id, "ref": 2}))
        .await;
    let refusal = (&reply["op"], &reply["code"], &reply["ref"]);
    assert_eq!(
        refusal,
        (&json!("error"), &json!("not_found"), &json!(2)),
        "{reply}"
    );
    let pong = v1.request(&json!({"op": "ping", "ref": 3})).await;
    assert_eq!(pong, json!({"op": "pong", "ref": 3}));
    let own = v1
        .request(&json!({"op": "subscribe", "queue": intruder, "ref": 4}))
        .await;
    assert_eq!(own, json!({"op": "ok", "ref": 4}));
    v1.close().await;

    // Legacy on node B: the session is closed with 4003.
    let mut legacy = Ws::connect(&cluster.b, &intruder, &[("x-token", &token)], None)
        .await
        .unwrap_or_else(|(status, body)| panic!("legacy handshake refused: {status} {body}"));
    legacy.send_text(&format!("/subscribe/{owner}")).await;
    assert_eq!(legacy.close_code().await, Some(4003));

    // The owner's message was never received, and the owner gets it.
    let stats = cluster.queue_stats(&owner).await;
    let counts = (&stats["msgs"], &stats["totalrecv"]);
    assert_eq!(counts, (&json!(1), &json!(0)), "{stats}");
    let mut conn = store::connect(&cluster.redis_url).await;
    assert_eq!(store::visible_now(&mut conn, &cluster.ns, &owner).await, 1);
    let (mut rightful, _) = Ws::v1(&cluster.b, &owner, &jwt(&owner, None)).await;
    let reply = rightful
        .request(&json!({"op": "subscribe", "queue": owner, "ref": 1}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 1}));
    let message = rightful.json().await;
    assert_eq!(
        (&message["id"], &message["message"], &message["rc"]),
        (&json!(id), &json!("for the owner only"), &json!(1))
    );
    rightful.expect_silence(Duration::from_millis(100)).await;
    rightful.close().await;
}
