//! The safe SDK: what a plugin author writes against, and its adapter to the raw ABI.

use std::{
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec},
};
use async_ffi::{BorrowingFfiFuture, FfiFuture, FutureExt as _};
use futures_util::FutureExt as _;

use crate::{
    abi::{
        HostBox, HostServices, HostServices_TO, Manifest, ManifestKey, PluginModule,
        PluginModuleRef, Provider, ProviderBox, Provider_TO, RequestInfo,
    },
    abi::{EXPORTS_MIDDLEWARE, EXPORTS_PROVIDER},
    config::{self, PluginConfig},
    error::PluginError,
    host::Host,
    middleware::{self, MiddlewarePlugin},
    request::{Request, User},
};

/// An identity provider, written as ordinary async Rust.
///
/// The host calls `authenticate` with the bearer token of a request routed to this instance, then
/// `authorize` with the user it returned. Both run on the host's runtime; do I/O only through
/// [`Host`]. A panic in either is caught and answered 500 for that request only.
pub trait AuthProvider: Send + Sync + 'static {
    /// Checks a token (the seed's `authenticateToken`).
    ///
    /// Return `Ok(Some(user))` for a valid token, `Ok(None)` or an
    /// [`PluginError::invalid_token`] error for an invalid one (401), and an
    /// [`PluginError::unavailable`] error when the identity provider could not be asked (503).
    fn authenticate(
        &self,
        token: String,
        request: Request,
    ) -> impl Future<Output = Result<Option<User>, PluginError>> + Send;

    /// Decides whether `user` may proceed (the seed's `authorizeUser`). Default: any authenticated
    /// user. The YAML `authorize:` of a provider instance replaces this hook.
    fn authorize(
        &self,
        user: User,
        request: Request,
    ) -> impl Future<Output = Result<bool, PluginError>> + Send {
        let _ = (user, request);
        async { Ok(true) }
    }

    /// The `iss` values this instance accepts (used to route JWTs among several instances).
    fn issuers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Return `true` when `authenticate` depends only on the token, the keys the host verified it
    /// with ([`Verifier`]) and the clock: not on the request, and not on a remote call whose answer
    /// can change (a revocation or introspection endpoint). The host then remembers an accepted
    /// token per instance (until its `exp`, at most `authentication_cache`, and only while the
    /// instance's key sets are the same and fresh) and answers it again without calling
    /// `authenticate`. Only key sets the host fetches (`jwks_url`, `x509_url` of
    /// [`Host::jwt_verifier`]) are followed: a plugin that fetches keys itself must leave this
    /// `false`. Default `false`: every request is asked.
    fn reusable_authentication(&self) -> bool {
        false
    }

    /// Prepares a new instance: fetch a discovery document, a first access token — whatever the
    /// first request would otherwise wait for. Called once per built instance, in the
    /// background as soon as it is built (a start or a reload does not wait for it), bounded by
    /// `server.plugin_timeout`. Let requests that arrive meanwhile wait for the work in flight
    /// rather than start it again. An error is logged and changes nothing (requests then do the
    /// work). Default: nothing. (ABI 1.1: a server of ABI 1.0 refuses a plugin built with this
    /// SDK.)
    fn warm_up(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }
}

/// A plugin: its manifest, its configuration type and how to build a provider.
pub trait Plugin: 'static {
    /// The provider this plugin builds.
    type Provider: AuthProvider;
    /// The provider configuration (the `config:` mapping of an instance): a struct with
    /// `#[derive(Deserialize, PluginConfig)]`. Use `#[serde(deny_unknown_fields)]` so that typos
    /// are reported.
    type Config: PluginConfig;

    /// The name instances use in `plugin:`.
    const NAME: &'static str;
    /// The plugin's version (use `env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    /// One line on what it does.
    const DESCRIPTION: &'static str;
    /// Set to `true` when the provider's `authorize` depends only on the user's `sub` and the
    /// organization the token names (`org_id`, or `o.id`) — a remote membership lookup, for
    /// example — and never on the request, the path or other claims. The host then caches its
    /// answers per subject and organization for a short time by default. Leave it `false` (the
    /// default) when `authorize` looks at anything else: caching would then be wrong.
    const AUTHORIZE_BY_SUBJECT: bool = false;

    /// Checks a configuration beyond what deserialization checks. Must not do I/O. Runs when a
    /// config is checked (`portcullis check`, a reload) and before every [`Plugin::build`]: refuse
    /// here what would make every request fail (a URL built from the config can be checked with
    /// [`Host::check_url`]).
    fn validate(config: &Self::Config, host: &Host) -> Result<(), PluginError> {
        let _ = (config, host);
        Ok(())
    }

    /// Builds a provider instance. Must not block; may start host requests lazily.
    fn build(config: Self::Config, host: Host) -> Result<Self::Provider, PluginError>;
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("plugin panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("plugin panicked: {s}")
    } else {
        "plugin panicked".to_string()
    }
}

/// Runs `f`, turning a panic into an internal error.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(PluginError::internal(panic_message(&*payload))),
    }
}

/// Wraps a future so that a panic while polling it becomes an internal error, and makes it
/// FFI-safe.
pub(crate) fn guard_future<'a, T, F>(
    make: impl FnOnce() -> F,
) -> BorrowingFfiFuture<'a, RResult<T, PluginError>>
where
    T: Send + 'a,
    F: Future<Output = Result<T, PluginError>> + Send + 'a,
{
    let fut = match catch_unwind(AssertUnwindSafe(make)) {
        Ok(fut) => fut,
        Err(payload) => {
            let err = PluginError::internal(panic_message(&*payload));
            return async move { RResult::RErr(err) }.into_ffi();
        }
    };
    async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(r) => RResult::from(r),
            Err(payload) => RResult::RErr(PluginError::internal(panic_message(&*payload))),
        }
    }
    .into_ffi()
}

struct Adapter<P>(Arc<P>);

impl<P: AuthProvider> Provider for Adapter<P> {
    fn authenticate(
        &self,
        token: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<ROption<RString>, PluginError>> {
        let p = self.0.clone();
        guard_future(move || async move {
            let request = Request::from_abi(request);
            let user = p.authenticate(token.into(), request).await?;
            Ok(ROption::from(user.map(User::into_abi)))
        })
    }

    fn authorize(
        &self,
        user: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<bool, PluginError>> {
        let p = self.0.clone();
        guard_future(move || async move {
            let user = User::from_abi(user)?;
            p.authorize(user, Request::from_abi(request)).await
        })
    }

    fn issuers(&self) -> RVec<RString> {
        guard(|| Ok(self.0.issuers()))
            .unwrap_or_default()
            .into_iter()
            .map(RString::from)
            .collect()
    }

    fn reusable_authentication(&self) -> bool {
        // A panic here means "no": the host then asks on every request.
        guard(|| Ok(self.0.reusable_authentication())).unwrap_or(false)
    }

    fn warm_up(&self) -> FfiFuture<RResult<(), PluginError>> {
        let p = self.0.clone();
        guard_future(move || async move { p.warm_up().await })
    }
}

/// The manifest of a plugin of configuration type `C`.
pub(crate) fn manifest_of<C: PluginConfig>(
    name: &str,
    version: &str,
    description: &str,
    authorize_by_subject: bool,
) -> Result<Manifest, PluginError> {
    let keys = <C as PluginConfig>::KEYS;
    let example = config::example_config(keys).map_err(PluginError::internal)?;
    Ok(Manifest {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        sdk_version: env!("CARGO_PKG_VERSION").into(),
        config_keys: keys
            .iter()
            .map(|k| ManifestKey {
                name: k.name().into(),
                description: k.description().into(),
                required: k.is_required(),
                secret: k.is_secret(),
                env: k.env_var().map(RString::from).into(),
                url: k.is_url(),
            })
            .collect(),
        example_config: serde_json::Value::Object(example).to_string().into(),
        authorize_by_subject,
    })
}

extern "C" fn manifest<P: Plugin>() -> RResult<Manifest, PluginError> {
    guard(|| manifest_of::<P::Config>(P::NAME, P::VERSION, P::DESCRIPTION, P::AUTHORIZE_BY_SUBJECT))
        .into()
}

extern "C" fn validate_config<P: Plugin>(
    config: RStr<'_>,
    host: HostBox,
) -> RResult<(), PluginError> {
    guard(|| {
        let host = Host::from_abi(host);
        let config = config::read::<P::Config>(config.as_str(), &host)?;
        P::validate(&config, &host)
    })
    .into()
}

extern "C" fn new_provider<P: Plugin>(
    config: RStr<'_>,
    host: HostBox,
) -> RResult<ProviderBox, PluginError> {
    guard(|| {
        let host = Host::from_abi(host);
        let config = config::read::<P::Config>(config.as_str(), &host)?;
        P::validate(&config, &host)?;
        let provider = P::build(config, host)?;
        Ok(Provider_TO::from_value(
            Adapter(Arc::new(provider)),
            TD_Opaque,
        ))
    })
    .into()
}

/// Builds the root module of a library that exports provider plugin `P`. Called by
/// [`crate::export_provider!`]; not for direct use.
#[doc(hidden)]
pub fn root_module<P: Plugin>() -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    use middleware::{no_middleware_build, no_middleware_check, no_middleware_manifest};
    PluginModule {
        manifest: manifest::<P>,
        validate_config: validate_config::<P>,
        new_provider: new_provider::<P>,
        exports: exports_provider,
        middleware_manifest: no_middleware_manifest,
        validate_middleware_config: no_middleware_check,
        new_middleware: no_middleware_build,
    }
    .leak_into_prefix()
}

/// Builds the root module of a library that exports middleware plugin `M`. Called by
/// [`crate::export_middleware!`]; not for direct use.
#[doc(hidden)]
pub fn middleware_root_module<M: MiddlewarePlugin>() -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        // The library's manifest is its middleware's; it builds no provider.
        manifest: middleware::middleware_manifest::<M>,
        validate_config: no_provider_check,
        new_provider: no_provider_build,
        exports: exports_middleware,
        middleware_manifest: middleware::middleware_manifest::<M>,
        validate_middleware_config: middleware::validate_middleware_config::<M>,
        new_middleware: middleware::new_middleware::<M>,
    }
    .leak_into_prefix()
}

/// Builds the root module of a library that exports provider plugin `P` and middleware plugin
/// `M`. Called by [`crate::export_plugins!`]; not for direct use.
#[doc(hidden)]
pub fn plugins_root_module<P: Plugin, M: MiddlewarePlugin>() -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        manifest: manifest::<P>,
        validate_config: validate_config::<P>,
        new_provider: new_provider::<P>,
        exports: exports_both,
        middleware_manifest: middleware::middleware_manifest::<M>,
        validate_middleware_config: middleware::validate_middleware_config::<M>,
        new_middleware: middleware::new_middleware::<M>,
    }
    .leak_into_prefix()
}

extern "C" fn exports_provider() -> u32 {
    EXPORTS_PROVIDER
}

extern "C" fn exports_middleware() -> u32 {
    EXPORTS_MIDDLEWARE
}

extern "C" fn exports_both() -> u32 {
    EXPORTS_PROVIDER | EXPORTS_MIDDLEWARE
}

fn no_provider() -> PluginError {
    PluginError::config("this plugin library exports no provider (it exports middleware)")
}

extern "C" fn no_provider_check(_: RStr<'_>, _: HostBox) -> RResult<(), PluginError> {
    RResult::RErr(no_provider())
}

extern "C" fn no_provider_build(_: RStr<'_>, _: HostBox) -> RResult<ProviderBox, PluginError> {
    RResult::RErr(no_provider())
}

/// Adapts an in-process [`AuthProvider`] into the boundary type (hosts' tests, test kits).
pub fn provider_box<P: AuthProvider>(provider: P) -> ProviderBox {
    Provider_TO::from_value(Adapter(Arc::new(provider)), TD_Opaque)
}

/// Wraps a host services implementation into the boundary type (for hosts and test kits).
pub fn host_box<H: HostServices + 'static>(host: H) -> HostBox {
    HostServices_TO::from_ptr(RArc::new(host), TD_Opaque)
}

#[allow(dead_code)]
fn _assert_boxes_send_sync(p: ProviderBox, h: HostBox, v: RBox<()>) {
    fn is_send_sync<T: Send + Sync>(_: &T) {}
    is_send_sync(&p);
    is_send_sync(&h);
    let _ = v;
}
