//! The gateway on a real Redis Cluster (3 masters from the testkit, `--redis-cluster`): two
//! nodes share queues spread over every master and channels over sharded pub/sub; an rsmq
//! send from outside wakes an idle subscriber at once; access tokens and revocations work
//! with the user-tagged keys; readiness follows the cluster's state; and the wrong mode fails
//! at start with one line.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestGateway, access_token, now, token_with, unique};
use wsmq_rsmq::{Rsmq, RsmqOptions};
use wsmq_testkit::{RedisCluster, RedisServer};

/// A JWT for `user` that may subscribe and publish to the channels `room*` and publish to
/// its own queue.
fn room_token(user: &str) -> String {
    let mut claims = wsmq_proto::Claims::new(user, now() + 3600);
    claims.wsmq = Some(wsmq_proto::Grants {
        subscribe: vec!["room*".into()],
        publish: vec!["channel:room*".into(), format!("queue:{user}")],
        ..Default::default()
    });
    token_with(claims)
}

async fn node(cluster: &RedisCluster, ns: &str) -> TestGateway {
    TestGateway::builder()
        .redis_cluster(cluster.urls())
        .ns(ns)
        .start()
        .await
}

async fn v1(gw: &TestGateway, token: &str) -> support::Client {
    let mut client = gw
        .connect("/ws", &[("x-token", token)], Some("wsmq.v1"))
        .await
        .expect("handshake");
    let welcome = client.recv_json().await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    client
}

async fn raw(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls().split(',').collect::<Vec<_>>())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_nodes_share_queues_on_every_master_and_channels_over_sharded_pubsub() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", unique());
    let a = node(&cluster, &ns).await;
    let b = node(&cluster, &ns).await;
    assert_eq!(a.http("GET", "/readyz", &[], "").await.0, 200);

    // Users whose queues land on all three masters.
    let users: Vec<String> = (0..9).map(|i| format!("u{i}{}", unique())).collect();
    let owners: std::collections::HashSet<usize> = users
        .iter()
        .map(|u| cluster.master_of(&format!("{{{u}}}")).unwrap())
        .collect();
    assert_eq!(
        owners.len(),
        3,
        "the users' queues spread over every master"
    );
    let channel = format!("room{}", unique());
    let mut on_b = Vec::new();
    for user in &users {
        let mut client = v1(&b, &room_token(user)).await;
        let r = client
            .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
            .await;
        assert_eq!(r["op"], "ok", "{r}");
        let r = client
            .request(json!({"op": "subscribe", "channel": channel, "ref": 2}))
            .await;
        assert_eq!(r["op"], "ok", "{r}");
        on_b.push(client);
    }

    // Each user publishes to its own queue through node A; node B delivers.
    let mut on_a = Vec::new();
    for user in &users {
        let mut client = v1(&a, &room_token(user)).await;
        let r = client
            .request(
                json!({"op": "publish", "queue": user, "message": format!("to {user}"), "ref": 3}),
            )
            .await;
        assert_eq!(r["op"], "ok", "{r}");
        on_a.push(client);
    }
    for (user, client) in users.iter().zip(&mut on_b) {
        let message = client.recv_json().await;
        assert_eq!(message["queue"], user.as_str(), "{message}");
        assert_eq!(message["message"], format!("to {user}"), "{message}");
        let id = message["id"].as_str().unwrap().to_owned();
        let r = client
            .request(json!({"op": "ack", "queue": user, "id": id, "ref": 4}))
            .await;
        assert_eq!(r["op"], "ok", "{r}");
    }

    // A channel publication on node A reaches every subscriber on node B.
    let r = on_a[0]
        .request(json!({"op": "publish", "channel": channel, "message": "hello room", "ref": 5}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    for client in &mut on_b {
        let message = client.recv_json().await;
        assert_eq!(
            (message["channel"].as_str(), message["message"].as_str()),
            (Some(channel.as_str()), Some("hello room")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn an_rsmq_send_wakes_an_idle_subscriber_on_the_cluster_at_once() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", unique());
    // A poll interval far beyond the test: only the realtime notification can deliver.
    let gw = TestGateway::builder()
        .redis_cluster(cluster.urls())
        .ns(&ns)
        .config(|c| c.engine.poll_interval = Duration::from_secs(600))
        .start()
        .await;
    let user = format!("w{}", unique());
    let mut client = v1(&gw, &room_token(&user)).await;
    let r = client
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    // Let the first (empty) receive pass, so the subscriber is idle.
    client.expect_silence(Duration::from_millis(300)).await;

    let rsmq = Rsmq::connect(
        &cluster.urls(),
        RsmqOptions {
            ns: ns.clone(),
            realtime: true,
            cluster: true,
        },
    )
    .await
    .unwrap();
    let sent = Instant::now();
    rsmq.send_message(&user, "wake up", None).await.unwrap();
    let message: Value = tokio::time::timeout(Duration::from_secs(5), client.recv_json())
        .await
        .expect("delivered without polling");
    let late = sent.elapsed();
    assert_eq!(message["message"], "wake up", "{message}");
    assert!(late < Duration::from_secs(1), "woken after {late:?}");
}

#[tokio::test]
async fn access_tokens_and_revocations_use_the_users_hash_tag_on_every_node() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = format!("t{}", unique());
    let a = node(&cluster, &ns).await;
    let b = node(&cluster, &ns).await;
    let user = format!("r{}", unique());
    let at = access_token(&user);
    let mut conn = raw(&cluster).await;
    let _: u64 = redis::cmd("SADD")
        .arg(wsmq_proto::keys::access_tokens_tagged(&user))
        .arg(&at)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for gw in [&a, &b] {
        let mut client = gw
            .connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
            .await
            .expect("a registered access token is accepted");
        assert_eq!(client.recv_json().await["op"], "welcome");
        sessions.push(client);
    }
    // An unregistered one is refused.
    let refused = a
        .connect(
            "/ws",
            &[("x-access-token", &access_token("nobody"))],
            Some("wsmq.v1"),
        )
        .await;
    assert!(refused.is_err(), "an unregistered access token is refused");

    // The CLI's revocation script, on the user's slot: registry emptied, mark set, announced.
    let revoke = redis::Script::new(include_str!("../../wsmq-cli/src/cmd/revoke.lua"));
    let _: (u64, u64, u64) = revoke
        .key(wsmq_proto::keys::access_tokens_tagged(&user))
        .key(wsmq_proto::keys::revoked_tagged(&user))
        .arg(&user)
        .arg(wsmq_proto::keys::REVOCATION_TTL_SECS)
        .arg(wsmq_proto::keys::REVOKE_CHANNEL)
        .invoke_async(&mut conn)
        .await
        .unwrap();
    for client in &mut sessions {
        let code = tokio::time::timeout(Duration::from_secs(5), client.close_code())
            .await
            .expect("closed within 5 s");
        assert_eq!(code, Some(4003));
    }
    // And the token no longer admits anyone.
    assert!(
        b.connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn readiness_follows_the_cluster_state() {
    let mut cluster = RedisCluster::start().expect("cluster");
    let gw = node(&cluster, &format!("t{}", unique())).await;
    assert_eq!(gw.http("GET", "/readyz", &[], "").await.0, 200);
    // A master without a replica dies: its slots are uncovered once the others notice
    // (node timeout 1 s), and the gateway is not ready.
    cluster.node_mut(2).kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = gw.http("GET", "/readyz", &[], "").await;
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status} after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.node_mut(2).restart().unwrap();
    cluster.wait_healthy(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.http("GET", "/readyz", &[], "").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 after the cluster healed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `wsmq-gateway serve` against the wrong kind of server: exit non-zero, one clear line.
#[tokio::test]
async fn the_wrong_mode_fails_at_start_with_one_line() {
    let cluster = RedisCluster::start().expect("cluster");
    let single = RedisServer::start().expect("redis");
    let cases = [
        (cluster.nodes()[0].url(), false, "--redis-cluster"),
        (single.url(), true, "not a cluster node"),
    ];
    for (url, cluster_flag, hint) in cases {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsmq-gateway"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--redis-url", &url])
            .env_remove("WSMQ_REDIS_URL")
            .env_remove("WSMQ_REDIS_CLUSTER")
            .kill_on_drop(true);
        if cluster_flag {
            command.arg("--redis-cluster");
        }
        let output = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .expect("exits")
            .expect("runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(hint), "{stderr}");
    }
}

/// The failover case: 3 masters with a replica each, a busy queue, its master killed
/// with SIGKILL. The session stays open, delivery resumes within 5 s of the promotion, every
/// message acknowledged to the publisher after a replica confirmed it (`replicas: 1`) is
/// delivered, and the plain sends Redis lost by asynchronous replication are counted.
#[tokio::test]
async fn a_killed_master_fails_over_and_replicated_sends_lose_nothing() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    let mut cluster = RedisCluster::builder()
        .replicas(1)
        .start()
        .expect("cluster with replicas");
    let ns = format!("t{}", unique());
    let gw = node(&cluster, &ns).await;
    let user = format!("f{}", unique());
    let mut client = v1(&gw, &room_token(&user)).await;
    let r = client
        .request(json!({"op": "subscribe", "queue": user, "ref": 1}))
        .await;
    assert_eq!(r["op"], "ok", "{r}");

    let rsmq = Rsmq::connect(
        &cluster.urls(),
        RsmqOptions {
            ns: ns.clone(),
            realtime: true,
            cluster: true,
        },
    )
    .await
    .unwrap();
    // Sent and acknowledged to the publisher: (replicated, plain).
    let sent: Arc<Mutex<(HashSet<String>, HashSet<String>)>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = {
        let (sent, stop, user) = (Arc::clone(&sent), stop.clone(), user.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            // Bounded: at most 20,000 sends, whatever happens.
            while !stop.is_cancelled() && i < 20_000 {
                i += 1;
                let body = format!("m{i}");
                if i.is_multiple_of(2) {
                    if let Ok(ids) = rsmq
                        .send_batch_replicated(&user, &[&body], None, 1, Duration::from_secs(2))
                        .await
                    {
                        sent.lock().unwrap().0.extend(ids);
                    }
                } else if let Ok(id) = rsmq.send_message(&user, &body, None).await {
                    sent.lock().unwrap().1.insert(id);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut received: HashSet<String> = HashSet::new();

    // A second of traffic, then the queue's master dies.
    consume(
        &mut client,
        &mut received,
        &user,
        Instant::now() + Duration::from_secs(1),
    )
    .await;
    assert!(!received.is_empty(), "delivering before the kill");
    let owner = cluster.master_of(&format!("{{{user}}}")).unwrap();
    let killed = Instant::now();
    cluster.node_mut(owner).kill().unwrap();
    // The replica is promoted once the others notice (node timeout 1 s) and vote.
    let mut promoted = None;
    while promoted.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no promotion in 30 s"
        );
        consume(
            &mut client,
            &mut received,
            &user,
            Instant::now() + Duration::from_millis(200),
        )
        .await;
        // Promoted: a live node now serves the slot, and every live node agrees all is well.
        let moved = cluster
            .master_of(&format!("{{{user}}}"))
            .is_ok_and(|now| now != owner);
        if moved && cluster.wait_healthy(Duration::from_millis(1)).is_ok() {
            promoted = Some(Instant::now());
        }
    }
    let promoted = promoted.unwrap();
    let before = received.len();
    let resumed = consume(
        &mut client,
        &mut received,
        &user,
        promoted + Duration::from_secs(5),
    )
    .await;
    assert!(
        received.len() > before,
        "no delivery within 5 s of the promotion"
    );
    stop.cancel();
    publisher.await.unwrap();
    // Drain what is left (anything hidden by a delivery whose ack was lost comes back after
    // the queue's vt of 30 s: acked deliveries are what count here, so wait for them only).
    let (replicated, plain) = sent.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline && !replicated.iter().all(|id| received.contains(id)) {
        consume(
            &mut client,
            &mut received,
            &user,
            Instant::now() + Duration::from_millis(500),
        )
        .await;
    }
    let lost_replicated = replicated
        .iter()
        .filter(|id| !received.contains(*id))
        .count();
    let lost_plain = plain.iter().filter(|id| !received.contains(*id)).count();
    eprintln!(
        "failover: promoted {:?} after the kill, first delivery {:?} after the promotion; \
         replicated sends {} (lost {lost_replicated}), plain sends {} (lost {lost_plain})",
        promoted - killed,
        resumed.map(|r| r.saturating_duration_since(promoted)),
        replicated.len(),
        plain.len(),
    );
    assert_eq!(lost_replicated, 0, "a send a replica confirmed was lost");
}

/// Reads (and acks) queue messages of `user` until `until`; the first delivery's instant.
async fn consume(
    client: &mut support::Client,
    received: &mut std::collections::HashSet<String>,
    user: &str,
    until: Instant,
) -> Option<Instant> {
    let mut first = None;
    while Instant::now() < until {
        let Some(text) = client.next_text(Duration::from_millis(100)).await else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["op"] == "message" {
            let id = frame["id"].as_str().unwrap().to_owned();
            first.get_or_insert_with(Instant::now);
            received.insert(id.clone());
            client
                .send_json(json!({"op": "ack", "queue": user, "id": id}))
                .await;
        } else {
            assert_ne!(frame["op"], "close", "the session stays open: {frame}");
        }
    }
    first
}

/// `POST /api/publish` with `"replicas": n`: answered once a replica holds the message, 503
/// when fewer than asked confirm (the message is on the master all the same), and refused for
/// channels and out-of-range values; the in-memory engine has no replicas to wait for.
#[tokio::test]
async fn the_publish_api_waits_for_replicas_when_asked() {
    const KEY: &str = "cluster-api-key-0001";
    let cluster = RedisCluster::builder()
        .replicas(1)
        .start()
        .expect("cluster with replicas");
    let gw = TestGateway::builder()
        .redis_cluster(cluster.urls())
        .config(|c| c.auth.api_key = Some(wsmq_gateway::config::Secret::new(KEY)))
        .start()
        .await;
    let auth = format!("apikey {KEY}");
    let post = async |body: Value| {
        gw.http(
            "POST",
            "/api/publish",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .await
    };
    let (status, body) = post(json!({"queue": "jobs", "message": "m", "replicas": 1})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(json!({"queue": "jobs", "message": "m", "replicas": 2})).await;
    assert_eq!(status, 503, "only one replica per master: {body}");
    for bad in [
        json!({"queue": "jobs", "message": "m", "replicas": -1}),
        json!({"queue": "jobs", "message": "m", "replicas": 17}),
        json!({"queue": "jobs", "message": "m", "replicas": "1"}),
        json!({"channel": "room", "message": "m", "replicas": 1}),
    ] {
        let (status, body) = post(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let memory = TestGateway::builder()
        .config(|c| c.auth.api_key = Some(wsmq_gateway::config::Secret::new(KEY)))
        .start()
        .await;
    let (status, body) = memory
        .http(
            "POST",
            "/api/publish",
            &[("authorization", &auth)],
            &json!({"queue": "jobs", "message": "m", "replicas": 1}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
