//! The error value that crosses the plugin boundary.

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong, and so who is at fault and what the client is answered.
///
/// A `#[repr(transparent)]` number rather than a Rust enum so that kinds can be added later without
/// breaking the ABI: a host that meets a kind it does not know treats it as [`ErrorKind::INTERNAL`].
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ErrorKind(pub u8);

impl ErrorKind {
    /// The token is not valid (bad signature, expired, wrong issuer...). The client is at fault: 401.
    pub const INVALID_TOKEN: ErrorKind = ErrorKind(1);
    /// The provider's configuration is wrong or incomplete (returned by `validate_config` and
    /// `new_provider`).
    pub const CONFIG: ErrorKind = ErrorKind(2);
    /// The identity provider could not be reached or answered nonsense; the check could not be
    /// made, so the request fails closed: 503.
    pub const UNAVAILABLE: ErrorKind = ErrorKind(3);
    /// A bug or an unexpected state in the plugin (including a caught panic): 500.
    pub const INTERNAL: ErrorKind = ErrorKind(4);

    /// A short lower-case name for logs and the status API.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::INVALID_TOKEN => "invalid_token",
            ErrorKind::CONFIG => "config",
            ErrorKind::UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }
}

/// An error returned by a plugin or by a host service.
///
/// The message is one lower-case line meant for operators. It must never contain a secret or a
/// token: the host logs it and may show it in the status API.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    kind: ErrorKind,
    message: RString,
}

impl PluginError {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: RString::from(message.into()),
        }
    }
    /// The token was rejected (401).
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_TOKEN, message)
    }
    /// The configuration is unusable.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::CONFIG, message)
    }
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The one-line description.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
    /// The same error with `context: ` written before its message (the kind is kept).
    pub fn context(self, context: &str) -> Self {
        Self::new(self.kind, format!("{context}: {}", self.message))
    }
    /// The identity provider could not be asked (503).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNAVAILABLE, message)
    }
    /// Something is broken inside the plugin (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INTERNAL, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}
