//! `nodes`: the live gateway nodes, read from the heartbeat keys they refresh
//! (`wsmq:node:{id}`, JSON, with a TTL so that dead nodes drop out on their own).

use wsmq_proto::{NodeHeartbeat, keys};

use super::{Ctx, conn, redis_time};

/// Keys per MGET: one round trip covers a large fleet, and no single command holds Redis for
/// long (on a cluster, redis-rs splits it per slot).
const STEP: usize = 500;

/// Lists the nodes, sorted by id.
pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;

    // On a cluster, every master's keys.
    let mut node_keys = rsmq.scan(keys::NODE_PATTERN).await?;
    // SCAN may return a key more than once while Redis rehashes.
    node_keys.sort();
    node_keys.dedup();

    let mut nodes = Vec::with_capacity(node_keys.len());
    for chunk in node_keys.chunks(STEP) {
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
        for (key, value) in chunk.iter().zip(values) {
            // `None`: the heartbeat expired between SCAN and MGET, so the node is gone.
            let Some(json) = value else { continue };
            match serde_json::from_str::<NodeHeartbeat>(&json) {
                Ok(node) => nodes.push(node),
                Err(err) => ctx.out.note(format!(
                    "warning: skipping {key}: not a node heartbeat ({err})"
                )),
            }
        }
    }
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    let now = redis_time(&mut conn).await?;
    ctx.out.nodes(&nodes, now)
}
