//! The v1 dialect: a `welcome` frame first, then JSON ops, each answered `ok` or `error` with
//! the request's `ref` echoed.
//!
//! Decoding is `wsmq-proto`'s; a frame that does not decode gets an `error` frame with code
//! `invalid` (and the `ref`, when one could be read), never a crash or a silent drop.

use wsmq_proto::{ErrorCode, ServerFrame, decode_request, encode_server};

use super::{Session, ops};
use crate::auth::Via;

/// Sends the `welcome` frame. A session admitted by access token gets a fresh JWT in it.
pub(super) fn welcome(session: &Session) {
    let token = match session.identity.via {
        Via::AccessToken => session.identity.issued.and_then(|issued| {
            session
                .gateway
                .auth
                .issue_session_token(&session.identity.user, issued)
        }),
        Via::Jwt => None,
    };
    let frame = ServerFrame::Welcome {
        user: session.identity.user.clone(),
        node: session.gateway.config.node_id.clone(),
        token,
    };
    session.send(encode_server(&frame));
}

/// Handles one text frame.
pub(super) async fn on_text(session: &mut Session, text: &str) {
    match decode_request(text) {
        Ok(frame) => ops::dispatch(session, frame).await,
        Err(rejection) => {
            let frame = ServerFrame::error(
                rejection.reference,
                rejection.error.code(),
                rejection.error.to_string(),
            );
            session.send(encode_server(&frame));
        }
    }
}

/// Answers a binary frame: v1 is text only.
pub(super) fn on_binary(session: &Session) {
    let frame = ServerFrame::error(
        None,
        ErrorCode::Invalid,
        "binary frames are not supported; send JSON text frames",
    );
    session.send(encode_server(&frame));
}
