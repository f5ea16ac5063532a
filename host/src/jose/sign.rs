//! Compact JWS signing for plugins that must authenticate themselves to a provider (a Google
//! service account's JWT bearer grant, RFC 7523). Only RS256 with a PKCS#8 (`BEGIN PRIVATE KEY`)
//! or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM is offered: it is what those grants use.
//!
//! The token is made by `jsonwebtoken` (as `portcullis token` makes its tokens), from the DER
//! that the host's one PEM reader (`rustls-pki-types`, through `der::read_pem`) takes out of the PEM.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::SectionKind;

use super::der;

/// Why a token could not be signed. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(pub String);

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const NOT_RSA: &str = "private key is not an RSA key of a usable size";

/// Signs `claims` (a JSON object) with RS256. `kid`, when given, goes into the header.
pub fn sign_rs256(
    claims: &serde_json::Value,
    kid: Option<&str>,
    private_key_pem: &str,
) -> Result<String, SignError> {
    if !claims.is_object() {
        return Err(SignError("claims must be a JSON object".into()));
    }
    let block = der::read_pem(private_key_pem)
        .map_err(|e| SignError(format!("private key is not a usable PEM: {e}")))?;
    // jsonwebtoken takes an RSA key as PKCS#1 DER.
    let pkcs1 = match &block {
        Some((SectionKind::RsaPrivateKey, pkcs1)) => pkcs1.as_slice(),
        Some((SectionKind::PrivateKey, pkcs8)) => {
            der::pkcs8_rsa_private_key(pkcs8).map_err(|_| SignError(NOT_RSA.into()))?
        }
        _ => {
            return Err(SignError(
                "private key PEM has no `PRIVATE KEY` or `RSA PRIVATE KEY` block".into(),
            ))
        }
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    // The key is parsed when it signs: an unusable key is the only way this fails (the claims are
    // a JSON object and the header names RS256 for an RSA key). jsonwebtoken's error is not shown.
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(pkcs1))
        .map_err(|_| SignError(NOT_RSA.into()))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
    use base64::Engine as _;

    use super::*;
    use crate::jose::{verify, Algorithm, Key, Validation};

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    #[test]
    fn a_signed_token_verifies_with_the_public_key() {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        let pkcs1 = der::pkcs8_rsa_private_key(pkcs8.as_ref()).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        let key = Key::from_spki_der(spki.as_ref()).unwrap().with_kid("k1");
        let claims = serde_json::json!({"iss": "svc@example", "exp": 4_000_000_000u64});
        for pem in [
            pem("PRIVATE KEY", pkcs8.as_ref()),
            pem("RSA PRIVATE KEY", pkcs1),
        ] {
            let token = sign_rs256(&claims, Some("k1"), &pem).unwrap();
            let v = verify(
                &token,
                std::slice::from_ref(&key),
                &Validation::new(vec![Algorithm::RS256]),
                1_000,
            )
            .unwrap();
            assert_eq!(v.claims["iss"], "svc@example");
            assert_eq!(v.header.kid.as_deref(), Some("k1"));
        }
        let token = sign_rs256(&claims, None, &pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
        let v = verify(
            &token,
            &[Key::from_spki_der(spki.as_ref()).unwrap()],
            &Validation::new(vec![Algorithm::RS256]),
            1_000,
        )
        .unwrap();
        assert_eq!(v.header.kid, None);
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let err = sign_rs256(&serde_json::json!({}), None, "secret-not-a-pem").unwrap_err();
        assert!(!err.0.contains("secret-not-a-pem"));
        let err = sign_rs256(&serde_json::json!([1]), None, "x").unwrap_err();
        assert!(err.0.contains("object"));
        // Broken armour, a body that is no key, an EC key, a public key: refused, never quoted.
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let ec_pkcs8 = ec.to_pkcs8v1().unwrap();
        for text in [
            "-----BEGIN PRIVATE KEY secret-label\nAAAA\n".to_owned(),
            "-----BEGIN PRIVATE KEY-----\nsecret!body\n-----END PRIVATE KEY-----\n".to_owned(),
            pem("PRIVATE KEY", b"secret-bytes"),
            pem("RSA PRIVATE KEY", b"secret-bytes"),
            pem("PRIVATE KEY", ec_pkcs8.as_ref()),
            pem("PUBLIC KEY", b"secret-bytes"),
        ] {
            let err = sign_rs256(&serde_json::json!({}), None, &text).unwrap_err();
            assert!(!err.0.contains("secret"), "{err}");
        }
    }
}
