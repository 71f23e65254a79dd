//! Queue delivery: at-least-once, window, ack/nack, competing consumers, timers. Each
//! behaviour runs against the in-memory engine and against Redis.

#[macro_use]
mod support;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{Client, RedisServer, TestGateway, unique};

fn open(c: &mut wsmq_gateway::Config) {
    c.auth.open = true;
}

async fn subscribe(gw: &TestGateway, user: &str, queue: &str) -> Client {
    let (mut c, _) = gw.v1(user).await;
    let r = c
        .request(json!({"op": "subscribe", "queue": queue, "ref": 0}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    c
}

async fn at_least_once(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let engine = gw.queues().await;
    engine.ensure_queue(&q).await.unwrap();
    for i in 0..5 {
        engine.send(&q, &format!("m{i}"), None).await.unwrap();
    }
    let mut a = subscribe(gw, &q, &q).await;
    let mut first = Vec::new();
    for _ in 0..5 {
        let m = a.recv_json().await;
        assert_eq!(m["rc"], 1);
        first.push(m["id"].as_str().unwrap().to_owned());
    }
    // Ack two, leave three unacked, go away.
    for id in &first[..2] {
        let r = a.request(json!({"op": "ack", "queue": q, "id": id})).await;
        assert_eq!(r["op"], "ok");
    }
    a.close().await;
    // A new session gets the three others at once (not after the 30 s vt), with rc 2.
    let mut b = subscribe(gw, &q, &q).await;
    let mut again = HashSet::new();
    for _ in 0..3 {
        let m = b.recv_json().await;
        assert_eq!(m["rc"], 2, "{m}");
        again.insert(m["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(again, first[2..].iter().cloned().collect());
    b.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn unacked_messages_are_redelivered_with_rc_2_after_a_disconnect() {
    on_both_engines!(|gw| at_least_once(&gw).await, |_| {});
}

async fn window(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let engine = gw.queues().await;
    engine.ensure_queue(&q).await.unwrap();
    for i in 0..10 {
        engine.send(&q, &format!("m{i}"), None).await.unwrap();
    }
    let mut c = subscribe(gw, &q, &q).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.recv_json().await["id"].as_str().unwrap().to_owned());
    }
    c.expect_silence(Duration::from_millis(300)).await;
    let r = c
        .request(json!({"op": "ack", "queue": q, "id": ids[0]}))
        .await;
    assert_eq!(r["op"], "ok");
    let next = c.recv_json().await;
    assert_eq!(next["message"], "m3");
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn no_more_than_the_window_is_in_flight() {
    on_both_engines!(|gw| window(&gw).await, |c: &mut wsmq_gateway::Config| c
        .limits
        .window =
        3);
}

async fn nack_delay(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let mut c = subscribe(gw, &q, &q).await;
    gw.queues().await.send(&q, "later", None).await.unwrap();
    let m = c.recv_json().await;
    let start = Instant::now();
    let r = c
        .request(json!({"op": "nack", "queue": q, "id": m["id"], "delay": 1}))
        .await;
    assert_eq!(r["op"], "ok");
    let again = c.recv_json().await;
    let waited = start.elapsed();
    assert_eq!(
        (again["id"].clone(), again["rc"].as_u64()),
        (m["id"].clone(), Some(2))
    );
    assert!(
        waited >= Duration::from_millis(900),
        "came back after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1600),
        "came back after {waited:?}"
    );
}

#[tokio::test]
async fn a_nacked_message_comes_back_after_its_delay() {
    // A long poll interval: only the precise timer can bring it back on time.
    on_both_engines!(
        |gw| nack_delay(&gw).await,
        |c: &mut wsmq_gateway::Config| { c.engine.poll_interval = Duration::from_secs(30) }
    );
}

async fn delayed(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let mut c = subscribe(gw, &q, &q).await;
    let start = Instant::now();
    gw.queues().await.send(&q, "due", Some(1)).await.unwrap();
    let m = c.recv_json().await;
    let waited = start.elapsed();
    assert_eq!(m["message"], "due");
    assert!(
        waited >= Duration::from_millis(950),
        "arrived early: {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1300),
        "arrived late: {waited:?}"
    );
}

#[tokio::test]
async fn a_delayed_message_arrives_on_time_without_client_traffic() {
    on_both_engines!(|gw| delayed(&gw).await, |c: &mut wsmq_gateway::Config| {
        c.engine.poll_interval = Duration::from_secs(30)
    });
}

async fn competing(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let mut a = subscribe(gw, "a", &q).await;
    let mut b = subscribe(gw, "b", &q).await;
    let engine = gw.queues().await;
    let total = 40;
    for i in 0..total {
        engine.send(&q, &format!("m{i}"), None).await.unwrap();
    }
    let mut seen = HashSet::new();
    let mut counts = [0, 0];
    for (n, client) in [&mut a, &mut b].into_iter().enumerate() {
        while let Some(text) = client.next_text(Duration::from_millis(500)).await {
            let m: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(
                seen.insert(m["id"].as_str().unwrap().to_owned()),
                "duplicate {m}"
            );
            counts[n] += 1;
            let r = client
                .request(json!({"op": "ack", "queue": q, "id": m["id"]}))
                .await;
            assert_eq!(r["op"], "ok");
        }
    }
    assert_eq!(seen.len(), total, "counts {counts:?}");
}

#[tokio::test]
async fn competing_consumers_share_a_queue_without_duplicates() {
    on_both_engines!(|gw| competing(&gw).await, open);
}

#[tokio::test]
async fn the_poll_fallback_catches_messages_sent_without_notification() {
    let redis = RedisServer::start();
    let gw = TestGateway::builder()
        .config(|c| c.engine.poll_interval = Duration::from_millis(200))
        .redis(&redis)
        .start()
        .await;
    let q = format!("q{}", unique());
    let mut c = subscribe(&gw, &q, &q).await;
    // A publisher with realtime off, like npm rsmq's default.
    let quiet = wsmq_rsmq::Rsmq::connect(
        &redis.url(),
        wsmq_rsmq::RsmqOptions {
            ns: gw.ns.clone(),
            realtime: false,
            cluster: false,
        },
    )
    .await
    .unwrap();
    quiet.send_message(&q, "quiet", None).await.unwrap();
    let start = Instant::now();
    let m = c.recv_json().await;
    assert_eq!(m["message"], "quiet");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn queues_survive_their_consumers() {
    let gw = TestGateway::builder().start().await;
    let q = format!("q{}", unique());
    let c = subscribe(&gw, &q, &q).await;
    c.close().await;
    let engine = gw.queues().await;
    // The queue still exists: a send to it succeeds and waits for the next session.
    engine.send(&q, "kept", None).await.unwrap();
    let mut again = subscribe(&gw, &q, &q).await;
    assert_eq!(again.recv_json().await["message"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_right_after_subscribing_arrives_without_waiting_for_the_poll() {
    // A new subscription's first receive and the node's SUBSCRIBE to the queue's realtime
    // channel race: a send landing between the two used to wait for the poll. Fifty sessions
    // subscribe at once (so the node has many SUBSCRIBEs to make, as when clients reconnect
    // en masse) and each sends to its queue the moment its `ok` arrives; with a 30 s poll,
    // every message must still arrive within a second.
    let redis = RedisServer::start();
    let gw = TestGateway::builder()
        .config(|c| c.engine.poll_interval = Duration::from_secs(30))
        .redis(&redis)
        .start()
        .await;
    let publisher = std::sync::Arc::new(gw.queues().await);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let q = format!("q{}", unique());
        let (c, _) = gw.v1(&q).await;
        clients.push((q, c));
    }
    let runs = clients.into_iter().map(|(q, mut c)| {
        let publisher = std::sync::Arc::clone(&publisher);
        tokio::spawn(async move {
            let r = c.request(json!({"op": "subscribe", "queue": q})).await;
            assert_eq!(r["op"], "ok", "{r}");
            publisher.send(&q, "now", None).await.unwrap();
            let m = c.next_text(Duration::from_secs(1)).await;
            let m = m.unwrap_or_else(|| panic!("queue {q}: no message within 1 s"));
            assert!(m.contains("\"now\""), "{m}");
        })
    });
    for run in futures_util::future::join_all(runs).await {
        run.unwrap();
    }
}

/// Keeps the node's pub/sub connection down: refuses new connections (`maxclients` 1, which
/// leaves established ones alone) and kills every pub/sub client. Undone by [`let_pubsub_in`].
async fn cut_pubsub(admin: &mut redis::aio::MultiplexedConnection) -> String {
    let (_, maxclients): (String, String) = redis::cmd("CONFIG")
        .arg(&["GET", "maxclients"])
        .query_async(admin)
        .await
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxclients", "1"])
        .query_async(admin)
        .await
        .unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(admin)
        .await
        .unwrap();
    assert!(killed >= 1, "the gateway's pub/sub connection was killed");
    maxclients
}

async fn let_pubsub_in(admin: &mut redis::aio::MultiplexedConnection, maxclients: &str) {
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxclients", maxclients])
        .query_async(admin)
        .await
        .unwrap();
}

/// A gateway on a private Redis with a 30 s poll (so only notifications and wake-ups can be
/// on time), an engine to publish with and an admin connection; `None` on a shared Redis,
/// whose settings a test must not change.
async fn outage_setup() -> Option<(
    RedisServer,
    TestGateway,
    std::sync::Arc<dyn wsmq_gateway::engine::QueueStore>,
    redis::aio::MultiplexedConnection,
)> {
    if std::env::var_os("WSMQ_TEST_REDIS_URL").is_some() {
        eprintln!("skipped: this test reconfigures Redis, which a shared server must not see");
        return None;
    }
    let redis = RedisServer::start();
    let gw = TestGateway::builder()
        .config(|c| c.engine.poll_interval = Duration::from_secs(30))
        .redis(&redis)
        .start()
        .await;
    let publisher = gw.queues().await;
    let admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Some((redis, gw, publisher, admin))
}

#[tokio::test]
async fn a_message_sent_while_pubsub_was_down_arrives_once_it_is_back() {
    // The node re-subscribes after a pub/sub outage and only then wakes its consumers: a
    // wake-up at the disconnect would come before this send, and the re-subscribe alone
    // would not announce it.
    let Some((_redis, gw, publisher, mut admin)) = outage_setup().await else {
        return;
    };
    let q = format!("q{}", unique());
    let mut c = subscribe(&gw, &q, &q).await;
    let maxclients = cut_pubsub(&mut admin).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publisher.send(&q, "during", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let_pubsub_in(&mut admin, &maxclients).await;
    let m = c.next_text(Duration::from_secs(3)).await;
    let m = m.expect("delivered after the reconnect, not at the 30 s poll");
    assert!(m.contains("\"during\""), "{m}");
}

#[tokio::test]
async fn a_subscriber_that_joins_during_a_pubsub_outage_gets_what_is_sent_meanwhile() {
    // The new subscription waits (bounded) for the node to listen before its first receive;
    // a receive made at once would find nothing, and this send would wait for the poll.
    let Some((_redis, gw, publisher, mut admin)) = outage_setup().await else {
        return;
    };
    let q = format!("q{}", unique());
    let (mut c, _) = gw.v1(&q).await;
    let maxclients = cut_pubsub(&mut admin).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = c.request(json!({"op": "subscribe", "queue": q})).await;
    assert_eq!(r["op"], "ok", "{r}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.send(&q, "meanwhile", None).await.unwrap();
    let_pubsub_in(&mut admin, &maxclients).await;
    let m = c.next_text(Duration::from_secs(3)).await;
    let m = m.expect("delivered once the node listens, not at the 30 s poll");
    assert!(m.contains("\"meanwhile\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_while_an_ack_is_being_deleted_arrives_at_once() {
    // The subscription handles the ack (a delete round trip) while the next message's
    // notification comes in; it must not be dropped with the wait it arrived for, or the
    // message waits for the poll (30 s here). Fifty sessions at once make the overlap likely.
    let redis = RedisServer::start();
    let gw = TestGateway::builder()
        .config(|c| c.engine.poll_interval = Duration::from_secs(30))
        .redis(&redis)
        .start()
        .await;
    let publisher = std::sync::Arc::new(gw.queues().await);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let q = format!("q{}", unique());
        clients.push((q.clone(), subscribe(&gw, &q, &q).await));
    }
    let runs = clients.into_iter().map(|(q, mut c)| {
        let publisher = std::sync::Arc::clone(&publisher);
        tokio::spawn(async move {
            for round in 0..3 {
                publisher.send(&q, "first", None).await.unwrap();
                let first: serde_json::Value = serde_json::from_str(&c.recv_text().await).unwrap();
                assert_eq!(first["message"], "first");
                // The ack and the next send race on purpose.
                c.send_json(json!({"op": "ack", "queue": q, "id": first["id"], "ref": round}))
                    .await;
                publisher.send(&q, "second", None).await.unwrap();
                let mut got_second = None;
                for _ in 0..2 {
                    let text = c.next_text(Duration::from_secs(1)).await;
                    let text =
                        text.unwrap_or_else(|| panic!("queue {q}: stalled in round {round}"));
                    let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if frame["op"] == "message" {
                        got_second = Some(frame);
                    } else {
                        assert_eq!(frame["op"], "ok", "{frame}");
                    }
                }
                let second = got_second.expect("the second message");
                assert_eq!(second["message"], "second");
                let r = c
                    .request(json!({"op": "ack", "queue": q, "id": second["id"]}))
                    .await;
                assert_eq!(r["op"], "ok", "{r}");
            }
        })
    });
    for run in futures_util::future::join_all(runs).await {
        run.unwrap();
    }
}
