//! HTTP response helpers shared by the routes, the handshake and the demo.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Response, StatusCode,
    header::{self, HeaderValue},
};
use serde_json::json;

use crate::error::GatewayError;

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
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
