//! `send`: one message, or one message per line of a file or stdin, sent in pipelined batches.
//!
//! A file is read line by line, never whole, so its size is bounded by nothing but time. Lines
//! go out in batches of [`BATCH_SIZE`] (one `send_batch` round trip each) with up to
//! [`IN_FLIGHT`] batches on the wire at once, so a large file is limited by Redis' throughput
//! rather than by the network's round-trip time.
//!
//! Messages keep the order of the lines: each batch's ids are consecutive, and the batches
//! reach Redis in the order they were spawned, because `Rsmq` pipelines every call over one
//! multiplexed connection and the current-thread runtime first polls tasks in spawn order.
//!
//! The ids of each batch are printed as soon as it is sent (text output), so when a later
//! batch fails, or the input turns out bad half-way, what was sent is known and a rerun can
//! skip it instead of sending it twice. A line is never read past the longest a message may
//! be (three bytes per UTF-16 unit of the queue's maxsize), so a file without newlines cannot
//! make the command read it whole into memory.

use std::{collections::VecDeque, io::IsTerminal, path::Path, pin::Pin, time::Duration};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader},
    task::JoinHandle,
};
use wsmq_rsmq::{Rsmq, RsmqError};

use super::{Ctx, check_queue_name, queue_error};
use crate::cli::SendArgs;

/// Messages per `send_batch` call: enough that the round trip is small next to the work, few
/// enough that a batch's Lua call never blocks Redis noticeably for other clients.
const BATCH_SIZE: usize = 500;

/// Batches in flight at once. A handful hides the round-trip time; more only queues up in
/// Redis, which runs the scripts one at a time anyway.
const IN_FLIGHT: usize = 8;

/// Longest line read when the queue has no maxsize (`-1`): the most Redis takes in one string.
const MAX_LINE_BYTES: usize = 512 << 20;

/// Sends the message or the file `args` names.
pub(crate) async fn run(ctx: &Ctx, args: SendArgs) -> anyhow::Result<()> {
    check_queue_name(&args.queue)?;
    match (args.source.message, args.source.file) {
        (Some(message), _) => send_one(ctx, &args.queue, &message, args.delay, args.replicas).await,
        (None, Some(path)) => send_lines(ctx, &args.queue, &path, args.delay, args.replicas).await,
        (None, None) => unreachable!("clap requires one of --message and --file"),
    }
}

/// How long a send with `--replicas` waits for them.
const REPLICA_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn send_one(
    ctx: &Ctx,
    queue: &str,
    message: &str,
    delay: Option<u64>,
    replicas: u32,
) -> anyhow::Result<()> {
    let rsmq = ctx.connect(true).await?;
    let ids = send(&rsmq, queue, &[message], delay, replicas)
        .await
        .map_err(|err| queue_error(queue, err))?;
    let id = ids
        .first()
        .ok_or_else(|| anyhow::anyhow!("redis returned no id"))?;
    ctx.out.sent_one(queue, id)
}

/// One batch: at once, or once `replicas` replicas hold it.
async fn send(
    rsmq: &Rsmq,
    queue: &str,
    messages: &[impl AsRef<str>],
    delay: Option<u64>,
    replicas: u32,
) -> Result<Vec<String>, wsmq_rsmq::RsmqError> {
    if replicas == 0 {
        rsmq.send_batch(queue, messages, delay).await
    } else {
        rsmq.send_batch_replicated(queue, messages, delay, replicas, REPLICA_WAIT)
            .await
    }
}

async fn send_lines(
    ctx: &Ctx,
    queue: &str,
    path: &Path,
    delay: Option<u64>,
    replicas: u32,
) -> anyhow::Result<()> {
    // The file is opened before connecting so that a typo in its name is reported as such.
    let mut input = LineReader::open(path).await?;
    let rsmq = ctx.connect(true).await?;
    // Looking the queue up first reports a missing queue before any of stdin is consumed, and
    // gives the maxsize to check each line against, so that a long line is named by its number.
    let attrs = rsmq
        .get_queue_attributes(queue)
        .await
        .map_err(|err| queue_error(queue, err))?;
    input.limit = usize::try_from(attrs.maxsize).ok();

    let progress = progress_bar(input.len);
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(IN_FLIGHT);
    let mut ids: Vec<String> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    loop {
        let batch = match input.next_batch(queue).await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(err) => {
                failure = Some(err);
                break;
            }
        };
        if in_flight.len() == IN_FLIGHT {
            let oldest = in_flight.pop_front().expect("in_flight is full");
            if let Err(err) = oldest.finish(ctx, queue, &mut ids, &progress).await {
                failure = Some(err);
                break;
            }
        }
        in_flight.push_back(batch.spawn(&rsmq, queue, delay, replicas));
    }
    // Batches already on the wire succeed or fail on their own; wait for them so that the
    // count below is true even after a failure.
    while let Some(batch) = in_flight.pop_front() {
        if let Err(err) = batch.finish(ctx, queue, &mut ids, &progress).await {
            failure.get_or_insert(err);
        }
    }
    progress.finish_and_clear();

    // The ids are out (text: batch by batch; JSON: here) before any error is reported.
    ctx.out.sent_many(queue, &ids, failure.is_none())?;
    match failure {
        None => Ok(()),
        Some(err) if ids.is_empty() => Err(err),
        Some(err) => Err(err.context(format!(
            "stopped after sending {} messages (their ids are printed above)",
            ids.len()
        ))),
    }
}

/// Lines of the input, grouped into batches.
struct LineReader {
    /// The input, read line by line (`\n` or `\r\n`); must be UTF-8 like every rsmq message.
    reader: BufReader<Pin<Box<dyn AsyncRead + Send>>>,
    /// The input's name for error messages.
    name: String,
    /// Its size in bytes when known (a regular file), for the progress bar.
    len: Option<u64>,
    /// The number of the last line read, from 1.
    line_no: usize,
    /// The longest line accepted, in UTF-16 units as rsmq counts; `None` for unlimited.
    limit: Option<usize>,
}

impl LineReader {
    /// Opens `path`, or stdin for `-`.
    async fn open(path: &Path) -> anyhow::Result<LineReader> {
        let (reader, name, len): (Pin<Box<dyn AsyncRead + Send>>, _, _) = if path == Path::new("-")
        {
            (Box::pin(tokio::io::stdin()), "stdin".to_owned(), None)
        } else {
            let name = path.display().to_string();
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {name}"))?;
            let meta = file
                .metadata()
                .await
                .with_context(|| format!("cannot read {name}"))?;
            anyhow::ensure!(!meta.is_dir(), "cannot read {name}: it is a directory");
            let len = meta.is_file().then_some(meta.len());
            (Box::pin(file), name, len)
        };
        Ok(LineReader {
            reader: BufReader::new(reader),
            name,
            len,
            line_no: 0,
            limit: None,
        })
    }

    /// The next up to [`BATCH_SIZE`] non-empty lines; `None` at the end of the input.
    async fn next_batch(&mut self, queue: &str) -> anyhow::Result<Option<Batch>> {
        let mut messages = Vec::with_capacity(BATCH_SIZE);
        let mut bytes = 0;
        while messages.len() < BATCH_SIZE {
            let Some((line, read)) = self.next_line(queue).await? else {
                break;
            };
            bytes += read;
            // An empty line is almost always a trailing or separating blank, not a message.
            if line.is_empty() {
                continue;
            }
            if let Some(limit) = self.limit {
                let len = line.encode_utf16().count();
                anyhow::ensure!(
                    len <= limit,
                    "line {} of {} is {len} characters long, more than the maxsize of queue '{queue}' ({limit})",
                    self.line_no,
                    self.name
                );
            }
            messages.push(line);
        }
        if messages.is_empty() && bytes == 0 {
            return Ok(None);
        }
        Ok(Some(Batch { messages, bytes }))
    }

    /// The next line without its line end, and the bytes it took; `None` at the end. Reads at
    /// most one byte past the longest acceptable line, and refuses a longer one.
    async fn next_line(&mut self, queue: &str) -> anyhow::Result<Option<(String, u64)>> {
        // A UTF-16 unit takes at most three bytes of UTF-8 (a four-byte character is two
        // units), so no line of over 3 × maxsize bytes can fit.
        let max = self
            .limit
            .map_or(MAX_LINE_BYTES, |limit| limit.saturating_mul(3));
        let number = self.line_no + 1;
        let mut buf = Vec::new();
        let read = (&mut self.reader)
            .take(max as u64 + 2)
            .read_until(b'\n', &mut buf)
            .await
            .with_context(|| format!("cannot read line {number} of {}", self.name))?;
        if read == 0 {
            return Ok(None);
        }
        self.line_no = number;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() > max {
            let what = match self.limit {
                Some(limit) => format!("the maxsize of queue '{queue}' ({limit})"),
                None => format!("{max} bytes"),
            };
            anyhow::bail!(
                "line {number} of {} is longer than {what}; stopped reading it",
                self.name
            );
        }
        let line = String::from_utf8(buf)
            .map_err(|_| anyhow::anyhow!("line {number} of {} is not valid UTF-8", self.name))?;
        Ok(Some((line, read as u64)))
    }
}

/// Lines read from the input, not sent yet.
struct Batch {
    /// The message bodies, in input order; empty when the lines were all blank.
    messages: Vec<String>,
    /// Input bytes these lines took, for the progress bar.
    bytes: u64,
}

impl Batch {
    /// Starts sending the batch in its own task, so that it progresses while the next batch
    /// is read.
    fn spawn(self, rsmq: &Rsmq, queue: &str, delay: Option<u64>, replicas: u32) -> InFlight {
        let Batch { messages, bytes } = self;
        let (rsmq, queue) = (rsmq.clone(), queue.to_owned());
        let task = tokio::spawn(async move {
            if messages.is_empty() {
                return Ok(Vec::new());
            }
            send(&rsmq, &queue, &messages, delay, replicas).await
        });
        InFlight { task, bytes }
    }
}

/// A batch on the wire.
struct InFlight {
    /// The task running `send_batch`; it answers the ids in input order.
    task: JoinHandle<Result<Vec<String>, RsmqError>>,
    /// Input bytes the batch's lines took, for the progress bar.
    bytes: u64,
}

impl InFlight {
    /// Waits for the batch, prints its ids (text output) and appends them to `ids`.
    async fn finish(
        self,
        ctx: &Ctx,
        queue: &str,
        ids: &mut Vec<String>,
        progress: &ProgressBar,
    ) -> anyhow::Result<()> {
        let sent = self
            .task
            .await
            .context("a send task failed")?
            .map_err(|err| queue_error(queue, err))?;
        progress.suspend(|| ctx.out.sent_batch(&sent))?;
        ids.extend(sent);
        progress.inc(self.bytes);
        progress.set_message(format!("{} messages sent", ids.len()));
        Ok(())
    }
}

/// A byte-counting bar for a file, a spinner for stdin; nothing at all unless stderr is a
/// terminal, so that logs and pipes get no control characters.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("the template is valid"),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
