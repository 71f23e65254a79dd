//! `GET /sse?queue=q&channel=c`: a Server-Sent Events stream, for clients whose WebSocket
//! upgrades are blocked and for pages that only listen (`EventSource`).
//!
//! Admitted exactly as a WebSocket handshake (`upgrade::admit`: origin, drain, the token
//! in `?token=` or `Authorization: Bearer`, the same refusal statuses and bodies), then
//! authorized for every queue and channel named before anything is subscribed, so a refusal
//! is an HTTP status rather than a stream that ends at once. The stream itself is a session
//! (`session::sse`). The query string carries the token, so only the path is ever logged.

use std::sync::Arc;

use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, info, info_span};
use wsmq_proto::{ChannelName, QueueName};

use crate::{
    abort::ConnAbort,
    error::GatewayError,
    http::{Body, error_response, json_response},
    session::sse::{self, StreamRequest},
    state::Gateway,
    upgrade,
};

/// Handles `GET /sse`.
pub(crate) async fn handle(
    req: Request<Incoming>,
    gateway: Arc<Gateway>,
    permit: Arc<OwnedSemaphorePermit>,
) -> Response<Body> {
    let (identity, epoch) = match upgrade::admit(&req, &gateway).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let mut request = match parse(&req) {
        Ok(request) => request,
        Err(err) => return error_response(&err),
    };
    let limit = gateway.config.limits.max_subscriptions;
    if request.queues.len() + request.channels.len() > limit {
        return error_response(&GatewayError::Invalid(format!(
            "too many subscriptions (limit {limit})"
        )));
    }
    let policy = &gateway.auth.policy;
    let refused = request
        .queues
        .iter()
        .find(|q| !policy.may_consume(&identity, q))
        .map(|q| format!("consume queue {q}"))
        .or_else(|| {
            request
                .channels
                .iter()
                .find(|c| !policy.may_subscribe(&identity, c))
                .map(|c| format!("subscribe to channel {c}"))
        });
    if let Some(what) = refused {
        info!("stream refused: may not {what}");
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "forbidden", "message": format!("you may not {what}")}),
        );
    }
    request.since = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(sse::parse_last_event_id);
    let abort = req.extensions().get::<ConnAbort>().cloned();
    let span = info_span!("stream", user = %identity.user);
    let opened = sse::open(
        Arc::clone(&gateway),
        identity,
        request,
        epoch,
        permit,
        abort,
    )
    .instrument(span)
    .await;
    match opened {
        Ok(body) => {
            let mut response = Response::new(body);
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // nginx buffers responses unless told otherwise, which would hold events back.
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            response
        }
        Err(err) => error_response(&err),
    }
}

/// The queues and channels the query names (`queue=` and `channel=`, each repeatable).
fn parse<B>(req: &Request<B>) -> Result<StreamRequest, GatewayError> {
    let mut request = StreamRequest::default();
    let query = req.uri().query().unwrap_or_default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "queue" => request
                .queues
                .push(QueueName::new(&*value).map_err(|e| GatewayError::Invalid(e.to_string()))?),
            "channel" => request
                .channels
                .push(ChannelName::new(&*value).map_err(|e| GatewayError::Invalid(e.to_string()))?),
            _ => {}
        }
    }
    if request.queues.is_empty() && request.channels.is_empty() {
        return Err(GatewayError::Invalid(
            "name at least one queue= or channel= to stream".into(),
        ));
    }
    Ok(request)
}
