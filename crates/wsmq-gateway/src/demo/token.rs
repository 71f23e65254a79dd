//! `POST /demo/token`: a short-lived JWT for any user name, for the demo page only.
//!
//! The body is `user=NAME` (form-encoded, so a page on another node can call it without a
//! CORS preflight) or `{"user": NAME}`. The name must be 1 to 32 of `A-Z a-z 0-9 _ -`, so
//! that it is a valid user id and the user's own queue name is a valid queue name. The reply:
//!
//! ```json
//! {"token":"…","user":"alice","queue":"alice","queue_template":"{user}","user_prefix":"","expires":1700003600,"node":"…"}
//! ```
//!
//! The token's `wsmq` claim grants what a chat needs beyond the user's own queue: publishing
//! to the other users' own queues and subscribing and publishing to `room-*` channels. With
//! `--demo-secret` the user is `demo-NAME` (`user_prefix` says so), the token is signed with
//! that secret for the demo audience, and it may publish only to `demo-*` queues
//! (`auth::demo`); without it (a node with no production key), to any queue.

use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use serde_json::json;
use wsmq_proto::{Audience, Claims, Grants, QueueName, UserId, token::issue_hs256};

use crate::{
    auth::demo::{self as separate, AUDIENCE},
    clock,
    config::DEMO_USER_PREFIX,
    http::{Body, BodyError, read_body},
    state::Gateway,
};

/// Lifetime of a demo token; the page refreshes it (the `auth` op) before it runs out.
pub(crate) const TOKEN_TTL_SECS: u64 = 3600;
/// Longest demo user name.
const MAX_USER_LEN: usize = 32;
/// Largest request body.
const MAX_BODY: usize = 1024;

/// Mints a token for the user named in the body.
pub(crate) async fn handle(req: Request<Incoming>, gateway: &Gateway) -> Response<Body> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let deadline = gateway.config.listen.handshake_timeout;
    let body = match read_body(req.into_body(), MAX_BODY, deadline).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(_)) => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body over 1 KiB");
        }
        Err(err) => return cors(err.response()),
    };
    let user = if is_json {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("user").and_then(|u| u.as_str()).map(str::to_owned))
    } else {
        form_urlencoded::parse(&body)
            .find(|(key, _)| key == "user")
            .map(|(_, value)| value.into_owned())
    };
    let Some(user) = user.map(|u| u.trim().to_owned()) else {
        return refuse(StatusCode::BAD_REQUEST, "give a user name: user=NAME");
    };
    let Some((user, queue)) = validate(gateway, &user) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a user name is 1 to 32 letters, digits, '_' or '-'",
        );
    };
    let Some(token) = mint(gateway, user.as_str()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this node verifies tokens by public key",
        );
    };
    tracing::info!(user = %user, "demo token issued");
    let body = json!({
        "token": token.0,
        "user": user.as_str(),
        "queue": queue.as_str(),
        "queue_template": gateway.config.auth.own_queue,
        // What every demo user name starts with on this node ("" without --demo-secret).
        "user_prefix": if gateway.config.auth.demo_secret.is_some() { DEMO_USER_PREFIX } else { "" },
        "expires": token.1,
        "node": gateway.config.node_id,
    });
    cors(crate::http::json_response(StatusCode::OK, &body))
}

/// Answers a CORS preflight (a page sending JSON from another node's origin).
pub(crate) fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    cors(response)
}

/// The user id and own queue of a demo user name, when it is acceptable. With
/// `--demo-secret`, the user id is the name with [`DEMO_USER_PREFIX`] in front, so that it
/// cannot be a real user's.
fn validate(gateway: &Gateway, name: &str) -> Option<(UserId, QueueName)> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_USER_LEN || !name.chars().all(plain) {
        return None;
    }
    let name = match gateway.config.auth.demo_secret {
        Some(_) if !name.starts_with(DEMO_USER_PREFIX) => format!("{DEMO_USER_PREFIX}{name}"),
        _ => name.to_owned(),
    };
    let user = UserId::new(&name).ok()?;
    let queue = QueueName::new(gateway.auth.policy.own_queue(&name)).ok()?;
    Some((user, queue))
}

/// A signed token and its expiry; `None` without an HS256 secret.
///
/// With `--demo-secret`: signed with it, for the demo audience (see `auth::demo`). Without,
/// only a node with no production key runs the demo (`config` refuses the rest), and the
/// token is signed with the run's random secret.
fn mint(gateway: &Gateway, user: &str) -> Option<(String, u64)> {
    let jwt = &gateway.config.auth.jwt;
    let now = clock::unix_secs();
    let exp = now + TOKEN_TTL_SECS;
    let mut claims = Claims::new(user, exp);
    claims.iat = Some(now);
    claims.wsmq = Some(separate::grants(&gateway.config.auth.own_queue));
    if let Some(secret) = &gateway.config.auth.demo_secret {
        claims.aud = Some(Audience::One(AUDIENCE.to_owned()));
        return Some((issue_hs256(&claims, secret.expose().as_bytes()), exp));
    }
    if jwt.public_key_pem.is_some() {
        return None;
    }
    claims.iss.clone_from(&jwt.issuer);
    claims.aud = jwt.audience.clone().map(Audience::One);
    // In this mode the demo's users are the only users, so they may write to any queue.
    claims.wsmq = Some(Grants {
        consume: Vec::new(),
        subscribe: vec!["room-*".to_owned()],
        publish: vec!["queue:*".to_owned(), "channel:room-*".to_owned()],
    });
    Some((issue_hs256(&claims, jwt.secret.expose().as_bytes()), exp))
}

fn refuse(status: StatusCode, reason: &str) -> Response<Body> {
    cors(crate::http::json_response(
        status,
        &json!({"error": "invalid", "reason": reason}),
    ))
}

/// Lets the page fetch a token from any node of its `?nodes=` list.
fn cors(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
