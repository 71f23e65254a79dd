//! `cargo xtask bench delivery`: queue delivery end to end, publish → WebSocket, with
//! acks, through wsmq (v1), through wsmq's Server-Sent Events with acks over
//! `POST /api/ack`, and through the Node design it replaces (legacy dialect).
//!
//! Every client consumes a queue of its own; the load processes publish to those queues
//! with `send_batch` and the rsmq realtime notification, and measure publish → deliver
//! latency from the µs timestamp in each body. Each system runs at full speed, then paced
//! at 1,000 msgs/s, then paced at half the rate it reached at full speed.
//!
//! A last run has the publisher that existing applications use: npm rsmq, one
//! `sendMessage` at a time with realtime on (`bench/node/rsmq-publisher.js`), at
//! 1,000 msgs/s to wsmq clients of the legacy dialect.

use std::process::Command;

use super::{
    Context, Section, chart,
    format::{Target, targets_table, thousands},
    load::{self, Merged},
    service::{JWT_SECRET, Service},
};
use crate::util;

const FULL_SPEED: &str = "full speed";
const PACED_1000: &str = "paced 1,000/s";
const NPM_PACED_1000: &str = "npm rsmq sendMessage, paced 1,000/s";

/// Clients of the npm rsmq run, in either mode (the figure).
const NPM_CLIENTS: usize = 100;

/// Keep-alive connections per SSE client for its acks, one request in flight on each: a
/// browser's `fetch` (wsmq.js) gets up to 6 connections per host over HTTP/1.1, the stream
/// holding one.
const ACK_CONNECTIONS: usize = 4;

/// Issue 17: SSE with HTTP acks delivers at least this share of v1's full-speed rate.
const SSE_SHARE: f64 = 0.5;

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
    for system in [System::Wsmq, System::WsmqSse, System::Node] {
        let server = match system {
            System::Wsmq | System::WsmqLegacy | System::WsmqSse => Service::gateway(ctx.redis)?,
            System::Node => Service::node(ctx.redis)?,
        };
        for &clients in plan.clients {
            let full_messages = match system {
                System::Wsmq | System::WsmqLegacy | System::WsmqSse => plan.messages,
                System::Node => plan.node_messages,
            };
            let mut measure = |mode: String, messages: u64, rate: f64| {
                run_no += 1;
                let publish = Publish {
                    npm: false,
                    messages,
                    rate,
                };
                measured(ctx, &server, system, clients, run_no, mode, publish, plan)
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
    let server = Service::gateway(ctx.redis)?;
    let publish = Publish {
        npm: true,
        messages: (1_000.0 * plan.paced_seconds) as u64,
        rate: 1_000.0,
    };
    rows.push(measured(
        ctx,
        &server,
        System::WsmqLegacy,
        NPM_CLIENTS,
        run_no + 1,
        NPM_PACED_1000.to_owned(),
        publish,
        plan,
    )?);
    drop(server);
    let chart_rows: Vec<chart::Bar> = rows
        .iter()
        .map(|row| chart::Bar {
            label: format!("{}, {} clients, {}", row.system, row.clients, row.mode),
            merged: &row.merged,
        })
        .collect();
    let chart = ctx.write_chart("delivery", "Queue delivery: publish → deliver", &chart_rows)?;
    Ok(Section {
        title: "Queue delivery: publish → WebSocket or SSE, with acks".to_owned(),
        body: report(&rows, plan, &chart),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Wsmq,
    /// wsmq's gateway, its clients speaking the legacy dialect (no acks: deleted on send).
    WsmqLegacy,
    /// wsmq's gateway, its clients reading `GET /sse` streams and acking each message with
    /// `POST /api/ack`.
    WsmqSse,
    Node,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Wsmq => "wsmq v1",
            System::WsmqLegacy => "wsmq legacy",
            System::WsmqSse => "wsmq SSE",
            System::Node => "Node ws + rsmq-worker",
        }
    }

    /// The load tool's `--target`.
    fn target(self) -> &'static str {
        match self {
            System::Wsmq => "wsmq",
            System::WsmqLegacy => "wsmq-legacy",
            System::WsmqSse => "wsmq-sse",
            System::Node => "legacy",
        }
    }
}

/// What a run publishes, and how.
#[derive(Debug, Clone, Copy)]
struct Publish {
    /// npm rsmq, one `sendMessage` at a time in a process of its own, rather than the
    /// load processes' `send_batch`.
    npm: bool,
    messages: u64,
    /// Messages per second; 0 for full speed.
    rate: f64,
}

/// [`measure`] with its progress on stderr, as run number `run_no` in `mode`.
#[allow(clippy::too_many_arguments)]
fn measured(
    ctx: &Context<'_>,
    server: &Service,
    system: System,
    clients: usize,
    run_no: usize,
    mode: String,
    publish: Publish,
    plan: &Plan,
) -> anyhow::Result<Row> {
    eprintln!(
        "xtask bench delivery: {}, {clients} clients, {mode}: {} messages",
        system.name(),
        publish.messages
    );
    let prefix = format!("d{run_no}-");
    let row = measure(ctx, server, system, clients, &prefix, publish, plan)?;
    eprintln!(
        "  {} msgs/s, p50 {:.2} ms, p99 {:.2} ms, lost {}, duplicates {}",
        thousands(row.merged.rate()),
        row.merged.latency_ms(0.5),
        row.merged.latency_ms(0.99),
        row.merged.sent - row.merged.unique,
        row.merged.duplicates
    );
    Ok(Row { mode, ..row })
}

fn measure(
    ctx: &Context<'_>,
    server: &Service,
    system: System,
    clients: usize,
    prefix: &str,
    publish: Publish,
    plan: &Plan,
) -> anyhow::Result<Row> {
    let parts = load::split(clients);
    let per_process = parts
        .iter()
        .map(|&(first, count)| {
            let share = count as f64 / clients as f64;
            let mut args = common_args(
                system.target(),
                server,
                first,
                count,
                prefix,
                plan.timeout_secs,
            );
            args.extend([
                "queue".to_owned(),
                "--redis-url".to_owned(),
                ctx.redis.url(),
            ]);
            if system == System::WsmqSse {
                args.extend(["--ack-connections".to_owned(), ACK_CONNECTIONS.to_string()]);
            }
            if publish.npm {
                // Numbered across all queues by the one publisher: each process is told the
                // total and the client count so that it can work out its share.
                args.extend([
                    "--messages".to_owned(),
                    publish.messages.to_string(),
                    "--external".to_owned(),
                    clients.to_string(),
                ]);
            } else {
                args.extend([
                    "--messages".to_owned(),
                    ((publish.messages as f64 * share).round() as u64).to_string(),
                    "--rate".to_owned(),
                    (publish.rate * share).to_string(),
                ]);
            }
            args
        })
        .collect();
    let mut commands = load::wsmq_load(per_process);
    if publish.npm {
        commands.push(npm_publisher(ctx, clients, prefix, publish, plan));
    }
    let run = load::timed_run(
        commands,
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

/// `bench/node/rsmq-publisher.js`, publishing to the queues of `clients` clients.
fn npm_publisher(
    ctx: &Context<'_>,
    clients: usize,
    prefix: &str,
    publish: Publish,
    plan: &Plan,
) -> Command {
    let mut command = Command::new("node");
    command
        .arg(util::project_root().join("bench/node/rsmq-publisher.js"))
        .args(["--redis-url", &ctx.redis.url()])
        .args(["--prefix", prefix])
        .args(["--queues", &clients.to_string()])
        .args(["--messages", &publish.messages.to_string()])
        .args(["--rate", &publish.rate.to_string()])
        .args(["--timeout-secs", &plan.timeout_secs.to_string()]);
    command
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

/// The queue-delivery targets, for each wsmq client count, then for the npm rsmq
/// publisher.
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
    for sse in rows
        .iter()
        .filter(|r| r.system == System::WsmqSse.name() && r.mode == FULL_SPEED)
    {
        let v1 = rows.iter().find(|r| {
            r.system == System::Wsmq.name() && r.mode == FULL_SPEED && r.clients == sse.clients
        });
        if let Some(v1) = v1 {
            targets.push(sse_target(v1, sse));
        }
    }
    for row in rows.iter().filter(|r| r.mode == NPM_PACED_1000) {
        let m = &row.merged;
        targets.push(Target {
            target: format!(
                "npm rsmq publisher (one `sendMessage` at a time, realtime) at 1,000 msgs/s to \
                 {} legacy clients: p99 ≤ 5 ms",
                thousands(row.clients as f64)
            ),
            measured: format!(
                "p50 {:.2} ms, p99 {:.2} ms, lost {}, duplicates {}",
                m.latency_ms(0.5),
                m.latency_ms(0.99),
                thousands(m.sent - m.unique),
                thousands(m.duplicates)
            ),
            met: m.latency_ms(0.99) <= 5.0,
        });
    }
    targets_table(&targets)
}

/// SSE with HTTP acks at full speed delivers ≥ [`SSE_SHARE`] of v1's rate with as many
/// clients, both from this run.
fn sse_target(v1: &Row, sse: &Row) -> Target {
    let (v1_rate, sse_rate) = (v1.merged.rate(), sse.merged.rate());
    Target {
        target: format!(
            "{} clients, full speed: SSE delivered msgs/s ≥ {:.0}% of v1's",
            thousands(sse.clients as f64),
            SSE_SHARE * 100.0
        ),
        measured: format!(
            "{} vs {} msgs/s ({:.0}%)",
            thousands(sse_rate),
            thousands(v1_rate),
            100.0 * sse_rate / v1_rate.max(1e-9)
        ),
        met: sse_rate >= SSE_SHARE * v1_rate,
    }
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
    let failed_acks: f64 = rows.iter().map(|r| r.merged.failed_acks).sum();
    if failed_acks > 0.0 {
        text.push_str(&format!(
            "\n{} acks over `POST /api/ack` were not applied (a status other than 200, or \
             no answer).\n",
            thousands(failed_acks)
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
         stime from `/proc/<pid>/stat` over the run, as % of one core.\n\n\
         The SSE rows: a fresh gateway; each client opens `GET /sse?queue=<queue>` over \
         HTTP/1.1 (hyper's client) with its JWT in `Authorization: Bearer`, as wsmq.js's SSE \
         fallback does, and acks every message on arrival with `POST /api/ack` \
         (`{{\"queue\":…,\"id\":…}}`, the same token) over {ack} keep-alive HTTP/1.1 connections \
         of its own, one request in flight on each (a browser's `fetch` gets up to 6 \
         connections per host, the stream holding one); an ack is answered once the gateway \
         has applied it. Publishing and counting are as above. Target: at full speed SSE \
         delivers at least {share:.0}% of the msgs/s of the v1 row with as many clients in \
         the same run.\n\n\
         The npm rsmq run: a fresh gateway, {npm_clients} clients of the legacy dialect (JWT \
         in `x-token`, `/subscribe/<queue>` on `/`; the gateway deletes each message once \
         written, so no acks), fed by `bench/node/rsmq-publisher.js`: npm rsmq 0.12.4 with \
         `realtime: true`, each `sendMessage` awaited before the next (npm rsmq reads the \
         queue and Redis `TIME`, then runs a MULTI, then PUBLISHes the notification), at \
         1,000 msgs/s by schedule for {} s, message k to queue k mod {npm_clients}, bodies in \
         the load tool's format with a µs timestamp from `performance.timeOrigin + \
         performance.now()`. Its load CPU includes the publisher.\n",
        thousands(plan.messages as f64),
        thousands(plan.node_messages as f64),
        plan.paced_seconds,
        plan.paced_seconds,
        npm_clients = NPM_CLIENTS,
        ack = ACK_CONNECTIONS,
        share = SSE_SHARE * 100.0,
        per = thousands(load::CLIENTS_PER_PROCESS as f64),
        min = load::MIN_PROCESSES,
    ));
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{FULL_SPEED, Merged, Row, System, targets};

    /// A full-speed row that delivered `rate` msgs/s for one second.
    fn row(system: System, clients: usize, rate: u64) -> Row {
        let result = json!({
            "sent": rate,
            "unique": rate,
            "first_send_us": 1_000_000,
            "last_send_us": 1_500_000,
            "last_recv_us": 2_000_000,
        });
        Row {
            system: system.name(),
            clients,
            mode: FULL_SPEED.to_owned(),
            merged: Merged::of(&[], &[result]).unwrap(),
            server_cpu: 0.0,
            redis_cpu: 0.0,
            load_cpu: 0.0,
        }
    }

    #[test]
    fn sse_is_judged_against_v1_with_as_many_clients() {
        let rows = [
            row(System::Wsmq, 100, 80_000),
            row(System::Wsmq, 1_000, 90_000),
            row(System::WsmqSse, 100, 40_000),
            row(System::WsmqSse, 1_000, 44_000),
        ];
        let text = targets(&rows);
        assert!(
            text.contains(
                "| 100 clients, full speed: SSE delivered msgs/s ≥ 50% of v1's \
                 | 40,000 vs 80,000 msgs/s (50%) | met |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| 1,000 clients, full speed: SSE delivered msgs/s ≥ 50% of v1's \
                 | 44,000 vs 90,000 msgs/s (49%) | **not met** |"
            ),
            "{text}"
        );
    }
}
