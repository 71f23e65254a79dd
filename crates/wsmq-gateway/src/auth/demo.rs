//! Demo tokens kept apart from real ones (`--demo` with `--demo-secret`).
//!
//! `POST /demo/token` gives anyone a token for any name. Signed with the production secret,
//! such a token would be a real token for any real user. With `--demo-secret` the demo signs
//! with that secret instead, for audience [`AUDIENCE`], and only for users named
//! `demo-NAME`; this node admits such a token only for a `demo-` user and with the fixed
//! [`grants`] (whatever its claims say), and refuses real credentials of `demo-` users, so
//! the two kinds of users cannot meet in one name. Without `--demo-secret`, `--demo` is only
//! allowed when no production key is configured (see `config`), and the demo signs with the
//! run's random secret.

use wsmq_proto::{Grants, JwtVerifier};

use super::{AuthFailure, Identity, jwt};
use crate::config::{DEMO_USER_PREFIX, Secret};

/// The `aud` of demo tokens signed with `--demo-secret`.
pub(crate) const AUDIENCE: &str = "wsmq-demo";

/// What a demo user may do beyond its own queue: chat in `room-*` channels and write to the
/// other demo users' own queues (`own_queue` is the `--own-queue` template), nothing of the
/// real users'.
pub(crate) fn grants(own_queue: &str) -> Grants {
    let demo_queues = own_queue.replace("{user}", &format!("{DEMO_USER_PREFIX}*"));
    Grants {
        consume: Vec::new(),
        subscribe: vec!["room-*".to_owned()],
        publish: vec![format!("queue:{demo_queues}"), "channel:room-*".to_owned()],
    }
}

/// Verifies demo tokens, and keeps real credentials out of demo names.
pub(crate) struct DemoTokens {
    /// HS256 with `--demo-secret`, audience [`AUDIENCE`].
    verifier: JwtVerifier,
    /// What every demo identity is granted.
    grants: Grants,
}

impl DemoTokens {
    /// The verifier of tokens signed with `secret`, for users whose own queues follow
    /// `own_queue`.
    pub(crate) fn new(secret: &Secret, own_queue: &str) -> Result<DemoTokens, String> {
        let verifier = JwtVerifier::hs256(secret.expose().as_bytes())
            .map_err(|e| e.to_string())?
            .with_audience(AUDIENCE);
        Ok(DemoTokens {
            verifier,
            grants: grants(own_queue),
        })
    }

    /// A demo token's identity: a `demo-` user with the demo grants.
    pub(crate) fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthFailure> {
        let mut identity = jwt::verify(&self.verifier, token, now)?;
        if !is_demo_user(identity.user.as_str()) {
            return Err(AuthFailure {
                reason: "bad_claims",
            });
        }
        identity.grants = Some(self.grants.clone());
        Ok(identity)
    }
}

/// Whether `user` is in the demo's part of the user names.
pub(crate) fn is_demo_user(user: &str) -> bool {
    user.starts_with(DEMO_USER_PREFIX)
}

/// Refuses a real credential for a demo name (reason `reserved_user`).
pub(crate) fn screen_real(identity: Identity) -> Result<Identity, AuthFailure> {
    if is_demo_user(identity.user.as_str()) {
        return Err(AuthFailure {
            reason: "reserved_user",
        });
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users_may_write_only_to_demo_users_own_queues() {
        assert_eq!(grants("{user}").publish[0], "queue:demo-*");
        assert_eq!(grants("inbox-{user}").publish[0], "queue:inbox-demo-*");
        assert!(is_demo_user("demo-alice") && !is_demo_user("alice"));
    }
}
