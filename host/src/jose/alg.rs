//! JWS algorithm names (RFC 7518 §3.1, RFC 8037 §3.1) and key families.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature;

/// A JWS signature algorithm. `none` is deliberately not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 (MGF1 SHA-256, salt length 32).
    PS256,
    /// RSASSA-PSS with SHA-384 (MGF1 SHA-384, salt length 48).
    PS384,
    /// RSASSA-PSS with SHA-512 (MGF1 SHA-512, salt length 64).
    PS512,
    /// ECDSA on P-256 with SHA-256, raw `r‖s` signature.
    ES256,
    /// ECDSA on P-384 with SHA-384, raw `r‖s` signature.
    ES384,
    /// ECDSA on P-521 with SHA-512, raw `r‖s` signature.
    ES512,
    /// EdDSA; only the Ed25519 curve is supported.
    EdDSA,
}

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// A shared secret (`kty: oct`).
    Hmac,
    /// An RSA public key (`kty: RSA`).
    Rsa,
    /// An elliptic-curve public key (`kty: EC`).
    Ec,
    /// An Edwards-curve public key (`kty: OKP`).
    Ed,
}

impl Algorithm {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// Parses an exact, case-sensitive JOSE algorithm name. `none` (in any spelling) and every
    /// unknown name give `None`.
    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The JOSE name of the algorithm.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The key family the algorithm needs.
    pub fn family(&self) -> KeyFamily {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => KeyFamily::Hmac,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyFamily::Rsa,
            Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 => KeyFamily::Ec,
            Algorithm::EdDSA => KeyFamily::Ed,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Algorithm::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported jws algorithm; use one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA")]
pub struct UnknownAlgorithm;

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::parse(s).ok_or(UnknownAlgorithm)
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Algorithm::parse(&s).ok_or_else(|| serde::de::Error::custom(UnknownAlgorithm))
    }
}

impl fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFamily::Hmac => "hmac",
            KeyFamily::Rsa => "rsa",
            KeyFamily::Ec => "ec",
            KeyFamily::Ed => "ed25519",
        })
    }
}

/// The NIST curves usable with ECDSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// Bytes of one coordinate (and of `r` and `s` in a signature).
    pub(super) fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    pub(super) fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
            Curve::P521 => Algorithm::ES512,
        }
    }

    pub(super) fn verification(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
        }
    }

    pub(super) fn from_jwk_name(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }
}
