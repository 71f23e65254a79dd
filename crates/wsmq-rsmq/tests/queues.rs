//! Queue operations: create, delete, list, get and set attributes, and their errors.

mod support;

use support::{RedisServer, redis_time_ms};
use wsmq_rsmq::{QueueOptions, RsmqError};

#[tokio::test]
async fn created_queue_is_listed_with_rsmq_defaults() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    assert!(rsmq.list_queues().await.unwrap().is_empty());

    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let now_secs = redis_time_ms(&mut redis.conn().await).await / 1000;

    assert_eq!(rsmq.list_queues().await.unwrap(), ["jobs"]);
    let attrs = rsmq.get_queue_attributes("jobs").await.unwrap();
    assert_eq!((attrs.vt, attrs.delay, attrs.maxsize), (30, 0, 65536));
    assert_eq!((attrs.totalsent, attrs.totalrecv), (0, 0));
    assert_eq!((attrs.msgs, attrs.hiddenmsgs), (0, 0));
    assert_eq!(attrs.created, attrs.modified);
    assert!(
        now_secs - attrs.created <= 1,
        "created {} vs TIME {now_secs}",
        attrs.created
    );
}

#[tokio::test]
async fn created_queue_keeps_given_options() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let opts = QueueOptions {
        vt: Some(9_999_999),
        delay: Some(5),
        maxsize: Some(-1),
        ..QueueOptions::default()
    };
    rsmq.create_queue("custom", &opts).await.unwrap();
    let attrs = rsmq.get_queue_attributes("custom").await.unwrap();
    assert_eq!((attrs.vt, attrs.delay, attrs.maxsize), (9_999_999, 5, -1));
}

#[tokio::test]
async fn creating_an_existing_queue_fails_with_queue_exists() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let err = rsmq
        .create_queue(
            "jobs",
            &QueueOptions {
                vt: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::QueueExists), "{err:?}");
    assert_eq!(err.kind(), "queueExists");
    // The first creation's settings survive.
    assert_eq!(rsmq.get_queue_attributes("jobs").await.unwrap().vt, 30);
}

#[tokio::test]
async fn queue_names_are_validated_before_redis() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let default = QueueOptions::default();

    let err = rsmq.create_queue("", &default).await.unwrap_err();
    assert_eq!(err.kind(), "missingParameter");
    for bad in ["a b", "a:b", "ü", &"q".repeat(161)] {
        let err = rsmq.create_queue(bad, &default).await.unwrap_err();
        assert!(
            matches!(err, RsmqError::InvalidName(ref name) if name == bad),
            "{err:?}"
        );
        assert_eq!(err.kind(), "invalidFormat");
        assert_eq!(
            rsmq.get_queue_attributes(bad).await.unwrap_err().kind(),
            "invalidFormat"
        );
        assert_eq!(
            rsmq.delete_queue(bad).await.unwrap_err().kind(),
            "invalidFormat"
        );
    }
    let longest = "q".repeat(160);
    rsmq.create_queue(&longest, &default).await.unwrap();
    rsmq.create_queue("A-z_0-9", &default).await.unwrap();
}

#[tokio::test]
async fn create_checks_ranges_in_rsmq_order() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let cases = [
        (
            QueueOptions {
                vt: Some(10_000_000),
                ..Default::default()
            },
            "vt",
        ),
        (
            QueueOptions {
                delay: Some(10_000_000),
                ..Default::default()
            },
            "delay",
        ),
        (
            QueueOptions {
                maxsize: Some(1023),
                ..Default::default()
            },
            "maxsize",
        ),
        (
            QueueOptions {
                maxsize: Some(65537),
                ..Default::default()
            },
            "maxsize",
        ),
        (
            QueueOptions {
                maxsize: Some(0),
                ..Default::default()
            },
            "maxsize",
        ),
        (
            QueueOptions {
                maxsize: Some(-2),
                ..Default::default()
            },
            "maxsize",
        ),
        // Several bad values: the first in rsmq's order (vt, delay, maxsize) wins.
        (
            QueueOptions {
                vt: Some(10_000_000),
                delay: Some(10_000_000),
                maxsize: Some(1),
                ..QueueOptions::default()
            },
            "vt",
        ),
        (
            QueueOptions {
                delay: Some(10_000_000),
                maxsize: Some(1),
                ..Default::default()
            },
            "delay",
        ),
    ];
    for (opts, field) in cases {
        let err = rsmq.create_queue("q", &opts).await.unwrap_err();
        assert!(
            matches!(err, RsmqError::InvalidValue { field: f, .. } if f == field),
            "{opts:?}: {err:?}"
        );
        assert_eq!(err.kind(), "invalidValue");
    }
    // The name is checked before any value.
    let bad_everything = QueueOptions {
        vt: Some(10_000_000),
        ..Default::default()
    };
    assert_eq!(
        rsmq.create_queue("a b", &bad_everything)
            .await
            .unwrap_err()
            .kind(),
        "invalidFormat"
    );
    assert!(rsmq.list_queues().await.unwrap().is_empty());

    for maxsize in [1024, 65536, -1] {
        let opts = QueueOptions {
            vt: Some(0),
            delay: Some(9_999_999),
            maxsize: Some(maxsize),
            ..QueueOptions::default()
        };
        rsmq.create_queue(&format!("ok{}", maxsize.abs()), &opts)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn deleting_a_queue_removes_its_keys_and_name() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.create_queue("other", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("jobs", "hello", None).await.unwrap();

    rsmq.delete_queue("jobs").await.unwrap();

    assert_eq!(rsmq.list_queues().await.unwrap(), ["other"]);
    let mut conn = redis.conn().await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(redis.key("jobs"))
        .arg(redis.key("jobs:Q"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    let err = rsmq.get_queue_attributes("jobs").await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
}

#[tokio::test]
async fn deleting_a_missing_queue_fails_with_queue_not_found() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let err = rsmq.delete_queue("nope").await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    assert_eq!(err.kind(), "queueNotFound");
    assert_eq!(err.to_string(), "queue not found");
}

#[tokio::test]
async fn attributes_of_a_missing_queue_fail_with_queue_not_found() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let err = rsmq.get_queue_attributes("nope").await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
}

#[tokio::test]
async fn attributes_count_all_and_hidden_messages() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("jobs", "visible", None).await.unwrap();
    rsmq.send_message("jobs", "received", None).await.unwrap();
    rsmq.send_message("jobs", "delayed", Some(60))
        .await
        .unwrap();
    rsmq.receive_message("jobs", None).await.unwrap().unwrap();

    let attrs = rsmq.get_queue_attributes("jobs").await.unwrap();
    assert_eq!(attrs.msgs, 3);
    // rsmq counts scores from the start of the current second, so a message that became
    // visible within this second may count too; the received and delayed ones always do.
    assert!((2..=3).contains(&attrs.hiddenmsgs), "{attrs:?}");
    assert_eq!((attrs.totalsent, attrs.totalrecv), (3, 1));
}

#[tokio::test]
async fn setting_attributes_changes_only_given_fields_and_stamps_modified() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    // Backdate the stamps so that an update within the same second is still visible.
    let mut conn = redis.conn().await;
    let () = redis::cmd("HSET")
        .arg(redis.key("jobs:Q"))
        .arg(&["created", "1000", "modified", "1000"])
        .query_async(&mut conn)
        .await
        .unwrap();

    let opts = QueueOptions {
        vt: Some(45),
        maxsize: Some(-1),
        ..Default::default()
    };
    let attrs = rsmq.set_queue_attributes("jobs", &opts).await.unwrap();
    let now_secs = redis_time_ms(&mut conn).await / 1000;

    assert_eq!((attrs.vt, attrs.delay, attrs.maxsize), (45, 0, -1));
    assert_eq!(attrs.created, 1000);
    assert!(
        now_secs - attrs.modified <= 1,
        "modified {} vs TIME {now_secs}",
        attrs.modified
    );
    assert_eq!(rsmq.get_queue_attributes("jobs").await.unwrap(), attrs);

    let attrs = rsmq
        .set_queue_attributes(
            "jobs",
            &QueueOptions {
                delay: Some(7),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((attrs.vt, attrs.delay, attrs.maxsize), (45, 7, -1));
}

#[tokio::test]
async fn setting_no_attribute_fails_before_anything_else() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    // rsmq checks for an attribute before it looks at the name or the queue.
    for qname in ["nope", "a b", ""] {
        let err = rsmq
            .set_queue_attributes(qname, &QueueOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, RsmqError::NoAttributeSupplied), "{err:?}");
        assert_eq!(err.kind(), "noAttributeSupplied");
    }
}

#[tokio::test]
async fn setting_attributes_validates_then_needs_the_queue() {
    let redis = RedisServer::start();
    let rsmq = redis.rsmq().await;
    let vt = QueueOptions {
        vt: Some(1),
        ..Default::default()
    };
    let err = rsmq.set_queue_attributes("nope", &vt).await.unwrap_err();
    assert!(matches!(err, RsmqError::QueueNotFound), "{err:?}");
    // Creating a queue from a failed set must not happen.
    assert!(rsmq.list_queues().await.unwrap().is_empty());
    let exists: bool = redis::cmd("EXISTS")
        .arg(redis.key("nope:Q"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(!exists);

    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let cases = [
        (
            QueueOptions {
                vt: Some(10_000_000),
                ..Default::default()
            },
            "vt",
        ),
        (
            QueueOptions {
                delay: Some(10_000_000),
                ..Default::default()
            },
            "delay",
        ),
        (
            QueueOptions {
                maxsize: Some(100),
                ..Default::default()
            },
            "maxsize",
        ),
        // rsmq checks vt, then maxsize, then delay.
        (
            QueueOptions {
                vt: None,
                delay: Some(10_000_000),
                maxsize: Some(100),
                ..QueueOptions::default()
            },
            "maxsize",
        ),
    ];
    for (opts, field) in cases {
        let err = rsmq.set_queue_attributes("jobs", &opts).await.unwrap_err();
        assert!(
            matches!(err, RsmqError::InvalidValue { field: f, .. } if f == field),
            "{opts:?}: {err:?}"
        );
    }
    assert_eq!(rsmq.get_queue_attributes("jobs").await.unwrap().vt, 30);
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_with_connect() {
    // Port 1 on localhost is essentially never open.
    let err = wsmq_rsmq::Rsmq::connect("redis://127.0.0.1:1/", Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::Connect(_)), "{err:?}");
    assert_eq!(err.kind(), "connect");
    let err = wsmq_rsmq::Rsmq::connect("not a url", Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RsmqError::Connect(_)), "{err:?}");
}
