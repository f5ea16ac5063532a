//! Services the host lends to plugins.
//!
//! A plugin does no I/O of its own: a tokio or reqwest linked into a plugin has no reactor when its
//! future is polled on the host's runtime. Everything that touches the network, the clock, the
//! environment or the logs goes through [`HostServices`], whose futures run on the host's runtime.

use super::{HttpRequest, HttpResponse, LogLevel};
use crate::error::PluginError;
use abi_stable::{
    sabi_trait,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString},
};
use async_ffi::FfiFuture;

/// The host's services, as the plugin sees them across the boundary.
///
/// Plugin authors use the [`crate::Host`] wrapper instead of calling this directly. Methods are
/// only ever appended (after `sign_jwt_rs256`) in a minor version.
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

    /// Whether the host would send a request to `url` for this instance: an absolute `https://`
    /// URL (plain `http://` only when the instance's YAML sets `dangerous: { allow_http: true }`).
    /// `Err` is a [`crate::ErrorKind::CONFIG`] error saying why not. Called while a config is
    /// checked, so that a URL every request would be refused for is refused up front.
    fn check_url(&self, url: RStr<'_>) -> RResult<(), PluginError>;

    /// Builds a JWT verifier from a JSON-encoded [`crate::JwtVerifierSpec`]. Keys from a JWKS URL
    /// are fetched and cached by the host (one refetch on an unknown `kid`, shared and
    /// rate-limited).
    fn jwt_verifier(&self, spec_json: RStr<'_>) -> RResult<JwtVerifierBox, PluginError>;

    /// Signs `claims_json` (a JSON object's text) as a compact JWS with RS256 and the given PEM
    /// private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`); `kid` goes into the header
    /// when given. For plugins that authenticate themselves to their provider (a service
    /// account's JWT bearer grant, RFC 7523). Errors never contain key material.
    #[sabi(last_prefix_field)]
    fn sign_jwt_rs256(
        &self,
        claims_json: RStr<'_>,
        kid: ROption<RStr<'_>>,
        private_key_pem: RStr<'_>,
    ) -> RResult<RString, PluginError>;
}

/// The host services object handed to `validate_config` and `new_provider`; cheap to clone.
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
