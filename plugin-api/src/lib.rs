//! # portcullis-plugin-api
//!
//! The stable ABI between the Portcullis server and its identity-provider plugins, and the safe
//! SDK plugin authors write against.
//!
//! A plugin is a `cdylib` that exports one root module ([`PluginModule`]) built by
//! [`export_provider!`]. The host copies each plugin file to a private staging path, loads it with
//! `abi_stable`'s layout and version checks, reads its [`Manifest`], and builds one provider instance
//! per `providers:` entry of the YAML config that names it.
//!
//! Plugins do no I/O of their own: HTTP requests, JWT verification with the host's key cache, the
//! clock, the environment and logging all go through [`Host`]. Every entry point is wrapped so that
//! a panic becomes an error for that one call, never an abort of the server.
//!
//! ## A complete minimal provider
//!
//! `Cargo.toml`: `crate-type = ["cdylib", "rlib"]`, one dependency, `portcullis-plugin-api`.
//!
//! ```
//! use portcullis_plugin_api::{
//!     export_provider, AuthProvider, Host, Plugin, PluginError, Request, User,
//! };
//! use serde::Deserialize;
//!
//! /// Accepts exactly one static API key and calls its holder `service`.
//! struct StaticKey {
//!     key: String,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     key: String,
//! }
//!
//! impl AuthProvider for StaticKey {
//!     async fn authenticate(&self, token: String, _req: Request) -> Result<Option<User>, PluginError> {
//!         if token == self.key {
//!             Ok(Some(User::from_json(r#"{"sub":"service"}"#.to_string())?))
//!         } else {
//!             Ok(None)
//!         }
//!     }
//! }
//!
//! struct StaticKeyPlugin;
//!
//! impl Plugin for StaticKeyPlugin {
//!     type Provider = StaticKey;
//!     type Config = Config;
//!     const NAME: &'static str = "static-key";
//!     const VERSION: &'static str = "1.0.0";
//!     const DESCRIPTION: &'static str = "one shared API key";
//!
//!     fn validate(config: &Config) -> Result<(), PluginError> {
//!         if config.key.len() < 16 {
//!             return Err(PluginError::config("key: must be at least 16 characters"));
//!         }
//!         Ok(())
//!     }
//!
//!     fn build(config: Config, _host: Host) -> Result<StaticKey, PluginError> {
//!         Ok(StaticKey { key: config.key })
//!     }
//! }
//!
//! export_provider!(StaticKeyPlugin);
//! # fn main() {}
//! ```
//!
//! With the library built (`cargo build --release`), drop `libyour_plugin.so` into the server's
//! plugins directory and name it in the YAML:
//!
//! ```yaml
//! providers:
//!   - name: service
//!     plugin: static-key
//!     config: { key: "${SERVICE_KEY}" }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

// abi_stable's derives (`StableAbi`, `#[sabi_trait]`) expand to unsafe impls; these modules only
// declare boundary types, and no hand-written unsafe code lives in them.
#[allow(unsafe_code)]
mod error;
#[allow(unsafe_code, non_local_definitions)]
mod host;
#[allow(unsafe_code)]
mod module;
#[allow(unsafe_code, non_local_definitions)]
mod provider;
mod sdk;
#[allow(unsafe_code)]
mod types;
mod url;

pub mod conformance;
pub mod organization;

pub use error::{ErrorKind, PluginError};
pub use host::{
    HostBox, HostServices, HostServices_TO, JwtVerifier, JwtVerifierBox, JwtVerifierSpec,
    JwtVerifier_TO,
};
pub use module::{PluginModule, PluginModuleRef, API_VERSION};
pub use provider::{Provider, ProviderBox, Provider_TO};
pub use sdk::{
    config_key, host_box, provider_box, redact_serde_error, AuthProvider, Host, Plugin, Request,
    User, Verifier,
};
pub use types::{ConfigKey, HttpRequest, HttpResponse, LogLevel, Manifest, RequestInfo};
pub use url::{base_url, path_segment, query_value};

/// Re-exports the boundary crates so that plugins and the host use the same versions.
pub use abi_stable;
pub use async_ffi;

#[doc(hidden)]
pub mod __private {
    pub use crate::sdk::root_module;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Exports a [`Plugin`] as the library's root module.
///
/// Use it once, at the top level of the plugin crate. It writes the symbol the host looks for
/// (the same one `abi_stable`'s `#[export_root_module]` writes), so a plugin crate needs no
/// dependency other than this one.
#[macro_export]
macro_rules! export_provider {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static PORTCULLIS_ROOT_MODULE_LOADER: $crate::__private::LibHeader = {
            extern "C" fn portcullis_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(|| {
                    $crate::__private::root_module::<$plugin>()
                })
            }
            // SAFETY: the header is built for `PluginModuleRef`, the type `portcullis_root_module`
            // returns, with layout checking on; this is what `#[export_root_module]` expands to.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::PluginModuleRef>(
                    portcullis_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_symbol_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }

    #[test]
    fn redaction_drops_values_keeps_names() {
        let m = super::redact_serde_error(
            "invalid type: string \"sk_live_secret\", expected u64 at line 1 column 9",
        );
        assert_eq!(m, "invalid type: string \"…\", expected u64");
        let m = super::redact_serde_error("unknown field `sekret`, expected one of `secret`");
        assert!(m.contains("`sekret`"));
        let m = super::redact_serde_error(
            "unknown field `sk_live_0123456789abcdefghijklmnopqrstuvwxyz`, expected `secret`",
        );
        assert_eq!(m, "unknown field `…`, expected `secret`");
    }
}
