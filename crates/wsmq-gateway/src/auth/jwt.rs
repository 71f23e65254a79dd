//! JWT authentication: where the token is found and how a verified one becomes an identity.
//!
//! The token comes from header `x-token`, header `Authorization: Bearer …`, or query `token`
//! (browsers cannot set headers on a WebSocket). Verification is `wsmq-proto`'s
//! [`JwtVerifier`]: one algorithm fixed by the configured key (so `alg: none` and algorithm
//! confusion are refused), `exp`/`nbf` with a small leeway, `iss`/`aud` when configured.
//! On top of that, what revocation needs: a token may live at most
//! [`MAX_JWT_LIFETIME_SECS`] from its `iat`, and an `iat` in the future (beyond the leeway)
//! is refused, since such a token would pass every revocation mark set before that time.

use hyper::{HeaderMap, Uri, header};
use wsmq_proto::{
    JwtVerifier,
    token::{DEFAULT_LEEWAY_SECS, MAX_JWT_LIFETIME_SECS},
};

use super::{AuthFailure, Identity, Via, query_param};

/// The JWT of a request, if it carries one.
pub(crate) fn from_request(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(token) = headers.get("x-token").and_then(|v| v.to_str().ok()) {
        return Some(token.trim().to_owned());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    if let Some(token) = bearer {
        return Some(token.trim().to_owned());
    }
    query_param(uri, "token")
}

/// Verifies `token` at Unix time `now`.
///
/// # Errors
///
/// An [`AuthFailure`] whose reason is the token error's label (`expired`, `bad_signature`, …).
pub(crate) fn verify(
    verifier: &JwtVerifier,
    token: &str,
    now: u64,
) -> Result<Identity, AuthFailure> {
    let claims = verifier
        .verify(token, now)
        .map_err(|e| AuthFailure { reason: e.reason() })?;
    let user = claims
        .user()
        .map_err(|e| AuthFailure { reason: e.reason() })?;
    if let Some(iat) = claims.iat {
        if iat > now.saturating_add(DEFAULT_LEEWAY_SECS) {
            return Err(AuthFailure {
                reason: "issued_in_future",
            });
        }
        if claims.exp.saturating_sub(iat) > MAX_JWT_LIFETIME_SECS {
            return Err(AuthFailure {
                reason: "lifetime_too_long",
            });
        }
    }
    Ok(Identity {
        user,
        grants: claims.wsmq,
        exp: Some(claims.exp),
        via: Via::Jwt,
        issued: claims.iat,
        access_token: None,
    })
}

#[cfg(test)]
mod tests {
    use wsmq_proto::{Claims, token::issue_hs256};

    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn token_sources_in_order_of_preference() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/?token=q".parse().unwrap();
        assert_eq!(from_request(&headers, &uri).as_deref(), Some("q"));
        headers.insert(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert_eq!(from_request(&headers, &uri).as_deref(), Some("b"));
        headers.insert("x-token", "x".parse().unwrap());
        assert_eq!(from_request(&headers, &uri).as_deref(), Some("x"));
    }

    #[test]
    fn users_prefix_is_removed_and_failures_have_reasons() {
        let verifier = JwtVerifier::hs256(b"secret").unwrap();
        let token = issue_hs256(&Claims::new("users/57c8", NOW + 60), b"secret");
        let identity = verify(&verifier, &token, NOW).unwrap();
        assert_eq!(identity.user.as_str(), "57c8");
        assert_eq!(identity.exp, Some(NOW + 60));
        let expired = issue_hs256(&Claims::new("u", NOW - 600), b"secret");
        assert_eq!(
            verify(&verifier, &expired, NOW).unwrap_err().reason,
            "expired"
        );
        let forged = issue_hs256(&Claims::new("u", NOW + 60), b"other");
        assert_eq!(
            verify(&verifier, &forged, NOW).unwrap_err().reason,
            "bad_signature"
        );
    }

    #[test]
    fn lifetimes_beyond_the_revocation_horizon_and_future_iats_are_refused() {
        let verifier = JwtVerifier::hs256(b"secret").unwrap();
        let with = |iat: u64, exp: u64| {
            let mut claims = Claims::new("u", exp);
            claims.iat = Some(iat);
            verify(&verifier, &issue_hs256(&claims, b"secret"), NOW)
        };
        let longest = with(NOW, NOW + MAX_JWT_LIFETIME_SECS).unwrap();
        assert_eq!(longest.issued, Some(NOW));
        assert_eq!(
            with(NOW, NOW + MAX_JWT_LIFETIME_SECS + 1)
                .unwrap_err()
                .reason,
            "lifetime_too_long"
        );
        assert!(with(NOW + DEFAULT_LEEWAY_SECS, NOW + 60).is_ok());
        assert_eq!(
            with(NOW + DEFAULT_LEEWAY_SECS + 1, NOW + 60)
                .unwrap_err()
                .reason,
            "issued_in_future"
        );
        // Without iat there is nothing to bound: revocation marks refuse such tokens instead.
        let undated = issue_hs256(
            &Claims::new("u", NOW + 10 * MAX_JWT_LIFETIME_SECS),
            b"secret",
        );
        assert_eq!(verify(&verifier, &undated, NOW).unwrap().issued, None);
    }
}
