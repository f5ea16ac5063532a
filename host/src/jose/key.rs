//! Verification keys: from JWK, PEM or an HMAC secret, and the raw signature check.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use aws_lc_rs::{hmac, signature};
use rustls_pki_types::pem::SectionKind;
use serde_json::{Map, Value};

use super::alg::{Algorithm, Curve, KeyFamily};
use super::b64;
use super::der::{self, PublicKeyInfo};
use super::error::KeyError;
use super::json::{self, JsonError};

/// Shortest HMAC secret accepted (256 bits, the HS256 output size; RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_LEN: usize = 32;
/// Default cap for a JWKS document's size.
pub const DEFAULT_MAX_JWKS_BYTES: usize = 512 * 1024;
/// Default cap for the number of keys in a JWKS document.
pub const DEFAULT_MAX_JWKS_KEYS: usize = 100;

const RSA_MIN_BITS: usize = 2048;
/// Why a PEM document gives no public key: it holds no block of a kind read here.
const EXPECTED_PUBLIC_PEM: &str = "expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE";
const RSA_MAX_BITS: usize = 8192;

#[derive(Clone)]
enum Material {
    /// An HMAC secret (at least [`MIN_HMAC_SECRET_LEN`] bytes).
    Hmac(Vec<u8>),
    /// RSA modulus and public exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        parsed: Arc<Parsed>,
    },
    /// An uncompressed point `04 ‖ x ‖ y` on `curve`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
        parsed: Arc<Parsed>,
    },
    /// A 32-byte Ed25519 public key.
    Ed25519 { x: Vec<u8>, parsed: Arc<Parsed> },
}

/// A public key parsed for verification once per algorithm, on first use, and shared by every
/// clone of the key: an RSA key keeps its Montgomery set-up, an EC key its decoded point. A key
/// that does not parse for an algorithm stays `None` and verifies nothing with it.
#[derive(Default)]
struct Parsed([OnceLock<Option<signature::ParsedPublicKey>>; 6]);

impl Parsed {
    fn verify(
        &self,
        slot: usize,
        parse: impl FnOnce() -> Option<signature::ParsedPublicKey>,
        message: &[u8],
        sig: &[u8],
    ) -> bool {
        self.0
            .get(slot)
            .and_then(|cell| cell.get_or_init(parse).as_ref())
            .is_some_and(|key| key.verify_sig(message, sig).is_ok())
    }
}

/// One verification key.
///
/// The key's type decides which algorithms can use it: an RSA, EC or OKP key is never treated
/// as an HMAC secret, an EC key only serves the algorithm of its curve, and a key pinned by a
/// JWK `alg` member serves that algorithm only. `Debug` never prints key material.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    material: Material,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family())
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC key. Secrets shorter than [`MIN_HMAC_SECRET_LEN`] bytes are refused.
    pub fn hmac(secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(KeyError::HmacSecretTooShort {
                min: MIN_HMAC_SECRET_LEN,
            });
        }
        Ok(Key {
            kid: None,
            alg: None,
            material: Material::Hmac(secret.to_vec()),
        })
    }

    /// A public key from PEM: `PUBLIC KEY` (SPKI with RSA, EC P-256/384/521 or Ed25519),
    /// `RSA PUBLIC KEY` (PKCS#1) or `CERTIFICATE` (X.509; only its public key is used, the
    /// certificate itself is not validated).
    pub fn from_pem(pem: &str) -> Result<Key, KeyError> {
        let info = match der::read_pem(pem)? {
            Some((SectionKind::PublicKey, block)) => der::parse_spki(&block)?,
            Some((SectionKind::Certificate, block)) => der::parse_certificate_spki(&block)?,
            Some(_) => return Err(KeyError::Pem(EXPECTED_PUBLIC_PEM)),
            // No block the PEM reader knows: perhaps PKCS#1, whose label it does not know.
            None => match der::read_pkcs1_public_pem(pem)? {
                Some(block) => der::parse_pkcs1_rsa_public_key(&block)?,
                None => return Err(KeyError::Pem(EXPECTED_PUBLIC_PEM)),
            },
        };
        Key::from_public_key_info(info)
    }

    /// A public key from DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Key, KeyError> {
        Key::from_public_key_info(der::parse_spki(der)?)
    }

    fn from_public_key_info(info: PublicKeyInfo) -> Result<Key, KeyError> {
        let material = match info {
            PublicKeyInfo::Rsa { n, e } => rsa_material(n, e)?,
            PublicKeyInfo::Ec { curve, point } => ec_material(curve, point)?,
            PublicKeyInfo::Ed25519(x) => ed25519_material(x)?,
        };
        Ok(Key {
            kid: None,
            alg: None,
            material,
        })
    }

    /// An EC public key from an uncompressed SEC1 point (`04 ‖ x ‖ y`).
    #[cfg(test)]
    pub(super) fn ec_from_point(curve: Curve, point: &[u8]) -> Result<Key, KeyError> {
        if point.len() != 1 + 2 * curve.field_len() || point.first() != Some(&0x04) {
            return Err(KeyError::Malformed(
                "ec public key is not an uncompressed point of the curve",
            ));
        }
        Ok(Key {
            kid: None,
            alg: None,
            material: ec_material(curve, point.to_vec())?,
        })
    }

    /// A key from a JWK (RFC 7517). Only the public members are read (`d`, `p`, ... are
    /// ignored), so a private JWK yields its public key. `use` must be `sig` if present,
    /// `key_ops` must contain `verify` if present, and `alg`, if present, pins the key to that
    /// one algorithm. `x5c`/`x5u` are not used.
    pub fn from_jwk(jwk: &Value) -> Result<Key, KeyError> {
        let obj = jwk
            .as_object()
            .ok_or(KeyError::Malformed("jwk is not a json object"))?;
        if let Some(usage) = obj.get("use") {
            match usage.as_str() {
                Some("sig") => {}
                Some(_) => return Err(KeyError::NotForSignatures),
                None => return Err(KeyError::Malformed("jwk use is not a string")),
            }
        }
        if let Some(ops) = obj.get("key_ops") {
            let ops = ops
                .as_array()
                .ok_or(KeyError::Malformed("jwk key_ops is not an array"))?;
            let mut verify = false;
            for op in ops {
                match op.as_str() {
                    Some("verify") => verify = true,
                    Some(_) => {}
                    None => return Err(KeyError::Malformed("jwk key_ops has a non-string")),
                }
            }
            if !verify {
                return Err(KeyError::NotForSignatures);
            }
        }
        let alg = match obj.get("alg") {
            None => None,
            Some(Value::String(s)) => {
                Some(Algorithm::parse(s).ok_or(KeyError::UnsupportedAlgorithm)?)
            }
            Some(_) => return Err(KeyError::Malformed("jwk alg is not a string")),
        };
        let kid = match obj.get("kid") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(KeyError::Malformed("jwk kid is not a string")),
        };
        let kty = obj
            .get("kty")
            .and_then(Value::as_str)
            .ok_or(KeyError::UnsupportedKeyType)?;
        let material = match kty {
            "RSA" => {
                let n = jwk_bytes(obj, "n")?;
                let e = jwk_bytes(obj, "e")?;
                rsa_material(strip_leading_zeros(n), strip_leading_zeros(e))?
            }
            "EC" => {
                let crv = obj
                    .get("crv")
                    .and_then(Value::as_str)
                    .ok_or(KeyError::Malformed("ec jwk lacks crv"))?;
                let curve = Curve::from_jwk_name(crv).ok_or(KeyError::UnsupportedCurve)?;
                let x = jwk_bytes(obj, "x")?;
                let y = jwk_bytes(obj, "y")?;
                // RFC 7518 §6.2.1.2: coordinates are full-length octet strings.
                if x.len() != curve.field_len() || y.len() != curve.field_len() {
                    return Err(KeyError::Malformed(
                        "ec jwk coordinate has the wrong length",
                    ));
                }
                let mut point = Vec::with_capacity(1 + 2 * curve.field_len());
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                ec_material(curve, point)?
            }
            "OKP" => {
                let crv = obj
                    .get("crv")
                    .and_then(Value::as_str)
                    .ok_or(KeyError::Malformed("okp jwk lacks crv"))?;
                if crv != "Ed25519" {
                    return Err(KeyError::UnsupportedCurve);
                }
                ed25519_material(jwk_bytes(obj, "x")?)?
            }
            "oct" => {
                let k = jwk_bytes(obj, "k")?;
                Key::hmac(&k)?.material
            }
            _ => return Err(KeyError::UnsupportedKeyType),
        };
        let key = Key {
            kid,
            alg: None,
            material,
        };
        if let Some(alg) = alg {
            if !key.material_supports(alg) {
                return Err(KeyError::AlgorithmMismatch);
            }
        }
        Ok(Key { alg, ..key })
    }

    /// Sets the key id used to match a token's `kid`.
    pub fn with_kid(self, kid: impl Into<String>) -> Key {
        Key {
            kid: Some(kid.into()),
            ..self
        }
    }

    /// Pins the key to one algorithm (as a JWK `alg` does). Fails if the key cannot serve it.
    pub fn with_algorithm(self, alg: Algorithm) -> Result<Key, KeyError> {
        if !self.material_supports(alg) {
            return Err(KeyError::AlgorithmMismatch);
        }
        Ok(Key {
            alg: Some(alg),
            ..self
        })
    }

    /// Whether `other` is the same key: same id, same pinned algorithm, same key material.
    pub fn same_key(&self, other: &Key) -> bool {
        self.kid == other.kid
            && self.alg == other.alg
            && match (&self.material, &other.material) {
                (Material::Hmac(a), Material::Hmac(b)) => a == b,
                (Material::Rsa { n, e, .. }, Material::Rsa { n: n2, e: e2, .. }) => {
                    n == n2 && e == e2
                }
                (
                    Material::Ec { curve, point, .. },
                    Material::Ec {
                        curve: c2,
                        point: p2,
                        ..
                    },
                ) => curve == c2 && point == p2,
                (Material::Ed25519 { x, .. }, Material::Ed25519 { x: x2, .. }) => x == x2,
                _ => false,
            }
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm the key is pinned to, if any.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The key's family.
    pub fn family(&self) -> KeyFamily {
        match self.material {
            Material::Hmac(_) => KeyFamily::Hmac,
            Material::Rsa { .. } => KeyFamily::Rsa,
            Material::Ec { .. } => KeyFamily::Ec,
            Material::Ed25519 { .. } => KeyFamily::Ed,
        }
    }

    /// Whether this key may verify signatures made with `alg`: the family and curve must fit,
    /// a pinned key serves only its algorithm, and HMAC secrets must be at least as long as
    /// the hash output (RFC 7518 §3.2).
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|pinned| pinned == alg) && self.material_supports(alg)
    }

    fn material_supports(&self, alg: Algorithm) -> bool {
        match &self.material {
            Material::Hmac(secret) => match alg {
                Algorithm::HS256 => secret.len() >= 32,
                Algorithm::HS384 => secret.len() >= 48,
                Algorithm::HS512 => secret.len() >= 64,
                _ => false,
            },
            Material::Rsa { .. } => alg.family() == KeyFamily::Rsa,
            Material::Ec { curve, .. } => curve.algorithm() == alg,
            Material::Ed25519 { .. } => alg == Algorithm::EdDSA,
        }
    }
}

fn jwk_bytes(obj: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, KeyError> {
    let s = obj
        .get(member)
        .and_then(Value::as_str)
        .ok_or(KeyError::Malformed("jwk lacks a required member"))?;
    b64::decode(s).map_err(|_| KeyError::Malformed("jwk member is not strict base64url"))
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

fn rsa_material(n: Vec<u8>, e: Vec<u8>) -> Result<Material, KeyError> {
    let bits = match n.first() {
        Some(&first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(KeyError::RsaKeySize);
    }
    if e.is_empty() || e.len() > 4 {
        return Err(KeyError::Malformed("rsa public exponent is out of range"));
    }
    signature::RsaPublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    }
    .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
    .map_err(|_| KeyError::Rejected)?;
    Ok(Material::Rsa {
        n,
        e,
        parsed: Arc::default(),
    })
}

fn ec_material(curve: Curve, point: Vec<u8>) -> Result<Material, KeyError> {
    // Checks that the point is on the curve (and not the point at infinity).
    signature::ParsedPublicKey::new(curve.verification(), &point)
        .map_err(|_| KeyError::Rejected)?;
    Ok(Material::Ec {
        curve,
        point,
        parsed: Arc::default(),
    })
}

fn ed25519_material(x: Vec<u8>) -> Result<Material, KeyError> {
    if x.len() != signature::ED25519_PUBLIC_KEY_LEN {
        return Err(KeyError::Malformed("ed25519 public key is not 32 bytes"));
    }
    signature::ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| KeyError::Rejected)?;
    Ok(Material::Ed25519 {
        x,
        parsed: Arc::default(),
    })
}

/// Checks `signature` over `message` with `key` under `alg`. Returns `false` when the key
/// cannot serve `alg` (see [`Key::supports`]) or the signature does not verify. ECDSA takes
/// only the fixed-length `r ‖ s` form; DER signatures are refused.
pub(super) fn verify_raw(alg: Algorithm, key: &Key, message: &[u8], sig: &[u8]) -> bool {
    if !key.supports(alg) || sig.is_empty() {
        return false;
    }
    match &key.material {
        Material::Hmac(secret) => {
            let algorithm = match alg {
                Algorithm::HS256 => hmac::HMAC_SHA256,
                Algorithm::HS384 => hmac::HMAC_SHA384,
                Algorithm::HS512 => hmac::HMAC_SHA512,
                _ => return false,
            };
            // Constant-time comparison of the tag.
            hmac::verify(&hmac::Key::new(algorithm, secret), message, sig).is_ok()
        }
        Material::Rsa { n, e, parsed } => {
            let (slot, params): (usize, &'static signature::RsaParameters) = match alg {
                Algorithm::RS256 => (0, &signature::RSA_PKCS1_2048_8192_SHA256),
                Algorithm::RS384 => (1, &signature::RSA_PKCS1_2048_8192_SHA384),
                Algorithm::RS512 => (2, &signature::RSA_PKCS1_2048_8192_SHA512),
                Algorithm::PS256 => (3, &signature::RSA_PSS_2048_8192_SHA256),
                Algorithm::PS384 => (4, &signature::RSA_PSS_2048_8192_SHA384),
                Algorithm::PS512 => (5, &signature::RSA_PSS_2048_8192_SHA512),
                _ => return false,
            };
            // The signature is exactly as long as the modulus (RFC 8017 §8.1.2, §8.2.2).
            if sig.len() != n.len() {
                return false;
            }
            let parse = || {
                signature::RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(params)
                .ok()
            };
            parsed.verify(slot, parse, message, sig)
        }
        Material::Ec {
            curve,
            point,
            parsed,
        } => {
            if sig.len() != 2 * curve.field_len() {
                return false;
            }
            let parse = || signature::ParsedPublicKey::new(curve.verification(), point).ok();
            parsed.verify(0, parse, message, sig)
        }
        Material::Ed25519 { x, parsed } => {
            if sig.len() != 64 {
                return false;
            }
            let parse = || signature::ParsedPublicKey::new(&signature::ED25519, x).ok();
            parsed.verify(0, parse, message, sig)
        }
    }
}

/// Parses a certificate map as Google's `securetoken` endpoint serves it: a JSON object mapping
/// each `kid` to an X.509 certificate in PEM (`{"<kid>": "-----BEGIN CERTIFICATE-----\n…"}`).
/// Only each certificate's public key is used (as Firebase's Admin SDK does; the certificate is
/// not validated as a chain). The byte cap is checked before parsing; a body with an `error`
/// member (Google's OAuth-style error answer) is refused; entries that are not strings or do not
/// parse are skipped, and the second value is how many were.
pub fn parse_x509_map_limited(
    bytes: &[u8],
    max_keys: usize,
    max_bytes: usize,
) -> Result<(Vec<Key>, usize), KeyError> {
    if bytes.len() > max_bytes {
        return Err(KeyError::TooLarge { max: max_bytes });
    }
    let doc = json::parse_object(bytes).map_err(|e| match e {
        JsonError::Duplicate => KeyError::DuplicateMember,
        JsonError::TooDeep => KeyError::Malformed("certificate map json is nested too deeply"),
        JsonError::NotObject => KeyError::Malformed("certificate map is not a json object"),
        JsonError::Syntax => KeyError::Malformed("certificate map is not valid json"),
    })?;
    if doc.contains_key("error") {
        return Err(KeyError::Malformed(
            "certificate endpoint answered with an error object",
        ));
    }
    if doc.len() > max_keys {
        return Err(KeyError::TooManyKeys { max: max_keys });
    }
    let mut keys = Vec::with_capacity(doc.len());
    let mut skipped = 0;
    for (kid, value) in &doc {
        let parsed = match value {
            Value::String(pem) if !kid.is_empty() && kid.len() <= super::MAX_KID_BYTES => {
                Key::from_pem(pem).ok()
            }
            _ => None,
        };
        match parsed {
            Some(key) => keys.push(key.with_kid(kid.clone())),
            None => skipped += 1,
        }
    }
    Ok((keys, skipped))
}

/// Parses a JWKS document (`{"keys":[...]}`) of at most [`DEFAULT_MAX_JWKS_BYTES`] bytes and
/// `max_keys` keys. Keys that do not parse, or are not for signatures, are skipped; the second
/// value is how many were skipped.
pub fn parse_jwks(bytes: &[u8], max_keys: usize) -> Result<(Vec<Key>, usize), KeyError> {
    parse_jwks_limited(bytes, max_keys, DEFAULT_MAX_JWKS_BYTES)
}

/// [`parse_jwks`] with an explicit byte cap, checked before parsing.
pub fn parse_jwks_limited(
    bytes: &[u8],
    max_keys: usize,
    max_bytes: usize,
) -> Result<(Vec<Key>, usize), KeyError> {
    if bytes.len() > max_bytes {
        return Err(KeyError::TooLarge { max: max_bytes });
    }
    let doc = json::parse_object(bytes).map_err(|e| match e {
        JsonError::Duplicate => KeyError::DuplicateMember,
        JsonError::TooDeep => KeyError::Malformed("key set json is nested too deeply"),
        JsonError::NotObject => KeyError::Malformed("key set is not a json object"),
        JsonError::Syntax => KeyError::Malformed("key set is not valid json"),
    })?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(KeyError::Malformed("key set lacks a keys array"))?;
    if entries.len() > max_keys {
        return Err(KeyError::TooManyKeys { max: max_keys });
    }
    let mut keys = Vec::with_capacity(entries.len());
    let mut skipped = 0;
    for entry in entries {
        match Key::from_jwk(entry) {
            Ok(key) => keys.push(key),
            Err(_) => skipped += 1,
        }
    }
    Ok((keys, skipped))
}
