//! `receive`: take up to N visible messages from a queue, print them, and optionally delete
//! them (the CLI's equivalent of a client's `ack`).

use super::{Ctx, check_queue_name, queue_error};
use crate::cli::ReceiveArgs;

/// Receives, prints and (with `--delete`) deletes messages.
pub(crate) async fn run(ctx: &Ctx, args: ReceiveArgs) -> anyhow::Result<()> {
    let queue = &args.queue;
    check_queue_name(queue)?;
    let rsmq = ctx.connect(false).await?;
    let messages = rsmq
        .receive_batch(queue, args.count as usize, args.vt)
        .await
        .map_err(|err| queue_error(queue, err))?;
    // Printed before deleting: if the delete fails, the messages were at least seen, and they
    // come back after their vt like any unacknowledged message.
    ctx.out.messages(queue, &messages)?;
    if args.delete && !messages.is_empty() {
        let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        let deleted = rsmq
            .delete_batch(queue, &ids)
            .await
            .map_err(|err| queue_error(queue, err))?;
        ctx.out
            .note(format!("deleted {deleted} of {} messages", ids.len()));
    }
    Ok(())
}
