//! Browser end to end: the chat demo and `wsmq.js` in headless Chromium, on two real
//! `wsmq-gateway serve --demo` processes sharing one Redis.
//!
//! This target starts the two nodes (with the e2e suite's `cluster` helpers) and runs
//! `e2e-browser/demo.test.mjs` under Node's test runner, which drives Debian's
//! `/usr/bin/chromium` with npm `playwright-core`, and `wsmq.unit.test.mjs`, `wsmq.js`'s
//! reconnect rules against a fake WebSocket. Run by `cargo xtask e2e browser`, which
//! installs `e2e-browser/`'s npm packages, builds the gateway, starts redis-server and sets
//! `WSMQ_TEST_REDIS_URL` and `WSMQ_NODE_DIR`; a plain `cargo test` lists it as ignored.

#[allow(dead_code)]
#[path = "e2e/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "e2e/store.rs"]
mod store;

use std::{path::PathBuf, process::Stdio, time::Duration};

use cluster::Cluster;

/// The whole browser run, Chromium start included.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test]
#[ignore = "needs redis-server, chromium and npm playwright-core: run `cargo xtask e2e browser`"]
async fn chat_demo_in_two_browsers_on_two_nodes() {
    let cluster = Cluster::start(
        "browser",
        &["--demo", "--demo-secret", "browser-demo-secret"],
    )
    .await;
    let dir = std::env::var_os("WSMQ_NODE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e-browser"),
        PathBuf::from,
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "npm playwright-core is missing in {}: run `cargo xtask e2e browser`",
        dir.display()
    );
    let chromium = std::env::var("WSMQ_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} not found: install Debian's chromium (`apt-get install chromium`)"
    );
    // The README's picture is tracked, so a test run must not rewrite it: the screenshot goes
    // to the temp folder unless WSMQ_UPDATE_SCREENSHOT=1 asks for docs/img/demo.png.
    let screenshot = if std::env::var_os("WSMQ_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/img/demo.png")
    } else {
        std::env::temp_dir().join(format!("wsmq-demo-{}.png", std::process::id()))
    };
    eprintln!("browser: screenshot at {}", screenshot.display());
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-reporter=spec"])
        .args(["demo.test.mjs", "wsmq.unit.test.mjs"])
        .current_dir(&dir)
        .env("WSMQ_DEMO_A", cluster.a.addr.to_string())
        .env("WSMQ_DEMO_B", cluster.b.addr.to_string())
        .env("WSMQ_DEMO_NODE_A", &cluster.a.node_id)
        .env("WSMQ_DEMO_NODE_B", &cluster.b.node_id)
        .env("WSMQ_DEMO_B_PID", cluster.b.pid().to_string())
        .env("WSMQ_DEMO_SCREENSHOT", &screenshot)
        .env("WSMQ_CHROMIUM", &chromium)
        .env("WSMQ_DEMO_CLI", cluster::cli_bin())
        .env("WSMQ_DEMO_REDIS_URL", &cluster.redis_url)
        .env("WSMQ_DEMO_NS", &cluster.ns)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let status = tokio::time::timeout(RUN_TIMEOUT, node.status())
        .await
        .unwrap_or_else(|_| panic!("the browser test did not finish within {RUN_TIMEOUT:?}"))
        .expect("cannot run node: install Node.js 18+");
    assert!(
        status.success(),
        "the browser test failed ({status}); its report is above.\nnode A log:\n{}",
        cluster.a.log_tail()
    );
}
