//! A provider or middleware instance's plugin object as the rest of the server uses it: every call bounded by a
//! time limit and by the instance's in-flight limit, a panic caught, and no `abi_stable` type
//! beyond this module. The bench-only direct verifier (feature `bench-direct`) is one more kind of
//! handle.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt as _;
use poem::http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_plugin_api::{
    abi::{
        abi_stable::std_types::{ROption, RResult, RStr, RString, RVec, Tuple2},
        async_ffi::FfiFuture,
        HostBox, MiddlewareBox, MiddlewareRequest, PluginModuleRef, ProviderBox, RequestInfo,
        ResponseHead,
    },
    PluginError,
};
use tokio::sync::Semaphore;

use super::{CheckServices, InstanceServices, LoadedPlugin};

/// The request as plugins are told about it: built once per request, and only when a plugin is
/// asked. The credentials are withheld: the `authorization`, `cookie` and `proxy-authorization`
/// headers and the configured token header (the token reaches a provider as an argument, a
/// middleware never).
#[derive(Clone, Debug)]
pub struct PluginRequest(RequestInfo);

impl PluginRequest {
    /// The request with this method, canonical path and headers; `token_header` is the
    /// configured token header (`auth.token.header`).
    pub fn new(
        method: &str,
        path: &str,
        headers: &HeaderMap,
        token_header: &HeaderName,
    ) -> PluginRequest {
        PluginRequest(request_info(method, path, headers, token_header))
    }
}

/// A header value as text for a plugin: visible ASCII as it is, any other byte read as Latin-1
/// (HTTP's historical charset). Never dropped: a header a middleware could not see would still
/// reach the upstream.
fn header_text(v: &HeaderValue) -> RString {
    match v.to_str() {
        Ok(s) => s.into(),
        Err(_) => v
            .as_bytes()
            .iter()
            .map(|&b| char::from(b))
            .collect::<String>()
            .into(),
    }
}

/// What a plugin is told of a request: method, path, and the headers but the credentials.
fn request_info(
    method: &str,
    path: &str,
    headers: &HeaderMap,
    token_header: &HeaderName,
) -> RequestInfo {
    let headers = headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            ) && *k != token_header
        })
        .map(|(k, v)| Tuple2(RString::from(k.as_str()), header_text(v)))
        .collect::<RVec<_>>();
    RequestInfo {
        method: method.into(),
        path: path.into(),
        headers,
    }
}

/// An IP address as text; an IPv4 one without the formatting machinery (it is written for every
/// request that runs a middleware).
fn ip_text(ip: std::net::IpAddr) -> RString {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + (octet / 10) % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out.into()
        }
        std::net::IpAddr::V6(_) => ip.to_string().into(),
    }
}

/// A user as a plugin vouched for it: a JSON object's text, passed back to the plugin's
/// `authorize` as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserJson(RString);

impl UserJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether it is empty (never, for a user a plugin returned).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for UserJson {
    fn from(s: String) -> UserJson {
        UserJson(s.into())
    }
}

/// One instance's plugin object and its in-flight limit; cheap to clone (clones share both).
#[derive(Clone)]
pub struct ProviderHandle {
    provider: Arc<ProviderBox>,
    in_flight: Arc<Semaphore>,
    limit: usize,
    #[cfg(feature = "bench-direct")]
    direct: Option<super::HostVerifier>,
}

impl ProviderHandle {
    /// A plugin object, with at most `limit` calls in flight.
    pub fn new(provider: ProviderBox, limit: usize) -> ProviderHandle {
        ProviderHandle {
            provider: Arc::new(provider),
            in_flight: Arc::new(Semaphore::new(limit)),
            limit,
            #[cfg(feature = "bench-direct")]
            direct: None,
        }
    }

    /// The same plugin object under `limit`: the calls in flight keep counting when the limit is
    /// the same.
    pub fn with_limit(&self, limit: usize) -> ProviderHandle {
        let mut h = self.clone();
        if limit != self.limit {
            h.in_flight = Arc::new(Semaphore::new(limit));
            h.limit = limit;
        }
        h
    }

    /// Whether both hold the same plugin object (an instance kept across a reload).
    pub fn same_object(&self, other: &ProviderHandle) -> bool {
        Arc::ptr_eq(&self.provider, &other.provider)
    }

    /// Bench-only: answer `authenticate` with this host verifier instead of the plugin.
    #[cfg(feature = "bench-direct")]
    pub fn set_direct(&mut self, direct: Option<super::HostVerifier>) {
        self.direct = direct;
    }

    /// The `iss` values the instance accepts (asked once, when it is built).
    pub fn issuers(&self) -> Vec<String> {
        self.provider
            .issuers()
            .into_iter()
            .map(RString::into_string)
            .collect()
    }

    /// Whether the instance's answer for a token may be kept (asked once, when it is built).
    pub fn reusable_authentication(&self) -> bool {
        self.provider.reusable_authentication()
    }

    /// Asks about `token`: `Ok(None)` when the plugin does not accept it.
    pub async fn authenticate(
        &self,
        token: &str,
        request: &PluginRequest,
        timeout: Duration,
    ) -> Result<Option<UserJson>, PluginError> {
        #[cfg(feature = "bench-direct")]
        if let Some(v) = &self.direct {
            return v.verify_token(token).await.map(|u| Some(UserJson(u)));
        }
        let answer = self
            .call(
                self.provider
                    .authenticate(RString::from(token), request.0.clone()),
                timeout,
            )
            .await?;
        Ok(match answer {
            ROption::RSome(json) => Some(UserJson(json)),
            ROption::RNone => None,
        })
    }

    /// Asks whether `user` may proceed with `request`.
    pub async fn authorize(
        &self,
        user: &UserJson,
        request: &PluginRequest,
        timeout: Duration,
    ) -> Result<bool, PluginError> {
        self.call(
            self.provider.authorize(user.0.clone(), request.0.clone()),
            timeout,
        )
        .await
    }

    /// Lets a new instance prepare itself (ABI 1.1; a 1.0 plugin answers at once).
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), PluginError> {
        self.call(self.provider.warm_up(), timeout).await
    }

    /// One call, bounded (see [`bounded`]).
    async fn call<T>(
        &self,
        fut: FfiFuture<RResult<T, PluginError>>,
        timeout: Duration,
    ) -> Result<T, PluginError> {
        bounded(&self.in_flight, fut, timeout).await
    }
}

/// One plugin call: an in-flight permit held for it (none free: unavailable at once), bounded by
/// `timeout`, a panic caught and turned into an error.
async fn bounded<T>(
    in_flight: &Semaphore,
    fut: FfiFuture<RResult<T, PluginError>>,
    timeout: Duration,
) -> Result<T, PluginError> {
    let Ok(_permit) = in_flight.try_acquire() else {
        return Err(PluginError::unavailable(
            "too many plugin calls in flight on this instance (server.plugin_max_in_flight)",
        ));
    };
    let mut fut = AssertUnwindSafe(fut).catch_unwind();
    // Most calls answer on their first poll (nothing to wait for): they need no timer, whose
    // setting and clearing would cost more than the call. A call that waits is timed from then.
    // The timer is boxed, so that the calls that need none do not carry its room either.
    let polled = match futures_util::poll!(&mut fut) {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => Box::pin(tokio::time::timeout(timeout, fut)).await,
    };
    match polled {
        Err(_) => Err(PluginError::unavailable(format!(
            "plugin call did not finish within {timeout:?}"
        ))),
        Ok(Err(_)) => Err(PluginError::internal("plugin panicked")),
        Ok(Ok(r)) => r.into_result(),
    }
}

/// Which of a library's plugins an instance is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// A `providers:` instance.
    Provider,
    /// A `middleware:` instance (ABI 1.2).
    Middleware,
}

/// Asks the plugin whether it accepts an instance config, without building the instance.
pub async fn validate(
    plugin: &Arc<LoadedPlugin>,
    kind: PluginKind,
    config_json: String,
    services: CheckServices,
    timeout: Duration,
) -> Result<(), String> {
    let module = plugin.module;
    let file = plugin.file.display().to_string();
    let check = match kind {
        PluginKind::Provider => Some(module.validate_config()),
        PluginKind::Middleware => module.validate_middleware_config(),
    };
    let Some(check) = check else {
        return Err(format!("plugin {file} exports no middleware"));
    };
    let task = tokio::task::spawn_blocking(move || {
        let host = portcullis_plugin_api::abi::host_box(services);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check(RStr::from_str(&config_json), host)
        }))
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(format!(
            "validate_config of plugin {file} did not return within {timeout:?}"
        )),
        Ok(Err(_)) | Ok(Ok(Err(_))) => Err(format!("validate_config of plugin {file} panicked")),
        Ok(Ok(Ok(result))) => result
            .into_result()
            .map_err(|e| format!("config rejected by plugin {file}: {}", e.message())),
    }
}

/// Runs a plugin constructor on a blocking thread, bounded by `timeout`. A constructor that
/// hangs costs one blocked thread and a reported error, never the server.
async fn run_constructor<T: Send + 'static>(
    plugin: &Arc<LoadedPlugin>,
    ctor: impl FnOnce(PluginModuleRef, HostBox) -> RResult<T, PluginError> + Send + 'static,
    services: InstanceServices,
    timeout: Duration,
) -> Result<T, String> {
    let module = plugin.module;
    let file = plugin.file.display().to_string();
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        let _in_span = span.enter();
        let host = portcullis_plugin_api::abi::host_box(services);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctor(module, host)))
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(format!(
            "constructor of plugin {file} did not return within {timeout:?}"
        )),
        Ok(Err(_)) | Ok(Ok(Err(_))) => Err(format!("constructor of plugin {file} panicked")),
        Ok(Ok(Ok(result))) => result
            .into_result()
            .map_err(|e| format!("config rejected by plugin {file}: {}", e.message())),
    }
}

/// Calls the plugin's `new_provider` (see [`run_constructor`]).
pub async fn construct(
    plugin: &Arc<LoadedPlugin>,
    config_json: String,
    services: InstanceServices,
    timeout: Duration,
    in_flight_limit: usize,
) -> Result<ProviderHandle, String> {
    let ctor = move |module: PluginModuleRef, host| {
        (module.new_provider())(RStr::from_str(&config_json), host)
    };
    run_constructor(plugin, ctor, services, timeout)
        .await
        .map(|p| ProviderHandle::new(p, in_flight_limit))
}

/// Calls the plugin's `new_middleware` (see [`run_constructor`]).
pub async fn construct_middleware(
    plugin: &Arc<LoadedPlugin>,
    config_json: String,
    services: InstanceServices,
    timeout: Duration,
    in_flight_limit: usize,
) -> Result<MiddlewareHandle, String> {
    let Some(new_middleware) = plugin.module.new_middleware() else {
        return Err(format!(
            "plugin {} exports no middleware",
            plugin.file.display()
        ));
    };
    let ctor = move |_: PluginModuleRef, host| new_middleware(RStr::from_str(&config_json), host);
    let mw = run_constructor(plugin, ctor, services, timeout).await?;
    Ok(MiddlewareHandle::new(mw, in_flight_limit))
}

/// The request as a middleware is told about it: built once per request that runs middleware,
/// and kept up to date with the request headers each one changes, so that the next sees them.
#[derive(Clone, Debug)]
pub struct MiddlewareCall(MiddlewareRequest);

/// The user a middleware is told about: the provider instance and the user's JSON text.
pub struct CallUser<'a> {
    /// The provider instance that vouched for the user.
    pub provider: &'a str,
    /// The user's claims as a JSON object's text.
    pub json: &'a str,
}

impl MiddlewareCall {
    /// The call for a request with this method, canonical path, query, headers, client address
    /// and user; `dry_run` when it is only explained.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        method: &str,
        path: &str,
        headers: &HeaderMap,
        token_header: &HeaderName,
        query: Option<&str>,
        client: Option<std::net::IpAddr>,
        user: Option<CallUser<'_>>,
        dry_run: bool,
    ) -> MiddlewareCall {
        MiddlewareCall(MiddlewareRequest {
            request: request_info(method, path, headers, token_header),
            query: query.unwrap_or_default().into(),
            client: client.map(ip_text).unwrap_or_default(),
            user: user.as_ref().map(|u| RString::from(u.json)).into(),
            provider: user.as_ref().map(|u| RString::from(u.provider)).into(),
            dry_run,
        })
    }

    /// A call about nothing (what is left where a call was handed over).
    pub fn empty() -> MiddlewareCall {
        MiddlewareCall(MiddlewareRequest::default())
    }

    /// Reflects a middleware's request-header changes, for the next one.
    pub fn apply(&mut self, remove: &[String], set: &[(String, String)]) {
        let headers = &mut self.0.request.headers;
        for name in remove.iter().chain(set.iter().map(|(n, _)| n)) {
            headers.retain(|t| !t.0.as_str().eq_ignore_ascii_case(name));
        }
        for (n, v) in set {
            headers.push(Tuple2(n.to_ascii_lowercase().into(), v.as_str().into()));
        }
    }
}

/// An answer a middleware gave instead of letting the request through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MiddlewareAnswer {
    /// Status code, as the plugin gave it (checked by the caller).
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// What a middleware's `on_request` decided, in host types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MiddlewareOutcome {
    /// The request ends here with this answer.
    pub answer: Option<MiddlewareAnswer>,
    /// Request headers set, in order.
    pub set_headers: Vec<(String, String)>,
    /// Request headers removed (before `set_headers`).
    pub remove_headers: Vec<String>,
    /// Headers added to the response.
    pub response_headers: Vec<(String, String)>,
}

impl MiddlewareOutcome {
    /// Whether it lets the request through and changes nothing.
    pub fn is_pass(&self) -> bool {
        self.answer.is_none()
            && self.set_headers.is_empty()
            && self.remove_headers.is_empty()
            && self.response_headers.is_empty()
    }
}

/// What a middleware's `on_response` changes, in host types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseChange {
    /// Headers set, in order.
    pub set_headers: Vec<(String, String)>,
    /// Headers removed (before `set_headers`).
    pub remove_headers: Vec<String>,
}

fn pairs(v: RVec<Tuple2<RString, RString>>) -> Vec<(String, String)> {
    v.into_iter()
        .map(|t| (t.0.into_string(), t.1.into_string()))
        .collect()
}

fn names(v: RVec<RString>) -> Vec<String> {
    v.into_iter().map(RString::into_string).collect()
}

/// One middleware instance's plugin object and its in-flight limit; cheap to clone.
#[derive(Clone)]
pub struct MiddlewareHandle {
    middleware: Arc<MiddlewareBox>,
    in_flight: Arc<Semaphore>,
    limit: usize,
    wants_response: bool,
}

impl MiddlewareHandle {
    /// A plugin object, with at most `limit` calls in flight. Whether it wants `on_response` is
    /// asked once, here: a panic in it reads as `false` (the SDK's adapter catches it too).
    pub fn new(middleware: MiddlewareBox, limit: usize) -> MiddlewareHandle {
        let wants_response =
            std::panic::catch_unwind(AssertUnwindSafe(|| middleware.wants_response()))
                .unwrap_or(false);
        MiddlewareHandle {
            middleware: Arc::new(middleware),
            in_flight: Arc::new(Semaphore::new(limit)),
            limit,
            wants_response,
        }
    }

    /// The same plugin object under `limit` (see [`ProviderHandle::with_limit`]).
    pub fn with_limit(&self, limit: usize) -> MiddlewareHandle {
        let mut h = self.clone();
        if limit != self.limit {
            h.in_flight = Arc::new(Semaphore::new(limit));
            h.limit = limit;
        }
        h
    }

    /// Whether both hold the same plugin object (an instance kept across a reload).
    pub fn same_object(&self, other: &MiddlewareHandle) -> bool {
        Arc::ptr_eq(&self.middleware, &other.middleware)
    }

    /// Whether the instance wants `on_response` calls (asked once, when it was built).
    pub fn wants_response(&self) -> bool {
        self.wants_response
    }

    /// Runs `on_request`. `call` is handed over when nothing needs it afterwards (no later
    /// middleware, no response hook), else a copy is.
    pub async fn on_request(
        &self,
        call: std::borrow::Cow<'_, MiddlewareCall>,
        timeout: Duration,
    ) -> Result<MiddlewareOutcome, PluginError> {
        let raw = bounded(
            &self.in_flight,
            self.middleware.on_request(call.into_owned().0),
            timeout,
        )
        .await?;
        Ok(MiddlewareOutcome {
            answer: raw.answer.into_option().map(|a| MiddlewareAnswer {
                status: a.status,
                headers: pairs(a.headers),
                body: a.body.into_vec(),
            }),
            set_headers: pairs(raw.set_headers),
            remove_headers: names(raw.remove_headers),
            response_headers: pairs(raw.response_headers),
        })
    }

    /// Runs `on_response` on a response of `status` with `headers`.
    pub async fn on_response(
        &self,
        call: &MiddlewareCall,
        status: u16,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<ResponseChange, PluginError> {
        let head = ResponseHead {
            status,
            headers: headers
                .iter()
                .filter_map(|(k, v)| {
                    Some(Tuple2(
                        RString::from(k.as_str()),
                        RString::from(v.to_str().ok()?),
                    ))
                })
                .collect(),
        };
        let raw = bounded(
            &self.in_flight,
            self.middleware.on_response(call.0.clone(), head),
            timeout,
        )
        .await?;
        Ok(ResponseChange {
            set_headers: pairs(raw.set_headers),
            remove_headers: names(raw.remove_headers),
        })
    }
}
