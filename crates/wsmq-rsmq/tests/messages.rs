//! Message operations: send, receive, pop, delete and change visibility; delays, vt,
//! rc/fr/totalrecv counting, ordering, and every error kind they raise.

mod support;

use std::time::Duration;

use support::{RedisServer, redis_time_ms, unknown_id};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError};

async fn queue(redis: &RedisServer, opts: QueueOptions) -> Rsmq {
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &opts).await.unwrap();
    rsmq
}

#[tokio::test]
async fn sent_message_is_received_with_counters() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let id = rsmq.send_message("q", "hello", None).await.unwrap();

    let before = redis_time_ms(&mut redis.conn().await).await;
    let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
    assert_eq!(msg.id, id);
    assert_eq!(msg.message, "hello");
    assert_eq!(msg.rc, 1);
    assert!(
        msg.fr >= before && msg.fr - before < 1000,
        "fr {} vs TIME {before}",
        msg.fr
    );
    assert!(msg.sent <= msg.fr, "{msg:?}");
    assert_eq!(Some(msg.sent), wsmq_rsmq::message_sent_ms(&id));

    let attrs = rsmq.get_queue_attributes("q").await.unwrap();
    assert_eq!((attrs.totalsent, attrs.totalrecv, attrs.msgs), (1, 1, 1));
}

#[tokio::test]
async fn received_message_stays_hidden_for_vt_then_returns_with_rc_2() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    rsmq.send_message("q", "m", None).await.unwrap();

    let first = rsmq.receive_message("q", Some(1)).await.unwrap().unwrap();
    assert_eq!(rsmq.receive_message("q", None).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let second = rsmq.receive_message("q", None).await.unwrap().unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.rc, 2);
    // fr keeps the first receive.
    assert_eq!(second.fr, first.fr);
    assert_eq!(rsmq.get_queue_attributes("q").await.unwrap().totalrecv, 2);
}

#[tokio::test]
async fn vt_zero_leaves_the_message_visible() {
    let redis = RedisServer::start();
    let rsmq = queue(
        &redis,
        QueueOptions {
            vt: Some(0),
            ..Default::default()
        },
    )
    .await;
    rsmq.send_message("q", "m", None).await.unwrap();
    for rc in 1..=3 {
        let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
        assert_eq!(msg.rc, rc);
    }
}

#[tokio::test]
async fn queue_delay_and_send_delay_hold_messages_back() {
    let redis = RedisServer::start();
    let rsmq = queue(
        &redis,
        QueueOptions {
            delay: Some(1),
            ..Default::default()
        },
    )
    .await;
    rsmq.send_message("q", "queue delay", None).await.unwrap();
    // An explicit delay overrides the queue's, in both directions.
    rsmq.send_message("q", "later", Some(60)).await.unwrap();
    let now = rsmq.send_message("q", "now", Some(0)).await.unwrap();

    let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
    assert_eq!(msg.id, now);
    assert_eq!(rsmq.receive_message("q", None).await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
    assert_eq!(msg.message, "queue delay");
    assert_eq!(rsmq.receive_message("q", None).await.unwrap(), None);
}

#[tokio::test]
async fn change_visibility_hides_and_reveals() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let id = rsmq.send_message("q", "m", None).await.unwrap();

    assert!(rsmq.change_message_visibility("q", &id, 60).await.unwrap());
    assert_eq!(rsmq.receive_message("q", None).await.unwrap(), None);
    assert!(rsmq.change_message_visibility("q", &id, 0).await.unwrap());
    let msg = rsmq.receive_message("q", Some(60)).await.unwrap().unwrap();
    assert_eq!((msg.id.as_str(), msg.rc), (id.as_str(), 1));

    // Handing a received message back at once, as a nack does.
    assert!(rsmq.change_message_visibility("q", &id, 0).await.unwrap());
    assert_eq!(
        rsmq.receive_message("q", None).await.unwrap().unwrap().rc,
        2
    );

    assert!(
        !rsmq
            .change_message_visibility("q", &unknown_id(), 0)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn change_visibility_errors() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let id = unknown_id();
    let err = rsmq
        .change_message_visibility("nope", &id, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    let err = rsmq
        .change_message_visibility("q", "short", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::InvalidId), "{err:?}");
    assert_eq!(err.kind(), "invalidFormat");
    let err = rsmq
        .change_message_visibility("q", "", 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "missingParameter");
    // rsmq validates vt before it looks the queue up.
    let err = rsmq
        .change_message_visibility("nope", &id, 10_000_000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RsmqError::InvalidValue { field: "vt", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn pop_returns_and_deletes_the_message() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    assert_eq!(rsmq.pop_message("q").await.unwrap(), None);
    let first = rsmq.send_message("q", "one", None).await.unwrap();
    rsmq.send_message("q", "two", None).await.unwrap();

    let msg = rsmq.pop_message("q").await.unwrap().unwrap();
    assert_eq!(
        (msg.id.as_str(), msg.message.as_str(), msg.rc),
        (first.as_str(), "one", 1)
    );
    assert!(msg.fr >= msg.sent);

    let attrs = rsmq.get_queue_attributes("q").await.unwrap();
    assert_eq!((attrs.msgs, attrs.totalrecv), (1, 1));
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(redis.key("q:Q"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(!fields.iter().any(|f| f.starts_with(&first)), "{fields:?}");

    let err = rsmq.pop_message("nope").await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
}

#[tokio::test]
async fn popping_a_received_message_reports_its_history() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    rsmq.send_message("q", "m", None).await.unwrap();
    let received = rsmq.receive_message("q", Some(0)).await.unwrap().unwrap();
    let popped = rsmq.pop_message("q").await.unwrap().unwrap();
    assert_eq!((popped.rc, popped.fr), (2, received.fr));
}

#[tokio::test]
async fn delete_message_reports_whether_it_existed() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let id = rsmq.send_message("q", "m", None).await.unwrap();
    rsmq.receive_message("q", None).await.unwrap().unwrap();

    assert!(rsmq.delete_message("q", &id).await.unwrap());
    assert!(!rsmq.delete_message("q", &id).await.unwrap());
    assert_eq!(rsmq.get_queue_attributes("q").await.unwrap().msgs, 0);
    let fields: u64 = redis::cmd("HLEN")
        .arg(redis.key("q:Q"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    // vt, delay, maxsize, created, modified, totalsent, totalrecv: no message fields.
    assert_eq!(fields, 7);

    // Like rsmq, delete does not check that the queue exists.
    assert!(!rsmq.delete_message("nope", &id).await.unwrap());
    let err = rsmq.delete_message("q", "not-an-id").await.unwrap_err();
    assert!(matches!(err, RsmqError::InvalidId), "{err:?}");
    let err = rsmq.delete_message("a b", &id).await.unwrap_err();
    assert!(matches!(err, RsmqError::InvalidName(_)), "{err:?}");
}

#[tokio::test]
async fn send_and_receive_on_a_missing_queue_fail() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let err = rsmq.send_message("nope", "m", None).await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    let err = rsmq.receive_message("nope", None).await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    // rsmq looks the queue up before it checks delay and vt.
    let err = rsmq
        .send_message("nope", "m", Some(10_000_000))
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    let err = rsmq
        .receive_message("nope", Some(10_000_000))
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    let err = rsmq.send_message("", "m", None).await.unwrap_err();
    assert_eq!(err.kind(), "missingParameter");
}

#[tokio::test]
async fn out_of_range_delay_and_vt_are_invalid_values() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let err = rsmq
        .send_message("q", "m", Some(10_000_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RsmqError::InvalidValue {
                field: "delay",
                min: 0,
                max: 9_999_999
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "delay must be between 0 and 9999999");
    let err = rsmq.receive_message("q", Some(u64::MAX)).await.unwrap_err();
    assert!(
        matches!(err, RsmqError::InvalidValue { field: "vt", .. }),
        "{err:?}"
    );
    assert_eq!(rsmq.get_queue_attributes("q").await.unwrap().totalsent, 0);

    rsmq.send_message("q", "max delay", Some(9_999_999))
        .await
        .unwrap();
    assert_eq!(
        rsmq.receive_message("q", Some(9_999_999)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn messages_are_received_in_send_order() {
    let redis = RedisServer::start();
    let rsmq = queue(&redis, QueueOptions::default()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(rsmq.send_message("q", &i.to_string(), None).await.unwrap());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids sort by send time");
    for (i, id) in ids.iter().enumerate() {
        let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
        assert_eq!(
            (&msg.id, msg.message.as_str()),
            (id, i.to_string().as_str())
        );
    }
}
