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
    // On a cluster, sharded pub/sub in the channel's slot, as the gateways subscribe.
    let mut publish = if rsmq.is_cluster() {
        let mut cmd = redis::cmd("SPUBLISH");
        cmd.arg(keys::Carrier::Plain.sharded(&args.channel));
        cmd
    } else {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(keys::channel(&args.channel));
        cmd
    };
    let receivers: u64 = publish.arg(&args.message).query_async(&mut conn).await?;
    ctx.out.published(&args.channel, receivers)
}
