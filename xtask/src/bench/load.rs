//! Driving `wsmq-load` processes: start several, wait until all are connected, give the
//! go-ahead to all at once, collect their result lines and merge them, histograms
//! included. Any program that speaks the same stdio protocol (the npm rsmq publisher of
//! `bench/node`) can run beside them.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::Context as _;
use base64::Engine as _;
use hdrhistogram::{Histogram, serialization::Deserializer};
use serde_json::Value;

/// Clients per load process: well under the 20,000 open files a process may hold.
pub(crate) const CLIENTS_PER_PROCESS: usize = 5_000;

/// Running load processes; killed by PID if dropped before they finish.
pub(crate) struct Load {
    procs: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
    /// The `ready` line of each process.
    pub(crate) ready: Vec<Value>,
}

/// One `wsmq-load` command per argument list.
pub(crate) fn wsmq_load(per_process: Vec<Vec<String>>) -> Vec<Command> {
    let program = super::release_binary("wsmq-load");
    per_process
        .into_iter()
        .map(|args| {
            let mut command = Command::new(&program);
            command.args(args);
            command
        })
        .collect()
}

impl Load {
    /// Starts the commands, each speaking the `wsmq-load` protocol, and waits for every
    /// `ready` line.
    pub(crate) fn start(commands: Vec<Command>) -> anyhow::Result<Load> {
        let mut procs = Vec::new();
        for mut command in commands {
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting {}", command.get_program().display()))?;
            let stdin = child.stdin.take().context("load stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("load stdout")?);
            procs.push((child, stdin, stdout));
        }
        let mut load = Load {
            procs,
            ready: Vec::new(),
        };
        for i in 0..load.procs.len() {
            let line = load.line(i, "ready")?;
            load.ready.push(line);
        }
        Ok(load)
    }

    /// Sends the go-ahead (or, for idle sessions, the stop) to every process.
    pub(crate) fn signal(&mut self) -> anyhow::Result<()> {
        for (_, stdin, _) in &mut self.procs {
            stdin.write_all(b"go\n")?;
            stdin.flush()?;
        }
        Ok(())
    }

    /// Waits for every `result` line and for the processes to exit.
    pub(crate) fn finish(mut self) -> anyhow::Result<Vec<Value>> {
        let mut results = Vec::new();
        for i in 0..self.procs.len() {
            results.push(self.line(i, "result")?);
        }
        for (child, _, _) in &mut self.procs {
            child.wait()?;
        }
        self.procs.clear();
        Ok(results)
    }

    fn line(&mut self, i: usize, event: &str) -> anyhow::Result<Value> {
        let (child, _, stdout) = &mut self.procs[i];
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        anyhow::ensure!(
            !line.is_empty(),
            "load process (pid {}) ended without a {event} line (its stderr is above)",
            child.id()
        );
        let value: Value =
            serde_json::from_str(&line).with_context(|| format!("wsmq-load said {line:?}"))?;
        anyhow::ensure!(
            value["event"] == event,
            "expected {event}, wsmq-load said {line}"
        );
        Ok(value)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Load processes at least (while there are clients for them): one per core. A single
/// process, whose runtime competes with the server for the cores, measurably bounded the
/// results (fan-out to 1,000 at 50/s: p99 26.6 ms with one process, 19.1 ms with two).
pub(crate) const MIN_PROCESSES: usize = 2;

/// What one timed run measured: the load processes' merged lines, and the CPU of the server
/// and Redis over the run, as % of one core.
pub(crate) struct Timed {
    pub(crate) merged: Merged,
    pub(crate) server_cpu: f64,
    pub(crate) redis_cpu: f64,
    pub(crate) load_cpu: f64,
    /// Wall-clock seconds from the go-ahead to the last result.
    pub(crate) seconds: f64,
}

/// Starts the load processes (`commands`, see [`wsmq_load`]), waits until all `clients` are
/// connected (failing if any could not), gives the go-ahead and collects the results,
/// reading the server's (`server_pid`) and Redis's (`redis_pid`) CPU time around the run.
pub(crate) fn timed_run(
    commands: Vec<Command>,
    server_pid: u32,
    redis_pid: u32,
    clients: &str,
) -> anyhow::Result<Timed> {
    timed_run_when(commands, server_pid, redis_pid, clients, || Ok(()))
}

/// [`timed_run`], calling `settled` once every process is ready and before the go-ahead: a
/// server whose subscriptions are set up after the clients' last frame (the Node chat binds a
/// queue per socket) says there when all of them are in place.
pub(crate) fn timed_run_when(
    commands: Vec<Command>,
    server_pid: u32,
    redis_pid: u32,
    clients: &str,
    settled: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Timed> {
    let mut load = Load::start(commands)?;
    settled()?;
    let (server_before, redis_before) = (
        super::procfs::cpu_seconds(server_pid),
        super::procfs::cpu_seconds(redis_pid),
    );
    let started = std::time::Instant::now();
    load.signal()?;
    let ready = std::mem::take(&mut load.ready);
    let results = load.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let merged = Merged::of(&ready, &results)?;
    anyhow::ensure!(
        merged.connect_failures == 0.0,
        "{} of {clients} could not connect: {}",
        merged.connect_failures,
        merged.first_error.as_deref().unwrap_or("?")
    );
    let percent = |cpu: f64| 100.0 * cpu / seconds;
    Ok(Timed {
        server_cpu: percent(super::procfs::cpu_seconds(server_pid) - server_before),
        redis_cpu: percent(super::procfs::cpu_seconds(redis_pid) - redis_before),
        load_cpu: percent(merged.cpu_seconds),
        seconds,
        merged,
    })
}

/// Splits `clients` into at least [`MIN_PROCESSES`] processes of at most
/// [`CLIENTS_PER_PROCESS`]: `(first, count)`.
pub(crate) fn split(clients: usize) -> Vec<(usize, usize)> {
    let procs = clients
        .div_ceil(CLIENTS_PER_PROCESS)
        .max(MIN_PROCESSES.min(clients))
        .max(1);
    (0..procs)
        .map(|p| {
            let first = clients * p / procs;
            (first, clients * (p + 1) / procs - first)
        })
        .collect()
}

/// The `ready` and `result` lines of all processes of one run, added up.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) connected: f64,
    pub(crate) connect_failures: f64,
    pub(crate) first_error: Option<String>,
    /// The slowest process's time to connect all its clients.
    pub(crate) connect_seconds: f64,
    pub(crate) handshakes: Histogram<u64>,
    pub(crate) sent: f64,
    pub(crate) unique: f64,
    pub(crate) duplicates: f64,
    pub(crate) other: f64,
    /// SSE acks (`POST /api/ack`) the gateway did not apply.
    pub(crate) failed_acks: f64,
    pub(crate) closed: f64,
    pub(crate) first_send_us: f64,
    pub(crate) last_send_us: f64,
    pub(crate) last_recv_us: f64,
    pub(crate) latency: Histogram<u64>,
    /// CPU seconds of the load processes between go-ahead and result.
    pub(crate) cpu_seconds: f64,
}

impl Merged {
    pub(crate) fn of(ready: &[Value], results: &[Value]) -> anyhow::Result<Merged> {
        let sum = |lines: &[Value], key: &str| lines.iter().filter_map(|v| v[key].as_f64()).sum();
        let nonzero = |key: &'static str| {
            results
                .iter()
                .filter_map(move |v| v[key].as_f64())
                .filter(|&x| x > 0.0)
        };
        let mut merged = Merged {
            connected: sum(ready, "connected"),
            connect_failures: sum(ready, "connect_failures"),
            first_error: ready
                .iter()
                .find_map(|v| v["first_error"].as_str().map(str::to_owned)),
            connect_seconds: ready
                .iter()
                .filter_map(|v| v["connect_seconds"].as_f64())
                .fold(0.0, f64::max),
            handshakes: empty(),
            sent: sum(results, "sent"),
            unique: sum(results, "unique"),
            duplicates: sum(results, "duplicates"),
            other: sum(results, "other"),
            failed_acks: sum(results, "failed_acks"),
            closed: sum(results, "closed"),
            first_send_us: nonzero("first_send_us").fold(f64::INFINITY, f64::min),
            last_send_us: nonzero("last_send_us").fold(0.0, f64::max),
            last_recv_us: nonzero("last_recv_us").fold(0.0, f64::max),
            latency: empty(),
            cpu_seconds: sum(results, "cpu_seconds"),
        };
        // A publisher beside the clients has no handshakes to report.
        for line in ready.iter().filter(|line| !line["handshakes"].is_null()) {
            merged.handshakes.add(decode(&line["handshakes"])?)?;
        }
        for line in results {
            if !line["latency"].is_null() {
                merged.latency.add(decode(&line["latency"])?)?;
            }
        }
        Ok(merged)
    }

    /// Seconds from the first publish to the last delivery.
    pub(crate) fn delivery_seconds(&self) -> f64 {
        ((self.last_recv_us - self.first_send_us) / 1e6).max(1e-6)
    }

    /// Distinct deliveries per second over [`Merged::delivery_seconds`].
    pub(crate) fn rate(&self) -> f64 {
        self.unique / self.delivery_seconds()
    }

    /// Publishes per second, from first to last publish.
    pub(crate) fn publish_rate(&self) -> f64 {
        self.sent / ((self.last_send_us - self.first_send_us) / 1e6).max(1e-6)
    }

    /// Latency percentile in ms.
    pub(crate) fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1e3
    }

    pub(crate) fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1e3
    }
}

fn empty() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn decode(value: &Value) -> anyhow::Result<Histogram<u64>> {
    let text = value.as_str().context("histogram is not a string")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|err| anyhow::anyhow!("histogram: {err:?}"))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_clients_into_processes() {
        assert_eq!(split(1), vec![(0, 1)]);
        assert_eq!(split(100), vec![(0, 50), (50, 50)]);
        assert_eq!(split(10_000), vec![(0, 5_000), (5_000, 5_000)]);
        assert_eq!(split(19_000).len(), 4);
        assert_eq!(split(19_000).iter().map(|p| p.1).sum::<usize>(), 19_000);
    }
}
