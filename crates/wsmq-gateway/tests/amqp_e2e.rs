//! End to end on RabbitMQ: the Node chat's publisher (npm amqplib, `channel.publish` to the
//! direct exchange `wsmq.direct` with the user id as routing key) feeding a user whose socket
//! is on either of two `wsmq-gateway serve` processes sharing one broker, and `kill -9` of the
//! node holding 1,000 unacked messages.
//!
//! Run by `cargo xtask e2e amqp` (suite `amqp-two-nodes`), which installs `interop/`'s npm
//! packages; a plain `cargo test` lists this test as ignored. The broker is
//! `WSMQ_TEST_AMQP_URL`'s, or a `rabbitmq-server` node this test process starts. Measured
//! figures (duplicates, recovery time) are written to stderr past the harness's capture.

mod support;

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Client, amqp_options, process::Process, rabbit, unique, v1_at};
use wsmq_gateway::engine::amqp::{AmqpEngine, AmqpOptions};

/// The chat's exchange, so the publisher is exactly the chat's.
const EXCHANGE: &str = "wsmq.direct";
/// The gateways' `--window`, and so node A's prefetch: what it holds unacked when killed.
const WINDOW: usize = 1000;
/// Published beyond the window: still on the broker, never delivered, when node A dies.
const BEYOND: usize = 200;
/// Published while the user is on node B, before and after the kill.
const LIVE: usize = 10;
/// Bound of each wait for the next frame while the stream is expected to flow.
const FRAME_WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "two gateway processes + npm amqplib (interop/): run by cargo xtask e2e amqp"]
async fn amqplib_publishes_to_either_node_and_kill_9_of_the_holder_loses_nothing() {
    let options = AmqpOptions {
        exchange: EXCHANGE.into(),
        ..amqp_options()
    };
    let url = options.url.expose().to_owned();
    let window = WINDOW.to_string();
    let args = [
        "--amqp-url",
        url.as_str(),
        "--amqp-queue-prefix",
        options.queue_prefix.as_str(),
        "--amqp-exchange",
        EXCHANGE,
        "--window",
        window.as_str(),
    ];
    let mut a = Process::start(&args).await;
    let mut b = Process::start(&args).await;
    let user = format!("chat{}", unique());

    // Node B first: the session declares the user's queue, the chat's publisher reaches it.
    let (mut on_b, _) = v1_at(b.public, &user).await;
    subscribe(&mut on_b, &user).await;
    let early: Vec<String> = (0..LIVE).map(|i| format!("to b {i}")).collect();
    amqplib_publish(&user, &early).await;
    for body in &early {
        let msg = next_message(&mut on_b).await;
        assert_eq!((&msg["message"], &msg["rc"]), (&json!(body), &json!(1)));
        ack(&mut on_b, &user, &msg).await;
    }
    on_b.close().await;

    // Node A: the user's socket takes a window's worth and acks none of it.
    let (mut on_a, _) = v1_at(a.public, &user).await;
    subscribe(&mut on_a, &user).await;
    let bodies: Vec<String> = (0..WINDOW + BEYOND).map(|i| format!("m{i:05}")).collect();
    amqplib_publish(&user, &bodies).await;
    let mut ids = HashMap::new();
    for _ in 0..WINDOW {
        let msg = next_message(&mut on_a).await;
        assert_eq!(msg["rc"], 1, "{msg}");
        let body = msg["message"].as_str().expect("a body").to_owned();
        let id = msg["id"].as_str().expect("an id").to_owned();
        assert!(ids.insert(body, id).is_none(), "node A twice: {msg}");
    }
    // The rest wait on the broker behind A's prefetch.
    on_a.expect_silence(Duration::from_millis(500)).await;
    // Node B cancels its consumer when its session ends, but not in step with the close frame.
    let engine = AmqpEngine::connect(options.clone(), None).await.unwrap();
    let settle = Instant::now() + FRAME_WAIT;
    loop {
        let (ready, consumers) = engine.queue_counts(&user).await.unwrap();
        if (ready as usize, consumers) == (BEYOND, 1) || Instant::now() > settle {
            assert_eq!((ready as usize, consumers), (BEYOND, 1), "ready, consumers");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    a.child.kill().expect("SIGKILL node A");
    a.child.wait().expect("node A exits");
    let killed = Instant::now();
    drop(on_a);

    // The user comes back on node B and gets everything: A's 1,000 redelivered, the rest fresh.
    let (mut on_b, _) = v1_at(b.public, &user).await;
    subscribe(&mut on_b, &user).await;
    let reconnected = killed.elapsed();
    let mut got: HashMap<String, usize> = HashMap::new();
    let mut deliveries = 0;
    let mut redelivered = 0;
    let mut max_rc = 0;
    while got.len() < bodies.len() {
        let msg = next_message(&mut on_b).await;
        let body = msg["message"].as_str().expect("a body").to_owned();
        let rc = msg["rc"].as_u64().expect("an rc");
        deliveries += 1;
        max_rc = max_rc.max(rc);
        match ids.get(&body) {
            Some(id) => {
                assert!(rc >= 2, "held by node A, so redelivered: {msg}");
                assert_eq!(msg["id"].as_str(), Some(id.as_str()), "stable id: {msg}");
                redelivered += 1;
            }
            None => {
                assert!(bodies.contains(&body), "not published: {msg}");
                assert_eq!(rc, 1, "never delivered before: {msg}");
            }
        }
        *got.entry(body).or_default() += 1;
        ack(&mut on_b, &user, &msg).await;
    }
    let all_back = killed.elapsed();
    // New messages reach the user on B as well.
    let late: Vec<String> = (0..LIVE).map(|i| format!("after the kill {i}")).collect();
    amqplib_publish(&user, &late).await;
    for body in &late {
        let msg = next_message(&mut on_b).await;
        assert_eq!((&msg["message"], &msg["rc"]), (&json!(body), &json!(1)));
        ack(&mut on_b, &user, &msg).await;
    }
    // Anything delivered again after the last ack is a duplicate too.
    while let Some(text) = on_b.next_text(Duration::from_millis(500)).await {
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["op"], "message", "{frame}");
        let body = frame["message"].as_str().expect("a body").to_owned();
        assert!(got.contains_key(&body), "not published: {frame}");
        *got.get_mut(&body).unwrap() += 1;
        deliveries += 1;
        ack(&mut on_b, &user, &frame).await;
    }
    on_b.close().await;

    let published: HashSet<&String> = bodies.iter().collect();
    let received: HashSet<&String> = got.keys().collect();
    assert_eq!(received, published, "0 lost");
    assert_eq!(redelivered, WINDOW, "node A's whole window came back");
    // Every ack was answered `ok`; a clean stop of B would requeue anything it still held, so
    // an empty queue afterwards means every message was acked on the broker.
    b.signal("TERM");
    assert_eq!(b.exit_code(Duration::from_secs(20)).await, Some(0));
    assert_eq!(
        engine.queue_counts(&user).await.unwrap(),
        (0, 0),
        "the queue ends empty"
    );
    let duplicates = deliveries - got.len();
    report(&format!(
        "amqp kill -9: npm amqplib published {} to {EXCHANGE}; node A held {WINDOW} unacked \
         ({BEYOND} waited on the broker) and was killed; on node B {deliveries} deliveries, \
         {} distinct, 0 lost, {duplicates} duplicates, {redelivered} redelivered (max rc \
         {max_rc}); back on B {reconnected:?} after the kill, all delivered {all_back:?} after \
         it; queue empty after the acks",
        bodies.len(),
        got.len(),
    ));
}

/// Subscribes `client` to `queue`.
async fn subscribe(client: &mut Client, queue: &str) {
    let reply = client
        .request(json!({"op": "subscribe", "queue": queue, "ref": "sub"}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": "sub"}));
}

/// The next `message` frame within [`FRAME_WAIT`].
async fn next_message(client: &mut Client) -> Value {
    let text = client
        .next_text(FRAME_WAIT)
        .await
        .unwrap_or_else(|| panic!("no message within {FRAME_WAIT:?}"));
    let frame: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(frame["op"], "message", "{frame}");
    frame
}

/// Acks `msg` and waits for the gateway's `ok`, which it sends once the broker has the ack.
async fn ack(client: &mut Client, queue: &str, msg: &Value) {
    let reply = client
        .request(json!({"op": "ack", "queue": queue, "id": msg["id"], "ref": "ack"}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": "ack"}), "ack of {msg}");
}

/// Publishes `bodies` to `user` as the chat does, with `interop/amqp-publish.js` (npm
/// amqplib, one confirm channel), and returns once the broker confirmed them all.
async fn amqplib_publish(user: &str, bodies: &[String]) {
    let dir = std::env::var_os("WSMQ_NODE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop"),
        PathBuf::from,
    );
    assert!(
        dir.join("node_modules/amqplib/package.json").is_file(),
        "npm amqplib is not installed in {}: run `cargo xtask e2e amqp` or `npm ci` there",
        dir.display()
    );
    let run = tokio::process::Command::new("node")
        .arg("amqp-publish.js")
        .arg(rabbit().url())
        .arg(EXCHANGE)
        .arg(user)
        .args(bodies)
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("amqp-publish.js finishes within 30 s")
        .unwrap_or_else(|err| panic!("cannot start node ({err}): install Node.js 18+"));
    let expected = json!({"ok": bodies.len()});
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success() && printed == expected,
        "amqp-publish.js: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reports a measured figure on the raw stderr, which the test harness does not capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e: {line}");
}
