//! The Node side of the suite, from `interop/` (`WSMQ_NODE_DIR`): tokens made by npm
//! `jsonwebtoken` and `crypto.createCipher` (`make-tokens.js`), and messages sent by npm
//! `rsmq` (`rsmq-driver.js`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

/// How long one node script may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(20);

/// A client's token pair as the original Node stack made it.
#[derive(Debug, Deserialize)]
pub(crate) struct NodeTokens {
    /// HS256 JWT `{sub: user}` by npm jsonwebtoken.
    pub(crate) jwt: String,
    /// The tokens2 access token: hex of AES-256-CTR over `{"userId": user}`.
    #[serde(rename = "accessToken")]
    pub(crate) access_token: String,
    /// How Node made it: `createCipher`, or `EVP_BytesToKey` on Node 22+ where that is gone.
    pub(crate) cipher: String,
}

/// Runs `make-tokens.js` for `user` under `secret` (passed on stdin, never in argv).
///
/// # Panics
///
/// When node or npm jsonwebtoken is missing or the script fails.
pub(crate) async fn make_tokens(secret: &str, user: &str) -> NodeTokens {
    let dir = node_dir("jsonwebtoken");
    let mut child = node_command(&dir)
        .arg("make-tokens.js")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start node ({err}): install Node.js 18+"));
    let input = json!({"secret": secret, "user": user, "ttl": 600}).to_string();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("write to node");
    drop(stdin);
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .expect("make-tokens.js finishes within 20 s")
        .expect("wait for node");
    assert!(
        output.status.success(),
        "make-tokens.js failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "make-tokens.js printed {:?}: {err}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Sends `message` to `queue` with npm rsmq's `sendMessage` on a realtime client (so it
/// publishes `{ns}:rt:{queue}`), and returns the id rsmq made.
///
/// # Panics
///
/// When the driver cannot run or rsmq reports an error (e.g. the queue does not exist).
pub(crate) async fn rsmq_send(redis_url: &str, ns: &str, queue: &str, message: &str) -> String {
    let dir = node_dir("rsmq");
    let (host, port) = host_and_port(redis_url);
    let mut child = node_command(&dir)
        .arg("rsmq-driver.js")
        .args([port.as_str(), ns, host.as_str()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start node ({err}): install Node.js 18+"));
    let request = json!({
        "seq": 1,
        "method": "sendMessage",
        "args": {"qname": queue, "message": message, "realtime": true},
    });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .await
        .expect("write to the driver");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let line = tokio::time::timeout(NODE_TIMEOUT, lines.next_line())
        .await
        .expect("npm rsmq sendMessage answers within 20 s")
        .expect("read the driver")
        .expect("the driver answers before it exits");
    // Closing stdin makes the driver quit its Redis connections and exit.
    drop(stdin);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(NODE_TIMEOUT, async {
        let _ = lines.get_mut().read_to_end(&mut rest).await;
        child.wait().await
    })
    .await;
    let reply: Value = serde_json::from_str(&line).expect("the driver answers JSON");
    match reply["ok"].as_str() {
        Some(id) => id.to_owned(),
        None => panic!("npm rsmq sendMessage to {queue} failed: {reply}"),
    }
}

/// `node` with deprecation warnings off (`createCipher` is deprecated, and that is the point).
fn node_command(dir: &Path) -> Command {
    let mut command = Command::new("node");
    command
        .args(["--no-deprecation", "--no-warnings"])
        .current_dir(dir)
        .kill_on_drop(true);
    command
}

/// The folder of the Node scripts, checked to hold `package` in its `node_modules`.
fn node_dir(package: &str) -> PathBuf {
    let dir = std::env::var_os("WSMQ_NODE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop"),
        PathBuf::from,
    );
    let manifest = dir.join("node_modules").join(package).join("package.json");
    assert!(
        manifest.is_file(),
        "npm {package} is not installed ({} is missing): run `cargo xtask e2e`, or `npm ci` in {}",
        manifest.display(),
        dir.display()
    );
    dir
}

/// Host and port of a `redis://host:port[/db]` URL, which is all the driver takes.
fn host_and_port(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("the rsmq driver takes redis:// URLs only, not {url:?}"));
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => (authority.to_owned(), "6379".to_owned()),
    }
}
