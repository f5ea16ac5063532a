//! Plugin libraries: loading (the only place that maps code), and the services lent to them.

pub mod author;
mod handle;
mod loader;
mod services;

pub use handle::{construct, validate, PluginRequest, ProviderHandle, UserJson};
pub use loader::{
    sha256_file, sha256_hex, ConfigKeyInfo, LoadCounts, LoadedPlugin, Loader, PluginLoadError,
    PluginManifest,
};
#[cfg(feature = "bench-direct")]
pub use services::direct_verifier;
pub use services::{
    CheckServices, HostVerifier, InstanceServices, SharedServices, ACCEPTED_TOKENS_CAPACITY,
    ACCEPTED_TOKENS_MAX_AGE_SECS,
};
