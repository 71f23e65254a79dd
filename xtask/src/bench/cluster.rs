//! `cargo xtask bench cluster`: wsmq on a Redis Cluster of 3 masters against the single Redis
//! of the same run: queue delivery with acks over 1,000 queues, and channel fan-out.
//!
//! Each deployment gets a fresh gateway (`--redis-cluster` on the cluster). Around each
//! timed run the bench reads, for every Redis process it started, its CPU time from
//! `/proc/<pid>/stat` and `total_commands_processed` from `INFO stats`; from those come
//! Redis CPU per message (all masters together) and each master's share of the commands and
//! of the CPU. The shares and the projection to more masters are pure functions of those
//! readings, tested below.

use super::{
    Context, Section, chart,
    delivery::common_args,
    format::{Target, targets_table, thousands},
    load::{self, Merged},
    procfs,
    service::Service,
};

/// Issue 12: the cluster delivers at least this share of the single Redis's msgs/s here,
/// where three masters, the gateway and the load tool share the machine's cores.
const THROUGHPUT_SHARE: f64 = 0.8;

/// Issue 12: with 1,000 queues the busiest master takes at most this many times the mean
/// share of the commands.
const BALANCE: f64 = 1.15;

/// Masters of the projection in the report.
const PROJECTED_MASTERS: [usize; 3] = [3, 6, 12];

/// Sizes of a run, by mode.
struct Plan {
    /// Queues (one client each) of the delivery runs: the spread over the masters.
    queues: usize,
    /// Messages of a delivery run, at full speed.
    messages: u64,
    subscribers: usize,
    /// Messages of a fan-out run, at full speed.
    fanout_messages: u64,
    timeout_secs: u64,
}

const FULL: Plan = Plan {
    queues: 1_000,
    messages: 200_000,
    subscribers: 1_000,
    fanout_messages: 2_000,
    timeout_secs: 300,
};
const QUICK: Plan = Plan {
    queues: 1_000,
    messages: 10_000,
    subscribers: 100,
    fanout_messages: 200,
    timeout_secs: 60,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deployment {
    Single,
    Cluster,
}

impl Deployment {
    fn name(self) -> &'static str {
        match self {
            Deployment::Single => "single Redis",
            Deployment::Cluster => "cluster, 3 masters",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Delivery,
    Fanout,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Delivery => "queue delivery",
            Scenario::Fanout => "fan-out",
        }
    }
}

/// A `redis-server` process of the bench.
struct Node {
    port: u16,
    pid: u32,
}

/// What one Redis process did during a run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    cpu_seconds: f64,
    commands: f64,
}

/// One measured run.
struct Row {
    deployment: Deployment,
    scenario: Scenario,
    /// Clients: queues of a delivery run, subscribers of a fan-out run.
    clients: usize,
    merged: Merged,
    /// Per Redis process, in port order of the deployment.
    redis: Vec<(u16, Usage)>,
    /// CPU seconds of the gateway over the run.
    server_seconds: f64,
    load_cpu: f64,
    seconds: f64,
}

impl Row {
    /// Messages the Redis work is divided by: distinct deliveries of a queue run (each one
    /// sent, delivered and acked once), publishes of a fan-out run (one per message
    /// whatever the subscribers, who are all on the one gateway).
    fn messages(&self) -> f64 {
        match self.scenario {
            Scenario::Delivery => self.merged.unique,
            Scenario::Fanout => self.merged.sent,
        }
    }

    fn redis_cpu_seconds(&self) -> f64 {
        self.redis.iter().map(|(_, u)| u.cpu_seconds).sum()
    }

    /// Redis CPU per message, µs, all processes together.
    fn redis_us_per_message(&self) -> f64 {
        per_message_us(self.redis_cpu_seconds(), self.messages())
    }

    fn gateway_us_per_message(&self) -> f64 {
        per_message_us(self.server_seconds, self.messages())
    }

    fn command_shares(&self) -> Vec<f64> {
        shares(
            &self
                .redis
                .iter()
                .map(|(_, u)| u.commands)
                .collect::<Vec<_>>(),
        )
    }

    fn cpu_shares(&self) -> Vec<f64> {
        shares(
            &self
                .redis
                .iter()
                .map(|(_, u)| u.cpu_seconds)
                .collect::<Vec<_>>(),
        )
    }
}

pub(super) fn run(ctx: &Context<'_>) -> anyhow::Result<Section> {
    let plan = if ctx.quick { &QUICK } else { &FULL };
    let cluster = wsmq_testkit::RedisCluster::start()?;
    let mut cluster_nodes: Vec<Node> = cluster
        .nodes()
        .iter()
        .map(|n| Node {
            port: n.port(),
            pid: n.pid(),
        })
        .collect();
    cluster_nodes.sort_by_key(|n| n.port);
    eprintln!(
        "xtask bench cluster: 3 masters, pids {}",
        cluster_nodes
            .iter()
            .map(|n| format!("{} (port {})", n.pid, n.port))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let single = [Node {
        port: ctx.redis.port(),
        pid: ctx.redis.pid(),
    }];
    let seeds = cluster.urls();
    let mut rows = Vec::new();
    let mut run_no = 0;
    for deployment in [Deployment::Single, Deployment::Cluster] {
        let (server, url, nodes) = match deployment {
            Deployment::Single => (Service::gateway(ctx.redis)?, ctx.redis.url(), &single[..]),
            Deployment::Cluster => (
                Service::gateway_cluster(&seeds)?,
                seeds.clone(),
                &cluster_nodes[..],
            ),
        };
        let redis = Redis {
            url: &url,
            cluster: deployment == Deployment::Cluster,
            nodes,
        };
        for scenario in [Scenario::Delivery, Scenario::Fanout] {
            run_no += 1;
            let row = measure(&server, &redis, deployment, scenario, run_no, plan)?;
            eprintln!(
                "  {} msgs/s, p50 {:.2} ms, p99 {:.2} ms, Redis {:.1} µs/msg, command shares {}",
                thousands(row.merged.rate()),
                row.merged.latency_ms(0.5),
                row.merged.latency_ms(0.99),
                row.redis_us_per_message(),
                percents(&row.command_shares()),
            );
            rows.push(row);
        }
        drop(server);
    }
    drop(cluster);
    let bars: Vec<chart::Bar> = rows
        .iter()
        .map(|row| chart::Bar {
            label: format!(
                "{}, {}, {} clients",
                row.deployment.name(),
                row.scenario.name(),
                thousands(row.clients as f64)
            ),
            merged: &row.merged,
        })
        .collect();
    let chart = ctx.write_chart(
        "cluster",
        "Redis Cluster vs single Redis: publish → deliver",
        &bars,
    )?;
    Ok(Section {
        title: "Redis Cluster: 3 masters against one Redis".to_owned(),
        body: report(&rows, plan, &chart),
    })
}

/// Where a deployment's queues and channels live, and its Redis processes.
struct Redis<'a> {
    url: &'a str,
    cluster: bool,
    nodes: &'a [Node],
}

/// CPU seconds and commands processed so far, per node.
fn snapshot(nodes: &[Node]) -> Vec<Usage> {
    nodes
        .iter()
        .map(|n| Usage {
            cpu_seconds: procfs::cpu_seconds(n.pid),
            commands: procfs::redis_info(n.port, "stats", "total_commands_processed")
                .unwrap_or(0.0),
        })
        .collect()
}

fn measure(
    server: &Service,
    redis: &Redis<'_>,
    deployment: Deployment,
    scenario: Scenario,
    run_no: usize,
    plan: &Plan,
) -> anyhow::Result<Row> {
    let clients = match scenario {
        Scenario::Delivery => plan.queues,
        Scenario::Fanout => plan.subscribers,
    };
    eprintln!(
        "xtask bench cluster: {}, {}, {clients} clients",
        deployment.name(),
        scenario.name()
    );
    let mut redis_args = vec!["--redis-url".to_owned(), redis.url.to_owned()];
    if redis.cluster {
        redis_args.push("--redis-cluster".to_owned());
    }
    let per_process: Vec<Vec<String>> = match scenario {
        Scenario::Delivery => load::split(clients)
            .into_iter()
            .map(|(first, count)| {
                let share = count as f64 / clients as f64;
                let prefix = format!("c{run_no}-");
                let mut args =
                    common_args("wsmq", server, first, count, &prefix, plan.timeout_secs);
                args.push("queue".to_owned());
                args.extend(redis_args.iter().cloned());
                args.extend([
                    "--messages".to_owned(),
                    ((plan.messages as f64 * share).round() as u64).to_string(),
                ]);
                args
            })
            .collect(),
        Scenario::Fanout => {
            let channel = format!("c{run_no}");
            let fanout = |publish: bool| {
                let mut args = vec![
                    "fanout".to_owned(),
                    "--channel".to_owned(),
                    channel.clone(),
                    "--messages".to_owned(),
                    plan.fanout_messages.to_string(),
                ];
                args.extend(redis_args.iter().cloned());
                if publish {
                    args.push("--publish".to_owned());
                }
                args
            };
            let mut per_process: Vec<Vec<String>> = load::split(clients)
                .into_iter()
                .map(|(first, count)| {
                    let mut args =
                        common_args("wsmq", server, first, count, "sub-", plan.timeout_secs);
                    args.extend(fanout(false));
                    args
                })
                .collect();
            let mut publisher = common_args("wsmq", server, 0, 0, "pub-", plan.timeout_secs);
            publisher.extend(fanout(true));
            per_process.push(publisher);
            per_process
        }
    };
    // Read once every client is connected and subscribed, so that connecting, creating
    // the queues and subscribing are not counted.
    let mut before = None;
    let run = load::timed_run_when(
        load::wsmq_load(per_process),
        server.pid(),
        redis.nodes[0].pid,
        &format!("{clients} clients"),
        || {
            before = Some(snapshot(redis.nodes));
            Ok(())
        },
    )?;
    let after = snapshot(redis.nodes);
    let before = before.unwrap_or_else(|| after.clone());
    Ok(Row {
        deployment,
        scenario,
        clients,
        redis: redis
            .nodes
            .iter()
            .zip(used(&before, &after))
            .map(|(n, u)| (n.port, u))
            .collect(),
        server_seconds: run.server_cpu / 100.0 * run.seconds,
        load_cpu: run.load_cpu,
        seconds: run.seconds,
        merged: run.merged,
    })
}

/// What each node did between two snapshots.
fn used(before: &[Usage], after: &[Usage]) -> Vec<Usage> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| Usage {
            cpu_seconds: (a.cpu_seconds - b.cpu_seconds).max(0.0),
            commands: (a.commands - b.commands).max(0.0),
        })
        .collect()
}

/// Each value's share of their sum (all 0 when the sum is 0).
fn shares(values: &[f64]) -> Vec<f64> {
    let sum: f64 = values.iter().sum();
    values
        .iter()
        .map(|v| if sum > 0.0 { v / sum } else { 0.0 })
        .collect()
}

/// The busiest share over the mean share (1 / count): 1.0 is a perfect spread, `count` all
/// on one.
fn busiest_over_mean(shares: &[f64]) -> f64 {
    let max = shares.iter().copied().fold(0.0, f64::max);
    max * shares.len() as f64
}

/// `seconds` of CPU per message, in µs (0 without messages).
fn per_message_us(seconds: f64, messages: f64) -> f64 {
    if messages > 0.0 {
        seconds * 1e6 / messages
    } else {
        0.0
    }
}

/// Messages per second that `masters` masters sustain, each with a core of its own, when a
/// message costs `redis_us` µs of Redis CPU (all masters together) and the busiest master
/// takes `imbalance` times the mean share: the busiest one saturates first, at one core.
fn projected_rate(masters: usize, redis_us: f64, imbalance: f64) -> f64 {
    if redis_us <= 0.0 {
        return 0.0;
    }
    masters as f64 * 1e6 / (redis_us * imbalance.max(1.0))
}

fn percents(shares: &[f64]) -> String {
    shares
        .iter()
        .map(|s| format!("{:.1}%", 100.0 * s))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn find(rows: &[Row], deployment: Deployment, scenario: Scenario) -> Option<&Row> {
    rows.iter()
        .find(|r| r.deployment == deployment && r.scenario == scenario)
}

/// The cluster targets, from the delivery runs of both deployments.
fn targets(rows: &[Row]) -> String {
    let mut targets = Vec::new();
    let single = find(rows, Deployment::Single, Scenario::Delivery);
    let cluster = find(rows, Deployment::Cluster, Scenario::Delivery);
    if let (Some(single), Some(cluster)) = (single, cluster) {
        let (ours, base) = (cluster.merged.rate(), single.merged.rate());
        let lost = cluster.merged.sent - cluster.merged.unique;
        targets.push(Target {
            target: format!(
                "queue delivery, {} queues: cluster msgs/s ≥ {THROUGHPUT_SHARE} × single Redis's \
                 in the same run; 0 lost",
                thousands(cluster.clients as f64)
            ),
            measured: format!(
                "{} vs {} msgs/s ({:.2} ×), lost {}",
                thousands(ours),
                thousands(base),
                ours / base.max(1e-9),
                thousands(lost)
            ),
            met: ours >= THROUGHPUT_SHARE * base && lost == 0.0,
        });
        let commands = cluster.command_shares();
        let ratio = busiest_over_mean(&commands);
        targets.push(Target {
            target: format!(
                "queue delivery, {} queues: busiest master's share of commands ≤ {BALANCE} × \
                 the mean",
                thousands(cluster.clients as f64)
            ),
            measured: format!(
                "{ratio:.2} × (commands {}; CPU {})",
                percents(&commands),
                percents(&cluster.cpu_shares())
            ),
            met: ratio <= BALANCE,
        });
        let (ours, base) = (
            cluster.redis_us_per_message(),
            single.redis_us_per_message(),
        );
        targets.push(Target {
            target: "queue delivery: Redis CPU per message, all masters together, ≤ single \
                     Redis's"
                .to_owned(),
            measured: format!("{ours:.1} vs {base:.1} µs"),
            met: ours <= base,
        });
    }
    targets_table(&targets)
}

fn report(rows: &[Row], plan: &Plan, chart: &str) -> String {
    let mut text = targets(rows);
    text += "| Redis | scenario | clients | published msgs/s | delivered msgs/s | p50 ms | p99 ms \
             | max ms | lost | duplicates | Redis CPU µs/msg | gateway CPU µs/msg | Redis CPU \
             | load CPU |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for row in rows {
        let m = &row.merged;
        // Channels are at-most-once: their misses are "lost" here as in a queue run.
        let expected = match row.scenario {
            Scenario::Delivery => m.sent,
            Scenario::Fanout => m.sent * row.clients as f64,
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {} | {:.1} | {:.1} | {:.0}% | {:.0}% |\n",
            row.deployment.name(),
            row.scenario.name(),
            thousands(row.clients as f64),
            thousands(m.publish_rate()),
            thousands(m.rate()),
            m.latency_ms(0.5),
            m.latency_ms(0.99),
            m.max_ms(),
            thousands((expected - m.unique).max(0.0)),
            thousands(m.duplicates),
            row.redis_us_per_message(),
            row.gateway_us_per_message(),
            100.0 * row.redis_cpu_seconds() / row.seconds.max(1e-9),
            row.load_cpu,
        ));
    }
    text.push_str(
        "\n### Each master's share\n\n\
         | Redis | scenario | node (port) | commands | share of commands | CPU s | share of CPU |\n\
         |---|---|--:|--:|--:|--:|--:|\n",
    );
    for row in rows {
        let (commands, cpu) = (row.command_shares(), row.cpu_shares());
        for (i, (port, usage)) in row.redis.iter().enumerate() {
            text.push_str(&format!(
                "| {} | {} | {port} | {} | {:.1}% | {:.2} | {:.1}% |\n",
                row.deployment.name(),
                row.scenario.name(),
                thousands(usage.commands),
                100.0 * commands[i],
                usage.cpu_seconds,
                100.0 * cpu[i],
            ));
        }
    }
    if let Some(cluster) = find(rows, Deployment::Cluster, Scenario::Delivery) {
        let redis_us = cluster.redis_us_per_message();
        let imbalance = busiest_over_mean(&cluster.command_shares());
        let gateway_us = cluster.gateway_us_per_message();
        text.push_str(&format!(
            "\n### Projection\n\n\
             From the cluster's queue-delivery run: {redis_us:.1} µs of Redis CPU per message \
             (all masters), the busiest master at {imbalance:.2} × the mean share, \
             {gateway_us:.1} µs of gateway CPU per message. With a core per master, the busiest \
             master saturates first: msgs/s = masters × 10⁶ / (µs per message × busiest/mean).\n\n\
             | masters | projected msgs/s | gateway cores at that rate |\n|--:|--:|--:|\n"
        ));
        for masters in PROJECTED_MASTERS {
            let rate = projected_rate(masters, redis_us, imbalance);
            text.push_str(&format!(
                "| {masters} | {} | {:.1} |\n",
                thousands(rate),
                rate * gateway_us / 1e6
            ));
        }
    }
    text.push_str(&format!(
        "\n{chart}\n\n### Method\n\n\
         The bench starts a Redis Cluster of 3 masters (no replicas, `redis-server` processes \
         created with `redis-cli --cluster create`, stopped by PID) beside the single Redis of \
         the run. Each deployment gets a fresh gateway (`wsmq-gateway serve`, with \
         `--redis-cluster` and the 3 nodes as seeds on the cluster). Queue delivery: {} clients \
         each consume a queue of their own over v1 and ack every message on arrival; the load \
         processes (`wsmq-load queue`, with `--redis-cluster` on the cluster: queues in the \
         cluster layout `rsmq:{{q}}:…`, so they spread over the masters by hash slot) publish \
         {} messages at full speed with `send_batch` (≤ 50 per call, 4 calls in flight, \
         realtime notification on). Fan-out: {} subscribers on one channel, {} messages at full \
         speed from a publisher process of its own (`PUBLISH wsmq:ch:<c>` on one Redis, \
         `SPUBLISH wsmq:ch:{{c}}` on the cluster). Latency is publish → arrival at the client. \
         Redis CPU is utime + stime from `/proc/<pid>/stat` of the bench's own redis-server \
         processes, summed over the masters; commands are `total_commands_processed` deltas of \
         `INFO stats`; both read once all clients are subscribed and again after the last \
         result. Redis CPU per message divides by the distinct messages delivered (queue \
         delivery) or published (fan-out: one channel lives on one master). One run per row; \
         three masters, the gateway and the load processes share this machine's cores, so the \
         cluster is not expected to be faster here than one Redis. CPU times come in ticks of \
         10 ms, so the CPU figures of a short run (`--quick`) are coarse.\n",
        thousands(plan.queues as f64),
        thousands(plan.messages as f64),
        thousands(plan.subscribers as f64),
        thousands(plan.fanout_messages as f64),
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::{Usage, busiest_over_mean, per_message_us, projected_rate, shares, used};

    #[test]
    fn shares_add_up_and_survive_an_idle_run() {
        assert_eq!(shares(&[1.0, 1.0, 2.0]), vec![0.25, 0.25, 0.5]);
        assert_eq!(shares(&[0.0, 0.0]), vec![0.0, 0.0]);
        assert_eq!(shares(&[]), Vec::<f64>::new());
    }

    #[test]
    fn busiest_over_mean_is_one_for_an_even_spread() {
        assert!((busiest_over_mean(&[1.0 / 3.0; 3]) - 1.0).abs() < 1e-9);
        assert!((busiest_over_mean(&[0.4, 0.3, 0.3]) - 1.2).abs() < 1e-9);
        assert!((busiest_over_mean(&[1.0, 0.0, 0.0]) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn usage_is_the_difference_of_two_snapshots() {
        let before = [Usage {
            cpu_seconds: 1.5,
            commands: 100.0,
        }];
        let after = [Usage {
            cpu_seconds: 2.0,
            commands: 350.0,
        }];
        assert_eq!(
            used(&before, &after),
            vec![Usage {
                cpu_seconds: 0.5,
                commands: 250.0
            }]
        );
    }

    #[test]
    fn projection_scales_with_masters_and_is_bounded_by_the_busiest() {
        // 2 s of Redis CPU over 100,000 messages: 20 µs each.
        let us = per_message_us(2.0, 100_000.0);
        assert!((us - 20.0).abs() < 1e-9);
        assert_eq!(per_message_us(1.0, 0.0), 0.0);
        // An even spread: 3 cores × 10⁶ µs / 20 µs = 150,000 msgs/s; twice the masters,
        // twice the rate.
        assert!((projected_rate(3, us, 1.0) - 150_000.0).abs() < 1e-6);
        assert!((projected_rate(6, us, 1.0) - 300_000.0).abs() < 1e-6);
        // The busiest master at 1.2 × the mean saturates first.
        assert!((projected_rate(3, us, 1.2) - 125_000.0).abs() < 1e-6);
        // Below 1 is not a spread that exists: it does not raise the projection.
        assert!((projected_rate(3, us, 0.5) - 150_000.0).abs() < 1e-6);
        assert_eq!(projected_rate(3, 0.0, 1.0), 0.0);
    }
}
