//! Compact JWS signing for plugins that must authenticate themselves to a provider (a Google
//! service account's JWT bearer grant, RFC 7523). Only RS256 with a PKCS#8 (`BEGIN PRIVATE KEY`)
//! or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM is offered: it is what those grants use.

use aws_lc_rs::{rand::SystemRandom, signature};
use base64::Engine as _;
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

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

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
    let key = match &block {
        Some((SectionKind::PrivateKey, pkcs8)) => signature::RsaKeyPair::from_pkcs8(pkcs8),
        Some((SectionKind::RsaPrivateKey, pkcs1)) => signature::RsaKeyPair::from_der(pkcs1),
        _ => {
            return Err(SignError(
                "private key PEM has no `PRIVATE KEY` or `RSA PRIVATE KEY` block".into(),
            ))
        }
    }
    .map_err(|_| SignError("private key is not an RSA key of a usable size".into()))?;
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| SignError("signing failed".into()))?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{verify, Algorithm, Key, Validation};

    #[test]
    fn a_signed_token_verifies_with_the_public_key() {
        let pkcs8 =
            signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).and_then(|k| {
                use aws_lc_rs::encoding::AsDer as _;
                k.as_der().map(|d| (k, d))
            });
        let (pair, der) = pkcs8.unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        use aws_lc_rs::signature::KeyPair as _;
        let public = pair.public_key();
        let spki = {
            use aws_lc_rs::encoding::AsDer as _;
            public.as_der().unwrap()
        };
        let key = Key::from_spki_der(spki.as_ref()).unwrap().with_kid("k1");
        let claims = serde_json::json!({"iss": "svc@example", "exp": 4_000_000_000u64});
        let token = sign_rs256(&claims, Some("k1"), &pem).unwrap();
        let v = verify(
            &token,
            &[key],
            &Validation::new(vec![Algorithm::RS256]),
            1_000,
        )
        .unwrap();
        assert_eq!(v.claims["iss"], "svc@example");
        assert_eq!(v.header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let err = sign_rs256(&serde_json::json!({}), None, "secret-not-a-pem").unwrap_err();
        assert!(!err.0.contains("secret-not-a-pem"));
        let err = sign_rs256(&serde_json::json!([1]), None, "x").unwrap_err();
        assert!(err.0.contains("object"));
    }
}
