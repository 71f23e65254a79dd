//! Fuzzes `tokens2` access tokens with a fixed secret: `AccessToken::parse` and
//! `decrypt_access_token` on any text a client may put in `x-access-token`, and on the
//! encryption of arbitrary plaintext, so that the JSON and user-id handling behind the cipher
//! is reached too (random hex decrypts to noise that is almost never JSON).
//!
//! Properties: decryption inverts encryption; a parsed token has a valid, non-empty user id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsmq_proto::token::{MAX_TOKEN_LEN, decrypt_access_token, encrypt_access_token};
use wsmq_proto::{AccessToken, UserId};

const SECRET: &[u8] = b"fuzz-access-token-secret";

fuzz_target!(|data: &[u8]| {
    // The raw header value.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(plaintext) = decrypt_access_token(SECRET, text) {
            assert_eq!(
                encrypt_access_token(SECRET, &plaintext),
                text.to_ascii_lowercase()
            );
        }
        check(AccessToken::parse(SECRET, text));
    }

    // The bytes as plaintext, encrypted as an issuer would.
    let token = encrypt_access_token(SECRET, data);
    let decryptable = !data.is_empty() && token.len() <= MAX_TOKEN_LEN;
    assert_eq!(
        decrypt_access_token(SECRET, &token).ok().as_deref(),
        decryptable.then_some(data)
    );
    check(AccessToken::parse(SECRET, &token));
});

fn check(parsed: Result<AccessToken, wsmq_proto::TokenError>) {
    if let Ok(token) = parsed {
        assert!(UserId::new(token.user_id.as_str()).is_ok());
        assert!(token.claims.is_object());
    }
}
