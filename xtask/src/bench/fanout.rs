//! `cargo xtask bench fanout`: one channel, many subscribers, through wsmq (Redis
//! pub/sub → one node) and through Nchan (HTTP publisher → websocket subscribers), at
//! full speed and paced at 50 msgs/s.
//!
//! A dedicated load process publishes (wsmq: `PUBLISH wsmq:ch:<channel>`, as any wsmq
//! publisher does; Nchan: `POST /pub/<channel>`); the subscriber processes measure
//! publish → deliver latency from the µs timestamp in each body.

use super::{
    Context, Section, chart,
    delivery::common_args,
    format::{Target, targets_table, thousands},
    load::{self, Merged},
    service::Service,
};

const FULL_SPEED: &str = "full speed";

struct Row {
    system: &'static str,
    subscribers: usize,
    mode: String,
    messages: u64,
    merged: Merged,
    server_cpu: f64,
    redis_cpu: f64,
    load_cpu: f64,
}

struct Plan {
    subscribers: &'static [usize],
    /// Messages of a full-speed run.
    messages: u64,
    /// Seconds of the run paced at 50 msgs/s.
    paced_seconds: f64,
    timeout_secs: u64,
}

const FULL: Plan = Plan {
    subscribers: &[1_000, 10_000],
    messages: 2_000,
    paced_seconds: 20.0,
    timeout_secs: 300,
};
const QUICK: Plan = Plan {
    subscribers: &[100, 1_000],
    messages: 200,
    paced_seconds: 2.0,
    timeout_secs: 60,
};
const PACED_RATE: f64 = 50.0;

#[derive(Debug, Clone, Copy)]
enum System {
    Wsmq,
    Nchan,
}

pub(super) fn run(ctx: &Context<'_>) -> anyhow::Result<Section> {
    let plan = if ctx.quick { &QUICK } else { &FULL };
    let mut rows = Vec::new();
    let mut run_no = 0;
    for system in [System::Wsmq, System::Nchan] {
        let server = match system {
            System::Wsmq => Service::gateway(ctx.redis)?,
            System::Nchan => Service::nchan()?,
        };
        for &subscribers in plan.subscribers {
            let paced = (PACED_RATE * plan.paced_seconds) as u64;
            for (mode, messages, rate) in [
                (FULL_SPEED.to_owned(), plan.messages, 0.0),
                (format!("paced {PACED_RATE}/s"), paced, PACED_RATE),
            ] {
                run_no += 1;
                let channel = format!("f{run_no}");
                let name = match system {
                    System::Wsmq => "wsmq",
                    System::Nchan => "Nchan",
                };
                eprintln!("xtask bench fanout: {name}, {subscribers} subscribers, {mode}");
                let row = measure(
                    ctx,
                    &server,
                    system,
                    subscribers,
                    &channel,
                    messages,
                    rate,
                    plan,
                )?;
                eprintln!(
                    "  {} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, {:.1}% delivered",
                    thousands(row.merged.rate()),
                    row.merged.latency_ms(0.5),
                    row.merged.latency_ms(0.99),
                    100.0 * row.merged.unique / (messages as f64 * subscribers as f64)
                );
                rows.push(Row {
                    mode,
                    system: name,
                    ..row
                });
            }
        }
        drop(server);
    }
    let bars: Vec<chart::Bar> = rows
        .iter()
        .map(|row| chart::Bar {
            label: format!(
                "{}, {} subscribers, {}",
                row.system,
                thousands(row.subscribers as f64),
                row.mode
            ),
            merged: &row.merged,
        })
        .collect();
    let chart = ctx.write_chart("fanout", "Channel fan-out: publish → deliver", &bars)?;
    Ok(Section {
        title: "Fan-out: one channel, many subscribers".to_owned(),
        body: report(&rows, plan, &chart),
    })
}

#[allow(clippy::too_many_arguments)]
fn measure(
    ctx: &Context<'_>,
    server: &Service,
    system: System,
    subscribers: usize,
    channel: &str,
    messages: u64,
    rate: f64,
    plan: &Plan,
) -> anyhow::Result<Row> {
    let target = match system {
        System::Wsmq => "wsmq",
        System::Nchan => "nchan",
    };
    let fanout = |publish: bool| {
        let mut args = vec![
            "fanout".to_owned(),
            "--channel".to_owned(),
            channel.to_owned(),
            "--messages".to_owned(),
            messages.to_string(),
            "--rate".to_owned(),
            rate.to_string(),
            "--redis-url".to_owned(),
            ctx.redis.url(),
        ];
        if publish {
            args.push("--publish".to_owned());
        }
        args
    };
    let mut per_process: Vec<Vec<String>> = load::split(subscribers)
        .into_iter()
        .map(|(first, count)| {
            let mut args = common_args(target, server, first, count, "sub-", plan.timeout_secs);
            args.extend(fanout(false));
            args
        })
        .collect();
    // The publisher: a process of its own, with no subscribers.
    let mut publisher = common_args(target, server, 0, 0, "pub-", plan.timeout_secs);
    publisher.extend(fanout(true));
    per_process.push(publisher);

    let run = load::timed_run(
        load::wsmq_load(per_process),
        server.pid(),
        ctx.redis.pid(),
        &format!("{subscribers} subscribers"),
    )?;
    Ok(Row {
        system: "",
        subscribers,
        mode: String::new(),
        messages,
        server_cpu: run.server_cpu,
        redis_cpu: run.redis_cpu,
        load_cpu: run.load_cpu,
        merged: run.merged,
    })
}

/// The fan-out targets: p99 at 1,000 subscribers paced, and full-speed deliveries/s
/// against Nchan's at each size.
fn targets(rows: &[Row]) -> String {
    let find = |system: &str, subscribers: usize, full: bool| {
        rows.iter().find(|r| {
            r.system == system && r.subscribers == subscribers && (r.mode == FULL_SPEED) == full
        })
    };
    let mut targets = Vec::new();
    if let Some(row) = find("wsmq", 1_000, false) {
        let p99 = row.merged.latency_ms(0.99);
        let nchan = find("Nchan", 1_000, false)
            .map(|n| format!(" (Nchan: {:.2} ms)", n.merged.latency_ms(0.99)))
            .unwrap_or_default();
        targets.push(Target {
            target: format!("1,000 subscribers at {PACED_RATE} msgs/s: p99 ≤ 15 ms"),
            measured: format!("p99 {p99:.2} ms{nchan}"),
            met: p99 <= 15.0,
        });
    }
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.subscribers).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for subscribers in sizes {
        if let (Some(wsmq), Some(nchan)) = (
            find("wsmq", subscribers, true),
            find("Nchan", subscribers, true),
        ) {
            let (ours, theirs) = (wsmq.merged.rate(), nchan.merged.rate());
            targets.push(Target {
                target: format!(
                    "{} subscribers, full speed: deliveries/s ≥ Nchan's",
                    thousands(subscribers as f64)
                ),
                measured: format!("{} vs {}", thousands(ours), thousands(theirs)),
                met: ours >= theirs,
            });
        }
    }
    targets_table(&targets)
}

fn report(rows: &[Row], plan: &Plan, chart: &str) -> String {
    let mut text = targets(rows);
    text += "| system | subscribers | load | published | deliveries/s | delivered | p50 ms \
                    | p99 ms | p99.9 ms | max ms | duplicates | server CPU | Redis CPU | load CPU |\n\
                    |---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for row in rows {
        let m = &row.merged;
        let expected = row.messages as f64 * row.subscribers as f64;
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.0}% | {:.0}% | {:.0}% |\n",
            row.system,
            thousands(row.subscribers as f64),
            row.mode,
            thousands(m.sent),
            thousands(m.rate()),
            100.0 * m.unique / expected.max(1.0),
            m.latency_ms(0.5),
            m.latency_ms(0.99),
            m.latency_ms(0.999),
            m.max_ms(),
            thousands(m.duplicates),
            row.server_cpu,
            row.redis_cpu,
            row.load_cpu,
        ));
    }
    text.push_str(&format!(
        "\n{chart}\n\n### Method\n\n\
         wsmq: one gateway against the bench's Redis; subscribers send \
         `{{\"op\":\"subscribe\",\"channel\":…}}` over v1 and the publisher runs `PUBLISH \
         wsmq:ch:<channel>`. Nchan: nginx (`worker_processes auto`) with a websocket \
         subscriber location and an HTTP publisher location, config written by the bench \
         into a temporary prefix; the publisher POSTs. Full speed publishes {} messages \
         (4 publishes in flight), paced runs {PACED_RATE} msgs/s for {} s; bodies are 100 \
         bytes with the publisher's µs timestamp. Subscribers are spread over {} or more \
         load processes of at most {} clients; the publisher is a process of its own. \
         Deliveries/s counts distinct \
         deliveries to all subscribers from the first publish to the last delivery; \
         delivered is the share of (messages × subscribers) that arrived (channels are \
         at-most-once). Subscribers stop when they have every message or after 2 s \
         without one.\n",
        thousands(plan.messages as f64),
        plan.paced_seconds,
        load::MIN_PROCESSES,
        thousands(load::CLIENTS_PER_PROCESS as f64),
    ));
    text
}
