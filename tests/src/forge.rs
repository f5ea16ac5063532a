//! Building forged and hostile tokens by hand: any header, any payload, any signature bytes, and
//! keys of every type the `jwt` plugin accepts (HMAC, RSA, EC P-256, Ed25519) with their PEM and
//! JWK forms. Also [`Canary`], a local server that answers anything and counts every connection,
//! for "no URL from a token is ever fetched".

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};

use crate::{b64, pem_block};

/// What signs for a [`TestKey`].
enum Signer {
    Hmac(Vec<u8>),
    Rsa(Box<aws_lc_rs::rsa::KeyPair>),
    Ec {
        fixed: EcdsaKeyPair,
        asn1: EcdsaKeyPair,
    },
    Ed(Ed25519KeyPair),
}

/// A key of one type, its JWS algorithm, and its public forms.
pub struct TestKey {
    /// JWS `alg` it signs with.
    pub alg: &'static str,
    /// Short name for messages.
    pub kind: &'static str,
    /// Public key PEM (SPKI); for HMAC, the secret.
    pub pem: String,
    /// Public JWK (with `kid`); for HMAC, an `oct` JWK.
    pub jwk: serde_json::Value,
    /// DER of the public key (SPKI); for HMAC, the secret's bytes.
    pub der: Vec<u8>,
    /// Header members every [`TestKey::sign`] adds (e.g. `kid`, `typ`).
    pub base: serde_json::Value,
    signer: Signer,
}

impl TestKey {
    /// An HMAC-SHA256 key.
    pub fn hmac(secret: &str) -> TestKey {
        TestKey {
            alg: "HS256",
            kind: "HMAC",
            pem: secret.to_string(),
            jwk: serde_json::json!({"kty": "oct", "k": b64(secret.as_bytes())}),
            der: secret.as_bytes().to_vec(),
            base: serde_json::json!({}),
            signer: Signer::Hmac(secret.as_bytes().to_vec()),
        }
    }

    /// A fresh RSA-2048 key (RS256).
    pub fn rsa(kid: &str) -> TestKey {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("rsa keygen");
        let public = kp.public_key();
        let der = public.as_der().expect("spki").as_ref().to_vec();
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        let jwk = serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(n), "e": b64(e)});
        TestKey {
            alg: "RS256",
            kind: "RSA",
            pem: pem_block("PUBLIC KEY", &der),
            jwk,
            der,
            base: serde_json::json!({}),
            signer: Signer::Rsa(Box::new(kp)),
        }
    }

    /// A fresh P-256 key (ES256).
    pub fn ec(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("ec keygen");
        let fixed =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .expect("ec key");
        let asn1 =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
                .expect("ec key");
        let point = fixed.public_key().as_ref().to_vec(); // 0x04 || x || y
        let der = fixed.public_key().as_der().expect("spki").as_ref().to_vec();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        TestKey {
            alg: "ES256",
            kind: "EC",
            pem: pem_block("PUBLIC KEY", &der),
            jwk,
            der,
            base: serde_json::json!({}),
            signer: Signer::Ec { fixed, asn1 },
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> TestKey {
        let kp = Ed25519KeyPair::generate().expect("ed25519 keygen");
        let raw = kp.public_key().as_ref().to_vec();
        let der = kp.public_key().as_der().expect("spki").as_ref().to_vec();
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig", "x": b64(&raw)});
        TestKey {
            alg: "EdDSA",
            kind: "Ed25519",
            pem: pem_block("PUBLIC KEY", &der),
            jwk,
            der,
            base: serde_json::json!({}),
            signer: Signer::Ed(kp),
        }
    }

    /// The signature bytes over `input` (ECDSA as JWS wants it: raw `r‖s`).
    pub fn signature(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Hmac(k) => hmac(k, input),
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .expect("rsa sign");
                sig
            }
            Signer::Ec { fixed, .. } => fixed.sign(&rng, input).expect("sign").as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(input).as_ref().to_vec(),
        }
    }

    /// An ECDSA signature DER-encoded (as X.509 uses it, not JWS); `None` for other key types.
    pub fn der_signature(&self, input: &[u8]) -> Option<Vec<u8>> {
        match &self.signer {
            Signer::Ec { asn1, .. } => Some(
                asn1.sign(&SystemRandom::new(), input)
                    .expect("sign")
                    .as_ref()
                    .to_vec(),
            ),
            _ => None,
        }
    }

    /// A compact token with exactly this header and payload text, signed by this key.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = self.signature(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// With header members every [`TestKey::sign`] adds.
    pub fn with_base(mut self, base: serde_json::Value) -> TestKey {
        self.base = base;
        self
    }

    /// The header [`TestKey::sign`] uses: `{"alg": <alg>, "typ": "JWT"}`, then [`TestKey::base`],
    /// then `extra` members.
    pub fn header(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut h = serde_json::json!({"alg": self.alg, "typ": "JWT"});
        for add in [&self.base, &extra] {
            if let (Some(m), Some(e)) = (h.as_object_mut(), add.as_object()) {
                for (k, v) in e {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        h
    }

    /// A normal token with [`TestKey::header`]`(extra_header)`.
    pub fn sign(&self, extra_header: serde_json::Value, claims: &serde_json::Value) -> String {
        self.sign_raw(&self.header(extra_header).to_string(), &claims.to_string())
    }
}

/// HMAC-SHA256 of `input` under `key` (any length, even empty: forgers do not follow rules).
pub fn hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&k, input).as_ref().to_vec()
}

/// A compact token with this header and payload text whose "signature" is HMAC-SHA256 under
/// `key`, whatever the header says.
pub fn hmac_token(key: &[u8], header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = hmac(key, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// A compact token with these parts and these signature bytes.
pub fn with_signature(header: &str, payload: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(sig)
    )
}

/// A server that accepts anything on 127.0.0.1 and counts every connection it is ever offered.
/// Injected `jku`/`x5u` URLs point here; a count above zero means a token made us fetch.
pub struct Canary {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Canary {
    /// Starts it; it serves `body` (e.g. an attacker's JWKS) to whoever connects.
    pub async fn start(body: String) -> Canary {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind canary");
        let addr = l.local_addr().expect("addr");
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Canary {
            addr,
            hits,
            _task: task,
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections offered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}
