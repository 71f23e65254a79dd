//! Regression tests for what the cargo-fuzz targets in `fuzz/` found (see docs/fuzzing.md);
//! one test per finding, named after what was wrong.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use wsmq_proto::token::{JwtVerifier, TokenError};

const SECRET: &[u8] = b"fuzz-jwt-secret";
const NOW: u64 = 1_700_000_000;

/// A token whose header and claims are these bytes, correctly signed with [`SECRET`].
fn signed(header: &[u8], claims: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(
        signed.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{signed}.{signature}")
}

/// Found by `jwt_verify` (crash-d9534e6e…): serde_json skips the strings of ignored fields
/// without checking their UTF-8, so a header with `"typ":"\xb2JWT"` verified although it is
/// not JSON text. Both parts must now be UTF-8 first.
#[test]
fn jwt_parts_that_are_not_utf8_are_malformed() {
    let verifier = JwtVerifier::hs256(SECRET).unwrap();
    let claims = br#"{"sub":"alice","exp":1700000600}"#;
    let good = signed(br#"{"alg":"HS256","typ":"JWT"}"#, claims);
    assert_eq!(verifier.verify(&good, NOW).unwrap().user_id(), "alice");

    let header = b"{\"alg\":\"HS256\",\"typ\":\"\xb2JWT\"}";
    assert_eq!(
        verifier.verify(&signed(header, claims), NOW),
        Err(TokenError::Malformed("bad header"))
    );
    let claims = b"{\"sub\":\"alice\",\"exp\":1700000600,\"note\":\"\xff\"}";
    assert_eq!(
        verifier.verify(&signed(br#"{"alg":"HS256"}"#, claims), NOW),
        Err(TokenError::Malformed("bad claims"))
    );
}
