//! `cargo xtask e2e`: suites that need a real `redis-server` (or `rabbitmq-server`) and Node.js.
//!
//! Each suite is an ignored cargo test target (so a plain `cargo test` stays
//! self-contained); this task prepares what it needs (one `redis-server` on a
//! free port, the npm packages, the binaries it runs as processes), then runs it
//! with `--ignored`.

use xshell::{Shell, cmd};

use crate::{flags, npm, redis::RedisServer, util};

/// One e2e suite: a cargo test target, the npm folder it drives, if any, and the
/// binaries it starts as processes.
struct Suite {
    name: &'static str,
    package: &'static str,
    test: &'static str,
    npm_dir: Option<&'static str>,
    /// Packages built (debug) before the suite runs, for the binaries it starts; the
    /// tests find them in the target folder (`wsmq-gateway` as
    /// `CARGO_BIN_EXE_wsmq-gateway`, `wsmq-cli` next to it).
    build: &'static [&'static str],
}

const SUITES: &[Suite] = &[
    Suite {
        name: "rsmq-interop",
        package: "wsmq-rsmq",
        test: "interop",
        npm_dir: Some("interop"),
        build: &[],
    },
    Suite {
        name: "gateway-two-nodes",
        package: "wsmq-gateway",
        test: "e2e",
        npm_dir: Some("interop"),
        build: &["wsmq-gateway", "wsmq-cli"],
    },
    Suite {
        // The Node chat's publisher (npm amqplib) on RabbitMQ: the test process starts its own
        // rabbitmq-server node unless WSMQ_TEST_AMQP_URL names one.
        name: "amqp",
        package: "wsmq-gateway",
        test: "amqp",
        npm_dir: Some("interop"),
        build: &[],
    },
    Suite {
        // Two `wsmq-gateway serve` processes on one broker, fed by npm amqplib as the chat's
        // publisher; kill -9 of the node holding 1,000 unacked messages. Its own broker node
        // too, unless WSMQ_TEST_AMQP_URL names one.
        name: "amqp-two-nodes",
        package: "wsmq-gateway",
        test: "amqp_e2e",
        npm_dir: Some("interop"),
        build: &[],
    },
    Suite {
        name: "browser",
        package: "wsmq-gateway",
        test: "browser",
        npm_dir: Some("e2e-browser"),
        build: &["wsmq-gateway", "wsmq-cli"],
    },
];

impl flags::E2e {
    pub(crate) fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        let suites: Vec<&Suite> = SUITES
            .iter()
            .filter(|s| self.filter.as_deref().is_none_or(|f| s.name.contains(f)))
            .collect();
        if suites.is_empty() {
            anyhow::bail!("no e2e suite matches {:?}", self.filter);
        }
        // Install first: a missing tool should fail before anything starts.
        for dir in suites.iter().filter_map(|s| s.npm_dir) {
            npm::install(sh, &util::project_root().join(dir))?;
        }
        let redis = RedisServer::start()?;
        let url = redis.url();
        let _url = sh.push_env("WSMQ_TEST_REDIS_URL", &url);
        let _node = sh.push_env("WSMQ_REQUIRE_NODE", "1");
        let cargo = util::cargo();
        for suite in suites {
            eprintln!("xtask e2e: suite {}", suite.name);
            let dir = suite.npm_dir.map(|d| util::project_root().join(d));
            let _npm = dir.map(|d| sh.push_env("WSMQ_NODE_DIR", d));
            let (package, test) = (suite.package, suite.test);
            if !suite.build.is_empty() {
                let packages = suite.build.iter().flat_map(|p| ["-p", p]);
                cmd!(sh, "{cargo} build --locked {packages...}").run()?;
            }
            cmd!(
                sh,
                "{cargo} test --locked -p {package} --test {test} -- --ignored"
            )
            .run()?;
        }
        drop(redis);
        eprintln!("xtask e2e: all suites passed");
        Ok(())
    }
}
