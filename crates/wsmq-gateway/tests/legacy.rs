//! The legacy dialect: exact wire strings of the original Node gateway.

mod support;

use std::time::Duration;

use support::{TestGateway, unique};
use wsmq_gateway::engine::QueueStore;

#[tokio::test]
async fn subscribe_then_messages_arrive_as_message_objects_and_are_deleted() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let engine = gw.memory.clone().unwrap();
    let mut client = gw.legacy(&user).await;
    assert_eq!(client.protocol, None);
    client.send_text(&format!("/subscribe/{user}")).await;
    engine.ensure_queue(&user).await.unwrap();
    engine.send(&user, "hello world", None).await.unwrap();
    assert_eq!(client.recv_text().await, r#"{"message":"hello world"}"#);
    engine
        .send(&user, "quote \" and \u{e9}", None)
        .await
        .unwrap();
    assert_eq!(
        client.recv_text().await,
        "{\"message\":\"quote \\\" and \u{e9}\"}"
    );
    // Deleted once written: nothing stays in the queue.
    for _ in 0..50 {
        if engine.queue_len(&user) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.queue_len(&user), 0);
}

#[tokio::test]
async fn messages_waiting_before_the_subscribe_are_delivered() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let engine = gw.memory.clone().unwrap();
    engine.ensure_queue(&user).await.unwrap();
    engine.send(&user, "one", None).await.unwrap();
    engine.send(&user, "two", None).await.unwrap();
    let mut client = gw.legacy(&user).await;
    client.send_text(&format!("/subscribe/{user}")).await;
    assert_eq!(client.recv_text().await, r#"{"message":"one"}"#);
    assert_eq!(client.recv_text().await, r#"{"message":"two"}"#);
}

#[tokio::test]
async fn other_text_is_ignored() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let mut client = gw.legacy(&user).await;
    client.send_text("1700000000123").await;
    client.send_text("{\"op\":\"ping\"}").await;
    client.send_text("/subscribe/").await;
    client.expect_silence(Duration::from_millis(200)).await;
    // Still open and working.
    client.send_text(&format!("/subscribe/{user}")).await;
    let engine = gw.memory.as_ref().unwrap();
    engine.ensure_queue(&user).await.unwrap();
    engine.send(&user, "x", None).await.unwrap();
    assert_eq!(client.recv_text().await, r#"{"message":"x"}"#);
}

#[tokio::test]
async fn another_users_queue_is_refused_with_4003() {
    let gw = TestGateway::builder().start().await;
    let mut client = gw.legacy("mallory").await;
    client.send_text("/subscribe/alice").await;
    assert_eq!(client.close_code().await, Some(4003));
}
