//! JWT verification (HS256, RS256 or ES256, one per verifier) and HS256 issuing.
//!
//! [`JwtVerifier`] accepts exactly one algorithm, fixed when it is built: HS256 from a shared
//! secret, or RS256/ES256 picked from the type of a PEM public key. The header's `alg` is
//! compared with it *before* any cryptography, so `alg: none` and algorithm confusion (an
//! HS256 token "signed" with the RSA public key as its HMAC secret) are refused as
//! [`TokenError::WrongAlgorithm`]. jsonwebtoken is used only for the signature check; claims
//! are parsed and validated here so that the caller's clock is used (the crate has none) and
//! each failure maps to one [`TokenError`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::claims::Claims;
use super::{MAX_TOKEN_LEN, TokenError};

/// Clock skew tolerated on `exp` and `nbf`, in seconds, unless set with
/// [`JwtVerifier::with_leeway`].
pub const DEFAULT_LEEWAY_SECS: u64 = 5;

/// DER of the `prime256v1` (P-256) curve OID, as it appears in an EC public key.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The single algorithm a [`JwtVerifier`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (the default).
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, from an RSA public key.
    Rs256,
    /// ECDSA P-256 with SHA-256, from an EC P-256 public key.
    Es256,
}

impl JwtAlgorithm {
    /// The JOSE name, as in the header's `alg`: `"HS256"`, `"RS256"` or `"ES256"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    const fn jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that cannot be used to build a [`JwtVerifier`] (a configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An HS256 secret must not be empty.
    #[error("jwt secret is empty")]
    EmptySecret,
    /// The bytes are not a PEM block.
    #[error("jwt public key is not a PEM-encoded public key")]
    NotPem,
    /// A private key was given where the public key belongs.
    #[error("jwt public key is a private key; give the public key (openssl pkey -pubout)")]
    PrivateKey,
    /// A PEM key of a type this verifier does not support.
    #[error("unsupported jwt public key: {0}")]
    Unsupported(&'static str),
}

/// Verifies JWTs against one key and one algorithm.
///
/// ```
/// use wsmq_proto::token::{Claims, JwtVerifier, issue_hs256};
///
/// let verifier = JwtVerifier::hs256(b"secret")?.with_issuer("wsmq");
/// let mut claims = Claims::new("users/alice", 1_700_000_600);
/// claims.iss = Some("wsmq".into());
/// let token = issue_hs256(&claims, b"secret");
/// let verified = verifier.verify(&token, 1_700_000_000)?;
/// assert_eq!(verified.user_id(), "alice");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    /// The only algorithm accepted; fixed by the key type at construction.
    algorithm: JwtAlgorithm,
    /// The HMAC secret or public key; never printed.
    key: DecodingKey,
    /// Required `iss`, when configured.
    issuer: Option<String>,
    /// Audience that `aud` must contain, when configured.
    audience: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    leeway: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("key", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    ///
    /// # Errors
    ///
    /// [`KeyError::EmptySecret`] for an empty secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Self::new(
            JwtAlgorithm::Hs256,
            DecodingKey::from_secret(secret),
        ))
    }

    /// A verifier for a PEM public key: RS256 for an RSA key (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY`), ES256 for an EC P-256 key.
    ///
    /// # Errors
    ///
    /// [`KeyError::NotPem`], [`KeyError::PrivateKey`], or [`KeyError::Unsupported`] for other
    /// key types (other curves, Ed25519, certificates).
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::NotPem)?;
        let (label, der) = pem_block(text).ok_or(KeyError::NotPem)?;
        match label {
            l if l.ends_with("PRIVATE KEY") => Err(KeyError::PrivateKey),
            "RSA PUBLIC KEY" => rsa(pem),
            "PUBLIC KEY" => {
                if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                    let p256 = der.windows(P256_OID.len()).any(|w| w == P256_OID);
                    if !p256 {
                        return Err(KeyError::Unsupported("elliptic curve other than P-256"));
                    }
                    // Building the verifier parses the point, so a corrupt key fails here
                    // rather than on every token.
                    jsonwebtoken::crypto::verify("AA", b"", &key, Algorithm::ES256)
                        .map_err(|_| KeyError::NotPem)?;
                    Ok(Self::new(JwtAlgorithm::Es256, key))
                } else if DecodingKey::from_ed_pem(pem).is_ok() {
                    Err(KeyError::Unsupported("Ed25519"))
                } else {
                    rsa(pem)
                }
            }
            "CERTIFICATE" => Err(KeyError::Unsupported(
                "certificate; extract its key with openssl x509 -pubkey -noout",
            )),
            _ => Err(KeyError::NotPem),
        }
    }

    fn new(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        JwtVerifier {
            algorithm,
            key,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Requires `iss` to equal `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to be (or contain) `audience`. Without this, `aud` is not checked.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the clock skew tolerated on `exp` and `nbf` (default [`DEFAULT_LEEWAY_SECS`]).
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    /// The one algorithm this verifier accepts.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Verifies `token` at Unix time `now` (seconds) and returns its claims.
    ///
    /// Checks, in order: size and shape, header `alg` (exactly the configured one; `crit` is
    /// refused), signature, claims JSON (`exp` required), `exp` and `nbf` with leeway, `iss`
    /// and `aud` when configured, and a usable user id in `sub`. On success
    /// [`Claims::user`] cannot fail.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] for the first check that failed.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };

        let head: RawHeader = decode_part(header).ok_or(TokenError::Malformed("bad header"))?;
        if head.alg != self.algorithm.as_str() {
            return Err(TokenError::WrongAlgorithm);
        }
        if head.crit.is_some() {
            return Err(TokenError::Malformed("critical header extensions"));
        }

        let signed = &token[..header.len() + 1 + payload.len()];
        let alg = self.algorithm.jsonwebtoken();
        match jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &self.key, alg) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::BadSignature),
            Err(err) if matches!(err.kind(), ErrorKind::Base64(_)) => {
                return Err(TokenError::Malformed("bad signature encoding"));
            }
            Err(_) => return Err(TokenError::BadSignature),
        }

        let claims: Claims = decode_part(payload).ok_or(TokenError::Malformed("bad claims"))?;
        self.check(&claims, now)?;
        Ok(claims)
    }

    fn check(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        // RFC 7519: valid while now < exp, and from nbf on; both widened by the leeway.
        if now >= claims.exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(TokenError::BadIssuer);
        }
        if let Some(audience) = &self.audience
            && !claims
                .aud
                .as_ref()
                .is_some_and(|aud| aud.contains(audience))
        {
            return Err(TokenError::BadAudience);
        }
        claims.user().map(drop)
    }
}

/// Signs `claims` as an HS256 JWT with `secret` (for the CLI, dev mode and tests).
///
/// # Panics
///
/// Never in practice: HMAC accepts any key and the claims always serialize.
pub fn issue_hs256(claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

/// The header fields that matter for verification; others are ignored.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A base64url JSON part (header or claims). Both must be UTF-8 JSON (RFC 7515, 7519): check
/// that first, because `serde_json::from_slice` skips the strings of fields it ignores
/// without validating their UTF-8 (found by fuzzing, `fuzz/fuzz_targets/jwt_verify.rs`).
fn decode_part<T: DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    serde_json::from_str(text).ok()
}

fn rsa(pem: &[u8]) -> Result<JwtVerifier, KeyError> {
    let key = DecodingKey::from_rsa_pem(pem).map_err(|_| KeyError::NotPem)?;
    Ok(JwtVerifier::new(JwtAlgorithm::Rs256, key))
}

/// The label and DER body of the first PEM block in `text`.
fn pem_block(text: &str) -> Option<(&str, Vec<u8>)> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_and_end = &rest[label_end + "-----".len()..];
    let end = body_and_end.find("-----END ")?;
    let body: String = body_and_end[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    Some((label, der))
}
