//! The root module every plugin library exports.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr},
    StableAbi,
};

use crate::{error::PluginError, host::HostBox, provider::ProviderBox, types::Manifest};

/// The functions a plugin library exports.
///
/// This is a prefix type: later versions of `portcullis-plugin-api` may only **append** fields
/// after the last one, so that a newer host can still load an older plugin of the same minor
/// version and see the missing fields as absent.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Describes the plugin.
    pub manifest: extern "C" fn() -> RResult<Manifest, PluginError>,
    /// Checks a provider configuration (JSON object text) without building anything.
    pub validate_config: extern "C" fn(config: RStr<'_>) -> RResult<(), PluginError>,
    /// Builds a provider instance from its configuration (JSON object text) and the host's
    /// services.
    #[sabi(last_prefix_field)]
    pub new_provider:
        extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<ProviderBox, PluginError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "portcullis_plugin";
    const NAME: &'static str = "portcullis_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The version of `portcullis-plugin-api` this crate is. Plugins built against a version with a
/// different minor number (0.x) or major number cannot be loaded.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
