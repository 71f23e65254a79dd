//! The `tokens2` access token, byte-compatible with Node's
//! `crypto.createCipher('aes-256-ctr', secret)`.
//!
//! A token is the lowercase hex of AES-256-CTR ciphertext of a JSON object such as
//! `{"userId":"57c8…","iat":1700000000}`. Key and IV come from the secret by OpenSSL's
//! `EVP_BytesToKey` with MD5, one round and no salt: `D1 = MD5(secret)`,
//! `Di = MD5(Di-1 || secret)`, key = `D1 || D2`, IV = `D3`. Node converts a string secret to
//! UTF-8 bytes, so pass `secret.as_bytes()`.
//!
//! # Security
//!
//! The format has no integrity check: CTR ciphertext is malleable, so someone holding a token
//! can flip plaintext bits (for example turn their own user id into another of the same length)
//! without knowing the secret. A decrypted token must therefore only be trusted while the
//! **exact token string** is registered for the decrypted user (the gateway's
//! `SISMEMBER wsmq:access:{user} <token>`), never on decryption alone.
//!
//! The user id is taken from `userId`, else `_id`. Strings are used as they are; non-negative
//! integers are accepted and written in decimal (as `String(n)` in JavaScript would), because
//! apps with numeric ids emitted them unquoted; anything else is malformed.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::Value;

use super::{MAX_TOKEN_LEN, TokenError};
use crate::name::UserId;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// A decrypted, parsed access token. Not proof of identity until checked against Redis (see
/// the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The user named by `userId` or `_id`.
    pub user_id: UserId,
    /// The whole plaintext object.
    pub claims: Value,
}

impl AccessToken {
    /// Decrypts and parses a hex token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Malformed`] for bad hex, oversize input, or plaintext that is not a JSON
    /// object (which is also what a wrong secret produces); [`TokenError::MissingSubject`] when
    /// neither `userId` nor `_id` is present (or they are empty).
    pub fn parse(secret: &[u8], token: &str) -> Result<Self, TokenError> {
        let plaintext = decrypt_access_token(secret, token)?;
        let claims: Value = serde_json::from_slice(&plaintext)
            .map_err(|_| TokenError::Malformed("not json (wrong secret?)"))?;
        let Value::Object(object) = &claims else {
            return Err(TokenError::Malformed("not a json object"));
        };
        let id = match object.get("userId").filter(|v| !v.is_null()) {
            Some(id) => id,
            None => object
                .get("_id")
                .filter(|v| !v.is_null())
                .ok_or(TokenError::MissingSubject)?,
        };
        let id = match id {
            Value::String(s) if s.is_empty() => return Err(TokenError::MissingSubject),
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_u64() => n.to_string(),
            _ => return Err(TokenError::Malformed("user id is not a string or integer")),
        };
        let user_id = UserId::new(id).map_err(|_| TokenError::Malformed("user id is not valid"))?;
        Ok(AccessToken { user_id, claims })
    }
}

/// Encrypts `plaintext` with `secret` and returns lowercase hex, exactly as
/// `createCipher('aes-256-ctr', secret)` with `update(…, 'utf8', 'hex') + final('hex')`.
pub fn encrypt_access_token(secret: &[u8], plaintext: &[u8]) -> String {
    let mut buf = plaintext.to_vec();
    cipher(secret).apply_keystream(&mut buf);
    hex::encode(buf)
}

/// Decrypts a hex token (either case) to its plaintext bytes. No parsing, no validation of the
/// plaintext: a wrong secret yields garbage, not an error.
///
/// # Errors
///
/// [`TokenError::Malformed`] when the token is empty, longer than
/// [`MAX_TOKEN_LEN`], of odd length, or not hex.
pub fn decrypt_access_token(secret: &[u8], token: &str) -> Result<Vec<u8>, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Malformed("empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long"));
    }
    if !token.len().is_multiple_of(2) {
        return Err(TokenError::Malformed("odd-length hex"));
    }
    let mut buf = hex::decode(token).map_err(|_| TokenError::Malformed("not hex"))?;
    cipher(secret).apply_keystream(&mut buf);
    Ok(buf)
}

/// Issues a token for `user_id` with plaintext `{"userId":"…","iat":…}`. `iat` is the current
/// Unix time in seconds, supplied by the caller (this crate has no clock).
pub fn issue_access_token(secret: &[u8], user_id: &UserId, iat: u64) -> String {
    #[derive(Serialize)]
    struct Plaintext<'a> {
        #[serde(rename = "userId")]
        user_id: &'a str,
        iat: u64,
    }

    let plaintext = serde_json::to_vec(&Plaintext {
        user_id: user_id.as_str(),
        iat,
    })
    .expect("a struct of a string and an integer always serializes");
    encrypt_access_token(secret, &plaintext)
}

fn cipher(secret: &[u8]) -> Aes256Ctr {
    let (key, iv) = evp_bytes_to_key(secret);
    Aes256Ctr::new(&key.into(), &iv.into())
}

/// OpenSSL `EVP_BytesToKey(aes-256-ctr, md5, salt = NULL, secret, count = 1)`.
fn evp_bytes_to_key(secret: &[u8]) -> ([u8; 32], [u8; 16]) {
    let d1 = Md5::digest(secret);
    let d2 = Md5::new().chain_update(d1).chain_update(secret).finalize();
    let d3 = Md5::new().chain_update(d2).chain_update(secret).finalize();
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&d1);
    key[16..].copy_from_slice(&d2);
    (key, d3.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from `openssl enc -aes-256-ctr -md md5 -nosalt -pass pass:… -P`.
    #[test]
    fn key_derivation_matches_openssl() {
        let (key, iv) = evp_bytes_to_key(b"s3cret");
        assert_eq!(
            hex::encode_upper(key),
            "33E1B232A4E6FA0028A6670753749A17DEC80CC42207DF817B0D9C0475A113A2"
        );
        assert_eq!(hex::encode_upper(iv), "C52B69DC9F09BA0B00916133452C1DAF");
        let (key, iv) = evp_bytes_to_key(b"correct horse battery staple");
        assert_eq!(
            hex::encode_upper(key),
            "9CC2AE8A1BA7A93DA39B46FC1019C481F5EED4F36A1DE6859CAD92C665562831"
        );
        assert_eq!(hex::encode_upper(iv), "A898665FE1740C48A4C4D00D3B6DC17A");
    }
}
