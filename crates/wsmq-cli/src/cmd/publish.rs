//! `publish`: broadcast a message on a wsmq channel, exactly as a gateway relays a client's
//! channel publish (Redis `PUBLISH` on `wsmq:ch:{channel}`).

use wsmq_proto::keys;

use super::{Ctx, check_channel_name, conn};
use crate::cli::PublishArgs;

/// Publishes and reports how many nodes received the message.
pub(crate) async fn run(ctx: &Ctx, args: PublishArgs) -> anyhow::Result<()> {
    check_channel_name(&args.channel)?;
    let rsmq = ctx.connect(false).await?;
    let mut conn = conn(&rsmq).await?;
    // Each node subscribes once per channel that has local subscribers, so PUBLISH's
    // receiver count is the number of nodes that will deliver the message.
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg(keys::channel(&args.channel))
        .arg(&args.message)
        .query_async(&mut conn)
        .await?;
    ctx.out.published(&args.channel, receivers)
}
