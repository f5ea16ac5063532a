//! Services the host lends to plugins.
//!
//! A plugin does no I/O of its own: a tokio or reqwest linked into a plugin has no reactor when its
//! future is polled on the host's runtime. Everything that touches the network, the clock, the
//! environment or the logs goes through [`HostServices`], whose futures run on the host's runtime.

use abi_stable::{
    sabi_trait,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString},
};
use async_ffi::FfiFuture;
use serde::{Deserialize, Serialize};

use crate::{
    error::PluginError,
    types::{HttpRequest, HttpResponse, LogLevel},
};

/// The host's services, as the plugin sees them across the boundary.
///
/// Plugin authors use the [`crate::Host`] wrapper instead of calling this directly.
#[sabi_trait]
pub trait HostServices: Clone + Send + Sync {
    /// Writes one log line, attributed to the provider instance.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// The current time, in milliseconds since the Unix epoch.
    fn now_unix_millis(&self) -> u64;

    /// Reads an environment variable of the host process (used for the seed's fallbacks such as
    /// `JWT_AUTH_SECRET`).
    fn env_var(&self, name: RStr<'_>) -> ROption<RString>;

    /// Sends an HTTP request on the host's client: time-limited, size-capped, no redirects to
    /// another host.
    fn http(&self, request: HttpRequest) -> FfiFuture<RResult<HttpResponse, PluginError>>;

    /// Builds a JWT verifier from a JSON-encoded [`JwtVerifierSpec`]. Keys from a JWKS URL are
    /// fetched and cached by the host (one refetch on an unknown `kid`, shared and rate-limited).
    #[sabi(last_prefix_field)]
    fn jwt_verifier(&self, spec_json: RStr<'_>) -> RResult<JwtVerifierBox, PluginError>;

    /// Signs `claims_json` (a JSON object's text) as a compact JWS with RS256 and the given PEM
    /// private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`); `kid` goes into the header
    /// when given. For plugins that authenticate themselves to their provider (a service
    /// account's JWT bearer grant, RFC 7523). Errors never contain key material.
    fn sign_jwt_rs256(
        &self,
        claims_json: RStr<'_>,
        kid: ROption<RStr<'_>>,
        private_key_pem: RStr<'_>,
    ) -> RResult<RString, PluginError>;
}

/// The host services object handed to `new_provider`; cheap to clone.
pub type HostBox = HostServices_TO<'static, RArc<()>>;

/// A compiled JWT verifier owned by the host.
#[sabi_trait]
pub trait JwtVerifier: Send + Sync {
    /// Verifies the token's signature and claims. On success returns the claims, as the JSON text
    /// of the token's payload. An invalid token is an [`crate::ErrorKind::INVALID_TOKEN`] error;
    /// keys that cannot be fetched are [`crate::ErrorKind::UNAVAILABLE`].
    #[sabi(last_prefix_field)]
    fn verify(&self, token: RStr<'_>) -> FfiFuture<RResult<RString, PluginError>>;
}

/// A verifier as returned by the host.
pub type JwtVerifierBox = JwtVerifier_TO<'static, RBox<()>>;

/// How a JWT verifier checks tokens. Passed to the host as JSON; every field but one key source is
/// optional.
///
/// Algorithms are pinned here, never taken from a token. When `algorithms` is empty the host
/// derives them from the keys: HS256/384/512 for a secret, the key type's algorithms for PEM keys,
/// RS256 for a JWKS URL or an x509 certificate URL.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JwtVerifierSpec {
    /// Allowed algorithms (`HS256`, `RS256`, `PS256`, `ES256`, `ES384`, `ES512`, `EdDSA`, ...).
    pub algorithms: Vec<String>,
    /// An HMAC secret (at least 32 bytes).
    pub secret: Option<String>,
    /// PEM public keys or certificates.
    pub public_keys: Vec<String>,
    /// A JWKS URL, `https://` (plain `http://` only when the instance's YAML sets
    /// `dangerous: { allow_http: true }`).
    pub jwks_url: Option<String>,
    /// A URL serving a JSON object that maps `kid` to a PEM X.509 certificate (Google's
    /// `securetoken` format, used by Firebase Auth). Cached like a JWKS: TTL from
    /// `Cache-Control: max-age`, one shared refetch on an unknown `kid`. `https://` only (plain
    /// `http://` under `dangerous: { allow_http: true }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509_url: Option<String>,
    /// Accepted `iss` values; empty = not checked.
    pub issuer: Vec<String>,
    /// Accepted `aud` values; empty = not checked. When set, a token without `aud` is refused.
    pub audience: Vec<String>,
    /// Clock leeway in seconds for `exp`, `nbf` and `iat` (default 30).
    pub leeway_secs: Option<u64>,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Accepted header `typ` values (e.g. `at+jwt`); empty = not checked.
    pub typ: Vec<String>,
    /// Whether `exp` is required (default true).
    pub require_exp: Option<bool>,
}
