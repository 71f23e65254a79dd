//! `{"op":"auth","token"}`: replace the session's JWT before it expires.
//!
//! The new token must verify (its user's revocation mark included), name the same user and,
//! on a JWT session, expire later than the current one; then the expiry timer (close 4001)
//! moves to the new `exp` and the new grants apply. A session admitted by access token does
//! not expire: it adopts the token's grants until the token's `exp`, then falls back to what
//! the access token alone allows. Either way, the subscriptions the grants in force no longer
//! allow are ended (see [`subscribe::end_unallowed`]).

use std::sync::Arc;

use wsmq_proto::{ErrorCode, Ref, ServerFrame, encode_server};

use super::{Reply, Session};
use crate::{auth::Via, session::subscribe};

/// Verifies and adopts the new token.
pub(super) async fn apply(session: &mut Session, token: &str, reference: Option<Ref>) -> Reply {
    let gateway = Arc::clone(&session.gateway);
    let identity = match gateway
        .auth
        .verify_jwt(token, gateway.engine.cluster.as_ref())
        .await
    {
        Ok(identity) => identity,
        Err(failure) => {
            gateway.metrics.auth_failure(failure.reason);
            let code = if failure.reason == "unavailable" {
                ErrorCode::Unavailable
            } else {
                ErrorCode::Forbidden
            };
            return Reply::error(
                reference,
                code,
                format!("token refused: {}", failure.reason),
            );
        }
    };
    if identity.user != session.identity.user {
        gateway.metrics.auth_failure("other_user");
        return Reply::error(reference, ErrorCode::Forbidden, "token is for another user");
    }
    if session.identity.via == Via::AccessToken {
        // The session still rests on its access token (which keeps it open until revoked);
        // what the JWT adds ends with the JWT.
        session.identity.grants = identity.grants;
        session.set_grants_expiry(identity.exp);
        return adopted(session, reference);
    }
    if let (Some(current), Some(new)) = (session.identity.exp, identity.exp)
        && new <= current
    {
        gateway.metrics.auth_failure("not_later");
        return Reply::error(
            reference,
            ErrorCode::Invalid,
            "token does not expire later than the current one",
        );
    }
    session.set_expiry(identity.exp);
    gateway.sessions.set_credential(
        session.identity.user.as_str(),
        session.registration,
        identity.credential(),
    );
    session.identity = identity;
    adopted(session, reference)
}

/// Answers `ok`, then ends what the new grants no longer allow (each with its own notice).
fn adopted(session: &mut Session, reference: Option<Ref>) -> Reply {
    session.send(encode_server(&ServerFrame::ok(reference)));
    subscribe::end_unallowed(session);
    Reply::Deferred
}
