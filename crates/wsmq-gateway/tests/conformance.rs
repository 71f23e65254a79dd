//! One engine conformance suite, run against the in-memory engine, Redis and RabbitMQ: each
//! must behave like rsmq 0.12 as far as the gateway can see.

mod support;

use std::{sync::Arc, time::Duration};

use support::{RedisServer, amqp_options, unique};
use wsmq_gateway::engine::{
    Broker, BrokerHandler, ClusterState, Engine, EngineError, QueueStore, amqp::AmqpEngine,
    memory::MemoryEngine, redis::RedisEngine,
};

/// A node's side of the broker: every publication handed over, in order.
struct Publications(tokio::sync::mpsc::UnboundedSender<(String, String)>);

impl BrokerHandler for Publications {
    fn on_publication(&self, channel: &str, body: &str) {
        let _ = self.0.send((channel.to_owned(), body.to_owned()));
    }
}

async fn conformance(parts: Engine) {
    conform_queues(parts.queues.as_ref()).await;
    conform_broker(parts.broker.as_ref()).await;
}

async fn conform_queues(engine: &dyn QueueStore) {
    engine.ping().await.unwrap();
    let q = format!("q{}", unique());

    // A missing queue is QueueNotFound; ensure_queue creates it and is idempotent.
    assert_eq!(
        engine.receive(&q, 1, None).await.unwrap_err(),
        EngineError::QueueNotFound
    );
    engine.ensure_queue(&q).await.unwrap();
    engine.ensure_queue(&q).await.unwrap();
    assert!(
        engine
            .receive(&q, 10, None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );

    // Send, then receive: rc 1, the body, the send time; batches are limited to `max`.
    let before = now_ms();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(engine.send(&q, &format!("m{i}"), None).await.unwrap());
    }
    assert!(ids.iter().all(|id| id.len() == 32));
    let got = engine.receive(&q, 2, Some(1)).await.unwrap().messages;
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].id.as_str(), got[0].body.as_str(), got[0].rc),
        (ids[0].as_str(), "m0", 1)
    );
    assert_eq!(got[1].body, "m1");
    assert!(got[0].sent + 1000 >= before && got[0].sent <= now_ms() + 1000);

    // Received messages are hidden for the vt; the third is still there.
    let rest = engine.receive(&q, 10, Some(1)).await.unwrap();
    assert_eq!(rest.messages.len(), 1);
    assert_eq!(rest.messages[0].body, "m2");
    let empty = engine.receive(&q, 10, None).await.unwrap();
    assert!(empty.messages.is_empty());
    let next = empty
        .next_visible
        .expect("the engine knows when the hidden ones reappear");
    assert!(next <= Duration::from_secs(1), "{next:?}");

    // After the vt they are visible again, with rc 2.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = engine.receive(&q, 10, None).await.unwrap().messages;
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|d| d.rc == 2));

    // Ack deletes (in one batch) and counts what existed.
    let all: Vec<String> = again.iter().map(|d| d.id.clone()).collect();
    assert_eq!(engine.ack(&q, &all[..2]).await.unwrap(), 2);
    assert_eq!(engine.ack(&q, &all[..2]).await.unwrap(), 0);

    // Nack with delay 0: visible at once, rc 3; unknown ids are `false`.
    assert!(engine.nack(&q, &all[2], 0).await.unwrap());
    let back = engine.receive(&q, 10, None).await.unwrap().messages;
    assert_eq!((back.len(), back[0].rc), (1, 3));
    assert!(!engine.nack(&q, &all[0], 0).await.unwrap());
    engine.ack(&q, &all[2..]).await.unwrap();

    // Release gives several back in one call, counting those that still exist.
    for i in 0..3 {
        engine.send(&q, &format!("r{i}"), None).await.unwrap();
    }
    let held: Vec<String> = engine
        .receive(&q, 10, Some(30))
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(held.len(), 3);
    assert_eq!(engine.release(&q, &held[..2], 0).await.unwrap(), 2);
    let back = engine.receive(&q, 10, Some(30)).await.unwrap().messages;
    let back_ids: Vec<&str> = back.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(back_ids, [held[0].as_str(), held[1].as_str()]);
    assert!(back.iter().all(|d| d.rc == 2));
    // With a delay they stay hidden that long; a deleted id is not counted.
    let later = [held[2].clone(), all[0].clone()];
    assert_eq!(engine.release(&q, &later, 5).await.unwrap(), 1);
    let hidden = engine.receive(&q, 10, None).await.unwrap();
    assert!(hidden.messages.is_empty());
    let due = hidden.next_visible.expect("the released message is hidden");
    assert!(
        due > Duration::from_secs(4) && due <= Duration::from_secs(5),
        "{due:?}"
    );
    engine.ack(&q, &held).await.unwrap();

    // A delayed message is invisible until due, and the engine says when it is due.
    engine.send(&q, "later", Some(1)).await.unwrap();
    let early = engine.receive(&q, 10, None).await.unwrap();
    assert!(early.messages.is_empty());
    let due = early
        .next_visible
        .expect("next visible time of a delayed message");
    assert!(
        due > Duration::from_millis(500) && due <= Duration::from_secs(1),
        "{due:?}"
    );
    tokio::time::sleep(due + Duration::from_millis(20)).await;
    let on_time = engine.receive(&q, 10, None).await.unwrap().messages;
    assert_eq!(on_time[0].body, "later");
    engine.ack(&q, &[on_time[0].id.clone()]).await.unwrap();

    // Oversize bodies are refused.
    let big = "x".repeat(65537);
    assert_eq!(
        engine.send(&q, &big, None).await.unwrap_err(),
        EngineError::TooLarge
    );

    // Realtime: a watcher is woken by a send, once the engine listens (a pub/sub engine
    // says when its subscription is confirmed; a second watcher finds it so at once).
    let mut watch = engine.watch_queue(&q);
    assert!(watch.wait_listening(Duration::from_secs(2)).await);
    let mut second = engine.watch_queue(&q);
    assert!(second.wait_listening(Duration::ZERO).await);
    let woken = watch.notify.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    engine.send(&q, "ping", None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), woken)
        .await
        .expect("woken by the send");
}

/// The broker hands every publication of a subscribed channel to the node's handler, and
/// says how many nodes got it.
async fn conform_broker(broker: &dyn Broker) {
    let (tx, mut publications) = tokio::sync::mpsc::unbounded_channel();
    let handler: Arc<dyn BrokerHandler> = Arc::new(Publications(tx));
    broker.start(&handler);
    let channel = format!("c{}", unique());
    broker.subscribe(&channel);
    // The subscription takes effect asynchronously (Redis confirms it on its own connection).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(broker.publish(&channel, "hello").await.unwrap() >= 1);
    let got = tokio::time::timeout(Duration::from_secs(2), publications.recv())
        .await
        .expect("the publication reaches the handler")
        .unwrap();
    assert_eq!(got, (channel.clone(), "hello".to_owned()));
    broker.unsubscribe(&channel);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(broker.publish(&channel, "nobody").await.unwrap(), 0);
    let other = format!("c{}", unique());
    assert_eq!(broker.publish(&other, "nobody").await.unwrap(), 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), publications.recv())
            .await
            .is_err(),
        "nothing arrives for channels the node left or never joined"
    );
    // The broker holds the handler weakly: once the node is gone, nothing is handed over.
    drop(handler);
    let again = format!("c{}", unique());
    broker.subscribe(&again);
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.publish(&again, "late").await.unwrap();
    broker.unsubscribe(&again);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn memory_engine_conforms() {
    conformance(MemoryEngine::new().engine()).await;
}

#[tokio::test]
async fn amqp_engine_conforms() {
    let engine = AmqpEngine::connect(amqp_options(), None).await.unwrap();
    conformance(engine.engine()).await;
    // Without a Redis beside it there is no access-token registry: nothing is registered.
    assert!(
        !engine
            .is_access_token_registered("u1", "00ff")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn redis_engine_conforms() {
    let redis = RedisServer::start();
    let ns = format!("conf{}", unique());
    let engine = RedisEngine::connect(&redis.url(), &ns, Default::default())
        .await
        .unwrap();
    conformance(engine.engine()).await;
    // The access-token registry is the SET the CLI writes.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SADD")
        .arg(wsmq_proto::keys::access_tokens("u1"))
        .arg("00ff")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        engine
            .is_access_token_registered("u1", "00ff")
            .await
            .unwrap()
    );
    assert!(
        !engine
            .is_access_token_registered("u1", "00fe")
            .await
            .unwrap()
    );
    // Revocations published on wsmq:revoke reach the engine's listeners.
    let mut revocations = engine.revocations();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(wsmq_proto::keys::REVOKE_CHANNEL)
        .arg("u1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let user = tokio::time::timeout(Duration::from_secs(2), revocations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, "u1");
    // Heartbeats are written with a TTL and removed.
    let hb = wsmq_proto::NodeHeartbeat {
        id: "n1".into(),
        addr: "127.0.0.1:1".into(),
        started: 1,
        connections: 2,
        subscriptions: 3,
        version: "0".into(),
        draining: false,
    };
    engine.write_heartbeat(&hb).await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(wsmq_proto::keys::node("n1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= wsmq_proto::keys::NODE_TTL_SECS as i64);
    engine.remove_heartbeat("n1").await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(wsmq_proto::keys::node("n1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn redis_engine_uses_one_command_connection_and_one_round_trip_per_operation() {
    use futures_util::StreamExt;

    if std::env::var_os("WSMQ_TEST_REDIS_URL").is_some() {
        eprintln!("skipped: MONITOR on a shared server sees other tests' commands");
        return;
    }
    let redis = RedisServer::start();
    let ns = format!("conf{}", unique());
    let engine = RedisEngine::connect(&redis.url(), &ns, Default::default())
        .await
        .unwrap();
    let q = format!("q{}", unique());
    engine.ensure_queue(&q).await.unwrap();
    engine.send(&q, "a", None).await.unwrap();

    let client = redis::Client::open(redis.url()).unwrap();
    let mut lines = client
        .get_async_monitor()
        .await
        .unwrap()
        .into_on_message::<String>();
    // A short batch: the messages and the next-visible time in one script call.
    let received = engine.receive(&q, 10, Some(30)).await.unwrap();
    assert_eq!(received.messages.len(), 1);
    assert!(received.next_visible.is_some());
    let ids = vec![received.messages[0].id.clone()];
    engine.release(&q, &ids, 0).await.unwrap();
    engine.ack(&q, &ids).await.unwrap();
    engine.ping().await.unwrap();
    engine.publish("c", "x").await.unwrap();
    engine.is_access_token_registered("u", "00").await.unwrap();
    let hb = wsmq_proto::NodeHeartbeat {
        id: "n1".into(),
        addr: "127.0.0.1:1".into(),
        started: 1,
        connections: 0,
        subscriptions: 0,
        version: "0".into(),
        draining: false,
    };
    engine.write_heartbeat(&hb).await.unwrap();
    let mut marker_conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("ECHO")
        .arg("marker")
        .query_async(&mut marker_conn)
        .await
        .unwrap();

    let mut commands = Vec::new();
    let mut clients = std::collections::BTreeSet::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next())
            .await
            .expect("MONITOR output")
            .expect("MONITOR open");
        if line.contains("\"marker\"") {
            break;
        }
        if line.contains(" lua] ") {
            continue; // run inside a script: not a round trip
        }
        // `<time> [<db> <ip:port>] "CMD" …`
        let (inside, rest) = line.split_once(" [").unwrap().1.split_once(']').unwrap();
        clients.insert(inside.split_whitespace().nth(1).unwrap().to_owned());
        commands.push(rest.split('"').nth(1).unwrap().to_owned());
    }
    assert_eq!(
        commands,
        [
            "EVALSHA",
            "EVALSHA",
            "EVALSHA",
            "PING",
            "PUBLISH",
            "SISMEMBER",
            "SET"
        ],
        "receive, release, ack, ping, publish, access check, heartbeat"
    );
    assert_eq!(clients.len(), 1, "one command connection: {clients:?}");
}
