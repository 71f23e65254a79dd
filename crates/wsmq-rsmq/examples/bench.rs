//! Throughput of the full send → receive → delete cycle through wsmq-rsmq, the Rust half
//! of `cargo xtask bench rsmq` (which builds this with `--release`, runs it against its
//! own `redis-server`, and turns the output into `docs/benchmarks.md`).
//!
//! ```text
//! bench --redis-url URL --redis-pid PID --mode single|batched [--messages N] [--runs R]
//!       [--batch B] [--concurrency C] [--body-size S] [--warmup W] [--timeout-secs T]
//!       [--rules on|off]
//! ```
//!
//! `--rules on` gives the queue wsmq's rules (maxreceives, ttl and a dead-letter queue) set
//! so that no message is ever dead: what they cost the receive script when they only check.
//!
//! - `single`: one call at a time, each awaited before the next: N `send_message`, then
//!   N × (`receive_message` + `delete_message`).
//! - `batched`: the same work as `send_batch`, then `receive_batch` + `delete_batch`, in
//!   batches of B with C batches in flight at once over the one multiplexed connection.
//!
//! Each run prints one JSON line on stdout: wall time per phase, the CPU seconds that
//! Redis (also per phase) and this process used meanwhile (utime + stime from
//! `/proc/<pid>/stat`), the
//! requests sent, and the `INFO commandstats` call deltas, which count the commands run
//! inside Lua scripts too. Every loop is bounded by the message count, and each run by
//! `--timeout-secs`.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use redis::aio::MultiplexedConnection;
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqOptions};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Linux reports process times in USER_HZ ticks, which the kernel ABI fixes at 100 per
/// second on every mainstream architecture (it is not the kernel's internal HZ).
const TICKS_PER_SECOND: f64 = 100.0;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A current-thread runtime keeps the client on one core, leaving the other to Redis
    // on a 2-core machine; the multiplexed connection still pipelines concurrent calls.
    if let Err(err) = run().await {
        eprintln!("bench: {err}");
        std::process::exit(1);
    }
}

async fn run() -> BoxResult<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    // rsmq's defaults, realtime off included, as npm rsmq's in (a).
    let options = RsmqOptions {
        ns: "wsmq-bench".to_owned(),
        ..RsmqOptions::default()
    };
    let rsmq = Rsmq::connect(&args.redis_url, options).await?;
    // A connection of its own for INFO, so that the statistics never queue behind the
    // benchmark's requests and the only command it adds is INFO itself.
    let mut stats = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let body = "x".repeat(args.body_size);
    let tag = std::process::id();

    if args.warmup > 0 {
        let queue = format!("warmup-{tag}");
        rsmq.create_queue(&queue, &queue_options(&args, &queue))
            .await?;
        tokio::time::timeout(
            args.timeout,
            cycle(&rsmq, &args, &queue, &body, args.warmup),
        )
        .await
        .map_err(|_| format!("the warm-up took longer than {:?}", args.timeout))??;
        rsmq.delete_queue(&queue).await?;
    }

    for run in 1..=args.runs {
        let queue = format!("{}-{tag}-{run}", args.mode.name());
        rsmq.create_queue(&queue, &queue_options(&args, &queue))
            .await?;
        let before = Sample::take(&mut stats, args.redis_pid).await?;
        let started = Instant::now();
        let timed = tokio::time::timeout(
            args.timeout,
            cycle(&rsmq, &args, &queue, &body, args.messages),
        )
        .await;
        let seconds = started.elapsed().as_secs_f64();
        let after = Sample::take(&mut stats, args.redis_pid).await?;
        let phases =
            timed.map_err(|_| format!("run {run} took longer than {:?}", args.timeout))??;
        rsmq.delete_queue(&queue).await?;
        println!("{}", report(&args, seconds, &phases, &before, &after));
    }
    Ok(())
}

/// rsmq's defaults, plus wsmq's rules with `--rules on`: limits no message of the run
/// reaches (each is received once, and is seconds old), so every receive checks them and
/// none is dead.
fn queue_options(args: &Args, queue: &str) -> QueueOptions {
    if !args.rules {
        return QueueOptions::default();
    }
    QueueOptions {
        maxreceives: Some(5),
        ttl: Some(3600),
        deadletter: Some(format!("{queue}-dead")),
        ..QueueOptions::default()
    }
}

/// What one cycle measured besides the total wall time.
struct Phases {
    /// Wall time of the send phase.
    send_seconds: f64,
    /// Wall time of the receive + delete phase.
    receive_delete_seconds: f64,
    /// Redis CPU ticks during the send phase, to split its cost by phase.
    send_redis_ticks: u64,
    /// Requests sent to Redis (each one EVALSHA, since every wsmq-rsmq call is one).
    requests: usize,
}

/// Sends `n` messages to `queue`, then receives and deletes all of them.
async fn cycle(rsmq: &Rsmq, args: &Args, queue: &str, body: &str, n: usize) -> BoxResult<Phases> {
    let redis_stat = format!("/proc/{}/stat", args.redis_pid);
    let redis_ticks = cpu_ticks(&redis_stat)?;
    let started = Instant::now();
    let send_requests = match args.mode {
        Mode::Single => single_sends(rsmq, queue, body, n).await?,
        Mode::Batched => batched_sends(rsmq, args, queue, body, n).await?,
    };
    let sent = Instant::now();
    let send_redis_ticks = cpu_ticks(&redis_stat)? - redis_ticks;
    let receive_requests = match args.mode {
        Mode::Single => single_receives(rsmq, queue, n).await?,
        Mode::Batched => batched_receives(rsmq, args, queue, n).await?,
    };
    Ok(Phases {
        send_seconds: (sent - started).as_secs_f64(),
        receive_delete_seconds: sent.elapsed().as_secs_f64(),
        send_redis_ticks,
        requests: send_requests + receive_requests,
    })
}

/// Sends `n` copies of `body`, one awaited `send_message` each. Returns the requests.
async fn single_sends(rsmq: &Rsmq, queue: &str, body: &str, n: usize) -> BoxResult<usize> {
    for _ in 0..n {
        rsmq.send_message(queue, body, None).await?;
    }
    Ok(n)
}

/// Receives and deletes `n` messages, one awaited call each. Returns the requests.
async fn single_receives(rsmq: &Rsmq, queue: &str, n: usize) -> BoxResult<usize> {
    for received in 0..n {
        let message = rsmq
            .receive_message(queue, None)
            .await?
            .ok_or_else(|| format!("queue ran dry after {received} of {n} messages"))?;
        rsmq.delete_message(queue, &message.id).await?;
    }
    Ok(2 * n)
}

/// Sends `n` copies of `body` with `send_batch`, `concurrency` batches in flight.
/// Returns the requests.
async fn batched_sends(
    rsmq: &Rsmq,
    args: &Args,
    queue: &str,
    body: &str,
    n: usize,
) -> BoxResult<usize> {
    let bodies = vec![body; args.batch];
    let next = AtomicUsize::new(0);
    let workers = (0..args.concurrency).map(|_| async {
        let mut requests = 0;
        // Each worker claims the next slice of the n messages until none are left.
        loop {
            let start = next.fetch_add(args.batch, Ordering::Relaxed);
            if start >= n {
                return Ok::<_, Box<dyn Error>>(requests);
            }
            let count = args.batch.min(n - start);
            rsmq.send_batch(queue, &bodies[..count], None).await?;
            requests += 1;
        }
    });
    Ok(try_join_all(workers).await?.into_iter().sum())
}

/// Receives and deletes `n` messages with `receive_batch` + `delete_batch`,
/// `concurrency` workers each with one batch in flight. Returns the requests.
async fn batched_receives(rsmq: &Rsmq, args: &Args, queue: &str, n: usize) -> BoxResult<usize> {
    let next = AtomicUsize::new(0);
    let workers = (0..args.concurrency).map(|_| async {
        let mut requests = 0;
        loop {
            let start = next.fetch_add(args.batch, Ordering::Relaxed);
            if start >= n {
                return Ok::<_, Box<dyn Error>>(requests);
            }
            // All n messages are visible and every worker asks only for its own claim,
            // so each receive gets exactly `count`; fewer means something is wrong.
            let count = args.batch.min(n - start);
            let messages = rsmq.receive_batch(queue, count, None).await?;
            if messages.len() != count {
                return Err(format!("asked for {count} messages, got {}", messages.len()).into());
            }
            let ids: Vec<&str> = messages.iter().map(|m| m.id.as_str()).collect();
            let deleted = rsmq.delete_batch(queue, &ids).await?;
            if deleted != count as u64 {
                return Err(format!("deleted {deleted} of {count} messages").into());
            }
            requests += 2;
        }
    });
    Ok(try_join_all(workers).await?.into_iter().sum())
}

/// CPU counters and command counts at one instant.
struct Sample {
    /// Redis's utime + stime, in ticks.
    redis_ticks: u64,
    /// This process's utime + stime, in ticks.
    own_ticks: u64,
    /// `calls` per command from `INFO commandstats`.
    commands: BTreeMap<String, u64>,
}

impl Sample {
    async fn take(stats: &mut MultiplexedConnection, redis_pid: u32) -> BoxResult<Sample> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(stats)
            .await?;
        Ok(Sample {
            redis_ticks: cpu_ticks(&format!("/proc/{redis_pid}/stat"))?,
            own_ticks: cpu_ticks("/proc/self/stat")?,
            commands: parse_commandstats(&info),
        })
    }
}

/// utime + stime of a process, from its `/proc/<pid>/stat`.
fn cpu_ticks(path: &str) -> BoxResult<u64> {
    let stat = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
    // The command name (field 2) may contain spaces, so count fields from its ')'.
    // After it come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| format!("{path}: no ')'"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> BoxResult<u64> {
        let value = fields.get(n - 3).ok_or_else(|| format!("{path}: short"))?;
        Ok(value.parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// `cmdstat_evalsha:calls=3,usec=…` lines → `{"evalsha": 3}`.
fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// One JSON line describing a run. Written by hand: every value is a number or a
/// command name of `[a-z|]`, so nothing needs escaping and serde_json stays out of the
/// crate's dependencies.
fn report(args: &Args, seconds: f64, phases: &Phases, before: &Sample, after: &Sample) -> String {
    let mut commands = String::new();
    for (name, calls) in &after.commands {
        let delta = calls - before.commands.get(name).copied().unwrap_or(0);
        // The INFO that took `before` is counted in `after`; it is not benchmark work.
        if delta > 0 && name != "info" {
            let sep = if commands.is_empty() { "" } else { "," };
            let _ = write!(commands, "{sep}\"{name}\":{delta}");
        }
    }
    let cpu = |after: u64, before: u64| (after - before) as f64 / TICKS_PER_SECOND;
    format!(
        concat!(
            "{{\"mode\":\"{}\",\"rules\":{},\"batch\":{},\"concurrency\":{},\"messages\":{},",
            "\"body_bytes\":{},\"seconds\":{:.6},\"send_seconds\":{:.6},",
            "\"receive_delete_seconds\":{:.6},\"redis_cpu_seconds\":{:.2},",
            "\"redis_cpu_send_seconds\":{:.2},",
            "\"client_cpu_seconds\":{:.2},\"requests\":{},\"redis_commands\":{{{}}}}}"
        ),
        args.mode.name(),
        args.rules,
        args.batch,
        args.concurrency,
        args.messages,
        args.body_size,
        seconds,
        phases.send_seconds,
        phases.receive_delete_seconds,
        cpu(after.redis_ticks, before.redis_ticks),
        phases.send_redis_ticks as f64 / TICKS_PER_SECOND,
        cpu(after.own_ticks, before.own_ticks),
        phases.requests,
        commands,
    )
}

/// Which way to drive the library.
#[derive(Clone, Copy)]
enum Mode {
    /// One awaited call per operation.
    Single,
    /// Batches, several in flight.
    Batched,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Batched => "batched",
        }
    }
}

/// The command line.
struct Args {
    /// `redis://…` of the server under test.
    redis_url: String,
    /// Its PID, for its CPU time.
    redis_pid: u32,
    mode: Mode,
    /// Messages per run.
    messages: usize,
    /// Timed runs, each on a fresh queue.
    runs: usize,
    /// Messages per batch (`batched` only; 1 for `single`).
    batch: usize,
    /// Batches in flight at once (`batched` only; 1 for `single`).
    concurrency: usize,
    /// Bytes per message body.
    body_size: usize,
    /// Messages of an untimed cycle first, so connections and caches are warm.
    warmup: usize,
    /// Upper bound on one run.
    timeout: Duration,
    /// Whether the queue has wsmq's rules (see [`queue_options`]).
    rules: bool,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> BoxResult<Args> {
        let mut args = Args {
            redis_url: String::new(),
            redis_pid: 0,
            mode: Mode::Single,
            messages: 100_000,
            runs: 1,
            batch: 1,
            concurrency: 1,
            body_size: 100,
            warmup: 1_000,
            timeout: Duration::from_secs(300),
            rules: false,
        };
        while let Some(flag) = argv.next() {
            let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--redis-url" => args.redis_url = value,
                "--redis-pid" => args.redis_pid = value.parse()?,
                "--mode" => {
                    args.mode = match value.as_str() {
                        "single" => Mode::Single,
                        "batched" => Mode::Batched,
                        _ => return Err(format!("--mode {value}: single or batched").into()),
                    }
                }
                "--messages" => args.messages = value.parse()?,
                "--runs" => args.runs = value.parse()?,
                "--batch" => args.batch = value.parse()?,
                "--concurrency" => args.concurrency = value.parse()?,
                "--body-size" => args.body_size = value.parse()?,
                "--warmup" => args.warmup = value.parse()?,
                "--timeout-secs" => args.timeout = Duration::from_secs(value.parse()?),
                "--rules" => {
                    args.rules = match value.as_str() {
                        "on" => true,
                        "off" => false,
                        _ => return Err(format!("--rules {value}: on or off").into()),
                    }
                }
                _ => return Err(format!("unknown flag {flag}").into()),
            }
        }
        if args.redis_url.is_empty() || args.redis_pid == 0 {
            return Err("--redis-url and --redis-pid are required".into());
        }
        if args.batch == 0 || args.concurrency == 0 {
            return Err("--batch and --concurrency must be at least 1".into());
        }
        if let Mode::Single = args.mode {
            args.batch = 1;
            args.concurrency = 1;
        }
        Ok(args)
    }
}
