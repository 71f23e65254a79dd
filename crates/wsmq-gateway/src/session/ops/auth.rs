//! `{"op":"auth","token"}`: replace the session's JWT before it expires.
//!
//! The new token must verify, name the same user and expire later than the current one;
//! then the expiry timer (close 4001) moves to the new `exp` and the new grants apply.

use wsmq_proto::{ErrorCode, Ref};

use super::{Reply, Session};

/// Verifies and adopts the new token.
pub(super) fn apply(session: &mut Session, token: &str, reference: Option<Ref>) -> Reply {
    let identity = match session.gateway.auth.verify_jwt(token) {
        Ok(identity) => identity,
        Err(failure) => {
            session.gateway.metrics.auth_failure(failure.reason);
            return Reply::error(
                reference,
                ErrorCode::Forbidden,
                format!("token refused: {}", failure.reason),
            );
        }
    };
    if identity.user != session.identity.user {
        session.gateway.metrics.auth_failure("other_user");
        return Reply::error(reference, ErrorCode::Forbidden, "token is for another user");
    }
    match (session.identity.exp, identity.exp) {
        (Some(current), Some(new)) if new <= current => {
            session.gateway.metrics.auth_failure("not_later");
            return Reply::error(
                reference,
                ErrorCode::Invalid,
                "token does not expire later than the current one",
            );
        }
        // A session admitted by access token does not expire; it keeps not expiring.
        (None, _) => {
            session.identity.grants = identity.grants;
            return Reply::ok(reference);
        }
        _ => {}
    }
    session.set_expiry(identity.exp);
    session.identity = identity;
    Reply::ok(reference)
}
