//! Token parsing and verification against HMAC, RSA, EC and Ed25519 keys (and a JWKS parsed
//! from the input): no panic for any input, and nothing verifies that was not signed by one of
//! the keys (the fuzzer cannot sign, so any success is a forgery).
#![no_main]

use std::sync::LazyLock;

use aws_lc_rs::{
    encoding::AsDer,
    signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use libfuzzer_sys::fuzz_target;
use portcullis::jose::{parse_jwks, peek_issuer, verify, Algorithm, Key, Validation};

static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
    let ed = Ed25519KeyPair::generate().expect("ed");
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    vec![
        Key::hmac(b"fuzz-secret-0123456789abcdefghijklmnop")
            .expect("hmac")
            .with_kid("h"),
        Key::from_spki_der(ec.public_key().as_der().expect("der").as_ref())
            .expect("ec key")
            .with_kid("e"),
        Key::from_spki_der(ed.public_key().as_der().expect("der").as_ref())
            .expect("ed key")
            .with_kid("d"),
        Key::from_spki_der(rsa.public_key().as_der().expect("der").as_ref())
            .expect("rsa key")
            .with_kid("r"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let text = String::from_utf8_lossy(data);
    let mut v = Validation::new(vec![
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ]);
    v.require_exp = false;
    let _ = peek_issuer(&text, 16 * 1024);
    assert!(
        verify(&text, keys, &v, 1_700_000_000).is_err(),
        "forged: {text:?}"
    );
    // The input as a key set: parsing never panics, and its keys never verify the input itself
    // unless the input is both a JWKS and a token (impossible: a JWKS is JSON, a token is not).
    if let Ok((jwks, _)) = parse_jwks(data, 100) {
        let _ = verify(&text, &jwks, &v, 1_700_000_000);
    }
});
