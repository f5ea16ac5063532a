//! The boundary types of ABI 1.0 whose later minors appended to them, kept as they were: a host
//! checks a plugin's layout against the layout of the minor the plugin declares (see
//! [`super::module_layout`]). abi_stable's own check compares a plugin with the host's newest
//! layout and refuses a prefix type with *fewer* fields than the host's, so an older plugin would
//! never load; checked against its own minor, it loads, and the fields and methods appended since
//! read as absent (the prefix types carry their length at run time).
//!
//! Only the names of types and fields, their order and their layouts are compared, not module
//! paths: these copies keep the names. Nothing here is used at run time but the layouts.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};
use async_ffi::FfiFuture;

use super::{HostBox, Manifest, RequestInfo};
use crate::error::PluginError;

/// `Provider` of ABI 1.0 (1.1 appended `warm_up`).
#[sabi_trait]
pub trait Provider: Send + Sync {
    /// As in 1.1.
    fn authenticate(
        &self,
        token: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<ROption<RString>, PluginError>>;
    /// As in 1.1.
    fn authorize(
        &self,
        user: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<bool, PluginError>>;
    /// As in 1.1.
    fn issuers(&self) -> RVec<RString>;
    /// As in 1.1.
    #[sabi(last_prefix_field)]
    fn reusable_authentication(&self) -> bool;
}

/// `ProviderBox` of ABI 1.0.
pub type ProviderBox = Provider_TO<'static, RBox<()>>;

/// The root module of ABI 1.0 (its fields are unchanged in 1.1; its `new_provider` returns the
/// 1.0 provider).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// As in 1.1.
    pub manifest: extern "C" fn() -> RResult<Manifest, PluginError>,
    /// As in 1.1.
    pub validate_config: extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<(), PluginError>,
    /// As in 1.1.
    #[sabi(last_prefix_field)]
    pub new_provider:
        extern "C" fn(config: RStr<'_>, host: HostBox) -> RResult<ProviderBox, PluginError>,
}
