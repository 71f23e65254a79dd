//! `cargo xtask bench delivery`: queue delivery end to end, publish → WebSocket, with
//! acks, through wsmq (v1) and through the Node design it replaces (legacy dialect).
//!
//! Every client consumes a queue of its own; the load processes publish to those queues
//! with `send_batch` and the rsmq realtime notification, and measure publish → deliver
//! latency from the µs timestamp in each body. Each system runs at full speed, then paced
//! at 1,000 msgs/s, then paced at half the rate it reached at full speed.

use super::{
    Context, Section, chart,
    format::{Target, targets_table, thousands},
    load::{self, Merged},
    service::{JWT_SECRET, Service},
};

const FULL_SPEED: &str = "full speed";
const PACED_1000: &str = "paced 1,000/s";

/// One measured run.
pub(super) struct Row {
    pub(super) system: &'static str,
    pub(super) clients: usize,
    pub(super) mode: String,
    pub(super) merged: Merged,
    /// CPU of the server, Redis and the load processes, % of one core over the run.
    pub(super) server_cpu: f64,
    pub(super) redis_cpu: f64,
    pub(super) load_cpu: f64,
}

/// Sizes of a run, by mode.
struct Plan {
    clients: &'static [usize],
    /// Messages of a full-speed wsmq run.
    messages: u64,
    /// Messages of a full-speed run of the Node design, which is far slower.
    node_messages: u64,
    /// Seconds of a paced run.
    paced_seconds: f64,
    timeout_secs: u64,
}

const FULL: Plan = Plan {
    clients: &[100, 1_000],
    messages: 200_000,
    node_messages: 20_000,
    paced_seconds: 20.0,
    timeout_secs: 300,
};
const QUICK: Plan = Plan {
    clients: &[100],
    messages: 10_000,
    node_messages: 2_000,
    paced_seconds: 3.0,
    timeout_secs: 60,
};

pub(super) fn run(ctx: &Context<'_>) -> anyhow::Result<Section> {
    let plan = if ctx.quick { &QUICK } else { &FULL };
    let mut rows = Vec::new();
    let mut run_no = 0;
    for system in [System::Wsmq, System::Node] {
        let server = match system {
            System::Wsmq => Service::gateway(ctx.redis)?,
            System::Node => Service::node(ctx.redis)?,
        };
        for &clients in plan.clients {
            let full_messages = match system {
                System::Wsmq => plan.messages,
                System::Node => plan.node_messages,
            };
            let mut measure = |mode: String, messages: u64, rate: f64| {
                run_no += 1;
                let prefix = format!("d{run_no}-");
                eprintln!(
                    "xtask bench delivery: {}, {clients} clients, {mode}: {messages} messages",
                    system.name()
                );
                let row = measure(ctx, &server, system, clients, &prefix, messages, rate, plan)?;
                eprintln!(
                    "  {} msgs/s, p50 {:.2} ms, p99 {:.2} ms, lost {}, duplicates {}",
                    thousands(row.merged.rate()),
                    row.merged.latency_ms(0.5),
                    row.merged.latency_ms(0.99),
                    row.merged.sent - row.merged.unique,
                    row.merged.duplicates
                );
                anyhow::Ok(Row { mode, ..row })
            };
            let full = measure(FULL_SPEED.to_owned(), full_messages, 0.0)?;
            let max = full.merged.rate();
            rows.push(full);
            let paced = (1_000.0 * plan.paced_seconds) as u64;
            rows.push(measure(PACED_1000.to_owned(), paced, 1_000.0)?);
            let half = (max / 2.0).max(1.0);
            let messages = (half * plan.paced_seconds) as u64;
            rows.push(measure(
                format!("paced {}/s (½ max)", thousands(half)),
                messages,
                half,
            )?);
        }
        drop(server);
    }
    let chart_rows: Vec<chart::Bar> = rows
        .iter()
        .map(|row| chart::Bar {
            label: format!("{}, {} clients, {}", row.system, row.clients, row.mode),
            merged: &row.merged,
        })
        .collect();
    let chart = ctx.write_chart("delivery", "Queue delivery: publish → deliver", &chart_rows)?;
    Ok(Section {
        title: "Queue delivery: publish → WebSocket, with acks".to_owned(),
        body: report(&rows, plan, &chart),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Wsmq,
    Node,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Wsmq => "wsmq v1",
            System::Node => "Node ws + rsmq-worker",
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    ctx: &Context<'_>,
    server: &Service,
    system: System,
    clients: usize,
    prefix: &str,
    messages: u64,
    rate: f64,
    plan: &Plan,
) -> anyhow::Result<Row> {
    let target = match system {
        System::Wsmq => "wsmq",
        System::Node => "legacy",
    };
    let parts = load::split(clients);
    let per_process = parts
        .iter()
        .map(|&(first, count)| {
            let share = count as f64 / clients as f64;
            let mut args = common_args(target, server, first, count, prefix, plan.timeout_secs);
            args.extend([
                "queue".to_owned(),
                "--redis-url".to_owned(),
                ctx.redis.url(),
                "--messages".to_owned(),
                ((messages as f64 * share).round() as u64).to_string(),
                "--rate".to_owned(),
                (rate * share).to_string(),
            ]);
            args
        })
        .collect();
    let run = load::timed_run(
        load::wsmq_load(per_process),
        server.pid(),
        ctx.redis.pid(),
        &format!("{clients} clients"),
    )?;
    Ok(Row {
        system: system.name(),
        clients,
        mode: String::new(),
        server_cpu: run.server_cpu,
        redis_cpu: run.redis_cpu,
        load_cpu: run.load_cpu,
        merged: run.merged,
    })
}

/// The flags every load process gets, before its subcommand.
pub(super) fn common_args(
    target: &str,
    server: &Service,
    first: usize,
    count: usize,
    prefix: &str,
    timeout_secs: u64,
) -> Vec<String> {
    [
        ("--target", target.to_owned()),
        ("--server", server.addr.to_string()),
        ("--jwt-secret", JWT_SECRET.to_owned()),
        ("--clients", count.to_string()),
        ("--first", first.to_string()),
        ("--prefix", prefix.to_owned()),
        ("--timeout-secs", timeout_secs.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

/// The queue-delivery targets, for each wsmq client count.
fn targets(rows: &[Row]) -> String {
    let mut targets = Vec::new();
    for row in rows.iter().filter(|r| r.system == System::Wsmq.name()) {
        let m = &row.merged;
        let clients = thousands(row.clients as f64);
        if row.mode == FULL_SPEED {
            targets.push(Target {
                target: format!(
                    "{clients} clients, full speed: ≥ 50,000 msgs/s with acks, \
                     or Redis ≥ 90% of a core; 0 lost"
                ),
                measured: format!(
                    "{} msgs/s, Redis {:.0}%, lost {}",
                    thousands(m.rate()),
                    row.redis_cpu,
                    thousands(m.sent - m.unique)
                ),
                met: (m.rate() >= 50_000.0 || row.redis_cpu >= 90.0) && m.sent == m.unique,
            });
        } else if row.mode == PACED_1000 {
            targets.push(Target {
                target: format!("{clients} clients at 1,000 msgs/s: p50 ≤ 1 ms, p99 ≤ 5 ms"),
                measured: format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    m.latency_ms(0.5),
                    m.latency_ms(0.99)
                ),
                met: m.latency_ms(0.5) <= 1.0 && m.latency_ms(0.99) <= 5.0,
            });
        }
    }
    targets_table(&targets)
}

fn report(rows: &[Row], plan: &Plan, chart: &str) -> String {
    let mut text = targets(rows);
    text += "| system | clients | load | published msgs/s | delivered msgs/s | p50 ms | p99 ms | p99.9 ms \
                    | max ms | sent | lost | duplicates | server CPU | Redis CPU | load CPU |\n\
                    |---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for row in rows {
        let m = &row.merged;
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {:.0}% | {:.0}% | {:.0}% |\n",
            row.system,
            thousands(row.clients as f64),
            row.mode,
            thousands(m.publish_rate()),
            thousands(m.rate()),
            m.latency_ms(0.5),
            m.latency_ms(0.99),
            m.latency_ms(0.999),
            m.max_ms(),
            thousands(m.sent),
            thousands(m.sent - m.unique),
            thousands(m.duplicates),
            row.server_cpu,
            row.redis_cpu,
            row.load_cpu,
        ));
    }
    let stray: f64 = rows.iter().map(|r| r.merged.other).sum();
    if stray > 0.0 {
        text.push_str(&format!(
            "\n{} frames were neither a numbered message nor an `ok` or `pong` reply \
             (error frames, foreign bodies).\n",
            thousands(stray)
        ));
    }
    text.push_str(&format!(
        "\n{chart}\n\n### Method\n\n\
         One gateway (`wsmq-gateway serve`, Redis engine, default window 64) or one Node \
         server (`bench/node/ws-rsmq-worker.js`: `ws` + one npm `rsmq-worker` per \
         `/subscribe/<queue>`, default options, delete right after send) against the \
         bench's Redis. The load tool (`crates/wsmq-load`, {min} or more processes of at most {per} clients) \
         connects every client, each subscribing to its own fresh queue, then publishes \
         with `send_batch` (≤ 50 messages per call, 4 calls in flight, realtime \
         notification on) to those queues in turn; over v1 every message is acked on \
         arrival. Full speed sends {} messages through wsmq and {} through the Node \
         design; the paced runs last {} s. Delivered msgs/s counts distinct messages from \
         the first publish to the last delivery; latency is publish → arrival at the \
         client, from the µs timestamp the publisher writes into each 100-byte body \
         (same machine, same clock). Lost = sent − distinct delivered at the end of the \
         run; duplicates = deliveries of a message already delivered. CPU is utime + \
         stime from `/proc/<pid>/stat` over the run, as % of one core.\n",
        thousands(plan.messages as f64),
        thousands(plan.node_messages as f64),
        plan.paced_seconds,
        per = thousands(load::CLIENTS_PER_PROCESS as f64),
        min = load::MIN_PROCESSES,
    ));
    text
}
