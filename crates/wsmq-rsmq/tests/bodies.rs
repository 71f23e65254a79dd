//! Message bodies: the maxsize limit counted as JavaScript counts, unlimited queues,
//! and bodies that must come back byte for byte.

mod support;

use support::RedisServer;
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError};

async fn queue(redis: &RedisServer, opts: QueueOptions) -> Rsmq {
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &opts).await.unwrap();
    rsmq
}

#[tokio::test]
async fn maxsize_counts_utf16_code_units_like_javascript() {
    let redis = RedisServer::start();
    let rsmq = queue(
        &redis,
        QueueOptions {
            maxsize: Some(1024),
            ..Default::default()
        },
    )
    .await;

    // 1024 'é' are 2048 bytes but 1024 UTF-16 units: fits.
    rsmq.send_message("q", &"é".repeat(1024), None)
        .await
        .unwrap();
    // 512 emoji are 2048 bytes and 1024 UTF-16 units (surrogate pairs): fits.
    rsmq.send_message("q", &"😀".repeat(512), None)
        .await
        .unwrap();
    // 513 emoji are 1026 UTF-16 units: too long, though only 513 chars.
    let err = rsmq
        .send_message("q", &"😀".repeat(513), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::MessageTooLong), "{err:?}");
    assert_eq!(err.kind(), "messageTooLong");
    let err = rsmq
        .send_message("q", &"a".repeat(1025), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::MessageTooLong), "{err:?}");
    assert_eq!(rsmq.get_queue_attributes("q").await.unwrap().totalsent, 2);
}

#[tokio::test]
async fn default_maxsize_is_65536() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    rsmq.send_message("q", &"a".repeat(65536), None)
        .await
        .unwrap();
    let err = rsmq
        .send_message("q", &"a".repeat(65537), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::MessageTooLong), "{err:?}");
}

#[tokio::test]
async fn unlimited_maxsize_carries_a_megabyte() {
    let redis = RedisServer::start();
    let rsmq = queue(
        &redis,
        QueueOptions {
            maxsize: Some(-1),
            ..Default::default()
        },
    )
    .await;
    let body: String = (0..1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    rsmq.send_message("q", &body, None).await.unwrap();
    let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
    assert_eq!(msg.message.len(), 1024 * 1024);
    assert_eq!(msg.message, body);
}

#[tokio::test]
async fn bodies_round_trip_byte_for_byte() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let bodies = [
        "",
        "plain",
        "Grüße, 世界! 😀👍🏽",
        "line\nbreak\r\n\ttab",
        "nul\0inside",
        r#"{"json":["with","quotes \" and \\ backslashes"]}"#,
        "   ",
    ];
    for body in bodies {
        rsmq.send_message("q", body, None).await.unwrap();
    }
    for body in bodies {
        let msg = rsmq.pop_message("q").await.unwrap().unwrap();
        assert_eq!(msg.message, body);
    }
}
