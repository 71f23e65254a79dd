//! Node identity at runtime: the heartbeat key, and the start of the revocation worker.
//!
//! Every 5 s the node writes `wsmq:node:{id}` (JSON [`NodeHeartbeat`], TTL
//! [`NODE_TTL_SECS`]) so `wsmq-cli nodes` can list live nodes with their connection counts;
//! the key is deleted on a clean shutdown. The in-memory engine makes both no-ops.
//! Revocations (`wsmq:revoke`, from any node or the CLI) close the user's local sessions
//! with 4003 (see [`crate::revocation`]).

use std::{sync::Arc, time::Duration};

use tracing::warn;
use wsmq_proto::{NodeHeartbeat, keys::NODE_TTL_SECS};

use crate::state::Gateway;

/// How often the heartbeat is written (well within the TTL).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

// The heartbeat must be refreshed several times per TTL, or nodes would flicker.
const _: () = assert!(HEARTBEAT_EVERY.as_secs() * 2 < NODE_TTL_SECS);

/// Starts the heartbeat and the revocation worker on the shutdown tracker.
pub(crate) fn spawn_workers(gateway: &Arc<Gateway>) {
    let g = Arc::clone(gateway);
    gateway.shutdown.spawn(async move {
        let token = g.shutdown.token.clone();
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(err) = g.engine.cluster.write_heartbeat(&heartbeat(&g)).await {
                let node = g.config.node_id.as_str();
                g.metrics.engine_failed("heartbeat", node, &err, false);
            }
        }
    });
    crate::revocation::spawn_worker(gateway);
}

/// Deletes this node's heartbeat (clean shutdown).
pub(crate) async fn remove_heartbeat(gateway: &Gateway) {
    let remove = gateway
        .engine
        .cluster
        .remove_heartbeat(&gateway.config.node_id);
    match tokio::time::timeout(Duration::from_secs(2), remove).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(cause = %err, "could not delete the heartbeat key; it expires"),
        Err(_) => warn!("deleting the heartbeat key timed out; it expires"),
    }
}

/// What the node says about itself now.
pub(crate) fn heartbeat(gateway: &Gateway) -> NodeHeartbeat {
    NodeHeartbeat {
        id: gateway.config.node_id.clone(),
        addr: gateway.addr.to_string(),
        started: gateway.started,
        connections: gateway.metrics.connections.get().max(0) as u64,
        subscriptions: gateway.metrics.subscriptions.get().max(0) as u64,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        draining: gateway.is_draining(),
    }
}
