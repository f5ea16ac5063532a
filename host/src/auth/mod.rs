//! The decision: token extraction, provider choice, the plugin's answer (through
//! `plugin::ProviderHandle`), authorization rules in CEL, and the caches of answers. Reads a
//! [`Policy`] (the config and the instances of the snapshot being served); never imports
//! `reload`, `http`, `gateway` or `api`.

pub mod authn_cache;
pub mod authz_cache;
mod decide;
mod instance;
#[cfg(test)]
mod tests;
pub(crate) mod token;

pub use authn_cache::AuthnCache;
pub use authz_cache::AuthzCache;
pub(crate) use decide::IdentityHeaders;
pub use decide::{
    decide, is_builtin_route, route_policy, AuthUser, Decision, Denial, RequestParts, Trace,
};
pub use instance::{MiddlewareInstance, Policy, ProviderInstance, RetiredInstance};
pub use token::{extract as extract_token, TokenError};
