//! Scenario 4: a delayed message reaches an idle subscriber on time. The gateways poll only
//! every 30 s, so only the realtime notification of the send plus the node's timer for "the next
//! message becomes visible at…" can deliver it; the subscriber sends nothing after subscribing.
//!
//! Lateness is the arrival, read on the Redis clock (the local clock with an offset calibrated
//! once against Redis `TIME`), minus the due time `sent + delay * 1000` (`sent` is the Redis
//! time of the send, from the message id).

use std::time::Duration;

use serde_json::{Value, json};
use wsmq_proto::Grants;

use crate::{
    cluster::Cluster,
    report,
    store::{self, RedisClock, local_us, wait_subscribers},
    user,
    ws::{Event, Ws, jwt},
};

/// The most a delayed message may arrive after its due time.
const MAX_LATENESS_MS: f64 = 50.0;
/// The most it may seem early: the calibration's uncertainty, not a real early delivery (Redis
/// will not hand out a message before its score).
const MAX_EARLINESS_MS: f64 = 2.0;

#[tokio::test]
#[ignore = "two gateway processes + node: run by cargo xtask e2e"]
async fn a_delayed_message_reaches_an_idle_subscriber_within_50_ms_of_its_due_time() {
    let _machine = crate::whole_machine().await;
    let cluster = Cluster::start("delayed", &["--poll-interval", "30s"]).await;
    let user = user("delayed");
    let mut conn = store::connect(&cluster.redis_url).await;
    let (mut subscriber, _) = Ws::v1(&cluster.a, &user, &jwt(&user, None)).await;
    let reply = subscriber
        .request(&json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 1}));
    wait_subscribers(&mut conn, &format!("{}:rt:{user}", cluster.ns), 1).await;
    let clock = RedisClock::calibrate(&mut conn).await;
    report(&format!(
        "delayed: local clock calibrated against Redis TIME: offset {:+.3} ms, round trip {} µs",
        clock.offset_ms(),
        clock.rtt_us
    ));

    // 1. `wsmq-cli send --delay 2`.
    let out = cluster
        .cli(&[
            "send",
            "--queue",
            &user,
            "--message",
            "via cli",
            "--delay",
            "2",
        ])
        .await;
    let cli_id = out.trim().to_owned();
    let (frame, late_cli) = arrival(&mut subscriber, &clock, 2).await;
    assert_eq!(
        (frame["id"].as_str(), &frame["message"]),
        (Some(cli_id.as_str()), &json!("via cli"))
    );

    // 2. A v1 publish with delay 1 by another client, on node B.
    let sender_id = user.clone() + "-sender";
    let grants = Grants {
        publish: vec![format!("queue:{user}")],
        ..Grants::default()
    };
    let (mut sender, _) = Ws::v1(&cluster.b, &sender_id, &jwt(&sender_id, Some(grants))).await;
    let request =
        json!({"op": "publish", "queue": user, "message": "via v1", "delay": 1, "ref": 2});
    let reply = sender.request(&request).await;
    assert_eq!(reply["op"], "ok", "{reply}");
    let (frame, late_v1) = arrival(&mut subscriber, &clock, 1).await;
    assert_eq!(
        (&frame["id"], &frame["message"]),
        (&reply["id"], &json!("via v1"))
    );

    report(&format!(
        "delayed: lateness after the due time: wsmq-cli --delay 2: {late_cli:.3} ms; \
         v1 publish delay 1 on B: {late_v1:.3} ms (limit {MAX_LATENESS_MS} ms, poll interval 30 s)"
    ));
    for (what, late) in [
        ("wsmq-cli --delay 2", late_cli),
        ("v1 publish delay 1", late_v1),
    ] {
        assert!(
            (-MAX_EARLINESS_MS..=MAX_LATENESS_MS).contains(&late),
            "{what}: arrived {late:.3} ms after its due time"
        );
    }

    // Done: both acked, the queue is empty.
    for (reference, id) in [(3, cli_id.as_str()), (4, reply["id"].as_str().unwrap())] {
        let ack = json!({"op": "ack", "queue": user, "id": id, "ref": reference});
        assert_eq!(
            subscriber.request(&ack).await,
            json!({"op": "ok", "ref": reference})
        );
    }
    let stats = cluster.queue_stats(&user).await;
    assert_eq!(
        (&stats["msgs"], &stats["hiddenmsgs"]),
        (&json!(0), &json!(0)),
        "{stats}"
    );
    sender.close().await;
    subscriber.close().await;
}

/// Waits for the next message (at most `delay` + 3 s) and returns it with its lateness in ms.
async fn arrival(ws: &mut Ws, clock: &RedisClock, delay: u64) -> (Value, f64) {
    let event = ws.next(Duration::from_secs(delay + 3)).await;
    let arrived = local_us();
    let frame: Value = match event {
        Some(Event::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!(
            "{}: {other:?} instead of the message delayed {delay} s (poll interval is 30 s)",
            ws.label
        ),
    };
    assert_eq!(frame["op"], "message", "{frame}");
    assert_eq!(frame["rc"], 1, "{frame}");
    let sent = frame["sent"].as_u64().expect("a sent time") as f64;
    let due = sent + delay as f64 * 1000.0;
    (frame, clock.redis_ms(arrived) - due)
}
