//! The byte-level Redis layout, read back with raw commands: what npm rsmq 0.12 writes
//! and reads, key by key and field by field.

mod support;

use std::collections::HashMap;

use support::{RedisServer, random_text, redis_time_ms};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError, RsmqOptions, message_sent_ms};

async fn hgetall(redis: &RedisServer, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(redis.key(key))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

async fn zscore(redis: &RedisServer, key: &str, id: &str) -> Option<u64> {
    redis::cmd("ZSCORE")
        .arg(redis.key(key))
        .arg(id)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn queue_hash_stores_seconds_as_decimal_strings() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue(
        "jobs",
        &QueueOptions {
            delay: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let now_secs = redis_time_ms(&mut redis.conn().await).await / 1000;

    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(hash.len(), 5, "{hash:?}");
    assert_eq!(hash["vt"], "30");
    assert_eq!(hash["delay"], "2");
    assert_eq!(hash["maxsize"], "65536");
    let created: u64 = hash["created"].parse().unwrap();
    assert!(
        now_secs - created <= 1,
        "created {created} vs TIME {now_secs}"
    );
    assert_eq!(hash["modified"], hash["created"]);

    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(redis.key("QUEUES"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(members, ["jobs"]);

    rsmq.set_queue_attributes(
        "jobs",
        &QueueOptions {
            vt: Some(45),
            maxsize: Some(-1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(
        (hash["vt"].as_str(), hash["maxsize"].as_str()),
        ("45", "-1")
    );
}

#[tokio::test]
async fn sent_message_is_a_hash_field_and_a_zset_member_scored_in_ms() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let mut conn = redis.conn().await;

    let before = redis_time_ms(&mut conn).await;
    let id = rsmq.send_message("jobs", "body", None).await.unwrap();
    let delayed = rsmq.send_message("jobs", "later", Some(10)).await.unwrap();
    let after = redis_time_ms(&mut conn).await;

    // The id: base-36 of TIME in µs (10 chars) and 22 random alphanumerics.
    assert_eq!(id.len(), 32);
    assert!(
        id[..10]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "{id}"
    );
    assert!(id[10..].bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    let sent = message_sent_ms(&id).unwrap();
    assert!(
        (before..=after).contains(&sent),
        "sent {sent} not in {before}..={after}"
    );

    // The score is the send time in ms; the id carries the same instant in µs.
    assert_eq!(zscore(&redis, "jobs", &id).await, Some(sent));
    let delayed_sent = message_sent_ms(&delayed).unwrap();
    assert_eq!(
        zscore(&redis, "jobs", &delayed).await,
        Some(delayed_sent + 10_000)
    );

    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(hash[&id], "body");
    assert_eq!(hash[&delayed], "later");
    assert_eq!(hash["totalsent"], "2");
    assert!(!hash.contains_key("totalrecv"));
    assert!(!hash.contains_key(&format!("{id}:rc")));
}

#[tokio::test]
async fn receive_writes_rc_fr_totalrecv_and_a_new_score() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue(
        "jobs",
        &QueueOptions {
            vt: Some(20),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = rsmq.send_message("jobs", "body", None).await.unwrap();

    let msg = rsmq.receive_message("jobs", None).await.unwrap().unwrap();
    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(hash[&format!("{id}:rc")], "1");
    assert_eq!(hash[&format!("{id}:fr")], msg.fr.to_string());
    assert_eq!(hash["totalrecv"], "1");
    // Hidden until the receive time plus the queue's vt, in ms.
    assert_eq!(zscore(&redis, "jobs", &id).await, Some(msg.fr + 20_000));

    assert!(
        rsmq.change_message_visibility("jobs", &id, 7)
            .await
            .unwrap()
    );
    let score = zscore(&redis, "jobs", &id).await.unwrap();
    let now = redis_time_ms(&mut redis.conn().await).await;
    assert!(
        score <= now + 7_000 && score + 1000 > now + 7_000,
        "score {score}, now {now}"
    );
}

#[tokio::test]
async fn namespace_prefixes_every_key() {
    let redis = RedisServer::start();
    let ns = format!("other-{}", random_text(6));
    let rsmq = Rsmq::connect(
        redis.url(),
        RsmqOptions {
            ns: ns.clone(),
            realtime: false,
            cluster: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(rsmq.ns(), ns);
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("jobs", "m", None).await.unwrap();

    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{ns}:QUEUES"),
            format!("{ns}:jobs"),
            format!("{ns}:jobs:Q")
        ]
    );
}

/// Writes a queue and a message exactly as npm rsmq 0.12 does (createQueue's HSETNXs
/// and SADD, sendMessage's ZADD, HSET and HINCRBY), to show that wsmq reads them.
#[tokio::test]
async fn messages_written_the_npm_way_are_received_deleted_and_counted() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let mut conn = redis.conn().await;
    let now_ms = redis_time_ms(&mut conn).await;
    let id = wsmq_rsmq::new_message_id(now_ms * 1000);
    let created = (now_ms / 1000).to_string();
    let () = redis::pipe()
        .atomic()
        .hset_multiple(
            redis.key("npm:Q"),
            &[
                ("vt", "30"),
                ("delay", "0"),
                ("maxsize", "65536"),
                ("created", &created),
                ("modified", &created),
            ],
        )
        .sadd(redis.key("QUEUES"), "npm")
        .zadd(redis.key("npm"), &id, now_ms)
        .hset(redis.key("npm:Q"), &id, "from node")
        .hincr(redis.key("npm:Q"), "totalsent", 1)
        .query_async(&mut conn)
        .await
        .unwrap();

    assert_eq!(rsmq.list_queues().await.unwrap(), ["npm"]);
    let msg = rsmq.receive_message("npm", None).await.unwrap().unwrap();
    assert_eq!(
        (msg.id.as_str(), msg.message.as_str(), msg.rc),
        (id.as_str(), "from node", 1)
    );
    assert_eq!(msg.sent, now_ms);
    let attrs = rsmq.get_queue_attributes("npm").await.unwrap();
    assert_eq!((attrs.totalsent, attrs.totalrecv, attrs.msgs), (1, 1, 1));
    assert!(rsmq.delete_message("npm", &id).await.unwrap());
    assert_eq!(rsmq.get_queue_attributes("npm").await.unwrap().msgs, 0);
}

#[tokio::test]
async fn foreign_hashes_decode_like_javascript_parse_int() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    // A writer that stored a float and trailing text; parseInt keeps the integer part.
    let () = redis::cmd("HSET")
        .arg(redis.key("jobs:Q"))
        .arg(&["vt", "12.7", "totalsent", "5x"])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let attrs = rsmq.get_queue_attributes("jobs").await.unwrap();
    assert_eq!((attrs.vt, attrs.totalsent), (12, 5));
}

/// rc fields that a foreign writer left odd are counted up as HINCRBY does; a message whose
/// rc is not an integer is corrupt: skipped and left untouched, while the batch goes on past
/// it. Nothing fails half-way, so no message is hidden without being handed out (issue 15.9:
/// before, the receive failed after hiding and counting the messages before the corrupt one,
/// which then starved for a whole vt on every try).
#[tokio::test]
async fn receive_skips_corrupt_rc_fields_and_counts_odd_ones_as_hincrby_does() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let ids = rsmq
        .send_batch("jobs", &["a", "b", "c", "d", "e"], None)
        .await
        .unwrap();
    let rc = |i: usize| format!("{}:rc", ids[i]);
    let fr = |i: usize| format!("{}:fr", ids[i]);
    // 0 counts as never received; a count beyond 2^53 (a double's integers) stays exact.
    let () = redis::cmd("HSET")
        .arg(redis.key("jobs:Q"))
        .arg(&[
            (rc(0), "0"),
            (rc(1), "41"),
            (rc(2), "9007199254740993"),
            (rc(3), "1.5"),
        ])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();

    let batch = rsmq.receive_batch_next("jobs", 4, None).await.unwrap();
    let got: Vec<(&str, u64)> = batch
        .messages
        .iter()
        .map(|m| (m.message.as_str(), m.rc))
        .collect();
    assert_eq!(
        got,
        [("a", 1), ("b", 42), ("c", 9_007_199_254_740_994), ("e", 1)],
        "the batch of 4 goes on past d"
    );
    assert_eq!(batch.dead.corrupt, 1);
    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(hash[&rc(0)], "1");
    assert!(hash.contains_key(&fr(0)), "first receive sets fr");
    assert_eq!(hash[&rc(1)], "42");
    assert!(!hash.contains_key(&fr(1)));
    assert_eq!(hash[&rc(2)], "9007199254740994");
    assert_eq!(hash[&rc(3)], "1.5", "the corrupt message is left as it was");
    assert!(!hash.contains_key(&fr(3)));
    assert_eq!(hash["totalrecv"], "4");
    // d alone is still visible: the others are hidden for the vt.
    let now = redis_time_ms(&mut redis.conn().await).await;
    for (i, id) in ids.iter().enumerate() {
        let score = zscore(&redis, "jobs", id).await.unwrap();
        assert_eq!(score > now, i != 3, "message {i}: score {score}, now {now}");
    }

    // With d's count fixed, d comes next; it has no fr, which rsmq reads as 0.
    let () = redis::cmd("HSET")
        .arg(redis.key("jobs:Q"))
        .arg(&[(rc(3), "7")])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let got = rsmq.receive_batch("jobs", 10, None).await.unwrap();
    let got: Vec<(&str, u64, bool)> = got
        .iter()
        .map(|m| (m.message.as_str(), m.rc, m.fr > 0))
        .collect();
    assert_eq!(got, [("d", 8, false)]);
}

/// A queue key of the wrong type fails the receive before it wrote anything, with Redis's
/// own WRONGTYPE error (which the gateway reports as `internal`, not `unavailable`).
#[tokio::test]
async fn receive_from_a_wrongtype_key_fails_before_any_write() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_batch("jobs", &["a", "b"], None).await.unwrap();
    let before = hgetall(&redis, "jobs:Q").await;
    // The queue's dead-letter queue is a string: found out only when a message is dead.
    rsmq.set_queue_attributes(
        "jobs",
        &QueueOptions {
            maxreceives: Some(1),
            deadletter: Some("dead".into()),
            ..QueueOptions::default()
        },
    )
    .await
    .unwrap();
    let () = redis::cmd("SET")
        .arg(redis.key("dead"))
        .arg("not a zset")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(
        rsmq.receive_batch("jobs", 1, Some(0)).await.unwrap().len(),
        1
    );
    let err = rsmq.receive_batch("jobs", 10, None).await.unwrap_err();
    assert_eq!(err.kind(), "invalidDeadLetter", "{err:?}");
    let hash = hgetall(&redis, "jobs:Q").await;
    assert_eq!(hash.get("totaldead"), None, "nothing was dead-lettered");
    assert_eq!(hash["totalrecv"], "1", "nor received: {hash:?}");
    assert_eq!(hash.len(), before.len() + 5, "{hash:?}");

    let () = redis::cmd("SET")
        .arg(redis.key("jobs"))
        .arg("not a zset")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let err = rsmq.receive_batch("jobs", 10, None).await.unwrap_err();
    assert!(
        matches!(&err, RsmqError::Redis(e) if e.to_string().contains("WRONGTYPE")),
        "{err:?}"
    );
    assert_eq!(hgetall(&redis, "jobs:Q").await, hash);
}

/// An id can name another message's field: `x:rc` is `x`'s receive count. Received in
/// one batch, the later message reads what receiving the earlier one wrote, as it would
/// with single receives.
#[tokio::test]
async fn receive_batch_sees_ids_that_name_fields_of_earlier_ones() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let x = wsmq_rsmq::new_message_id(1_700_000_000_000_000);
    let x_rc = format!("{x}:rc");
    let () = redis::pipe()
        .zadd(redis.key("jobs"), &x, 1)
        .zadd(redis.key("jobs"), &x_rc, 2)
        .hset(redis.key("jobs:Q"), &x, "body")
        .hset(redis.key("jobs:Q"), &x_rc, "5")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();

    let got = rsmq.receive_batch("jobs", 10, None).await.unwrap();
    let got: Vec<(&str, &str, u64)> = got
        .iter()
        .map(|m| (m.id.as_str(), m.message.as_str(), m.rc))
        .collect();
    assert_eq!(got, [(x.as_str(), "body", 6), (x_rc.as_str(), "6", 1)]);
}
