//! Scenario: `kill -9` of the node a channel subscriber is on, while publications stream in
//! through the other node; the client reconnects to the surviving node and resubscribes with
//! `since` its last offset: it gets every publication, in order, none twice.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wsmq_proto::Grants;

use crate::{
    cluster::Cluster,
    report, user,
    ws::{Event, Ws, jwt},
};

/// Publications in the scenario.
const TOTAL: u64 = 2000;
/// Node B is killed once the subscriber has this many.
const KILL_AFTER: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "two gateway processes + redis-server: run by cargo xtask e2e"]
async fn kill_9_of_a_subscribers_node_loses_no_channel_message_after_recovery_on_the_other() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("history", &["--history-size", "5000"]).await;
    let room = format!("room-{}", std::process::id());
    let grants = Grants {
        subscribe: vec!["room-*".into()],
        publish: vec!["channel:room-*".into()],
        ..Grants::default()
    };
    let reader = user("hist-reader");
    let token = jwt(&reader, Some(grants.clone()));
    let (mut on_b, _) = Ws::v1(&cluster.b, &format!("{reader}@B"), &token).await;
    let ok = on_b
        .request(&json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let epoch = ok["epoch"].as_str().expect("an epoch").to_owned();
    let writer = user("hist-writer");
    let (mut publisher, _) = Ws::v1(
        &cluster.a,
        &format!("{writer}@A"),
        &jwt(&writer, Some(grants)),
    )
    .await;

    let publishing = async {
        for i in 1..=TOTAL {
            let ok = publisher
                .request(&json!({"op": "publish", "channel": room, "message": format!("m{i}")}))
                .await;
            assert_eq!(ok["offset"], i, "{ok}");
        }
    };
    let reading = async {
        let mut seen: Vec<u64> = Vec::new();
        let mut killed_at = None;
        // On node B until it dies (its socket closes).
        while let Some(Event::Text(text)) = on_b.next(Duration::from_secs(10)).await {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(frame["op"], "message", "{frame}");
            seen.push(frame["offset"].as_u64().unwrap());
            if seen.len() as u64 == KILL_AFTER && killed_at.is_none() {
                cluster.b.kill();
                killed_at = Some(Instant::now());
            }
        }
        let killed_at = killed_at.expect("node B was killed");
        // Reconnect to node A, recovering from the last offset seen.
        let last = seen.last().copied().unwrap_or(0);
        let (mut on_a, _) = Ws::v1(&cluster.a, &format!("{reader}@A"), &token).await;
        let ok = on_a
            .request(&json!({"op": "subscribe", "channel": room, "ref": 2,
                             "since": {"offset": last, "epoch": epoch}}))
            .await;
        assert_eq!(ok["recovered"], true, "{ok}");
        let recovered_at = killed_at.elapsed();
        while seen.last().copied().unwrap_or(0) < TOTAL {
            let frame = on_a.json().await;
            assert_eq!(frame["op"], "message", "{frame}");
            assert_eq!(frame["epoch"], epoch.as_str(), "{frame}");
            seen.push(frame["offset"].as_u64().unwrap());
        }
        on_a.expect_silence(Duration::from_millis(300)).await;
        (seen, recovered_at)
    };
    let ((), (seen, recovered_at)) = tokio::join!(publishing, reading);
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(seen, expected, "every publication once, in order");
    report(&format!(
        "history: {TOTAL} publications, node B killed after {KILL_AFTER}: 0 lost, 0 duplicated; \
         resubscribed on A {recovered_at:?} after the kill"
    ));
}
