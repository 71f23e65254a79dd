//! `nodes`: the live gateway nodes, read from the heartbeat keys they refresh
//! (`wsmq:node:{id}`, JSON, with a TTL so that dead nodes drop out on their own).

use wsmq_proto::{NodeHeartbeat, keys};

use super::{Ctx, conn, redis_time};

/// Keys per SCAN step and per MGET: one round trip covers a large fleet, and no single
/// command holds Redis for long.
const STEP: usize = 500;

/// Lists the nodes, sorted by id.
pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;

    let mut node_keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys::NODE_PATTERN)
            .arg("COUNT")
            .arg(STEP)
            .query_async(&mut conn)
            .await?;
        node_keys.extend(found);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
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
