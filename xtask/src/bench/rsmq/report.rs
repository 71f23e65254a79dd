//! The Markdown of `cargo xtask bench rsmq`: the results, the targets with the measured
//! reason for a miss, the cost of each phase, the Redis commands per message and the
//! sweep that chose the setting of (c).

use super::{BODY_BYTES, Measured, Run, TARGET_RULES_OVERHEAD, TARGET_VS_NPM, TARGET_VS_SINGLE};
use crate::bench::format::{short, thousands};

pub(super) fn results_table(scenarios: &[(String, &Measured)], runs: usize) -> String {
    let mut text = format!(
        "| scenario | msgs/s (median of {runs}) | slowest – fastest | Redis CPU | client CPU \
         | Redis CPU µs/msg | requests/msg | Redis commands/msg |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|\n"
    );
    for (name, measured) in scenarios {
        let run = &measured.median;
        text.push_str(&format!(
            "| {name} | {} | {} – {} | {:.0}% | {:.0}% | {:.1} | {} | {} |\n",
            thousands(run.rate()),
            thousands(measured.slowest),
            thousands(measured.fastest),
            run.redis_cpu(),
            run.client_cpu(),
            run.redis_us_per_message(),
            short(run.requests_per_message()),
            short(run.commands_per_message()),
        ));
    }
    text.push_str(
        "\nCPU is a percentage of one core, from utime + stime in `/proc/<pid>/stat` over the \
         timed part of the run. A request is what the client waits on: one command, one \
         EVALSHA, or one MULTI … EXEC block. Redis commands count every command Redis \
         executed (`INFO commandstats`), including those run inside Lua scripts.\n\n",
    );
    text
}

pub(super) fn targets_table(npm: &Measured, single: &Measured, batched: &Measured) -> String {
    let c = &batched.median;
    let rows = [
        ("(c) ≥ 10 × (a)", TARGET_VS_NPM, &npm.median),
        ("(c) ≥ 3 × (b)", TARGET_VS_SINGLE, &single.median),
    ];
    let mut text = "### Targets\n\n| target | measured | verdict |\n|---|--:|---|\n".to_owned();
    for (name, target, other) in rows {
        let ratio = c.rate() / other.rate();
        let verdict = if ratio >= target {
            "met".to_owned()
        } else {
            format!("not met: {}", shortfall_reason(c, other, target))
        };
        text.push_str(&format!("| {name} | {ratio:.1} × | {verdict} |\n"));
    }
    text.push('\n');
    text
}

/// (d) against (c): what wsmq's queue rules cost the batched receive when they only check.
/// The verdict is the median over `pairs` (runs of (c) and (d) back to back) of the ratio of
/// Redis CPU per message in the receive + delete phase, where the rules are checked; the wall
/// time beside it.
pub(super) fn rules_table(pairs: &[(Run, Run)]) -> String {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let cpu = |run: &Run| run.receive_redis_us_per_message();
    let ratios: Vec<f64> = pairs.iter().map(|(c, d)| cpu(d) / cpu(c)).collect();
    let ratio = median(ratios.clone());
    let wall = median(
        pairs
            .iter()
            .map(|(c, d)| c.receive_rate() / d.receive_rate())
            .collect(),
    );
    let (low, high) = ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
    let verdict = if ratio <= TARGET_RULES_OVERHEAD {
        "met"
    } else {
        "not met"
    };
    let listed = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "### Queue rules (issue 16)\n\n\
         | receive + delete phase, {n} pairs | (c) no rules | (d) rules set | (d) / (c), median of the pairs |\n\
         |---|--:|--:|--:|\n\
         | Redis CPU µs/msg (median) | {:.2} | {:.2} | {ratio:.2} × (pairs {low:.2} – {high:.2}) |\n\
         | msgs/s (median) | {} | {} | {wall:.2} × the time |\n\n\
         Target: (d) costs at most {:.0}% more Redis CPU per message than (c): {verdict}. \
         (d)'s queue has `maxreceives` 5, `ttl` 3600 s and a dead-letter queue, none of which \
         a message of the run reaches, so every receive checks them and nothing is moved. \
         Each pair is one run of (c) and one of (d) with the setting above, back to back, (c) \
         first in odd pairs and (d) first in even ones; the per-pair ratios were {listed}. \
         Two runs of the same scenario differ by more than the rules cost on a shared \
         machine, which is why the verdict is on pairs rather than on two medians.\n\n",
        median(pairs.iter().map(|(c, _)| cpu(c)).collect()),
        median(pairs.iter().map(|(_, d)| cpu(d)).collect()),
        thousands(median(
            pairs.iter().map(|(c, _)| c.receive_rate()).collect()
        )),
        thousands(median(
            pairs.iter().map(|(_, d)| d.receive_rate()).collect()
        )),
        100.0 * (TARGET_RULES_OVERHEAD - 1.0),
        n = pairs.len(),
    )
}

/// Why (c) is not `target` times faster than `other`, from what the runs measured.
///
/// (c) is meant to be Redis-bound, so its Redis CPU per message gives a ceiling: the
/// rate one fully used Redis core would allow. Whether the ratio at that ceiling reaches
/// the target tells a cost that must come down from a run disturbed by other load.
fn shortfall_reason(c: &Run, other: &Run, target: f64) -> String {
    let ceiling = 1e6 / c.redis_us_per_message();
    let ceiling_ratio = ceiling / other.rate();
    let cost = format!(
        "each message costs {:.1} µs of Redis CPU ({:.1} µs in the send script, the rest in \
         receive + delete) for {:.1} Redis commands",
        c.redis_us_per_message(),
        1e6 * c.redis_cpu_send_seconds / c.messages,
        c.commands_per_message(),
    );
    if c.redis_cpu() >= 85.0 {
        format!(
            "Redis is saturated in (c) ({:.0}% of a core): {cost}, so one Redis core tops out \
             near {} msgs/s",
            c.redis_cpu(),
            thousands(ceiling),
        )
    } else if ceiling_ratio < target {
        format!(
            "Redis used {:.0}% of a core in (c) (the client {:.0}%), as other load took the \
             rest, but even a full core would not do: {cost}, which caps (c) near {} msgs/s, \
             {ceiling_ratio:.1} ×",
            c.redis_cpu(),
            c.client_cpu(),
            thousands(ceiling),
        )
    } else if c.client_cpu() >= 85.0 {
        format!(
            "the client is CPU-bound in (c) ({:.0}% of a core, Redis {:.0}%)",
            c.client_cpu(),
            c.redis_cpu()
        )
    } else {
        format!(
            "neither Redis ({:.0}%) nor the client ({:.0}%) used a full core in (c), so other \
             load on the machine took the difference; a full Redis core would allow about {} \
             msgs/s, {ceiling_ratio:.1} ×, so re-run on a quiet machine",
            c.redis_cpu(),
            c.client_cpu(),
            thousands(ceiling),
        )
    }
}

pub(super) fn phases_table(scenarios: &[(String, &Measured)]) -> String {
    let mut text = "### By phase\n\n\
                    | scenario | send msgs/s | receive + delete msgs/s | Redis CPU µs/msg, send \
                    | Redis CPU µs/msg, receive + delete |\n|---|--:|--:|--:|--:|\n"
        .to_owned();
    for (name, measured) in scenarios {
        let run = &measured.median;
        let receive_cpu = run.redis_cpu_seconds - run.redis_cpu_send_seconds;
        text.push_str(&format!(
            "| {name} | {} | {} | {:.1} | {:.1} |\n",
            thousands(run.messages / run.send_seconds),
            thousands(run.messages / run.receive_delete_seconds),
            1e6 * run.redis_cpu_send_seconds / run.messages,
            1e6 * receive_cpu.max(0.0) / run.messages,
        ));
    }
    text.push('\n');
    text
}

pub(super) fn commands_table(scenarios: &[(String, &Measured)]) -> String {
    let mut names: Vec<&String> = scenarios
        .iter()
        .flat_map(|(_, m)| m.median.commands.keys())
        .collect();
    names.sort();
    names.dedup();
    let mut text = "### Redis commands per message\n\n| command | (a) | (b) | (c) | (d) |\n\
                    |---|--:|--:|--:|--:|\n"
        .to_owned();
    for name in names {
        text.push_str(&format!("| {name} |"));
        for (_, measured) in scenarios {
            let run = &measured.median;
            let calls = run.commands.get(name).copied().unwrap_or(0.0) / run.messages;
            text.push_str(&format!(" {} |", short(calls)));
        }
        text.push('\n');
    }
    text.push_str(
        "\nIn (b), (c) and (d) every command but EVALSHA runs inside a Lua script; in (a) rsmq \
         sends most of them itself, in MULTI … EXEC blocks.\n\n",
    );
    text
}

pub(super) fn sweep_table(sweep: &[Run], batch: usize, concurrency: usize) -> String {
    let mut text = "### (c): batch size × batches in flight\n\n\
                    One run each, half the messages of a timed run; the fastest (in bold) is \
                    the setting of (c) above.\n\n\
                    | batch | in flight | msgs/s | Redis CPU | client CPU |\n\
                    |--:|--:|--:|--:|--:|\n"
        .to_owned();
    for run in sweep {
        let mark = if (run.batch, run.concurrency) == (batch, concurrency) {
            "**"
        } else {
            ""
        };
        text.push_str(&format!(
            "| {mark}{}{mark} | {mark}{}{mark} | {mark}{}{mark} | {:.0}% | {:.0}% |\n",
            run.batch,
            run.concurrency,
            thousands(run.rate()),
            run.redis_cpu(),
            run.client_cpu(),
        ));
    }
    text.push('\n');
    text
}

pub(super) fn method(
    npm_messages: usize,
    messages: usize,
    sweep_messages: usize,
    runs: usize,
) -> String {
    format!(
        "### Method\n\n\
         One `redis-server` (no persistence, loopback) serves every scenario in turn. Each \
         timed run uses a fresh queue: it sends N messages of {BODY_BYTES} bytes, then \
         receives and deletes all N, and counts N / wall time. Each program first runs an \
         untimed warm-up cycle.\n\n\
         - (a) `bench/node/rsmq-bench.js`, N = {npm_messages}: `await sendMessageAsync` N \
           times, then N × (`await receiveMessageAsync`, `await deleteMessageAsync`).\n\
         - (b) `crates/wsmq-rsmq/examples/bench.rs --mode single`, N = {messages}: the same \
           with `send_message`, `receive_message`, `delete_message`.\n\
         - (c) `… --mode batched`, N = {messages}: `send_batch`, then `receive_batch` + \
           `delete_batch`, with several batches in flight over the one multiplexed \
           connection; the sweep ran N = {sweep_messages}.\n\
         - (d) as (c), with `--rules on`: the queue has `maxreceives`, `ttl` and a \
           dead-letter queue, which no message reaches.\n\n\
         Each scenario ran {runs} {}, in rounds of (a), (b), (c), (d) so that changes in \
         background load hit them alike, each run in a fresh process after its warm-up; \
         the tables show the run with the median rate. \
         The Rust program runs on a current-thread tokio runtime (one core for the client, \
         one for Redis).\n",
        if runs == 1 { "time" } else { "times" },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Run, shortfall_reason};

    /// A run of 100,000 messages at `rate`, with Redis busy `redis_share` of the time.
    fn run(rate: f64, redis_share: f64) -> Run {
        let messages = 100_000.0;
        let seconds = messages / rate;
        Run {
            batch: 500,
            concurrency: 2,
            messages,
            seconds,
            send_seconds: seconds / 2.0,
            receive_delete_seconds: seconds / 2.0,
            redis_cpu_seconds: redis_share * seconds,
            redis_cpu_send_seconds: redis_share * seconds / 2.0,
            client_cpu_seconds: 0.1 * seconds,
            requests: 600.0,
            commands: BTreeMap::from([("zadd".to_owned(), 2.0 * messages)]),
        }
    }

    #[test]
    fn a_miss_names_what_bounds_it() {
        let npm = run(5_000.0, 0.3);
        // 20 µs of Redis per message: one core gives 50,000 msgs/s, 10 × npm.
        let saturated = run(45_000.0, 0.9);
        let reason = shortfall_reason(&saturated, &npm, 10.0);
        assert!(reason.starts_with("Redis is saturated"), "{reason}");
        let capped = run(30_000.0, 0.6);
        let reason = shortfall_reason(&capped, &npm, 12.0);
        assert!(reason.contains("even a full core would not do"), "{reason}");
        // 10 µs per message: a full core would reach 20 ×, so the machine was busy.
        let busy = run(30_000.0, 0.3);
        let reason = shortfall_reason(&busy, &npm, 10.0);
        assert!(reason.contains("re-run on a quiet machine"), "{reason}");
    }
}
