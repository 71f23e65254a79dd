//! Tokens: known-answer and live Node interop for `tokens2` access tokens, and JWT verification
//! (HS256/RS256/ES256, time claims, issuer/audience, `alg: none`, algorithm confusion).
//!
//! The PEM files under `tests/keys/` are throwaway test keys made once with `openssl genpkey`.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use wsmq_proto::token::{
    AccessToken, Audience, Claims, Grants, JwtAlgorithm, JwtVerifier, KeyError, MAX_TOKEN_LEN,
    TokenError, decrypt_access_token, encrypt_access_token, issue_access_token, issue_hs256,
};
use wsmq_proto::{ErrorCode, UserId};

use support::{Rng, run_node};

/// Known answers produced with Node 20:
/// `crypto.createCipher('aes-256-ctr', secret)`, `update(plaintext, 'utf8', 'hex') + final('hex')`.
const NODE_VECTORS: &[(&str, &str, &str)] = &[
    (
        "s3cret",
        r#"{"userId":"57c8f0e2a1b3c4d5e6f70812"}"#,
        "cda02d255401356b005601b49e3cbbd8ef943f263bb86d4f6e17b028ec97d63bfb94921a67",
    ),
    (
        "correct horse battery staple",
        r#"{"_id":"5a1b2c3d4e5f60718293a4b5","iat":1700000000,"name":"Zoë 😀"}"#,
        "66a530bb6a1130e4976982f82061962053cde1cdbc09ec3ac07b614fb6524a11784e4b1b80eb7abe\
         408f0613514172a44c4b309ffe678482174d66e0e62a31af24788aa62be5",
    ),
    // A non-ASCII secret: Node uses its UTF-8 bytes.
    (
        "pässwörd",
        r#"{"userId":"x"}"#,
        "af63d5ab47fe8d99f9f4adb360d8",
    ),
    (
        "k",
        r#"{"userId":"demo","iat":1700000000}"#,
        "4c145db5b153137f96a08cc953e4fc8441866d3ac125135895c6beec7d4e57263643",
    ),
];

const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const RSA_PUBLIC_PKCS1: &[u8] = include_bytes!("keys/rsa_public_pkcs1.pem");
const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC384_PUBLIC: &[u8] = include_bytes!("keys/ec384_public.pem");

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"test-secret";

// ---------------------------------------------------------------------------------------------
// Access tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn access_token_known_answers_from_node() {
    for &(secret, plaintext, token) in NODE_VECTORS {
        assert_eq!(
            encrypt_access_token(secret.as_bytes(), plaintext.as_bytes()),
            token
        );
        assert_eq!(
            decrypt_access_token(secret.as_bytes(), token).unwrap(),
            plaintext.as_bytes()
        );
        // Node writes lowercase; uppercase hex decodes the same.
        let upper = token.to_uppercase();
        assert_eq!(
            decrypt_access_token(secret.as_bytes(), &upper).unwrap(),
            plaintext.as_bytes()
        );
    }
}

#[test]
fn access_token_user_id_from_user_id_or_underscore_id() {
    let (secret, _, token) = NODE_VECTORS[0];
    let parsed = AccessToken::parse(secret.as_bytes(), token).unwrap();
    assert_eq!(parsed.user_id, "57c8f0e2a1b3c4d5e6f70812");

    let (secret, _, token) = NODE_VECTORS[1];
    let parsed = AccessToken::parse(secret.as_bytes(), token).unwrap();
    assert_eq!(parsed.user_id, "5a1b2c3d4e5f60718293a4b5");
    assert_eq!(parsed.claims["name"], "Zoë 😀");

    // userId wins over _id; a null userId falls back to _id; integers are written in decimal.
    let cases = [
        (r#"{"userId":"a","_id":"b"}"#, "a"),
        (r#"{"userId":null,"_id":"b"}"#, "b"),
        (r#"{"userId":42}"#, "42"),
    ];
    for (plaintext, user) in cases {
        let token = encrypt_access_token(SECRET, plaintext.as_bytes());
        assert_eq!(AccessToken::parse(SECRET, &token).unwrap().user_id, user);
    }
}

#[test]
fn issued_access_token_matches_node() {
    let (secret, _, token) = NODE_VECTORS[3];
    let user = UserId::new("demo").unwrap();
    assert_eq!(
        issue_access_token(secret.as_bytes(), &user, 1_700_000_000),
        token
    );
    let parsed = AccessToken::parse(secret.as_bytes(), token).unwrap();
    assert_eq!(parsed.claims["iat"], 1_700_000_000);
}

#[test]
fn malformed_access_tokens_are_typed_errors() {
    let malformed = |token: &str| match AccessToken::parse(SECRET, token) {
        Err(TokenError::Malformed(_)) => {}
        other => panic!("{token:.40}: {other:?}"),
    };
    malformed("");
    malformed("abc");
    malformed("zz");
    malformed("0g");
    malformed("ab cd");
    malformed(&"ab".repeat(MAX_TOKEN_LEN / 2 + 1));
    malformed("é");
    // Wrong secret: garbage plaintext.
    let (_, _, token) = NODE_VECTORS[0];
    malformed(token);
    // Not JSON, not an object, bad user id types and values.
    for plaintext in [
        "hello",
        "[1,2]",
        "\"57c8\"",
        r#"{"userId":1.5}"#,
        r#"{"userId":-3}"#,
        r#"{"userId":{"$oid":"x"}}"#,
        r#"{"userId":"a\nb"}"#,
    ] {
        malformed(&encrypt_access_token(SECRET, plaintext.as_bytes()));
    }
    for plaintext in ["{}", r#"{"userId":""}"#, r#"{"name":"x","_id":null}"#] {
        let token = encrypt_access_token(SECRET, plaintext.as_bytes());
        assert_eq!(
            AccessToken::parse(SECRET, &token),
            Err(TokenError::MissingSubject)
        );
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng::from_env();
    for _ in 0..2_000 {
        let len = rng.below(80);
        let token: String = (0..len)
            .map(|_| char::from(b"0123456789abcdefABCDEFxyz {}\"\\"[rng.below(30)]))
            .collect();
        let _ = AccessToken::parse(SECRET, &token);
        let _ = JwtVerifier::hs256(SECRET).unwrap().verify(&token, NOW);
    }
}

/// Live check against Node's own `createCipher`/`createDecipher` with fresh random data.
#[test]
fn access_tokens_interoperate_with_live_node() {
    const ENCRYPT: &str = "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{\
        const i=JSON.parse(d);const c=require('crypto').createCipher('aes-256-ctr',i.secret);\
        process.stdout.write(c.update(i.plaintext,'utf8','hex')+c.final('hex'));});";
    const DECRYPT: &str = "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{\
        const i=JSON.parse(d);const c=require('crypto').createDecipher('aes-256-ctr',i.secret);\
        process.stdout.write(c.update(i.token,'hex','utf8')+c.final('utf8'));});";

    let mut rng = Rng::from_env();
    for round in 0..8 {
        let mut secret = rng.tricky_string(40).replace('\0', "");
        if secret.is_empty() {
            secret.push('s');
        }
        let plaintext = serde_json::json!({
            "userId": format!("{:024x}", rng.next_u64()),
            "note": rng.tricky_string(200),
            "iat": rng.next_u64() >> 30,
        })
        .to_string();

        // (a) Node encrypts, Rust decrypts.
        let input = serde_json::json!({ "secret": secret, "plaintext": plaintext }).to_string();
        let Some(token) = run_node(ENCRYPT, &input) else {
            return;
        };
        assert_eq!(
            token,
            encrypt_access_token(secret.as_bytes(), plaintext.as_bytes())
        );
        let decrypted = decrypt_access_token(secret.as_bytes(), &token).unwrap();
        assert_eq!(
            String::from_utf8(decrypted).unwrap(),
            plaintext,
            "round {round}"
        );

        // (b) Rust encrypts, Node decrypts.
        let user = UserId::new(format!("user-{round}-{}", rng.next_u64())).unwrap();
        let token = issue_access_token(secret.as_bytes(), &user, NOW);
        let input = serde_json::json!({ "secret": secret, "token": token }).to_string();
        let plaintext = run_node(DECRYPT, &input).expect("node ran a moment ago");
        let value: serde_json::Value = serde_json::from_str(&plaintext).unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "userId": user.as_str(), "iat": NOW })
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

fn hs() -> JwtVerifier {
    JwtVerifier::hs256(SECRET).unwrap()
}

fn claims(sub: &str) -> Claims {
    Claims::new(sub, NOW + 600)
}

/// A token with an arbitrary header and signature, for attacks the library would not make.
fn handcrafted(header: &str, claims: &Claims, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

#[test]
fn hs256_round_trip_strips_users_prefix_and_keeps_grants() {
    let mut c = claims("users/57c8f0e2");
    c.iat = Some(NOW);
    c.wsmq = Some(Grants {
        consume: vec!["jobs-*".into()],
        subscribe: vec!["prices:*".into()],
        publish: vec!["channel:chat".into()],
    });
    let token = issue_hs256(&c, SECRET);
    let verified = hs().verify(&token, NOW).unwrap();
    assert_eq!(verified, c);
    assert_eq!(verified.user_id(), "57c8f0e2");
    assert_eq!(verified.user().unwrap(), "57c8f0e2");
    assert_eq!(hs().algorithm(), JwtAlgorithm::Hs256);

    let plain = hs()
        .verify(&issue_hs256(&claims("alice"), SECRET), NOW)
        .unwrap();
    assert_eq!(plain.user_id(), "alice");
}

#[test]
fn exp_and_nbf_use_the_leeway() {
    let mut c = Claims::new("alice", NOW);
    let token = issue_hs256(&c, SECRET);
    // Default leeway 5 s: valid until exp + 5 (exclusive).
    assert!(hs().verify(&token, NOW + 4).is_ok());
    assert_eq!(hs().verify(&token, NOW + 5), Err(TokenError::Expired));
    assert_eq!(
        hs().with_leeway(0).verify(&token, NOW),
        Err(TokenError::Expired)
    );
    assert!(hs().with_leeway(0).verify(&token, NOW - 1).is_ok());
    assert!(hs().with_leeway(60).verify(&token, NOW + 59).is_ok());

    c.exp = NOW + 600;
    c.nbf = Some(NOW + 100);
    let token = issue_hs256(&c, SECRET);
    assert_eq!(hs().verify(&token, NOW + 94), Err(TokenError::NotYetValid));
    assert!(hs().verify(&token, NOW + 95).is_ok());
    assert_eq!(
        hs().with_leeway(0).verify(&token, NOW + 99),
        Err(TokenError::NotYetValid)
    );
    assert!(hs().with_leeway(0).verify(&token, NOW + 100).is_ok());
}

#[test]
fn exp_is_required() {
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let payload = r#"{"sub":"alice"}"#;
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = EncodingKey::from_secret(SECRET);
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256).unwrap();
    let token = format!("{signed}.{signature}");
    assert_eq!(
        hs().verify(&token, NOW),
        Err(TokenError::Malformed("bad claims"))
    );
}

#[test]
fn issuer_and_audience_when_configured() {
    let verifier = hs().with_issuer("wsmq").with_audience("gateway");
    let mut c = claims("alice");
    assert_eq!(
        verifier.verify(&issue_hs256(&c, SECRET), NOW),
        Err(TokenError::BadIssuer)
    );
    c.iss = Some("other".into());
    assert_eq!(
        verifier.verify(&issue_hs256(&c, SECRET), NOW),
        Err(TokenError::BadIssuer)
    );
    c.iss = Some("wsmq".into());
    assert_eq!(
        verifier.verify(&issue_hs256(&c, SECRET), NOW),
        Err(TokenError::BadAudience)
    );
    c.aud = Some(Audience::One("other".into()));
    assert_eq!(
        verifier.verify(&issue_hs256(&c, SECRET), NOW),
        Err(TokenError::BadAudience)
    );
    c.aud = Some(Audience::One("gateway".into()));
    assert!(verifier.verify(&issue_hs256(&c, SECRET), NOW).is_ok());
    c.aud = Some(Audience::Many(vec!["web".into(), "gateway".into()]));
    assert!(verifier.verify(&issue_hs256(&c, SECRET), NOW).is_ok());
    // Unconfigured: iss and aud are not checked.
    assert!(hs().verify(&issue_hs256(&c, SECRET), NOW).is_ok());
}

#[test]
fn alg_none_is_refused_by_every_verifier() {
    let c = claims("alice");
    let verifiers = [
        hs(),
        JwtVerifier::from_public_key_pem(RSA_PUBLIC).unwrap(),
        JwtVerifier::from_public_key_pem(EC_PUBLIC).unwrap(),
    ];
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let token = handcrafted(&header, &c, b"");
        for verifier in &verifiers {
            assert_eq!(
                verifier.verify(&token, NOW),
                Err(TokenError::WrongAlgorithm),
                "{alg}"
            );
        }
    }
    // A header without alg at all is malformed.
    let token = handcrafted(r#"{"typ":"JWT"}"#, &c, b"");
    assert_eq!(
        hs().verify(&token, NOW),
        Err(TokenError::Malformed("bad header"))
    );
}

#[test]
fn algorithm_confusion_is_refused() {
    let c = claims("mallory");
    let rs = JwtVerifier::from_public_key_pem(RSA_PUBLIC).unwrap();
    let es = JwtVerifier::from_public_key_pem(EC_PUBLIC).unwrap();

    // The classic attack: HS256 with the public key PEM as HMAC secret.
    for (verifier, public) in [(&rs, RSA_PUBLIC), (&es, EC_PUBLIC)] {
        let forged = sign(Algorithm::HS256, &EncodingKey::from_secret(public), &c);
        assert_eq!(
            verifier.verify(&forged, NOW),
            Err(TokenError::WrongAlgorithm)
        );
        // Same HMAC, header relabelled to the verifier's algorithm: the signature is wrong.
        let alg = verifier.algorithm().as_str();
        let mac = URL_SAFE_NO_PAD
            .decode(forged.rsplit('.').next().unwrap())
            .unwrap();
        let relabelled = handcrafted(&format!(r#"{{"alg":"{alg}"}}"#), &c, &mac);
        assert_eq!(
            verifier.verify(&relabelled, NOW),
            Err(TokenError::BadSignature)
        );
    }

    // Asymmetric tokens against the HS verifier, and across RS/ES.
    let rs_token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        &c,
    );
    let es_token = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        &c,
    );
    assert_eq!(hs().verify(&rs_token, NOW), Err(TokenError::WrongAlgorithm));
    assert_eq!(hs().verify(&es_token, NOW), Err(TokenError::WrongAlgorithm));
    assert_eq!(rs.verify(&es_token, NOW), Err(TokenError::WrongAlgorithm));
    assert_eq!(es.verify(&rs_token, NOW), Err(TokenError::WrongAlgorithm));
    // Same family, other algorithm: only the configured one is accepted.
    let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET), &c);
    assert_eq!(hs().verify(&hs512, NOW), Err(TokenError::WrongAlgorithm));
    let rs512 = sign(
        Algorithm::RS512,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        &c,
    );
    assert_eq!(rs.verify(&rs512, NOW), Err(TokenError::WrongAlgorithm));
}

#[test]
fn rs256_and_es256_verify_with_pem_public_keys() {
    let c = claims("users/bob");
    let rs = JwtVerifier::from_public_key_pem(RSA_PUBLIC).unwrap();
    assert_eq!(rs.algorithm(), JwtAlgorithm::Rs256);
    let token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        &c,
    );
    assert_eq!(rs.verify(&token, NOW).unwrap().user_id(), "bob");
    assert_eq!(
        rs.verify(&tamper(&token), NOW),
        Err(TokenError::BadSignature)
    );
    // The same key as `BEGIN RSA PUBLIC KEY` (PKCS#1) works too.
    let pkcs1 = JwtVerifier::from_public_key_pem(RSA_PUBLIC_PKCS1).unwrap();
    assert_eq!(pkcs1.algorithm(), JwtAlgorithm::Rs256);
    assert_eq!(pkcs1.verify(&token, NOW).unwrap().user_id(), "bob");

    let es = JwtVerifier::from_public_key_pem(EC_PUBLIC).unwrap();
    assert_eq!(es.algorithm(), JwtAlgorithm::Es256);
    let token = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        &c,
    );
    assert_eq!(es.verify(&token, NOW).unwrap().user_id(), "bob");
    assert_eq!(
        es.verify(&tamper(&token), NOW),
        Err(TokenError::BadSignature)
    );
    // Claims are still checked after a good signature.
    assert_eq!(es.verify(&token, NOW + 10_000), Err(TokenError::Expired));
}

/// Replaces the payload with one for another user, keeping header and signature.
fn tamper(token: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("users/admin")).unwrap());
    parts[1] = &payload;
    parts.join(".")
}

#[test]
fn bad_signatures_and_shapes() {
    let token = issue_hs256(&claims("alice"), SECRET);
    let other = JwtVerifier::hs256(b"other-secret").unwrap();
    assert_eq!(other.verify(&token, NOW), Err(TokenError::BadSignature));
    assert_eq!(
        hs().verify(&tamper(&token), NOW),
        Err(TokenError::BadSignature)
    );
    let mut flipped = token.clone().into_bytes();
    let at = flipped.len() - 10;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    assert_eq!(hs().verify(&flipped, NOW), Err(TokenError::BadSignature));
    let bad_b64 = format!("{}!!", &token[..token.len() - 2]);
    assert_eq!(
        hs().verify(&bad_b64, NOW),
        Err(TokenError::Malformed("bad signature encoding"))
    );

    for (token, reason) in [
        ("", "not three dot-separated parts"),
        ("a.b", "not three dot-separated parts"),
        ("a.b.c.d", "not three dot-separated parts"),
        ("!!.b.c", "bad header"),
        ("bm90IGpzb24.b.c", "bad header"),
    ] {
        assert_eq!(
            hs().verify(token, NOW),
            Err(TokenError::Malformed(reason)),
            "{token}"
        );
    }
    let huge = format!("{}.{}.x", "a".repeat(MAX_TOKEN_LEN), "b");
    assert_eq!(
        hs().verify(&huge, NOW),
        Err(TokenError::Malformed("too long"))
    );

    let crit = handcrafted(r#"{"alg":"HS256","crit":["exp"]}"#, &claims("a"), b"x");
    assert_eq!(
        hs().verify(&crit, NOW),
        Err(TokenError::Malformed("critical header extensions"))
    );
}

#[test]
fn missing_or_unusable_subject() {
    for sub in ["", "users/"] {
        let token = issue_hs256(&claims(sub), SECRET);
        assert_eq!(
            hs().verify(&token, NOW),
            Err(TokenError::MissingSubject),
            "{sub:?}"
        );
    }
    let token = issue_hs256(&claims("users/a\u{0}b"), SECRET);
    assert!(matches!(
        hs().verify(&token, NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn verifier_construction_errors() {
    assert_eq!(JwtVerifier::hs256(b"").unwrap_err(), KeyError::EmptySecret);
    assert_eq!(
        JwtVerifier::from_public_key_pem(RSA_PRIVATE).unwrap_err(),
        KeyError::PrivateKey
    );
    assert_eq!(
        JwtVerifier::from_public_key_pem(EC_PRIVATE).unwrap_err(),
        KeyError::PrivateKey
    );
    assert!(matches!(
        JwtVerifier::from_public_key_pem(EC384_PUBLIC).unwrap_err(),
        KeyError::Unsupported(_)
    ));
    assert_eq!(
        JwtVerifier::from_public_key_pem(b"not a key").unwrap_err(),
        KeyError::NotPem
    );
    let garbled = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert_eq!(
        JwtVerifier::from_public_key_pem(garbled).unwrap_err(),
        KeyError::NotPem
    );
}

#[test]
fn debug_output_hides_the_key() {
    let verifier = JwtVerifier::hs256(b"super-secret-value").unwrap();
    let debug = format!("{verifier:?}");
    assert!(!debug.contains("super-secret-value"), "{debug}");
    assert!(debug.contains("Hs256"));
}

#[test]
fn reasons_are_metric_labels_and_codes_are_forbidden() {
    let errors = [
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::BadSignature,
        TokenError::Malformed("x"),
        TokenError::WrongAlgorithm,
        TokenError::BadIssuer,
        TokenError::BadAudience,
        TokenError::MissingSubject,
    ];
    let reasons: Vec<&str> = errors.iter().map(|e| e.reason()).collect();
    assert_eq!(reasons, TokenError::REASONS);
    assert!(errors.iter().all(|e| e.code() == ErrorCode::Forbidden));
    assert_eq!(TokenError::Expired.to_string(), "token expired");
}
