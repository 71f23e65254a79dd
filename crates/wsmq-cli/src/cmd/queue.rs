//! `queue list | stats | create | set | delete | redrive`: queue administration over the rsmq
//! API.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use wsmq_rsmq::{MAX_MOVE_BATCH, MAX_RECEIVES, MAX_SECONDS, QueueOptions};

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
        QueueCmd::Redrive { queue, to, count } => redrive(ctx, &queue, &to, count).await,
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
    let options = options(queue, attrs)?;
    let rsmq = ctx.connect(false).await?;
    rsmq.create_queue(queue, &options)
        .await
        .map_err(|err| queue_error(queue, err))?;
    ctx.out.queue_done(queue, "created")
}

async fn set(ctx: &Ctx, queue: &str, attrs: &QueueAttrArgs) -> anyhow::Result<()> {
    check_queue_name(queue)?;
    let options = options(queue, attrs)?;
    anyhow::ensure!(
        options != QueueOptions::default(),
        "nothing to change: give --vt, --delay, --maxsize, --max-receives, --ttl, \
         --dead-letter or --no-dead-letter"
    );
    let rsmq = ctx.connect(false).await?;
    let updated = rsmq
        .set_queue_attributes(queue, &options)
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

async fn redrive(ctx: &Ctx, from: &str, to: &str, count: Option<u64>) -> anyhow::Result<()> {
    check_queue_name(from)?;
    check_queue_name(to)?;
    anyhow::ensure!(
        from != to,
        "--to names the queue itself ('{from}'): nothing to move"
    );
    // Realtime, so that the gateways' idle consumers of the target take the messages at once.
    let rsmq = ctx.connect(true).await?;
    let source = rsmq
        .get_queue_attributes(from)
        .await
        .map_err(|err| queue_error(from, err))?;
    rsmq.get_queue_attributes(to)
        .await
        .map_err(|err| queue_error(to, err))?;
    let wanted = count.unwrap_or(u64::MAX);
    let progress = progress_bar(wanted.min(source.msgs));
    let mut moved = 0u64;
    let mut left = source.msgs;
    while moved < wanted {
        let batch =
            usize::try_from(wanted - moved).map_or(MAX_MOVE_BATCH, |n| n.min(MAX_MOVE_BATCH));
        let step = match rsmq.move_messages(from, to, batch).await {
            Ok(step) => step,
            Err(err) => {
                progress.abandon();
                // Every batch before this one is complete: say how far it got.
                let err = queue_error(from, err);
                anyhow::bail!("{err} (after moving {moved} messages from '{from}' to '{to}')");
            }
        };
        moved += step.moved;
        left = step.left;
        progress.inc(step.moved);
        if step.moved == 0 {
            break;
        }
    }
    progress.finish_and_clear();
    ctx.out.redriven(from, to, moved, left)
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages moved ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    )
}

/// The rsmq options for the flags given; absent flags keep the default (create) or the
/// current value (set).
///
/// # Errors
///
/// One line naming the flag, for a value out of range, a negative or non-numeric one, or a
/// dead-letter queue that is not a valid name or is the queue itself.
pub(super) fn options(queue: &str, attrs: &QueueAttrArgs) -> anyhow::Result<QueueOptions> {
    let max_receives = attrs
        .max_receives
        .as_deref()
        .map(|text| whole_number("--max-receives", text, MAX_RECEIVES, "(0: no limit)"))
        .transpose()?;
    let ttl = attrs
        .ttl
        .as_deref()
        .map(|text| whole_number("--ttl", text, MAX_SECONDS, "seconds (0: never)"))
        .transpose()?;
    let deadletter = match (&attrs.dead_letter, attrs.no_dead_letter) {
        (Some(name), _) => {
            check_queue_name(name).map_err(|err| anyhow::anyhow!("--dead-letter: {err}"))?;
            anyhow::ensure!(
                name != queue,
                "--dead-letter cannot be the queue itself ('{queue}')"
            );
            Some(name.clone())
        }
        (None, true) => Some(String::new()),
        (None, false) => None,
    };
    Ok(QueueOptions {
        vt: attrs.vt,
        delay: attrs.delay,
        maxsize: attrs.maxsize,
        maxreceives: max_receives,
        ttl,
        deadletter,
    })
}

/// `text` as a whole number from 0 to `max`, or the one-line error for `flag`.
fn whole_number(flag: &str, text: &str, max: u64, unit: &str) -> anyhow::Result<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{flag} must be a whole number from 0 to {max} {unit}, not {}",
                super::quoted(text)
            )
        })
}
