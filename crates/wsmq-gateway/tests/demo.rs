//! The demo routes: `/client/wsmq.js` always, `/demo` and `POST /demo/token` only with
//! `--demo`, and what a demo token may do. (The page itself runs in a browser in the
//! `browser` e2e target.)

mod support;

use serde_json::{Value, json};
use support::{TestGateway, unique};

#[tokio::test]
async fn without_demo_there_is_no_page_and_no_token_endpoint() {
    let gw = TestGateway::builder().start().await;
    assert_eq!(gw.http("GET", "/demo", &[], "").await.0, 404);
    assert_eq!(
        gw.http("POST", "/demo/token", &[], "user=alice").await.0,
        404
    );
    let (status, body) = gw.http("GET", "/client/wsmq.js", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("export class WsmqClient"));
}

#[tokio::test]
async fn with_demo_the_page_and_its_assets_are_served() {
    let gw = TestGateway::builder()
        .config(|c| c.demo = true)
        .start()
        .await;
    for (path, needle) in [
        ("/demo", "<title>wsmq chat demo</title>"),
        ("/demo/demo.css", "demo.css"),
        (
            "/demo/demo.js",
            "import { WsmqClient } from '/client/wsmq.js'",
        ),
    ] {
        let (status, body) = gw.http("GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    assert_eq!(gw.http("GET", "/demo/nothing", &[], "").await.0, 404);
}

#[tokio::test]
async fn a_demo_token_names_the_user_and_grants_dms_and_rooms_only() {
    let gw = TestGateway::builder()
        .config(|c| c.demo = true)
        .start()
        .await;
    let user = format!("u{}", unique());
    let (status, body) = gw
        .http(
            "POST",
            "/demo/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("user={user}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let grant: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(grant["user"], user.as_str());
    assert_eq!(grant["queue"], user.as_str());
    let token = grant["token"].as_str().unwrap();

    let path = format!("/ws?token={token}");
    let mut client = gw.connect(&path, &[], Some("wsmq.v1")).await.unwrap();
    let welcome = client.recv_json().await;
    assert_eq!(welcome["user"], user.as_str());
    let allowed = [
        json!({"op": "publish", "queue": format!("other{}", unique()), "message": "dm"}),
        json!({"op": "subscribe", "channel": "room-lobby"}),
        json!({"op": "publish", "channel": "room-lobby", "message": "hi"}),
        json!({"op": "subscribe", "queue": user}),
    ];
    for frame in allowed {
        let reply = client.request(frame.clone()).await;
        assert_eq!(reply["op"], "ok", "{frame} → {reply}");
    }
    let refused = [
        json!({"op": "subscribe", "queue": format!("other{}", unique())}),
        json!({"op": "subscribe", "channel": "ops"}),
        json!({"op": "publish", "channel": "ops", "message": "x"}),
    ];
    for frame in refused {
        let reply = client.request(frame.clone()).await;
        assert_eq!(reply["code"], "forbidden", "{frame} → {reply}");
    }
}

#[tokio::test]
async fn demo_user_names_must_be_plain() {
    let gw = TestGateway::builder()
        .config(|c| c.demo = true)
        .start()
        .await;
    for body in [
        "user=",
        "user=two%20words",
        "user=a%2Fb",
        "user=0123456789012345678901234567890123",
        "name=alice",
    ] {
        let (status, reply) = gw.http("POST", "/demo/token", &[], body).await;
        assert_eq!(status, 400, "{body}: {reply}");
    }
    let (status, reply) = gw
        .http(
            "POST",
            "/demo/token",
            &[("content-type", "application/json")],
            r#"{"user":"json_user-1"}"#,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
}

#[test]
fn demo_needs_an_hs256_secret_to_mint_with() {
    use clap::Parser;
    use wsmq_gateway::config::{Cli, Command};

    let path = std::env::temp_dir().join(format!("wsmq-demo-key-{}.pem", unique()));
    std::fs::write(
        &path,
        "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let key = path.to_str().unwrap();
    let argv = ["wsmq-gateway", "serve", "--demo", "--jwt-public-key", key];
    let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command;
    let err = args.into_config().unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("--demo"), "{err}");
}
