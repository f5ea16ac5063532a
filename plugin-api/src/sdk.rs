//! The safe SDK: what a plugin author writes against.

use std::{
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec, Tuple2},
};
use async_ffi::{FfiFuture, FutureExt as _};
use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;

use crate::{
    error::PluginError,
    host::{HostBox, JwtVerifierBox, JwtVerifierSpec},
    module::{PluginModule, PluginModuleRef, API_VERSION},
    provider::{Provider, ProviderBox, Provider_TO},
    types::{ConfigKey, HttpRequest, HttpResponse, LogLevel, Manifest, RequestInfo},
};

/// An authenticated user: the JSON object a provider vouches for (usually the token's claims).
///
/// Kept as JSON text so that claims verified by the host pass through a plugin without being
/// parsed and written again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    json: String,
}

impl User {
    /// A user from a JSON object's text. Fails unless it is a JSON object.
    pub fn from_json(json: String) -> Result<User, PluginError> {
        if !json.trim_start().starts_with('{') {
            return Err(PluginError::internal("a user must be a JSON object"));
        }
        Ok(User { json })
    }

    /// A user from a claims map.
    pub fn from_claims(claims: serde_json::Map<String, serde_json::Value>) -> User {
        User {
            json: serde_json::Value::Object(claims).to_string(),
        }
    }

    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Parses the claims.
    pub fn claims(&self) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> {
        serde_json::from_str(&self.json)
            .map_err(|_| PluginError::internal("user claims are not a JSON object"))
    }

    /// One claim, parsed.
    pub fn claim(&self, name: &str) -> Option<serde_json::Value> {
        self.claims().ok()?.remove(name)
    }

    /// The `sub` claim when it is a non-empty string.
    pub fn subject(&self) -> Option<String> {
        match self.claim("sub") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

/// The request being decided, as a plugin sees it.
pub type Request = RequestInfo;

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
}

/// A plugin: its manifest, its configuration type and how to build a provider.
pub trait Plugin: 'static {
    /// The provider this plugin builds.
    type Provider: AuthProvider;
    /// The provider configuration (the `config:` mapping of an instance), deserialized from JSON.
    /// Use `#[serde(deny_unknown_fields)]` so that typos are reported.
    type Config: DeserializeOwned;

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

    /// The configuration keys, for `portcullis plugin inspect` and for redaction.
    fn config_keys() -> Vec<ConfigKey> {
        Vec::new()
    }

    /// Checks a configuration beyond what deserialization checks. Must not do I/O.
    fn validate(config: &Self::Config) -> Result<(), PluginError> {
        let _ = config;
        Ok(())
    }

    /// Builds a provider instance. Must not block; may start host requests lazily.
    fn build(config: Self::Config, host: Host) -> Result<Self::Provider, PluginError>;
}

/// A key entry for [`Plugin::config_keys`].
pub fn config_key(name: &str, description: &str, required: bool, secret: bool) -> ConfigKey {
    ConfigKey {
        name: name.into(),
        description: description.into(),
        required,
        secret,
    }
}

/// The host's services, for plugin code.
#[derive(Clone)]
pub struct Host {
    inner: HostBox,
}

impl Host {
    /// Wraps the raw services object.
    pub fn new(inner: HostBox) -> Host {
        Host { inner }
    }

    /// Logs an error line.
    pub fn error(&self, message: &str) {
        self.inner.log(LogLevel::ERROR, message.into());
    }
    /// Logs a warning.
    pub fn warn(&self, message: &str) {
        self.inner.log(LogLevel::WARN, message.into());
    }
    /// Logs an informational line.
    pub fn info(&self, message: &str) {
        self.inner.log(LogLevel::INFO, message.into());
    }
    /// Logs a debug line.
    pub fn debug(&self, message: &str) {
        self.inner.log(LogLevel::DEBUG, message.into());
    }

    /// Milliseconds since the Unix epoch, from the host's clock.
    pub fn now_unix_millis(&self) -> u64 {
        self.inner.now_unix_millis()
    }

    /// An environment variable of the host process.
    pub fn env(&self, name: &str) -> Option<String> {
        self.inner
            .env_var(name.into())
            .into_option()
            .map(Into::into)
    }

    /// Sends an HTTP request through the host.
    pub async fn http(&self, request: HttpRequest) -> Result<HttpResponse, PluginError> {
        self.inner.http(request).await.into_result()
    }

    /// A GET with headers.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse, PluginError> {
        self.http(HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| Tuple2(RString::from(*k), RString::from(*v)))
                .collect::<RVec<_>>(),
            body: RVec::new(),
            timeout_ms: 0,
        })
        .await
    }

    /// Signs `claims` (a JSON object) with RS256 and a PEM private key, on the host (plugins carry
    /// no crypto of their own). `kid`, when given, goes into the header.
    pub fn sign_jwt_rs256(
        &self,
        claims: &serde_json::Value,
        kid: Option<&str>,
        private_key_pem: &str,
    ) -> Result<String, PluginError> {
        let claims = claims.to_string();
        self.inner
            .sign_jwt_rs256(
                RStr::from_str(&claims),
                kid.map(RStr::from_str).into(),
                RStr::from_str(private_key_pem),
            )
            .into_result()
            .map(Into::into)
    }

    /// Builds a JWT verifier backed by the host's key cache.
    pub fn jwt_verifier(&self, spec: &JwtVerifierSpec) -> Result<Verifier, PluginError> {
        let json = serde_json::to_string(spec)
            .map_err(|_| PluginError::internal("verifier spec does not serialize"))?;
        let inner = self
            .inner
            .jwt_verifier(RStr::from_str(&json))
            .into_result()?;
        Ok(Verifier {
            inner: Arc::new(inner),
        })
    }
}

/// A JWT verifier owned by the host; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<JwtVerifierBox>,
}

impl Verifier {
    /// Verifies a token; on success returns the user made of its claims.
    pub async fn verify(&self, token: &str) -> Result<User, PluginError> {
        let json = self
            .inner
            .verify(RStr::from_str(token))
            .await
            .into_result()?;
        Ok(User { json: json.into() })
    }
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
fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(PluginError::internal(panic_message(&*payload))),
    }
}

/// Wraps a future so that a panic while polling it becomes an internal error, and makes it
/// FFI-safe.
fn guard_future<T, F>(make: impl FnOnce() -> F) -> FfiFuture<RResult<T, PluginError>>
where
    T: Send + 'static,
    F: Future<Output = Result<T, PluginError>> + Send + 'static,
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

fn parse_config<P: Plugin>(config: RStr<'_>) -> Result<P::Config, PluginError> {
    // serde reads a struct from a JSON list too (`[]` is a config with every default): a provider's
    // config is a mapping, so anything else is refused before it reaches the plugin's type.
    if !config.as_str().trim_start().starts_with('{') {
        return Err(PluginError::config("the provider config must be a mapping"));
    }
    serde_json::from_str(config.as_str())
        .map_err(|e| PluginError::config(redact_serde_error(&e.to_string())))
}

/// Serde messages quote the offending value (`invalid type: string "abc..."`); a value may be a
/// secret, so quoted values are dropped and only the shape of the error is kept.
pub fn redact_serde_error(message: &str) -> String {
    // Drop the " at line L column C" suffix: positions in generated JSON mean nothing to a user.
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    // Keep backtick-quoted names (field and variant names from the schema) but drop double-quoted
    // input values.
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        match rest[start + 1..].find('"') {
            Some(end) => {
                out.push_str("\"…\"");
                rest = &rest[start + 1 + end + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // Backtick-quoted names come from the schema (`expected one of ...`) or from the input's keys
    // (`unknown field ...`). Schema names are short; a long one is more likely a misplaced value
    // (a secret pasted as a key), so it is elided too.
    let mut redacted = String::with_capacity(out.len());
    let mut parts = out.split('`');
    if let Some(first) = parts.next() {
        redacted.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        redacted.push('`');
        if i % 2 == 0 && part.chars().count() > 32 {
            redacted.push('…');
        } else {
            redacted.push_str(part);
        }
    }
    redacted
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
            let user = p.authenticate(token.into(), request).await?;
            Ok(ROption::from(user.map(|u| RString::from(u.json))))
        })
    }

    fn authorize(
        &self,
        user: RString,
        request: RequestInfo,
    ) -> FfiFuture<RResult<bool, PluginError>> {
        let p = self.0.clone();
        guard_future(move || async move {
            let user = User::from_json(user.into())?;
            p.authorize(user, request).await
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
}

extern "C" fn manifest<P: Plugin>() -> RResult<Manifest, PluginError> {
    guard(|| {
        Ok(Manifest {
            name: P::NAME.into(),
            version: P::VERSION.into(),
            description: P::DESCRIPTION.into(),
            api_version: API_VERSION.into(),
            config_keys: P::config_keys().into_iter().collect(),
            authorize_by_subject: P::AUTHORIZE_BY_SUBJECT,
        })
    })
    .into()
}

extern "C" fn validate_config<P: Plugin>(config: RStr<'_>) -> RResult<(), PluginError> {
    guard(|| {
        let config = parse_config::<P>(config)?;
        P::validate(&config)
    })
    .into()
}

extern "C" fn new_provider<P: Plugin>(
    config: RStr<'_>,
    host: HostBox,
) -> RResult<ProviderBox, PluginError> {
    guard(|| {
        let config = parse_config::<P>(config)?;
        P::validate(&config)?;
        let provider = P::build(config, Host::new(host))?;
        Ok(Provider_TO::from_value(
            Adapter(Arc::new(provider)),
            TD_Opaque,
        ))
    })
    .into()
}

/// Builds the root module of plugin `P`. Called by [`crate::export_provider!`]; not for direct use.
#[doc(hidden)]
pub fn root_module<P: Plugin>() -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        manifest: manifest::<P>,
        validate_config: validate_config::<P>,
        new_provider: new_provider::<P>,
    }
    .leak_into_prefix()
}

/// Adapts an in-process [`AuthProvider`] into the boundary type, for tests and the conformance kit.
pub fn provider_box<P: AuthProvider>(provider: P) -> ProviderBox {
    Provider_TO::from_value(Adapter(Arc::new(provider)), TD_Opaque)
}

/// Wraps a host services implementation into the boundary type (for hosts and test kits).
pub fn host_box<H: crate::host::HostServices + 'static>(host: H) -> HostBox {
    crate::host::HostServices_TO::from_ptr(RArc::new(host), TD_Opaque)
}

#[allow(dead_code)]
fn _assert_boxes_send_sync(p: ProviderBox, h: HostBox, v: RBox<()>) {
    fn is_send_sync<T: Send + Sync>(_: &T) {}
    is_send_sync(&p);
    is_send_sync(&h);
    let _ = v;
}
