//! The provider trait object a plugin hands to the host.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RResult, RString, RVec},
};
use async_ffi::{FfiFuture, FutureExt as _};

use super::RequestInfo;
use crate::error::PluginError;

/// One configured identity-provider instance, as the host sees it.
///
/// Plugin authors implement [`crate::AuthProvider`] instead; [`crate::export_provider!`] adapts it.
/// Methods are only ever appended (after `reusable_authentication`) in a minor version, each with a
/// default that a host uses when an older plugin's table lacks it.
#[sabi_trait]
pub trait Provider: Send + Sync {
    /// Checks a bearer token (the seed's `authenticateToken`).
    ///
    /// `Ok(Some(user))` with the user as a JSON object; `Ok(None)` when the token is not valid for
    /// this provider (401); `Err` when the check could not be made (503 or 500 by kind).
    fn authenticate(
        &self,
        token: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<ROption<RString>, PluginError>>;

    /// Decides whether an authenticated user may proceed (the seed's `authorizeUser`). `user` is
    /// the JSON object returned by `authenticate`. `false` is a 403.
    fn authorize(
        &self,
        user: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<bool, PluginError>>;

    /// The `iss` values this instance accepts; the host routes a JWT to the instance whose issuer it
    /// names. Empty = the instance does not say (opaque tokens, or any issuer).
    fn issuers(&self) -> RVec<RString>;

    /// Whether the host may reuse this instance's answer for a token it accepted: `true` only when
    /// `authenticate` depends on nothing but the token, the keys the host verified it with and the
    /// clock (not on the request, nor on a remote call whose answer can change, such as a
    /// revocation check). The host then keeps the accepted user until the token's `exp`, for a
    /// bounded time, and only while the instance's key sets are unchanged and fresh.
    #[sabi(last_prefix_field)]
    fn reusable_authentication(&self) -> bool;

    /// ABI 1.1. Prepares a new instance (fetches a discovery document, warms a token): called
    /// once, in the background, as soon as a start or a reload has built it, bounded by
    /// `server.plugin_timeout`. An error is logged and changes nothing: requests then do the work
    /// themselves. A plugin of ABI 1.0 has no such method; the host then uses this default,
    /// which does nothing.
    fn warm_up(&self) -> FfiFuture<RResult<(), PluginError>> {
        async { RResult::ROk(()) }.into_ffi()
    }
}

/// A provider instance as returned by `new_provider`.
pub type ProviderBox = Provider_TO<'static, RBox<()>>;
