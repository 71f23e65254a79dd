//! Scenario 1: the original Node stack's clients and publishers work unchanged. A legacy client
//! holding an `x-token` / `x-access-token` pair made by Node (npm jsonwebtoken and
//! `crypto.createCipher`) receives what npm rsmq `sendMessage` publishes, as the original
//! gateway sent it.

use std::time::Duration;

use serde_json::json;
use wsmq_proto::keys;

use crate::{
    cluster::{Cluster, SECRET},
    node, report,
    store::{self, wait_subscribers},
    user,
    ws::{Event, Ws},
};

#[tokio::test]
#[ignore = "two gateway processes + node: run by cargo xtask e2e"]
async fn a_legacy_client_with_node_made_tokens_receives_what_npm_rsmq_sends() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("legacy-node", &[]).await;
    let user = user("legacy");
    let tokens = node::make_tokens(SECRET, &user).await;
    report(&format!(
        "node access token made with {} ({} hex chars)",
        tokens.cipher,
        tokens.access_token.len()
    ));
    let mut conn = store::connect(&cluster.redis_url).await;

    // Unregistered, the Node-made access token is refused on its own: decrypting is not enough.
    let access_only = [("x-access-token", tokens.access_token.as_str())];
    let refused = Ws::connect(&cluster.b, &user, &access_only, None).await;
    let Err((status, body)) = refused else {
        panic!("an unregistered access token opened a session");
    };
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["reason"],
        "unregistered"
    );

    // Registered as `wsmq-cli token issue` does, it admits on its own (so the pair below is not
    // admitted on the JWT alone), on node B, and the welcome hands out a fresh JWT that node A
    // accepts.
    let added: u64 = redis::cmd("SADD")
        .arg(keys::access_tokens(&user))
        .arg(&tokens.access_token)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(added, 1);
    let mut by_access = Ws::connect(&cluster.b, &user, &access_only, Some("wsmq.v1"))
        .await
        .unwrap_or_else(|(status, body)| panic!("access token refused: {status} {body}"));
    let welcome = by_access.json().await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], user.as_str());
    let fresh = welcome["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no fresh JWT in {welcome}"));
    let (fresh_session, _) = Ws::v1(&cluster.a, &user, fresh).await;
    fresh_session.close().await;
    by_access.close().await;

    // The legacy client: both headers, no subprotocol, node A.
    let pair = [
        ("x-token", tokens.jwt.as_str()),
        ("x-access-token", tokens.access_token.as_str()),
    ];
    let mut legacy = Ws::connect(&cluster.a, &user, &pair, None)
        .await
        .unwrap_or_else(|(status, body)| panic!("legacy handshake refused: {status} {body}"));
    legacy.send_text(&format!("/subscribe/{user}")).await;
    // The original's clients send timestamps, which are ignored.
    legacy.send_text("1700000000123").await;
    // A's realtime subscription to the queue is live, so the send below wakes it.
    wait_subscribers(&mut conn, &format!("{}:rt:{user}", cluster.ns), 1).await;

    let id = node::rsmq_send(&cluster.redis_url, &cluster.ns, &user, "hello world").await;
    match legacy.next(Duration::from_secs(5)).await {
        Some(Event::Text(text)) => assert_eq!(text, r#"{"message":"hello world"}"#),
        other => panic!("legacy client got {other:?} instead of the message {id}"),
    }
    // Deleted once written: the queue is empty, received once, and nothing comes again.
    let stats = cluster
        .wait_stats(&user, Duration::from_secs(5), "msgs 0", |s| s["msgs"] == 0)
        .await;
    assert_eq!(
        (
            &stats["totalsent"],
            &stats["totalrecv"],
            &stats["hiddenmsgs"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{stats}"
    );
    let exists: bool = redis::cmd("HEXISTS")
        .arg(format!("{}:{user}:Q", cluster.ns))
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "message {id} is still in the queue hash");
    legacy.expect_silence(Duration::from_millis(300)).await;
    legacy.close().await;
}
