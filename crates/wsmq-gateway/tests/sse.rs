//! Server-Sent Events: `GET /sse` streams with event ids, acks and nacks over
//! `POST /api/ack` / `/api/nack` (also through another node), refusals, and redelivery when a
//! stream goes away.

#[macro_use]
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    RECV_TIMEOUT, RedisServer, TestGateway,
    sse::{Stream, bearer, own_stream, post},
    token, unique,
};
use tokio::io::AsyncBufReadExt;

fn window(n: usize) -> impl FnOnce(&mut wsmq_gateway::Config) {
    move |c| c.limits.window = n
}

#[tokio::test]
async fn queue_messages_arrive_as_events_with_their_ids() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&gw, &user).await;
    let id = gw.queues().await.send(&user, "hello", None).await.unwrap();
    let event = stream.message().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    let frame = event.json();
    assert_eq!(frame["op"], "message");
    assert_eq!(frame["queue"], user.as_str());
    assert_eq!(frame["id"], id.as_str());
    assert_eq!(frame["message"], "hello");
    assert_eq!(frame["rc"], 1);
}

#[tokio::test]
async fn an_ack_over_post_frees_the_window() {
    let gw = TestGateway::builder().config(window(1)).start().await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&gw, &user).await;
    let queues = gw.queues().await;
    queues.send(&user, "one", None).await.unwrap();
    queues.send(&user, "two", None).await.unwrap();
    let first = stream.message().await.json();
    assert_eq!(first["message"], "one");
    stream.expect_no_message(Duration::from_millis(500)).await;
    let (status, body) = post(
        &gw,
        "/api/ack",
        &user,
        &json!({"queue": user, "id": first["id"]}),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    let second = stream.message().await.json();
    assert_eq!(second["message"], "two");
    // Acked, so deleted: a second ack of it holds nothing.
    let (status, body) = post(
        &gw,
        "/api/ack",
        &user,
        &json!({"queue": user, "id": first["id"]}),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn a_nack_over_post_redelivers() {
    let gw = TestGateway::builder().config(window(1)).start().await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&gw, &user).await;
    gw.queues().await.send(&user, "again", None).await.unwrap();
    let first = stream.message().await.json();
    let (status, _) = post(
        &gw,
        "/api/nack",
        &user,
        &json!({"queue": user, "id": first["id"]}),
    )
    .await;
    assert_eq!(status, 200);
    let again = stream.message().await.json();
    assert_eq!((&again["id"], &again["rc"]), (&first["id"], &json!(2)));
}

#[tokio::test]
async fn an_id_the_caller_does_not_hold_is_404() {
    let gw = TestGateway::builder().start().await;
    let alice = format!("a{}", unique());
    let mallory = format!("m{}", unique());
    let mut stream = own_stream(&gw, &alice).await;
    gw.queues()
        .await
        .send(&alice, "private", None)
        .await
        .unwrap();
    let held = stream.message().await.json();
    // Another user naming alice's message: not theirs to ack.
    let (status, body) = post(
        &gw,
        "/api/ack",
        &mallory,
        &json!({"queue": alice, "id": held["id"]}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // An id never delivered.
    let unknown = "x".repeat(32);
    let (status, _) = post(
        &gw,
        "/api/ack",
        &alice,
        &json!({"queue": alice, "id": unknown}),
    )
    .await;
    assert_eq!(status, 404);
    // Alice's own ack still works: the message was not touched.
    let (status, _) = post(
        &gw,
        "/api/ack",
        &alice,
        &json!({"queue": alice, "id": held["id"]}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_tokens_are_401_and_foreign_queues_403() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let err = Stream::open(gw.addr, &format!("queue={user}&token=nonsense"), &[])
        .await
        .err();
    let (status, body) = err.expect("refused");
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "unauthorized"
    );
    let err = Stream::open(gw.addr, &format!("queue={user}"), &[])
        .await
        .err();
    assert_eq!(err.expect("refused").0, 401);
    // The header works as well as the query.
    let auth = bearer(&user);
    let ok = Stream::open(
        gw.addr,
        &format!("queue={user}"),
        &[("authorization", &auth)],
    )
    .await;
    assert!(ok.is_ok());
    // Someone else's queue: forbidden, as a WebSocket subscribe would be.
    let err = Stream::open(
        gw.addr,
        &format!("queue=other{user}&token={}", token(&user)),
        &[],
    )
    .await
    .err();
    assert_eq!(err.expect("refused").0, 403);
    let (status, body) = gw
        .http(
            "POST",
            "/api/ack",
            &[("authorization", "Bearer nonsense")],
            r#"{"queue":"q","id":"x"}"#,
        )
        .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_huge_ack_body_is_413() {
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let auth = bearer(&user);
    let big = format!(r#"{{"queue":"{user}","id":"{}"}}"#, "x".repeat(8 * 1024));
    let (status, _) = gw
        .http("POST", "/api/ack", &[("authorization", &auth)], &big)
        .await;
    assert_eq!(status, 413);
    let (status, _) = gw
        .http("POST", "/api/ack", &[("authorization", &auth)], "{not json")
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_dropped_stream_releases_its_messages_at_once() {
    // A vt far longer than the test: only the release can bring the message back in time.
    let gw = TestGateway::builder().config(window(1)).start().await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&gw, &user).await;
    gw.queues().await.send(&user, "held", None).await.unwrap();
    let first = stream.message().await.json();
    drop(stream);
    let mut again = own_stream(&gw, &user).await;
    let event = tokio::time::timeout(Duration::from_secs(3), again.message())
        .await
        .expect("redelivered well before the vt");
    let frame = event.json();
    assert_eq!((&frame["id"], &frame["rc"]), (&first["id"], &json!(2)));
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let gw = TestGateway::builder()
        .config(|c| c.limits.ping_interval = Duration::from_millis(200))
        .start()
        .await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&gw, &user).await;
    assert_eq!(
        first_line(&mut stream, Duration::from_secs(2)).await,
        ": stream open\n"
    );
    let mut line = String::new();
    while line.trim().is_empty() {
        line = first_line(&mut stream, Duration::from_secs(2)).await;
    }
    assert_eq!(line, ": keep-alive\n");
}

/// The stream's next line, failing the test if none comes within `wait`.
async fn first_line(stream: &mut Stream, wait: Duration) -> String {
    let mut line = String::new();
    tokio::time::timeout(wait, stream.reader.read_line(&mut line))
        .await
        .expect("a line in time")
        .unwrap();
    line
}

#[tokio::test]
async fn a_stream_of_idle_queues_starts_at_once() {
    // The default keep-alive is 15 s: the first bytes must not wait for it.
    let gw = TestGateway::builder().start().await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&gw, &user).await;
    assert_eq!(
        first_line(&mut stream, Duration::from_secs(1)).await,
        ": stream open\n"
    );
}

#[tokio::test]
async fn an_ack_through_another_node_frees_the_window() {
    let redis = RedisServer::start();
    let node = |name: &'static str| {
        move |c: &mut wsmq_gateway::Config| {
            c.node_id = format!("{name}-{}", unique());
            c.limits.window = 1;
        }
    };
    let a = TestGateway::builder()
        .redis(&redis)
        .config(node("a"))
        .start()
        .await;
    let b = TestGateway::builder()
        .redis(&redis)
        .config(node("b"))
        .start()
        .await;
    let user = format!("u{}", unique());
    let mut stream = own_stream(&a, &user).await;
    let queues = a.queues().await;
    queues.send(&user, "one", None).await.unwrap();
    queues.send(&user, "two", None).await.unwrap();
    let first = stream.message().await.json();
    stream.expect_no_message(Duration::from_millis(500)).await;
    let (status, body) = post(
        &b,
        "/api/ack",
        &user,
        &json!({"queue": user, "id": first["id"]}),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    let second = stream.message().await.json();
    assert_eq!(second["message"], "two");
    let (status, _) = post(
        &b,
        "/api/ack",
        &user,
        &json!({"queue": user, "id": first["id"]}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn last_event_id_resumes_a_channel_from_its_offset() {
    let policy = wsmq_gateway::engine::HistoryPolicy {
        size: 100,
        ttl: Duration::from_secs(3600),
    };
    let gw = TestGateway::builder()
        .config(move |c| {
            c.history.default = wsmq_gateway::config::HistoryRule {
                size: policy.size,
                ttl: policy.ttl,
            };
        })
        .start()
        .await;
    let user = format!("u{}", unique());
    let room = format!("room-{}", unique());
    let mut claims = wsmq_proto::Claims::new(&user, support::now() + 600);
    claims.wsmq = Some(wsmq_proto::Grants {
        subscribe: vec!["room-*".into()],
        ..Default::default()
    });
    let query = format!("channel={room}&token={}", support::token_with(claims));
    let mut stream = Stream::open(gw.addr, &query, &[])
        .await
        .expect("stream opens");
    let ok = stream.next_within(RECV_TIMEOUT).await.expect("ok event");
    assert_eq!(ok.event, "ok");
    let broker = gw.engine().await.broker;
    broker
        .publish_with_history(&room, "m1", policy)
        .await
        .unwrap();
    let first = stream.message().await;
    let frame = first.json();
    assert_eq!(frame["message"], "m1");
    let last_id = first.id.clone().expect("an id");
    assert_eq!(last_id, format!("{}:1", frame["epoch"].as_str().unwrap()));
    drop(stream);
    broker
        .publish_with_history(&room, "m2", policy)
        .await
        .unwrap();
    broker
        .publish_with_history(&room, "m3", policy)
        .await
        .unwrap();
    let mut resumed = Stream::open(gw.addr, &query, &[("last-event-id", &last_id)])
        .await
        .expect("stream opens");
    let ok = resumed.next_within(RECV_TIMEOUT).await.expect("ok event");
    assert_eq!(
        (ok.event.as_str(), &ok.json()["recovered"]),
        ("ok", &json!(true))
    );
    for expected in ["m2", "m3"] {
        assert_eq!(resumed.message().await.json()["message"], expected);
    }
}
