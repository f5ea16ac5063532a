//! Compact JWS parsing, signature verification (layer 1) and claim validation (layer 2).

use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::b64::{self, B64Error};
use super::error::JwsError;
use super::json::{self, JsonError};
use super::key::{verify_raw, Key};

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default cap on a token's size, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `kid` accepted; longer ones are malformed (no real key set uses such ids).
pub const MAX_KID_BYTES: usize = 512;

/// Verification policy, fixed per provider when the configuration loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Allowed algorithms. The token's `alg` must be one of them; an empty list accepts
    /// nothing.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `iss` values; `None` = not checked.
    pub issuer: Option<Vec<String>>,
    /// If set, `aud` (a string or an array of strings) must contain one of these; a token
    /// without `aud` is refused.
    pub audience: Option<Vec<String>>,
    /// Clock leeway in seconds for `exp`, `nbf` (and `iat` through the default skew).
    pub leeway_secs: u64,
    /// Whether `exp` must be present.
    pub require_exp: bool,
    /// If set, `iat` may be at most this many seconds in the future; `None` = not checked.
    pub max_iat_skew_secs: Option<u64>,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// If set, the header's `typ` must be one of these (case-insensitive; an `application/`
    /// prefix is optional on both sides, RFC 7515 §4.1.9).
    pub typ: Option<Vec<String>>,
    /// Largest token accepted, in bytes; checked before any decoding.
    pub max_token_bytes: usize,
}

impl Default for Validation {
    /// No algorithm allowed (callers must pin theirs), issuer and audience unchecked, 30 s
    /// leeway, `exp` required, `iat` at most the leeway in the future, 16 KiB tokens.
    fn default() -> Self {
        Validation {
            algorithms: Vec::new(),
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            require_exp: true,
            max_iat_skew_secs: Some(DEFAULT_LEEWAY_SECS),
            required_claims: Vec::new(),
            typ: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

impl Validation {
    /// The default policy with these allowed algorithms.
    pub fn new(algorithms: Vec<Algorithm>) -> Self {
        Validation {
            algorithms,
            ..Validation::default()
        }
    }
}

/// The protected header members this verifier uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The algorithm (one of the allowed ones).
    pub alg: Algorithm,
    /// The key id, if present.
    pub kid: Option<String>,
    /// The type, if present.
    pub typ: Option<String>,
}

/// A token whose signature and claims were verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The protected header.
    pub header: Header,
    /// The payload exactly as decoded (not re-serialised).
    pub claims_json: String,
    /// The payload parsed as a JSON object.
    pub claims: Map<String, Value>,
}

/// The three parts of a compact JWS, split but not decoded.
struct Compact<'t> {
    header_b64: &'t str,
    payload_b64: &'t str,
    signature_b64: &'t str,
}

impl<'t> Compact<'t> {
    /// The JWS signing input: `BASE64URL(header) '.' BASE64URL(payload)`, as sent.
    fn signing_input(&self, token: &'t str) -> &'t [u8] {
        let len = self.header_b64.len() + 1 + self.payload_b64.len();
        &token.as_bytes()[..len]
    }
}

fn split_compact(token: &str, max_token_bytes: usize) -> Result<Compact<'_>, JwsError> {
    if token.len() > max_token_bytes {
        return Err(JwsError::TooLarge);
    }
    if token.is_empty() {
        return Err(JwsError::Malformed("empty token"));
    }
    if token.starts_with('{') {
        return Err(JwsError::Malformed("json serialization is not supported"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(if token.split('.').count() == 5 {
            JwsError::Malformed("jwe is not supported")
        } else {
            JwsError::Malformed("compact jws needs exactly three parts")
        });
    };
    if header_b64.is_empty() {
        return Err(JwsError::Malformed("empty header"));
    }
    Ok(Compact {
        header_b64,
        payload_b64,
        signature_b64,
    })
}

fn decode_part(part: &str, which: Part) -> Result<Vec<u8>, JwsError> {
    if part.is_empty() && matches!(which, Part::Signature) {
        // Checked after the header, so `alg: none` tokens report the algorithm.
        return Err(JwsError::Malformed("empty signature"));
    }
    b64::decode(part).map_err(|e| {
        JwsError::Malformed(match (which, e) {
            (Part::Header, B64Error::BadCharacter) => "header has a non-base64url character",
            (Part::Header, B64Error::NonCanonical) => "header is not canonical base64url",
            (Part::Payload, B64Error::BadCharacter) => "payload has a non-base64url character",
            (Part::Payload, B64Error::NonCanonical) => "payload is not canonical base64url",
            (Part::Signature, B64Error::BadCharacter) => "signature has a non-base64url character",
            (Part::Signature, B64Error::NonCanonical) => "signature is not canonical base64url",
        })
    })
}

#[derive(Clone, Copy)]
enum Part {
    Header,
    Payload,
    Signature,
}

fn parse_json_object(bytes: &[u8], which: Part) -> Result<Map<String, Value>, JwsError> {
    json::parse_object(bytes).map_err(|e| match (e, which) {
        (JsonError::Duplicate, _) => JwsError::DuplicateMember,
        (JsonError::TooDeep, _) => JwsError::Malformed("json is nested too deeply"),
        (JsonError::NotObject, Part::Header) => JwsError::Malformed("header is not a json object"),
        (JsonError::Syntax, Part::Header) => JwsError::Malformed("header is not valid json"),
        (JsonError::NotObject, _) => JwsError::Malformed("payload is not a json object"),
        (JsonError::Syntax, _) => JwsError::Malformed("payload is not valid json"),
    })
}

/// Decodes and checks the protected header; `algorithms` = `None` skips the allow-list (only
/// for [`peek_issuer`]).
fn parse_header(header_b64: &str, algorithms: Option<&[Algorithm]>) -> Result<Header, JwsError> {
    let bytes = decode_part(header_b64, Part::Header)?;
    let members = parse_json_object(&bytes, Part::Header)?;
    let alg = match members.get("alg") {
        Some(Value::String(s)) => Algorithm::parse(s).ok_or(JwsError::UnsupportedAlgorithm)?,
        Some(_) => return Err(JwsError::Malformed("header alg is not a string")),
        None => return Err(JwsError::Malformed("header lacks alg")),
    };
    // RFC 7515 §4.1.11: a recipient must understand every listed extension; we implement
    // none, so any `crit` (even an empty or malformed one) is refused.
    if members.contains_key("crit") {
        return Err(JwsError::CritUnsupported);
    }
    if let Some(allowed) = algorithms {
        if !allowed.contains(&alg) {
            return Err(JwsError::AlgorithmNotAllowed);
        }
    }
    let kid = match members.get("kid") {
        None => None,
        Some(Value::String(s)) if s.len() <= MAX_KID_BYTES => Some(s.clone()),
        Some(Value::String(_)) => return Err(JwsError::Malformed("header kid is too long")),
        Some(_) => return Err(JwsError::Malformed("header kid is not a string")),
    };
    let typ = match members.get("typ") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(JwsError::Malformed("header typ is not a string")),
    };
    // `jwk`, `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256` are deliberately never read.
    Ok(Header { alg, kid, typ })
}

/// Layer 1: parses a compact JWS, checks its header against `algorithms`, selects the keys
/// that may verify it and checks the signature. Returns the header, the decoded payload (any
/// bytes) and the key that verified it.
///
/// Key selection: with a `kid`, only keys with exactly that `kid` are candidates (none →
/// [`JwsError::UnknownKid`]); without, every key. Candidates that cannot serve the token's
/// `alg` ([`Key::supports`]) are dropped (none left → [`JwsError::NoMatchingKey`]).
pub fn verify_signature<'k>(
    token: &str,
    keys: &'k [Key],
    algorithms: &[Algorithm],
    max_token_bytes: usize,
) -> Result<(Header, Vec<u8>, &'k Key), JwsError> {
    let compact = split_compact(token, max_token_bytes)?;
    let header = parse_header(compact.header_b64, Some(algorithms))?;
    let payload = decode_part(compact.payload_b64, Part::Payload)?;
    let signature = decode_part(compact.signature_b64, Part::Signature)?;

    let mut candidates: Vec<&'k Key> = match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.kid() == Some(kid.as_str()))
            .collect(),
        None => keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(if header.kid.is_some() {
            JwsError::UnknownKid
        } else {
            JwsError::NoMatchingKey
        });
    }
    candidates.retain(|k| k.supports(header.alg));
    if candidates.is_empty() {
        return Err(JwsError::NoMatchingKey);
    }
    let input = compact.signing_input(token);
    for key in candidates {
        if verify_raw(header.alg, key, input, &signature) {
            return Ok((header, payload, key));
        }
    }
    Err(JwsError::BadSignature)
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; fractions are truncated
/// towards negative infinity.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i128>, JwsError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = value else {
        return Err(JwsError::Malformed(match name {
            "exp" => "exp is not a number",
            "nbf" => "nbf is not a number",
            _ => "iat is not a number",
        }));
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(i128::from(u)));
    }
    if let Some(i) = n.as_i64() {
        return Ok(Some(i128::from(i)));
    }
    match n.as_f64() {
        // Saturating float-to-int conversion; serde_json never yields NaN or infinities.
        Some(f) if f.is_finite() => Ok(Some(f.floor() as i128)),
        _ => Err(JwsError::Malformed("numeric date is out of range")),
    }
}

fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest.to_owned(),
        _ => lower,
    }
}

/// Layer 2: [`verify_signature`] with `validation.algorithms`, then the header's `typ` and
/// the payload's claims. `now` is the current time in Unix seconds.
pub fn verify(
    token: &str,
    keys: &[Key],
    validation: &Validation,
    now: u64,
) -> Result<Verified, JwsError> {
    let (header, payload, _key) = verify_signature(
        token,
        keys,
        &validation.algorithms,
        validation.max_token_bytes,
    )?;

    if let Some(accepted) = &validation.typ {
        let typ = header.typ.as_deref().ok_or(JwsError::WrongType)?;
        let typ = normalize_typ(typ);
        if !accepted.iter().any(|a| normalize_typ(a) == typ) {
            return Err(JwsError::WrongType);
        }
    }

    let claims = parse_json_object(&payload, Part::Payload)?;
    let claims_json =
        String::from_utf8(payload).map_err(|_| JwsError::Malformed("payload is not utf-8"))?;

    let now = i128::from(now);
    let leeway = i128::from(validation.leeway_secs);
    let exp = numeric_date(&claims, "exp")?;
    let nbf = numeric_date(&claims, "nbf")?;
    let iat = numeric_date(&claims, "iat")?;
    match exp {
        Some(exp) if now - leeway >= exp => return Err(JwsError::Expired),
        None if validation.require_exp => return Err(JwsError::MissingClaim("exp".to_owned())),
        _ => {}
    }
    if let Some(nbf) = nbf {
        if nbf > now + leeway {
            return Err(JwsError::NotYetValid);
        }
    }
    if let (Some(iat), Some(skew)) = (iat, validation.max_iat_skew_secs) {
        if iat > now + i128::from(skew) {
            return Err(JwsError::IssuedInFuture);
        }
    }

    if let Some(issuers) = &validation.issuer {
        match claims.get("iss") {
            None => return Err(JwsError::MissingClaim("iss".to_owned())),
            Some(Value::String(iss)) if issuers.iter().any(|i| i == iss) => {}
            Some(_) => return Err(JwsError::WrongIssuer),
        }
    }

    if let Some(audiences) = &validation.audience {
        let matches = |aud: &str| audiences.iter().any(|a| a == aud);
        match claims.get("aud") {
            None => return Err(JwsError::MissingClaim("aud".to_owned())),
            Some(Value::String(aud)) => {
                if !matches(aud) {
                    return Err(JwsError::WrongAudience);
                }
            }
            Some(Value::Array(list)) => {
                let mut found = false;
                for aud in list {
                    let aud = aud
                        .as_str()
                        .ok_or(JwsError::Malformed("aud array has a non-string"))?;
                    found |= matches(aud);
                }
                if !found {
                    return Err(JwsError::WrongAudience);
                }
            }
            Some(_) => return Err(JwsError::Malformed("aud is not a string or an array")),
        }
    }

    for name in &validation.required_claims {
        if !claims.contains_key(name) {
            return Err(JwsError::MissingClaim(name.clone()));
        }
    }

    Ok(Verified {
        header,
        claims_json,
        claims,
    })
}

/// Reads `iss` from a token WITHOUT verifying it, only to route the token to its issuer's
/// provider. The token must be well-formed (size, three strict base64url parts, JSON objects
/// without duplicates, a supported `alg`, no `crit`); the result must never be trusted for
/// anything else.
pub fn peek_issuer(token: &str, max_token_bytes: usize) -> Option<String> {
    let compact = split_compact(token, max_token_bytes).ok()?;
    parse_header(compact.header_b64, None).ok()?;
    decode_part(compact.signature_b64, Part::Signature).ok()?;
    let payload = decode_part(compact.payload_b64, Part::Payload).ok()?;
    let claims = parse_json_object(&payload, Part::Payload).ok()?;
    match claims.get("iss") {
        Some(Value::String(iss)) => Some(iss.clone()),
        _ => None,
    }
}

/// What [`peek_exp`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekedExp {
    /// Not a compact JWS with a JSON object payload: no `exp` to read.
    NotAJwt,
    /// A JWT without `exp`.
    Absent,
    /// `exp`, in whole seconds (a fraction is dropped).
    At(u64),
    /// An `exp` that is not a non-negative number, or a payload with `exp` twice.
    Unusable,
}

/// The `exp` of a token, **unverified**: used only to bound how long an answer for a token that a
/// provider already accepted may be kept. Reads the payload alone (no header or signature
/// decoding, no claims map).
pub fn peek_exp(token: &str, max_token_bytes: usize) -> PeekedExp {
    /// A present member, even `null`, is `Some`; only an absent one is `None`.
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        <Value as serde::Deserialize>::deserialize(d).map(Some)
    }
    #[derive(serde::Deserialize)]
    struct ExpOnly {
        #[serde(default, deserialize_with = "present")]
        exp: Option<Value>,
    }
    let Ok(compact) = split_compact(token, max_token_bytes) else {
        return PeekedExp::NotAJwt;
    };
    let Ok(payload) = decode_part(compact.payload_b64, Part::Payload) else {
        return PeekedExp::NotAJwt;
    };
    // Claims are a JSON object; serde would also read a struct from an array.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return PeekedExp::NotAJwt;
    }
    match serde_json::from_slice::<ExpOnly>(&payload) {
        Ok(ExpOnly { exp }) => exp_member(exp.as_ref()),
        // A duplicate `exp` member, or a payload that is not JSON: nothing can be trusted.
        Err(_) => PeekedExp::Unusable,
    }
}

/// What an `exp` member says (`None`: there is none): whole seconds, a fraction dropped, or
/// `Unusable` when it is not a non-negative number (`null`, a string...). The one reading of `exp`
/// for everything kept until a token expires.
pub fn exp_member(exp: Option<&Value>) -> PeekedExp {
    match exp {
        None => PeekedExp::Absent,
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.floor() as u64))
            .map_or(PeekedExp::Unusable, PeekedExp::At),
        Some(_) => PeekedExp::Unusable,
    }
}
