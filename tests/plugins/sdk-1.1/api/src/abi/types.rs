//! Plain data that crosses the plugin boundary.

use abi_stable::{
    std_types::{ROption, RString, RVec, Tuple2},
    StableAbi,
};

/// What a plugin is told about the request being authenticated.
///
/// `path` is the canonical path (dot segments resolved, slashes merged): the same path the server
/// matches its patterns against and serves.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Upper-case HTTP method.
    pub method: RString,
    /// Canonical path, without the query.
    pub path: RString,
    /// Request headers with lower-case names. The `authorization` and `cookie` headers are
    /// withheld: the token reaches the plugin as an argument, never through headers.
    pub headers: RVec<Tuple2<RString, RString>>,
}

impl RequestInfo {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|t| t.0.as_str().eq_ignore_ascii_case(name))
            .map(|t| t.1.as_str())
    }
}

/// One key a plugin's configuration accepts (from its [`crate::PluginConfig`] derive), as shown
/// by `portcullis plugin inspect`.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ManifestKey {
    /// The key under the provider's `config:` mapping.
    pub name: RString,
    /// What it is for.
    pub description: RString,
    /// Whether the provider cannot be built without it (an env fallback can stand in).
    pub required: bool,
    /// Whether its value is a secret (never logged or shown).
    pub secret: bool,
    /// The server environment variable read when the key is absent.
    pub env: ROption<RString>,
    /// Whether the value is a URL the plugin calls (checked against the instance's URL policy).
    pub url: bool,
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The name config instances use in `plugin:` (lower-case, `[a-z0-9_-]`).
    pub name: RString,
    /// The plugin's own version.
    pub version: RString,
    /// One line on what it does.
    pub description: RString,
    /// The version of the `portcullis-plugin-api` crate the plugin was built with (for people; the
    /// ABI version is in the library header).
    pub sdk_version: RString,
    /// The configuration keys it accepts.
    pub config_keys: RVec<ManifestKey>,
    /// An example `config:` mapping (JSON object text) made of the keys' examples.
    pub example_config: RString,
    /// Whether the provider's `authorize` answer depends only on the user's `sub` and
    /// organization (and time): not on the request, the path or other claims. Only then does the
    /// host cache its answers per subject by default (see `authorization_cache` in
    /// docs/providers.md).
    pub authorize_by_subject: bool,
}

/// Severity of a log line a plugin writes through the host.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Debug)]
pub struct LogLevel(pub u8);

impl LogLevel {
    /// Something is wrong.
    pub const ERROR: LogLevel = LogLevel(1);
    /// Something may be wrong.
    pub const WARN: LogLevel = LogLevel(2);
    /// Normal operation.
    pub const INFO: LogLevel = LogLevel(3);
    /// Detail for debugging.
    pub const DEBUG: LogLevel = LogLevel(4);
}

/// An outgoing HTTP request made through the host.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case method.
    pub method: RString,
    /// Absolute `https://` URL (`http://` only where the provider's `dangerous` settings allow it).
    pub url: RString,
    /// Headers to send.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// Body bytes (empty for none).
    pub body: RVec<u8>,
    /// Overall time limit in milliseconds; 0 = the host's default.
    pub timeout_ms: u64,
}

/// The answer to an [`HttpRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers with lower-case names.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// Body bytes, at most the host's response size cap.
    pub body: RVec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|t| t.0.as_str().eq_ignore_ascii_case(name))
            .map(|t| t.1.as_str())
    }
}
