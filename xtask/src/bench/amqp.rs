//! `cargo xtask bench amqp`: wsmq on RabbitMQ against wsmq on Redis in the same run, and
//! against the Node chat's RabbitMQ design as the peer.
//!
//! The bench starts a `rabbitmq-server` node of its own (`wsmq_testkit::RabbitServer`: own
//! node name, ports and data folder; the Erlang VM run directly, so its PID is the
//! `beam.smp` whose CPU time `/proc/<pid>/stat` gives) beside the bench's Redis.
//!
//! - Queue delivery with acks: every client consumes a queue of its own over v1 and acks each
//!   message on arrival. On RabbitMQ the load processes publish as the chat's servers do, to
//!   the direct exchange `wsmq.direct` with the user as routing key, each publish confirmed;
//!   on Redis they publish with `send_batch` as in `cargo xtask bench delivery`. The Node
//!   chat's design (`bench/node/ws-amqplib.js`: `ws` + npm amqplib, an exclusive auto-delete
//!   queue per socket consumed with `noAck`) gets the same RabbitMQ publishers. Each runs at
//!   full speed, then paced at 1,000 msgs/s.
//! - Channel fan-out: one channel, many v1 subscribers; published to `wsmq.channels` on
//!   RabbitMQ, `PUBLISH wsmq:ch:<channel>` on Redis; full speed, then paced at 50 msgs/s.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    Context, Section, chart,
    delivery::common_args,
    format::{Target, targets_table, thousands},
    load::{self, Merged, Timed},
    service::Service,
};

const FULL_SPEED: &str = "full speed";
const PACED_1000: &str = "paced 1,000/s";
/// The fan-out runs' paced rate, as in `cargo xtask bench fanout`.
const FANOUT_RATE: f64 = 50.0;
/// How long the Node chat may take to bind every socket's queue (and the gateway to consume
/// every queue).
const BIND_TIMEOUT: Duration = Duration::from_secs(60);

/// Sizes of a run, by mode.
struct Plan {
    clients: &'static [usize],
    /// Messages of a full-speed queue run.
    messages: u64,
    /// Seconds of a paced queue run.
    paced_seconds: f64,
    subscribers: &'static [usize],
    /// Messages of a full-speed fan-out run.
    fanout_messages: u64,
    /// Seconds of a paced fan-out run.
    fanout_seconds: f64,
    timeout_secs: u64,
}

const FULL: Plan = Plan {
    clients: &[100, 1_000],
    messages: 100_000,
    paced_seconds: 20.0,
    subscribers: &[1_000],
    fanout_messages: 2_000,
    fanout_seconds: 20.0,
    timeout_secs: 300,
};
const QUICK: Plan = Plan {
    clients: &[100],
    messages: 5_000,
    paced_seconds: 3.0,
    subscribers: &[100],
    fanout_messages: 200,
    fanout_seconds: 2.0,
    timeout_secs: 60,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    /// The gateway with `--amqp-url`.
    WsmqRabbit,
    /// The gateway with `--redis-url`.
    WsmqRedis,
    /// `bench/node/ws-amqplib.js`.
    NodeChat,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::WsmqRabbit => "wsmq v1, RabbitMQ engine",
            System::WsmqRedis => "wsmq v1, Redis engine",
            System::NodeChat => "Node chat: ws + amqplib, queue per socket, noAck",
        }
    }

    fn broker(self) -> &'static str {
        match self {
            System::WsmqRabbit | System::NodeChat => "RabbitMQ",
            System::WsmqRedis => "Redis",
        }
    }

    /// The load tool's `--target`.
    fn target(self) -> &'static str {
        match self {
            System::WsmqRabbit | System::WsmqRedis => "wsmq",
            System::NodeChat => "legacy",
        }
    }
}

/// One measured run.
struct Row {
    system: System,
    clients: usize,
    mode: String,
    /// Messages published (to each subscriber, for fan-out).
    messages: u64,
    merged: Merged,
    server_cpu: f64,
    broker_cpu: f64,
    /// CPU seconds of the broker over the run.
    broker_seconds: f64,
    load_cpu: f64,
}

impl Row {
    fn of(system: System, clients: usize, mode: String, messages: u64, run: Timed) -> Row {
        Row {
            system,
            clients,
            mode,
            messages,
            broker_seconds: run.redis_cpu / 100.0 * run.seconds,
            server_cpu: run.server_cpu,
            broker_cpu: run.redis_cpu,
            load_cpu: run.load_cpu,
            merged: run.merged,
        }
    }

    /// Broker CPU per delivered message (per delivery for fan-out), µs.
    fn broker_us_per_message(&self) -> f64 {
        1e6 * self.broker_seconds / self.merged.unique.max(1.0)
    }
}

/// The broker of the run.
struct Rabbit {
    server: wsmq_testkit::RabbitServer,
    version: String,
}

pub(super) fn run(ctx: &Context<'_>) -> anyhow::Result<Section> {
    let plan = if ctx.quick { &QUICK } else { &FULL };
    let server = wsmq_testkit::RabbitServer::start().map_err(|err| match err {
        wsmq_testkit::Error::RabbitNotInstalled => {
            anyhow::anyhow!("{err}, or run scripts/test.sh, which installs it")
        }
        err => err.into(),
    })?;
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", server.pid())).unwrap_or_default();
    eprintln!(
        "xtask bench amqp: rabbitmq-server {} pid {} ({}) on port {}",
        server.node(),
        server.pid(),
        comm.trim(),
        server.port()
    );
    anyhow::ensure!(
        comm.trim() == "beam.smp",
        "the RabbitMQ node's PID {} is {:?}, not beam.smp: its CPU would be misread",
        server.pid(),
        comm.trim()
    );
    let version = server
        .ctl(&["version"])
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let rabbit = Rabbit { server, version };

    let mut queue_rows = Vec::new();
    let mut run_no = 0;
    for system in [System::WsmqRabbit, System::WsmqRedis, System::NodeChat] {
        let service = match system {
            System::WsmqRabbit => Service::gateway_amqp(&rabbit.server.url())?,
            System::WsmqRedis => Service::gateway(ctx.redis)?,
            System::NodeChat => Service::node_amqp(&rabbit.server.url())?,
        };
        for &clients in plan.clients {
            let paced = (1_000.0 * plan.paced_seconds) as u64;
            for (mode, messages, rate) in [
                (FULL_SPEED, plan.messages, 0.0),
                (PACED_1000, paced, 1_000.0),
            ] {
                run_no += 1;
                eprintln!(
                    "xtask bench amqp: {}, {clients} clients, {mode}: {messages} messages",
                    system.name()
                );
                let run = queue_run(
                    ctx, &rabbit, &service, system, clients, run_no, messages, rate, plan,
                )?;
                let row = Row::of(system, clients, mode.to_owned(), messages, run);
                let m = &row.merged;
                eprintln!(
                    "  {} msgs/s, p50 {:.2} ms, p99 {:.2} ms, lost {}, duplicates {}, {} CPU {:.0}%",
                    thousands(m.rate()),
                    m.latency_ms(0.5),
                    m.latency_ms(0.99),
                    m.sent - m.unique,
                    m.duplicates,
                    system.broker(),
                    row.broker_cpu,
                );
                queue_rows.push(row);
            }
        }
        drop(service);
    }

    let mut fanout_rows = Vec::new();
    for system in [System::WsmqRabbit, System::WsmqRedis] {
        let service = match system {
            System::WsmqRabbit => Service::gateway_amqp(&rabbit.server.url())?,
            _ => Service::gateway(ctx.redis)?,
        };
        for &subscribers in plan.subscribers {
            let paced = (FANOUT_RATE * plan.fanout_seconds) as u64;
            for (mode, messages, rate) in [
                (FULL_SPEED.to_owned(), plan.fanout_messages, 0.0),
                (format!("paced {FANOUT_RATE}/s"), paced, FANOUT_RATE),
            ] {
                run_no += 1;
                eprintln!(
                    "xtask bench amqp: fan-out, {}, {subscribers} subscribers, {mode}",
                    system.name()
                );
                let run = fanout_run(
                    ctx,
                    &rabbit,
                    &service,
                    system,
                    subscribers,
                    run_no,
                    messages,
                    rate,
                    plan,
                )?;
                let row = Row::of(system, subscribers, mode, messages, run);
                eprintln!(
                    "  {} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, {:.1}% delivered",
                    thousands(row.merged.rate()),
                    row.merged.latency_ms(0.5),
                    row.merged.latency_ms(0.99),
                    100.0 * row.merged.unique / (messages as f64 * subscribers as f64).max(1.0)
                );
                fanout_rows.push(row);
            }
        }
        drop(service);
    }
    let Rabbit {
        mut server,
        version,
    } = rabbit;
    server.stop()?;

    let queue_chart = ctx.write_chart(
        "amqp-delivery",
        "Queue delivery on RabbitMQ and Redis: publish → deliver",
        &bars(&queue_rows, "clients"),
    )?;
    let fanout_chart = ctx.write_chart(
        "amqp-fanout",
        "Channel fan-out on RabbitMQ and Redis: publish → deliver",
        &bars(&fanout_rows, "subscribers"),
    )?;
    Ok(Section {
        title: "RabbitMQ: queue delivery and fan-out, against Redis and the Node chat".to_owned(),
        body: report(
            &queue_rows,
            &fanout_rows,
            plan,
            &version,
            &queue_chart,
            &fanout_chart,
        ),
    })
}

/// The chart's bars, one per row.
fn bars<'a>(rows: &'a [Row], unit: &str) -> Vec<chart::Bar<'a>> {
    rows.iter()
        .map(|row| chart::Bar {
            label: format!(
                "{}, {} {unit}, {}",
                row.system.name(),
                thousands(row.clients as f64),
                row.mode
            ),
            merged: &row.merged,
        })
        .collect()
}

/// One queue-delivery run of `system` with `clients` clients.
#[allow(clippy::too_many_arguments)]
fn queue_run(
    ctx: &Context<'_>,
    rabbit: &Rabbit,
    service: &Service,
    system: System,
    clients: usize,
    run_no: usize,
    messages: u64,
    rate: f64,
    plan: &Plan,
) -> anyhow::Result<Timed> {
    // The chat's queues die with their sockets; wsmq's are durable quorum queues, and a fresh
    // set per run would leave thousands of idle Raft groups on the node to skew the later
    // runs, so wsmq reuses one set per client count (each run acks all it receives).
    let prefix = match system {
        System::WsmqRabbit => format!("a{clients}-"),
        System::WsmqRedis => format!("r{run_no}-"),
        System::NodeChat => format!("n{run_no}-"),
    };
    let per_process = load::split(clients)
        .into_iter()
        .map(|(first, count)| {
            let share = count as f64 / clients as f64;
            let mut args = common_args(
                system.target(),
                service,
                first,
                count,
                &prefix,
                plan.timeout_secs,
            );
            args.push("queue".to_owned());
            match system {
                System::WsmqRedis => args.extend(["--redis-url".to_owned(), ctx.redis.url()]),
                System::WsmqRabbit | System::NodeChat => {
                    args.extend(["--amqp-url".to_owned(), rabbit.server.url()]);
                }
            }
            args.extend([
                "--messages".to_owned(),
                ((messages as f64 * share).round() as u64).to_string(),
                "--rate".to_owned(),
                (rate * share).to_string(),
            ]);
            args
        })
        .collect();
    let broker_pid = match system {
        System::WsmqRedis => ctx.redis.pid(),
        System::WsmqRabbit | System::NodeChat => rabbit.server.pid(),
    };
    load::timed_run_when(
        load::wsmq_load(per_process),
        service.pid(),
        broker_pid,
        &format!("{clients} clients"),
        || match system {
            System::NodeChat => wait_bound(service.addr, clients),
            System::WsmqRabbit => wait_consumed(&rabbit.server, &prefix, clients),
            System::WsmqRedis => Ok(()),
        },
    )
}

/// One fan-out run of `system` to `subscribers` subscribers of channel `f{run_no}`.
#[allow(clippy::too_many_arguments)]
fn fanout_run(
    ctx: &Context<'_>,
    rabbit: &Rabbit,
    service: &Service,
    system: System,
    subscribers: usize,
    run_no: usize,
    messages: u64,
    rate: f64,
    plan: &Plan,
) -> anyhow::Result<Timed> {
    let channel = format!("f{run_no}");
    let fanout = |publish: bool| {
        let mut args = vec![
            "fanout".to_owned(),
            "--channel".to_owned(),
            channel.clone(),
            "--messages".to_owned(),
            messages.to_string(),
            "--rate".to_owned(),
            rate.to_string(),
        ];
        if publish {
            args.push("--publish".to_owned());
            match system {
                System::WsmqRedis => args.extend(["--redis-url".to_owned(), ctx.redis.url()]),
                System::WsmqRabbit | System::NodeChat => {
                    args.extend(["--amqp-url".to_owned(), rabbit.server.url()]);
                }
            }
        }
        args
    };
    let target = system.target();
    let mut per_process: Vec<Vec<String>> = load::split(subscribers)
        .into_iter()
        .map(|(first, count)| {
            let mut args = common_args(target, service, first, count, "sub-", plan.timeout_secs);
            args.extend(fanout(false));
            args
        })
        .collect();
    // The publisher: a process of its own, with no subscribers.
    let mut publisher = common_args(target, service, 0, 0, "pub-", plan.timeout_secs);
    publisher.extend(fanout(true));
    per_process.push(publisher);
    let broker_pid = match system {
        System::WsmqRedis => ctx.redis.pid(),
        System::WsmqRabbit | System::NodeChat => rabbit.server.pid(),
    };
    load::timed_run(
        load::wsmq_load(per_process),
        service.pid(),
        broker_pid,
        &format!("{subscribers} subscribers"),
    )
}

/// Waits until the Node chat at `addr` has bound and consumes a queue for each of `clients`
/// sockets (`GET /bound`): the legacy dialect confirms no subscription, and the chat drops
/// what is published before the binding exists.
fn wait_bound(addr: SocketAddr, clients: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + BIND_TIMEOUT;
    loop {
        let bound = get(addr, "/bound")
            .ok()
            .and_then(|body| body.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if bound >= clients {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Node chat bound {bound} of {clients} queues in {BIND_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until each of the `clients` queues named `prefix…` has the gateway's consumer, as the
/// Node chat's run waits for its bindings: a v1 `subscribe` is answered before the node's
/// `basic.consume` is registered, and what is published before that waits in the queue, so
/// without this the run's first message to each queue measured the consumers' start-up
/// rather than delivery.
fn wait_consumed(
    server: &wsmq_testkit::RabbitServer,
    prefix: &str,
    clients: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + BIND_TIMEOUT;
    loop {
        let output = server
            .ctl(&[
                "list_queues",
                "--quiet",
                "--no-table-headers",
                "name",
                "consumers",
            ])
            .context("rabbitmqctl list_queues")?;
        let listing = String::from_utf8_lossy(&output.stdout);
        let consumed = listing
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter(|(name, consumers)| {
                name.starts_with(prefix) && consumers.trim().parse::<u32>().is_ok_and(|n| n > 0)
            })
            .count();
        if consumed >= clients {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the gateway consumed {consumed} of {clients} queues in {BIND_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The body of `GET path` from a local HTTP/1.1 server.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a body")?;
    Ok(body.to_owned())
}

/// The targets, judged on the RabbitMQ engine's rows.
fn targets(queue_rows: &[Row]) -> String {
    let mut targets = Vec::new();
    for row in queue_rows.iter().filter(|r| r.system == System::WsmqRabbit) {
        let m = &row.merged;
        let clients = thousands(row.clients as f64);
        if row.mode == FULL_SPEED {
            targets.push(Target {
                target: format!(
                    "{clients} clients, full speed: ≥ 10,000 msgs/s delivered and acked end to \
                     end, or RabbitMQ ≥ 90% of a core (with its cost per message); 0 lost"
                ),
                measured: format!(
                    "{} msgs/s, RabbitMQ {:.0}% ({:.0} µs CPU per message), lost {}",
                    thousands(m.rate()),
                    row.broker_cpu,
                    row.broker_us_per_message(),
                    thousands(m.sent - m.unique)
                ),
                met: (m.rate() >= 10_000.0 || row.broker_cpu >= 90.0) && m.sent == m.unique,
            });
        } else if row.mode == PACED_1000 {
            targets.push(Target {
                target: format!("{clients} clients at 1,000 msgs/s: p99 publish → socket ≤ 10 ms"),
                measured: format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    m.latency_ms(0.5),
                    m.latency_ms(0.99)
                ),
                met: m.latency_ms(0.99) <= 10.0,
            });
        }
    }
    targets_table(&targets)
}

fn report(
    queue_rows: &[Row],
    fanout_rows: &[Row],
    plan: &Plan,
    version: &str,
    queue_chart: &str,
    fanout_chart: &str,
) -> String {
    let mut text = targets(queue_rows);
    text.push_str(&format!("RabbitMQ {version}.\n\n### Queue delivery\n\n"));
    text += "| system | clients | load | published msgs/s | delivered msgs/s | p50 ms | p99 ms \
             | p99.9 ms | max ms | sent | lost | duplicates | server CPU | broker | broker CPU \
             | broker µs/msg | load CPU |\n\
             |---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|\n";
    for row in queue_rows {
        let m = &row.merged;
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {:.0}% | {} | {:.0}% | {:.0} | {:.0}% |\n",
            row.system.name(),
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
            row.system.broker(),
            row.broker_cpu,
            row.broker_us_per_message(),
            row.load_cpu,
        ));
    }
    text.push_str(&format!("\n{queue_chart}\n\n### Channel fan-out\n\n"));
    text += "| system | subscribers | load | published | deliveries/s | delivered | p50 ms \
             | p99 ms | p99.9 ms | max ms | duplicates | server CPU | broker | broker CPU \
             | broker µs/delivery | load CPU |\n\
             |---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|\n";
    for row in fanout_rows {
        let m = &row.merged;
        let expected = row.messages as f64 * row.clients as f64;
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2}% | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.0}% | {} | {:.0}% | {:.1} | {:.0}% |\n",
            row.system.name(),
            thousands(row.clients as f64),
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
            row.system.broker(),
            row.broker_cpu,
            row.broker_us_per_message(),
            row.load_cpu,
        ));
    }
    let stray: f64 = queue_rows
        .iter()
        .chain(fanout_rows)
        .map(|r| r.merged.other)
        .sum();
    if stray > 0.0 {
        text.push_str(&format!(
            "\n{} frames were neither a numbered message nor an `ok` or `pong` reply \
             (error frames, foreign bodies).\n",
            thousands(stray)
        ));
    }
    text.push_str(&format!(
        "\n{fanout_chart}\n\n### Method\n\n\
         The bench starts a RabbitMQ node of its own (own node name, ports and data folder; \
         the Erlang VM run directly) beside its Redis. Servers: one gateway \
         (`wsmq-gateway serve`, default window 64) with `--amqp-url` or with `--redis-url`; \
         and the Node chat's design, `bench/node/ws-amqplib.js`: `ws` + npm amqplib 2.3.1 on \
         one connection and channel, where each `/subscribe/<user>` (the legacy dialect) \
         gets an exclusive, auto-delete, server-named queue bound to `wsmq.direct` with the \
         user as key and consumed with `noAck: true`, each message written to the socket as \
         `{{\"message\":…}}`; the bench waits until every socket's queue is bound before it \
         publishes.\n\n\
         Queue delivery: each client subscribes to a queue of its own (on RabbitMQ, the \
         gateway's durable quorum queue; one set per client count, reused by the full-speed \
         and the paced run) and, over v1, acks every message on arrival. Publishing is done \
         by the load processes (`crates/wsmq-load`, {min} or more of at most {per} clients), \
         each to its own clients' queues in turn: on RabbitMQ `basic.publish` to \
         `wsmq.direct`, routing key = the user, no `message-id` (as the chat's servers \
         publish), on 4 channels in confirm mode with up to 50 publishes in flight on each \
         before their confirms are awaited; on Redis `send_batch` (≤ 50 messages per call, 4 \
         calls in flight, realtime notification). Full speed sends {msgs} messages; the \
         paced runs last {paced} s. Delivered msgs/s counts distinct messages from the first \
         publish to the last delivery (over v1 each is acked by then); latency is publish → \
         arrival at the client from the µs timestamp the publisher writes into each 100-byte \
         body. Lost = sent − distinct delivered at the end of the run.\n\n\
         Fan-out: one channel, v1 subscribers spread over the load processes, a publisher \
         process of its own: `basic.publish` to `wsmq.channels` with the channel as routing \
         key (confirmed) on RabbitMQ, `PUBLISH wsmq:ch:<channel>` on Redis; {fmsgs} messages \
         at full speed (4 in flight), then {FANOUT_RATE} msgs/s for {fsecs} s. Delivered is \
         the share of (messages × subscribers) that arrived (channels are at-most-once).\n\n\
         CPU is utime + stime from `/proc/<pid>/stat` (with descendants) over the run, as % \
         of one core: the server, the broker (RabbitMQ's `beam.smp`, or `redis-server`) and \
         the load processes (which include the publishers). Broker µs/msg = the broker's CPU \
         seconds over the run / distinct messages delivered (deliveries, for fan-out).\n",
        min = load::MIN_PROCESSES,
        per = thousands(load::CLIENTS_PER_PROCESS as f64),
        msgs = thousands(plan.messages as f64),
        paced = plan.paced_seconds,
        fmsgs = thousands(plan.fanout_messages as f64),
        fsecs = plan.fanout_seconds,
    ));
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{FULL_SPEED, Merged, Row, System, targets};

    /// A full-speed row that delivered `rate` msgs/s for one second, the broker at `cpu`%.
    fn row(system: System, rate: u64, cpu: f64) -> Row {
        let result = json!({
            "sent": rate,
            "unique": rate,
            "first_send_us": 1_000_000,
            "last_send_us": 1_500_000,
            "last_recv_us": 2_000_000,
        });
        Row {
            system,
            clients: 100,
            mode: FULL_SPEED.to_owned(),
            messages: rate,
            merged: Merged::of(&[], &[result]).unwrap(),
            server_cpu: 0.0,
            broker_cpu: cpu,
            broker_seconds: cpu / 100.0,
            load_cpu: 0.0,
        }
    }

    #[test]
    fn the_throughput_target_is_met_by_rate_or_by_a_busy_broker() {
        let text = targets(&[row(System::WsmqRabbit, 12_000, 50.0)]);
        assert!(
            text.contains("12,000 msgs/s, RabbitMQ 50% (42 µs CPU per message), lost 0 | met |"),
            "{text}"
        );
        let text = targets(&[row(System::WsmqRabbit, 6_000, 95.0)]);
        assert!(
            text.contains("RabbitMQ 95% (158 µs CPU per message), lost 0 | met |"),
            "{text}"
        );
        let text = targets(&[row(System::WsmqRabbit, 6_000, 60.0)]);
        assert!(text.contains("| **not met** |"), "{text}");
        // Only the RabbitMQ engine's rows are judged.
        let text = targets(&[row(System::WsmqRedis, 6_000, 10.0)]);
        assert!(!text.contains("msgs/s"), "{text}");
    }
}
