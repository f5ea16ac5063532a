//! Strict JWS (compact serialization) verification and JWT claim validation.
//!
//! Every signature is checked with aws-lc-rs. The design follows the "Tokens" section of
//! `SECURITY.md`:
//!
//! * algorithms are pinned by the caller ([`Validation::algorithms`]); the token's `alg` only
//!   selects among them, and `none` (in any spelling) does not exist here;
//! * a key is typed (HMAC secret, RSA, EC curve, Ed25519): an RSA/EC/OKP key is never an HMAC
//!   secret, and a key whose JWK carries `alg` is used with that algorithm only;
//! * `jwk`, `jku`, `x5u`, `x5c`, `x5t` headers are ignored; `kid` is only compared for equality
//!   with the `kid`s of the keys the caller passes in;
//! * `crit` is refused (no extensions are implemented), duplicate JSON members are refused at
//!   every depth, JSON nesting is capped, and the token's size is capped before any decoding;
//! * base64url is strict: no padding, no whitespace, no characters outside the alphabet and no
//!   non-canonical trailing bits.
//!
//! Two layers: [`verify_signature`] (compact parsing, header checks, key selection and the
//! signature) and `verify` (the signature plus the payload's claims, with an injected clock).
//!
//! ```ignore
//! // (module path depends on where the module is mounted: `crate::jose` in the host)
//! # fn demo(token: &str, secret: &[u8], now: u64) -> Result<(), Box<dyn std::error::Error>> {
//! let keys = vec![Key::hmac(secret)?.with_kid("k1")];
//! let mut validation = Validation::new(vec![Algorithm::HS256]);
//! validation.issuer = Some(vec!["https://issuer.example".to_owned()]);
//! validation.audience = Some(vec!["my-api".to_owned()]);
//! let verified = verify(token, &keys, &validation, now)?;
//! println!("sub = {:?}", verified.claims.get("sub"));
//! # Ok(()) }
//! ```

mod alg;
mod b64;
mod der;
mod error;
mod json;
mod key;
mod sign;
mod verify;

pub use self::alg::{Algorithm, KeyFamily, UnknownAlgorithm};
pub use self::error::{JwsError, KeyError};
pub use self::json::MAX_JSON_DEPTH;
pub use self::key::{
    parse_jwks, parse_jwks_limited, parse_x509_map_limited, Key, DEFAULT_MAX_JWKS_BYTES,
    DEFAULT_MAX_JWKS_KEYS, MIN_HMAC_SECRET_LEN,
};
pub use self::sign::{sign_rs256, SignError};
pub use self::verify::{
    exp_member, peek_exp, peek_issuer, verify, verify_signature, Header, PeekedExp, Validation,
    Verified, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_BYTES, MAX_KID_BYTES,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wycheproof;
