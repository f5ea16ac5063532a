//! Provider instances as the decision sees them: built by `crate::reload` from the config and the
//! plugins, read here.

use std::sync::Arc;

use super::{AuthnCache, AuthzCache};
use crate::{
    keys::InstanceKeySets,
    matching::Condition,
    plugin::{LoadedPlugin, MiddlewareHandle, ProviderHandle},
};

/// One provider instance in a snapshot.
pub struct ProviderInstance {
    /// Instance name from the YAML.
    pub name: String,
    /// The plugin library it was built from.
    pub plugin: Arc<LoadedPlugin>,
    /// The plugin object, behind its time and in-flight limits.
    pub provider: ProviderHandle,
    /// `iss` values the instance accepts (empty = unspecified).
    pub issuers: Vec<String>,
    /// YAML override of the plugin's `authorize`.
    pub authorize: Option<Arc<Condition>>,
    /// Answers of the plugin's `authorize`, per subject; `None` when turned off. It lives exactly as
    /// long as `provider`: a rebuilt instance starts with an empty cache.
    pub authz_cache: Option<Arc<AuthzCache>>,
    /// Tokens the instance accepted, answered again without the plugin; `None` when off. Like
    /// `authz_cache`, it lives exactly as long as `provider`.
    pub authn_cache: Option<Arc<AuthnCache>>,
    /// The key sets the instance's verifiers use (an accepted token is reused only while they are
    /// unchanged and fresh).
    pub key_sets: Arc<InstanceKeySets>,
    /// Whether the instance's verifiers keep their own accepted-token memory
    /// (`InstanceServices::verifiers_remember`): off while `authn_cache` is on.
    pub verifiers_remember: Arc<std::sync::atomic::AtomicBool>,
    /// What the instance was built from (plugin hash + config), to reuse it across reloads.
    pub(crate) build_key: String,
}

/// An instance whose plugin file was deleted, or whose plugin build is no longer in
/// `plugins.allow`: requests that need it fail closed (503) until a trusted plugin of that name is
/// loaded or the config stops naming it.
#[derive(Debug, Clone)]
pub struct RetiredInstance {
    /// Instance name from the YAML.
    pub name: String,
    /// The plugin it needs.
    pub plugin: String,
    /// The issuers it accepted when it was last built (to route tokens to the 503).
    pub issuers: Vec<String>,
    /// Why, for status and logs.
    pub reason: String,
    /// The SHA-256 of the plugin build it was retired for, when it was retired because that build
    /// is no longer in `plugins.allow`.
    pub distrusted: Option<String>,
}

/// One middleware instance in a snapshot, at the same index as its `middleware:` entry.
pub struct MiddlewareInstance {
    /// Instance name from the YAML.
    pub name: String,
    /// The plugin library it was built from; `None` once retired.
    pub plugin: Option<Arc<LoadedPlugin>>,
    /// The plugin object, behind its time and in-flight limits; `None` once retired.
    pub handle: Option<MiddlewareHandle>,
    /// Why it is retired (its plugin file was deleted, or its build is no longer in
    /// `plugins.allow`): requests it would run for are refused (503) until a trusted plugin of
    /// that name is loaded or the config stops naming it.
    pub retired: Option<String>,
    /// What the instance was built from (plugin hash + config), to reuse it across reloads.
    pub(crate) build_key: String,
}

/// What the decision reads of the snapshot being served: the config, and the provider instances
/// built for it (and retired from it).
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    /// The compiled config.
    pub config: &'a crate::config::Config,
    /// The instances, in config order.
    pub providers: &'a [Arc<ProviderInstance>],
    /// Instances whose plugin is gone or distrusted.
    pub retired: &'a [RetiredInstance],
}
