//! The boundary types of ABI 1.1 that 1.2 appended to, kept as they were (see [`super::v1_0`] for
//! why, and for 1.0). 1.1 and 1.2 share the provider and host types; only the root module grew.

use abi_stable::{
    std_types::{RResult, RStr},
    StableAbi,
};

use super::{HostBox, Manifest, ProviderBox};
use crate::error::PluginError;

/// The root module of ABI 1.1 (1.2 appended `exports` and the middleware fields).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// As in 1.2.
    pub manifest: extern "C" fn() -> RResult<Manifest, PluginError>,
    /// As in 1.2.
    pub validate_config: extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<(), PluginError>,
    /// As in 1.2.
    #[sabi(last_prefix_field)]
    pub new_provider:
        extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<ProviderBox, PluginError>,
}
