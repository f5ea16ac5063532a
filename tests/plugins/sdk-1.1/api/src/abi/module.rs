//! The root module every plugin library exports.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr},
    StableAbi,
};

use super::{HostBox, Manifest, ProviderBox};
use crate::error::PluginError;

/// The functions a plugin library exports.
///
/// A prefix type: a minor version of the ABI may only **append** fields after the last one. A host
/// reads a field an older plugin does not have as `None` (the accessors of appended fields return
/// `Option`), never as a panic.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// Describes the plugin.
    pub manifest: extern "C" fn() -> RResult<Manifest, PluginError>,
    /// Checks a provider configuration (JSON object text) without building anything. `host` is
    /// the instance's services (its environment, its URL policy); nothing may be fetched.
    pub validate_config: extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<(), PluginError>,
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
    // The ABI's own version, apart from the crate's: abi_stable refuses another major before it
    // looks at layouts, and the host refuses a newer minor (see `super::ABI_VERSION`).
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(super::ABI_VERSION);
}
