//! The raw boundary between the server and a plugin library: what crosses it, with
//! `abi_stable`'s layout-checked types.
//!
//! Plugin code does not need anything here: [`crate::Plugin`], [`crate::AuthProvider`],
//! [`crate::Host`] and [`crate::export_provider!`] wrap it. Hosts and test kits use it.
//!
//! # Compatibility
//!
//! The ABI has its own version, [`ABI_VERSION`], apart from the crate's. A host of ABI `M.n`
//! loads a plugin of ABI `M.m` when `m <= n`; it refuses another major, and a newer minor (the
//! plugin may call what this host does not have). Within a major, a minor version may only:
//!
//! * append fields to the prefix types — [`PluginModule`], and the method tables of
//!   [`Provider`], [`Middleware`], [`HostServices`] and [`JwtVerifier`] — after the last one (an older plugin's
//!   missing field reads as `None`; a missing trait method falls back to its default);
//! * add [`crate::ErrorKind`] and [`LogLevel`] values (unknown ones are read as `INTERNAL` and
//!   `INFO`);
//! * add optional fields to the JSON texts (verifier specs, claims).
//!
//! Anything else — a field of a plain struct ([`Manifest`], [`ManifestKey`], [`RequestInfo`],
//! [`HttpRequest`], [`HttpResponse`], [`MiddlewareRequest`], [`ClientAddr`], [`RequestOutcome`],
//! [`MiddlewareAnswer`], [`ResponseHead`], [`ResponseEdit`]), a change of type or order, a
//! removed method — is a new major.
//!
//! Each minor that appends to the root module keeps a frozen copy of the types it changed
//! ([`v1_0`], [`v1_1`]): [`module_layout`] checks a plugin against the layout of the minor it
//! declares.

// abi_stable's derives (`StableAbi`, `#[sabi_trait]`) expand to unsafe impls; these modules only
// declare boundary types, and no hand-written unsafe code lives in them.
#[allow(unsafe_code, non_local_definitions)]
mod host;
#[allow(unsafe_code, non_local_definitions)]
mod middleware;
#[allow(unsafe_code)]
mod module;
#[allow(unsafe_code, non_local_definitions)]
mod provider;
#[allow(unsafe_code)]
mod types;
#[allow(unsafe_code, non_local_definitions, missing_docs)]
pub mod v1_0;
#[allow(unsafe_code, missing_docs)]
pub mod v1_1;

pub use host::{
    HostBox, HostServices, HostServices_TO, JwtVerifier, JwtVerifierBox, JwtVerifier_TO,
};
pub use middleware::{
    ClientAddr, Middleware, MiddlewareAnswer, MiddlewareBox, MiddlewareRequest, Middleware_TO,
    RequestOutcome, ResponseEdit, ResponseHead,
};
pub use module::{PluginModule, PluginModuleRef};
pub use provider::{Provider, ProviderBox, Provider_TO};
pub use types::{HttpRequest, HttpResponse, LogLevel, Manifest, ManifestKey, RequestInfo};

pub use crate::{
    middleware::middleware_box,
    sdk::{host_box, provider_box},
};

/// In [`PluginModule::exports`]: the library exports a provider plugin.
pub const EXPORTS_PROVIDER: u32 = 1;
/// In [`PluginModule::exports`]: the library exports a middleware plugin.
pub const EXPORTS_MIDDLEWARE: u32 = 2;

/// Re-exported so that hosts use the same versions as plugins.
pub use abi_stable;
/// Re-exported so that hosts use the same versions as plugins.
pub use async_ffi;

/// The ABI's major version: a plugin of another major is refused.
pub const ABI_MAJOR: u32 = 1;
/// The ABI's minor version: a plugin of a newer minor is refused; an older one loads.
///
/// * 1.0 — the root module (`manifest`, `validate_config`, `new_provider`), `Provider`
///   (`authenticate`, `authorize`, `issuers`, `reusable_authentication`), `HostServices`,
///   `JwtVerifier`.
/// * 1.1 — `Provider::warm_up`.
/// * 1.2 — middleware: the root module's `exports`, `middleware_manifest`,
///   `validate_middleware_config` and `new_middleware`; `Middleware`.
pub const ABI_MINOR: u32 = 2;
/// `ABI_MAJOR.ABI_MINOR.0`, as written into every plugin's library header.
pub const ABI_VERSION: &str = "1.2.0";

/// The layout of the root module (and through it, of everything that crosses) of ABI
/// [`ABI_MAJOR`].`minor`, for `minor <= ABI_MINOR`: what a plugin that declares that minor is
/// checked against. Each is a prefix of the next (a test holds them to it).
pub fn module_layout(minor: u32) -> Option<&'static abi_stable::type_layout::TypeLayout> {
    use abi_stable::StableAbi;
    match minor {
        0 => Some(<v1_0::PluginModuleRef as StableAbi>::LAYOUT),
        1 => Some(<v1_1::PluginModuleRef as StableAbi>::LAYOUT),
        2 => Some(<PluginModuleRef as StableAbi>::LAYOUT),
        _ => None,
    }
}

/// Whether a host of ABI [`ABI_MAJOR`].[`ABI_MINOR`] can load a plugin of ABI `major.minor`;
/// `Err` says why not, in one line naming both versions.
pub fn compatible(major: u32, minor: u32) -> Result<(), String> {
    if major != ABI_MAJOR {
        return Err(format!(
            "built for plugin ABI {major}.{minor}, this server speaks ABI {ABI_MAJOR}.{ABI_MINOR}: \
             rebuild the plugin against portcullis-plugin-api {ABI_MAJOR}.x"
        ));
    }
    if minor > ABI_MINOR {
        return Err(format!(
            "needs plugin ABI {major}.{minor}, this server speaks ABI {ABI_MAJOR}.{ABI_MINOR}: \
             upgrade the server, or build the plugin against an older portcullis-plugin-api"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minor_is_a_prefix_of_the_next() {
        use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
        for minor in 0..ABI_MINOR {
            let older = module_layout(minor).expect("a layout for every minor");
            let newer = module_layout(minor + 1).expect("a layout for every minor");
            // The older as the interface, the newer as what a library holds: only appended.
            if let Err(e) = check_layout_compatibility(older, newer) {
                panic!(
                    "ABI 1.{} is not 1.{minor} with fields appended:\n{e}",
                    minor + 1
                );
            }
            // The check does see the difference: the newer one is not a prefix of the older.
            assert!(check_layout_compatibility(newer, older).is_err());
        }
        assert!(module_layout(ABI_MINOR + 1).is_none());
    }

    #[test]
    fn version_string_matches_numbers() {
        assert_eq!(ABI_VERSION, format!("{ABI_MAJOR}.{ABI_MINOR}.0"));
    }

    #[test]
    fn older_minor_loads_newer_minor_and_other_major_do_not() {
        assert!(compatible(ABI_MAJOR, ABI_MINOR).is_ok());
        if let Some(older) = ABI_MINOR.checked_sub(1) {
            assert!(compatible(ABI_MAJOR, older).is_ok());
        }
        let newer = compatible(ABI_MAJOR, ABI_MINOR + 1).unwrap_err();
        assert!(
            newer.contains(&format!("{ABI_MAJOR}.{}", ABI_MINOR + 1)),
            "{newer}"
        );
        assert!(
            newer.contains(&format!("{ABI_MAJOR}.{ABI_MINOR}")),
            "{newer}"
        );
        assert!(compatible(ABI_MAJOR + 1, 0).is_err());
        assert!(compatible(0, 2).is_err());
    }
}
