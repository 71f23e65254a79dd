//! Poison messages and lifetimes through the gateway, on both engines: max receives and the
//! dead-letter queue, `nack` with `"dead": true`, the metrics that count them, releases that
//! cannot cause a third delivery (issue 15.4), Redis error replies that are not outages
//! (issue 15.9), and a `kill -9` of a gateway process in the middle of dead-lettering batches.

#[macro_use]
mod support;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{RedisServer, TestGateway, process::Process, token, unique};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest},
};
use wsmq_gateway::{
    Config,
    engine::{EngineError, QueueRules},
};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqOptions};

fn defaults(_: &mut Config) {}

fn rules(max_receives: u64, dead_letter: Option<&str>) -> QueueRules {
    QueueRules {
        max_receives,
        ttl: 0,
        dead_letter: dead_letter.map(str::to_owned),
    }
}

/// The value of a counter line of `/metrics` that contains every one of `parts`; 0 when none.
async fn metric(gw: &TestGateway, parts: &[&str]) -> u64 {
    let (status, text) = gw.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|line| !line.starts_with('#') && parts.iter().all(|p| line.contains(p)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n as u64)
        .sum()
}

/// The next `message` frame, skipping other frames.
async fn next_message(client: &mut support::Client) -> Value {
    loop {
        let frame = client.recv_json().await;
        if frame["op"] == "message" {
            return frame;
        }
    }
}

/// A message nacked 3 times on a queue with maxreceives 3 is never delivered a 4th time: it is
/// in the dead-letter queue with its id and body, and counted.
#[tokio::test]
async fn nacked_three_times_with_maxreceives_3_it_is_dead_lettered_not_delivered_again() {
    on_both_engines!(
        |gw| {
            let user = format!("dl{}", unique());
            let dlq = format!("{user}-dead");
            let engine = gw.queues().await;
            assert!(
                engine
                    .create_queue(&user, &rules(3, Some(&dlq)))
                    .await
                    .unwrap()
            );
            let id = engine.send(&user, "poison", None).await.unwrap();
            let (mut client, _) = gw.v1(&user).await;
            let ok = client
                .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
                .await;
            assert_eq!(ok["op"], "ok", "{ok}");
            for rc in 1..=3 {
                let frame = next_message(&mut client).await;
                assert_eq!(
                    (frame["id"].as_str(), frame["rc"].as_u64()),
                    (Some(id.as_str()), Some(rc))
                );
                client
                    .send_json(json!({"op": "nack", "queue": user, "id": id}))
                    .await;
            }
            // The ok of the third nack, then nothing: no 4th delivery.
            assert_eq!(client.recv_json().await["op"], "ok");
            client.expect_silence(Duration::from_millis(600)).await;
            let dead = engine.receive(&dlq, 10, Some(30)).await.unwrap().messages;
            assert_eq!(dead.len(), 1);
            assert_eq!(
                (dead[0].id.as_str(), dead[0].body.as_str()),
                (id.as_str(), "poison")
            );
            assert!(
                engine
                    .receive(&user, 10, None)
                    .await
                    .unwrap()
                    .messages
                    .is_empty()
            );
            let counted = metric(
                &gw,
                &["wsmq_dead_messages_total", "max_receives", "dead_lettered"],
            )
            .await;
            assert_eq!(counted, 1);
            client.close().await;
        },
        defaults
    );
}

/// `nack` with `"dead": true` moves the message at once (or deletes it without a dead-letter
/// queue), answers ok, and counts it by reason `nack`.
#[tokio::test]
async fn nack_dead_moves_the_message_to_the_dead_letter_queue_at_once() {
    on_both_engines!(
        |gw| {
            let user = format!("nd{}", unique());
            let dlq = format!("{user}-dead");
            let engine = gw.queues().await;
            engine
                .create_queue(&user, &rules(0, Some(&dlq)))
                .await
                .unwrap();
            let id = engine.send(&user, "cannot handle", None).await.unwrap();
            let (mut client, _) = gw.v1(&user).await;
            client
                .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
                .await;
            let frame = next_message(&mut client).await;
            assert_eq!(frame["rc"], 1);
            let reply = client
                .request(json!({"op": "nack", "queue": user, "id": id, "dead": true, "ref": 2}))
                .await;
            assert_eq!(reply, json!({"op": "ok", "ref": 2}));
            client.expect_silence(Duration::from_millis(300)).await;
            let dead = engine.receive(&dlq, 10, Some(30)).await.unwrap().messages;
            assert_eq!((dead[0].id.as_str(), dead[0].rc), (id.as_str(), 1));
            assert_eq!(
                metric(
                    &gw,
                    &[
                        "wsmq_dead_messages_total",
                        "reason=\"nack\"",
                        "dead_lettered"
                    ]
                )
                .await,
                1
            );
            // A dead nack of what this session does not hold is not_found, as a plain one.
            let reply = client
                .request(json!({"op": "nack", "queue": user, "id": id, "dead": true, "ref": 3}))
                .await;
            assert_eq!(reply["code"], "not_found", "{reply}");
            client.close().await;
        },
        defaults
    );
}

/// Sets the vt of queue `q` on whichever engine the gateway runs.
async fn set_vt(gw: &TestGateway, q: &str, vt: u64) {
    if let Some(memory) = &gw.memory {
        memory.set_vt_for_tests(q, vt);
        return;
    }
    let url = gw.redis_url.as_deref().expect("redis gateway");
    let options = RsmqOptions {
        ns: gw.ns.clone(),
        realtime: false,
        cluster: false,
    };
    let rsmq = Rsmq::connect(url, options).await.unwrap();
    let opts = QueueOptions {
        vt: Some(vt),
        ..QueueOptions::default()
    };
    rsmq.set_queue_attributes(q, &opts).await.unwrap();
}

/// Issue 15.4: a session whose vt ran out, and whose message another consumer received since
/// (rc 2), releases it on disconnect; that must not make it visible again under the other
/// consumer (a third delivery while it is still in progress).
#[tokio::test]
async fn a_late_release_on_disconnect_causes_no_third_delivery() {
    on_both_engines!(
        |gw| {
            let user = format!("td{}", unique());
            let engine = gw.queues().await;
            engine.ensure_queue(&user).await.unwrap();
            set_vt(&gw, &user, 1).await;
            let id = engine.send(&user, "slow work", None).await.unwrap();
            let (mut first, _) = gw.v1(&user).await;
            first
                .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
                .await;
            assert_eq!(next_message(&mut first).await["rc"], 1);
            // The vt runs out; another consumer takes the message (rc 2) for 30 s.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let second = engine.receive(&user, 1, Some(30)).await.unwrap().messages;
            assert_eq!((second[0].id.as_str(), second[0].rc), (id.as_str(), 2));
            // The first session ends (it would also have received it again at rc 2 had the
            // second consumer been slower; here it only holds rc 1).
            first.close().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let third = engine.receive(&user, 10, Some(30)).await.unwrap().messages;
            assert!(
                third.is_empty(),
                "delivered a third time while the second consumer holds it: {third:?}"
            );
        },
        // A window of 1: the first session, holding its message, does not take it again.
        |c: &mut Config| c.limits.window = 1
    );
}

/// Issue 15.9: an error reply from Redis about the data (a key of the wrong type) is
/// `internal`, not `unavailable`: Redis is up, the node stays ready, and the receive changed
/// nothing.
#[tokio::test]
async fn redis_error_replies_are_internal_and_the_node_stays_ready() {
    let redis = RedisServer::start();
    let gw = TestGateway::builder().redis(&redis).start().await;
    let engine = gw.queues().await;
    let q = format!("wt{}", unique());
    engine.ensure_queue(&q).await.unwrap();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(format!("{}:{q}", gw.ns))
        .arg("not a zset")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = engine.receive(&q, 10, None).await.unwrap_err();
    assert!(matches!(err, EngineError::Internal(_)), "{err:?}");
    assert!(!err.is_unavailable());
    assert_eq!(gw.http("GET", "/readyz", &[], "").await.0, 200);

    // Over the wire: the publish fails with `internal`, not `unavailable`.
    let (mut client, _) = gw.v1(&q).await;
    let reply = client
        .request(json!({"op": "publish", "queue": q, "message": "x", "ref": 1}))
        .await;
    assert_eq!(reply["code"], "internal", "{reply}");
    // No outage was logged, so the next success is no "recovery" either: the logs and the
    // reconnect counter do not flap on such errors.
    assert_eq!(gw.http("GET", "/readyz", &[], "").await.0, 200);
    assert_eq!(metric(&gw, &["wsmq_redis_reconnects_total"]).await, 0);
}

/// A v1 session of `user` on a gateway process, past its welcome.
async fn process_client(
    addr: SocketAddr,
    user: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("x-token", token(user).parse().unwrap());
    headers.insert("sec-websocket-protocol", "wsmq.v1".parse().unwrap());
    let (ws, _) = connect_async(request).await.expect("v1 handshake");
    ws
}

/// `kill -9` of a gateway process while its receives dead-letter: every message ends in
/// exactly one of the queue and its dead-letter queue (or was acked), with its body beside
/// its id, and no dead one was delivered. Each receive script is atomic in Redis, so a gateway
/// that dies mid-way cannot split a move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_dead_lettering_leaves_each_message_in_exactly_one_queue() {
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 100;
    let redis = RedisServer::start();
    let ns = format!("k9{}", unique());
    let user = format!("k9u{}", unique());
    let dlq = format!("{user}-dead");
    let options = RsmqOptions {
        ns: ns.clone(),
        realtime: false,
        cluster: false,
    };
    let rsmq = Rsmq::connect(&redis.url(), options).await.unwrap();
    let opts = QueueOptions {
        maxreceives: Some(1),
        deadletter: Some(dlq.clone()),
        ..QueueOptions::default()
    };
    rsmq.create_queue(&user, &opts).await.unwrap();
    // Rounds of messages received once already (dead at their next receive: their rc is set
    // as a receive elsewhere would have) and fresh ones.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut doomed = HashSet::new();
    let mut bodies = HashMap::new();
    for round in 0..ROUNDS {
        let dead: Vec<String> = (0..PER_ROUND).map(|i| format!("d{round}-{i}")).collect();
        let ids = rsmq.send_batch(&user, &dead, None).await.unwrap();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hset(format!("{ns}:{user}:Q"), format!("{id}:rc"), 1)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
        bodies.extend(ids.iter().cloned().zip(dead));
        doomed.extend(ids);
        let fresh: Vec<String> = (0..PER_ROUND).map(|i| format!("f{round}-{i}")).collect();
        let ids = rsmq.send_batch(&user, &fresh, None).await.unwrap();
        bodies.extend(ids.into_iter().zip(fresh));
    }

    let mut gateway = Process::start(&[
        "--redis-url",
        &redis.url(),
        "--rsmq-ns",
        &ns,
        "--window",
        "16",
    ])
    .await;
    let mut ws = process_client(gateway.public, &user).await;
    ws.send(Message::text(
        json!({"op": "subscribe", "queue": user}).to_string(),
    ))
    .await
    .unwrap();
    // Ack as they come; kill the process after 300 deliveries, with batches still going.
    let mut delivered = 0;
    while delivered < 300 {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the session is open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["op"] != "message" {
            continue;
        }
        let id = frame["id"].as_str().unwrap().to_owned();
        assert!(
            !doomed.contains(&id),
            "a dead message was delivered: {frame}"
        );
        assert_eq!(frame["rc"], 1, "{frame}");
        delivered += 1;
        let ack = json!({"op": "ack", "queue": user, "id": id});
        ws.send(Message::text(ack.to_string())).await.unwrap();
    }
    gateway.signal("KILL");
    assert_eq!(
        gateway.exit_code(Duration::from_secs(5)).await,
        None,
        "killed by a signal"
    );
    drop(ws);

    // Every id in exactly one place: the queue, the dead-letter queue, or acked (gone).
    let place = |zset: String, hash: String| {
        let mut conn = conn.clone();
        async move {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&zset)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap();
            let fields: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&hash)
                .query_async(&mut conn)
                .await
                .unwrap();
            (ids, fields)
        }
    };
    let (queued, queue_hash) = place(format!("{ns}:{user}"), format!("{ns}:{user}:Q")).await;
    let (dead, dead_hash) = place(format!("{ns}:{dlq}"), format!("{ns}:{dlq}:Q")).await;
    let queued: HashSet<String> = queued.into_iter().collect();
    let dead: HashSet<String> = dead.into_iter().collect();
    assert!(!dead.is_empty(), "the gateway dead-lettered before it died");
    assert!(queued.is_disjoint(&dead), "a message in both queues");
    for id in &queued {
        assert_eq!(
            queue_hash.get(id),
            bodies.get(id),
            "body of {id} in the queue"
        );
        assert!(!dead_hash.contains_key(id));
    }
    for id in &dead {
        assert!(doomed.contains(id), "only dead messages are dead-lettered");
        assert_eq!(
            dead_hash.get(id),
            bodies.get(id),
            "body of {id} in the dead-letter queue"
        );
        assert!(
            !queue_hash.keys().any(|k| k.starts_with(id.as_str())),
            "a field of {id} left behind in the queue"
        );
    }
    let gone = bodies.len() - queued.len() - dead.len();
    assert!(
        gone <= delivered,
        "{gone} messages neither queued nor dead, but only {delivered} were acked"
    );
    let attrs = rsmq.get_queue_attributes(&user).await.unwrap();
    assert_eq!(attrs.totaldead, dead.len() as u64);
}

/// `POST /api/publish` may give the rules of a queue it creates; bad rules are a clear 400 and
/// create nothing; an existing queue keeps its own.
#[tokio::test]
async fn api_publish_creates_a_queue_with_rules() {
    const KEY: &str = "api-key-0123456789";
    on_both_engines!(
        |gw| {
            let auth = format!("apikey {KEY}");
            let q = format!("api{}", unique());
            let publish = |body: Value| {
                let body = body.to_string();
                let gw = &gw;
                let auth = auth.clone();
                async move {
                    let (status, reply) = gw
                        .http("POST", "/api/publish", &[("authorization", &auth)], &body)
                        .await;
                    (status, serde_json::from_str::<Value>(&reply).unwrap())
                }
            };
            for (create, error) in [
                (json!({"maxreceives": -1}), "`create` must be"),
                (json!({"ttl": "an hour"}), "`create` must be"),
                (
                    json!({"deadletter": q}),
                    "invalid dead-letter queue: it is the queue itself",
                ),
                (json!({"deadletter": "bad name"}), "invalid queue name"),
                (
                    json!({"maxreceives": 1_000_001}),
                    "maxreceives must be between 0 and 1000000",
                ),
            ] {
                let (status, reply) =
                    publish(json!({"queue": q, "message": "m", "create": create})).await;
                assert_eq!(status, 400, "{create}: {reply}");
                assert!(
                    reply["message"].as_str().unwrap().contains(error),
                    "{create}: {reply}"
                );
            }
            let engine = gw.queues().await;
            assert_eq!(
                engine.receive(&q, 1, None).await.unwrap_err(),
                EngineError::QueueNotFound
            );

            let dlq = format!("{q}-dead");
            let create = json!({"maxreceives": 1, "deadletter": dlq});
            let (status, reply) =
                publish(json!({"queue": q, "message": "once", "create": create})).await;
            assert_eq!(status, 200, "{reply}");
            let id = reply["id"].as_str().unwrap().to_owned();
            // Received once and given back: dead at the next receive.
            let got = engine.receive(&q, 1, Some(0)).await.unwrap();
            assert_eq!(got.messages[0].id, id);
            let next = engine.receive(&q, 1, None).await.unwrap();
            assert!(next.messages.is_empty());
            assert_eq!(next.dead.max_receives, 1);
            let dead = engine.receive(&dlq, 1, None).await.unwrap().messages;
            assert_eq!(dead[0].id, id);
            // An existing queue keeps its rules: no limit asked for here, still dead-lettered.
            let (status, _) = publish(json!({"queue": q, "message": "again", "create": {}})).await;
            assert_eq!(status, 200);
            engine.receive(&q, 1, Some(0)).await.unwrap();
            assert_eq!(
                engine.receive(&q, 1, None).await.unwrap().dead.max_receives,
                1
            );
        },
        |c: &mut Config| c.auth.api_key = Some(wsmq_gateway::config::Secret::new(KEY))
    );
}

/// Issue 15.9: one corrupt message (`HSET … <id>:rc abc`) does not stop the queue: the
/// session gets the messages around it, each once with rc 1, and the skip is counted.
#[tokio::test]
async fn a_corrupt_message_does_not_stop_the_queue() {
    let redis = RedisServer::start();
    let gw = TestGateway::builder().redis(&redis).start().await;
    let engine = gw.queues().await;
    let user = format!("cr{}", unique());
    engine.ensure_queue(&user).await.unwrap();
    let mut ids = Vec::new();
    for body in ["before", "corrupt", "after"] {
        ids.push(engine.send(&user, body, None).await.unwrap());
    }
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(format!("{}:{user}:Q", gw.ns))
        .arg(format!("{}:rc", ids[1]))
        .arg("abc")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (mut client, _) = gw.v1(&user).await;
    client
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    for want in [&ids[0], &ids[2]] {
        let frame = next_message(&mut client).await;
        assert_eq!(
            (&frame["id"], &frame["rc"]),
            (&json!(want), &json!(1)),
            "{frame}"
        );
    }
    client.expect_silence(Duration::from_millis(300)).await;
    assert!(metric(&gw, &["wsmq_corrupt_messages_total"]).await >= 1);
    client.close().await;
}
