//! The gateway on RabbitMQ (`--amqp-url`): both dialects, publishers that speak plain AMQP,
//! two nodes on one broker, revocations on the control exchange, access tokens with a Redis
//! beside, a broker that kills the gateway's connection, and the queue rules (max receives,
//! ttl, dead-letter queue) mapped onto quorum-queue arguments.
//!
//! Every test names its own queue prefix and direct exchange ([`support::amqp_options`]), so
//! they share the broker of the test process (`WSMQ_TEST_AMQP_URL`, or a `rabbitmq-server`
//! node started on first use).

mod support;

use std::{path::PathBuf, time::Duration};

use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use serde_json::{Value, json};
use support::{RedisServer, TestGateway, access_token, amqp_options, rabbit, unique};
use wsmq_gateway::engine::{
    EngineError, Held, QueueMessage, QueueRules, QueueStore,
    amqp::{AmqpEngine, AmqpOptions, CONTROL_EXCHANGE, REVOKE_KEY},
};

/// How a receive handed `message` out, to release or dead-letter it.
fn held(message: &QueueMessage) -> Held {
    Held {
        id: message.id.clone(),
        rc: message.rc,
    }
}

/// Publishes `body` as a plain AMQP publisher would (no `message-id`), with a confirm.
async fn publish_raw(exchange: &str, routing_key: &str, body: &str) {
    let conn = Connection::connect(rabbit().url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    conn.close(200, "done".into()).await.unwrap();
}

/// A JWT for `user` that may subscribe and publish to the channels `room*` and publish to
/// its own queue.
fn room_token(user: &str) -> String {
    let mut claims = wsmq_proto::Claims::new(user, support::now() + 3600);
    claims.wsmq = Some(wsmq_proto::Grants {
        subscribe: vec!["room*".into()],
        publish: vec!["channel:room*".into(), format!("queue:{user}")],
        ..Default::default()
    });
    support::token_with(claims)
}

/// Starts a gateway on RabbitMQ with these options.
async fn gateway(options: &AmqpOptions) -> TestGateway {
    TestGateway::builder().amqp(options.clone()).start().await
}

/// What is left in the queue once no gateway holds anything: a gateway that is shut down
/// closes its connection, and RabbitMQ requeues whatever it had not acked.
async fn left_in_queue(options: &AmqpOptions, queue: &str) -> Vec<String> {
    let engine = wsmq_gateway::engine::amqp::AmqpEngine::connect(options.clone(), None)
        .await
        .unwrap();
    let got = engine.receive(queue, 100, Some(30)).await.unwrap();
    got.messages.into_iter().map(|m| m.body).collect()
}

#[tokio::test]
async fn v1_subscribe_publish_nack_ack_on_rabbitmq_leaves_nothing_behind() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    let ok = c
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(ok, json!({"op": "ok", "ref": 1}));
    let sent = c
        .request(json!({"op": "publish", "queue": user, "message": "m1", "ref": 2}))
        .await;
    assert_eq!(sent["op"], "ok", "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let msg = c.recv_json().await;
    assert_eq!(
        (
            msg["id"].as_str(),
            msg["message"].as_str(),
            msg["rc"].as_u64()
        ),
        (Some(id.as_str()), Some("m1"), Some(1))
    );
    assert!(msg["sent"].as_u64().unwrap() > 1_600_000_000_000);
    // nack → requeued → delivered again, rc from x-delivery-count.
    let r = c
        .request(json!({"op": "nack", "queue": user, "id": id, "ref": 3}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 3}));
    let again = c.recv_json().await;
    assert_eq!(
        (again["id"].as_str(), again["rc"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": id, "ref": 4}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 4}));
    c.close().await;
    gw.shutdown().await.unwrap();
    assert!(left_in_queue(&options, &user).await.is_empty());
}

#[tokio::test]
async fn messages_sent_while_offline_wait_and_legacy_deletes_them_once_written() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let queues = gw.queues().await;
    queues.ensure_queue(&user).await.unwrap();
    for i in 0..3 {
        queues
            .send(&user, &format!("offline {i}"), None)
            .await
            .unwrap();
    }
    let mut c = gw.legacy(&user).await;
    c.send_text(&format!("/subscribe/{user}")).await;
    for i in 0..3 {
        let frame = c.recv_json().await;
        assert_eq!(frame, json!({"message": format!("offline {i}")}));
    }
    c.close().await;
    gw.shutdown().await.unwrap();
    assert!(left_in_queue(&options, &user).await.is_empty());
}

#[tokio::test]
async fn a_closed_session_hands_its_unacked_messages_to_the_next_one() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let (mut first, _) = gw.v1(&user).await;
    first
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    gw.queues().await.send(&user, "held", None).await.unwrap();
    let msg = first.recv_json().await;
    assert_eq!(
        (msg["message"].as_str(), msg["rc"].as_u64()),
        (Some("held"), Some(1))
    );
    first.close().await;
    let (mut second, _) = gw.v1(&user).await;
    second
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    let again = second.recv_json().await;
    assert_eq!(
        (
            again["id"].as_str(),
            again["message"].as_str(),
            again["rc"].as_u64()
        ),
        (msg["id"].as_str(), Some("held"), Some(2))
    );
}

#[tokio::test]
async fn a_plain_amqp_publisher_reaches_the_user_and_its_id_is_stable() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    c.request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    // As the Node chat publishes: the direct exchange, the user as routing key, no id.
    publish_raw(&options.exchange, &user, "from amqp").await;
    let msg = c.recv_json().await;
    assert_eq!(
        (msg["message"].as_str(), msg["rc"].as_u64()),
        (Some("from amqp"), Some(1))
    );
    let id = msg["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    c.request(json!({"op": "nack", "queue": user, "id": id, "ref": 2}))
        .await;
    let again = c.recv_json().await;
    assert_eq!(
        (again["id"].as_str(), again["rc"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": id, "ref": 3}))
        .await;
    assert_eq!(r["op"], "ok");
}

/// Waits (up to 10 s) until `queue` has `n` consumers on the broker.
async fn consumers_become(engine: &AmqpEngine, queue: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !matches!(engine.queue_counts(queue).await, Ok((_, c)) if c == n) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} never had {n} consumers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A consumer start skips the full declaration of a queue the node declared already (a
/// subscribe just did), but still checks that it exists: RabbitMQ closes the channel of a
/// `basic.consume` on a missing queue, and that channel carries every queue consumer of the
/// node, so one queue deleted behind the node's back would take the other users' consumers
/// and their unacked messages with it.
#[tokio::test]
async fn a_consumer_on_a_queue_deleted_behind_the_node_leaves_other_consumers_alone() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let other = AmqpEngine::connect(options.clone(), None).await.unwrap();
    let (a, b) = (format!("a{}", unique()), format!("b{}", unique()));
    let (mut bob, _) = gw.v1(&b).await;
    bob.request(json!({"op": "subscribe", "queue": b, "ref": 1}))
        .await;
    gw.queues().await.send(&b, "held", None).await.unwrap();
    let held = bob.recv_json().await;
    assert_eq!(
        (held["message"].as_str(), held["rc"].as_u64()),
        (Some("held"), Some(1))
    );
    let (mut alice, _) = gw.v1(&a).await;
    alice
        .request(json!({"op": "subscribe", "queue": a, "ref": 1}))
        .await;
    // Deleted only once the node's consumer has come and gone: before it is up, the
    // subscription polls with `basic.get`, and one on a deleted queue closes a channel too.
    consumers_become(&other, &a, 1).await;
    let r = alice
        .request(json!({"op": "unsubscribe", "queue": a, "ref": 2}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    consumers_become(&other, &a, 0).await;
    other.delete_queue(&a).await.unwrap();
    // The node still counts the queue as declared: the subscribe costs no round trip, and
    // the consumer start finds it missing and declares it again.
    let r = alice
        .request(json!({"op": "subscribe", "queue": a, "ref": 3}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 3}));
    // The `ok` comes before the consumer start declares the queue; a plain publisher's
    // message to a queue not there yet would be dropped by the exchange.
    consumers_become(&other, &a, 1).await;
    publish_raw(&options.exchange, &a, "to a new queue").await;
    let got = alice.recv_json().await;
    assert_eq!(got["message"].as_str(), Some("to a new queue"), "{got}");
    // Bob's unacked message stayed with him: no closed channel gave it back to be delivered
    // again.
    bob.expect_silence(Duration::from_secs(3)).await;
    let r = bob
        .request(json!({"op": "ack", "queue": b, "id": held["id"], "ref": 2}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 2}));
}

#[tokio::test]
async fn two_nodes_on_one_broker_share_queues_and_channels() {
    let options = amqp_options();
    let a = gateway(&options).await;
    let b = gateway(&options).await;
    let user = format!("u{}", unique());
    let channel = format!("room{}", unique());
    // Channel subscribers need a grant; the queue is the user's own.
    let grant = room_token;
    let mut on_b = b
        .connect("/ws", &[("x-token", &grant(&user))], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(on_b.recv_json().await["op"], "welcome");
    let mut on_a = a
        .connect("/ws", &[("x-token", &grant(&user))], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(on_a.recv_json().await["op"], "welcome");
    let r = on_b
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let r = on_b
        .request(json!({"op": "subscribe", "channel": channel, "ref": 2}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    // The binding of node B's queue is made asynchronously.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = on_a
        .request(json!({"op": "publish", "queue": user, "message": "via a", "ref": 3}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let r = on_a
        .request(json!({"op": "publish", "channel": channel, "message": "hello b", "ref": 4}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let mut got: Vec<Value> = vec![on_b.recv_json().await, on_b.recv_json().await];
    got.sort_by_key(|m| m.get("channel").is_some());
    assert_eq!(
        (got[0]["queue"].as_str(), got[0]["message"].as_str()),
        (Some(user.as_str()), Some("via a"))
    );
    assert_eq!(
        (got[1]["channel"].as_str(), got[1]["message"].as_str()),
        (Some(channel.as_str()), Some("hello b"))
    );
}

#[tokio::test]
async fn a_revocation_on_the_control_exchange_closes_the_users_sessions() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    // The node queue is bound to `revoke` before the engine reports connected.
    publish_raw(CONTROL_EXCHANGE, REVOKE_KEY, &user).await;
    assert_eq!(c.close_code().await, Some(4003));
}

#[tokio::test]
async fn access_tokens_need_the_redis_beside_rabbitmq() {
    let user = format!("at{}", unique());
    let at = access_token(&user);
    // RabbitMQ alone has no registry: nothing is registered, the token is refused.
    let alone = gateway(&amqp_options()).await;
    let refused = alone
        .connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
        .await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(401));
    // With Redis beside it, the registry the CLI writes is read there.
    let redis = RedisServer::start();
    let gw = TestGateway::builder()
        .amqp(amqp_options())
        .redis(&redis)
        .start()
        .await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SADD")
        .arg(wsmq_proto::keys::access_tokens(&user))
        .arg(at.to_ascii_lowercase())
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut c = gw
        .connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
        .await
        .expect("a registered access token is accepted");
    let welcome = c.recv_json().await;
    assert_eq!(welcome["user"].as_str(), Some(user.as_str()));
}

#[tokio::test]
async fn a_killed_connection_keeps_sessions_open_and_redelivers() {
    if std::env::var_os("WSMQ_TEST_AMQP_URL").is_some() {
        eprintln!("skipped: needs a rabbitmq-server node of its own to close its connections");
        return;
    }
    // A node of its own: `close_all_connections` must not break the other tests' links.
    let server = tokio::task::spawn_blocking(wsmq_testkit::RabbitServer::start)
        .await
        .unwrap()
        .expect("rabbitmq-server starts");
    let options = AmqpOptions {
        url: server.url().parse().unwrap(),
        ..amqp_options()
    };
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    c.request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    let room = format!("room{}", unique());
    let mut listener = gw
        .connect(
            "/ws",
            &[("x-token", &room_token("listener"))],
            Some("wsmq.v1"),
        )
        .await
        .unwrap();
    assert_eq!(listener.recv_json().await["op"], "welcome");
    let r = listener
        .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    gw.queues().await.send(&user, "before", None).await.unwrap();
    let before = c.recv_json().await;
    assert_eq!(before["rc"], 1);
    let (status, _) = gw.http("GET", "/readyz", &[], "").await;
    assert_eq!(status, 200);
    let ctl = tokio::task::spawn_blocking(move || {
        server
            .ctl(&["close_all_connections", "wsmq test: broker fault"])
            .map(|_| server)
    });
    let mut saw_503 = false;
    let mut ready_again = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let (status, _) = gw.http("GET", "/readyz", &[], "").await;
        saw_503 |= status == 503;
        if saw_503 && status == 200 {
            ready_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _server = ctl
        .await
        .unwrap()
        .expect("rabbitmqctl close_all_connections");
    assert!(
        saw_503,
        "/readyz never said 503 while the connection was down"
    );
    assert!(ready_again, "/readyz did not come back within 20 s");
    // The session stayed open; the unacked message comes back with rc 2, and new ones flow.
    let again = c.recv_json().await;
    assert_eq!(
        (again["message"].as_str(), again["rc"].as_u64()),
        (Some("before"), Some(2))
    );
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": again["id"], "ref": 2}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    gw.queues().await.send(&user, "after", None).await.unwrap();
    let after = c.recv_json().await;
    assert_eq!(
        (after["message"].as_str(), after["rc"].as_u64()),
        (Some("after"), Some(1))
    );
    // The node queue and its channel bindings were made again on the new connection.
    let receivers = gw
        .engine()
        .await
        .broker
        .publish(&room, "still here")
        .await
        .unwrap();
    assert_eq!(receivers, 1, "the node listens to the channel again");
    let got = listener.recv_json().await;
    assert_eq!(
        (got["channel"].as_str(), got["message"].as_str()),
        (Some(room.as_str()), Some("still here"))
    );
}

#[tokio::test]
async fn the_http_publish_api_declares_the_queue_and_waits_for_the_confirm() {
    const KEY: &str = "api-key-0123456789";
    let options = amqp_options();
    let gw = TestGateway::builder()
        .amqp(options.clone())
        .config(|c| c.auth.api_key = Some(wsmq_gateway::config::Secret::new(KEY)))
        .start()
        .await;
    let user = format!("u{}", unique());
    let auth = format!("apikey {KEY}");
    let body = json!({"queue": user, "message": "from the api"}).to_string();
    let (status, reply) = gw
        .http("POST", "/api/publish", &[("authorization", &auth)], &body)
        .await;
    assert_eq!(status, 200, "{reply}");
    let id = serde_json::from_str::<Value>(&reply).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Answered after the confirm: the message is in the queue, under that id.
    let engine = wsmq_gateway::engine::amqp::AmqpEngine::connect(options, None)
        .await
        .unwrap();
    assert_eq!(engine.queue_counts(&user).await.unwrap(), (1, 0));
    let got = engine.receive(&user, 10, Some(30)).await.unwrap().messages;
    assert_eq!(
        (got[0].id.as_str(), got[0].body.as_str()),
        (id.as_str(), "from the api")
    );
}

/// The Node chat's publisher: npm amqplib, `channel.publish('wsmq.direct', userId, body)`.
#[tokio::test]
#[ignore = "needs node and npm amqplib (interop/): run `cargo xtask e2e amqp`"]
async fn the_node_chats_amqplib_publisher_reaches_the_users_socket() {
    let dir = std::env::var_os("WSMQ_NODE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop"),
        PathBuf::from,
    );
    assert!(
        dir.join("node_modules/amqplib/package.json").is_file(),
        "npm amqplib is not installed in {}: run `cargo xtask e2e amqp` or `npm ci` there",
        dir.display()
    );
    // The chat's own exchange name, so the publisher is exactly the chat's.
    let options = AmqpOptions {
        exchange: "wsmq.direct".into(),
        ..amqp_options()
    };
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    // Offline first: the queue exists (a first session created it), the user is gone.
    let (mut c, _) = gw.v1(&user).await;
    c.request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    c.close().await;
    let publish = |bodies: Vec<String>| {
        let mut command = tokio::process::Command::new("node");
        command
            .arg("amqp-publish.js")
            .arg(rabbit().url())
            .arg("wsmq.direct")
            .arg(&user)
            .args(bodies)
            .current_dir(&dir)
            .kill_on_drop(true);
        command
    };
    let out = publish(vec!["while offline".into()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (mut c, _) = gw.v1(&user).await;
    c.request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    let msg = c.recv_json().await;
    assert_eq!(msg["message"], "while offline");
    c.request(json!({"op": "ack", "queue": user, "id": msg["id"], "ref": 2}))
        .await;
    let bodies: Vec<String> = (0..20).map(|i| format!("live {i}")).collect();
    let out = publish(bodies.clone()).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for body in bodies {
        let msg = c.recv_json().await;
        assert_eq!(msg["message"].as_str(), Some(body.as_str()));
        c.request(json!({"op": "ack", "queue": user, "id": msg["id"], "ref": 3}))
            .await;
    }
}

#[tokio::test]
async fn a_restarted_broker_loses_nothing_and_redelivers_nothing_acked() {
    if std::env::var_os("WSMQ_TEST_AMQP_URL").is_some() {
        eprintln!("skipped: needs a rabbitmq-server node of its own to restart");
        return;
    }
    let server = tokio::task::spawn_blocking(wsmq_testkit::RabbitServer::start)
        .await
        .unwrap()
        .expect("rabbitmq-server starts");
    let options = AmqpOptions {
        url: server.url().parse().unwrap(),
        ..amqp_options()
    };
    // Window 1: the second message waits in the queue while the first is in flight.
    let gw = TestGateway::builder()
        .amqp(options.clone())
        .config(|c| c.limits.window = 1)
        .start()
        .await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    c.request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    let queues = gw.queues().await;
    queues.send(&user, "acked", None).await.unwrap();
    let acked = c.recv_json().await;
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": acked["id"], "ref": 2}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    queues.send(&user, "in flight", None).await.unwrap();
    queues.send(&user, "waiting", None).await.unwrap();
    drop(queues);
    let in_flight = c.recv_json().await;
    assert_eq!(in_flight["message"], "in flight");

    let mut server = server;
    let mut server = tokio::task::spawn_blocking(move || {
        server.stop().expect("rabbitmq stops");
        server
    })
    .await
    .unwrap();
    let (status, _) = gw.http("GET", "/readyz", &[], "").await;
    assert_eq!(status, 503, "/readyz while the broker is down");
    let server = tokio::task::spawn_blocking(move || {
        server.restart().expect("rabbitmq restarts");
        server
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = gw.http("GET", "/readyz", &[], "").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz not 200 within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The session stayed open, and the client may still ack what it holds: RabbitMQ
    // requeued it with the old connection, and the node acks it when it comes back instead
    // of delivering it again.
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": in_flight["id"], "ref": 3}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let waiting = c.recv_json().await;
    assert_eq!(
        (waiting["message"].as_str(), waiting["rc"].as_u64()),
        (Some("waiting"), Some(1))
    );
    let r = c
        .request(json!({"op": "ack", "queue": user, "id": waiting["id"], "ref": 4}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    c.expect_silence(Duration::from_millis(500)).await;
    c.close().await;
    gw.shutdown().await.unwrap();
    assert!(
        left_in_queue(&options, &user).await.is_empty(),
        "the acked message came back"
    );
    drop(server);
}

#[tokio::test]
async fn a_queue_at_its_length_limit_refuses_publishes_with_a_clear_error() {
    let Some(server) = rabbit().server() else {
        eprintln!("skipped: setting a policy needs rabbitmqctl on the test's own node");
        return;
    };
    let options = amqp_options();
    // An operator's policy on this test's queues: at most 2 messages, then refuse.
    let pattern = format!("^{}", options.queue_prefix.replace('.', "\\."));
    let policy = format!("limit-{}", options.queue_prefix.trim_end_matches('.'));
    tokio::task::spawn_blocking(move || {
        server.ctl(&[
            "set_policy",
            &policy,
            &pattern,
            r#"{"max-length":2,"overflow":"reject-publish"}"#,
            "--apply-to",
            "queues",
        ])
    })
    .await
    .unwrap()
    .expect("rabbitmqctl set_policy");
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let (mut c, _) = gw.v1(&user).await;
    let mut refused = None;
    for i in 0..6 {
        let r = c
            .request(json!({"op": "publish", "queue": user, "message": format!("m{i}"), "ref": i}))
            .await;
        if r["op"] == "error" {
            refused = Some((i, r));
            break;
        }
    }
    let (at, r) = refused.expect("a publish past the length limit is refused");
    assert!(at >= 2, "refused too early: {r}");
    assert_eq!(r["code"], "invalid", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("length limit"),
        "{r}"
    );
}

#[tokio::test]
async fn kill_9_of_the_node_holding_1000_unacked_messages_loses_none() {
    use std::collections::HashSet;

    use support::{process::Process, v1_at};

    const MESSAGES: usize = 1000;
    let options = amqp_options();
    let url = options.url.expose().to_owned();
    let args = [
        "--amqp-url",
        url.as_str(),
        "--amqp-queue-prefix",
        options.queue_prefix.as_str(),
        "--amqp-exchange",
        options.exchange.as_str(),
        "--window",
        "1000",
    ];
    let mut a = Process::start(&args).await;
    let b = Process::start(&args).await;
    let user = format!("u{}", unique());
    let (mut on_a, _) = v1_at(a.public, &user).await;
    let r = on_a
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let engine = wsmq_gateway::engine::amqp::AmqpEngine::connect(options.clone(), None)
        .await
        .unwrap();
    let mut sent = HashSet::new();
    for i in 0..MESSAGES {
        sent.insert(engine.send(&user, &format!("m{i}"), None).await.unwrap());
    }
    // Node A hands all of them out; the client acks none.
    let mut held = HashSet::new();
    for _ in 0..MESSAGES {
        let msg = on_a.recv_json().await;
        assert_eq!(msg["rc"], 1, "{msg}");
        held.insert(msg["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(held, sent);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    drop(on_a);
    // RabbitMQ requeues what node A held the moment its connection drops; node B delivers
    // every one of them again.
    let (mut on_b, _) = v1_at(b.public, &user).await;
    let r = on_b
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let mut again = HashSet::new();
    let mut delivered = 0;
    while again.len() < MESSAGES {
        let msg = on_b.recv_json().await;
        if msg["op"] == "ok" {
            continue; // an ack's answer
        }
        assert_eq!(
            (&msg["op"], &msg["rc"]),
            (&json!("message"), &json!(2)),
            "{msg}"
        );
        let id = msg["id"].as_str().unwrap().to_owned();
        on_b.send_json(json!({"op": "ack", "queue": user, "id": id}))
            .await;
        again.insert(id);
        delivered += 1;
    }
    assert_eq!(again, sent, "every message came back");
    assert_eq!(delivered, MESSAGES, "none twice");
    // All acked: nothing is ready in the queue, and nothing but ack answers arrives.
    let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Some(text) = on_b.next_text(quiet - tokio::time::Instant::now()).await {
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["op"], "ok", "nothing delivered twice: {frame}");
    }
    let (ready, _) = engine.queue_counts(&user).await.unwrap();
    assert_eq!(ready, 0);
}

/// Queue rules as `wsmq-cli queue create --max-receives N --ttl S --dead-letter D` gives them.
fn rules(max_receives: u64, ttl: u64, dead_letter: Option<&str>) -> QueueRules {
    QueueRules {
        max_receives,
        ttl,
        dead_letter: dead_letter.map(str::to_owned),
    }
}

/// What `queue` holds once something arrives there (vt 30 s), waiting up to 3 s: a quorum
/// queue publishes what it dead-letters a moment after the reject or expiry.
async fn receive_soon(queues: &dyn QueueStore, queue: &str) -> Vec<QueueMessage> {
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let got = queues.receive(queue, 10, Some(30)).await.unwrap().messages;
        if !got.is_empty() || tokio::time::Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The next `message` frame, skipping the answers to acks and nacks.
async fn next_message(c: &mut support::Client) -> Value {
    loop {
        let frame = c.recv_json().await;
        if frame["op"] == "message" {
            return frame;
        }
    }
}

/// Issue 16.6: max receives N is the quorum queue's `x-delivery-limit` N - 1. RabbitMQ
/// dead-letters a message once it was returned more than the limit times, so with the limit
/// N - 1 a client sees it exactly N times (rc 1..=N), as with rsmq's maxreceives, and then it is
/// in the dead-letter queue with its id and body. (With the limit N it would come a 4th time.)
#[tokio::test]
async fn max_receives_3_delivers_exactly_three_times_then_the_dead_letter_queue_has_it() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let dlq = format!("{user}-dead");
    let engine = gw.engine().await;
    let queues = engine.queues.as_ref();
    assert!(
        queues
            .create_queue(&user, &rules(3, 0, Some(&dlq)))
            .await
            .unwrap()
    );
    let id = queues.send(&user, "poison", None).await.unwrap();
    // The gateway's subscribe finds the queue with its own arguments and keeps them.
    let (mut c, _) = gw.v1(&user).await;
    let ok = c
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(ok, json!({"op": "ok", "ref": 1}));
    for rc in 1..=3 {
        let msg = next_message(&mut c).await;
        assert_eq!(
            (
                msg["id"].as_str(),
                msg["message"].as_str(),
                msg["rc"].as_u64()
            ),
            (Some(id.as_str()), Some("poison"), Some(rc))
        );
        c.send_json(json!({"op": "nack", "queue": user, "id": id}))
            .await;
    }
    assert_eq!(c.recv_json().await["op"], "ok", "the third nack's answer");
    c.expect_silence(Duration::from_millis(800)).await;
    let dead = receive_soon(queues, &dlq).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].id.as_str(), dead[0].body.as_str(), dead[0].rc),
        (id.as_str(), "poison", 1)
    );
    c.close().await;
    gw.shutdown().await.unwrap();
    assert!(left_in_queue(&options, &user).await.is_empty());
}

/// The same mapping at its edges, through the engine alone: max receives 1 is one delivery,
/// and a queue with max receives but no dead-letter queue drops the message.
#[tokio::test]
async fn max_receives_counts_deliveries_at_its_edges_and_drops_without_a_dead_letter_queue() {
    let options = amqp_options();
    let engine = AmqpEngine::connect(options.clone(), None).await.unwrap();
    for (n, dlq) in [(1, true), (2, false)] {
        let q = format!("m{}", unique());
        let dead = format!("{q}-dead");
        let dlq = dlq.then_some(dead.as_str());
        assert!(engine.create_queue(&q, &rules(n, 0, dlq)).await.unwrap());
        let id = engine.send(&q, "poison", None).await.unwrap();
        let mut seen = 0;
        while let Some(got) = receive_soon(engine.as_ref(), &q).await.first().cloned() {
            seen += 1;
            assert_eq!((got.id.as_str(), got.rc), (id.as_str(), seen));
            assert!(seen <= n, "delivered {seen} times with max receives {n}");
            assert!(engine.nack(&q, &held(&got), 0).await.unwrap());
        }
        assert_eq!(seen, n);
        match dlq {
            Some(dlq) => {
                let dead = receive_soon(engine.as_ref(), dlq).await;
                assert_eq!(dead.len(), 1, "the dead-letter queue has it");
                assert_eq!(dead[0].id, id);
            }
            None => assert_eq!(engine.queue_counts(&q).await.unwrap().0, 0),
        }
    }
}

/// ttl S is `x-message-ttl` S × 1000: a message older than that is never delivered; it goes
/// to the dead-letter queue (with its id), or vanishes without one.
#[tokio::test]
async fn ttl_sends_an_old_message_to_the_dead_letter_queue_or_drops_it() {
    let options = amqp_options();
    let engine = AmqpEngine::connect(options.clone(), None).await.unwrap();
    let q = format!("t{}", unique());
    let dlq = format!("{q}-dead");
    let plain = format!("p{}", unique());
    assert!(
        engine
            .create_queue(&q, &rules(0, 1, Some(&dlq)))
            .await
            .unwrap()
    );
    assert!(
        engine
            .create_queue(&plain, &rules(0, 1, None))
            .await
            .unwrap()
    );
    let old = engine.send(&q, "old", None).await.unwrap();
    engine.send(&plain, "old", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let fresh = engine.send(&q, "fresh", None).await.unwrap();
    let got = engine.receive(&q, 10, Some(30)).await.unwrap().messages;
    let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [fresh.as_str()], "the old one is not delivered");
    let dead = receive_soon(engine.as_ref(), &dlq).await;
    assert_eq!(dead.len(), 1, "the dead-letter queue has it");
    assert_eq!(
        (dead[0].id.as_str(), dead[0].body.as_str()),
        (old.as_str(), "old")
    );
    assert!(
        engine
            .receive(&plain, 10, None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert_eq!(engine.queue_counts(&plain).await.unwrap().0, 0, "dropped");
}

/// `nack` with `"dead": true` moves the message to the dead-letter queue at once
/// (`basic.reject` without requeue): no further delivery, and its id kept.
#[tokio::test]
async fn nack_dead_moves_the_message_to_the_dead_letter_queue_at_once() {
    let options = amqp_options();
    let gw = gateway(&options).await;
    let user = format!("u{}", unique());
    let dlq = format!("{user}-dead");
    let engine = gw.engine().await;
    let queues = engine.queues.as_ref();
    queues
        .create_queue(&user, &rules(0, 0, Some(&dlq)))
        .await
        .unwrap();
    let (mut c, _) = gw.v1(&user).await;
    c.request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    let id = queues.send(&user, "cannot handle", None).await.unwrap();
    let msg = next_message(&mut c).await;
    assert_eq!(
        (msg["id"].as_str(), msg["rc"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    let r = c
        .request(json!({"op": "nack", "queue": user, "id": id, "dead": true, "ref": 2}))
        .await;
    assert_eq!(r, json!({"op": "ok", "ref": 2}));
    let dead = receive_soon(queues, &dlq).await;
    assert_eq!(dead.len(), 1, "the dead-letter queue has it");
    assert_eq!(
        (dead[0].id.as_str(), dead[0].body.as_str()),
        (id.as_str(), "cannot handle")
    );
    c.expect_silence(Duration::from_millis(300)).await;
    c.close().await;
    gw.shutdown().await.unwrap();
    assert!(left_in_queue(&options, &user).await.is_empty());
}

/// A release or dead-lettering that names an earlier delivery (another `rc`) does nothing:
/// the delivery the node holds stays held (issue 15.4 on RabbitMQ's delivery tags).
#[tokio::test]
async fn a_release_of_a_stale_held_does_nothing() {
    let options = amqp_options();
    let engine = AmqpEngine::connect(options.clone(), None).await.unwrap();
    let q = format!("s{}", unique());
    let dlq = format!("{q}-dead");
    engine
        .create_queue(&q, &rules(0, 0, Some(&dlq)))
        .await
        .unwrap();
    let id = engine.send(&q, "work", None).await.unwrap();
    let got = engine.receive(&q, 10, Some(30)).await.unwrap().messages;
    assert_eq!((got[0].id.as_str(), got[0].rc), (id.as_str(), 1));
    let stale = Held {
        id: id.clone(),
        rc: 2,
    };
    assert_eq!(
        engine
            .release(&q, std::slice::from_ref(&stale), 0)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        engine
            .release(&q, std::slice::from_ref(&stale), 5)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        engine
            .dead_letter(&q, std::slice::from_ref(&stale))
            .await
            .unwrap()
            .count,
        0
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        engine
            .receive(&q, 10, None)
            .await
            .unwrap()
            .messages
            .is_empty(),
        "still held by the first delivery"
    );
    assert!(
        engine
            .receive(&dlq, 10, None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // The holder's own release gives it back: delivered again, rc 2.
    assert!(engine.nack(&q, &held(&got[0]), 0).await.unwrap());
    let again = receive_soon(engine.as_ref(), &q).await;
    assert_eq!((again[0].id.as_str(), again[0].rc), (id.as_str(), 2));
}

/// An existing queue keeps its arguments: creating it again with other rules answers
/// "existed" (never a PRECONDITION_FAILED redeclaration), and a classic queue under a user's
/// name is refused with one clear line.
#[tokio::test]
async fn existing_queues_keep_their_arguments_and_classic_ones_are_refused() {
    let options = amqp_options();
    let engine = AmqpEngine::connect(options.clone(), None).await.unwrap();
    let q = format!("e{}", unique());
    assert!(engine.create_queue(&q, &rules(3, 60, None)).await.unwrap());
    let other = AmqpEngine::connect(options.clone(), None).await.unwrap();
    assert!(!other.create_queue(&q, &rules(5, 0, None)).await.unwrap());
    assert!(!other.ensure_queue(&q).await.unwrap());
    assert!(other.queue_exists(&q).await.unwrap());
    other.send(&q, "still works", None).await.unwrap();
    assert_eq!(other.receive(&q, 1, None).await.unwrap().messages.len(), 1);
    assert!(!other.queue_exists(&format!("{q}-none")).await.unwrap());

    // A classic queue made by someone else under a wsmq name.
    let classic = format!("c{}", unique());
    let conn = Connection::connect(rabbit().url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let name = format!("{}{classic}", options.queue_prefix);
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let err = other.ensure_queue(&classic).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Invalid(why) if why.contains("quorum")),
        "{err:?}"
    );
    channel
        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "done".into()).await.unwrap();
}
