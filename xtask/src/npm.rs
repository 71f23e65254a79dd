//! Installs the Node packages of an e2e suite into its own git-ignored `node_modules`.

use std::path::Path;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::util;

/// Runs `npm ci` (or `npm install` without a lockfile) in `dir` unless its
/// `node_modules` is already in step with `package-lock.json`.
///
/// # Errors
///
/// When node or npm is missing or the install fails.
pub(crate) fn install(sh: &Shell, dir: &Path) -> anyhow::Result<()> {
    for tool in ["node", "npm"] {
        if !util::have(tool) {
            bail!(
                "{tool} not found on PATH: install Node.js 18+ (Debian: `apt-get install nodejs npm`)"
            );
        }
    }
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
        (Ok(lock), Ok(installed)) => installed.modified()? >= lock.modified()?,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    let _dir = sh.push_dir(dir);
    let verb = if lock.exists() { "ci" } else { "install" };
    cmd!(sh, "npm {verb} --no-audit --no-fund --loglevel=error")
        .run()
        .with_context(|| format!("npm {verb} in {}", dir.display()))
}
