//! Channel history on both engines: offsets and epochs on publications, recovery with
//! `since` (every missed publication, in order, no duplicate, also while publications keep
//! coming), `recovered:false` when the history was lost, the `history` op, and bad `since`
//! values refused or answered `recovered:false`, never a panic.

mod support;

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use support::{Client, RedisServer, TestGateway, now, token_with, unique};
use wsmq_gateway::{
    config::HistoryRule,
    engine::{Broker, HistoryPolicy},
};
use wsmq_proto::{Claims, Grants};

/// History for every channel in these tests.
const POLICY: HistoryPolicy = HistoryPolicy {
    size: 5000,
    ttl: Duration::from_secs(3600),
};

async fn gateway(redis: Option<&RedisServer>) -> TestGateway {
    let builder = TestGateway::builder().config(|c| {
        c.history.default = HistoryRule {
            size: POLICY.size,
            ttl: POLICY.ttl,
        };
    });
    match redis {
        Some(redis) => builder.redis(redis).start().await,
        None => builder.start().await,
    }
}

/// A v1 session that may subscribe to and publish on `room-*`.
async fn member(gw: &TestGateway, user: &str) -> Client {
    let mut claims = Claims::new(user, now() + 600);
    claims.wsmq = Some(Grants {
        subscribe: vec!["room-*".into()],
        publish: vec!["channel:room-*".into()],
        ..Grants::default()
    });
    let t = token_with(claims);
    let mut c = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(c.recv_json().await["op"], "welcome");
    c
}

/// Publishes `n` messages `m{i}` straight through the engine (another node, for Redis).
async fn publish_many(broker: &Arc<dyn Broker>, room: &str, from: usize, n: usize) {
    for i in from..from + n {
        broker
            .publish_with_history(room, &format!("m{i}"), POLICY)
            .await
            .unwrap();
    }
}

/// Reads channel messages until `last` offset, checking each follows the one before.
async fn expect_offsets(client: &mut Client, from: u64, last: u64, epoch: &str) {
    for offset in from..=last {
        let frame = client.recv_json().await;
        assert_eq!(frame["op"], "message", "{frame}");
        assert_eq!(frame["offset"], offset, "gap or duplicate: {frame}");
        assert_eq!(frame["epoch"], epoch, "{frame}");
        assert_eq!(frame["message"], format!("m{}", offset - 1), "{frame}");
    }
}

async fn offline_client_recovers_every_missed_publication(gw: &TestGateway) {
    let room = format!("room-{}", unique());
    let broker = gw.engine().await.broker;
    let mut alice = member(gw, "alice").await;
    let ok = alice
        .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    assert_eq!(ok["offset"], 0, "{ok}");
    assert!(ok.get("recovered").is_none(), "{ok}");
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    publish_many(&broker, &room, 0, 5).await;
    expect_offsets(&mut alice, 1, 5, &epoch).await;
    alice.close().await;

    // Offline: 1,000 publications missed.
    publish_many(&broker, &room, 5, 1000).await;

    // Another session of the node stays subscribed, so the node's own subscription is live
    // while alice's history is read: publications reach her both ways.
    let mut watcher = member(gw, "watcher").await;
    let ok = watcher
        .request(
            json!({"op": "subscribe", "channel": room, "since": {"offset": 1005, "epoch": epoch}}),
        )
        .await;
    assert_eq!(ok["recovered"], true, "{ok}");
    let mut alice = member(gw, "alice").await;
    // Publications keep coming while it resubscribes.
    let publisher = {
        let broker = Arc::clone(&broker);
        let room = room.clone();
        tokio::spawn(async move { publish_many(&broker, &room, 1005, 300).await })
    };
    let ok = alice
        .request(json!({"op": "subscribe", "channel": room, "ref": 2,
                        "since": {"offset": 5, "epoch": epoch}}))
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    assert_eq!(ok["recovered"], true, "{ok}");
    assert_eq!(ok["epoch"], epoch.as_str(), "{ok}");
    assert!(ok["offset"].as_u64().unwrap() >= 1005, "{ok}");
    publisher.await.unwrap();
    expect_offsets(&mut alice, 6, 1305, &epoch).await;
    // And live after that, still no duplicate.
    publish_many(&broker, &room, 1305, 1).await;
    expect_offsets(&mut alice, 1306, 1306, &epoch).await;
    alice.expect_silence(Duration::from_millis(200)).await;
    expect_offsets(&mut watcher, 1006, 1306, &epoch).await;
    watcher.expect_silence(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn offline_client_recovers_every_missed_publication_memory() {
    offline_client_recovers_every_missed_publication(&gateway(None).await).await;
}

#[tokio::test]
async fn offline_client_recovers_every_missed_publication_redis() {
    let redis = RedisServer::start();
    offline_client_recovers_every_missed_publication(&gateway(Some(&redis)).await).await;
}

/// The history lost (stream deleted, or expired): `recovered:false` with a new epoch, and no
/// partial replay.
async fn lost_history_is_not_recovered(gw: &TestGateway, lose: impl AsyncFnOnce(&str)) {
    let room = format!("room-{}", unique());
    let broker = gw.engine().await.broker;
    publish_many(&broker, &room, 0, 10).await;
    let mut bob = member(gw, "bob").await;
    let ok = bob
        .request(json!({"op": "history", "channel": room, "limit": 1, "ref": 1}))
        .await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    assert_eq!(ok["offset"], 10, "{ok}");
    lose(&room).await;
    publish_many(&broker, &room, 0, 3).await;
    let ok = bob
        .request(json!({"op": "subscribe", "channel": room, "ref": 2,
                        "since": {"offset": 4, "epoch": epoch}}))
        .await;
    assert_eq!(ok["recovered"], false, "{ok}");
    assert_ne!(ok["epoch"], epoch.as_str(), "{ok}");
    assert_eq!(ok["offset"], 3, "{ok}");
    bob.expect_silence(Duration::from_millis(200)).await;
    // Live from there on, in the new epoch.
    let new_epoch = ok["epoch"].as_str().unwrap().to_owned();
    publish_many(&broker, &room, 3, 1).await;
    expect_offsets(&mut bob, 4, 4, &new_epoch).await;
}

#[tokio::test]
async fn a_deleted_stream_is_not_recovered_redis() {
    let redis = RedisServer::start();
    let gw = gateway(Some(&redis)).await;
    let url = redis.url();
    lost_history_is_not_recovered(&gw, async |room| {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let deleted: i64 = redis::cmd("DEL")
            .arg(wsmq_proto::keys::history_stream(room))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_history_is_not_recovered_memory() {
    let gw = gateway(None).await;
    let memory = gw.memory.clone().unwrap();
    lost_history_is_not_recovered(&gw, async |room| memory.drop_history_for_tests(room)).await;
}

async fn bad_since_values(gw: &TestGateway) {
    let room = format!("room-{}", unique());
    publish_many(&gw.engine().await.broker, &room, 0, 3).await;
    let mut carol = member(gw, "carol").await;
    for since in [
        json!({"offset": -1, "epoch": "e"}),
        json!({"offset": 1.5, "epoch": "e"}),
        json!({"offset": "1", "epoch": "e"}),
        json!({"offset": 1}),
        json!({"offset": 1, "epoch": 3}),
        json!({"offset": 1, "epoch": "x".repeat(1000)}),
        json!("1:e"),
        json!([1, "e"]),
    ] {
        let reply = carol
            .request(json!({"op": "subscribe", "channel": room, "ref": 1, "since": since}))
            .await;
        assert_eq!(reply["op"], "error", "{since}: {reply}");
        assert_eq!(reply["code"], "invalid", "{since}: {reply}");
        assert_eq!(reply["ref"], 1, "{reply}");
    }
    // Too large for u64.
    carol
        .send_text(&format!(
            r#"{{"op":"subscribe","channel":"{room}","ref":1,"since":{{"offset":18446744073709551616,"epoch":"e"}}}}"#
        ))
        .await;
    assert_eq!(carol.recv_json().await["code"], "invalid");

    // Well-formed but not held: unknown epoch, past the latest (huge).
    let epoch = carol
        .request(json!({"op": "history", "channel": room, "limit": 1}))
        .await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for since in [
        json!({"offset": 1, "epoch": "nosuchepoch"}),
        json!({"offset": u64::MAX, "epoch": epoch}),
        json!({"offset": 4, "epoch": epoch}),
    ] {
        let reply = carol
            .request(json!({"op": "subscribe", "channel": room, "since": since}))
            .await;
        assert_eq!(reply["op"], "ok", "{since}: {reply}");
        assert_eq!(reply["recovered"], false, "{since}: {reply}");
        assert_eq!(reply["offset"], 3, "{reply}");
        assert_eq!(reply["epoch"], epoch.as_str(), "{reply}");
        let reply = carol
            .request(json!({"op": "unsubscribe", "channel": room}))
            .await;
        assert_eq!(reply["op"], "ok");
    }
    carol.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(carol.request(json!({"op": "ping"})).await["op"], "pong");
}

#[tokio::test]
async fn bad_since_values_are_refused_or_not_recovered_memory() {
    bad_since_values(&gateway(None).await).await;
}

#[tokio::test]
async fn bad_since_values_are_refused_or_not_recovered_redis() {
    let redis = RedisServer::start();
    bad_since_values(&gateway(Some(&redis)).await).await;
}

async fn history_pages_back(gw: &TestGateway) {
    let room = format!("room-{}", unique());
    let mut dave = member(gw, "dave").await;
    // A publish through the gateway answers with the offset.
    let mut epoch = Value::Null;
    for i in 0..10 {
        let ok = dave
            .request(json!({"op": "publish", "channel": room, "message": format!("m{i}")}))
            .await;
        assert_eq!(ok["offset"], i + 1, "{ok}");
        epoch = ok["epoch"].clone();
    }
    let page = |v: &Value| -> Vec<(u64, String)> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert!(m["sent"].as_u64().unwrap() > 1_600_000_000_000);
                (
                    m["offset"].as_u64().unwrap(),
                    m["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let latest = dave
        .request(json!({"op": "history", "channel": room, "limit": 3, "ref": "h"}))
        .await;
    assert_eq!(latest["ref"], "h");
    assert_eq!(latest["epoch"], epoch);
    assert_eq!(
        page(&latest),
        vec![(8, "m7".into()), (9, "m8".into()), (10, "m9".into())]
    );
    let older = dave
        .request(json!({"op": "history", "channel": room, "limit": 3, "before": 8}))
        .await;
    assert_eq!(
        page(&older),
        vec![(5, "m4".into()), (6, "m5".into()), (7, "m6".into())]
    );
    let first = dave
        .request(json!({"op": "history", "channel": room, "limit": 1000, "before": 2}))
        .await;
    assert_eq!(page(&first), vec![(1, "m0".into())]);
    for before in [0, 1] {
        let none = dave
            .request(json!({"op": "history", "channel": room, "before": before}))
            .await;
        assert_eq!(page(&none), vec![], "before {before}");
    }
    let too_many = dave
        .request(json!({"op": "history", "channel": room, "limit": 1001}))
        .await;
    assert_eq!(too_many["code"], "invalid");
    let forbidden = dave
        .request(json!({"op": "history", "channel": "secret-1", "limit": 1}))
        .await;
    assert_eq!(forbidden["code"], "forbidden", "{forbidden}");
}

#[tokio::test]
async fn history_pages_back_oldest_first_memory() {
    history_pages_back(&gateway(None).await).await;
}

#[tokio::test]
async fn history_pages_back_oldest_first_redis() {
    let redis = RedisServer::start();
    history_pages_back(&gateway(Some(&redis)).await).await;
}

/// Without history, channels stay as they were: no offsets, and `since` is answered
/// `recovered:false`; the history op says there is none.
#[tokio::test]
async fn channels_without_history_are_unchanged() {
    let gw = TestGateway::builder().start().await;
    let room = format!("room-{}", unique());
    let mut erin = member(&gw, "erin").await;
    let ok = erin
        .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    assert_eq!(ok, json!({"op": "ok", "ref": 1}));
    let ok = erin
        .request(json!({"op": "publish", "channel": room, "message": "hi", "ref": 2}))
        .await;
    assert_eq!(ok, json!({"op": "ok", "ref": 2}));
    assert_eq!(
        erin.recv_json().await,
        json!({"op": "message", "channel": room, "message": "hi"})
    );
    let other = format!("room-{}", unique());
    let ok = erin
        .request(json!({"op": "subscribe", "channel": other, "since": {"offset": 1, "epoch": "e"}}))
        .await;
    assert_eq!(ok, json!({"op": "ok", "recovered": false}));
    let none = erin
        .request(json!({"op": "history", "channel": room}))
        .await;
    assert_eq!(none["code"], "not_found");
}

/// A node whose pub/sub link goes silent (a proxy that stops forwarding) while publications
/// continue misses them on that link; once the link is replaced, the next publication shows
/// the gap and the node fills it from the history: its live session gets every publication,
/// in order, without a `reset`.
#[tokio::test]
async fn a_frozen_pub_sub_link_loses_nothing_on_live_sessions() {
    let redis = RedisServer::start();
    let proxy = support::proxy::FreezingProxy::start(&redis.url()).await;
    let gw = TestGateway::builder()
        .config(|c| {
            c.history.default = HistoryRule {
                size: POLICY.size,
                ttl: POLICY.ttl,
            };
        })
        .redis_url(proxy.url())
        .start()
        .await;
    // Publishes past the proxy, as another node would.
    let broker =
        wsmq_gateway::engine::redis::RedisEngine::connect(&redis.url(), &gw.ns, Default::default())
            .await
            .unwrap()
            .engine()
            .broker;
    let room = format!("room-{}", unique());
    let mut frank = member(&gw, "frank").await;
    let ok = frank
        .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();

    let publisher = {
        let broker = Arc::clone(&broker);
        let room = room.clone();
        tokio::spawn(async move {
            // 20 a second for 12 s: before, during and after the freeze and its detection.
            for i in 0..240 {
                publish_many(&broker, &room, i, 1).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.freeze();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 240 && tokio::time::Instant::now() < deadline {
        let Some(text) = frank.next_text(Duration::from_secs(1)).await else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["op"], "message", "{frame}");
        assert_eq!(frame["epoch"], epoch.as_str(), "{frame}");
        seen.push(frame["offset"].as_u64().unwrap());
    }
    publisher.await.unwrap();
    let expected: Vec<u64> = (1..=240).collect();
    assert_eq!(seen, expected, "every publication once, in order");
}

/// The same, when the publications stop during the freeze: nothing comes after them to show
/// the gap, so the node looks for it when its link is back.
#[tokio::test]
async fn a_frozen_pub_sub_link_is_repaired_when_publications_stop() {
    let redis = RedisServer::start();
    let proxy = support::proxy::FreezingProxy::start(&redis.url()).await;
    let gw = TestGateway::builder()
        .config(|c| {
            c.history.default = HistoryRule {
                size: POLICY.size,
                ttl: POLICY.ttl,
            };
        })
        .redis_url(proxy.url())
        .start()
        .await;
    let broker =
        wsmq_gateway::engine::redis::RedisEngine::connect(&redis.url(), &gw.ns, Default::default())
            .await
            .unwrap()
            .engine()
            .broker;
    let room = format!("room-{}", unique());
    let mut grace = member(&gw, "grace").await;
    let ok = grace
        .request(json!({"op": "subscribe", "channel": room, "ref": 1}))
        .await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    publish_many(&broker, &room, 0, 10).await;
    expect_offsets(&mut grace, 1, 10, &epoch).await;
    proxy.freeze();
    // All of these go out while the node's link is silent (it takes seconds to notice).
    publish_many(&broker, &room, 10, 50).await;
    let first = grace.next_text(Duration::from_secs(20)).await;
    let first: Value =
        serde_json::from_str(&first.expect("the missed publications within 20 s")).unwrap();
    assert_eq!(first["offset"], 11, "{first}");
    expect_offsets(&mut grace, 12, 60, &epoch).await;
    grace.expect_silence(Duration::from_millis(200)).await;
}

/// `POST /api/publish` to a channel with history answers with the publication's offset and
/// epoch, and subscribers get it with them.
#[tokio::test]
async fn api_publish_to_a_channel_with_history_returns_the_offset() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.history.default = HistoryRule {
                size: 10,
                ttl: POLICY.ttl,
            };
            c.auth.api_key = Some(wsmq_gateway::config::Secret::new("k3y"));
        })
        .start()
        .await;
    let room = format!("room-{}", unique());
    let mut heidi = member(&gw, "heidi").await;
    let ok = heidi
        .request(json!({"op": "subscribe", "channel": room}))
        .await;
    let epoch = ok["epoch"].as_str().unwrap().to_owned();
    let headers = [
        ("authorization", "apikey k3y"),
        ("content-type", "application/json"),
    ];
    for offset in 1..=2 {
        let body = json!({"channel": room, "message": format!("m{}", offset - 1)}).to_string();
        let (status, reply) = gw.http("POST", "/api/publish", &headers, &body).await;
        assert_eq!(status, 200, "{reply}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(
            reply,
            json!({"id": null, "receivers": 1, "offset": offset, "epoch": epoch})
        );
    }
    expect_offsets(&mut heidi, 1, 2, &epoch).await;
}

/// The `ok` of a subscribe to a channel with history comes once the node listens to the
/// channel: a publication made right after it reaches the subscriber live, even when the
/// subscriber is the node's first on that channel (Redis confirms a `SUBSCRIBE` later).
#[tokio::test]
async fn a_publication_right_after_the_ok_is_not_missed_redis() {
    let redis = RedisServer::start();
    let gw = gateway(Some(&redis)).await;
    let broker = gw.engine().await.broker;
    let mut ivan = member(&gw, "ivan").await;
    for round in 0..20 {
        let room = format!("room-{}", unique());
        let ok = ivan
            .request(json!({"op": "subscribe", "channel": room}))
            .await;
        let epoch = ok["epoch"].as_str().unwrap().to_owned();
        publish_many(&broker, &room, 0, 1).await;
        let frame = ivan.next_text(Duration::from_secs(2)).await;
        let frame: Value = serde_json::from_str(
            &frame.unwrap_or_else(|| panic!("round {round}: the publication was missed")),
        )
        .unwrap();
        assert_eq!(frame["offset"], 1, "{frame}");
        assert_eq!(frame["epoch"], epoch.as_str(), "{frame}");
    }
}
