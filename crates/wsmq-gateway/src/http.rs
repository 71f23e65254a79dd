//! HTTP helpers shared by the routes, the handshake, the demo and the SSE streams: response
//! bodies and error answers, and reading a request body with bounds on its size and on the
//! time it takes to arrive.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
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

/// Why a request body was not read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the limit, in bytes (413).
    #[error("body over {0} bytes")]
    TooLarge(usize),
    /// Not all there within the deadline (408).
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    /// The client broke off, or the framing (chunked encoding) is broken (400).
    #[error("the body could not be read: {0}")]
    Broken(String),
}

impl BodyError {
    /// The answer: 413 or 400 as `{"error","message"}`, 408 as
    /// `{"error":"request_timeout",…}` with `connection: close`, since the rest of the body,
    /// if it ever comes, is not read.
    pub(crate) fn response(&self) -> Response<Body> {
        match self {
            BodyError::TooLarge(_) => error_response(&GatewayError::TooLarge(self.to_string())),
            BodyError::Broken(_) => error_response(&GatewayError::Invalid(self.to_string())),
            BodyError::Timeout(_) => {
                let mut response = json_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &json!({"error": "request_timeout", "message": self.to_string()}),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
        }
    }
}

/// Reads a request body of at most `limit` bytes that arrives in full within `deadline` of
/// the call (for the routes, of the end of the headers).
///
/// hyper's header read timeout ends with the headers: without a deadline of its own, a body
/// that trickles in, or never ends, would hold the connection and its `--max-connections`
/// permit for good. The limit bounds what one request makes the node buffer.
///
/// # Errors
///
/// [`BodyError`], whose [`BodyError::response`] is the answer.
pub(crate) async fn read_body<B>(
    body: B,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(deadline, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(err)) => Err(BodyError::Broken(err.to_string())),
        Err(_) => Err(BodyError::Timeout(deadline)),
    }
}
