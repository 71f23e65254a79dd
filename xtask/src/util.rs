//! Paths and tools shared by the tasks.

use std::path::{Path, PathBuf};

/// The workspace root: xtask lives one level below it.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(1)
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// The cargo that runs this task, so `cargo +toolchain xtask` stays on that toolchain.
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Whether a program is on PATH.
pub(crate) fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
