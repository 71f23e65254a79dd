//! HTTP response helpers shared by the routes, the handshake, the demo and the SSE streams.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Response, StatusCode,
    body::{Frame, SizeHint},
    header::{self, HeaderValue},
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::error::GatewayError;

/// The body of every response: all of it at once, or (SSE) chunks as a session writes them.
#[derive(Debug)]
pub(crate) enum Body {
    /// A body known in full.
    Full(Full<Bytes>),
    /// Chunks from a channel; the body ends when every sender is gone, and dropping it (the
    /// client left) closes the channel, which the sender sees at once.
    Stream(mpsc::Receiver<Bytes>),
}

impl Body {
    /// A body of `bytes`.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Full::new(bytes.into()))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::full(Bytes::new())
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(full) => Pin::new(full).poll_frame(cx),
            Body::Stream(rx) => rx
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": code, "message": …}` with the error's status; internal details are not shown.
pub(crate) fn error_response(err: &GatewayError) -> Response<Body> {
    json_response(
        err.status(),
        &json!({"error": err.code().as_str(), "message": err.public_message()}),
    )
}

/// 404 with `{"error":"not_found"}`.
pub(crate) fn not_found() -> Response<Body> {
    json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"}))
}
