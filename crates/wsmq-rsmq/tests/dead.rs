//! wsmq's queue rules on top of the rsmq layout: max receives, ttl, dead-letter queues,
//! redrive, and releases that only give back the receive they name.

mod support;

use std::collections::{HashMap, HashSet};

use support::{RedisServer, redis_time_ms};
use wsmq_rsmq::{Held, QueueOptions, Rsmq, RsmqError};

async fn hgetall(redis: &RedisServer, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(redis.key(key))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

async fn zcard(redis: &RedisServer, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(redis.key(key))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

async fn queue_with(rsmq: &Rsmq, name: &str, opts: QueueOptions) {
    rsmq.create_queue(name, &opts).await.unwrap();
}

fn rules(maxreceives: u64, ttl: u64, deadletter: &str) -> QueueOptions {
    QueueOptions {
        maxreceives: Some(maxreceives),
        ttl: Some(ttl),
        deadletter: Some(deadletter.to_owned()),
        ..QueueOptions::default()
    }
}

/// Received 3 times (and given back each time) on a queue with maxreceives 3, a message is
/// never delivered a 4th time: the 4th receive moves it to the dead-letter queue with its id
/// and body, creates that queue, counts it, and goes on filling the batch.
#[tokio::test]
async fn a_message_received_maxreceives_times_moves_to_the_dead_letter_queue() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    queue_with(&rsmq, "jobs", rules(3, 0, "jobs-dead")).await;
    let poison = rsmq.send_message("jobs", "poison", None).await.unwrap();

    for rc in 1..=3 {
        let msg = rsmq.receive_message("jobs", None).await.unwrap().unwrap();
        assert_eq!((msg.id.as_str(), msg.rc), (poison.as_str(), rc));
        let held = [Held { id: &msg.id, rc }];
        assert_eq!(rsmq.release_held("jobs", &held, 0).await.unwrap(), 1);
    }
    let good = rsmq.send_message("jobs", "good", None).await.unwrap();

    let batch = rsmq.receive_batch_next("jobs", 10, None).await.unwrap();
    let ids: Vec<&str> = batch.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [good.as_str()], "the batch goes on past the dead one");
    assert_eq!(batch.dead.max_receives, 1);
    assert!(batch.dead.dead_lettered);

    let dead = rsmq
        .receive_message("jobs-dead", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (dead.id.as_str(), dead.message.as_str(), dead.rc),
        (poison.as_str(), "poison", 1),
        "same id and body, received afresh"
    );
    assert!(
        rsmq.list_queues()
            .await
            .unwrap()
            .contains(&"jobs-dead".into())
    );
    let attrs = rsmq.get_queue_attributes("jobs").await.unwrap();
    assert_eq!((attrs.totaldead, attrs.msgs, attrs.maxreceives), (1, 1, 3));
    assert_eq!(attrs.deadletter.as_deref(), Some("jobs-dead"));
    let dlq = rsmq.get_queue_attributes("jobs-dead").await.unwrap();
    assert_eq!(
        (dlq.vt, dlq.maxsize, dlq.totalsent, dlq.maxreceives),
        (30, 65536, 1, 0),
        "created with rsmq's defaults"
    );
    let hash = hgetall(&redis, "jobs:Q").await;
    assert!(
        hash.keys().all(|k| !k.starts_with(&poison)),
        "no field of the dead message is left behind: {hash:?}"
    );
}

/// A message older than the queue's ttl (by its id) is never handed out; without a
/// dead-letter queue it is deleted, and counted either way.
#[tokio::test]
async fn a_message_older_than_ttl_is_never_delivered_and_is_counted() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    queue_with(&rsmq, "news", rules(0, 60, "")).await;
    let now = redis_time_ms(&mut redis.conn().await).await;
    // Written the npm way, with the id of a send two minutes ago.
    let old = wsmq_rsmq::new_message_id((now - 120_000) * 1000);
    let () = redis::pipe()
        .zadd(redis.key("news"), &old, now - 120_000)
        .hset(redis.key("news:Q"), &old, "stale")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    // Just inside the ttl; and one whose id another writer made with an uppercase time part
    // (below every lowercase id as text, though sent now): both are delivered.
    let recent = wsmq_rsmq::new_message_id((now - 55_000) * 1000);
    let upper = wsmq_rsmq::new_message_id(now * 1000).to_uppercase();
    let () = redis::pipe()
        .zadd(redis.key("news"), &recent, now - 55_000)
        .hset(redis.key("news:Q"), &recent, "recent")
        .zadd(redis.key("news"), &upper, now - 1)
        .hset(redis.key("news:Q"), &upper, "upper")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let fresh = rsmq.send_message("news", "fresh", None).await.unwrap();

    let batch = rsmq.receive_batch_next("news", 10, None).await.unwrap();
    let ids: Vec<&str> = batch.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [recent.as_str(), upper.as_str(), fresh.as_str()]);
    assert_eq!((batch.dead.expired, batch.dead.dead_lettered), (1, false));
    let attrs = rsmq.get_queue_attributes("news").await.unwrap();
    assert_eq!((attrs.totaldead, attrs.msgs, attrs.ttl), (1, 3, 60));
    assert!(!hgetall(&redis, "news:Q").await.contains_key(&old));
}

/// Issue 15.4: after a consumer's vt ran out and another consumer received the message
/// (rc 2), the first one's late release or dead-lettering must not touch it.
#[tokio::test]
async fn a_late_release_does_not_take_a_message_back_from_a_later_receive() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    queue_with(&rsmq, "jobs", rules(0, 0, "jobs-dead")).await;
    let id = rsmq.send_message("jobs", "work", None).await.unwrap();
    let first = rsmq
        .receive_message("jobs", Some(0))
        .await
        .unwrap()
        .unwrap();
    let second = rsmq
        .receive_message("jobs", Some(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.rc, second.rc), (1, 2));

    let stale = [Held { id: &id, rc: 1 }];
    assert_eq!(rsmq.release_held("jobs", &stale, 0).await.unwrap(), 0);
    let gone = rsmq.dead_letter_held("jobs", &stale).await.unwrap();
    assert_eq!(gone.count, 0);
    assert!(
        rsmq.receive_message("jobs", None).await.unwrap().is_none(),
        "still hidden for the second consumer: no third delivery"
    );

    // The second consumer's own release and dead-lettering do apply.
    let current = [Held { id: &id, rc: 2 }];
    let dead = rsmq.dead_letter_held("jobs", &current).await.unwrap();
    assert_eq!((dead.count, dead.moved), (1, true));
    let moved = rsmq
        .receive_message("jobs-dead", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((moved.id, moved.message), (id, "work".to_owned()));
    assert_eq!(
        rsmq.get_queue_attributes("jobs").await.unwrap().totaldead,
        1
    );
}

/// Redrive moves every message back, ids and bodies kept, in batches of at most 1000, and
/// nothing is lost or doubled on the way.
#[tokio::test]
async fn redrive_of_10000_messages_keeps_every_id() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq_with(true).await;
    queue_with(&rsmq, "jobs", QueueOptions::default()).await;
    queue_with(&rsmq, "jobs-dead", QueueOptions::default()).await;
    let mut sent = HashSet::new();
    for chunk in 0..10 {
        let bodies: Vec<String> = (0..1000)
            .map(|i| format!("m{}", chunk * 1000 + i))
            .collect();
        sent.extend(rsmq.send_batch("jobs-dead", &bodies, None).await.unwrap());
    }
    assert_eq!(sent.len(), 10_000);

    let mut moved = 0;
    loop {
        let step = rsmq
            .move_messages("jobs-dead", "jobs", wsmq_rsmq::MAX_MOVE_BATCH)
            .await
            .unwrap();
        moved += step.moved;
        if step.moved == 0 {
            assert_eq!(step.left, 0);
            break;
        }
    }
    assert_eq!(moved, 10_000);
    assert_eq!(zcard(&redis, "jobs-dead").await, 0);
    let got = rsmq.receive_batch("jobs", 20_000, None).await.unwrap();
    let ids: HashSet<String> = got.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, sent);
    assert!(got.iter().all(|m| m.rc == 1));
    let attrs = rsmq.get_queue_attributes("jobs").await.unwrap();
    assert_eq!(attrs.totalsent, 10_000);
}

/// Bad values are refused before Redis with one clear message, and nothing is written.
#[tokio::test]
async fn bad_rule_values_are_refused() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let cases = [
        (
            QueueOptions {
                maxreceives: Some(1_000_001),
                ..QueueOptions::default()
            },
            "maxreceives must be between 0 and 1000000",
        ),
        (
            QueueOptions {
                ttl: Some(10_000_000),
                ..QueueOptions::default()
            },
            "ttl must be between 0 and 9999999",
        ),
        (
            rules(0, 0, "jobs"),
            "invalid dead-letter queue: it is the queue itself",
        ),
        (rules(0, 0, "bad name"), "invalid queue name \"bad name\""),
    ];
    for (opts, message) in cases {
        let err = rsmq.create_queue("jobs", &opts).await.unwrap_err();
        assert_eq!(err.to_string(), message);
        let err = rsmq.set_queue_attributes("jobs", &opts).await.unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    assert!(rsmq.list_queues().await.unwrap().is_empty());
    let err = rsmq.move_messages("jobs", "jobs", 10).await.unwrap_err();
    assert!(matches!(err, RsmqError::InvalidDeadLetter(_)), "{err:?}");
}

/// Set and cleared, the rules leave exactly the fields npm rsmq writes.
#[tokio::test]
async fn rules_are_extra_hash_fields_removed_when_turned_off() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    queue_with(&rsmq, "jobs", QueueOptions::default()).await;
    let plain: HashSet<String> = hgetall(&redis, "jobs:Q").await.into_keys().collect();
    let set = rsmq
        .set_queue_attributes("jobs", &rules(5, 3600, "jobs-dead"))
        .await
        .unwrap();
    assert_eq!(
        (set.maxreceives, set.ttl, set.deadletter.as_deref()),
        (5, 3600, Some("jobs-dead"))
    );
    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(
        (&hash["maxreceives"], &hash["ttl"], &hash["deadletter"]),
        (&"5".to_owned(), &"3600".to_owned(), &"jobs-dead".to_owned())
    );
    let cleared = rsmq
        .set_queue_attributes("jobs", &rules(0, 0, ""))
        .await
        .unwrap();
    assert_eq!(
        (cleared.maxreceives, cleared.ttl, cleared.deadletter),
        (0, 0, None)
    );
    let after: HashSet<String> = hgetall(&redis, "jobs:Q").await.into_keys().collect();
    assert_eq!(after, plain);
}
