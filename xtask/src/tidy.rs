//! House rules checked over every source file of the workspace (run by `cargo test`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::util::project_root;

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<_> = rust_files()
        .into_iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading `//!` line: {missing:#?}"
    );
}

#[test]
fn no_trailing_whitespace_or_debug_leftovers() {
    let mut problems = Vec::new();
    for path in rust_files().into_iter().chain(other_sources()) {
        let text = fs::read_to_string(&path).unwrap();
        for (no, line) in text.lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                problems.push(format!(
                    "{}:{}: trailing whitespace",
                    path.display(),
                    no + 1
                ));
            }
            // Built from parts so that this file does not flag itself.
            let leftovers = [concat!("dbg", "!("), concat!("todo", "!(")];
            if is_rust(&path) && leftovers.iter().any(|l| line.contains(l)) {
                problems.push(format!("{}:{}: dbg!/todo! left in", path.display(), no + 1));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_lua_script_documents_its_interface() {
    let files = walk(&project_root().join("crates"), &|p| {
        p.extension().is_some_and(|e| e == "lua")
    });
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        for header in ["KEYS", "ARGV", "Returns"] {
            assert!(
                text.contains(header),
                "{} lacks a `{header}` header line",
                path.display()
            );
        }
    }
}

fn is_rust(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rs")
}

fn rust_files() -> Vec<PathBuf> {
    let root = project_root();
    let mut files = walk(&root.join("crates"), &is_rust);
    files.extend(walk(&root.join("xtask"), &is_rust));
    files.extend(walk(&root.join("fuzz"), &is_rust));
    files
}

fn other_sources() -> Vec<PathBuf> {
    let root = project_root();
    let wanted = |p: &Path| {
        p.extension().is_some_and(|e| {
            ["lua", "js", "mjs", "sh", "toml", "md"].contains(&e.to_str().unwrap_or(""))
        })
    };
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "scripts", "interop", "bench", "docs"] {
        files.extend(walk(&root.join(dir), &wanted));
    }
    files
}

fn walk(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == "target" {
            continue;
        }
        if path.is_dir() {
            out.extend(walk(&path, keep));
        } else if keep(&path) {
            out.push(path);
        }
    }
    out
}
