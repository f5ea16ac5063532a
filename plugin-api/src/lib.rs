//! # portcullis-plugin-api
//!
//! Write an identity provider for the [Portcullis] server as ordinary async Rust, build it as a
//! shared library, and drop the `.so` into the server's plugins folder: the server loads it at run
//! time, and again whenever the file changes.
//!
//! ## A complete provider
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! portcullis-plugin-api = "1"
//! serde = { version = "1", features = ["derive"] }
//!
//! [dev-dependencies]
//! portcullis-plugin-api = { version = "1", features = ["testing"] }
//! serde_json = "1"
//! ```
//!
//! `src/lib.rs` (what `portcullis plugin new static-key` writes):
//!
#![doc = concat!("```\n", include_str!("../template/src/lib.rs"), "# fn main() {}\n```\n")]
//!
//! `cargo build --release` writes `target/release/lib<crate>.so`. Check it as an operator would,
//! then drop it in and name it in the YAML:
//!
//! ```text
//! portcullis plugin test target/release/libstatic_key.so
//! cp target/release/libstatic_key.so /etc/portcullis/plugins/
//! ```
//!
//! ```yaml
//! providers:
//!   - name: service
//!     plugin: static-key
//!     config: { key: "${file:/run/secrets/service-key}" }
//! ```
//!
//! `portcullis plugin new NAME` writes such a crate, with its conformance test, ready to build.
//!
//! ## A request middleware
//!
//! A library may also export a **middleware** (plugin ABI 1.2): code the server runs after it
//! has authenticated and authorized a request, before the route — to answer it instead (a rate
//! limit, a policy) or to change the request headers sent onward and the response headers. Same
//! `Cargo.toml`; `src/lib.rs` (what `portcullis plugin new --middleware stamp-user` writes):
//!
#![doc = concat!("```\n", include_str!("../template-middleware/src/lib.rs"), "# fn main() {}\n```\n")]
//!
//! ```yaml
//! middleware:
//!   - name: stamp
//!     plugin: stamp-user
//!     path: /api/*          # where it runs; or name it in a route's `middleware:`
//!     config: { header: x-user-id }
//! ```
//!
//! One library exports one root module: [`export_provider!`], [`export_middleware!`], or
//! [`export_plugins!`] for both.
//!
//! ## What the server does for a plugin
//!
//! Plugins do no I/O of their own: HTTP requests, JWT verification with the server's key cache,
//! the clock, the environment and logging all go through [`Host`]. Every entry point is wrapped so
//! that a panic becomes an error for that one call, never an abort of the server. A config is
//! refused up front (by `portcullis check` and by a reload, which then keeps serving the last good
//! state) when [`Plugin::validate`] refuses it, when a required key is missing, and when a
//! `#[config(url)]` key names a URL the server would not call.
//!
//! ## Testing
//!
//! The `testing` feature adds the `conformance` module: a kit that drives a plugin through
//! the same boundary the server uses, with garbage configs, garbage tokens, odd users and an
//! identity provider that is down or answers nonsense, and checks that nothing panics, hangs,
//! lets a bad token in or leaks a secret. `portcullis plugin test FILE.so` runs the same kit on a
//! built library.
//!
//! ## Compatibility
//!
//! The boundary has its own version, [`abi::ABI_VERSION`] (`1.2`), apart from this crate's. A
//! server loads every plugin of the same ABI major and an older or equal minor; see [`abi`] for
//! what a minor version may change. Plugin code never names the raw boundary types: they live in
//! [`abi`], for servers and test kits.
//!
//! [Portcullis]: https://github.com/portcullis-rs/portcullis
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derive names `::portcullis_plugin_api`; this lets the crate use it on its own types.
#[allow(unused_extern_crates)]
extern crate self as portcullis_plugin_api;

pub mod abi;
mod config;
#[allow(unsafe_code)]
mod error;
mod host;
mod middleware;
mod request;
mod sdk;
mod url;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod conformance;
pub mod organization;

pub use config::{example_config, redact_serde_error, ConfigKey, OneOrMany, PluginConfig};
pub use error::{ErrorKind, PluginError};
pub use host::{Host, HttpRequest, HttpResponse, JwtVerifierSpec, Verifier};
pub use middleware::{
    Call, Flow, MiddlewarePlugin, RequestMiddleware, ResponseChanges, ResponseView, FRAMING_HEADERS,
};
/// `#[derive(PluginConfig)]`: see [`PluginConfig`].
pub use portcullis_plugin_api_derive::PluginConfig;
pub use request::{Request, User};
pub use sdk::{AuthProvider, Plugin};
pub use url::{base_url, path_segment, query_value};

#[doc(hidden)]
pub mod __private {
    pub use crate::sdk::{middleware_root_module, plugins_root_module, root_module};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Exports a [`Plugin`] (an identity provider) as the library's root module.
///
/// Use it once, at the top level of the plugin crate. It writes the symbol the host looks for
/// (the same one `abi_stable`'s `#[export_root_module]` writes), so a plugin crate needs no
/// dependency other than this one. A library exports one root module: for a provider and a
/// middleware in one library, use [`export_plugins!`].
#[macro_export]
macro_rules! export_provider {
    ($plugin:ty) => {
        $crate::__export_root_module!($crate::__private::root_module::<$plugin>());
    };
}

/// Exports a [`MiddlewarePlugin`] as the library's root module (ABI 1.2). Like
/// [`export_provider!`], once per library.
#[macro_export]
macro_rules! export_middleware {
    ($middleware:ty) => {
        $crate::__export_root_module!($crate::__private::middleware_root_module::<$middleware>());
    };
}

/// Exports a provider [`Plugin`] and a [`MiddlewarePlugin`] from one library (ABI 1.2):
/// `export_plugins!(provider: MyProvider, middleware: MyMiddleware);`.
#[macro_export]
macro_rules! export_plugins {
    (provider: $plugin:ty, middleware: $middleware:ty $(,)?) => {
        $crate::__export_root_module!(
            $crate::__private::plugins_root_module::<$plugin, $middleware>()
        );
    };
}

/// Writes the root-module symbol for a module built by `$make`. Not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root_module {
    ($make:expr) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        pub static PORTCULLIS_ROOT_MODULE_LOADER: $crate::__private::LibHeader = {
            extern "C" fn portcullis_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(|| $make)
            }
            // SAFETY: the header is built for `PluginModuleRef`, the type `portcullis_root_module`
            // returns, with layout checking on; this is what `#[export_root_module]` expands to.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::PluginModuleRef>(
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
}
