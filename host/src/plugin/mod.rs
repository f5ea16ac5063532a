//! Plugin libraries: loading (the only place that maps code), the services lent to them, and the
//! handle every plugin call goes through. The only module that names `abi_stable` types; it
//! imports nothing above `keys`, `jose` and `config` (never `auth`, `reload`, `http`, `gateway`,
//! `api`).

pub mod author;
mod handle;
mod loader;
mod services;

pub use handle::{
    construct, construct_middleware, validate, CallParts, CallUser, IpText, KeptCall,
    MiddlewareHandle, MiddlewareOutcome, PluginKind, PluginRequest, ProviderHandle, ResponseChange,
    UserJson,
};
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

/// The plugin ABI version this server speaks (`major.minor.0`).
pub use portcullis_plugin_api::abi::ABI_VERSION;
