//! The browser chat demo (`serve --demo`) and the JavaScript client.
//!
//! | route | answer | when |
//! |---|---|---|
//! | `GET /client/wsmq.js` | the dependency-free ES module client ([`docs/client.md`]) | always |
//! | `GET /demo` | the chat page | `--demo` |
//! | `GET /demo/demo.css`, `/demo/demo.js` | its style and script | `--demo` |
//! | `POST /demo/token` | a 1 h JWT for any user name ([`token`]) | `--demo` |
//!
//! The files live in `crates/wsmq-gateway/static/` and are embedded with `include_str!`, so
//! the binary serves them with no build step and no files beside it. The token endpoint hands
//! anyone a token for any name: it exists only with `--demo`, only on the public port, and
//! the gateway says at start how its tokens are kept apart from real ones (`auth::demo`).
//!
//! [`docs/client.md`]: https://github.com/wsmq/wsmq/blob/main/docs/client.md

pub(crate) mod token;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response,
    body::Incoming,
    header::{self, HeaderValue},
};

use crate::{http::Body, state::Gateway};

/// The client library.
const WSMQ_JS: &str = include_str!("../../static/wsmq.js");
/// The chat page.
const DEMO_HTML: &str = include_str!("../../static/demo.html");
/// The chat page's style.
const DEMO_CSS: &str = include_str!("../../static/demo.css");
/// The chat page's script (imports `/client/wsmq.js`).
const DEMO_JS: &str = include_str!("../../static/demo.js");

/// The content security policy of the demo page: its own scripts and styles only, and
/// WebSockets (and token refreshes) to any node given in `?nodes=`.
const DEMO_CSP: &str = "default-src 'self'; connect-src 'self' ws: wss: http: https:; \
                        img-src 'self' data:; frame-ancestors 'none'";

/// Whether `path` is one of this module's routes on this node.
pub(crate) fn serves(gateway: &Gateway, path: &str) -> bool {
    path == "/client/wsmq.js"
        || (gateway.config.demo && (path == "/demo" || path.starts_with("/demo/")))
}

/// Answers a request for which [`serves`] is true.
pub(crate) async fn handle(req: Request<Incoming>, gateway: &Gateway) -> Response<Body> {
    let method = req.method().clone();
    match (method, req.uri().path()) {
        (Method::GET, "/client/wsmq.js") => asset(WSMQ_JS, "text/javascript; charset=utf-8"),
        (Method::GET, "/demo" | "/demo/") => {
            let mut response = asset(DEMO_HTML, "text/html; charset=utf-8");
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DEMO_CSP),
            );
            response
        }
        (Method::GET, "/demo/demo.css") => asset(DEMO_CSS, "text/css; charset=utf-8"),
        (Method::GET, "/demo/demo.js") => asset(DEMO_JS, "text/javascript; charset=utf-8"),
        (Method::POST, "/demo/token") => token::handle(req, gateway).await,
        (Method::OPTIONS, "/demo/token") => token::preflight(),
        _ => crate::http::not_found(),
    }
}

/// Logs, once at start, that this node hands out tokens to anyone.
pub(crate) fn warn_at_start(gateway: &Gateway) {
    if gateway.config.demo {
        if gateway.config.auth.demo_secret.is_some() {
            tracing::warn!(
                "--demo: POST /demo/token gives anyone a token signed with --demo-secret, for \
                 users demo-NAME only; real credentials of demo-* users are refused here"
            );
        } else {
            tracing::warn!(
                "--demo: POST /demo/token gives anyone a token for any user name, signed with \
                 this run's random secret; never run --demo in production"
            );
        }
        // 0.0.0.0 is where the node listens, not an address to open.
        let addr = gateway.addr;
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        tracing::info!("demo chat page: http://{host}/demo");
    }
}

/// A static file; revalidated on each load so a new binary's files show at once.
fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_opens_with_a_comment_saying_what_it_is() {
        assert!(WSMQ_JS.starts_with("//"));
        assert!(DEMO_JS.starts_with("//"));
        assert!(DEMO_CSS.starts_with("/*"));
        assert!(DEMO_HTML.starts_with("<!--"));
        assert!(DEMO_HTML.contains("/demo/demo.js"));
        assert!(DEMO_JS.contains("/client/wsmq.js"));
    }
}
