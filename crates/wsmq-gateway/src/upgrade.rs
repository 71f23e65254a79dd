//! The WebSocket handshake: validate, authenticate, negotiate, answer 101, start the session.
//!
//! Authentication runs before the upgrade, so a refused client gets an HTTP 401 with a JSON
//! body (`{"error":"unauthorized","reason":"expired"}`) rather than a socket that closes
//! at once. A client offering subprotocol `wsmq.v1` gets it echoed and speaks the v1 dialect;
//! any other client speaks the legacy dialect of the original Node gateway.
//!
//! Upgraded sockets leave hyper's control, so the session is spawned on the shutdown tracker
//! with its own child cancellation token (see `session`).

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt, future::Either};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderMap, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tracing::{Instrument, debug, info, info_span};

use crate::{
    abort::ConnAbort,
    auth::Identity,
    http::{Body, json_response},
    outbound::Dialect,
    session,
    state::Gateway,
};

/// The v1 subprotocol name.
pub(crate) const SUBPROTOCOL: &str = "wsmq.v1";

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    header_has_token(req.headers(), header::UPGRADE, "websocket")
        && header_has_token(req.headers(), header::CONNECTION, "upgrade")
}

/// Handles an upgrade request on `/` or `/ws`.
pub(crate) async fn handle(
    mut req: Request<Incoming>,
    gateway: Arc<Gateway>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<Body> {
    let headers = req.headers();
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        let mut response = json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad_request", "reason": "unsupported websocket version (need 13)"}),
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad_request", "reason": "missing sec-websocket-key"}),
        );
    };
    let (identity, epoch) = match admit(&req, &gateway).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let dialect = if header_has_token(req.headers(), header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        Dialect::V1
    } else {
        Dialect::Legacy
    };
    let abort = req.extensions().get::<ConnAbort>().cloned();
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = socket_config(gateway.config.limits.max_frame);
    let span = info_span!("session", user = %identity.user, ?dialect);
    let session_gateway = Arc::clone(&gateway);
    // Chained rather than one `async` block: a block would keep what it captured (the
    // identity, the socket config) for the session's whole life, in every idle session's
    // task, while a chain holds each step's state only until the step is done.
    let upgraded_socket = on_upgrade.then(move |upgraded| async move {
        let io = TokioIo::new(upgraded?);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        Ok::<_, hyper::Error>(ws)
    });
    let session = upgraded_socket.then(move |ws| match ws {
        Ok(ws) => {
            let (sink, stream) = ws.split();
            Either::Left(session::run(
                sink,
                stream,
                session_gateway,
                identity,
                dialect,
                epoch,
                abort,
            ))
        }
        Err(err) => {
            debug!(cause = %err, "upgrade failed");
            Either::Right(std::future::ready(()))
        }
    });
    gateway
        .shutdown
        .spawn(session.map(move |()| drop(permit)).instrument(span));
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    if dialect == Dialect::V1 {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    response
}

/// Admits a client (a WebSocket handshake, or an SSE stream, which is admitted the same
/// way): its origin, the node not draining, its credential. Returns who it is and the session
/// registry's epoch read before the credential was checked, or the refusal to answer with.
pub(crate) async fn admit<B>(
    req: &Request<B>,
    gateway: &Gateway,
) -> Result<(Identity, u64), Response<Body>> {
    let path = req.uri().path();
    if !origin_allowed(req.headers(), &gateway.config.listen.allowed_origins) {
        gateway.metrics.auth_failure("origin");
        info!(path = %path, "handshake refused: origin not allowed");
        return Err(json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "forbidden", "reason": "origin"}),
        ));
    }
    if gateway.is_draining() {
        return Err(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "unavailable", "reason": "draining"}),
        ));
    }
    // Read before the credential is checked: a revocation seen from here on makes the session
    // re-check it once registered (see `state::SessionRegistry`).
    let epoch = gateway.sessions.epoch();
    let identity = authenticate(req, gateway).await?;
    Ok((identity, epoch))
}

/// Checks the request's credential (as the handshake does: `x-token`, `Authorization: Bearer`
/// or `?token=`, or an access token); the refusal is the handshake's too.
pub(crate) async fn authenticate<B>(
    req: &Request<B>,
    gateway: &Gateway,
) -> Result<Identity, Response<Body>> {
    let path = req.uri().path();
    match gateway
        .auth
        .authenticate(req.headers(), req.uri(), gateway.engine.cluster.as_ref())
        .await
    {
        Ok(identity) => Ok(identity),
        // A credential that could not be checked (the registry or the revocation marks did not
        // answer) is not let in, but it is not a wrong credential either: 503, so that clients
        // retry rather than ask their user for a new token.
        Err(failure) if failure.reason == "unavailable" => {
            gateway.metrics.auth_failure(failure.reason);
            info!(path = %path, "handshake refused: credentials cannot be checked now");
            Err(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "unavailable", "reason": "credentials_unchecked"}),
            ))
        }
        Err(failure) => {
            gateway.metrics.auth_failure(failure.reason);
            info!(path = %path, reason = failure.reason, "handshake refused");
            Err(json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "unauthorized", "reason": failure.reason}),
            ))
        }
    }
}

/// Whether the request's `Origin` is allowed: always with an empty allow-list, and for
/// clients that send none (browsers always do; other clients are not what a cross-site page
/// can abuse); else only an origin of the list (compared without case).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin.to_str().is_ok_and(|origin| {
            let origin = origin.trim().trim_end_matches('/');
            allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
        }),
    }
}

/// Per-socket buffers sized for many mostly idle sessions.
///
/// tungstenite's defaults reserve a 128 KiB read buffer per socket and zero-fill it on
/// the first read, which alone made an idle session cost ~150 KiB of RSS. Client frames
/// are small (an ack is about 100 bytes), so a read takes a handful of them; a larger
/// frame makes the buffer grow to what it needs. The write side batches frames until a
/// flush or `WRITE_BUFFER` bytes, so a burst of deliveries still leaves in a few syscalls.
fn socket_config(max_frame: usize) -> WebSocketConfig {
    const READ_BUFFER: usize = 512;
    const WRITE_BUFFER: usize = 16 * 1024;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// Whether a comma-separated header contains `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
