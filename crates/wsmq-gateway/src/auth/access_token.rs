//! Access-token authentication (the `tokens2` scheme).
//!
//! The token comes from header `x-access-token` or query `access_token`. It is hex of
//! AES-256-CTR ciphertext (key and IV from the secret by `EVP_BytesToKey`, as Node's
//! `crypto.createCipher` did); `wsmq-proto` decrypts it. Decrypting proves little on its own,
//! so a token is accepted only while it is registered for its user in the engine
//! (`wsmq:access:{user}`), which is what makes revocation possible.

use hyper::{HeaderMap, Uri};
use tracing::warn;
use wsmq_proto::AccessToken;

use super::{AuthFailure, HeldToken, Identity, Via, query_param};
use crate::{
    config::Secret,
    engine::{ClusterState, CredentialQuery},
};

/// The access token of a request, if it carries one.
pub(crate) fn from_request(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get("x-access-token")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .or_else(|| query_param(uri, "access_token"))
}

/// Decrypts `token` and checks that it is registered for its user.
///
/// The identity's `issued` is the engine's clock read just before the registry, so the session
/// token minted from it falls under any revocation that comes after this check.
///
/// # Errors
///
/// `malformed` (or another token reason) when it does not decrypt to a user,
/// `unregistered` when it is not (or no longer) registered, `unavailable` when the
/// registry cannot be read.
pub(crate) async fn verify(
    secret: &Secret,
    token: &str,
    registry: &dyn ClusterState,
) -> Result<Identity, AuthFailure> {
    let parsed = AccessToken::parse(secret.expose().as_bytes(), token)
        .map_err(|e| AuthFailure { reason: e.reason() })?;
    // The registry stores tokens as issued (lowercase hex).
    let normalized = token.to_ascii_lowercase();
    let query = [CredentialQuery {
        user: parsed.user_id.as_str(),
        access_token: Some(&normalized),
    }];
    let checked = registry.check_credentials(&query).await;
    let registered = checked.as_ref().map(|checks| {
        let registered = checks.checks.first().and_then(|check| check.registered);
        (registered == Some(true)).then_some(checks.now)
    });
    match registered {
        Ok(Some(now)) => Ok(Identity {
            user: parsed.user_id,
            grants: None,
            exp: None,
            via: Via::AccessToken,
            issued: Some(now),
            access_token: Some(HeldToken::new(&normalized)),
        }),
        Ok(None) => Err(AuthFailure {
            reason: "unregistered",
        }),
        Err(err) => {
            warn!(cause = %err, "cannot check the access-token registry");
            Err(AuthFailure {
                reason: "unavailable",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use wsmq_proto::{UserId, token::issue_access_token};

    use super::*;
    use crate::engine::memory::MemoryEngine;

    #[tokio::test]
    async fn only_registered_tokens_are_accepted() {
        let engine = MemoryEngine::new();
        let secret = Secret::new("s3cret");
        let user = UserId::new("57c8").unwrap();
        let token = issue_access_token(b"s3cret", &user, 1_700_000_000);
        let refused = verify(&secret, &token, engine.as_ref()).await.unwrap_err();
        assert_eq!(refused.reason, "unregistered");
        engine.register_access_token("57c8", &token);
        let identity = verify(&secret, &token, engine.as_ref()).await.unwrap();
        assert_eq!(
            (identity.user.as_str(), identity.via),
            ("57c8", Via::AccessToken)
        );
        assert_eq!(
            identity.access_token.as_ref().map(HeldToken::as_str),
            Some(token.as_str())
        );
        assert!(identity.issued.is_some());
        let garbage = verify(&secret, "zz", engine.as_ref()).await.unwrap_err();
        assert_eq!(garbage.reason, "malformed");
    }
}
