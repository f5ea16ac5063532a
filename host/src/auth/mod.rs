//! The auth pipeline: token extraction, provider choice, authorization rules in CEL.

pub mod authn_cache;
pub mod authz_cache;
mod decide;
mod instance;
#[cfg(test)]
mod tests;
pub(crate) mod token;

pub use authn_cache::AuthnCache;
pub use authz_cache::AuthzCache;
pub use decide::{decide, route_policy, AuthUser, Decision, Denial, RequestParts, Trace};
pub use instance::{Policy, ProviderInstance, RetiredInstance};
pub use token::{extract as extract_token, TokenError};
