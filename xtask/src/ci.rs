//! `cargo xtask ci`: what every CI run checks, in the order that fails fastest.

use xshell::{Shell, cmd};

use crate::{flags, util};

impl flags::Ci {
    pub(crate) fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        let cargo = util::cargo();
        cmd!(sh, "{cargo} fmt --all --check").run()?;
        cmd!(
            sh,
            "{cargo} clippy --workspace --all-targets --locked -- -D warnings"
        )
        .run()?;
        // CI must exercise the Node cross-checks rather than skip them.
        let _require_node = sh.push_env("WSMQ_REQUIRE_NODE", "1");
        cmd!(sh, "{cargo} test --workspace --locked").run()?;
        if !self.no_e2e {
            flags::E2e { filter: None }.run(sh)?;
        }
        eprintln!("xtask ci: all checks passed");
        Ok(())
    }
}
