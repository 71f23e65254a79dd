//! Realtime notifications: with realtime on, sends publish the queue's message count
//! on `{ns}:rt:{qname}`, which is how consumers learn of new messages without polling.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::RedisServer;
use wsmq_rsmq::{QueueOptions, Rsmq};

async fn queue(redis: &RedisServer, opts: QueueOptions) -> Rsmq {
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &opts).await.unwrap();
    rsmq
}

#[tokio::test]
async fn realtime_send_publishes_the_queue_size() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq_with(true).await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    let channel = rsmq.realtime_channel("q");
    assert_eq!(channel, redis.key("rt:q"));

    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut messages = pubsub.on_message();

    rsmq.send_message("q", "a", None).await.unwrap();
    rsmq.send_message("q", "b", Some(60)).await.unwrap();
    for expected in ["1", "2"] {
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a realtime notification")
            .unwrap();
        assert_eq!(msg.get_channel_name(), channel);
        assert_eq!(msg.get_payload::<String>().unwrap(), expected);
    }
}

#[tokio::test]
async fn sends_without_realtime_publish_nothing() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(rsmq.realtime_channel("q")).await.unwrap();
    let mut messages = pubsub.on_message();

    rsmq.send_message("q", "a", None).await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(200), messages.next()).await;
    assert!(nothing.is_err(), "unexpected notification");
}

#[tokio::test]
async fn realtime_send_batch_publishes_once_with_the_final_size() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq_with(true).await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("q", "first", None).await.unwrap();

    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(rsmq.realtime_channel("q")).await.unwrap();
    let mut messages = pubsub.on_message();

    rsmq.send_batch("q", &["a", "b", "c"], None).await.unwrap();
    rsmq.send_batch("q", &[] as &[&str], None).await.unwrap();
    rsmq.send_message("q", "last", None).await.unwrap();

    let mut payloads = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a realtime notification")
            .unwrap();
        payloads.push(msg.get_payload::<String>().unwrap());
    }
    // One for the batch of three (4 in the queue), none for the empty batch, one for
    // the last send.
    assert_eq!(payloads, ["4", "5"]);
}
