//! `cargo xtask bench [SCENARIO]`: benchmarks against one throwaway `redis-server`,
//! recorded in `docs/benchmarks.md`.
//!
//! Each scenario is a module (`rsmq`, `delivery`, `fanout`, `sessions`, `amqp`, `cluster`) with a `run`
//! that measures against the shared Redis and returns its section of the report; what
//! they run is built or installed first (`prepare`). Everything is prepared before Redis starts, so a missing
//! tool or a compile error fails before anything is timed. This module adds the machine
//! and the command to each section and writes it between marker comments of its own, so
//! a scenario run alone replaces only its section and text outside the markers is kept.
//! `format` holds the number formatting the reports share.
//!
//! The WebSocket scenarios drive `wsmq-load` processes (`load`) against servers the
//! bench starts and stops by PID (`service`), read CPU and memory from `/proc`
//! (`procfs`) and draw an SVG chart next to the report (`chart`).

mod amqp;
mod chart;
mod cluster;
mod delivery;
mod fanout;
mod format;
mod load;
mod procfs;
mod rsmq;
mod service;
mod sessions;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use xshell::{Shell, cmd};

use crate::{
    flags::{self, BenchScenario},
    redis::RedisServer,
    util,
};

/// Where full runs write their sections.
const REPORT: &str = "docs/benchmarks.md";

/// What a new report file starts with; the sections are appended below.
const REPORT_HEADER: &str = "# Benchmarks

Figures measured by `cargo xtask bench` on the machine described in each section. Each
section between `<!-- BEGIN cargo xtask bench … -->` and `<!-- END … -->` is written by
the tool from the numbers of its last run and is replaced by the next one; text outside
the markers is left alone.
";

/// Every scenario, in the order `cargo xtask bench` runs them. `amqp` and `cluster` are left
/// out: they boot servers of their own (a RabbitMQ node, a 3-master Redis Cluster) and are
/// run by name.
const ALL: &[BenchScenario] = &[
    BenchScenario::Rsmq,
    BenchScenario::Delivery,
    BenchScenario::Fanout,
    BenchScenario::Sessions,
];

/// What a scenario gets to run with.
pub(crate) struct Context<'a> {
    /// Runs the programs, from the workspace root.
    sh: &'a Shell,
    /// The Redis under test, shared by every scenario of the run.
    redis: &'a RedisServer,
    /// `--quick`: small counts, one run.
    quick: bool,
    /// `--messages` or the default for the mode.
    messages: usize,
    /// `--runs` or the default for the mode.
    runs: usize,
    /// Where charts go: `bench/` beside the report, or a temporary folder with --quick.
    chart_dir: PathBuf,
    /// How the report links to `chart_dir`.
    chart_link: String,
}

impl Context<'_> {
    /// Redis `used_memory`, bytes (0 if Redis does not answer).
    fn redis_used_memory(&self) -> f64 {
        let port = self
            .redis
            .url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        procfs::redis_info(port, "memory", "used_memory").unwrap_or(0.0)
    }

    /// Writes the SVG chart `name` and returns the Markdown that shows it.
    fn write_chart(
        &self,
        name: &str,
        title: &str,
        bars: &[chart::Bar<'_>],
    ) -> anyhow::Result<String> {
        fs::create_dir_all(&self.chart_dir)?;
        let path = self.chart_dir.join(format!("{name}.svg"));
        fs::write(&path, chart::svg(title, bars))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("xtask bench: chart {}", path.display());
        Ok(format!("![{title}]({}/{name}.svg)", self.chart_link))
    }
}

/// A scenario's part of the report.
pub(crate) struct Section {
    /// The `##` heading, without the hashes.
    title: String,
    /// Markdown below the heading and the machine table.
    body: String,
}

impl flags::Bench {
    pub(crate) fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        if !Path::new("/proc/self/stat").exists() {
            anyhow::bail!("cargo xtask bench reads CPU times from /proc, so it needs Linux");
        }
        let scenarios = match self.scenario {
            Some(one) => vec![one],
            None => ALL.to_vec(),
        };
        for &scenario in &scenarios {
            match scenario {
                BenchScenario::Rsmq => rsmq::prepare(sh)?,
                BenchScenario::Fanout | BenchScenario::Sessions => service::ensure_nchan()?,
                BenchScenario::Delivery | BenchScenario::Amqp | BenchScenario::Cluster => {}
            }
        }
        if scenarios.iter().any(|&s| s != BenchScenario::Rsmq) {
            crate::npm::install(sh, &util::project_root().join("bench/node"))?;
            let cargo = util::cargo();
            cmd!(sh, "{cargo} build --release -p wsmq-gateway -p wsmq-load").run()?;
        }
        let out = match (&self.out, self.quick) {
            (Some(out), _) => Some(out.clone()),
            (None, false) => Some(util::project_root().join(REPORT)),
            (None, true) => None,
        };
        let (chart_dir, chart_link) = match &out {
            Some(out) => (
                out.parent().unwrap_or(Path::new(".")).join("bench"),
                "bench".to_owned(),
            ),
            None => {
                let dir = std::env::temp_dir().join("wsmq-bench-quick");
                let link = dir.display().to_string();
                (dir, link)
            }
        };

        let redis = RedisServer::start()?;
        let machine = Machine::probe();
        let ctx = Context {
            sh,
            redis: &redis,
            quick: self.quick,
            messages: self
                .messages
                .unwrap_or(if self.quick { 10_000 } else { 100_000 }),
            runs: self.runs.unwrap_or(if self.quick { 1 } else { 3 }),
            chart_dir,
            chart_link,
        };
        let command = self.command_line();
        let mut sections = Vec::new();
        for &scenario in &scenarios {
            let section = match scenario {
                BenchScenario::Rsmq => rsmq::run(&ctx)?,
                BenchScenario::Delivery => delivery::run(&ctx)?,
                BenchScenario::Fanout => fanout::run(&ctx)?,
                BenchScenario::Sessions => sessions::run(&ctx)?,
                BenchScenario::Amqp => amqp::run(&ctx)?,
                BenchScenario::Cluster => cluster::run(&ctx)?,
            };
            sections.push((
                scenario_name(scenario),
                render(&section, &machine, &command),
            ));
        }
        drop(redis);

        for (name, text) in &sections {
            println!("{text}");
            if let Some(out) = &out {
                let old = fs::read_to_string(out).unwrap_or_else(|_| REPORT_HEADER.to_owned());
                fs::write(out, splice(&old, name, text))
                    .with_context(|| format!("writing {}", out.display()))?;
            }
        }
        match out {
            Some(out) => eprintln!("xtask bench: wrote {}", out.display()),
            None => eprintln!("xtask bench: --quick, so {REPORT} is left as it was"),
        }
        Ok(())
    }

    /// The command as a user would type it to repeat this run.
    fn command_line(&self) -> String {
        let mut command = "cargo xtask bench".to_owned();
        if let Some(scenario) = self.scenario {
            command = format!("{command} {}", scenario_name(scenario));
        }
        if let Some(messages) = self.messages {
            command = format!("{command} --messages {messages}");
        }
        if let Some(runs) = self.runs {
            command = format!("{command} --runs {runs}");
        }
        if self.quick {
            command.push_str(" --quick");
        }
        command
    }
}

fn scenario_name(scenario: BenchScenario) -> &'static str {
    match scenario {
        BenchScenario::Rsmq => "rsmq",
        BenchScenario::Delivery => "delivery",
        BenchScenario::Fanout => "fanout",
        BenchScenario::Sessions => "sessions",
        BenchScenario::Amqp => "amqp",
        BenchScenario::Cluster => "cluster",
    }
}

/// A binary of the workspace built with `--release` into this cargo's target folder.
fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::project_root().join("target"));
    target.join("release").join(name)
}

/// A section with its markers, heading, command and machine.
fn render(section: &Section, machine: &Machine, command: &str) -> String {
    format!(
        "## {}\n\nMeasured with `{command}` on {}.\n\n{}\n{}",
        section.title,
        machine.date,
        machine.markdown(),
        section.body.trim_end(),
    )
}

/// Puts `text` between the markers of section `name` in `report`: in place of the old
/// section if there is one, else at the end.
fn splice(report: &str, name: &str, text: &str) -> String {
    let begin =
        format!("<!-- BEGIN cargo xtask bench {name}: generated, edits inside are lost -->");
    let end = format!("<!-- END cargo xtask bench {name} -->");
    let section = format!("{begin}\n{}\n{end}", text.trim_end());
    // Match the opening marker by its prefix so that rewording its tail stays compatible.
    let begin_prefix = format!("<!-- BEGIN cargo xtask bench {name}:");
    if let Some(start) = report.find(&begin_prefix)
        && let Some(stop) = report[start..].find(&end)
    {
        let stop = start + stop + end.len();
        return format!("{}{section}{}", &report[..start], &report[stop..]);
    }
    format!("{}\n\n{section}\n", report.trim_end())
}

/// The machine and tool versions a run was measured with.
struct Machine {
    date: String,
    cpus: String,
    cpu_model: String,
    memory: String,
    kernel: String,
    load: String,
    redis: String,
    node: String,
    rustc: String,
}

impl Machine {
    /// Reads what it can; a missing piece shows as "unknown" rather than failing the run.
    fn probe() -> Machine {
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        // Not through the Shell, which would echo them: these may fail without harm.
        let output = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|line| {
                    let (k, v) = line.split_once(':')?;
                    (k.trim() == key).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let memory = field(&meminfo, "MemTotal")
            .trim_end_matches(" kB")
            .parse::<f64>()
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
            .unwrap_or_else(|_| "unknown".to_owned());
        let redis = output("redis-server", &["--version"]);
        Machine {
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpus: std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "unknown".to_owned()),
            cpu_model: field(&cpuinfo, "model name"),
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            // "Redis server v=7.0.15 sha=… malloc=…": the version is what matters.
            redis: redis
                .split_whitespace()
                .find_map(|word| word.strip_prefix("v="))
                .unwrap_or(&redis)
                .to_owned(),
            node: output("node", &["--version"]),
            rustc: output("rustc", &["--version"]),
        }
    }

    fn markdown(&self) -> String {
        let rows = [
            ("CPUs (nproc)", &self.cpus),
            ("CPU model", &self.cpu_model),
            ("RAM", &self.memory),
            ("kernel", &self.kernel),
            ("load average at start (1, 5, 15 min)", &self.load),
            ("redis-server", &self.redis),
            ("node", &self.node),
            ("rustc", &self.rustc),
        ];
        let mut text = "| machine | |\n|---|---|\n".to_owned();
        for (key, value) in rows {
            text.push_str(&format!("| {key} | {value} |\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn splice_appends_a_new_section_and_replaces_an_old_one() {
        let first = splice("# Benchmarks\n\nintro\n", "rsmq", "## rsmq\n\nold\n");
        assert!(first.starts_with("# Benchmarks\n\nintro\n\n<!-- BEGIN"));
        assert!(first.ends_with("old\n<!-- END cargo xtask bench rsmq -->\n"));

        let with_more = format!("{first}\n## notes\n\nkept\n");
        let second = splice(&with_more, "rsmq", "## rsmq\n\nnew");
        assert!(second.contains("new\n<!-- END cargo xtask bench rsmq -->\n\n## notes\n\nkept\n"));
        assert!(!second.contains("old"));
        assert_eq!(second.matches("<!-- BEGIN").count(), 1);
    }
}
