//! Bounds and exposure: credit-bounded deliveries never make a client slow, values from outside
//! cannot overflow a timer, the demo's tokens stay apart from real ones, the demo is not on the
//! admin port, and the optional Origin allow-list.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestGateway, now, process::free_addr, token_with};
use wsmq_proto::{Claims, token::issue_hs256};

/// The value of an unlabelled counter or gauge in Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A client that subscribes to queues holding a backlog larger than `--outbound-buffer` gets
/// the whole backlog at once (window × subscriptions), reads it, and stays connected: queue
/// deliveries are bounded by credit, not counted as a slow client. Before, the burst filled
/// the outbound buffer, the session was closed with 4008, its messages released, and the
/// same happened on every reconnect.
#[tokio::test]
async fn a_backlog_larger_than_the_outbound_buffer_is_delivered_without_a_4008() {
    const QUEUES: usize = 3;
    const WINDOW: usize = 32;
    let gw = TestGateway::builder()
        .config(|c| {
            c.limits.outbound_buffer = 16;
            c.limits.window = WINDOW;
            c.auth.open = true;
        })
        .start()
        .await;
    let engine = gw.engine().await;
    let queues: Vec<String> = (0..QUEUES)
        .map(|i| format!("backlog{i}{}", support::unique()))
        .collect();
    for q in &queues {
        engine.queues.ensure_queue(q).await.unwrap();
        for n in 0..WINDOW + 8 {
            engine
                .queues
                .send(q, &format!("{q}-{n}"), None)
                .await
                .unwrap();
        }
    }
    let (mut c, _) = gw.v1("backlog-user").await;
    for q in &queues {
        c.send_json(json!({"op": "subscribe", "queue": q})).await;
    }
    // window × queues deliveries (96, six times the buffer), all first deliveries; acking
    // them lets the rest of each backlog through.
    let mut messages = 0;
    let mut oks = 0;
    while messages < QUEUES * (WINDOW + 8) {
        let text = c
            .next_text(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("closed or silent after {messages} messages"));
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["op"].as_str() {
            Some("message") => {
                assert_eq!(frame["rc"], 1, "{frame}");
                messages += 1;
                let ack = json!({"op": "ack", "queue": frame["queue"], "id": frame["id"]});
                c.send_json(ack).await;
            }
            Some("ok") => oks += 1,
            _ => panic!("unexpected {frame}"),
        }
    }
    // One ok per subscribe and per ack, then the session still answers.
    while oks < QUEUES + messages {
        let frame = c.recv_json().await;
        assert_eq!(frame["op"], "ok", "{frame}");
        oks += 1;
    }
    assert_eq!(c.request(json!({"op": "ping"})).await["op"], "pong");
    let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
    assert_eq!(
        metric(&metrics, "wsmq_slow_clients_total"),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "wsmq_redeliveries_total"),
        0.0,
        "{metrics}"
    );
}

/// A JWT whose `exp` is at or past 2^63 (at the handshake or in `auth`) neither panics the session
/// (which used to leak its registry entry and the connection gauge) nor ends it.
#[tokio::test]
async fn a_token_that_expires_near_the_end_of_time_does_not_panic_the_session() {
    let gw = TestGateway::builder().start().await;
    // Past 2^63 - now, `Instant + Duration` overflows (the monotonic clock counts in i64).
    let far = u64::MAX;
    let token = token_with(Claims::new("far", far));
    let mut c = gw
        .connect("/ws", &[("x-token", &token)], Some("wsmq.v1"))
        .await
        .expect("admitted");
    assert_eq!(c.recv_json().await["op"], "welcome");
    assert_eq!(c.request(json!({"op": "ping"})).await["op"], "pong");
    // And through `auth` on a session with an ordinary token.
    let (mut other, _) = gw.v1("far2").await;
    let later = token_with(Claims::new("far2", far));
    let reply = other.request(json!({"op": "auth", "token": later})).await;
    assert_eq!(reply["op"], "ok", "{reply}");
    assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");
    c.close().await;
    other.close().await;
    let mut connections = f64::NAN;
    for _ in 0..100 {
        let (_, metrics) = gw.http("GET", "/metrics", &[], "").await;
        connections = metric(&metrics, "wsmq_connections");
        if connections == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connections, 0.0, "sessions ended and were counted out");
}

/// The demo's token endpoint and pages answer on the public port only.
#[tokio::test]
async fn the_demo_is_not_served_on_the_admin_port() {
    let admin = free_addr();
    let gw = TestGateway::builder()
        .config(|c| {
            c.demo = true;
            c.auth.demo_secret = Some(wsmq_gateway::config::Secret::new("demo-play-secret"));
            c.listen.admin = Some(admin);
        })
        .start()
        .await;
    assert_eq!(gw.http("GET", "/demo", &[], "").await.0, 200);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(gw.http("POST", "/demo/token", &form, "user=a").await.0, 200);
    let mut served = None;
    for _ in 0..100 {
        if let Some(status) = support::process::try_status(admin, "/healthz").await {
            served = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served, Some(200), "the admin port answers");
    assert_eq!(support::http(admin, "GET", "/demo", &[], "").await.0, 404);
    let (status, _) = support::http(admin, "POST", "/demo/token", &form, "user=a").await;
    assert_eq!(status, 404);
    assert_eq!(
        support::http(admin, "GET", "/metrics", &[], "").await.0,
        200
    );
    assert_eq!(gw.http("GET", "/metrics", &[], "").await.0, 404);
}

/// With `--demo-secret`, a demo token is for `demo-NAME`, signed with the demo secret (not the
/// real one), may publish only to demo users' queues, and a real token cannot take a demo name.
#[tokio::test]
async fn demo_tokens_are_kept_apart_from_real_users() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.demo = true;
            c.auth.demo_secret = Some(wsmq_gateway::config::Secret::new("demo-play-secret"));
        })
        .start()
        .await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, body) = gw.http("POST", "/demo/token", &form, "user=alice").await;
    assert_eq!(status, 200, "{body}");
    let grant: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(grant["user"], "demo-alice");
    assert_eq!(grant["user_prefix"], "demo-");
    let demo_token = grant["token"].as_str().unwrap().to_owned();
    // Not a real token: the production secret does not verify it.
    let real = wsmq_proto::JwtVerifier::hs256(support::SECRET.as_bytes()).unwrap();
    assert!(real.verify(&demo_token, now()).is_err());
    let mut c = gw
        .connect("/ws", &[("x-token", &demo_token)], Some("wsmq.v1"))
        .await
        .expect("a demo token opens a session");
    let welcome = c.recv_json().await;
    assert_eq!(welcome["user"], "demo-alice", "{welcome}");
    let to_real = c
        .request(json!({"op": "publish", "queue": "alice", "message": "hi"}))
        .await;
    assert_eq!(to_real["code"], "forbidden", "{to_real}");
    let to_demo = c
        .request(json!({"op": "publish", "queue": "demo-bob", "message": "hi"}))
        .await;
    assert_eq!(to_demo["op"], "ok", "{to_demo}");
    // A demo token that claims a real name or more grants gains nothing.
    let mut forged = Claims::new("alice", now() + 600);
    forged.aud = Some(wsmq_proto::Audience::One("wsmq-demo".into()));
    let forged = issue_hs256(&forged, b"demo-play-secret");
    let refused = gw.connect("/ws", &[("x-token", &forged)], None).await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(401));
    // A real token for a demo name is refused on this node.
    let (status, body) = match gw
        .connect("/ws", &[("x-token", &support::token("demo-bob"))], None)
        .await
    {
        Err(refused) => refused,
        Ok(_) => panic!("a real token for demo-bob was admitted"),
    };
    assert_eq!(status, 401);
    assert!(body.contains("reserved_user"), "{body}");
    // Real users are unaffected.
    gw.v1("alice").await;
}

/// With `--allowed-origins`, a browser page from another origin cannot open a session; the
/// listed origin and clients that send no Origin can.
#[tokio::test]
async fn upgrades_from_origins_outside_the_allow_list_are_refused() {
    let gw = TestGateway::builder()
        .config(|c| c.listen.allowed_origins = vec!["https://app.example.com".into()])
        .start()
        .await;
    let t = support::token("alice");
    let (status, body) = match gw
        .connect(
            "/ws",
            &[("x-token", &t), ("origin", "https://evil.example.com")],
            None,
        )
        .await
    {
        Err(refused) => refused,
        Ok(_) => panic!("a foreign origin was admitted"),
    };
    assert_eq!(status, 403);
    assert!(body.contains("origin"), "{body}");
    for headers in [
        &[
            ("x-token", t.as_str()),
            ("origin", "https://APP.example.com"),
        ][..],
        &[("x-token", t.as_str())],
    ] {
        gw.connect("/ws", headers, None).await.expect("admitted");
    }
}

/// Subscribe, unsubscribe, publish and auth have a budget of their own, well under the frame
/// rate: past it they get `rate_limited`, while cheap frames (ping) still pass.
#[tokio::test]
async fn costly_ops_are_rate_limited_apart_from_frames() {
    let gw = TestGateway::builder()
        .config(|c| c.limits.op_rate_limit = 5)
        .start()
        .await;
    let (mut c, _) = gw.v1("busy").await;
    // A burst of twice the rate passes, then the budget is spent.
    for n in 0..10 {
        let reply = c
            .request(json!({"op": "publish", "queue": "busy", "message": "m", "ref": n}))
            .await;
        assert_eq!(reply["op"], "ok", "{reply}");
    }
    let refused = c
        .request(json!({"op": "publish", "queue": "busy", "message": "m", "ref": 10}))
        .await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["ref"], 10);
    assert_eq!(c.request(json!({"op": "ping"})).await["op"], "pong");
    // `auth` costs ten: one passes on a fresh budget, the next is refused at once.
    let (mut d, _) = gw.v1("verifier").await;
    let token = token_with(Claims::new("verifier", now() + 7200));
    let first = d.request(json!({"op": "auth", "token": token})).await;
    assert_eq!(first["op"], "ok", "{first}");
    let token = token_with(Claims::new("verifier", now() + 7300));
    let second = d.request(json!({"op": "auth", "token": token})).await;
    assert_eq!(second["code"], "rate_limited", "{second}");
}

/// A user may create only so many queues by subscribing or publishing; existing queues stay
/// usable, and other users have budgets of their own.
#[tokio::test]
async fn queue_creation_is_capped_per_user() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.auth.open = true;
            c.limits.queue_create_limit = 2;
        })
        .start()
        .await;
    let tag = support::unique();
    let mut claims = Claims::new("maker", now() + 600);
    claims.wsmq = Some(wsmq_proto::Grants {
        publish: vec!["queue:*".into()],
        ..Default::default()
    });
    let maker = token_with(claims);
    let mut c = gw
        .connect("/ws", &[("x-token", &maker)], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(c.recv_json().await["op"], "welcome");
    for n in 0..2 {
        let reply = c
            .request(json!({"op": "subscribe", "queue": format!("new{n}-{tag}")}))
            .await;
        assert_eq!(reply["op"], "ok", "{reply}");
    }
    let third = c
        .request(json!({"op": "subscribe", "queue": format!("new2-{tag}")}))
        .await;
    assert_eq!(third["code"], "rate_limited", "{third}");
    let published = c
        .request(json!({"op": "publish", "queue": format!("new3-{tag}"), "message": "m"}))
        .await;
    assert_eq!(published["code"], "rate_limited", "{published}");
    let queues = gw.queues().await;
    assert!(!queues.queue_exists(&format!("new2-{tag}")).await.unwrap());
    assert!(!queues.queue_exists(&format!("new3-{tag}")).await.unwrap());
    // An existing queue is no creation.
    let existing = format!("existing-{tag}");
    queues.ensure_queue(&existing).await.unwrap();
    let reply = c
        .request(json!({"op": "subscribe", "queue": existing}))
        .await;
    assert_eq!(reply["op"], "ok", "{reply}");
    let (mut other, _) = gw.v1("other-maker").await;
    let reply = other
        .request(json!({"op": "subscribe", "queue": format!("new4-{tag}")}))
        .await;
    assert_eq!(reply["op"], "ok", "{reply}");
}

/// Hands each publication to the test.
struct Publications(tokio::sync::mpsc::UnboundedSender<String>);

impl wsmq_gateway::engine::BrokerHandler for Publications {
    fn on_publication(&self, channel: &str, _body: &str) {
        let _ = self.0.send(channel.to_owned());
    }
}

/// A subscribe/unsubscribe loop (of sessions coming and going on one channel) does not delay
/// the next subscription of the node: the changes are coalesced, not queued one round trip
/// each (20,000 toggles queued 40,000 commands, seconds of round trips, before anyone else's).
#[tokio::test]
async fn a_subscribe_unsubscribe_loop_does_not_delay_other_subscriptions() {
    use wsmq_gateway::engine::{BrokerHandler, redis::RedisEngine};
    let redis = support::RedisServer::start();
    let ns = format!("t{}", support::unique());
    let engine = RedisEngine::connect(&redis.url(), &ns, Default::default())
        .await
        .unwrap()
        .engine();
    let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let handler: std::sync::Arc<dyn BrokerHandler> = std::sync::Arc::new(Publications(tx));
    engine.broker.start(&handler);
    let churn = format!("churn{}", support::unique());
    for _ in 0..20_000 {
        engine.broker.subscribe(&churn);
        engine.broker.unsubscribe(&churn);
    }
    let wanted = format!("wanted{}", support::unique());
    engine.broker.subscribe(&wanted);
    let started = std::time::Instant::now();
    // Publish until the node listens: how long the new subscription waited.
    loop {
        engine.broker.publish(&wanted, "x").await.unwrap();
        if let Ok(Some(channel)) = tokio::time::timeout(Duration::from_millis(10), got.recv()).await
        {
            assert_eq!(channel, wanted);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never subscribed"
        );
    }
    let waited = started.elapsed();
    eprintln!("subscription after 20,000 subscribe/unsubscribe pairs took effect in {waited:?}");
    assert!(waited < Duration::from_millis(500), "{waited:?}");
}
