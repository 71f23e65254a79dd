//! Authentication before the upgrade, and the identity a session runs as.
//!
//! A handshake is admitted by a JWT ([`jwt`]: `x-token`, `Authorization: Bearer`, or query
//! `token`) or by a `tokens2` access token ([`access_token`]: `x-access-token` or query
//! `access_token`, accepted only while registered for its user). A request carrying both is
//! admitted if either one is good: legacy clients send the pair. Failures become HTTP 401
//! with `{"error":"unauthorized","reason":…}`; [`authz`] decides what an identity may do.
//!
//! Tokens, secrets and query strings are never logged.

pub(crate) mod access_token;
pub(crate) mod authz;
pub(crate) mod demo;
pub(crate) mod jwt;

use hyper::{HeaderMap, Uri};
use wsmq_proto::{Claims, Grants, JwtVerifier, UserId, token::issue_hs256};

use crate::{
    clock,
    config::{Config, Secret},
    engine::ClusterState,
    error::GatewayError,
};

pub(crate) use self::authz::Policy;

/// Lifetime of the JWT handed to a session admitted by access token.
const SESSION_TOKEN_TTL_SECS: u64 = 3600;

/// Who a session runs as.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The user id (`sub` without `users/`, or the access token's `userId`/`_id`).
    pub user: UserId,
    /// The `wsmq` grants claim, if any.
    pub grants: Option<Grants>,
    /// When the credential expires, Unix seconds (`None`: until revoked).
    pub exp: Option<u64>,
    /// Which credential admitted it.
    pub via: Via,
}

/// The kind of credential that admitted a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// A verified JWT.
    Jwt,
    /// A registered tokens2 access token.
    AccessToken,
}

/// Why a handshake was refused; `reason` is a fixed snake_case label (metrics, 401 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthFailure {
    /// `missing_token`, `expired`, `bad_signature`, `unregistered`, …
    pub reason: &'static str,
}

/// Verifies credentials and issues session tokens.
pub(crate) struct Authenticator {
    /// JWT verifier (HS256 with the secret, or RS256/ES256 with the public key).
    verifier: JwtVerifier,
    /// HS256 secret to sign fresh session tokens; `None` when only a public key is
    /// configured (then the welcome frame carries `token: null`).
    issuing_secret: Option<Secret>,
    /// Key of access tokens.
    access_secret: Secret,
    /// Authorization rules.
    pub policy: Policy,
    /// Demo tokens with their own secret (`--demo-secret`); real credentials of demo users
    /// are then refused.
    demo: Option<demo::DemoTokens>,
}

impl Authenticator {
    /// Builds the verifier from the configuration.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Config`] when the key is unusable.
    pub(crate) fn new(config: &Config) -> Result<Authenticator, GatewayError> {
        let jwt = &config.auth.jwt;
        let (verifier, issuing_secret) = match &jwt.public_key_pem {
            Some(pem) => (
                JwtVerifier::from_public_key_pem(pem.as_bytes())
                    .map_err(|e| GatewayError::Config(format!("--jwt-public-key: {e}")))?,
                None,
            ),
            None => (
                JwtVerifier::hs256(jwt.secret.expose().as_bytes())
                    .map_err(|e| GatewayError::Config(format!("--jwt-secret: {e}")))?,
                Some(jwt.secret.clone()),
            ),
        };
        let verifier = match &jwt.issuer {
            Some(iss) => verifier.with_issuer(iss),
            None => verifier,
        };
        let verifier = match &jwt.audience {
            Some(aud) => verifier.with_audience(aud),
            None => verifier,
        };
        let demo = match &config.auth.demo_secret {
            Some(secret) if config.demo => Some(
                demo::DemoTokens::new(secret, &config.auth.own_queue)
                    .map_err(|e| GatewayError::Config(format!("--demo-secret: {e}")))?,
            ),
            _ => None,
        };
        Ok(Authenticator {
            verifier,
            issuing_secret,
            access_secret: config.auth.access_token_secret.clone(),
            policy: Policy::new(&config.auth.own_queue, config.auth.open),
            demo,
        })
    }

    /// Authenticates a handshake from its headers and query.
    ///
    /// # Errors
    ///
    /// The [`AuthFailure`] to answer 401 with.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        registry: &dyn ClusterState,
    ) -> Result<Identity, AuthFailure> {
        let jwt = jwt::from_request(headers, uri);
        let access = access_token::from_request(headers, uri);
        let jwt_result = jwt.map(|token| self.verify_jwt(&token));
        if let Some(Ok(identity)) = jwt_result {
            return Ok(identity);
        }
        if let Some(token) = access {
            let result = access_token::verify(&self.access_secret, &token, registry)
                .await
                .and_then(|identity| self.screen(identity));
            // When both were sent and both fail, the JWT's reason is the more useful one.
            return match (result, jwt_result) {
                (Ok(identity), _) => Ok(identity),
                (Err(_), Some(Err(jwt_failure))) => Err(jwt_failure),
                (Err(failure), _) => Err(failure),
            };
        }
        match jwt_result {
            Some(Err(failure)) => Err(failure),
            _ => Err(AuthFailure {
                reason: "missing_token",
            }),
        }
    }

    /// Verifies a JWT now (handshakes and the `auth` op).
    ///
    /// # Errors
    ///
    /// The reason it was refused.
    pub(crate) fn verify_jwt(&self, token: &str) -> Result<Identity, AuthFailure> {
        let now = clock::unix_secs();
        let real = jwt::verify(&self.verifier, token, now);
        match (&self.demo, real) {
            (None, real) => real,
            (Some(_), Ok(identity)) => self.screen(identity),
            (Some(demo), Err(failure)) => demo.verify(token, now).map_err(|_| failure),
        }
    }

    /// A real credential's identity, unless its user name belongs to the demo.
    fn screen(&self, identity: Identity) -> Result<Identity, AuthFailure> {
        match self.demo {
            Some(_) => demo::screen_real(identity),
            None => Ok(identity),
        }
    }

    /// A fresh HS256 JWT for `user` (handed to sessions admitted by access token).
    pub(crate) fn issue_session_token(&self, user: &UserId) -> Option<String> {
        let secret = self.issuing_secret.as_ref()?;
        let now = clock::unix_secs();
        let mut claims = Claims::new(user.as_str(), now + SESSION_TOKEN_TTL_SECS);
        claims.iat = Some(now);
        Some(issue_hs256(&claims, secret.expose().as_bytes()))
    }

    /// A JWT for `user` valid for `ttl_secs`, signed with the HS256 secret (the demo token).
    pub(crate) fn issue_token(&self, user: &str, ttl_secs: u64) -> Option<String> {
        let secret = self.issuing_secret.as_ref()?;
        let now = clock::unix_secs();
        let mut claims = Claims::new(user, now + ttl_secs);
        claims.iat = Some(now);
        Some(issue_hs256(&claims, secret.expose().as_bytes()))
    }
}

/// The value of query parameter `name`, percent-decoded (`application/x-www-form-urlencoded`,
/// as browsers encode it). Used for `token` and `access_token`; the query string itself is
/// never logged.
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        let uri: Uri = "/ws?a=1&token=abc%2Edef&access_token=00ff".parse().unwrap();
        assert_eq!(query_param(&uri, "token").as_deref(), Some("abc.def"));
        assert_eq!(query_param(&uri, "access_token").as_deref(), Some("00ff"));
        assert_eq!(query_param(&uri, "missing"), None);
        let uri: Uri = "/?token=50%".parse().unwrap();
        assert_eq!(query_param(&uri, "token").as_deref(), Some("50%"));
    }
}
