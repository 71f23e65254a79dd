//! rsmq on a real Redis Cluster (3 masters started by the testkit): every queue's keys in
//! one slot under its hash tag, queues spread over the masters, listing across masters,
//! realtime notifications, and a clear error for what one slot cannot hold.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use redis::cluster_async::ClusterConnection;
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqError, RsmqOptions};
use wsmq_testkit::{RedisCluster, RedisServer};

use support::random_text;

fn options(ns: &str, realtime: bool) -> RsmqOptions {
    RsmqOptions {
        ns: ns.to_owned(),
        realtime,
        cluster: true,
    }
}

async fn raw(cluster: &RedisCluster) -> ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls().split(',').collect::<Vec<_>>())
        .expect("seeds")
        .get_async_connection()
        .await
        .expect("cluster connection")
}

#[tokio::test]
async fn every_operation_works_on_a_cluster_with_each_queue_in_one_slot() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", random_text(6));
    let rsmq = Rsmq::connect(&cluster.urls(), options(&ns, false))
        .await
        .expect("connect");
    assert!(rsmq.is_cluster());

    // Enough queues that all three masters hold some.
    let names: Vec<String> = (0..24).map(|i| format!("q{i}")).collect();
    for name in &names {
        rsmq.create_queue(name, &QueueOptions::default())
            .await
            .expect("create");
    }
    let owners: HashSet<usize> = names
        .iter()
        .map(|q| cluster.master_of(&format!("{{{q}}}")).expect("owner"))
        .collect();
    assert_eq!(owners.len(), 3, "queues spread over every master");

    let mut listed = rsmq.list_queues().await.expect("list");
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want, "list spans all masters");

    // The keys carry the queue's hash tag.
    let mut conn = raw(&cluster).await;
    for key in [format!("{ns}:{{q3}}:q3:Q"), format!("{ns}:{{q3}}:QUEUES")] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists, "{key} exists");
    }

    // Send, batch send, receive, batch receive, visibility, delete, pop, attributes.
    let id = rsmq.send_message("q3", "one", None).await.expect("send");
    let ids = rsmq
        .send_batch("q3", &["two", "three"], None)
        .await
        .expect("send batch");
    let zset: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{ns}:{{q3}}:q3"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(zset.len(), 3, "the zset is the tagged key");
    let first = rsmq
        .receive_message("q3", Some(30))
        .await
        .expect("receive")
        .expect("a message");
    assert_eq!(
        (first.id.as_str(), first.message.as_str()),
        (id.as_str(), "one")
    );
    let batch = rsmq.receive_batch("q3", 10, Some(0)).await.expect("batch");
    assert_eq!(batch.len(), 2);
    rsmq.change_message_visibility("q3", &ids[0], 60)
        .await
        .expect("visibility");
    assert!(rsmq.delete_message("q3", &id).await.expect("delete"));
    let popped = rsmq
        .pop_message("q3")
        .await
        .expect("pop")
        .expect("one left");
    assert_eq!(popped.message, "three");
    let attributes = rsmq.get_queue_attributes("q3").await.expect("attributes");
    assert_eq!(attributes.msgs, 1);
    assert_eq!(attributes.totalsent, 3);

    rsmq.delete_queue("q3").await.expect("delete queue");
    assert!(!rsmq.list_queues().await.unwrap().contains(&"q3".to_owned()));
    assert!(matches!(
        rsmq.get_queue_attributes("q3").await,
        Err(RsmqError::QueueNotFound)
    ));
}

#[tokio::test]
async fn queues_on_every_master_serve_concurrent_batches() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", random_text(6));
    let rsmq = Rsmq::connect(&cluster.urls(), options(&ns, false))
        .await
        .expect("connect");
    let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    for name in &names {
        rsmq.create_queue(name, &QueueOptions::default())
            .await
            .unwrap();
    }
    let bodies: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let sends = names.iter().map(|q| rsmq.send_batch(q, &bodies, None));
    for sent in futures_util::future::join_all(sends).await {
        assert_eq!(sent.expect("send").len(), 200);
    }
    let mut got: HashMap<String, usize> = HashMap::new();
    for name in &names {
        loop {
            let batch = rsmq.receive_batch(name, 64, Some(30)).await.unwrap();
            if batch.is_empty() {
                break;
            }
            let ids: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(
                rsmq.delete_batch(name, &ids).await.unwrap(),
                ids.len() as u64
            );
            *got.entry(name.clone()).or_default() += batch.len();
        }
    }
    assert!(got.values().all(|&n| n == 200), "{got:?}");
}

#[tokio::test]
async fn realtime_sends_publish_on_the_tagged_channel_to_any_node() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", random_text(6));
    let rsmq = Rsmq::connect(&cluster.urls(), options(&ns, true))
        .await
        .expect("connect");
    let channel = rsmq.realtime_channel("jobs");
    assert_eq!(channel, format!("{ns}:{{jobs}}:rt:jobs"));
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    // A classic PUBLISH reaches subscribers on every node: listen on one that does not own
    // the queue's slot.
    let owner = cluster.master_of("{jobs}").unwrap();
    let listener = (owner + 1) % 3;
    let client = redis::Client::open(cluster.nodes()[listener].url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    rsmq.send_message("jobs", "wake", None).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("notified in time")
        .expect("a message");
    assert_eq!(message.get_payload::<String>().unwrap(), "1");
}

#[tokio::test]
async fn the_wrong_mode_fails_at_connect_with_a_clear_error() {
    let cluster = RedisCluster::start().expect("cluster");
    let single = RedisServer::start().expect("redis");
    let plain = RsmqOptions::default();
    let err = Rsmq::connect(&cluster.nodes()[0].url(), plain)
        .await
        .expect_err("a cluster node without cluster mode");
    assert!(matches!(
        err,
        RsmqError::ClusterMismatch {
            server_is_cluster: true
        }
    ));
    assert_eq!(
        err.to_string(),
        "redis is a cluster node: connect in cluster mode"
    );
    let err = Rsmq::connect(&single.url(), options("x", false))
        .await
        .expect_err("cluster mode on a plain server");
    assert!(matches!(
        err,
        RsmqError::ClusterMismatch {
            server_is_cluster: false
        }
    ));
    let err = Rsmq::connect(" , ", options("x", false))
        .await
        .expect_err("no seeds");
    assert!(matches!(err, RsmqError::Connect(_)), "{err}");
}

#[tokio::test]
async fn dead_letters_cross_slots_through_the_parking_hash_and_redrive_is_refused() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", random_text(6));
    let rsmq = Rsmq::connect(&cluster.urls(), options(&ns, false))
        .await
        .expect("connect");
    // Queues whose slots are on different masters, so nothing but the client can move.
    let src = "src";
    let src_master = cluster.master_of("{src}").unwrap();
    let dead_name = (0..20)
        .map(|i| format!("dead{i}"))
        .find(|d| cluster.master_of(&format!("{{{d}}}")).unwrap() != src_master)
        .expect("a name on another master");
    let dead = dead_name.as_str();
    let rules = QueueOptions {
        deadletter: Some(dead.to_owned()),
        maxreceives: Some(1),
        ..QueueOptions::default()
    };
    rsmq.create_queue(src, &rules).await.unwrap();

    // Received once, then dead at its second receive: it lands in the dead-letter queue
    // (created on first use), id and body kept, and nothing stays parked.
    let id = rsmq.send_message(src, "poison", None).await.unwrap();
    assert_eq!(rsmq.receive_batch(src, 10, Some(0)).await.unwrap().len(), 1);
    let second = rsmq.receive_batch_next(src, 10, None).await.unwrap();
    assert!(second.messages.is_empty());
    assert_eq!(
        (second.dead.max_receives, second.dead.dead_lettered),
        (1, true)
    );
    let got = rsmq.receive_batch(dead, 10, Some(30)).await.unwrap();
    assert_eq!(
        (got[0].id.as_str(), got[0].message.as_str()),
        (id.as_str(), "poison")
    );
    let mut conn = raw(&cluster).await;
    let park = format!("{ns}:{{src}}:src:D");
    let parked: bool = redis::cmd("EXISTS")
        .arg(&park)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!parked, "the parking hash is gone once its messages moved");
    assert_eq!(rsmq.get_queue_attributes(dead).await.unwrap().totalsent, 1);

    // A client that died between parking and moving: the queue's next receive moves them,
    // and a move done twice adds nothing twice.
    let orphan = format!("{}{}", "zzzzzzzzzz", random_text(22));
    let _: () = redis::cmd("HSET")
        .arg(&park)
        .arg("to")
        .arg(dead)
        .arg(&orphan)
        .arg("left behind")
        .arg(&got[0].id)
        .arg("poison")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(rsmq.receive_batch(src, 10, None).await.unwrap().is_empty());
    let attributes = rsmq.get_queue_attributes(dead).await.unwrap();
    assert_eq!(
        (attributes.msgs, attributes.totalsent),
        (2, 2),
        "the orphan added, the repeated id not"
    );
    assert_eq!(rsmq.move_parked(src).await.unwrap(), 0);

    // A dead nack moves the message at once.
    let nacked = rsmq.send_message(src, "nacked", None).await.unwrap();
    let held = rsmq.receive_batch(src, 1, Some(30)).await.unwrap();
    let moved = rsmq
        .dead_letter_held(
            src,
            &[wsmq_rsmq::Held {
                id: &held[0].id,
                rc: held[0].rc,
            }],
        )
        .await
        .unwrap();
    assert!(moved.moved);
    let ids: Vec<String> = rsmq
        .receive_batch(dead, 10, Some(30))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert!(ids.contains(&nacked), "{ids:?}");

    // Redrive spans two slots in one script: refused, not half done.
    rsmq.create_queue("dst", &QueueOptions::default())
        .await
        .unwrap();
    let err = rsmq
        .move_messages(src, "dst", 10)
        .await
        .expect_err("a move between slots");
    assert!(matches!(err, RsmqError::Unsupported(_)), "{err}");
}

#[tokio::test]
async fn a_replicated_send_returns_once_a_replica_has_it() {
    let cluster = RedisCluster::builder()
        .replicas(1)
        .start()
        .expect("cluster with replicas");
    let ns = format!("t{}", random_text(6));
    let rsmq = Rsmq::connect(&cluster.urls(), options(&ns, false))
        .await
        .expect("connect");
    rsmq.create_queue("jobs", &QueueOptions::default())
        .await
        .unwrap();
    let ids = rsmq
        .send_batch_replicated("jobs", &["a", "b"], None, 1, Duration::from_secs(2))
        .await
        .expect("one replica confirms");
    assert_eq!(ids.len(), 2);
    let got = rsmq.receive_batch("jobs", 10, Some(30)).await.unwrap();
    assert_eq!(got.len(), 2);

    // Each master has one replica: two cannot confirm.
    let err = rsmq
        .send_batch_replicated("jobs", &["c"], None, 2, Duration::from_millis(200))
        .await
        .expect_err("only one replica exists");
    match err {
        RsmqError::NotReplicated {
            wanted,
            reached,
            ids,
        } => assert_eq!((wanted, reached, ids.len()), (2, 1, 1)),
        other => panic!("{other}"),
    }
    let err = rsmq
        .send_batch_replicated("nope", &["x"], None, 1, Duration::from_secs(1))
        .await
        .expect_err("no such queue");
    assert!(matches!(err, RsmqError::QueueNotFound), "{err}");
}

#[tokio::test]
async fn a_replicated_send_to_a_redis_without_replicas_says_so() {
    let single = RedisServer::start().expect("redis");
    let rsmq = Rsmq::connect(&single.url(), RsmqOptions::default())
        .await
        .unwrap();
    rsmq.create_queue("solo", &QueueOptions::default())
        .await
        .unwrap();
    let err = rsmq
        .send_batch_replicated("solo", &["x"], None, 1, Duration::from_millis(100))
        .await
        .expect_err("no replica");
    assert!(
        matches!(err, RsmqError::NotReplicated { reached: 0, .. }),
        "{err}"
    );
    // Written to the master all the same.
    assert_eq!(rsmq.get_queue_attributes("solo").await.unwrap().msgs, 1);
}
