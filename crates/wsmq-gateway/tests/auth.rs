//! Authentication before the upgrade: 401 JSON on failure, every token source.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, SECRET, TestGateway, access_token, now, token, token_with};
use wsmq_proto::{Claims, Grants};

fn reason(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(value["error"], "unauthorized", "{body}");
    value["reason"].as_str().unwrap().to_owned()
}

async fn refused(gw: &TestGateway, headers: &[(&str, &str)], path: &str) -> String {
    let Err((status, body)) = gw.connect(path, headers, None).await else {
        panic!("handshake was accepted");
    };
    assert_eq!(status, 401);
    reason(&body)
}

#[tokio::test]
async fn missing_token_is_401_with_a_json_reason() {
    let gw = TestGateway::builder().start().await;
    assert_eq!(refused(&gw, &[], "/").await, "missing_token");
}

#[tokio::test]
async fn bad_signature_expired_and_alg_none_are_refused() {
    let gw = TestGateway::builder().start().await;
    let forged =
        wsmq_proto::token::issue_hs256(&Claims::new("alice", now() + 60), b"not-the-secret");
    assert_eq!(
        refused(&gw, &[("x-token", &forged)], "/").await,
        "bad_signature"
    );
    let expired = token_with(Claims::new("alice", now() - 3600));
    assert_eq!(refused(&gw, &[("x-token", &expired)], "/").await, "expired");
    // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (no signature)
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    assert_eq!(
        refused(&gw, &[("x-token", none)], "/").await,
        "wrong_algorithm"
    );
    assert_eq!(
        refused(&gw, &[("x-token", "garbage")], "/").await,
        "malformed"
    );
}

#[tokio::test]
async fn token_from_header_bearer_or_query() {
    let gw = TestGateway::builder().start().await;
    let t = token("alice");
    gw.connect("/", &[("x-token", &t)], None).await.unwrap();
    let bearer = format!("Bearer {t}");
    gw.connect("/ws", &[("authorization", &bearer)], None)
        .await
        .unwrap();
    gw.connect(&format!("/ws?token={t}"), &[], None)
        .await
        .unwrap();
}

#[tokio::test]
async fn access_token_is_accepted_only_while_registered() {
    let gw = TestGateway::builder().start().await;
    let at = access_token("57c8");
    assert_eq!(
        refused(&gw, &[("x-access-token", &at)], "/").await,
        "unregistered"
    );
    gw.memory
        .as_ref()
        .unwrap()
        .register_access_token("57c8", &at);
    let (mut client, welcome) = {
        let mut c = gw
            .connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
            .await
            .unwrap();
        let w = c.recv_json().await;
        (c, w)
    };
    assert_eq!(welcome["user"], "57c8");
    // A session admitted by access token gets a fresh JWT that the gateway accepts.
    let fresh = welcome["token"].as_str().expect("a fresh token").to_owned();
    gw.connect("/", &[("x-token", &fresh)], None).await.unwrap();
    // The query form works too.
    gw.connect(&format!("/?access_token={at}"), &[], None)
        .await
        .unwrap();
    // Revocation closes the session with 4003 and refuses the token from then on.
    gw.memory.as_ref().unwrap().revoke("57c8");
    assert_eq!(client.close_code().await, Some(4003));
    assert_eq!(
        refused(&gw, &[("x-access-token", &at)], "/").await,
        "unregistered"
    );
}

#[tokio::test]
async fn jwt_sessions_get_a_null_token_in_the_welcome() {
    let gw = TestGateway::builder().start().await;
    let (client, welcome) = gw.v1("users/bob").await;
    assert_eq!(
        welcome,
        json!({"op": "welcome", "user": "bob", "node": "test-node", "token": null})
    );
    assert_eq!(client.protocol.as_deref(), Some("wsmq.v1"));
    let _ = SECRET;
}

#[tokio::test]
async fn a_session_whose_token_expires_is_closed_with_4001() {
    let gw = TestGateway::builder().start().await;
    // The verifier allows 5 s of leeway, so a token 3 s in the past is still admitted;
    // the session's timer then fires at once.
    let t = token_with(Claims::new("carol", now() - 3));
    let mut client = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    assert_eq!(client.close_code().await, Some(4001));
}

#[tokio::test]
async fn auth_op_extends_the_session() {
    let gw = TestGateway::builder().start().await;
    let t = token_with(Claims::new("dave", now() + 2));
    let mut client = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    client.recv_json().await;
    let later = token_with(Claims::new("dave", now() + 3600));
    let reply = client
        .request(json!({"op": "auth", "token": later, "ref": 1}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 1}));
    let other = token_with(Claims::new("eve", now() + 7200));
    let reply = client
        .request(json!({"op": "auth", "token": other, "ref": 2}))
        .await;
    assert_eq!(reply["code"], "forbidden");
    let bad = client
        .request(json!({"op": "auth", "token": "x.y.z", "ref": 3}))
        .await;
    assert_eq!(bad["code"], "forbidden");
    // Past the first token's exp, the session is still open.
    client
        .expect_silence(std::time::Duration::from_millis(2500))
        .await;
    let pong = client.request(json!({"op": "ping", "ref": 4})).await;
    assert_eq!(pong, json!({"op": "pong", "ref": 4}));
}

#[tokio::test]
async fn refused_refreshes_do_not_lift_the_expiry() {
    let gw = TestGateway::builder().start().await;
    let exp = now() + 3;
    let t = token_with(Claims::new("frank", exp));
    let mut client = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    client.recv_json().await;
    // Expired (beyond the leeway), another user's, and one expiring before the current token.
    let expired = token_with(Claims::new("frank", now() - 600));
    let foreign = token_with(Claims::new("grace", now() + 3600));
    let weaker = token_with(Claims::new("frank", exp - 1));
    for (n, (refresh, code)) in [
        (expired, "forbidden"),
        (foreign, "forbidden"),
        (weaker, "invalid"),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = client
            .request(json!({"op": "auth", "token": refresh, "ref": n}))
            .await;
        assert_eq!(reply["op"], "error", "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
    }
    // The session still ends at the first token's exp.
    let started = std::time::Instant::now();
    assert_eq!(client.close_code().await, Some(4001));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_refresh_moves_the_expiry_to_the_new_exp_and_no_further() {
    let gw = TestGateway::builder().start().await;
    let t = token_with(Claims::new("heidi", now() + 1));
    let mut client = gw
        .connect("/ws", &[("x-token", &t)], Some("wsmq.v1"))
        .await
        .unwrap();
    client.recv_json().await;
    let refreshed_exp = now() + 4;
    let later = token_with(Claims::new("heidi", refreshed_exp));
    let reply = client.request(json!({"op": "auth", "token": later})).await;
    assert_eq!(reply["op"], "ok", "{reply}");
    // Open past the first exp ...
    client
        .expect_silence(std::time::Duration::from_millis(2500))
        .await;
    assert_eq!(client.request(json!({"op": "ping"})).await["op"], "pong");
    // ... and closed with 4001 at the new one.
    assert_eq!(client.close_code().await, Some(4001));
    assert!(now() >= refreshed_exp - 1, "closed before the new exp");
}

/// A JWT for `user` issued now, expiring in `ttl` seconds, with `grants`.
fn granted(user: &str, ttl: u64, grants: Grants) -> String {
    let mut claims = Claims::new(user, now() + ttl);
    claims.iat = Some(now());
    claims.wsmq = Some(grants);
    token_with(claims)
}

/// A v1 session of `user` admitted by a (registered) access token.
async fn by_access_token(gw: &TestGateway, user: &str) -> (Client, Value) {
    let at = access_token(user);
    gw.memory.as_ref().unwrap().register_access_token(user, &at);
    let mut client = gw
        .connect("/ws", &[("x-access-token", &at)], Some("wsmq.v1"))
        .await
        .unwrap();
    let welcome = client.recv_json().await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    (client, welcome)
}

/// An access-token session does not expire, but grants it adopts with `auth` end with the JWT
/// that brought them: the subscriptions they allowed are ended, with a notice, and the
/// session goes on with what the access token alone allows.
#[tokio::test]
async fn grants_adopted_by_an_access_token_session_end_at_the_tokens_exp() {
    let gw = TestGateway::builder().start().await;
    let (mut client, _) = by_access_token(&gw, "ivan").await;
    let news = Grants {
        subscribe: vec!["news*".into()],
        ..Grants::default()
    };
    let reply = client
        .request(json!({"op": "auth", "token": granted("ivan", 2, news), "ref": 1}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 1}));
    let reply = client
        .request(json!({"op": "subscribe", "channel": "news-1", "ref": 2}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 2}));
    let ended = client.recv_json().await;
    assert_eq!(
        ended,
        json!({
            "op": "error",
            "code": "forbidden",
            "message": "subscription to channel news-1 ended: no longer allowed"
        })
    );
    let again = client
        .request(json!({"op": "subscribe", "channel": "news-1", "ref": 3}))
        .await;
    assert_eq!(again["code"], "forbidden", "{again}");
    // The session itself rests on the access token, and stays.
    let pong = client.request(json!({"op": "ping", "ref": 4})).await;
    assert_eq!(pong, json!({"op": "pong", "ref": 4}));
}

/// A refresh with narrower grants ends the subscriptions they no longer allow: no more
/// deliveries from a queue the new token may not consume.
#[tokio::test]
async fn a_refresh_with_narrower_grants_ends_the_subscriptions_it_no_longer_allows() {
    let gw = TestGateway::builder().start().await;
    let wide = Grants {
        consume: vec!["jobs-*".into()],
        subscribe: vec!["news*".into()],
        ..Grants::default()
    };
    let mut client = gw
        .connect(
            "/ws",
            &[("x-token", &granted("judy", 60, wide))],
            Some("wsmq.v1"),
        )
        .await
        .unwrap();
    client.recv_json().await;
    for (n, sub) in [
        json!({"op": "subscribe", "queue": "jobs-judy"}),
        json!({"op": "subscribe", "channel": "news-judy"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut sub = sub;
        sub["ref"] = json!(n);
        assert_eq!(client.request(sub).await["op"], "ok");
    }
    let narrow = Grants {
        subscribe: vec!["news*".into()],
        ..Grants::default()
    };
    let reply = client
        .request(json!({"op": "auth", "token": granted("judy", 120, narrow), "ref": 9}))
        .await;
    assert_eq!(reply, json!({"op": "ok", "ref": 9}));
    let ended = client.recv_json().await;
    assert_eq!(
        ended["message"], "subscription to queue jobs-judy ended: no longer allowed",
        "{ended}"
    );
    gw.queues()
        .await
        .send("jobs-judy", "not for you", None)
        .await
        .unwrap();
    client.expect_silence(Duration::from_millis(500)).await;
}

/// With `--jwt-issuer` and `--jwt-audience` set, the JWT a gateway hands to an access-token
/// session carries them, so the client can reconnect with it.
#[tokio::test]
async fn the_welcome_token_carries_the_required_issuer_and_audience() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.auth.jwt.issuer = Some("https://id.example".into());
            c.auth.jwt.audience = Some("wsmq".into());
        })
        .start()
        .await;
    let (_client, welcome) = by_access_token(&gw, "kate").await;
    let jwt = welcome["token"].as_str().expect("a session token");
    gw.connect("/ws", &[("x-token", jwt)], None)
        .await
        .expect("the gateway accepts the token it minted");
}

/// Revocation marks must outlive every token issued before them, so a JWT may live at most
/// 30 days from its `iat`; and an `iat` in the future would slip past every mark.
#[tokio::test]
async fn jwts_beyond_the_revocation_horizon_are_refused() {
    let gw = TestGateway::builder().start().await;
    let mut long = Claims::new("liam", now() + 31 * 86_400);
    long.iat = Some(now());
    assert_eq!(
        refused(&gw, &[("x-token", &token_with(long))], "/").await,
        "lifetime_too_long"
    );
    let mut ahead = Claims::new("liam", now() + 3600);
    ahead.iat = Some(now() + 600);
    assert_eq!(
        refused(&gw, &[("x-token", &token_with(ahead))], "/").await,
        "issued_in_future"
    );
}
