//! How operations reach Redis: one command per operation once connected, and a fresh
//! connection after the shared one breaks.

mod support;

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use redis::aio::MultiplexedConnection;
use support::{RedisServer, unknown_id};
use wsmq_rsmq::{QueueOptions, Rsmq, RsmqOptions};

/// Watches the commands Redis receives from clients, through MONITOR.
struct CommandLog {
    /// MONITOR lines.
    lines: Pin<Box<dyn Stream<Item = String> + Send>>,
    /// A separate connection that sends the markers ending each observation.
    marker_conn: MultiplexedConnection,
    /// Numbers the markers.
    step: u32,
    /// Every client address seen (`ip:port` from each MONITOR line), markers aside.
    clients: std::collections::BTreeSet<String>,
}

impl CommandLog {
    async fn start(redis: &RedisServer) -> Self {
        let client = redis::Client::open(redis.url()).unwrap();
        let monitor = client.get_async_monitor().await.unwrap();
        Self {
            lines: Box::pin(monitor.into_on_message::<String>()),
            marker_conn: redis.conn().await,
            step: 0,
            clients: Default::default(),
        }
    }

    /// Asserts that the client commands since the last call were exactly `want`.
    /// Commands run by scripts (`[0 lua]`) are not round trips and are left out.
    async fn assert_since_last(&mut self, want: &[&str], op: &str) {
        self.step += 1;
        let marker = format!("marker-{}", self.step);
        let _: String = redis::cmd("ECHO")
            .arg(&marker)
            .query_async(&mut self.marker_conn)
            .await
            .unwrap();
        let mut got = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(5), self.lines.next())
                .await
                .expect("MONITOR output")
                .expect("MONITOR stream open");
            if line.contains(&marker) {
                break;
            }
            if line.contains(" lua] ") {
                continue;
            }
            // `<time> [<db> <ip:port>] …`
            if let Some(client) = line
                .split_once(" [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .and_then(|(inside, _)| inside.split_whitespace().nth(1))
            {
                self.clients.insert(client.to_owned());
            }
            // `<time> [<db> <client>] "CMD" "arg" …`
            let name = line
                .split(" \"")
                .nth(1)
                .unwrap_or_default()
                .trim_end_matches('"');
            got.push(name.to_owned());
        }
        assert_eq!(got, want, "{op}");
    }
}

#[tokio::test]
async fn every_operation_is_one_round_trip_after_connect() {
    let redis = RedisServer::start();
    if !redis.is_private() {
        eprintln!("skipped: MONITOR on a shared server sees other tests' commands");
        return;
    }
    // Connecting pings and loads the scripts; from then on, one command per call and
    // no pool health checks or script reloads in between.
    let rsmq = redis.rsmq().await;
    let mut log = CommandLog::start(&redis).await;
    let evalsha = ["EVALSHA"];

    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    log.assert_since_last(&evalsha, "create_queue").await;
    rsmq.get_queue_attributes("q").await.unwrap();
    log.assert_since_last(&evalsha, "get_queue_attributes")
        .await;
    let vt = QueueOptions {
        vt: Some(5),
        ..Default::default()
    };
    rsmq.set_queue_attributes("q", &vt).await.unwrap();
    log.assert_since_last(&evalsha, "set_queue_attributes")
        .await;
    let id = rsmq.send_message("q", "a", None).await.unwrap();
    log.assert_since_last(&evalsha, "send_message").await;
    rsmq.send_batch("q", &["b", "c", "d"], None).await.unwrap();
    log.assert_since_last(&evalsha, "send_batch").await;
    rsmq.receive_message("q", None).await.unwrap().unwrap();
    log.assert_since_last(&evalsha, "receive_message").await;
    let batch = rsmq.receive_batch("q", 2, None).await.unwrap();
    log.assert_since_last(&evalsha, "receive_batch").await;
    // The next-visible time comes from the same script, not a second command.
    let next = rsmq.receive_batch_next("q", 5, None).await.unwrap();
    assert!(next.next_visible_ms.is_some());
    log.assert_since_last(&evalsha, "receive_batch_next").await;
    rsmq.change_message_visibility("q", &id, 0).await.unwrap();
    log.assert_since_last(&evalsha, "change_message_visibility")
        .await;
    let held: Vec<&str> = next.messages.iter().map(|m| m.id.as_str()).collect();
    rsmq.change_visibility_batch("q", &held, 0).await.unwrap();
    log.assert_since_last(&evalsha, "change_visibility_batch")
        .await;
    rsmq.pop_message("q").await.unwrap().unwrap();
    log.assert_since_last(&evalsha, "pop_message").await;
    rsmq.delete_message("q", &unknown_id()).await.unwrap();
    log.assert_since_last(&evalsha, "delete_message").await;
    let ids: Vec<&str> = batch.iter().map(|m| m.id.as_str()).collect();
    rsmq.delete_batch("q", &ids).await.unwrap();
    log.assert_since_last(&evalsha, "delete_batch").await;
    rsmq.list_queues().await.unwrap();
    log.assert_since_last(&["SMEMBERS"], "list_queues").await;
    rsmq.delete_queue("q").await.unwrap();
    // MULTI … EXEC is written in one go and answered in one go.
    log.assert_since_last(&["MULTI", "DEL", "SREM", "EXEC"], "delete_queue")
        .await;

    // A caller's own commands go over the same connection, also one round trip each.
    let key = redis.key("own");
    let () = rsmq
        .query(redis::cmd("SET").arg(&key).arg("1").arg("EX").arg(60))
        .await
        .unwrap();
    log.assert_since_last(&["SET"], "query").await;
    let (member, receivers): (bool, u64) = rsmq
        .query_pipeline(
            redis::pipe()
                .cmd("SISMEMBER")
                .arg(redis.key("QUEUES"))
                .arg("q")
                .cmd("PUBLISH")
                .arg(redis.key("nobody"))
                .arg("x"),
        )
        .await
        .unwrap();
    assert_eq!((member, receivers), (false, 0));
    log.assert_since_last(&["SISMEMBER", "PUBLISH"], "query_pipeline")
        .await;
    assert_eq!(
        log.clients.len(),
        1,
        "every call shares one connection: {:?}",
        log.clients
    );
}

#[tokio::test]
async fn a_killed_connection_is_replaced_on_the_next_call() {
    let redis = RedisServer::start();
    if !redis.is_private() {
        eprintln!("skipped: killing clients on a shared server would hit other tests");
        return;
    }
    let rsmq = redis.rsmq().await;
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();

    // Kill the connection rsmq uses, identified by its last command.
    let mut admin = redis.conn().await;
    rsmq.list_queues().await.unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    let rsmq_client = clients
        .lines()
        .find(|line| line.contains("cmd=smembers"))
        .and_then(|line| line.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .expect("rsmq's connection in CLIENT LIST")
        .to_owned();
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", &rsmq_client])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);

    // The call that finds the connection dead may fail; the one after must not.
    let _ = rsmq.send_message("q", "maybe", None).await;
    rsmq.send_message("q", "surely", None).await.unwrap();
    assert!(rsmq.get_queue_attributes("q").await.unwrap().msgs >= 1);
}

#[tokio::test]
async fn a_bare_pool_works_and_scripts_reload_after_a_flush() {
    let redis = RedisServer::start();
    let pool = deadpool_redis::Config::from_url(redis.url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let options = RsmqOptions {
        ns: redis.ns().to_owned(),
        realtime: false,
        cluster: false,
    };
    // No connect(): the scripts are not loaded, so the first call of each falls back
    // from EVALSHA to loading it.
    let rsmq = Rsmq::new(pool, options);
    rsmq.create_queue("q", &QueueOptions::default())
        .await
        .unwrap();
    rsmq.send_message("q", "a", None).await.unwrap();

    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let msg = rsmq.receive_message("q", None).await.unwrap().unwrap();
    assert_eq!(msg.message, "a");
}
