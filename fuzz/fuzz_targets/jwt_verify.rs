//! Fuzzes JWT verification with an HS256 secret (`JwtVerifier::verify`).
//!
//! The first byte picks the mode. Even: the rest is the token text, as a client sends it in
//! `x-token` (exercises the split, base64 and header checks; the fuzzer cannot forge the HMAC).
//! Odd: the rest is a header and a claims JSON separated by the first NUL byte (the header is
//! `{"alg":"HS256"}` when there is no NUL), base64url-encoded and *signed with the secret*, so
//! that the header, claims and time checks behind the signature are fuzzed as well.
//!
//! Properties: whatever verifies is not expired at `NOW` (within the leeway) and has a valid
//! user id; a header whose `alg` is not HS256 never verifies.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use wsmq_proto::token::DEFAULT_LEEWAY_SECS;
use wsmq_proto::{Claims, JwtVerifier, TokenError};

const SECRET: &[u8] = b"fuzz-jwt-secret";
/// A fixed "now", so that runs are reproducible.
const NOW: u64 = 1_700_000_000;

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| {
    JwtVerifier::hs256(SECRET)
        .unwrap()
        .with_issuer("wsmq")
        .with_audience("clients")
});
static KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            check(VERIFIER.verify(token, NOW), None);
        }
        return;
    }
    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&br#"{"alg":"HS256"}"#[..], rest),
    };
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &KEY, Algorithm::HS256)
        .expect("HMAC signing cannot fail");
    let token = format!("{signed}.{signature}");
    check(VERIFIER.verify(&token, NOW), Some(header));
});

fn check(result: Result<Claims, TokenError>, header: Option<&[u8]>) {
    let Ok(claims) = result else {
        return;
    };
    assert!(NOW < claims.exp.saturating_add(DEFAULT_LEEWAY_SECS));
    assert!(claims.user().is_ok());
    assert_eq!(claims.iss.as_deref(), Some("wsmq"));
    if let Some(header) = header {
        let header: serde_json::Value = serde_json::from_slice(header).expect("it verified");
        assert_eq!(header["alg"], "HS256");
    }
}
