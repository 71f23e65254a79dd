//! Authentication before the upgrade, and the identity a session runs as.
//!
//! A handshake is admitted by a JWT ([`jwt`]: `x-token`, `Authorization: Bearer`, or query
//! `token`) or by a `tokens2` access token ([`access_token`]: `x-access-token` or query
//! `access_token`, accepted only while registered for its user). A request carrying both is
//! admitted if either one is good: legacy clients send the pair. Failures become HTTP 401
//! with `{"error":"unauthorized","reason":…}`; [`authz`] decides what an identity may do.
//!
//! Revocation: a JWT is also checked against its user's revocation mark
//! (`wsmq:revoked:{user}`, see [`is_revoked`]), at the handshake and in the `auth` op, so a
//! revoked user's JWTs stop working everywhere at once, the ones this gateway minted included.
//! For that the mark must outlive every token issued before it: JWTs may live at most
//! [`MAX_JWT_LIFETIME_SECS`](wsmq_proto::token::MAX_JWT_LIFETIME_SECS) (`exp` − `iat`), and
//! the mark lives longer.
//!
//! Tokens, secrets and query strings are never logged.

pub(crate) mod access_token;
pub(crate) mod authz;
pub(crate) mod demo;
pub(crate) mod jwt;

use std::{fmt, sync::Arc};

use hyper::{HeaderMap, Uri};
use tracing::warn;
use wsmq_proto::{Audience, Claims, Grants, JwtVerifier, UserId, token::issue_hs256};

use crate::{
    clock,
    config::{Config, Secret},
    engine::{ClusterState, CredentialCheck, CredentialQuery},
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
    /// When the credential was issued, Unix seconds, as revocation marks compare it: a JWT's
    /// `iat` (`None` when it has none), or for an access token the engine's clock when it was
    /// found registered (the issue time of the session token handed out with it).
    pub issued: Option<u64>,
    /// The access token that admitted the session, whose registration the node re-checks;
    /// `None` for a JWT.
    pub access_token: Option<HeldToken>,
}

/// An access token (lowercase hex) a session keeps to re-check its registration. Its `Debug`
/// hides it, so that no log of a session or credential can show it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HeldToken(Arc<str>);

impl HeldToken {
    /// Keeps `token` (lowercase hex).
    pub(crate) fn new(token: &str) -> HeldToken {
        HeldToken(token.into())
    }

    /// The token.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HeldToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeldToken(***)")
    }
}

impl Identity {
    /// What the session's admission rests on, for the node's re-checks.
    pub(crate) fn credential(&self) -> Credential {
        match &self.access_token {
            Some(token) => Credential::AccessToken(token.clone()),
            None => Credential::Jwt(self.issued),
        }
    }
}

/// What an open session's admission rests on, as the node re-checks it against the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A JWT issued at this time (`iat`; `None`: it has none), checked against the user's
    /// revocation mark.
    Jwt(Option<u64>),
    /// An access token, which must stay registered.
    AccessToken(HeldToken),
}

impl Credential {
    /// The lookup that re-checks it.
    pub(crate) fn query<'a>(&'a self, user: &'a str) -> CredentialQuery<'a> {
        CredentialQuery {
            user,
            access_token: match self {
                Credential::Jwt(_) => None,
                Credential::AccessToken(token) => Some(token.as_str()),
            },
        }
    }

    /// Whether the records, as `check` read them, revoke it.
    pub(crate) fn is_revoked_by(&self, check: &CredentialCheck) -> bool {
        match self {
            Credential::Jwt(issued) => is_revoked(*issued, check.revoked_at),
            // The registry alone decides for access tokens: `token revoke` empties it, and a
            // token registered after a revocation is good even in the revocation's second.
            Credential::AccessToken(_) => check.registered != Some(true),
        }
    }
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
    /// `iss` and `aud` of the tokens this gateway mints: the ones it requires, so that they
    /// are accepted when they come back.
    issuer: Option<String>,
    audience: Option<String>,
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
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
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
        let jwt_result = match jwt {
            Some(token) => Some(self.verify_jwt(&token, registry).await),
            None => None,
        };
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

    /// Verifies a JWT now and checks it against its user's revocation mark (handshakes and
    /// the `auth` op).
    ///
    /// # Errors
    ///
    /// The reason it was refused: a token error's label, `revoked`, `reserved_user`, or
    /// `unavailable` when the mark cannot be read (a token that cannot be checked is not let
    /// in).
    pub(crate) async fn verify_jwt(
        &self,
        token: &str,
        registry: &dyn ClusterState,
    ) -> Result<Identity, AuthFailure> {
        let now = clock::unix_secs();
        let identity = match (&self.demo, jwt::verify(&self.verifier, token, now)) {
            (None, real) => real?,
            (Some(_), Ok(identity)) => self.screen(identity)?,
            (Some(demo), Err(failure)) => demo.verify(token, now).map_err(|_| failure)?,
        };
        let query = [CredentialQuery {
            user: identity.user.as_str(),
            access_token: None,
        }];
        match registry.check_credentials(&query).await {
            Ok(checks) => {
                let mark = checks.checks.first().and_then(|check| check.revoked_at);
                if is_revoked(identity.issued, mark) {
                    return Err(AuthFailure { reason: "revoked" });
                }
                Ok(identity)
            }
            Err(err) => {
                warn!(cause = %err, "cannot read the revocation mark");
                Err(AuthFailure {
                    reason: "unavailable",
                })
            }
        }
    }

    /// A real credential's identity, unless its user name belongs to the demo.
    fn screen(&self, identity: Identity) -> Result<Identity, AuthFailure> {
        match self.demo {
            Some(_) => demo::screen_real(identity),
            None => Ok(identity),
        }
    }

    /// A fresh HS256 JWT for a session admitted by access token, issued at `issued` (the
    /// engine's clock when the access token was found registered, so that any later
    /// revocation marks it).
    pub(crate) fn issue_session_token(&self, user: &UserId, issued: u64) -> Option<String> {
        self.sign(user.as_str(), issued, SESSION_TOKEN_TTL_SECS)
    }

    /// A JWT for `user` valid for `ttl_secs` from now, signed with the HS256 secret (the demo
    /// token).
    pub(crate) fn issue_token(&self, user: &str, ttl_secs: u64) -> Option<String> {
        self.sign(user, clock::unix_secs(), ttl_secs)
    }

    /// Signs a token for `user` issued at `iat` with the `iss`/`aud` the gateway requires.
    fn sign(&self, user: &str, iat: u64, ttl_secs: u64) -> Option<String> {
        let secret = self.issuing_secret.as_ref()?;
        let claims = minted_claims(
            user,
            iat,
            ttl_secs,
            self.issuer.as_deref(),
            self.audience.as_deref(),
        );
        Some(issue_hs256(&claims, secret.expose().as_bytes()))
    }
}

/// The claims of a token the gateway mints: `iat`, `exp` = `iat` + `ttl_secs`, and the
/// configured `iss` and `aud` (a gateway that requires them must accept its own tokens).
pub(crate) fn minted_claims(
    user: &str,
    iat: u64,
    ttl_secs: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Claims {
    let mut claims = Claims::new(user, iat.saturating_add(ttl_secs));
    claims.iat = Some(iat);
    claims.iss = issuer.map(str::to_owned);
    claims.aud = audience.map(|aud| Audience::One(aud.to_owned()));
    claims
}

/// Whether a credential issued at `issued` (Unix seconds; `None`: unknown) falls under the
/// revocation mark `mark`: issued at or before it, or of unknown age while a mark exists.
///
/// A token issued in the same second as the revocation is refused too: `iat` has one-second
/// resolution, and refusing is the side that cannot let a revoked token back in.
pub(crate) fn is_revoked(issued: Option<u64>, mark: Option<u64>) -> bool {
    match (mark, issued) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(mark), Some(issued)) => issued <= mark,
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
    fn a_mark_refuses_what_was_issued_at_or_before_it_and_what_has_no_date() {
        assert!(!is_revoked(Some(100), None));
        assert!(!is_revoked(None, None));
        assert!(is_revoked(Some(99), Some(100)));
        assert!(is_revoked(Some(100), Some(100)));
        assert!(!is_revoked(Some(101), Some(100)));
        assert!(is_revoked(None, Some(100)));
    }

    #[test]
    fn held_access_tokens_are_not_printed() {
        let credential = Credential::AccessToken(HeldToken::new("00ff"));
        assert_eq!(format!("{credential:?}"), "AccessToken(HeldToken(***))");
    }

    #[test]
    fn minted_tokens_carry_the_required_issuer_and_audience() {
        let claims = minted_claims("u", 100, 60, Some("wsmq"), Some("clients"));
        assert_eq!(
            (claims.iat, claims.exp, claims.iss.as_deref()),
            (Some(100), 160, Some("wsmq"))
        );
        assert_eq!(claims.aud, Some(Audience::One("clients".into())));
        let bare = minted_claims("u", 100, 60, None, None);
        assert_eq!((bare.iss, bare.aud), (None, None));
    }

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
