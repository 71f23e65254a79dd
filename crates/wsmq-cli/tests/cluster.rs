//! `wsmq-cli --redis-cluster` against a real Redis Cluster (3 masters from the testkit):
//! queue commands in the cluster layout across every master, tokens with the user-tagged
//! keys, nodes from every master, sharded channel publish, and a clear line for the wrong
//! mode.

mod support;

use support::{Cli, unique};
use wsmq_testkit::{RedisCluster, RedisServer};

fn cli(cluster: &RedisCluster, ns: &str, args: &[&str]) -> Cli {
    Cli::plain()
        .args(&[
            "--redis-cluster",
            "--redis-url",
            &cluster.urls(),
            "--ns",
            ns,
        ])
        .args(args)
}

fn conn(cluster: &RedisCluster) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls().split(',').collect::<Vec<_>>())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn queue_commands_span_every_master_in_the_cluster_layout() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = unique("c");
    let queues: Vec<String> = (0..12).map(|i| format!("q{i}")).collect();
    for q in &queues {
        cli(&cluster, &ns, &["queue", "create", q]).run().ok();
        cli(
            &cluster,
            &ns,
            &["send", "--queue", q, "--message", &format!("to {q}")],
        )
        .run()
        .ok();
    }
    let owners: std::collections::HashSet<usize> = queues
        .iter()
        .map(|q| cluster.master_of(&format!("{{{q}}}")).unwrap())
        .collect();
    assert_eq!(owners.len(), 3);
    let listed = cli(&cluster, &ns, &["--json", "queue", "list"])
        .run()
        .json();
    let mut names: Vec<String> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|q| {
            q.get("name")
                .or(Some(q))
                .and_then(|n| n.as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    let mut want = queues.clone();
    want.sort();
    assert_eq!(names, want, "{listed}");
    let stats = cli(&cluster, &ns, &["--json", "queue", "stats", "q7"])
        .run()
        .json();
    assert_eq!(stats["msgs"], 1, "{stats}");
    let mut conn = conn(&cluster);
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{ns}:{{q7}}:q7:Q"))
        .query(&mut conn)
        .unwrap();
    assert!(exists, "the queue's hash carries its hash tag");
}

#[test]
fn tokens_use_the_user_tagged_keys_and_publish_is_sharded() {
    let cluster = RedisCluster::start().expect("cluster");
    let ns = unique("c");
    let user = unique("alice");
    let issued = cli(
        &cluster,
        &ns,
        &["--json", "token", "issue", "--user", &user],
    )
    .env("WSMQ_JWT_SECRET", "jwt-secret")
    .run()
    .json();
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let mut conn = conn(&cluster);
    let registered: bool = redis::cmd("SISMEMBER")
        .arg(wsmq_proto::keys::access_tokens_tagged(&user))
        .arg(&access)
        .query(&mut conn)
        .unwrap();
    assert!(registered, "{issued}");

    cli(&cluster, &ns, &["token", "revoke", "--user", &user])
        .run()
        .ok();
    let registered: bool = redis::cmd("SISMEMBER")
        .arg(wsmq_proto::keys::access_tokens_tagged(&user))
        .arg(&access)
        .query(&mut conn)
        .unwrap();
    assert!(!registered, "revoke empties the registry");
    let mark: Option<u64> = redis::cmd("GET")
        .arg(wsmq_proto::keys::revoked_tagged(&user))
        .query(&mut conn)
        .unwrap();
    assert!(mark.is_some(), "revoke sets the mark");

    // A sharded subscriber of the channel's slot hears the CLI's publish.
    let channel = unique("room");
    let sharded = wsmq_proto::keys::Carrier::Plain.sharded(&channel);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let client = redis::cluster::ClusterClientBuilder::new(
            cluster.urls().split(',').collect::<Vec<_>>(),
        )
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
        .unwrap();
        let mut sub = client.get_async_connection().await.unwrap();
        sub.ssubscribe(&sharded).await.unwrap();
        let publish = cli(
            &cluster,
            &ns,
            &["publish", "--channel", &channel, "--message", "hi"],
        );
        let published = tokio::task::spawn_blocking(move || publish.run().ok())
            .await
            .unwrap();
        assert!(published.stdout.contains('1'), "{published:?}");
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let push = rx.recv().await.expect("the push channel stays open");
                if push.kind == redis::PushKind::SMessage {
                    return push;
                }
            }
        })
        .await
        .expect("the sharded message within 5 s");
        assert_eq!(message.data[1], redis::Value::BulkString(b"hi".to_vec()));
    });
}

#[test]
fn the_wrong_mode_is_one_clear_line() {
    let cluster = RedisCluster::start().expect("cluster");
    let single = RedisServer::start().expect("redis");
    let err = Cli::plain()
        .args(&["--redis-url", &cluster.nodes()[0].url(), "queue", "list"])
        .run()
        .error();
    assert!(
        err.contains("is a cluster node: add --redis-cluster"),
        "{err}"
    );
    let err = Cli::plain()
        .args(&[
            "--redis-cluster",
            "--redis-url",
            &single.url(),
            "queue",
            "list",
        ])
        .run()
        .error();
    assert!(err.contains("is not a cluster node"), "{err}");
    let err = Cli::plain()
        .args(&["--redis-url", &cluster.urls(), "queue", "list"])
        .run()
        .error();
    assert!(err.contains("add --redis-cluster"), "{err}");
}
