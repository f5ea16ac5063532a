//! Why a reload (or a start) was refused, by kind: the status API, the reload answer and the
//! metrics can tell a plugin that refused its config from a port that cannot change.

use std::fmt;

/// What kind of problem refused a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, poem_openapi::Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReloadErrorKind {
    /// The config file does not read or compile (the message names the key path).
    Config,
    /// A plugin: missing, unloadable, or refusing an instance's `config:`.
    Plugin,
    /// A setting that cannot change while the server runs (host, port, TLS on or off, the
    /// metrics listener, telemetry): a restart applies it.
    Restart,
    /// The TLS key or certificate cannot be used.
    Tls,
    /// The reload task has stopped (the server is shutting down).
    Stopped,
}

/// One problem that refused a reload: its kind and a one-line message (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadError {
    /// What kind of problem.
    pub kind: ReloadErrorKind,
    /// The line an operator reads, with key paths and file names.
    pub message: String,
}

impl ReloadError {
    /// A problem of `kind`.
    pub fn new(kind: ReloadErrorKind, message: impl Into<String>) -> ReloadError {
        ReloadError {
            kind,
            message: message.into(),
        }
    }
    /// The config does not read or compile.
    pub fn config(message: impl Into<String>) -> ReloadError {
        Self::new(ReloadErrorKind::Config, message)
    }
    /// A plugin problem.
    pub fn plugin(message: impl Into<String>) -> ReloadError {
        Self::new(ReloadErrorKind::Plugin, message)
    }
    /// A setting that needs a restart.
    pub fn restart(message: impl Into<String>) -> ReloadError {
        Self::new(ReloadErrorKind::Restart, message)
    }
    /// The TLS material cannot be used.
    pub fn tls(message: impl Into<String>) -> ReloadError {
        Self::new(ReloadErrorKind::Tls, message)
    }
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReloadError {}
