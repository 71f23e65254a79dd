//! What a session that ends leaves in its queues: the acks it sent and the legacy deliveries
//! written to it count, even when the client closes right after; only the rest is handed back.
//! Each behaviour runs against the in-memory engine and against Redis.

#[macro_use]
mod support;

use std::{collections::HashSet, time::Duration};

use futures_util::SinkExt;
use serde_json::json;
use support::{TestGateway, unique};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for the gateway to finish with an ended session.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until no subscription task of the gateway is left (the ended sessions' tasks have
/// applied what they were sent and handed back the rest), then returns.
async fn wait_subscriptions_ended(gw: &TestGateway) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let (status, metrics) = gw.http("GET", "/metrics", &[], "").await;
        assert_eq!(status, 200, "{metrics}");
        if metrics.lines().any(|line| line == "wsmq_subscriptions 0") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscriptions still running {SETTLE_TIMEOUT:?} after the session ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Messages in the queue, visible or not.
async fn queue_len(gw: &TestGateway, queue: &str) -> u64 {
    match (&gw.memory, rsmq(gw).await) {
        (Some(memory), _) => memory.queue_len(queue) as u64,
        (None, Some(rsmq)) => rsmq.get_queue_attributes(queue).await.unwrap().msgs,
        (None, None) => unreachable!("a gateway has an engine"),
    }
}

/// An rsmq client on the gateway's namespace, when the engine is Redis.
async fn rsmq(gw: &TestGateway) -> Option<wsmq_rsmq::Rsmq> {
    let url = gw.redis_url.as_deref()?;
    let options = wsmq_rsmq::RsmqOptions {
        ns: gw.ns.clone(),
        realtime: false,
        cluster: false,
    };
    Some(wsmq_rsmq::Rsmq::connect(url, options).await.unwrap())
}

/// Messages sent (bodies `m0`, `m1`, …) before the client subscribes.
const COUNT: usize = 200;

async fn acks_then_close(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let engine = gw.queues().await;
    engine.ensure_queue(&q).await.unwrap();
    for i in 0..COUNT {
        engine.send(&q, &format!("m{i}"), None).await.unwrap();
    }
    let (mut c, _) = gw.v1(&q).await;
    let r = c.request(json!({"op": "subscribe", "queue": q})).await;
    assert_eq!(r["op"], "ok", "{r}");
    let mut ids = Vec::new();
    for _ in 0..COUNT {
        let m = c.recv_json().await;
        assert_eq!(m["op"], "message", "{m}");
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    // Every ack, then the close, without reading a single `ok`: they reach the gateway
    // together, and the gateway must apply the acks before it hands back what is in flight.
    for (n, id) in ids.iter().enumerate() {
        let ack = json!({"op": "ack", "queue": q, "id": id, "ref": n});
        c.ws.feed(Message::text(ack.to_string())).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    c.close().await;
    wait_subscriptions_ended(gw).await;
    assert_eq!(
        queue_len(gw, &q).await,
        0,
        "acked messages were handed back instead of deleted"
    );
}

#[tokio::test]
async fn acks_sent_just_before_a_close_are_applied() {
    // Every message in flight at once.
    on_both_engines!(
        |gw| acks_then_close(&gw).await,
        |c: &mut wsmq_gateway::Config| c.limits.window = COUNT
    );
}

async fn acks_then_unsubscribe(gw: &TestGateway) {
    let q = format!("q{}", unique());
    let engine = gw.queues().await;
    engine.ensure_queue(&q).await.unwrap();
    for i in 0..3 {
        engine.send(&q, &format!("m{i}"), None).await.unwrap();
    }
    let (mut c, _) = gw.v1(&q).await;
    let r = c.request(json!({"op": "subscribe", "queue": q})).await;
    assert_eq!(r["op"], "ok", "{r}");
    let mut acks = Vec::new();
    for n in 0..3 {
        let m = c.recv_json().await;
        acks.push(json!({"op": "ack", "queue": q, "id": m["id"], "ref": n}).to_string());
    }
    acks.push(json!({"op": "unsubscribe", "queue": q, "ref": "u"}).to_string());
    for frame in acks {
        c.ws.feed(Message::text(frame)).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    // Each ack is answered, although the subscription ended right after them.
    let mut replies = Vec::new();
    for _ in 0..4 {
        let r = c.recv_json().await;
        assert_eq!(r["op"], "ok", "{r}");
        replies.push(r["ref"].to_string());
    }
    replies.sort();
    assert_eq!(replies, ["\"u\"", "0", "1", "2"]);
    assert_eq!(queue_len(gw, &q).await, 0);
}

#[tokio::test]
async fn acks_sent_just_before_an_unsubscribe_are_applied_and_answered() {
    on_both_engines!(|gw| acks_then_unsubscribe(&gw).await, |_| {});
}

/// Legacy messages sent: the first window (64 by default) and some.
const LEGACY_COUNT: usize = 96;
/// Legacy frames the client reads before it closes: a few of the first window.
const READ: usize = 16;
/// The client's receive buffer, fixed (no autotuning).
const RECV_BUFFER: u32 = 64 * 1024;

/// The size of legacy bodies, chosen so that the gateway is still writing the first window
/// when the client closes. On Redis the queue is created without a size limit, and the 48
/// frames after the 16 read (12 MiB) are more than the sockets in between buffer (Linux
/// autotunes a send buffer up to 4 MiB by default). The in-memory engine takes 64 KiB at
/// most, which is enough there: it refills the window at once, keeping the socket full.
async fn legacy_body_len(gw: &TestGateway, queue: &str) -> usize {
    match rsmq(gw).await {
        None => 60 * 1024,
        Some(rsmq) => {
            let unlimited = wsmq_rsmq::QueueOptions {
                maxsize: Some(-1),
                ..Default::default()
            };
            rsmq.create_queue(queue, &unlimited).await.unwrap();
            256 * 1024
        }
    }
}

async fn legacy_read_then_close(gw: &TestGateway) {
    let user = format!("u{}", unique());
    let engine = gw.queues().await;
    let len = legacy_body_len(gw, &user).await;
    engine.ensure_queue(&user).await.unwrap();
    for i in 0..LEGACY_COUNT {
        let body = format!("m{i} {}", "x".repeat(len));
        engine.send(&user, &body, None).await.unwrap();
    }
    let mut c = gw.legacy_small_buffer(&user, RECV_BUFFER).await;
    c.send_text(&format!("/subscribe/{user}")).await;
    let mut read = HashSet::new();
    for _ in 0..READ {
        let frame: serde_json::Value = serde_json::from_str(&c.recv_text().await).unwrap();
        read.insert(name(frame["message"].as_str().unwrap()).to_owned());
    }
    // Closing reads (and drops) what is still on its way until the gateway's close arrives:
    // that completes the write the gateway was in the middle of.
    c.close().await;
    wait_subscriptions_ended(gw).await;
    // What is left was handed back (visible now, not after the vt) and was never written.
    let left = queue_len(gw, &user).await;
    let visible = engine
        .receive(&user, LEGACY_COUNT, None)
        .await
        .unwrap()
        .messages;
    assert_eq!(visible.len() as u64, left, "messages left hidden");
    let again: Vec<&str> = visible
        .iter()
        .map(|d| name(&d.body))
        .filter(|name| read.contains(*name))
        .collect();
    assert!(
        again.is_empty(),
        "{} of the {READ} messages the client read are still queued: {again:?}",
        again.len()
    );
}

/// `m7` of a body `m7 xxx…`.
fn name(body: &str) -> &str {
    body.split_once(' ').map_or(body, |(name, _)| name)
}

#[tokio::test]
async fn legacy_messages_written_before_a_close_are_not_delivered_again() {
    on_both_engines!(|gw| legacy_read_then_close(&gw).await, |_| {});
}
