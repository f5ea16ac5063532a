//! The host's services, for plugin code: logging, the clock, the environment, HTTP and JWT
//! verification, all done by the server on its own runtime.

use std::{sync::Arc, time::Duration};

use abi_stable::std_types::{RStr, RString, RVec, Tuple2};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    abi::{self, HostBox, JwtVerifierBox, LogLevel},
    error::PluginError,
    request::User,
};

/// The host's services, handed to [`crate::Plugin::build`]; cheap to clone.
///
/// A plugin does no I/O of its own (a tokio or reqwest linked into a plugin has no reactor when
/// its future runs on the server's runtime): everything that touches the network goes through
/// here.
#[derive(Clone)]
pub struct Host {
    inner: HostBox,
}

impl Host {
    /// Wraps the raw services object (hosts and test kits; plugins receive a `Host`).
    pub fn from_abi(inner: HostBox) -> Host {
        Host { inner }
    }

    /// Logs an error line, attributed to the provider instance.
    pub fn error(&self, message: &str) {
        self.inner.log(LogLevel::ERROR, message.into());
    }
    /// Logs a warning.
    pub fn warn(&self, message: &str) {
        self.inner.log(LogLevel::WARN, message.into());
    }
    /// Logs an informational line.
    pub fn info(&self, message: &str) {
        self.inner.log(LogLevel::INFO, message.into());
    }
    /// Logs a debug line.
    pub fn debug(&self, message: &str) {
        self.inner.log(LogLevel::DEBUG, message.into());
    }

    /// Milliseconds since the Unix epoch, from the host's clock.
    pub fn now_unix_millis(&self) -> u64 {
        self.inner.now_unix_millis()
    }

    /// An environment variable of the server process. Config keys with an env fallback need not
    /// call this: declare `#[config(env = "NAME")]` and the SDK fills the key in.
    pub fn env(&self, name: &str) -> Option<String> {
        self.inner
            .env_var(name.into())
            .into_option()
            .map(Into::into)
    }

    /// Whether the host would send a request to `url` for this instance (`https://`, or plain
    /// `http://` under `dangerous: { allow_http: true }`). Keys declared `#[config(url)]` are
    /// checked this way before [`crate::Plugin::validate`] runs; call it for URLs a plugin builds
    /// itself.
    pub fn check_url(&self, url: &str) -> Result<(), PluginError> {
        self.inner.check_url(RStr::from_str(url)).into_result()
    }

    /// Sends a request through the host: time-limited, size-capped, no redirect to another host.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, PluginError> {
        let raw = abi::HttpRequest {
            method: request.method.into(),
            url: request.url.into(),
            headers: pairs(request.headers),
            body: request.body.into(),
            timeout_ms: request.timeout.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
        };
        let resp = self.inner.http(raw).await.into_result()?;
        Ok(HttpResponse {
            status: resp.status,
            headers: resp
                .headers
                .into_iter()
                .map(|Tuple2(k, v)| (k.into_string(), v.into_string()))
                .collect(),
            body: resp.body.into_vec(),
        })
    }

    /// A GET with headers.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, PluginError> {
        self.send(HttpRequest::new("GET", url).headers(headers))
            .await
    }

    /// A POST of `body` with headers (give the `content-type`).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Result<HttpResponse, PluginError> {
        self.send(HttpRequest::new("POST", url).headers(headers).body(body))
            .await
    }

    /// Signs `claims` (a JSON object) with RS256 and a PEM private key, on the host (plugins carry
    /// no crypto of their own). `kid`, when given, goes into the header.
    pub fn sign_jwt_rs256(
        &self,
        claims: &serde_json::Value,
        kid: Option<&str>,
        private_key_pem: &str,
    ) -> Result<String, PluginError> {
        let claims = claims.to_string();
        self.inner
            .sign_jwt_rs256(
                RStr::from_str(&claims),
                kid.map(RStr::from_str).into(),
                RStr::from_str(private_key_pem),
            )
            .into_result()
            .map(Into::into)
    }

    /// Builds a JWT verifier backed by the host's key cache.
    pub fn jwt_verifier(&self, spec: &JwtVerifierSpec) -> Result<Verifier, PluginError> {
        let json = serde_json::to_string(spec)
            .map_err(|_| PluginError::internal("verifier spec does not serialize"))?;
        let inner = self
            .inner
            .jwt_verifier(RStr::from_str(&json))
            .into_result()?;
        Ok(Verifier {
            inner: Arc::new(inner),
        })
    }
}

fn pairs(list: Vec<(String, String)>) -> RVec<Tuple2<RString, RString>> {
    list.into_iter()
        .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
        .collect()
}

/// An outgoing HTTP request (see [`Host::send`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case method.
    pub method: String,
    /// Absolute `https://` URL (`http://` only where the instance's `dangerous` settings allow).
    pub url: String,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty for none).
    pub body: Vec<u8>,
    /// Overall time limit; `None` = the host's default.
    pub timeout: Option<Duration>,
}

impl HttpRequest {
    /// A request without headers or body.
    pub fn new(method: &str, url: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_string(),
            url: url.to_string(),
            ..HttpRequest::default()
        }
    }
    /// Adds headers.
    pub fn headers(mut self, headers: &[(&str, &str)]) -> HttpRequest {
        self.headers
            .extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpRequest {
        self.body = body.into();
        self
    }
    /// Sets the time limit.
    pub fn timeout(mut self, timeout: Duration) -> HttpRequest {
        self.timeout = Some(timeout);
        self
    }
}

/// The answer to an [`HttpRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body bytes, at most the host's response size cap.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body parsed as JSON into `T`; `None` when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A JWT verifier owned by the host; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<JwtVerifierBox>,
}

impl Verifier {
    /// Verifies a token; on success returns the user made of its claims.
    pub async fn verify(&self, token: &str) -> Result<User, PluginError> {
        let json = self
            .inner
            .verify(RStr::from_str(token))
            .await
            .into_result()?;
        Ok(User::from_verified(json))
    }
}

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
