//! Several nodes on one Redis: heartbeats, revocation on every node, cross-node delivery.

mod support;

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use support::{RedisServer, TestGateway, access_token, token, unique};
use wsmq_proto::keys;

async fn redis_conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_node_keeps_a_heartbeat_and_deletes_it_on_shutdown() {
    let redis = RedisServer::start();
    let node_id = format!("node-{}", unique());
    let id = node_id.clone();
    let gw = TestGateway::builder()
        .config(move |c| c.node_id = id)
        .redis(&redis)
        .start()
        .await;
    let (_c, _) = gw.v1("alice").await;
    let mut conn = redis_conn(&redis).await;
    let mut beat: Option<String> = None;
    for _ in 0..100 {
        beat = conn.get(keys::node(&node_id)).await.unwrap();
        if beat.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let beat: wsmq_proto::NodeHeartbeat = serde_json::from_str(&beat.expect("heartbeat")).unwrap();
    assert_eq!(beat.id, node_id);
    let ttl: i64 = conn.ttl(keys::node(&node_id)).await.unwrap();
    assert!(ttl > 0);
    gw.shutdown().await.unwrap();
    let gone: Option<String> = conn.get(keys::node(&node_id)).await.unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn a_revocation_closes_the_users_sessions_on_every_node() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let b = TestGateway::builder().redis(&redis).start().await;
    let user = format!("u{}", unique());
    let (mut on_a, _) = a.v1(&user).await;
    let mut on_b = b.legacy(&user).await;
    let (mut other, _) = a.v1("someone-else").await;
    let mut conn = redis_conn(&redis).await;
    let _: i64 = conn.publish(keys::REVOKE_CHANNEL, &user).await.unwrap();
    assert_eq!(on_a.close_code().await, Some(4003));
    assert_eq!(on_b.close_code().await, Some(4003));
    assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");
}

#[tokio::test]
async fn a_legacy_client_with_the_token_pair_receives_from_another_node() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let user = format!("u{}", unique());
    let at = access_token(&user);
    let mut conn = redis_conn(&redis).await;
    let _: i64 = conn.sadd(keys::access_tokens(&user), &at).await.unwrap();
    let jwt = token(&user);
    let mut client = a
        .connect("/", &[("x-token", &jwt), ("x-access-token", &at)], None)
        .await
        .unwrap();
    client.send_text(&format!("/subscribe/{user}")).await;
    // Another node's engine (same Redis, same namespace) publishes with realtime on.
    let publisher = a.queues().await;
    publisher.ensure_queue(&user).await.unwrap();
    publisher.send(&user, "hello world", None).await.unwrap();
    assert_eq!(client.recv_text().await, r#"{"message":"hello world"}"#);
    // Deleted once written.
    for _ in 0..100 {
        let count: i64 = conn.zcard(format!("{}:{user}", a.ns)).await.unwrap();
        if count == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the message was not deleted after it was written");
}
