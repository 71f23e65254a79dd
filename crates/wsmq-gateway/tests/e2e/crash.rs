//! Scenario: `kill -9` of a node while 10,000 messages stream to clients on it.
//!
//! Ten users each own a queue (vt 2 s) holding 1,000 messages that `wsmq-cli send --file`
//! published. Each user's v1 client consumes its queue on node A and acks every message as it
//! arrives. Once 2,000 messages have been delivered, node A is killed with SIGKILL: no drain, so
//! the messages it had in flight stay hidden until their vt runs out, and acks it read but had
//! not applied are lost. Each client notices its connection die, reconnects to node B and
//! subscribes again. The test checks that every message was delivered at least once and that
//! every queue ends empty after the acks, and reports the duplicates (delivered again because
//! their ack died with node A) and how long the recovery took.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{Cluster, Gateway},
    report, store, user,
    ws::{Event, Ws, jwt},
};

/// Clients, each with a queue of its own.
const CLIENTS: usize = 10;
/// Messages per queue.
const PER_CLIENT: usize = 1000;
/// The queues' vt: how soon what node A held in flight reappears.
const VT_SECS: u64 = 2;
/// Node A is killed once this many distinct messages were delivered over all clients.
const KILL_AFTER: usize = 2000;
/// Bound of the whole scenario after the messages are sent.
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "two gateway processes + redis-server: run by cargo xtask e2e"]
async fn kill_9_of_a_node_mid_stream_loses_nothing_and_its_clients_finish_on_the_other() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("crash", &[]).await;
    let users: Vec<String> = (0..CLIENTS).map(|i| user(&format!("crash{i}"))).collect();
    let dir = std::env::temp_dir().join("wsmq-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    for user in &users {
        cluster
            .cli(&["queue", "create", user, "--vt", &VT_SECS.to_string()])
            .await;
        let file = dir.join(format!("{user}.txt"));
        let lines: String = (0..PER_CLIENT)
            .map(|n| format!("{user}-{n:04}\n"))
            .collect();
        std::fs::write(&file, lines).unwrap();
        let out = cluster
            .cli(&["send", "--queue", user, "--file", file.to_str().unwrap()])
            .await;
        let _ = std::fs::remove_file(&file);
        assert_eq!(out.lines().count(), PER_CLIENT, "ids printed for {user}");
    }

    let delivered = AtomicUsize::new(0);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let clients = join_all(
        users
            .iter()
            .map(|user| client(&cluster, user, &delivered, &stop)),
    );
    let (logs, timeline) = tokio::join!(clients, crash(&cluster, &users, &delivered, &stop));

    let mut deliveries = 0;
    let mut duplicates = 0;
    let mut redelivered = 0;
    let mut on_a = 0;
    let mut reconnected = Duration::ZERO;
    for (user, log) in users.iter().zip(&logs) {
        assert_eq!(
            log.bodies.len(),
            PER_CLIENT,
            "{user}: distinct messages received"
        );
        assert!(
            log.bodies.keys().all(|b| b.starts_with(user.as_str())),
            "{user} got another queue's messages"
        );
        let reconnect = log
            .reconnected_at
            .unwrap_or_else(|| panic!("{user}: never moved to node B"));
        reconnected = reconnected.max(reconnect.duration_since(timeline.killed));
        deliveries += log.deliveries;
        duplicates += log.deliveries - log.bodies.len();
        redelivered += log.redelivered;
        on_a += log.on_a;
    }
    for user in &users {
        let stats = cluster.queue_stats(user).await;
        assert_eq!(
            (&stats["msgs"], &stats["hiddenmsgs"]),
            (&json!(0), &json!(0)),
            "{user}: {stats}"
        );
        assert_eq!(stats["totalsent"], PER_CLIENT, "{user}: {stats}");
    }
    assert!(
        timeline.delivered_at_kill < CLIENTS * PER_CLIENT,
        "node A was killed after the stream ended ({} delivered): not mid-stream",
        timeline.delivered_at_kill
    );
    report(&format!(
        "crash: {} messages in {CLIENTS} queues; node A killed (SIGKILL) after {} messages \
         ({:?} into the stream); {on_a} delivered by A, {} by B; {deliveries} deliveries in all, \
         {duplicates} duplicates, {redelivered} with rc > 1; every client on B within \
         {reconnected:?} of the kill; all delivered {:?} and all queues empty {:?} after the \
         kill (vt {VT_SECS} s)",
        CLIENTS * PER_CLIENT,
        timeline.delivered_at_kill,
        timeline.killed.duration_since(started),
        deliveries - on_a,
        timeline.all_delivered,
        timeline.all_empty,
    ));
}

/// What one client went through.
struct ClientLog {
    /// Receipts per body.
    bodies: HashMap<String, usize>,
    /// Deliveries, duplicates included.
    deliveries: usize,
    /// Of them, delivered by node A.
    on_a: usize,
    /// Deliveries with rc > 1.
    redelivered: usize,
    /// When it was subscribed on node B.
    reconnected_at: Option<Instant>,
}

/// Consumes `user`'s queue on node A, then on node B once A's connection dies, acking each
/// message at once, until `stop`. `delivered` counts the distinct messages it received.
async fn client(
    cluster: &Cluster,
    user: &str,
    delivered: &AtomicUsize,
    stop: &CancellationToken,
) -> ClientLog {
    let mut log = ClientLog {
        bodies: HashMap::new(),
        deliveries: 0,
        on_a: 0,
        redelivered: 0,
        reconnected_at: None,
    };
    let token = jwt(user, None);
    let mut ws = subscribe(&cluster.a, user, &token).await;
    let mut on_a = true;
    let mut next_ref = 0u64;
    while !stop.is_cancelled() {
        let frame: Value = match ws.next(Duration::from_millis(50)).await {
            None => continue,
            Some(Event::Text(text)) => serde_json::from_str(&text).unwrap(),
            Some(Event::Closed(code)) => {
                assert!(on_a, "{}: closed ({code:?}) on node B", ws.label);
                on_a = false;
                ws = subscribe(&cluster.b, user, &token).await;
                log.reconnected_at = Some(Instant::now());
                continue;
            }
        };
        match frame["op"].as_str() {
            Some("message") => {
                let body = frame["message"].as_str().expect("a body").to_owned();
                let id = frame["id"].as_str().expect("an id").to_owned();
                log.deliveries += 1;
                if on_a {
                    log.on_a += 1;
                }
                if frame["rc"].as_u64() != Some(1) {
                    log.redelivered += 1;
                }
                let receipts = log.bodies.entry(body).or_default();
                *receipts += 1;
                if *receipts == 1 {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                next_ref += 1;
                let ack = json!({"op": "ack", "queue": user, "id": id, "ref": next_ref});
                // A failed send means the node is gone: the next read sees the close.
                let _ = ws.try_send_json(&ack).await;
            }
            Some("ok") => {}
            _ => panic!("{}: unexpected frame {frame}", ws.label),
        }
    }
    ws.close().await;
    log
}

/// A v1 session of `user` on `gateway`, subscribed to its queue.
async fn subscribe(gateway: &Gateway, user: &str, token: &str) -> Ws {
    let (mut ws, _) = Ws::v1(gateway, user, token).await;
    let reply = ws
        .request(&json!({"op": "subscribe", "queue": user, "ref": "sub"}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": "sub"}), "{}", ws.label);
    ws
}

/// When node A died and how long the rest took.
struct Timeline {
    /// The SIGKILL.
    killed: Instant,
    /// Distinct messages delivered when it was sent.
    delivered_at_kill: usize,
    /// From the kill until every message was delivered at least once.
    all_delivered: Duration,
    /// From the kill until every queue was empty.
    all_empty: Duration,
}

/// Kills node A after [`KILL_AFTER`] deliveries, waits for every queue to be empty and stops
/// the clients.
async fn crash(
    cluster: &Cluster,
    users: &[String],
    delivered: &AtomicUsize,
    stop: &CancellationToken,
) -> Timeline {
    let _stop_clients = stop.clone().drop_guard();
    let deadline = Instant::now() + TIMEOUT;
    while delivered.load(Ordering::Relaxed) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "only {} deliveries within {TIMEOUT:?}",
            delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cluster.a.kill();
    let killed = Instant::now();
    let delivered_at_kill = delivered.load(Ordering::Relaxed);

    let mut conn = store::connect(&cluster.redis_url).await;
    let mut all_delivered = None;
    loop {
        if all_delivered.is_none() && delivered.load(Ordering::Relaxed) >= CLIENTS * PER_CLIENT {
            all_delivered = Some(killed.elapsed());
        }
        let mut left = 0u64;
        for user in users {
            let key = format!("{}:{user}", cluster.ns);
            let count: u64 = redis::cmd("ZCARD")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("ZCARD");
            left += count;
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} messages still in the queues {TIMEOUT:?} in; {} deliveries",
            delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_empty = killed.elapsed();
    Timeline {
        killed,
        delivered_at_kill,
        all_delivered: all_delivered.unwrap_or(all_empty),
        all_empty,
    }
}
