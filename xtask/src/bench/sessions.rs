//! `cargo xtask bench sessions`: idle authenticated sessions, each subscribed to a queue
//! of its own: how fast they connect and what each costs the server (RSS from `/proc`)
//! and Redis (`INFO memory` used_memory), for wsmq in both dialects (v1 and legacy) and
//! over Server-Sent Events (a `GET /sse` stream per session), Nchan (a channel per session)
//! and the Node design (a queue, hence an `rsmq-worker` and its Redis connection, per
//! session).
//!
//! Each system and size gets a fresh server, so the RSS delta is the sessions' alone.

use std::{thread, time::Duration};

use super::{
    Context, Section,
    delivery::common_args,
    format::{Target, targets_table, thousands},
    load::{self, Load, Merged},
    procfs,
    service::Service,
};

const WSMQ: &str = "wsmq v1";
const WSMQ_LEGACY: &str = "wsmq legacy";
const WSMQ_SSE: &str = "wsmq SSE";

/// The bound on gateway RSS per idle subscribed session, KiB, in either dialect.
const TARGET_KIB: f64 = 7.0;

struct Row {
    system: &'static str,
    sessions: usize,
    merged: Merged,
    /// Server RSS before and with the sessions, KiB.
    rss_before: u64,
    rss_after: u64,
    /// Redis used_memory delta, bytes.
    redis_delta: f64,
}

struct Plan {
    sizes: &'static [usize],
    /// The Node design holds a Redis connection per session: Redis's default 10,000
    /// clients and the 20,000 open files of a process bound it well below 19,000.
    node_sizes: &'static [usize],
    timeout_secs: u64,
}

const FULL: Plan = Plan {
    sizes: &[5_000, 19_000],
    node_sizes: &[5_000],
    timeout_secs: 300,
};
const QUICK: Plan = Plan {
    sizes: &[500, 2_000],
    node_sizes: &[500],
    timeout_secs: 60,
};

/// How long the sessions sit idle before memory is read, so that buffers settle.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
enum System {
    Wsmq,
    WsmqLegacy,
    /// wsmq's `GET /sse` streams, one per session.
    WsmqSse,
    Nchan,
    Node,
}

pub(super) fn run(ctx: &Context<'_>) -> anyhow::Result<Section> {
    let plan = if ctx.quick { &QUICK } else { &FULL };
    let mut rows = Vec::new();
    let mut run_no = 0;
    for system in [
        System::Wsmq,
        System::WsmqLegacy,
        System::WsmqSse,
        System::Nchan,
        System::Node,
    ] {
        let sizes = match system {
            System::Node => plan.node_sizes,
            _ => plan.sizes,
        };
        for &sessions in sizes {
            run_no += 1;
            let server = match system {
                System::Wsmq | System::WsmqLegacy | System::WsmqSse => Service::gateway(ctx.redis)?,
                System::Nchan => Service::nchan()?,
                System::Node => Service::node(ctx.redis)?,
            };
            let (name, target) = match system {
                System::Wsmq => (WSMQ, "wsmq"),
                System::WsmqLegacy => (WSMQ_LEGACY, "wsmq-legacy"),
                System::WsmqSse => (WSMQ_SSE, "wsmq-sse"),
                System::Nchan => ("Nchan", "nchan"),
                System::Node => ("Node ws + rsmq-worker", "legacy"),
            };
            eprintln!("xtask bench sessions: {name}, {sessions} sessions");
            thread::sleep(Duration::from_millis(500));
            let rss_before = procfs::rss_kib(server.pid());
            let redis_before = ctx.redis_used_memory();
            let prefix = format!("s{run_no}-");
            let per_process = load::split(sessions)
                .into_iter()
                .map(|(first, count)| {
                    let mut args =
                        common_args(target, &server, first, count, &prefix, plan.timeout_secs);
                    args.push("sessions".to_owned());
                    args
                })
                .collect();
            let mut load = Load::start(load::wsmq_load(per_process))?;
            thread::sleep(SETTLE);
            let rss_after = procfs::rss_kib(server.pid());
            let redis_delta = ctx.redis_used_memory() - redis_before;
            load.signal()?;
            let ready = std::mem::take(&mut load.ready);
            let results = load.finish()?;
            let merged = Merged::of(&ready, &results)?;
            let row = Row {
                system: name,
                sessions,
                merged,
                rss_before,
                rss_after,
                redis_delta,
            };
            eprintln!(
                "  {} connected, {} handshakes/s, {:.1} KiB RSS/session, {} B Redis/session, {} closed",
                row.merged.connected,
                thousands(row.handshake_rate()),
                row.rss_per_session(),
                thousands(row.redis_per_session()),
                row.merged.closed,
            );
            rows.push(row);
            drop(server);
        }
    }
    Ok(Section {
        title: "Idle sessions: memory and handshakes".to_owned(),
        body: report(&rows),
    })
}

impl Row {
    fn handshake_rate(&self) -> f64 {
        self.merged.connected / self.merged.connect_seconds.max(1e-6)
    }
    fn rss_per_session(&self) -> f64 {
        (self.rss_after as f64 - self.rss_before as f64) / self.merged.connected.max(1.0)
    }
    fn redis_per_session(&self) -> f64 {
        self.redis_delta / self.merged.connected.max(1.0)
    }
}

/// The session targets, for each wsmq size: RSS per idle subscribed session in
/// each dialect (asked at 19,000), handshakes/s over v1, and an SSE stream costing no more
/// than a v1 WebSocket (issue 17, asked at 19,000).
fn targets(rows: &[Row]) -> String {
    let mut targets = Vec::new();
    for row in rows.iter().filter(|r| r.system == WSMQ) {
        let sessions = thousands(row.sessions as f64);
        let legacy = rows
            .iter()
            .find(|r| r.system == WSMQ_LEGACY && r.sessions == row.sessions);
        let sse = rows
            .iter()
            .find(|r| r.system == WSMQ_SSE && r.sessions == row.sessions);
        for (dialect, row) in [("v1", Some(row)), ("legacy", legacy)] {
            let Some(row) = row else { continue };
            targets.push(Target {
                target: format!(
                    "{sessions} sessions, {dialect}: ≤ {TARGET_KIB} KiB gateway RSS per idle \
                     subscribed session"
                ),
                measured: format!("{:.1} KiB", row.rss_per_session()),
                met: row.rss_per_session() <= TARGET_KIB
                    && row.merged.connected == row.sessions as f64,
            });
        }
        // Over v1 only: a legacy subscribe is not confirmed, so a legacy handshake ends
        // when its line is sent, not when the gateway has acted on it.
        targets.push(Target {
            target: format!("{sessions} sessions, v1: ≥ 5,000 handshakes/s"),
            measured: format!("{}/s", thousands(row.handshake_rate())),
            met: row.handshake_rate() >= 5_000.0,
        });
        if let Some(sse) = sse {
            targets.push(sse_target(row, sse));
        }
    }
    targets_table(&targets)
}

/// SSE ≤ the WebSocket's (v1) gateway RSS per idle session, both from this run; every
/// stream must have opened.
fn sse_target(v1: &Row, sse: &Row) -> Target {
    Target {
        target: format!(
            "{} sessions, SSE: ≤ v1's KiB gateway RSS per idle subscribed session",
            thousands(sse.sessions as f64)
        ),
        measured: format!(
            "{:.1} KiB (v1 {:.1} KiB)",
            sse.rss_per_session(),
            v1.rss_per_session()
        ),
        met: sse.rss_per_session() <= v1.rss_per_session()
            && sse.merged.connected == sse.sessions as f64,
    }
}

/// Gateway RSS per idle subscribed session, v1 beside legacy and SSE, at each size (a
/// system not run at that size shows as –).
fn dialects(rows: &[Row]) -> String {
    let mut text = "### wsmq by dialect\n\n| sessions | v1 KiB/session | legacy KiB/session \
                    | SSE KiB/session | legacy − v1 | SSE − v1 |\n|--:|--:|--:|--:|--:|--:|\n"
        .to_owned();
    for v1 in rows.iter().filter(|r| r.system == WSMQ) {
        let other = |system: &str| {
            rows.iter()
                .find(|r| r.system == system && r.sessions == v1.sessions)
                .map(Row::rss_per_session)
        };
        let (legacy, sse) = (other(WSMQ_LEGACY), other(WSMQ_SSE));
        let kib = |value: Option<f64>| value.map_or("–".to_owned(), |v| format!("{v:.1}"));
        let delta = |value: Option<f64>| {
            value.map_or("–".to_owned(), |v| {
                format!("{:+.1}", v - v1.rss_per_session())
            })
        };
        text.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {} |\n",
            thousands(v1.sessions as f64),
            v1.rss_per_session(),
            kib(legacy),
            kib(sse),
            delta(legacy),
            delta(sse),
        ));
    }
    text.push('\n');
    text
}

fn report(rows: &[Row]) -> String {
    let mut text = targets(rows);
    text += &dialects(rows);
    text += "| system | sessions | connected | failed | handshakes/s | handshake p50 ms \
                    | p99 ms | server RSS before → with sessions | RSS KiB/session \
                    | Redis bytes/session | closed while idle |\n\
                    |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for row in rows {
        let m = &row.merged;
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} → {:.1} MiB | {:.1} | {} | {} |\n",
            row.system,
            thousands(row.sessions as f64),
            thousands(m.connected),
            thousands(m.connect_failures),
            thousands(row.handshake_rate()),
            m.handshakes.value_at_quantile(0.5) as f64 / 1e3,
            m.handshakes.value_at_quantile(0.99) as f64 / 1e3,
            row.rss_before as f64 / 1024.0,
            row.rss_after as f64 / 1024.0,
            row.rss_per_session(),
            thousands(row.redis_per_session()),
            thousands(m.closed),
        ));
    }
    text.push_str(&format!(
        "\n### Method\n\n\
         A fresh server per row. The load tool opens the sessions ({} or more processes of at most {}, 64 \
         handshakes in flight per process, sockets spread over source addresses \
         127.0.0.2–9): wsmq v1 sessions present a fresh HS256 JWT (verified by the gateway) \
         and subscribe to their own queue over v1, each confirmed by its `ok`; wsmq legacy \
         sessions present the same token in `x-token` on `/` without subprotocol and send \
         `/subscribe/<queue>`, which the dialect does not confirm (so their handshake ends \
         when it is sent); wsmq SSE sessions open `GET /sse?queue=<queue>` over HTTP/1.1 \
         (hyper's client) with the same token in `Authorization: Bearer`, as wsmq.js's SSE \
         fallback sends it, and hold the stream, reading its keep-alive comments (their \
         handshake ends at the 200 response, which the gateway sends once the queue is \
         subscribed; an idle stream has nothing to ack, so they open no ack connections); Nchan \
         sessions open a websocket subscriber on a channel of their own; Node sessions \
         send `/subscribe/<queue>`, which starts an `rsmq-worker` with its own Redis \
         connection. Handshakes/s = sessions / time to open all of them (connect, \
         upgrade, token check, subscription). After {} s idle, RSS per session = (VmRSS of \
         the server and its child processes with the sessions − before) / sessions; Redis \
         bytes per session from the `used_memory` delta. The SSE target compares the SSE \
         and v1 rows of this run at the same size, each against a fresh gateway.\n",
        load::MIN_PROCESSES,
        thousands(load::CLIENTS_PER_PROCESS as f64),
        SETTLE.as_secs(),
    ));
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Merged, Row, WSMQ, WSMQ_LEGACY, WSMQ_SSE, dialects, targets};

    /// A row of `sessions` connected sessions whose gateway grew by `kib` KiB each.
    fn row(system: &'static str, sessions: usize, kib: f64) -> Row {
        let ready = json!({"connected": sessions, "connect_seconds": 1.0});
        Row {
            system,
            sessions,
            merged: Merged::of(&[ready], &[]).unwrap(),
            rss_before: 10_000,
            rss_after: 10_000 + (kib * sessions as f64) as u64,
            redis_delta: 0.0,
        }
    }

    #[test]
    fn sse_is_judged_against_v1_of_the_same_size() {
        let rows = [
            row(WSMQ, 2_000, 6.0),
            row(WSMQ, 19_000, 6.0),
            row(WSMQ_SSE, 2_000, 5.5),
            row(WSMQ_SSE, 19_000, 6.5),
        ];
        let text = targets(&rows);
        assert!(
            text.contains(
                "| 2,000 sessions, SSE: ≤ v1's KiB gateway RSS per idle subscribed session \
                 | 5.5 KiB (v1 6.0 KiB) | met |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| 19,000 sessions, SSE: ≤ v1's KiB gateway RSS per idle subscribed session \
                 | 6.5 KiB (v1 6.0 KiB) | **not met** |"
            ),
            "{text}"
        );
    }

    #[test]
    fn dialect_table_shows_what_ran() {
        let rows = [
            row(WSMQ, 500, 6.0),
            row(WSMQ_LEGACY, 500, 7.0),
            row(WSMQ_SSE, 500, 9.0),
            row(WSMQ, 2_000, 6.0),
        ];
        let text = dialects(&rows);
        assert!(
            text.contains("| 500 | 6.0 | 7.0 | 9.0 | +1.0 | +3.0 |"),
            "{text}"
        );
        assert!(text.contains("| 2,000 | 6.0 | – | – | – | – |"), "{text}");
    }
}
