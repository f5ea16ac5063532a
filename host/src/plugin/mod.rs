//! Plugin libraries: loading (the only place that maps code), and the services lent to them.

mod loader;
mod services;

pub use loader::{
    sha256_hex, ConfigKeyInfo, LoadCounts, LoadedPlugin, Loader, PluginLoadError, PluginManifest,
};
pub use services::{HostVerifier, InstanceServices, SharedServices};
