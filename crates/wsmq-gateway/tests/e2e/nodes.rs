//! `wsmq-cli nodes` against live gateway processes: both nodes are listed with the sessions
//! they hold, and a node that stops cleanly leaves the list at once (its heartbeat key is
//! deleted on shutdown rather than left to expire).
//!
//! Heartbeats are global to the Redis (`wsmq:node:*`), and other tests of the suite run their
//! own nodes at the same time, so this test looks only at the two node ids it started.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    cluster::Cluster,
    user,
    ws::{Ws, jwt},
};

/// Heartbeats are written every 5 s; allow two rounds and a slow machine.
const HEARTBEAT_WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
#[ignore = "two gateway processes + node: run by cargo xtask e2e"]
async fn wsmq_cli_nodes_lists_live_nodes_with_their_connection_counts() {
    let _machine = crate::shared_machine().await;
    let cluster = Cluster::start("nodes", &[]).await;
    let alice = user("nodes-alice");
    let bob = user("nodes-bob");

    // One session on A, two on B, each with a queue subscription.
    let mut sessions = Vec::new();
    for (gateway, who) in [
        (&cluster.a, &alice),
        (&cluster.b, &bob),
        (&cluster.b, &alice),
    ] {
        let (mut ws, _) = Ws::v1(gateway, who, &jwt(who, None)).await;
        let reply = ws
            .request(&json!({"op": "subscribe", "queue": who, "ref": 1}))
            .await;
        assert_eq!(reply, json!({"op": "ok", "ref": 1}));
        sessions.push(ws);
    }

    let want = [(&cluster.a.node_id, 1), (&cluster.b.node_id, 2)];
    let deadline = Instant::now() + HEARTBEAT_WAIT;
    let listed = loop {
        let nodes = ours(&cluster, &[&cluster.a.node_id, &cluster.b.node_id]).await;
        let counts: Vec<_> = want
            .iter()
            .map(|(id, _)| {
                nodes
                    .iter()
                    .find(|n| n["id"] == json!(id))
                    .map(|n| (n["connections"].as_u64(), n["subscriptions"].as_u64()))
            })
            .collect();
        let expected: Vec<_> = want
            .iter()
            .map(|(_, n)| Some((Some(*n), Some(*n))))
            .collect();
        if counts == expected {
            break nodes;
        }
        assert!(
            Instant::now() < deadline,
            "wsmq-cli nodes did not show A with 1 and B with 2 sessions within {HEARTBEAT_WAIT:?}: {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for node in &listed {
        assert_eq!(node["draining"], json!(false), "{node}");
        assert!(
            node["addr"].as_str().is_some_and(|a| !a.is_empty()),
            "{node}"
        );
    }

    // The human table names both nodes too.
    let table = cluster.cli(&["nodes"]).await;
    for id in [&cluster.a.node_id, &cluster.b.node_id] {
        assert!(table.contains(id.as_str()), "{id} missing from:\n{table}");
    }

    // A clean stop removes B's heartbeat at once, without waiting for the TTL.
    for ws in sessions {
        ws.close().await;
    }
    cluster.b.terminate();
    // Under 10 s: a heartbeat refreshed every 5 s with a 15 s TTL cannot expire sooner, so
    // only the delete on shutdown passes this.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let nodes = ours(&cluster, &[&cluster.b.node_id]).await;
        if nodes.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B still listed 5 s after SIGTERM: {nodes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The entries of `wsmq-cli --json nodes` whose id is one of `ids`.
async fn ours(cluster: &Cluster, ids: &[&String]) -> Vec<Value> {
    let out = cluster.cli(&["--json", "nodes"]).await;
    let all: Vec<Value> = serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("wsmq-cli --json nodes printed no JSON array ({err}): {out}"));
    all.into_iter()
        .filter(|n| ids.iter().any(|id| n["id"] == json!(id)))
        .collect()
}
