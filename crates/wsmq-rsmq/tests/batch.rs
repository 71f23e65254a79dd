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

/// Raw ZSET scores of a queue: id → visible-at ms.
async fn scores(redis: &RedisServer, qname: &str) -> HashMap<String, u64> {
    let pairs: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(redis.key(qname))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    pairs.into_iter().collect()
}

#[tokio::test]
async fn receive_batch_next_has_the_effect_of_receive_batch() {
    let redis = RedisServer::start();
    let (rsmq, ids) = two_queues(&redis, &["a", "b", "c", "d", "e"]).await;

    let plain = rsmq.receive_batch("single", 3, Some(60)).await.unwrap();
    let next = rsmq.receive_batch_next("batch", 3, Some(60)).await.unwrap();

    let ids_of = |ms: &[wsmq_rsmq::Message]| ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids_of(&plain), ids[..3]);
    assert_eq!(ids_of(&next.messages), ids[..3]);
    assert!(next.messages.iter().all(|m| m.rc == 1 && m.fr > 0));
    assert_eq!(
        message_fields(&redis, "single").await,
        message_fields(&redis, "batch").await
    );
    for q in ["single", "batch"] {
        let attrs = rsmq.get_queue_attributes(q).await.unwrap();
        assert_eq!((attrs.totalrecv, attrs.hiddenmsgs), (3, 3), "{q}");
    }
    // The three just received are hidden for 60 s; the two left are visible now and do
    // not count.
    let ms = next.next_visible_ms.expect("received messages are hidden");
    assert!((59_000..=60_000).contains(&ms), "{ms}");

    // A batch of zero changes nothing but still tells when to look again.
    let before = message_fields(&redis, "batch").await;
    let zero = rsmq.receive_batch_next("batch", 0, None).await.unwrap();
    assert!(zero.messages.is_empty());
    assert!(zero.next_visible_ms.is_some_and(|ms| ms <= 60_000));
    assert_eq!(message_fields(&redis, "batch").await, before);
}

#[tokio::test]
async fn next_visible_is_when_a_delayed_message_is_due() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("q", "later", Some(5)).await.unwrap();
    rsmq.send_message("q", "much later", Some(50))
        .await
        .unwrap();

    let got = rsmq.receive_batch_next("q", 10, None).await.unwrap();
    assert!(got.messages.is_empty());
    let ms = got.next_visible_ms.expect("a delayed message is hidden");
    assert!((4_000..=5_000).contains(&ms), "{ms}");
    let attrs = rsmq.get_queue_attributes("q").await.unwrap();
    assert_eq!(attrs.totalrecv, 0, "nothing was received");
}

#[tokio::test]
async fn next_visible_counts_messages_just_received() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_batch("q", &["a", "b"], None).await.unwrap();

    // Received and hidden for 7 s: that is when the first comes back.
    let got = rsmq.receive_batch_next("q", 10, Some(7)).await.unwrap();
    assert_eq!(got.messages.len(), 2);
    let ms = got.next_visible_ms.expect("received messages are hidden");
    assert!((6_900..=7_000).contains(&ms), "{ms}");

    // A delayed message due sooner than the vt wins.
    rsmq.send_message("q", "c", Some(2)).await.unwrap();
    let got = rsmq.receive_batch_next("q", 10, None).await.unwrap();
    assert!(got.messages.is_empty());
    let ms = got.next_visible_ms.unwrap();
    assert!((1_000..=2_000).contains(&ms), "{ms}");
}

#[tokio::test]
async fn next_visible_is_none_without_hidden_messages() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    let empty = rsmq.receive_batch_next("q", 10, None).await.unwrap();
    assert_eq!(empty, wsmq_rsmq::ReceivedBatch::default());

    // Received with a vt of 0, a message stays visible: nothing is hidden.
    rsmq.send_message("q", "a", None).await.unwrap();
    let got = rsmq.receive_batch_next("q", 10, Some(0)).await.unwrap();
    assert_eq!((got.messages.len(), got.next_visible_ms), (1, None));

    let err = rsmq.receive_batch_next("nope", 1, None).await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    let err = rsmq
        .receive_batch_next("bad name", 1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::InvalidName(_)), "{err:?}");
}

#[tokio::test]
async fn change_visibility_batch_has_the_effect_of_n_changes() {
    let redis = RedisServer::start();
    let (rsmq, ids) = two_queues(&redis, &["a", "b", "c", "d"]).await;
    for q in ["single", "batch"] {
        assert_eq!(rsmq.receive_batch(q, 4, Some(60)).await.unwrap().len(), 4);
    }

    // Two held messages, one of them twice, and one the queue never had.
    let targets = [ids[1].clone(), ids[3].clone(), ids[1].clone(), unknown_id()];
    let mut single_count = 0;
    for id in &targets {
        single_count += u64::from(
            rsmq.change_message_visibility("single", id, 0)
                .await
                .unwrap(),
        );
    }
    let batch_count = rsmq
        .change_visibility_batch("batch", &targets, 0)
        .await
        .unwrap();
    assert_eq!((single_count, batch_count), (3, 3));

    for q in ["single", "batch"] {
        let scores = scores(&redis, q).await;
        assert_eq!(scores.len(), 4, "{q}: no id added or removed");
        // Visible again now: exactly the two targets, in either queue.
        let mut visible: Vec<String> = rsmq
            .receive_batch(q, 10, Some(60))
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        visible.sort();
        assert_eq!(visible, [ids[1].clone(), ids[3].clone()], "{q}");
    }
    assert_eq!(
        message_fields(&redis, "single").await,
        message_fields(&redis, "batch").await
    );

    // A later vt hides them all until the same instant.
    let held = [ids[0].clone(), ids[2].clone()];
    assert_eq!(
        rsmq.change_visibility_batch("batch", &held, 30)
            .await
            .unwrap(),
        2
    );
    let now = support::redis_time_ms(&mut redis.conn().await).await;
    let scores = scores(&redis, "batch").await;
    assert_eq!(scores[&held[0]], scores[&held[1]]);
    assert!(
        (now + 29_000..=now + 30_000).contains(&scores[&held[0]]),
        "{scores:?}"
    );
}

#[tokio::test]
async fn change_visibility_batch_validates_before_redis() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    let id = rsmq.send_message("q", "a", None).await.unwrap();
    rsmq.receive_message("q", Some(60)).await.unwrap().unwrap();

    let err = rsmq
        .change_visibility_batch("q", &[id.as_str(), "bad"], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::InvalidId), "{err:?}");
    let err = rsmq
        .change_visibility_batch("q", &[&id], 10_000_000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RsmqError::InvalidValue { field: "vt", .. }),
        "{err:?}"
    );
    assert_eq!(
        rsmq.get_queue_attributes("q").await.unwrap().hiddenmsgs,
        1,
        "nothing changed"
    );

    let err = rsmq
        .change_visibility_batch("nope", &[&id], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    // No ids: nothing to ask, as for zero single calls.
    assert_eq!(
        rsmq.change_visibility_batch("nope", &[] as &[&str], 0)
            .await
            .unwrap(),
        0
    );
}

/// More messages than the scripts take per chunk (2,000 per send write, 1,000 per
/// receive) and than 36² = 1,296 consecutive ids, so the time part of the ids carries
/// into the digits that the send script converts only once per 1,296 ids.
#[tokio::test]
async fn batches_larger_than_a_chunk_and_an_id_carry() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    let bodies: Vec<String> = (0..2_500).map(|i| format!("message {i}")).collect();

    let ids = rsmq.send_batch("q", &bodies, None).await.unwrap();
    // Consecutive microseconds, each in full base 36 as rsmq prints it.
    let time_part = |id: &str| id[..id.len() - 22].to_owned();
    let first = u64::from_str_radix(&time_part(&ids[0]), 36).unwrap();
    for (i, id) in (0..).zip(&ids) {
        let want = wsmq_rsmq::new_message_id(first + i);
        assert_eq!(time_part(id), time_part(&want), "id {i}");
    }

    let received = rsmq.receive_batch("q", 3_000, Some(0)).await.unwrap();
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
    let fr = received[0].fr;
    assert!(received.iter().all(|m| (m.rc, m.fr) == (1, fr)));

    // Received again (the vt of 0 left them visible): counted up, fr kept.
    let again = rsmq.receive_batch("q", 3_000, Some(0)).await.unwrap();
    assert_eq!(again.len(), 2_500);
    assert!(again.iter().all(|m| (m.rc, m.fr) == (2, fr)));
    let hash = message_fields(&redis, "q").await;
    assert_eq!(hash[&format!("{}:rc", ids[2_499])], "2");
    let attrs = rsmq.get_queue_attributes("q").await.unwrap();
    assert_eq!(
        (attrs.totalsent, attrs.totalrecv, attrs.msgs),
        (2_500, 5_000, 2_500)
    );
}
