//! Revocation: `wsmq-cli token revoke --user U` closes U's sessions on every node with 4003
//! within a second, and U's access tokens stop working at once.

mod support;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use support::{RedisServer, TestGateway, access_token, token, unique};

/// The `wsmq-cli` binary: `WSMQ_CLI_BIN`, else the one cargo built next to the gateway
/// (`cargo test --workspace` and `cargo xtask ci` build it).
fn cli_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("WSMQ_CLI_BIN") {
        return Some(PathBuf::from(path));
    }
    let next_to_gateway =
        PathBuf::from(env!("CARGO_BIN_EXE_wsmq-gateway")).with_file_name("wsmq-cli");
    next_to_gateway.exists().then_some(next_to_gateway)
}

/// Revokes `user` as the CLI does: with the real binary when it is built, else with the same
/// two Redis commands (`DEL wsmq:access:U`, `PUBLISH wsmq:revoke U`) in one transaction.
async fn revoke(redis_url: &str, user: &str) {
    match cli_bin() {
        Some(bin) => {
            let output = tokio::process::Command::new(&bin)
                .args(["--redis-url", redis_url, "token", "revoke", "--user", user])
                .env_remove("WSMQ_REDIS_URL")
                .output()
                .await
                .expect("wsmq-cli runs");
            assert!(
                output.status.success(),
                "wsmq-cli token revoke failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            eprintln!("revoked with {}", bin.display());
        }
        None => {
            eprintln!("wsmq-cli is not built; revoking with its Redis commands");
            let mut conn = redis_conn(redis_url).await;
            let _: () = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(format!("wsmq:access:{user}"))
                .ignore()
                .cmd("PUBLISH")
                .arg("wsmq:revoke")
                .arg(user)
                .ignore()
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn cli_revoke_closes_the_users_sessions_on_every_node_within_a_second() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let b = TestGateway::builder().redis(&redis).start().await;
    let user = format!("rev{}", unique());
    let at = access_token(&user);
    let mut conn = redis_conn(&redis.url()).await;
    let _: u64 = redis::cmd("SADD")
        .arg(format!("wsmq:access:{user}"))
        .arg(&at)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Sessions of the user on both nodes, by access token and by JWT; a bystander on each.
    let mut sessions = Vec::new();
    for gw in [&a, &b] {
        let mut by_access = gw
            .connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
            .await
            .expect("a registered access token is accepted");
        assert_eq!(by_access.recv_json().await["op"], "welcome");
        sessions.push(by_access);
        sessions.push(gw.v1(&user).await.0);
    }
    let (mut bystander, _) = a.v1("bystander").await;
    revoke(&redis.url(), &user).await;
    let revoked = Instant::now();
    for mut session in sessions {
        assert_eq!(session.close_code().await, Some(4003));
    }
    let latency = revoked.elapsed();
    eprintln!("revocation closed 4 sessions on 2 nodes in {latency:?}");
    assert!(latency <= Duration::from_secs(1), "{latency:?}");
    // The access token is refused from now on, on both nodes; others are unaffected.
    for gw in [&a, &b] {
        let Err((status, body)) = gw.connect("/ws", &[("x-access-token", &at)], None).await else {
            panic!("a revoked access token was accepted");
        };
        assert_eq!(status, 401);
        assert!(body.contains("unregistered"), "{body}");
    }
    let pong = bystander.request(serde_json::json!({"op": "ping"})).await;
    assert_eq!(pong["op"], "pong");
    // A JWT is not revocable by design (it expires); a new JWT session is still admitted.
    a.connect("/ws", &[("x-token", &token(&user))], None)
        .await
        .expect("JWTs are not registered, so they are not revoked");
}
