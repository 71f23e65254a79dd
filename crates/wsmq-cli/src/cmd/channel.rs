//! `channel history`: the latest publications of a channel with history, read from the STREAM
//! and HASH the gateways keep (`wsmq:hist:{c}`, `wsmq:hist:{c}:pos`; see `wsmq_proto::keys`).
//! Read only: unlike a gateway's read, it creates nothing for a channel without history.

use anyhow::Context;
use wsmq_proto::keys;

use super::{Ctx, check_channel_name, conn};

/// Most publications one call prints, as the `history` op.
const MAX_LIMIT: u32 = 1000;

/// Prints up to `limit` publications before `before` (exclusive), oldest first.
pub(crate) async fn history(
    ctx: &Ctx,
    channel: &str,
    limit: u32,
    before: Option<u64>,
) -> anyhow::Result<()> {
    check_channel_name(channel)?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        anyhow::bail!("--limit must be from 1 to {MAX_LIMIT}, not {limit}");
    }
    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;
    let (epoch, offset): (Option<String>, Option<u64>) = redis::cmd("HMGET")
        .arg(keys::history_position(channel))
        .arg("epoch")
        .arg("offset")
        .query_async(&mut conn)
        .await?;
    let Some(epoch) = epoch else {
        anyhow::bail!(
            "channel '{channel}' has no history (the gateways keep none for it, or it expired)"
        );
    };
    let entries = match before {
        Some(before) if before <= 1 => Vec::new(),
        _ => {
            let end = before.map_or("+".to_owned(), |b| format!("({b}-0"));
            let raw: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
                .arg(keys::history_stream(channel))
                .arg(end)
                .arg("-")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn)
                .await?;
            let mut entries = raw
                .into_iter()
                .map(entry)
                .collect::<anyhow::Result<Vec<_>>>()?;
            entries.reverse();
            entries
        }
    };
    ctx.out
        .history(channel, &epoch, offset.unwrap_or(0), &entries)
}

/// `(offset, sent ms, body)` of one stream entry: id `{offset}-0`, fields `m` and `t`.
fn entry((id, fields): (String, Vec<String>)) -> anyhow::Result<(u64, u64, String)> {
    let offset = id
        .strip_suffix("-0")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected history entry id {id:?}"))?;
    let mut body = None;
    let mut sent = 0;
    for pair in fields.chunks(2) {
        match pair {
            [k, v] if k == "m" => body = Some(v.clone()),
            [k, v] if k == "t" => sent = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    let body = body.with_context(|| format!("history entry {id} has no body"))?;
    Ok((offset, sent, body))
}
