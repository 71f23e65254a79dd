//! The route table: health, readiness, metrics, the publish API and the WebSocket upgrade.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` or `/ws` with `Upgrade: websocket` | [`upgrade::handle`] |
//! | `GET /sse?queue=q&channel=c` | [`sse::handle`]: a Server-Sent Events stream (public port only) |
//! | `POST /api/ack`, `POST /api/nack` | [`acks::handle`]: acks of the caller's SSE streams, on any node (public port only) |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when the engine answers and the node is not draining, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `POST /api/publish` | server-side publish with `Authorization: apikey KEY`; 404 without `--api-key` |
//! | `GET /client/wsmq.js`; `/demo…` with `--demo` | [`demo::handle`]: the JS client, the chat demo (public port only) |
//!
//! Everything else is a 404 with a JSON body. Only the path is ever logged: query strings may
//! carry tokens.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;
use wsmq_proto::{Publish, Target, decode_publish_body};

use crate::{
    acks, demo,
    engine::QueueRules,
    error::GatewayError,
    http::{Body, error_response, json_response, not_found, read_body},
    metrics,
    publish::{self, Published},
    sse,
    state::Gateway,
    upgrade,
};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// `--listen`: sessions and health; also metrics and the API unless `--admin-listen` is set.
    Public,
    /// `--admin-listen`: health, metrics and the API, never sessions.
    Admin,
}

impl Port {
    /// Whether `/metrics` and `/api/publish` are served here: on the admin port when there is
    /// one (so they need not be exposed to clients), else on the public port.
    fn serves_admin(self, gateway: &Gateway) -> bool {
        match self {
            Port::Admin => true,
            Port::Public => gateway.config.listen.admin.is_none(),
        }
    }
}

/// Routes one request.
pub(crate) async fn handle(
    req: Request<Incoming>,
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    permit: Arc<OwnedSemaphorePermit>,
    port: Port,
) -> Response<Body> {
    debug!(method = %req.method(), path = req.uri().path(), %peer, "request");
    let method = req.method().clone();
    match (method, req.uri().path()) {
        (Method::GET, "/" | "/ws") if port == Port::Public && upgrade::is_upgrade(&req) => {
            upgrade::handle(req, gateway, permit).await
        }
        (Method::GET, "/" | "/ws") if port == Port::Public => json_response(
            StatusCode::UPGRADE_REQUIRED,
            &json!({"error": "upgrade_required", "reason": "connect with a WebSocket client"}),
        ),
        (Method::GET, "/sse") if port == Port::Public => sse::handle(req, gateway, permit).await,
        (Method::POST, "/api/ack") if port == Port::Public => {
            acks::handle(req, &gateway, acks::Op::Ack).await
        }
        (Method::POST, "/api/nack") if port == Port::Public => {
            acks::handle(req, &gateway, acks::Op::Nack).await
        }
        (Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (Method::GET, "/readyz") => readyz(&gateway).await,
        (Method::GET, "/metrics") if port.serves_admin(&gateway) => {
            let mut response = Response::new(Body::full(gateway.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        (Method::POST, "/api/publish")
            if port.serves_admin(&gateway) && gateway.config.auth.api_key.is_some() =>
        {
            publish(req, &gateway).await
        }
        // The demo is for browsers, which reach the public port; its token endpoint has no
        // business on an internal port.
        (_, path) if port == Port::Public && demo::serves(&gateway, path) => {
            demo::handle(req, &gateway).await
        }
        _ => not_found(),
    }
}

async fn readyz(gateway: &Gateway) -> Response<Body> {
    if gateway.is_draining() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), gateway.engine.queues.ping()).await {
        Ok(Ok(())) => json_response(StatusCode::OK, &json!({"status": "ready"})),
        Ok(Err(err)) => {
            // At debug level: probes come every few seconds, and the engine logs the outage.
            debug!(cause = %err, "readiness: engine unreachable");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "engine_unavailable"}),
            )
        }
        Err(_) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "engine_timeout"}),
        ),
    }
}

/// `POST /api/publish`: `{"queue","message","delay"?}` or `{"channel","message"}` → `{"id"}`.
async fn publish(req: Request<Incoming>, gateway: &Gateway) -> Response<Body> {
    let expected = gateway
        .config
        .auth
        .api_key
        .as_ref()
        .map(|k| k.expose().as_bytes());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("apikey "))
        .map(str::as_bytes);
    let authorized = matches!((expected, given), (Some(e), Some(g)) if constant_time_eq(e, g));
    if !authorized {
        gateway.metrics.auth_failure("api_key");
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthorized", "reason": "api_key"}),
        );
    }
    // The body holds one message plus a little JSON around it.
    let limit = gateway.config.limits.max_frame + 1024;
    let deadline = gateway.config.listen.handshake_timeout;
    let body = match read_body(req.into_body(), limit, deadline).await {
        Ok(body) => body,
        Err(err) => return err.response(),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error_response(&GatewayError::Invalid("body is not UTF-8".into()));
    };
    let publish = match decode_publish_body(text) {
        Ok(p) => p,
        Err(err) => {
            let err = match err {
                wsmq_proto::ProtoError::TooLarge { .. } => GatewayError::TooLarge(err.to_string()),
                other => GatewayError::Invalid(other.to_string()),
            };
            return error_response(&err);
        }
    };
    let rules = match queue_rules(text, &publish) {
        Ok(rules) => rules,
        Err(err) => return error_response(&err),
    };
    let replicas = match replicas(text, &publish) {
        Ok(replicas) => replicas,
        Err(err) => return error_response(&err),
    };
    match publish::publish(gateway, None, &publish, rules.as_ref(), replicas).await {
        Ok(Published::Queue { id }) => json_response(StatusCode::OK, &json!({"id": id})),
        Ok(Published::Channel {
            receivers,
            position: None,
        }) => json_response(StatusCode::OK, &json!({"id": null, "receivers": receivers})),
        Ok(Published::Channel {
            receivers,
            position: Some(at),
        }) => json_response(
            StatusCode::OK,
            &json!({"id": null, "receivers": receivers, "offset": at.offset, "epoch": &*at.epoch}),
        ),
        Err(err) => error_response(&err),
    }
}

/// The optional `"create": {"maxreceives"?: n, "deadletter"?: q, "ttl"?: s}` of a publish body:
/// the rules of the queue when this publish creates it.
/// Most replicas a publish may wait for: more than any deployment has, fewer than would let
/// a typo wait out the whole timeout for nothing.
const MAX_REPLICAS: u64 = 16;

/// The optional `"replicas": n` of a publish body: answer only once `n` replicas hold the
/// queue message (Redis `WAIT`); 0 or absent: at once.
fn replicas(text: &str, publish: &Publish) -> Result<u32, GatewayError> {
    #[derive(serde::Deserialize)]
    struct Body {
        replicas: Option<serde_json::Value>,
    }
    let invalid = |detail: &str| GatewayError::Invalid(detail.to_owned());
    let body: Body = serde_json::from_str(text).map_err(|e| invalid(&e.to_string()))?;
    let Some(value) = body.replicas else {
        return Ok(0);
    };
    let n = value
        .as_u64()
        .filter(|n| *n <= MAX_REPLICAS)
        .ok_or_else(|| invalid("`replicas` must be a whole number from 0 to 16"))?;
    if n > 0 && !matches!(publish.target, Target::Queue(_)) {
        return Err(invalid("`replicas` is for queue messages, not channels"));
    }
    Ok(u32::try_from(n).unwrap_or(0))
}

fn queue_rules(text: &str, publish: &Publish) -> Result<Option<QueueRules>, GatewayError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Create {
        #[serde(default)]
        maxreceives: u64,
        #[serde(default)]
        ttl: u64,
        deadletter: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        create: Option<serde_json::Value>,
    }
    let invalid = |detail: String| GatewayError::Invalid(detail);
    // The body already decoded as a publish, so it is a JSON object.
    let body: Body = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let Some(create) = body.create else {
        return Ok(None);
    };
    let Target::Queue(queue) = &publish.target else {
        return Err(invalid("`create` is for queues, not channels".into()));
    };
    let create: Create = serde_json::from_value(create).map_err(|e| {
        invalid(format!(
            "`create` must be {{\"maxreceives\"?: n, \"deadletter\"?: queue, \"ttl\"?: seconds}}: {e}"
        ))
    })?;
    let rules = QueueRules {
        max_receives: create.maxreceives,
        ttl: create.ttl,
        dead_letter: create.deadletter,
    };
    rules
        .validate(queue.as_str())
        .map_err(GatewayError::Engine)?;
    Ok(Some(rules))
}

/// Compares secrets without leaking, through timing, how long a matching prefix is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-key", b"secret-kez"));
        assert!(!constant_time_eq(b"secret-key", b"secret"));
    }
}
