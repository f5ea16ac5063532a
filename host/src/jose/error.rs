//! Errors. Messages are one lower-case line and never contain the token, a claim value or key
//! material: reasons are static strings, and the only dynamic parts are claim names chosen by
//! the configuration and numeric limits.

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// The token is not a well-formed JWS in compact serialization.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token exceeds the configured byte limit (checked before any decoding).
    #[error("token is larger than the configured limit")]
    TooLarge,
    /// The header names an algorithm this verifier does not implement (including `none`).
    #[error("token algorithm is not supported (alg none is never accepted)")]
    UnsupportedAlgorithm,
    /// The header names a supported algorithm that this provider does not allow.
    #[error("token algorithm is not allowed for this provider")]
    AlgorithmNotAllowed,
    /// The header has `crit`; no extensions are implemented.
    #[error("token header has crit; no jws extensions are supported")]
    CritUnsupported,
    /// A JSON object in the header or payload repeats a member name.
    #[error("token json has a duplicate member name")]
    DuplicateMember,
    /// The header's `kid` names no key of this provider (callers may refetch the key set once).
    #[error("token kid does not match any key of this provider")]
    UnknownKid,
    /// No key of this provider can verify this algorithm.
    #[error("no key of this provider is usable with the token algorithm")]
    NoMatchingKey,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the allowed skew).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// A claim the policy requires is absent.
    #[error("token lacks the required claim `{0}`")]
    MissingClaim(String),
    /// `iss` is not one of the accepted issuers.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` names none of the accepted audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// The header's `typ` is missing or not one of the accepted types.
    #[error("token type is not accepted")]
    WrongType,
}

/// Why a key (or a key set) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// HMAC secrets must be long enough to resist guessing.
    #[error(
        "hmac secret is shorter than {min} bytes; use a random secret of at least {min} bytes"
    )]
    HmacSecretTooShort {
        /// The minimum length in bytes.
        min: usize,
    },
    /// The key is structurally wrong (bad JWK member, bad base64url, bad DER, ...).
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// `kty` is missing or not RSA, EC, OKP or oct.
    #[error("unsupported key type; use RSA, EC, OKP or oct")]
    UnsupportedKeyType,
    /// The curve is not P-256, P-384, P-521 or Ed25519.
    #[error("unsupported curve; use P-256, P-384, P-521 or Ed25519")]
    UnsupportedCurve,
    /// The JWK's `alg` is not a supported signature algorithm.
    #[error("key alg is not a supported jws signature algorithm")]
    UnsupportedAlgorithm,
    /// The JWK's `alg` does not fit the key's type or curve.
    #[error("key alg does not match the key type")]
    AlgorithmMismatch,
    /// `use` or `key_ops` says the key is not for verifying signatures.
    #[error("key is not meant for signature verification (use/key_ops)")]
    NotForSignatures,
    /// RSA modulus outside 2048..=8192 bits.
    #[error("rsa key size must be between 2048 and 8192 bits")]
    RsaKeySize,
    /// aws-lc-rs rejected the key (e.g. EC point not on the curve).
    #[error("key rejected by the crypto library")]
    Rejected,
    /// PEM armour problem.
    #[error("malformed pem: {0}")]
    Pem(&'static str),
    /// The key set document is bigger than the limit.
    #[error("key set document is larger than {max} bytes")]
    TooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// The key set has more keys than the limit.
    #[error("key set has more than {max} keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// A JSON object repeats a member name.
    #[error("key json has a duplicate member name")]
    DuplicateMember,
}
