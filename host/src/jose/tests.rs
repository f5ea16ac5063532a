//! Unit tests for the rules in SECURITY.md "Tokens". Valid tokens are minted with
//! `jsonwebtoken` (ES512 with aws-lc-rs directly, which jsonwebtoken lacks); hostile tokens are
//! assembled by hand and, where it matters, carry a correct HMAC so that the rule under test is
//! the only reason for refusal.

use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use aws_lc_rs::{hmac, rsa};
use base64::Engine as _;
use serde_json::{json, Value};

use super::der::Der;
use super::key::verify_raw;
use super::*;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "portcullis-api";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixture {
    rsa: RsaKeyPair,
    rsa_pkcs1_private: Vec<u8>,
    rsa_spki: Vec<u8>,
    p256: EcdsaKeyPair,
    p256_pkcs8: Vec<u8>,
    p384: EcdsaKeyPair,
    p384_pkcs8: Vec<u8>,
    p521: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    ed_pkcs8: Vec<u8>,
}

fn fx() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rsa = RsaKeyPair::generate(rsa::KeySize::Rsa2048).expect("rsa keygen");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&rsa)
            .expect("rsa pkcs8")
            .as_ref()
            .to_vec();
        let rsa_pkcs1_private = super::der::pkcs8_rsa_private_key(&pkcs8)
            .expect("pkcs8 holds an rsa key")
            .to_vec();
        let rsa_spki = spki_of(rsa.public_key());
        let ec = |alg| {
            let kp = EcdsaKeyPair::generate(alg).expect("ec keygen");
            let pkcs8 = kp.to_pkcs8v1().expect("ec pkcs8").as_ref().to_vec();
            (kp, pkcs8)
        };
        let (p256, p256_pkcs8) = ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING);
        let (p384, p384_pkcs8) = ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING);
        let (p521, _) = ec(&signature::ECDSA_P521_SHA512_FIXED_SIGNING);
        let ed = Ed25519KeyPair::generate().expect("ed keygen");
        let ed_pkcs8 = ed.to_pkcs8().expect("ed pkcs8").as_ref().to_vec();
        Fixture {
            rsa,
            rsa_pkcs1_private,
            rsa_spki,
            p256,
            p256_pkcs8,
            p384,
            p384_pkcs8,
            p521,
            ed,
            ed_pkcs8,
        }
    })
}

fn spki_of<K: AsDer<PublicKeyX509Der<'static>>>(key: &K) -> Vec<u8> {
    key.as_der().expect("spki").as_ref().to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn b64u(bytes: &[u8]) -> String {
    super::b64::encode(bytes)
}

fn rsa_key() -> Key {
    Key::from_pem(&pem("PUBLIC KEY", &fx().rsa_spki)).expect("rsa pem")
}

fn rsa_jwk() -> Value {
    let pkcs1 = fx().rsa.public_key().as_ref().to_vec();
    let mut der = Der::new(&pkcs1);
    let mut seq = Der::new(der.read(0x30).expect("seq"));
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|&&x| x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    let n = strip(seq.read(0x02).expect("n"));
    let e = strip(seq.read(0x02).expect("e"));
    json!({"kty": "RSA", "n": b64u(&n), "e": b64u(&e)})
}

fn ec_jwk(kp: &EcdsaKeyPair, crv: &str) -> Value {
    let point = kp.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    json!({
        "kty": "EC", "crv": crv,
        "x": b64u(&point[1..1 + half]), "y": b64u(&point[1 + half..]),
    })
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "user-1",
        "exp": NOW + 600, "iat": NOW - 10, "nbf": NOW - 10,
    })
}

fn validation(algorithms: &[Algorithm]) -> Validation {
    Validation {
        issuer: Some(vec![ISS.to_owned()]),
        audience: Some(vec![AUD.to_owned()]),
        ..Validation::new(algorithms.to_vec())
    }
}

fn jwt_header(alg: jsonwebtoken::Algorithm, kid: Option<&str>) -> jsonwebtoken::Header {
    jsonwebtoken::Header {
        kid: kid.map(str::to_owned),
        ..jsonwebtoken::Header::new(alg)
    }
}

fn mint(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{encode, Algorithm as J, EncodingKey};
    let f = fx();
    let (jalg, key) = match alg {
        Algorithm::HS256 => (J::HS256, EncodingKey::from_secret(SECRET)),
        Algorithm::HS384 => (J::HS384, EncodingKey::from_secret(&[7u8; 48])),
        Algorithm::HS512 => (J::HS512, EncodingKey::from_secret(&[9u8; 64])),
        Algorithm::RS256 => (J::RS256, EncodingKey::from_rsa_der(&f.rsa_pkcs1_private)),
        Algorithm::RS384 => (J::RS384, EncodingKey::from_rsa_der(&f.rsa_pkcs1_private)),
        Algorithm::RS512 => (J::RS512, EncodingKey::from_rsa_der(&f.rsa_pkcs1_private)),
        Algorithm::PS256 => (J::PS256, EncodingKey::from_rsa_der(&f.rsa_pkcs1_private)),
        Algorithm::PS384 => (J::PS384, EncodingKey::from_rsa_der(&f.rsa_pkcs1_private)),
        Algorithm::PS512 => (J::PS512, EncodingKey::from_rsa_der(&f.rsa_pkcs1_private)),
        Algorithm::ES256 => (J::ES256, EncodingKey::from_ec_der(&f.p256_pkcs8)),
        Algorithm::ES384 => (J::ES384, EncodingKey::from_ec_der(&f.p384_pkcs8)),
        Algorithm::EdDSA => (J::EdDSA, EncodingKey::from_ed_der(&f.ed_pkcs8)),
        Algorithm::ES512 => return mint_es512(kid, claims),
    };
    encode(&jwt_header(jalg, kid), claims, &key).expect("jsonwebtoken encode")
}

/// jsonwebtoken has no ES512; sign with aws-lc-rs.
fn mint_es512(kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": "ES512", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let sig = fx()
        .p521
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("es512 sign");
    format!("{input}.{}", b64u(sig.as_ref()))
}

/// Key able to verify `mint(alg, ..)`.
fn key_for(alg: Algorithm) -> Key {
    let f = fx();
    match alg {
        Algorithm::HS256 => Key::hmac(SECRET).expect("hmac"),
        Algorithm::HS384 => Key::hmac(&[7u8; 48]).expect("hmac"),
        Algorithm::HS512 => Key::hmac(&[9u8; 64]).expect("hmac"),
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => rsa_key(),
        Algorithm::ES256 => Key::from_spki_der(&spki_of(f.p256.public_key())).expect("p256"),
        Algorithm::ES384 => Key::from_spki_der(&spki_of(f.p384.public_key())).expect("p384"),
        Algorithm::ES512 => Key::from_spki_der(&spki_of(f.p521.public_key())).expect("p521"),
        Algorithm::EdDSA => Key::from_spki_der(&spki_of(f.ed.public_key())).expect("ed25519"),
    }
}

/// A compact token with arbitrary header and payload text, MAC'd with `secret` (HS256).
fn hs256_raw(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64u(header.as_bytes()), b64u(payload.as_bytes()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64u(tag.as_ref()))
}

fn hs_key() -> Vec<Key> {
    vec![Key::hmac(SECRET).expect("hmac")]
}

fn sig_err(token: &str, keys: &[Key], algorithms: &[Algorithm]) -> JwsError {
    verify_signature(token, keys, algorithms, DEFAULT_MAX_TOKEN_BYTES)
        .map(|_| ())
        .expect_err("token must be refused")
}

fn claims_err(payload: &Value, validation: &Validation) -> JwsError {
    let token = mint(Algorithm::HS256, None, payload);
    verify(&token, &hs_key(), validation, NOW)
        .map(|_| ())
        .expect_err("token must be refused")
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = bytes.iter().skip_while(|&&b| b == 0).copied().collect();
    if v.first().is_none_or(|&b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

// ---------------------------------------------------------------------------------------------
// Algorithms

#[test]
fn algorithm_names_are_exact_and_none_does_not_exist() {
    for alg in Algorithm::ALL {
        assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
        assert_eq!(alg.as_str().parse::<Algorithm>().ok(), Some(alg));
    }
    for name in [
        "none", "None", "NONE", "nOnE", "hs256", "Rs256", "ES521", "", " HS256",
    ] {
        assert_eq!(Algorithm::parse(name), None, "{name}");
    }
    assert_eq!(Algorithm::ES512.family(), KeyFamily::Ec);
    assert_eq!(Algorithm::PS384.family(), KeyFamily::Rsa);
    assert_eq!(Algorithm::EdDSA.family(), KeyFamily::Ed);
    assert_eq!(Algorithm::HS512.family(), KeyFamily::Hmac);
    let parsed: Vec<Algorithm> = serde_json::from_str(r#"["RS256","EdDSA"]"#).expect("serde");
    assert_eq!(parsed, vec![Algorithm::RS256, Algorithm::EdDSA]);
    assert!(serde_json::from_str::<Algorithm>(r#""none""#).is_err());
}

#[test]
fn alg_none_in_any_spelling_is_refused() {
    let all = Algorithm::ALL;
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{none}"}}"#);
        // With an empty signature (the classic attack) and with a valid-looking one.
        let unsigned = format!("{}.{}.", b64u(header.as_bytes()), b64u(b"{}"));
        assert_eq!(
            sig_err(&unsigned, &hs_key(), &all),
            JwsError::UnsupportedAlgorithm
        );
        let signed = hs256_raw(&header, "{}", SECRET);
        assert_eq!(
            sig_err(&signed, &hs_key(), &all),
            JwsError::UnsupportedAlgorithm
        );
    }
}

#[test]
fn every_algorithm_verifies_a_valid_token() {
    for alg in Algorithm::ALL {
        let token = mint(alg, Some("k1"), &claims());
        let keys = vec![key_for(alg).with_kid("k1")];
        let verified = verify(&token, &keys, &validation(&[alg]), NOW)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.header.alg, alg);
        assert_eq!(verified.header.kid.as_deref(), Some("k1"));
        assert_eq!(verified.claims.get("sub"), Some(&json!("user-1")));
        // claims_json is the payload exactly as sent.
        let payload = token.split('.').nth(1).expect("payload");
        assert_eq!(b64u(verified.claims_json.as_bytes()), payload);
        // Layer 1 returns the key that verified.
        let (_, _, key) =
            verify_signature(&token, &keys, &[alg], DEFAULT_MAX_TOKEN_BYTES).expect("layer 1");
        assert_eq!(key.kid(), Some("k1"));
    }
}

#[test]
fn algorithm_must_be_pinned_by_the_provider() {
    let token = mint(Algorithm::RS256, None, &claims());
    assert_eq!(
        sig_err(&token, &[rsa_key()], &[Algorithm::PS256]),
        JwsError::AlgorithmNotAllowed
    );
    assert_eq!(
        sig_err(&token, &[rsa_key()], &[]),
        JwsError::AlgorithmNotAllowed
    );
    // Default validation pins nothing, so accepts nothing.
    assert_eq!(
        verify(&token, &[rsa_key()], &Validation::default(), NOW).map(|_| ()),
        Err(JwsError::AlgorithmNotAllowed)
    );
    let unknown = hs256_raw(r#"{"alg":"HS1024"}"#, "{}", SECRET);
    assert_eq!(
        sig_err(&unknown, &hs_key(), &Algorithm::ALL),
        JwsError::UnsupportedAlgorithm
    );
}

// ---------------------------------------------------------------------------------------------
// Algorithm confusion and key typing

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let f = fx();
    let spki_pem = pem("PUBLIC KEY", &f.rsa_spki);
    let pkcs1_der = f.rsa.public_key().as_ref().to_vec();
    let jwk_text = rsa_jwk().to_string();
    let keys_from = [
        Key::from_pem(&spki_pem).expect("pem"),
        Key::from_jwk(&rsa_jwk()).expect("jwk"),
    ];
    let secrets: [&[u8]; 5] = [
        spki_pem.as_bytes(),
        spki_pem.trim_end().as_bytes(),
        &f.rsa_spki,
        &pkcs1_der,
        jwk_text.as_bytes(),
    ];
    let both = [Algorithm::RS256, Algorithm::HS256];
    for key in &keys_from {
        assert!(!key.supports(Algorithm::HS256));
        for secret in secrets {
            let forged = hs256_raw(
                r#"{"alg":"HS256","typ":"JWT"}"#,
                &claims().to_string(),
                secret,
            );
            // Even if the provider (wrongly) allowed HS256, an RSA key is no HMAC secret.
            assert_eq!(
                sig_err(&forged, std::slice::from_ref(key), &both),
                JwsError::NoMatchingKey
            );
            assert_eq!(
                sig_err(&forged, std::slice::from_ref(key), &[Algorithm::RS256]),
                JwsError::AlgorithmNotAllowed
            );
            let (msg, sig) = forged.rsplit_once('.').expect("dot");
            let sig = super::b64::decode(sig).expect("b64");
            assert!(!verify_raw(Algorithm::HS256, key, msg.as_bytes(), &sig));
        }
    }
}

#[test]
fn hs256_signed_with_the_ec_public_key_is_refused() {
    let f = fx();
    let spki = spki_of(f.p256.public_key());
    let spki_pem = pem("PUBLIC KEY", &spki);
    let key = Key::from_pem(&spki_pem).expect("pem");
    for secret in [spki_pem.as_bytes(), &spki, f.p256.public_key().as_ref()] {
        let forged = hs256_raw(r#"{"alg":"HS256"}"#, &claims().to_string(), secret);
        assert_eq!(
            sig_err(
                &forged,
                std::slice::from_ref(&key),
                &[Algorithm::ES256, Algorithm::HS256]
            ),
            JwsError::NoMatchingKey
        );
    }
}

#[test]
fn jwk_alg_pins_the_key_to_one_algorithm() {
    let mut jwk = rsa_jwk();
    jwk["alg"] = json!("RS256");
    let key = Key::from_jwk(&jwk).expect("jwk");
    assert_eq!(key.algorithm(), Some(Algorithm::RS256));
    assert!(key.supports(Algorithm::RS256));
    assert!(!key.supports(Algorithm::PS256));
    let ps = mint(Algorithm::PS256, None, &claims());
    assert_eq!(
        sig_err(
            &ps,
            std::slice::from_ref(&key),
            &[Algorithm::RS256, Algorithm::PS256]
        ),
        JwsError::NoMatchingKey
    );
    let rs = mint(Algorithm::RS256, None, &claims());
    assert!(verify(
        &rs,
        &[key],
        &validation(&[Algorithm::RS256, Algorithm::PS256]),
        NOW
    )
    .is_ok());

    // alg that does not fit the key type, or is not an algorithm at all.
    jwk["alg"] = json!("ES256");
    assert_eq!(
        Key::from_jwk(&jwk).map(|_| ()),
        Err(KeyError::AlgorithmMismatch)
    );
    jwk["alg"] = json!("RSA-OAEP");
    assert_eq!(
        Key::from_jwk(&jwk).map(|_| ()),
        Err(KeyError::UnsupportedAlgorithm)
    );
    jwk["alg"] = json!(256);
    assert!(matches!(Key::from_jwk(&jwk), Err(KeyError::Malformed(_))));
    let pinned = rsa_key().with_algorithm(Algorithm::PS512).expect("pin");
    assert!(pinned.supports(Algorithm::PS512) && !pinned.supports(Algorithm::RS512));
    assert!(rsa_key().with_algorithm(Algorithm::HS256).is_err());
}

#[test]
fn ec_keys_serve_only_their_curve() {
    let token = mint(Algorithm::ES256, None, &claims());
    let p384 = key_for(Algorithm::ES384);
    assert_eq!(
        sig_err(&token, &[p384], &[Algorithm::ES256, Algorithm::ES384]),
        JwsError::NoMatchingKey
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures

fn raw_to_der_ecdsa(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = der_uint(r);
    body.extend(der_uint(s));
    tlv(0x30, &body)
}

#[test]
fn der_encoded_ecdsa_signatures_are_refused() {
    let token = mint(Algorithm::ES256, None, &claims());
    let key = key_for(Algorithm::ES256);
    assert!(verify_signature(
        &token,
        std::slice::from_ref(&key),
        &[Algorithm::ES256],
        16384
    )
    .is_ok());
    let (input, sig) = token.rsplit_once('.').expect("dot");
    let raw = super::b64::decode(sig).expect("b64");
    let der = raw_to_der_ecdsa(&raw);
    assert!(!verify_raw(Algorithm::ES256, &key, input.as_bytes(), &der));
    let der_token = format!("{input}.{}", b64u(&der));
    assert_eq!(
        sig_err(&der_token, std::slice::from_ref(&key), &[Algorithm::ES256]),
        JwsError::BadSignature
    );
}

#[test]
fn psychic_signatures_are_refused() {
    // CVE-2022-21449: r = s = 0 "verifies" in broken implementations.
    for (alg, len) in [
        (Algorithm::ES256, 64),
        (Algorithm::ES384, 96),
        (Algorithm::ES512, 132),
    ] {
        let token = mint(alg, None, &claims());
        let (input, _) = token.rsplit_once('.').expect("dot");
        let key = key_for(alg);
        let zeros = vec![0u8; len];
        assert!(!verify_raw(alg, &key, input.as_bytes(), &zeros));
        let forged = format!("{input}.{}", b64u(&zeros));
        assert_eq!(
            sig_err(&forged, std::slice::from_ref(&key), &[alg]),
            JwsError::BadSignature
        );
    }
}

#[test]
fn null_and_empty_signatures_are_refused() {
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::EdDSA,
        Algorithm::ES256,
    ] {
        let token = mint(alg, None, &claims());
        let (input, sig) = token.rsplit_once('.').expect("dot");
        let key = key_for(alg);
        let empty = format!("{input}.");
        assert_eq!(
            sig_err(&empty, std::slice::from_ref(&key), &[alg]),
            JwsError::Malformed("empty signature")
        );
        let zeros = vec![0u8; super::b64::decode(sig).expect("b64").len()];
        let null = format!("{input}.{}", b64u(&zeros));
        assert_eq!(
            sig_err(&null, std::slice::from_ref(&key), &[alg]),
            JwsError::BadSignature
        );
        assert!(!verify_raw(alg, &key, input.as_bytes(), &[]));
        // A tampered payload fails.
        let (header, _) = input.split_once('.').expect("dot");
        let mut evil = claims();
        evil["sub"] = json!("admin");
        let tampered = format!("{header}.{}.{sig}", b64u(evil.to_string().as_bytes()));
        assert_eq!(
            sig_err(&tampered, std::slice::from_ref(&key), &[alg]),
            JwsError::BadSignature
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Compact serialization

#[test]
fn exactly_three_parts() {
    let token = mint(Algorithm::HS256, None, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let all = [Algorithm::HS256];
    let two = format!("{}.{}", parts[0], parts[1]);
    let four = format!("{token}.{}", parts[2]);
    let four_empty = format!("{token}.");
    let jwe = format!("{}.a.b.c.d", parts[0]);
    for bad in [two.as_str(), &four, &four_empty, &jwe, "", ".", "..", "a"] {
        assert!(
            matches!(sig_err(bad, &hs_key(), &all), JwsError::Malformed(_)),
            "{bad:?}"
        );
    }
    assert_eq!(
        sig_err(&jwe, &hs_key(), &all),
        JwsError::Malformed("jwe is not supported")
    );
    let json_serialization = format!(
        r#"{{"payload":"{}","protected":"{}","signature":"{}"}}"#,
        parts[1], parts[0], parts[2]
    );
    assert_eq!(
        sig_err(&json_serialization, &hs_key(), &all),
        JwsError::Malformed("json serialization is not supported")
    );
    let no_header = format!(".{}.{}", parts[1], parts[2]);
    assert_eq!(
        sig_err(&no_header, &hs_key(), &all),
        JwsError::Malformed("empty header")
    );
}

#[test]
fn base64url_must_be_strict() {
    let token = mint(Algorithm::HS256, None, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let all = [Algorithm::HS256];
    let mut bad = Vec::new();
    for i in 0..3 {
        let mut with = |f: &dyn Fn(&str) -> String| {
            let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            p[i] = f(parts[i]);
            bad.push(p.join("."));
        };
        with(&|s| format!("{s}="));
        with(&|s| format!("{s}=="));
        with(&|s| format!(" {s}"));
        with(&|s| format!("{s}\n"));
        with(&|s| format!("{}\t{}", &s[..4], &s[4..]));
        with(&|s| format!("{}+{}", &s[..4], &s[5..]));
        with(&|s| format!("{}/{}", &s[..4], &s[5..]));
        with(&|s| format!("{}?{}", &s[..4], &s[4..]));
        with(&|s| s.replace('-', "+").replace('_', "/") + "+");
    }
    bad.push(format!(" {token}"));
    bad.push(format!("{token}\r\n"));
    for t in &bad {
        assert!(
            matches!(sig_err(t, &hs_key(), &all), JwsError::Malformed(_)),
            "{t:?} should be malformed"
        );
    }
    // Non-canonical trailing bits: "AB" decodes to one byte 0x00 but has bits set that the
    // canonical "AA" has not; the MAC is computed over the non-canonical text.
    let header = b64u(br#"{"alg":"HS256"}"#);
    let input = format!("{header}.AB");
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), input.as_bytes());
    let non_canonical = format!("{input}.{}", b64u(tag.as_ref()));
    assert_eq!(
        sig_err(&non_canonical, &hs_key(), &all),
        JwsError::Malformed("payload is not canonical base64url")
    );
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let garbage = "!".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
    assert_eq!(
        sig_err(&garbage, &hs_key(), &[Algorithm::HS256]),
        JwsError::TooLarge
    );
    let mut big = claims();
    big["blob"] = json!("x".repeat(DEFAULT_MAX_TOKEN_BYTES));
    let token = mint(Algorithm::HS256, None, &big);
    assert_eq!(
        sig_err(&token, &hs_key(), &[Algorithm::HS256]),
        JwsError::TooLarge
    );
    // The limit is the caller's.
    assert!(verify_signature(&token, &hs_key(), &[Algorithm::HS256], 64 * 1024).is_ok());
    let v = Validation {
        max_token_bytes: 100,
        ..validation(&[Algorithm::HS256])
    };
    let small = mint(Algorithm::HS256, None, &claims());
    assert_eq!(
        verify(&small, &hs_key(), &v, NOW).map(|_| ()),
        Err(JwsError::TooLarge)
    );
    assert_eq!(peek_issuer(&token, DEFAULT_MAX_TOKEN_BYTES), None);
}

// ---------------------------------------------------------------------------------------------
// Header

#[test]
fn crit_is_refused() {
    for header in [
        r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
        r#"{"alg":"HS256","crit":[]}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"HS256","crit":"x"}"#,
    ] {
        let token = hs256_raw(header, &claims().to_string(), SECRET);
        assert_eq!(
            sig_err(&token, &hs_key(), &[Algorithm::HS256]),
            JwsError::CritUnsupported
        );
    }
}

#[test]
fn duplicate_members_are_refused_in_header_and_payload() {
    let all = [Algorithm::HS256];
    for header in [
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
        r#"{"alg":"HS256","x":{"y":1,"y":2}}"#,
    ] {
        let token = hs256_raw(header, &claims().to_string(), SECRET);
        assert_eq!(
            sig_err(&token, &hs_key(), &all),
            JwsError::DuplicateMember,
            "{header}"
        );
    }
    let v = validation(&all);
    for payload in [
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"sub":"a","sub":"admin"}}"#,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"exp":{}}}"#,
            NOW - 600,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"r":[{{"a":1,"a":1}}]}}"#,
            NOW + 60
        ),
    ] {
        let token = hs256_raw(r#"{"alg":"HS256"}"#, &payload, SECRET);
        assert_eq!(
            verify(&token, &hs_key(), &v, NOW).map(|_| ()),
            Err(JwsError::DuplicateMember),
            "{payload}"
        );
        assert_eq!(peek_issuer(&token, DEFAULT_MAX_TOKEN_BYTES), None);
    }
}

#[test]
fn header_must_be_a_small_json_object_with_a_string_alg() {
    let all = [Algorithm::HS256];
    let deep = format!(
        r#"{{"alg":"HS256","x":{}1{}}}"#,
        "[".repeat(MAX_JSON_DEPTH),
        "]".repeat(MAX_JSON_DEPTH)
    );
    for header in [
        "[]",
        r#""HS256""#,
        "{}",
        r#"{"alg":null}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"alg":"HS256","kid":7}"#,
        r#"{"alg":"HS256","typ":1}"#,
        "{\"alg\":\"HS256\"",
        deep.as_str(),
    ] {
        let token = hs256_raw(header, "{}", SECRET);
        assert!(
            matches!(sig_err(&token, &hs_key(), &all), JwsError::Malformed(_)),
            "{header}"
        );
    }
    // Whitespace inside the JSON is fine (RFC 7515 §3.3).
    let token = hs256_raw("{ \"alg\" :\n\t\"HS256\" }", "{}", SECRET);
    assert!(verify_signature(&token, &hs_key(), &all, DEFAULT_MAX_TOKEN_BYTES).is_ok());
}

#[test]
fn embedded_jwk_jku_x5u_x5c_headers_are_ignored() {
    // The attacker signs with their own key and ships it (and URLs) in the header.
    let attacker =
        EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let attacker_jwk = ec_jwk(&attacker, "P-256");
    let attacker_spki =
        base64::engine::general_purpose::STANDARD.encode(spki_of(attacker.public_key()));
    for kid in [None, Some("k1")] {
        let mut header = json!({
            "alg": "ES256",
            "jwk": attacker_jwk,
            "jku": "https://attacker.example/jwks.json",
            "x5u": "https://attacker.example/cert.pem",
            "x5c": [attacker_spki],
            "x5t": "AAAA",
        });
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims().to_string().as_bytes())
        );
        let sig = attacker
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        let token = format!("{input}.{}", b64u(sig.as_ref()));
        let real = key_for(Algorithm::ES256).with_kid("k1");
        assert_eq!(
            sig_err(&token, &[real], &[Algorithm::ES256]),
            JwsError::BadSignature
        );
        // Without any configured key nothing verifies either.
        assert!(sig_err(&token, &[], &[Algorithm::ES256]) != JwsError::BadSignature);
    }
}

// ---------------------------------------------------------------------------------------------
// Key selection

#[test]
fn kid_is_only_an_exact_lookup_key() {
    let keys = vec![Key::hmac(SECRET).expect("hmac").with_kid("k1")];
    let all = [Algorithm::HS256];
    for kid in [
        "../../dev/null",
        "/dev/null",
        "' OR '1'='1",
        "k1 ",
        "K1",
        "k1\u{0000}",
        "",
    ] {
        let header = json!({"alg": "HS256", "kid": kid}).to_string();
        // MAC'd with the real secret: only the kid is wrong.
        let token = hs256_raw(&header, &claims().to_string(), SECRET);
        let err = sig_err(&token, &keys, &all);
        assert_eq!(err, JwsError::UnknownKid, "{kid:?}");
        assert!(!err.to_string().contains("dev/null") && !err.to_string().contains("OR"));
    }
    // A very long kid is malformed, whatever the keys.
    let long = "a".repeat(10 * 1024);
    let header = json!({"alg": "HS256", "kid": long}).to_string();
    let token = hs256_raw(&header, "{}", SECRET);
    assert!(token.len() < DEFAULT_MAX_TOKEN_BYTES);
    let err = sig_err(&token, &keys, &all);
    assert_eq!(err, JwsError::Malformed("header kid is too long"));
    assert!(!err.to_string().contains("aaaa"));
    // A kid with no key at all (or keys without kids) is unknown.
    let token = hs256_raw(r#"{"alg":"HS256","kid":"k1"}"#, "{}", SECRET);
    assert_eq!(sig_err(&token, &hs_key(), &all), JwsError::UnknownKid);
    assert_eq!(sig_err(&token, &[], &all), JwsError::UnknownKid);
    assert!(verify_signature(&token, &keys, &all, DEFAULT_MAX_TOKEN_BYTES).is_ok());
}

#[test]
fn kid_selects_the_key_and_no_kid_tries_fitting_keys() {
    let a = Key::hmac(&[1u8; 32]).expect("hmac").with_kid("a");
    let b = Key::hmac(SECRET).expect("hmac").with_kid("b");
    let rsa = rsa_key().with_kid("r");
    let keys = vec![rsa, a, b];
    let all = [Algorithm::HS256, Algorithm::RS256];
    let with_b = hs256_raw(r#"{"alg":"HS256","kid":"b"}"#, "{}", SECRET);
    let (_, _, key) = verify_signature(&with_b, &keys, &all, 16384).expect("kid b");
    assert_eq!(key.kid(), Some("b"));
    // kid "a" names the wrong secret: no fallback to other keys.
    let with_a = hs256_raw(r#"{"alg":"HS256","kid":"a"}"#, "{}", SECRET);
    assert_eq!(sig_err(&with_a, &keys, &all), JwsError::BadSignature);
    // kid "r" names an RSA key: unusable for HS256.
    let with_r = hs256_raw(r#"{"alg":"HS256","kid":"r"}"#, "{}", SECRET);
    assert_eq!(sig_err(&with_r, &keys, &all), JwsError::NoMatchingKey);
    // No kid: every fitting key is tried.
    let no_kid = hs256_raw(r#"{"alg":"HS256"}"#, "{}", SECRET);
    let (_, payload, key) = verify_signature(&no_kid, &keys, &all, 16384).expect("no kid");
    assert_eq!((key.kid(), payload.as_slice()), (Some("b"), &b"{}"[..]));
}

// ---------------------------------------------------------------------------------------------
// Claims

#[test]
fn exp_is_required_and_must_be_in_the_future() {
    let v = validation(&[Algorithm::HS256]);
    let mut c = claims();
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(claims_err(&c, &v), JwsError::MissingClaim("exp".to_owned()));
    let relaxed = Validation {
        require_exp: false,
        ..v.clone()
    };
    assert!(verify(&mint(Algorithm::HS256, None, &c), &hs_key(), &relaxed, NOW).is_ok());

    c["exp"] = json!(NOW - 31);
    assert_eq!(claims_err(&c, &v), JwsError::Expired);
    c["exp"] = json!(NOW - 30);
    assert_eq!(claims_err(&c, &v), JwsError::Expired);
    c["exp"] = json!(NOW - 29); // within the 30 s leeway
    assert!(verify(&mint(Algorithm::HS256, None, &c), &hs_key(), &v, NOW).is_ok());
    let strict = Validation {
        leeway_secs: 0,
        ..v.clone()
    };
    c["exp"] = json!(NOW);
    assert_eq!(claims_err(&c, &strict), JwsError::Expired);
    c["exp"] = json!(NOW as f64 + 0.5);
    assert!(verify(
        &mint(Algorithm::HS256, None, &c),
        &hs_key(),
        &strict,
        NOW + 1
    )
    .is_err());
    c["exp"] = json!(-1);
    assert_eq!(claims_err(&c, &v), JwsError::Expired);
    for bad in [
        json!("9999999999"),
        json!(null),
        json!([NOW + 60]),
        json!(true),
    ] {
        c["exp"] = bad;
        assert_eq!(
            claims_err(&c, &v),
            JwsError::Malformed("exp is not a number")
        );
    }
}

#[test]
fn nbf_and_iat_in_the_future_are_refused() {
    let v = validation(&[Algorithm::HS256]);
    let mut c = claims();
    c["nbf"] = json!(NOW + 31);
    assert_eq!(claims_err(&c, &v), JwsError::NotYetValid);
    c["nbf"] = json!(NOW + 30);
    assert!(verify(&mint(Algorithm::HS256, None, &c), &hs_key(), &v, NOW).is_ok());
    c["nbf"] = json!("soon");
    assert_eq!(
        claims_err(&c, &v),
        JwsError::Malformed("nbf is not a number")
    );

    let mut c = claims();
    c["iat"] = json!(NOW + 3600);
    assert_eq!(claims_err(&c, &v), JwsError::IssuedInFuture);
    c["iat"] = json!(NOW + 30);
    assert!(verify(&mint(Algorithm::HS256, None, &c), &hs_key(), &v, NOW).is_ok());
    let unchecked = Validation {
        max_iat_skew_secs: None,
        ..v.clone()
    };
    c["iat"] = json!(NOW + 3600);
    assert!(verify(
        &mint(Algorithm::HS256, None, &c),
        &hs_key(),
        &unchecked,
        NOW
    )
    .is_ok());
    c["iat"] = json!({"t": 1});
    assert_eq!(
        claims_err(&c, &unchecked),
        JwsError::Malformed("iat is not a number")
    );
}

#[test]
fn issuer_must_match_exactly() {
    let v = validation(&[Algorithm::HS256]);
    let mut c = claims();
    for wrong in [
        json!("https://issuer.example/"),
        json!("HTTPS://ISSUER.EXAMPLE"),
        json!([ISS]),
        json!(1),
    ] {
        c["iss"] = wrong;
        assert_eq!(claims_err(&c, &v), JwsError::WrongIssuer);
    }
    c.as_object_mut().expect("object").remove("iss");
    assert_eq!(claims_err(&c, &v), JwsError::MissingClaim("iss".to_owned()));
    let any_issuer = Validation {
        issuer: None,
        ..v.clone()
    };
    assert!(verify(
        &mint(Algorithm::HS256, None, &c),
        &hs_key(),
        &any_issuer,
        NOW
    )
    .is_ok());
}

#[test]
fn audience_is_required_when_configured() {
    let v = validation(&[Algorithm::HS256]);
    let mut c = claims();
    c.as_object_mut().expect("object").remove("aud");
    assert_eq!(claims_err(&c, &v), JwsError::MissingClaim("aud".to_owned()));
    c["aud"] = json!("someone-else");
    assert_eq!(claims_err(&c, &v), JwsError::WrongAudience);
    c["aud"] = json!(["a", "b"]);
    assert_eq!(claims_err(&c, &v), JwsError::WrongAudience);
    c["aud"] = json!([]);
    assert_eq!(claims_err(&c, &v), JwsError::WrongAudience);
    c["aud"] = json!(["a", 1, AUD]);
    assert!(matches!(claims_err(&c, &v), JwsError::Malformed(_)));
    c["aud"] = json!({"aud": AUD});
    assert!(matches!(claims_err(&c, &v), JwsError::Malformed(_)));
    c["aud"] = json!(["a", AUD]);
    assert!(verify(&mint(Algorithm::HS256, None, &c), &hs_key(), &v, NOW).is_ok());
    let nobody = Validation {
        audience: Some(vec![]),
        ..v.clone()
    };
    assert_eq!(claims_err(&c, &nobody), JwsError::WrongAudience);
}

#[test]
fn required_claims_must_be_present() {
    let v = Validation {
        required_claims: vec!["sub".to_owned(), "azp".to_owned()],
        ..validation(&[Algorithm::HS256])
    };
    assert_eq!(
        claims_err(&claims(), &v),
        JwsError::MissingClaim("azp".to_owned())
    );
    let mut c = claims();
    c["azp"] = json!("client");
    assert!(verify(&mint(Algorithm::HS256, None, &c), &hs_key(), &v, NOW).is_ok());
}

#[test]
fn typ_must_match_when_configured() {
    let v = Validation {
        typ: Some(vec!["at+jwt".to_owned()]),
        ..validation(&[Algorithm::HS256])
    };
    let payload = claims().to_string();
    for (typ, ok) in [
        (Some("at+jwt"), true),
        (Some("AT+JWT"), true),
        (Some("application/at+jwt"), true),
        (Some("Application/AT+JWT"), true),
        (Some("JWT"), false),
        (Some("application/jwt"), false),
        (Some("at+jwt "), false),
        (Some("application/at+jwt/x"), false),
        (None, false),
    ] {
        let header = match typ {
            Some(t) => json!({"alg": "HS256", "typ": t}),
            None => json!({"alg": "HS256"}),
        };
        let token = hs256_raw(&header.to_string(), &payload, SECRET);
        let result = verify(&token, &hs_key(), &v, NOW).map(|_| ());
        if ok {
            assert_eq!(result, Ok(()), "{typ:?}");
        } else {
            assert_eq!(result, Err(JwsError::WrongType), "{typ:?}");
        }
    }
    let jwt = Validation {
        typ: Some(vec!["application/JWT".to_owned()]),
        ..validation(&[Algorithm::HS256])
    };
    let token = hs256_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, SECRET);
    assert!(verify(&token, &hs_key(), &jwt, NOW).is_ok());
}

#[test]
fn payload_must_be_a_json_object() {
    let v = validation(&[Algorithm::HS256]);
    for payload in ["", "[]", "\"x\"", "{", "{\"a\":1}x", "\u{FEFF}{}"] {
        let token = hs256_raw(r#"{"alg":"HS256"}"#, payload, SECRET);
        assert!(
            matches!(
                verify(&token, &hs_key(), &v, NOW),
                Err(JwsError::Malformed(_))
            ),
            "{payload:?}"
        );
    }
    // Layer 1 accepts any payload bytes (including none).
    let token = hs256_raw(r#"{"alg":"HS256"}"#, "", SECRET);
    let (_, payload, _) =
        verify_signature(&token, &hs_key(), &[Algorithm::HS256], 16384).expect("layer 1");
    assert!(payload.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn short_hmac_secrets_are_refused() {
    assert_eq!(
        Key::hmac(b"secret").map(|_| ()),
        Err(KeyError::HmacSecretTooShort { min: 32 })
    );
    assert!(Key::hmac(&[]).is_err());
    assert!(Key::hmac(&[0u8; 31]).is_err());
    assert!(Key::hmac(&[0u8; 32]).is_ok());
    let jwk = json!({"kty": "oct", "k": b64u(b"too-short")});
    assert_eq!(
        Key::from_jwk(&jwk).map(|_| ()),
        Err(KeyError::HmacSecretTooShort { min: 32 })
    );
    assert!(KeyError::HmacSecretTooShort { min: 32 }
        .to_string()
        .contains("32 bytes"));
    // HS384/HS512 need secrets as long as their hash (RFC 7518 §3.2).
    let k32 = Key::hmac(&[0u8; 32]).expect("hmac");
    assert!(k32.supports(Algorithm::HS256) && !k32.supports(Algorithm::HS384));
    assert!(!k32.supports(Algorithm::HS512));
    assert!(Key::hmac(&[0u8; 64])
        .expect("hmac")
        .supports(Algorithm::HS512));
}

#[test]
fn pem_forms_are_accepted() {
    let f = fx();
    let pkcs1 = f.rsa.public_key().as_ref().to_vec();
    let token = mint(Algorithm::RS256, None, &claims());
    let rs = validation(&[Algorithm::RS256]);
    for text in [
        pem("PUBLIC KEY", &f.rsa_spki),
        pem("RSA PUBLIC KEY", &pkcs1),
        pem("CERTIFICATE", &fake_certificate(&f.rsa_spki)),
    ] {
        let key = Key::from_pem(&text).expect("pem");
        assert_eq!(key.family(), KeyFamily::Rsa);
        assert!(verify(&token, &[key], &rs, NOW).is_ok());
    }
    for (alg, kp) in [
        (Algorithm::ES256, &f.p256),
        (Algorithm::ES384, &f.p384),
        (Algorithm::ES512, &f.p521),
    ] {
        let spki = spki_of(kp.public_key());
        for text in [
            pem("PUBLIC KEY", &spki),
            pem("CERTIFICATE", &fake_certificate(&spki)),
        ] {
            let key = Key::from_pem(&text).expect("ec pem");
            assert_eq!(key.family(), KeyFamily::Ec);
            let token = mint(alg, None, &claims());
            assert!(
                verify(&token, &[key], &validation(&[alg]), NOW).is_ok(),
                "{alg}"
            );
        }
    }
    let ed = Key::from_pem(&pem("PUBLIC KEY", &spki_of(f.ed.public_key()))).expect("ed pem");
    assert_eq!(ed.family(), KeyFamily::Ed);
    let token = mint(Algorithm::EdDSA, None, &claims());
    assert!(verify(&token, &[ed], &validation(&[Algorithm::EdDSA]), NOW).is_ok());

    // Private keys, other labels and garbage are refused.
    assert!(Key::from_pem(&pem("PRIVATE KEY", &f.p256_pkcs8)).is_err());
    assert!(Key::from_pem(&pem("PUBLIC KEY", &f.p256_pkcs8)).is_err());
    assert!(Key::from_pem(&pem("PUBLIC KEY", &pkcs1)).is_err());
    let mut trailing = f.rsa_spki.clone();
    trailing.push(0);
    assert!(Key::from_pem(&pem("PUBLIC KEY", &trailing)).is_err());
    assert!(Key::from_pem("not a key").is_err());
}

#[test]
fn google_certificate_maps_parse_kid_to_key() {
    let f = fx();
    let cert = pem("CERTIFICATE", &fake_certificate(&f.rsa_spki));
    let doc = json!({
        "0d8a67399e7882acae7d7f68b2280256a796a582": cert,
        "e5a91d9f39fa4de254a1e89df00f05b7e248b985": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        "bad-type": 7,
    });
    let (keys, skipped) =
        parse_x509_map_limited(doc.to_string().as_bytes(), 10, 64 * 1024).expect("map");
    assert_eq!(skipped, 2);
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].kid(),
        Some("0d8a67399e7882acae7d7f68b2280256a796a582")
    );
    assert_eq!(keys[0].family(), KeyFamily::Rsa);
    // The key verifies a token that names it, and only inside this set.
    let token = mint(
        Algorithm::RS256,
        Some("0d8a67399e7882acae7d7f68b2280256a796a582"),
        &claims(),
    );
    assert!(verify(&token, &keys, &validation(&[Algorithm::RS256]), NOW).is_ok());
    let other = mint(Algorithm::RS256, Some("unknown"), &claims());
    assert_eq!(
        verify(&other, &keys, &validation(&[Algorithm::RS256]), NOW),
        Err(JwsError::UnknownKid)
    );

    // An empty map parses to no keys (the cache then refuses it as empty).
    let (keys, _) = parse_x509_map_limited(b"{}", 10, 1024).expect("empty");
    assert!(keys.is_empty());
    // Google's error answer, a JWKS, HTML, duplicates, too big, too many: refused.
    for (body, cap) in [
        (
            r#"{"error":"invalid_request","error_description":"x"}"#.to_string(),
            1024,
        ),
        ("<html><body>503</body></html>".to_string(), 1024),
        ("[1,2]".to_string(), 1024),
        (r#"{"a":"x","a":"y"}"#.to_string(), 1024),
        (format!(r#"{{"k":"{}"}}"#, "x".repeat(2000)), 1024),
    ] {
        assert!(
            parse_x509_map_limited(body.as_bytes(), 10, cap).is_err(),
            "{body:.40}"
        );
    }
    let many: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("k{i}"), json!("x"))).collect();
    assert!(matches!(
        parse_x509_map_limited(Value::Object(many).to_string().as_bytes(), 10, 64 * 1024),
        Err(KeyError::TooManyKeys { max: 10 })
    ));
}

/// A structurally valid X.509 certificate around `spki` (the signature is junk: the verifier
/// only extracts the key).
fn fake_certificate(spki: &[u8]) -> Vec<u8> {
    let sha256_rsa = tlv(
        0x30,
        &[
            tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            ),
            tlv(0x05, &[]),
        ]
        .concat(),
    );
    let name = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(
                0x30,
                &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, b"test")].concat(),
            ),
        ),
    );
    let validity = tlv(
        0x30,
        &[tlv(0x17, b"240101000000Z"), tlv(0x17, b"340101000000Z")].concat(),
    );
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[0x01, 0x23]),
            sha256_rsa.clone(),
            name.clone(),
            validity,
            name,
            spki.to_vec(),
        ]
        .concat(),
    );
    tlv(0x30, &[tbs, sha256_rsa, tlv(0x03, &[0, 1, 2, 3])].concat())
}

#[test]
fn jwk_use_and_key_ops_are_honoured() {
    let mut jwk = rsa_jwk();
    jwk["use"] = json!("enc");
    assert_eq!(
        Key::from_jwk(&jwk).map(|_| ()),
        Err(KeyError::NotForSignatures)
    );
    jwk["use"] = json!("sig");
    assert!(Key::from_jwk(&jwk).is_ok());
    jwk["key_ops"] = json!(["encrypt"]);
    assert_eq!(
        Key::from_jwk(&jwk).map(|_| ()),
        Err(KeyError::NotForSignatures)
    );
    jwk["key_ops"] = json!(["sign"]);
    assert_eq!(
        Key::from_jwk(&jwk).map(|_| ()),
        Err(KeyError::NotForSignatures)
    );
    jwk["key_ops"] = json!("verify");
    assert!(matches!(Key::from_jwk(&jwk), Err(KeyError::Malformed(_))));
    jwk["key_ops"] = json!(["sign", "verify"]);
    assert!(Key::from_jwk(&jwk).is_ok());
}

#[test]
fn jwk_private_members_are_ignored_and_public_parts_validated() {
    let mut jwk = rsa_jwk();
    jwk["d"] = json!("not even base64 !!!");
    jwk["p"] = json!(b64u(&[1, 2, 3]));
    jwk["kid"] = json!("r1");
    jwk["x5c"] = json!(["garbage"]);
    let key = Key::from_jwk(&jwk).expect("public parts only");
    assert_eq!((key.kid(), key.family()), (Some("r1"), KeyFamily::Rsa));
    let token = mint(Algorithm::PS384, Some("r1"), &claims());
    let ps384 = validation(&[Algorithm::PS384]);
    assert!(verify(&token, std::slice::from_ref(&key), &ps384, NOW).is_ok());
    // Debug never shows material.
    let debug = format!("{key:?}");
    assert!(debug.contains("r1") && !debug.contains(jwk["n"].as_str().expect("n")));
    assert!(!format!("{:?}", Key::hmac(SECRET).expect("hmac")).contains("0123456789"));

    // Leading zeros in n are tolerated; padding, bad curves, short coordinates are not.
    let mut padded = rsa_jwk();
    let n = super::b64::decode(padded["n"].as_str().expect("n")).expect("b64");
    padded["n"] = json!(b64u(&[&[0u8][..], &n].concat()));
    assert!(Key::from_jwk(&padded).is_ok());
    let mut bad = rsa_jwk();
    bad["n"] = json!(format!("{}=", bad["n"].as_str().expect("n")));
    assert!(matches!(Key::from_jwk(&bad), Err(KeyError::Malformed(_))));
    let small = json!({"kty": "RSA", "n": b64u(&[0xc5u8; 128]), "e": "AQAB"});
    assert_eq!(Key::from_jwk(&small).map(|_| ()), Err(KeyError::RsaKeySize));

    let mut ec = ec_jwk(&fx().p256, "P-256");
    assert!(Key::from_jwk(&ec).is_ok());
    ec["crv"] = json!("secp256k1");
    assert_eq!(
        Key::from_jwk(&ec).map(|_| ()),
        Err(KeyError::UnsupportedCurve)
    );
    let mut ec = ec_jwk(&fx().p256, "P-256");
    let y = super::b64::decode(ec["y"].as_str().expect("y")).expect("b64");
    let mut off_curve = y.clone();
    off_curve[31] ^= 1;
    ec["y"] = json!(b64u(&off_curve));
    assert_eq!(Key::from_jwk(&ec).map(|_| ()), Err(KeyError::Rejected));
    ec["y"] = json!(b64u(&y[1..]));
    assert!(matches!(Key::from_jwk(&ec), Err(KeyError::Malformed(_))));
    let okp = json!({"kty": "OKP", "crv": "Ed448", "x": b64u(&[1u8; 57])});
    assert_eq!(
        Key::from_jwk(&okp).map(|_| ()),
        Err(KeyError::UnsupportedCurve)
    );
    let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(fx().ed.public_key().as_ref())});
    assert_eq!(Key::from_jwk(&ed).map(|k| k.family()), Ok(KeyFamily::Ed));
    for bad in [
        json!({"kty": "DSA"}),
        json!({}),
        json!([]),
        json!({"kty": "RSA", "n": "AQAB"}),
    ] {
        assert!(Key::from_jwk(&bad).is_err(), "{bad}");
    }
}

#[test]
fn jwks_parsing_skips_unusable_keys_and_enforces_caps() {
    let mut rsa = rsa_jwk();
    rsa["kid"] = json!("rsa");
    let mut enc = rsa_jwk();
    enc["use"] = json!("enc");
    let ec = ec_jwk(&fx().p256, "P-256");
    let doc = json!({"keys": [
        rsa, enc, ec,
        {"kty": "oct", "k": b64u(b"short")},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "alg": "RS256"},
        "not an object",
    ]});
    let (keys, skipped) = parse_jwks(doc.to_string().as_bytes(), 100).expect("jwks");
    assert_eq!((keys.len(), skipped), (2, 5));
    assert_eq!(keys[0].kid(), Some("rsa"));
    assert_eq!(keys[1].family(), KeyFamily::Ec);

    assert_eq!(
        parse_jwks(doc.to_string().as_bytes(), 3).map(|_| ()),
        Err(KeyError::TooManyKeys { max: 3 })
    );
    assert_eq!(
        parse_jwks_limited(doc.to_string().as_bytes(), 100, 64).map(|_| ()),
        Err(KeyError::TooLarge { max: 64 })
    );
    let huge = vec![b' '; DEFAULT_MAX_JWKS_BYTES + 1];
    assert!(matches!(
        parse_jwks(&huge, 100),
        Err(KeyError::TooLarge { .. })
    ));
    assert_eq!(
        parse_jwks(br#"{"keys":[],"keys":[]}"#, 100).map(|_| ()),
        Err(KeyError::DuplicateMember)
    );
    for bad in [&b"[]"[..], b"{}", b"{\"keys\":{}}", b"nope"] {
        assert!(matches!(parse_jwks(bad, 100), Err(KeyError::Malformed(_))));
    }
    assert_eq!(
        parse_jwks(br#"{"keys":[]}"#, 100).map(|(k, s)| (k.len(), s)),
        Ok((0, 0))
    );
}

#[test]
fn peek_exp_reads_the_payload_alone_and_flags_what_cannot_be_trusted() {
    let max = DEFAULT_MAX_TOKEN_BYTES;
    let mut c = claims();
    c["exp"] = 1_900_000_000u64.into();
    assert_eq!(
        peek_exp(&mint(Algorithm::RS256, None, &c), max),
        PeekedExp::At(1_900_000_000)
    );
    c["exp"] = serde_json::json!(1_900_000_000.9);
    assert_eq!(
        peek_exp(&mint(Algorithm::HS256, None, &c), max),
        PeekedExp::At(1_900_000_000)
    );
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        peek_exp(&mint(Algorithm::HS256, None, &c), max),
        PeekedExp::Absent
    );
    c["exp"] = "tomorrow".into();
    assert_eq!(
        peek_exp(&mint(Algorithm::HS256, None, &c), max),
        PeekedExp::Unusable
    );
    c["exp"] = (-5).into();
    assert_eq!(
        peek_exp(&mint(Algorithm::HS256, None, &c), max),
        PeekedExp::Unusable
    );
    let twice = hs256_raw(r#"{"alg":"HS256"}"#, r#"{"exp":1,"exp":1900000000}"#, b"k");
    assert_eq!(peek_exp(&twice, max), PeekedExp::Unusable);
    c["exp"] = Value::Null;
    assert_eq!(
        peek_exp(&mint(Algorithm::HS256, None, &c), max),
        PeekedExp::Unusable
    );
    let array = hs256_raw(r#"{"alg":"HS256"}"#, "[1900000000]", b"k");
    assert_eq!(peek_exp(&array, max), PeekedExp::NotAJwt);
    assert_eq!(peek_exp("good-amy", max), PeekedExp::NotAJwt);
    assert_eq!(peek_exp("a.b.c", max), PeekedExp::NotAJwt);
}

#[test]
fn peek_issuer_reads_iss_of_well_formed_tokens_only() {
    let token = mint(Algorithm::RS256, None, &claims());
    assert_eq!(
        peek_issuer(&token, DEFAULT_MAX_TOKEN_BYTES).as_deref(),
        Some(ISS)
    );
    // Does not verify: a forged token still routes (and then fails verification).
    let forged = hs256_raw(r#"{"alg":"HS256"}"#, &claims().to_string(), b"attacker");
    assert_eq!(
        peek_issuer(&forged, DEFAULT_MAX_TOKEN_BYTES).as_deref(),
        Some(ISS)
    );
    let mut no_iss = claims();
    no_iss.as_object_mut().expect("object").remove("iss");
    assert_eq!(
        peek_issuer(&mint(Algorithm::HS256, None, &no_iss), 16384),
        None
    );
    assert_eq!(peek_issuer(&format!("{token}="), 16384), None);
    assert_eq!(peek_issuer(&format!("{token}.x"), 16384), None);
    assert_eq!(peek_issuer(&token, 10), None);
    let none = format!(
        "{}.{}.",
        b64u(br#"{"alg":"none"}"#),
        b64u(claims().to_string().as_bytes())
    );
    assert_eq!(peek_issuer(&none, 16384), None);
    let crit = hs256_raw(
        r#"{"alg":"HS256","crit":["x"]}"#,
        &claims().to_string(),
        SECRET,
    );
    assert_eq!(peek_issuer(&crit, 16384), None);
}

#[test]
fn error_messages_carry_no_token_or_key_material() {
    let token = mint(Algorithm::HS256, Some("secret-kid"), &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let errors = [
        sig_err(
            &token,
            &[Key::hmac(SECRET).expect("hmac").with_kid("other")],
            &[Algorithm::HS256],
        ),
        sig_err(&format!("{token}="), &hs_key(), &[Algorithm::HS256]),
        sig_err(&token, &hs_key(), &[Algorithm::RS256]),
        JwsError::MissingClaim("aud".to_owned()),
    ];
    for err in errors {
        let msg = err.to_string();
        assert!(msg.chars().all(|c| c != '\n'), "{msg}");
        assert_eq!(msg, msg.to_lowercase(), "lower-case: {msg}");
        for part in &parts {
            assert!(!msg.contains(part), "{msg}");
        }
        assert!(!msg.contains("secret-kid"));
    }
}
