//! What a provider is asked about: the request, and the user it vouched for.

use abi_stable::std_types::RString;

use crate::{abi::RequestInfo, error::PluginError};

/// An authenticated user: the JSON object a provider vouches for (usually the token's claims).
///
/// Kept as JSON text so that claims verified by the host pass through a plugin without being
/// parsed and written again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    // The boundary's string: a user the host hands over is kept as it came, not copied.
    json: RString,
}

impl User {
    /// A user from a JSON object's text. Fails unless it is a JSON object.
    pub fn from_json(json: String) -> Result<User, PluginError> {
        User::from_abi(json.into())
    }

    /// A user from the boundary's text (as `authorize` gets it). Fails unless it is a JSON object.
    pub(crate) fn from_abi(json: RString) -> Result<User, PluginError> {
        if !json.trim_start().starts_with('{') {
            return Err(PluginError::internal("a user must be a JSON object"));
        }
        Ok(User { json })
    }

    /// Claims the host verified (already a JSON object).
    pub(crate) fn from_verified(json: RString) -> User {
        User { json }
    }

    /// A user from a claims map.
    pub fn from_claims(claims: serde_json::Map<String, serde_json::Value>) -> User {
        User {
            json: serde_json::Value::Object(claims).to_string().into(),
        }
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        self.json.as_str()
    }

    /// The JSON text, owned.
    pub fn into_json(self) -> String {
        self.json.into_string()
    }

    /// The JSON text as it crosses the boundary.
    pub(crate) fn into_abi(self) -> RString {
        self.json
    }

    /// Parses the claims.
    pub fn claims(&self) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> {
        serde_json::from_str(self.json.as_str())
            .map_err(|_| PluginError::internal("user claims are not a JSON object"))
    }

    /// One claim, parsed.
    pub fn claim(&self, name: &str) -> Option<serde_json::Value> {
        self.claims().ok()?.remove(name)
    }

    /// The `sub` claim when it is a non-empty string.
    pub fn subject(&self) -> Option<String> {
        match self.claim("sub") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

/// The request being decided, as a provider sees it.
///
/// `path` is the canonical path (dot segments resolved, slashes merged): the same path the server
/// matches its patterns against and serves. The `authorization` and `cookie` headers are withheld:
/// the token reaches the provider as an argument, never through headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    raw: RequestInfo,
}

impl Request {
    /// A request (for tests of a provider).
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            raw: RequestInfo {
                method: method.into(),
                path: path.into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| {
                        abi_stable::std_types::Tuple2(k.to_ascii_lowercase().into(), (*v).into())
                    })
                    .collect(),
            },
        }
    }

    pub(crate) fn from_abi(raw: RequestInfo) -> Request {
        Request { raw }
    }

    /// Upper-case HTTP method.
    pub fn method(&self) -> &str {
        self.raw.method.as_str()
    }

    /// Canonical path, without the query.
    pub fn path(&self) -> &str {
        self.raw.path.as_str()
    }

    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw.header(name)
    }

    /// Every header, lower-case names, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw
            .headers
            .iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
    }
}
