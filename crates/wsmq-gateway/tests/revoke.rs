//! Revocation: `wsmq-cli token revoke --user U` closes U's sessions on every node with 4003
//! within a second, U's access tokens stop working at once, and so does every JWT of U issued
//! until then (the one a gateway handed to an access-token session included), on every node
//! and after restarts. An announcement lost on its way (a silent pub/sub link, a lagging
//! node) is made up for by checking the sessions against the records.

#[macro_use]
mod support;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{Client, RedisServer, TestGateway, access_token, now, token, token_with, unique};
use wsmq_proto::Claims;

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

/// Revokes `user` as the CLI does: with the real binary when it is built, else with the
/// CLI's own script (empty the registry, set the mark, announce).
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
            eprintln!("wsmq-cli is not built; revoking with its script");
            let mut conn = redis_conn(redis_url).await;
            let _: (u64, u64, u64) = revoke_script()
                .key(wsmq_proto::keys::access_tokens(user))
                .key(wsmq_proto::keys::revoked(user))
                .arg(user)
                .arg(wsmq_proto::keys::REVOCATION_TTL_SECS)
                .arg(wsmq_proto::keys::REVOKE_CHANNEL)
                .invoke_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn revoke_script() -> redis::Script {
    redis::Script::new(include_str!("../../wsmq-cli/src/cmd/revoke.lua"))
}

/// Revokes `user` in the records only, as `token revoke` does, but with its announcement
/// lost: the registry emptied and the mark set (to the channel nobody listens to).
async fn revoke_unannounced(redis_url: &str, user: &str) {
    let mut conn = redis_conn(redis_url).await;
    let _: (u64, u64, u64) = revoke_script()
        .key(wsmq_proto::keys::access_tokens(user))
        .key(wsmq_proto::keys::revoked(user))
        .arg(user)
        .arg(wsmq_proto::keys::REVOCATION_TTL_SECS)
        .arg("wsmq:nobody-listens")
        .invoke_async(&mut conn)
        .await
        .unwrap();
}

async fn register(redis_url: &str, user: &str) -> String {
    let at = access_token(user);
    let mut conn = redis_conn(redis_url).await;
    let _: u64 = redis::cmd("SADD")
        .arg(wsmq_proto::keys::access_tokens(user))
        .arg(&at)
        .query_async(&mut conn)
        .await
        .unwrap();
    at
}

/// A JWT for `user` issued `ago` seconds ago, valid for an hour.
fn issued_ago(user: &str, ago: u64) -> String {
    let mut claims = Claims::new(user, now() + 3600);
    claims.iat = Some(now() - ago);
    token_with(claims)
}

/// A v1 session admitted by access token, and the JWT its welcome hands out.
async fn by_access_token(gw: &TestGateway, at: &str) -> (Client, String) {
    let mut client = gw
        .connect("/ws", &[("x-access-token", at)], Some("wsmq.v1"))
        .await
        .expect("a registered access token is accepted");
    let welcome = client.recv_json().await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    let jwt = welcome["token"]
        .as_str()
        .expect("a session token")
        .to_owned();
    (client, jwt)
}

/// The reason of a refused handshake with `jwt`.
async fn refusal(gw: &TestGateway, jwt: &str) -> String {
    match gw.connect("/ws", &[("x-token", jwt)], None).await {
        Ok(_) => "admitted".to_owned(),
        Err((status, body)) => {
            assert_eq!(status, 401, "{body}");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            body["reason"].as_str().unwrap().to_owned()
        }
    }
}

/// The close code of `client` within `wait` (a revocation found by a check, not announced,
/// may take longer than [`Client::close_code`] waits).
async fn closed_within(client: &mut Client, wait: Duration) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("no close frame within {wait:?}"),
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
}

/// The reproduction of issue 15: a client admitted by access token keeps the JWT of its
/// welcome frame; after `token revoke` that JWT, like every JWT of the user issued until then
/// (`token issue`'s, undated ones), is refused on every node, by a node started afterwards,
/// and in the `auth` op. A JWT issued after the revocation works.
#[tokio::test]
async fn every_jwt_issued_before_a_revoke_is_refused_the_welcome_token_included() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis).start().await;
    let b = TestGateway::builder().redis(&redis).start().await;
    let user = format!("rev{}", unique());
    let at = register(&redis.url(), &user).await;
    let (mut session, welcome_jwt) = by_access_token(&a, &at).await;
    let issued = issued_ago(&user, 1);
    let undated = token(&user);
    for (gw, jwt) in [(&b, &welcome_jwt), (&b, &issued), (&a, &undated)] {
        assert_eq!(refusal(gw, jwt).await, "admitted");
    }

    revoke(&redis.url(), &user).await;
    assert_eq!(session.close_code().await, Some(4003));
    let c = TestGateway::builder().redis(&redis).start().await;
    for gw in [&a, &b, &c] {
        for jwt in [&welcome_jwt, &issued, &undated] {
            assert_eq!(refusal(gw, jwt).await, "revoked");
        }
    }

    // A token issued after the revocation (a second later: iat has one-second resolution).
    let mark: u64 = redis::cmd("GET")
        .arg(wsmq_proto::keys::revoked(&user))
        .query_async(&mut redis_conn(&redis.url()).await)
        .await
        .unwrap();
    while now() <= mark {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fresh = Claims::new(user.as_str(), now() + 60);
    fresh.iat = Some(now());
    let fresh = token_with(fresh);
    let mut client = c
        .connect("/ws", &[("x-token", &fresh)], Some("wsmq.v1"))
        .await
        .expect("a token issued after the revocation is admitted");
    client.recv_json().await;
    // The kept welcome token (which expires later) cannot refresh that session either.
    let reply = client
        .request(json!({"op": "auth", "token": welcome_jwt, "ref": 1}))
        .await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    assert_eq!(reply["message"], "token refused: revoked", "{reply}");
}

/// A revocation announced while the node's pub/sub link is silent (its peer vanished without
/// closing it) never reaches the node; once the node replaced the link, it checks its
/// sessions against the records and closes the revoked ones.
#[tokio::test]
async fn a_revoke_announced_while_the_pub_sub_link_was_silent_closes_the_sessions_afterwards() {
    let redis = RedisServer::start();
    let proxy = support::proxy::FreezingProxy::start(&redis.url()).await;
    let gw = TestGateway::builder().redis_url(proxy.url()).start().await;
    let user = format!("rev{}", unique());
    let at = register(&redis.url(), &user).await;
    let (mut by_access, _) = by_access_token(&gw, &at).await;
    let mut by_jwt = gw
        .connect(
            "/ws",
            &[("x-token", &issued_ago(&user, 5))],
            Some("wsmq.v1"),
        )
        .await
        .unwrap();
    by_jwt.recv_json().await;
    let (mut bystander, _) = gw.v1(&format!("other{}", unique())).await;

    proxy.freeze();
    // Finding the link dead takes up to 8 s (PING every 5 s, 3 s to answer), the first check
    // may then wait out the equally silent command connection (10 s): about 20 s in all, and
    // the budget leaves room for a loaded machine.
    revoke(&redis.url(), &user).await;
    let revoked = Instant::now();
    for session in [&mut by_access, &mut by_jwt] {
        assert_eq!(
            closed_within(session, Duration::from_secs(45)).await,
            Some(4003)
        );
    }
    eprintln!(
        "sessions closed {:?} after a revoke announced over a silent link",
        revoked.elapsed()
    );
    let pong = bystander.request(json!({"op": "ping"})).await;
    assert_eq!(pong["op"], "pong");
}

/// A revocation whose announcement is lost with no sign of it (the link stayed up) is found
/// by the periodic check of every session, on both engines.
#[tokio::test]
async fn a_revoke_whose_announcement_is_lost_is_found_by_the_periodic_check() {
    on_both_engines!(
        |gw| {
            let user = format!("rev{}", unique());
            let at = access_token(&user);
            match (&gw.memory, &gw.redis_url) {
                (Some(memory), _) => memory.register_access_token(&user, &at),
                (None, Some(url)) => {
                    let _: u64 = redis::cmd("SADD")
                        .arg(wsmq_proto::keys::access_tokens(&user))
                        .arg(&at)
                        .query_async(&mut redis_conn(url).await)
                        .await
                        .unwrap();
                }
                (None, None) => unreachable!(),
            }
            let (mut by_access, _) = by_access_token(&gw, &at).await;
            let mut by_jwt = gw
                .connect(
                    "/ws",
                    &[("x-token", &issued_ago(&user, 5))],
                    Some("wsmq.v1"),
                )
                .await
                .unwrap();
            by_jwt.recv_json().await;
            let (mut bystander, _) = gw.v1(&format!("other{}", unique())).await;
            match (&gw.memory, &gw.redis_url) {
                (Some(memory), _) => memory.revoke_quietly(&user),
                (None, Some(url)) => revoke_unannounced(url, &user).await,
                (None, None) => unreachable!(),
            }
            let revoked = Instant::now();
            for session in [&mut by_access, &mut by_jwt] {
                assert_eq!(
                    closed_within(session, Duration::from_secs(5)).await,
                    Some(4003)
                );
            }
            eprintln!("found by the check after {:?}", revoked.elapsed());
            let pong = bystander.request(json!({"op": "ping"})).await;
            assert_eq!(pong["op"], "pong");
        },
        |c| c.auth.revocation_sweep = Duration::from_millis(500)
    );
}

/// A node that falls behind the announcements (more arrive at once than it buffers) checks
/// every session at once, instead of waiting for the periodic check.
#[tokio::test]
async fn a_node_that_lags_behind_the_announcements_checks_every_session() {
    let gw = TestGateway::builder().start().await;
    let memory = gw.memory.clone().unwrap();
    let user = format!("rev{}", unique());
    let mut by_jwt = gw
        .connect(
            "/ws",
            &[("x-token", &issued_ago(&user, 5))],
            Some("wsmq.v1"),
        )
        .await
        .unwrap();
    by_jwt.recv_json().await;
    // The user's own announcement is lost; a burst of others overflows the node's buffer
    // (this test's runtime has one thread: the node reads none of them during the loop).
    memory.revoke_quietly(&user);
    for i in 0..300 {
        memory.revoke(&format!("burst{i}-{}", unique()));
    }
    assert_eq!(
        closed_within(&mut by_jwt, Duration::from_secs(5)).await,
        Some(4003)
    );
}

/// A JWT whose revocation mark cannot be read (Redis is down) is not let in unchecked: the
/// handshake answers 503, so that the client retries, rather than 401 or an upgrade.
#[tokio::test]
async fn a_jwt_that_cannot_be_checked_is_not_admitted() {
    if std::env::var_os("WSMQ_TEST_REDIS_URL").is_some() {
        eprintln!("skipped: a shared Redis cannot be stopped");
        return;
    }
    let redis = RedisServer::start();
    let gw = TestGateway::builder().redis(&redis).start().await;
    let user = format!("rev{}", unique());
    let jwt = issued_ago(&user, 1);
    assert_eq!(refusal(&gw, &jwt).await, "admitted");
    drop(redis);
    let Err((status, body)) = gw.connect("/ws", &[("x-token", &jwt)], None).await else {
        panic!("a JWT was admitted unchecked");
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("credentials_unchecked"), "{body}");
}
