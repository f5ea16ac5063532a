//! portcullis-plugin-api **1.1.0**, frozen: the SDK as released with plugin ABI 1.1, kept so
//! that tests/tests/abi_compat.rs can build a plugin against it and load it in the current
//! server. Do not edit: it stands for plugins already built and deployed.
//!
//! Left out of the copy, because nothing of them crosses the boundary: the conformance kit
//! (`testing` feature) and the `organization` helpers.
#![warn(missing_docs)]
#![deny(unsafe_code)]

// The derive names `::portcullis_plugin_api`; this lets the crate use it on its own types.
#[allow(unused_extern_crates)]
extern crate self as portcullis_plugin_api;

pub mod abi;
mod config;
#[allow(unsafe_code)]
mod error;
mod host;
mod request;
mod sdk;
mod url;


pub use config::{example_config, redact_serde_error, ConfigKey, OneOrMany, PluginConfig};
pub use error::{ErrorKind, PluginError};
pub use host::{Host, HttpRequest, HttpResponse, JwtVerifierSpec, Verifier};
/// `#[derive(PluginConfig)]`: see [`PluginConfig`].
pub use portcullis_plugin_api_derive::PluginConfig;
pub use request::{Request, User};
pub use sdk::{AuthProvider, Plugin};
pub use url::{base_url, path_segment, query_value};

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
