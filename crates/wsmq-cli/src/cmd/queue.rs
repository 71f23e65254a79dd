//! `queue list | stats | create | set | delete`: queue administration over the rsmq API.

use wsmq_rsmq::QueueOptions;

use super::{Ctx, check_queue_name, queue_error};
use crate::cli::{QueueAttrArgs, QueueCmd};

/// Runs one queue subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::List => list(ctx).await,
        QueueCmd::Stats { queue } => stats(ctx, &queue).await,
        QueueCmd::Create { queue, attrs } => create(ctx, &queue, &attrs).await,
        QueueCmd::Set { queue, attrs } => set(ctx, &queue, &attrs).await,
        QueueCmd::Delete { queue } => delete(ctx, &queue).await,
    }
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let rsmq = ctx.connect(false).await?;
    // Redis returns a SET in no particular order; sorted output is stable and easy to scan.
    let mut names = rsmq.list_queues().await?;
    names.sort();
    ctx.out.queues(rsmq.ns(), &names)
}

async fn stats(ctx: &Ctx, queue: &str) -> anyhow::Result<()> {
    check_queue_name(queue)?;
    let rsmq = ctx.connect(false).await?;
    let attrs = rsmq
        .get_queue_attributes(queue)
        .await
        .map_err(|err| queue_error(queue, err))?;
    ctx.out.queue_attributes(queue, &attrs)
}

async fn create(ctx: &Ctx, queue: &str, attrs: &QueueAttrArgs) -> anyhow::Result<()> {
    check_queue_name(queue)?;
    let rsmq = ctx.connect(false).await?;
    rsmq.create_queue(queue, &options(attrs))
        .await
        .map_err(|err| queue_error(queue, err))?;
    ctx.out.queue_done(queue, "created")
}

async fn set(ctx: &Ctx, queue: &str, attrs: &QueueAttrArgs) -> anyhow::Result<()> {
    check_queue_name(queue)?;
    anyhow::ensure!(
        attrs.vt.is_some() || attrs.delay.is_some() || attrs.maxsize.is_some(),
        "nothing to change: give --vt, --delay or --maxsize"
    );
    let rsmq = ctx.connect(false).await?;
    let updated = rsmq
        .set_queue_attributes(queue, &options(attrs))
        .await
        .map_err(|err| queue_error(queue, err))?;
    ctx.out.note(format!("updated queue '{queue}'"));
    ctx.out.queue_attributes(queue, &updated)
}

async fn delete(ctx: &Ctx, queue: &str) -> anyhow::Result<()> {
    check_queue_name(queue)?;
    let rsmq = ctx.connect(false).await?;
    rsmq.delete_queue(queue)
        .await
        .map_err(|err| queue_error(queue, err))?;
    ctx.out.queue_done(queue, "deleted")
}

/// The rsmq options for the flags given; absent flags keep the default (create) or the
/// current value (set).
fn options(attrs: &QueueAttrArgs) -> QueueOptions {
    QueueOptions {
        vt: attrs.vt,
        delay: attrs.delay,
        maxsize: attrs.maxsize,
    }
}
