//! Project automation (`cargo xtask ci | e2e | bench`), the cargo-xtask way.
//!
//! # Layout
//!
//! - `flags`: the command line of the tasks.
//! - `ci`: fmt, clippy, every test, then e2e; what `scripts/test.sh` runs.
//! - `e2e`: suites that need a real `redis-server` and Node.js (npm `rsmq` interop).
//! - `bench`: benchmarks against a real `redis-server`, written to `docs/benchmarks.md`.
//! - `redis`: a `redis-server` on a free port, stopped by PID when dropped.
//! - `npm`: installing the Node packages a suite or benchmark needs, into git-ignored
//!   folders.
//! - `util`: the project root and the cargo to call.
//! - `tidy` (tests only): house rules checked over every source file.

mod bench;
mod ci;
mod e2e;
mod flags;
mod npm;
mod redis;
mod util;

#[cfg(test)]
mod tidy;

use clap::Parser;
use xshell::Shell;

fn main() -> anyhow::Result<()> {
    let flags = flags::Xtask::parse();
    let sh = Shell::new()?;
    sh.change_dir(util::project_root());
    match flags.task {
        flags::Task::Ci(task) => task.run(&sh),
        flags::Task::E2e(task) => task.run(&sh),
        flags::Task::Bench(task) => task.run(&sh),
    }
}
