//! Batch operations: the same effect on the data as N single calls, in one call.

mod support;

use std::collections::HashMap;

use support::{RedisServer, unknown_id};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError};

/// The queue hash without the timestamps that legitimately differ between two runs.
async fn message_fields(redis: &RedisServer, qname: &str) -> HashMap<String, String> {
    let mut hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(redis.key(&format!("{qname}:Q")))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    hash.retain(|field, _| !field.ends_with(":fr") && field != "created" && field != "modified");
    hash
}

async fn two_queues(redis: &RedisServer, bodies: &[&str]) -> (Rsmq, Vec<String>) {
    let rsmq = redis.rsmq().await;
    for q in ["single", "batch"] {
        rsmq.create_queue(q, &QueueOptions::default())
            .await
            .unwrap();
    }
    let ids = rsmq.send_batch("single", bodies, None).await.unwrap();
    // Same ids in both queues, so their hashes can be compared field by field, and
    // visible since long ago, so that rsmq's whole-second hiddenmsgs counts only
    // received messages.
    let mut conn = redis.conn().await;
    for (id, body) in ids.iter().zip(bodies) {
        let () = redis::pipe()
            .zadd(redis.key("single"), id, 0)
            .zadd(redis.key("batch"), id, 0)
            .hset(redis.key("batch:Q"), id, body)
            .hincr(redis.key("batch:Q"), "totalsent", 1)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    (rsmq, ids)
}

#[tokio::test]
async fn send_batch_returns_ids_in_order_and_messages_arrive_in_order() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    let bodies: Vec<String> = (0..100).map(|i| format!("message {i}")).collect();

    let ids = rsmq.send_batch("q", &bodies, None).await.unwrap();
    assert_eq!(ids.len(), 100);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "batch ids sort in batch order");
    for id in &ids {
        wsmq_rsmq::validate_message_id(id).unwrap();
    }

    let received = rsmq.receive_batch("q", 1000, None).await.unwrap();
    let got: Vec<(&str, &str)> = received
        .iter()
        .map(|m| (m.id.as_str(), m.message.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = ids
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().map(String::as_str))
        .collect();
    assert_eq!(got, want);
    let attrs = rsmq.get_queue_attributes("q").await.unwrap();
    assert_eq!(
        (attrs.totalsent, attrs.totalrecv, attrs.msgs),
        (100, 100, 100)
    );
}

#[tokio::test]
async fn send_batch_writes_what_single_sends_write() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("single", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.create_queue("batch", &QueueOptions::default())
        .await
        .unwrap();
    let bodies = ["a", "b", "c"];
    for body in bodies {
        rsmq.send_message("single", body, Some(5)).await.unwrap();
    }
    rsmq.send_batch("batch", &bodies, Some(5)).await.unwrap();

    for q in ["single", "batch"] {
        let hash = message_fields(&redis, q).await;
        let mut values: Vec<&str> = hash.values().map(String::as_str).collect();
        values.sort();
        // Three bodies, plus vt, delay, maxsize and totalsent.
        assert_eq!(values, ["0", "3", "30", "65536", "a", "b", "c"], "{q}");
        let attrs = rsmq.get_queue_attributes(q).await.unwrap();
        assert_eq!(
            (attrs.msgs, attrs.hiddenmsgs, attrs.totalsent),
            (3, 3, 3),
            "{q}"
        );
    }
}

#[tokio::test]
async fn send_batch_is_all_or_nothing() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue(
        "q",
        &QueueOptions {
            maxsize: Some(1024),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let too_long = "x".repeat(1025);
    let err = rsmq
        .send_batch("q", &["fine", &too_long, "fine"], None)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::MessageTooLong), "{err:?}");
    let attrs = rsmq.get_queue_attributes("q").await.unwrap();
    assert_eq!((attrs.msgs, attrs.totalsent), (0, 0));

    assert!(
        rsmq.send_batch("q", &[] as &[&str], None)
            .await
            .unwrap()
            .is_empty()
    );
    let err = rsmq
        .send_batch("nope", &[] as &[&str], None)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
}

#[tokio::test]
async fn receive_batch_has_the_effect_of_n_receives() {
    let redis = RedisServer::start();
    let bodies = ["a", "b", "c", "d", "e"];
    let (rsmq, ids) = two_queues(&redis, &bodies).await;

    let mut singles = Vec::new();
    for _ in 0..3 {
        singles.push(
            rsmq.receive_message("single", Some(60))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let batch = rsmq.receive_batch("batch", 3, Some(60)).await.unwrap();

    let ids_of = |ms: &[wsmq_rsmq::Message]| ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids_of(&singles), ids[..3]);
    assert_eq!(ids_of(&batch), ids[..3]);
    assert!(batch.iter().all(|m| m.rc == 1 && m.fr > 0));
    assert_eq!(
        message_fields(&redis, "single").await,
        message_fields(&redis, "batch").await
    );
    for q in ["single", "batch"] {
        let attrs = rsmq.get_queue_attributes(q).await.unwrap();
        assert_eq!((attrs.totalrecv, attrs.hiddenmsgs), (3, 3), "{q}");
    }

    // The rest, then nothing, just as further single receives would find.
    let rest = rsmq.receive_batch("batch", 10, Some(60)).await.unwrap();
    assert_eq!(ids_of(&rest), ids[3..]);
    assert!(
        rsmq.receive_batch("batch", 10, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn receive_batch_counts_redeliveries() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_batch("q", &["a", "b"], None).await.unwrap();
    let first = rsmq.receive_batch("q", 2, Some(0)).await.unwrap();
    let second = rsmq.receive_batch("q", 2, Some(0)).await.unwrap();
    assert_eq!(second.len(), 2);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((b.rc, b.fr), (2, a.fr));
    }
    assert_eq!(rsmq.get_queue_attributes("q").await.unwrap().totalrecv, 4);
}

#[tokio::test]
async fn receive_batch_of_zero_changes_nothing() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("q", "a", None).await.unwrap();
    assert!(rsmq.receive_batch("q", 0, None).await.unwrap().is_empty());
    let hash = message_fields(&redis, "q").await;
    assert!(!hash.contains_key("totalrecv"), "{hash:?}");
    let err = rsmq.receive_batch("nope", 0, None).await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
}

#[tokio::test]
async fn delete_batch_has_the_effect_of_n_deletes() {
    let redis = RedisServer::start();
    let (rsmq, ids) = two_queues(&redis, &["a", "b", "c", "d"]).await;
    rsmq.receive_message("single", None).await.unwrap().unwrap();
    rsmq.receive_message("batch", None).await.unwrap().unwrap();

    let targets = [ids[0].clone(), ids[2].clone(), unknown_id()];
    let mut single_count = 0;
    for id in &targets {
        single_count += u64::from(rsmq.delete_message("single", id).await.unwrap());
    }
    let batch_count = rsmq.delete_batch("batch", &targets).await.unwrap();

    assert_eq!((single_count, batch_count), (2, 2));
    assert_eq!(
        message_fields(&redis, "single").await,
        message_fields(&redis, "batch").await
    );
    for q in ["single", "batch"] {
        assert_eq!(rsmq.get_queue_attributes(q).await.unwrap().msgs, 2, "{q}");
    }
    // Deleting again finds nothing.
    assert_eq!(rsmq.delete_batch("batch", &targets).await.unwrap(), 0);
}

#[tokio::test]
async fn delete_batch_validates_every_id_first() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    let id = rsmq.send_message("q", "a", None).await.unwrap();
    let err = rsmq
        .delete_batch("q", &[id.as_str(), "bad"])
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::InvalidId), "{err:?}");
    assert_eq!(rsmq.get_queue_attributes("q").await.unwrap().msgs, 1);
    assert_eq!(rsmq.delete_batch("q", &[] as &[String]).await.unwrap(), 0);
}
