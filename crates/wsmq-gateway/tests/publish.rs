//! Publishing: `POST /api/publish` with the API key, and client publishes when authorized.

mod support;

use serde_json::{Value, json};
use support::{TestGateway, unique};

const KEY: &str = "api-key-0123456789";

#[tokio::test]
async fn api_publish_is_404_without_an_api_key() {
    let gw = TestGateway::builder().start().await;
    let body = json!({"queue": "q", "message": "m"}).to_string();
    let (status, _) = gw
        .http(
            "POST",
            "/api/publish",
            &[("authorization", "apikey whatever")],
            &body,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn api_publish_needs_the_key_and_returns_the_id() {
    let gw = TestGateway::builder()
        .config(|c| c.auth.api_key = Some(wsmq_gateway::config::Secret::new(KEY)))
        .start()
        .await;
    let q = format!("q{}", unique());
    let body = json!({"queue": q, "message": "from the api"}).to_string();
    let (status, reply) = gw.http("POST", "/api/publish", &[], &body).await;
    assert_eq!(status, 401, "{reply}");
    let (status, _) = gw
        .http(
            "POST",
            "/api/publish",
            &[("authorization", "apikey wrong-key-0000")],
            &body,
        )
        .await;
    assert_eq!(status, 401);
    let auth = format!("apikey {KEY}");
    let (status, reply) = gw
        .http("POST", "/api/publish", &[("authorization", &auth)], &body)
        .await;
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["id"].as_str().unwrap().len(), 32);
    // The user receives it.
    let (mut c, _) = gw.v1(&q).await;
    c.request(json!({"op": "subscribe", "queue": q})).await;
    let m = c.recv_json().await;
    assert_eq!(
        (m["id"].clone(), m["message"].as_str()),
        (reply["id"].clone(), Some("from the api"))
    );
    // Bad bodies are clear 400s.
    for bad in [
        "not json",
        r#"{"message":"no target"}"#,
        r#"{"queue":"bad name","message":"x"}"#,
    ] {
        let (status, reply) = gw
            .http("POST", "/api/publish", &[("authorization", &auth)], bad)
            .await;
        assert_eq!(status, 400, "{bad}: {reply}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"], "invalid");
    }
    // Channels too.
    let (status, reply) = gw
        .http(
            "POST",
            "/api/publish",
            &[("authorization", &auth)],
            r#"{"channel":"news","message":"x"}"#,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
}

#[tokio::test]
async fn clients_publish_to_their_own_queue_but_not_to_others() {
    let gw = TestGateway::builder().start().await;
    let me = format!("u{}", unique());
    let (mut c, _) = gw.v1(&me).await;
    let r = c
        .request(
            json!({"op": "publish", "queue": me, "message": "note to self", "delay": 0, "ref": 1}),
        )
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    assert_eq!(r["ref"], 1);
    assert_eq!(r["id"].as_str().unwrap().len(), 32);
    let r = c
        .request(json!({"op": "publish", "queue": "someone-else", "message": "x", "ref": 2}))
        .await;
    assert_eq!(
        (r["code"].as_str(), r["ref"].as_i64()),
        (Some("forbidden"), Some(2))
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_404() {
    let gw = TestGateway::builder().start().await;
    let (status, body) = gw.http("GET", "/healthz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = gw.http("GET", "/readyz", &[], "").await;
    assert_eq!(status, 200);
    let (_c, _) = gw.v1("metrics-user").await;
    let (status, body) = gw.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("wsmq_connections 1"), "{body}");
    assert!(
        body.contains("wsmq_delivery_latency_seconds_bucket"),
        "{body}"
    );
    let (status, body) = gw.http("GET", "/nope?token=secret", &[], "").await;
    assert_eq!((status, body.as_str()), (404, r#"{"error":"not_found"}"#));
}
