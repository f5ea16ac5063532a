//! A provider or middleware instance's plugin object as the rest of the server uses it: every call bounded by a
//! time limit and by the instance's in-flight limit, a panic caught, and no `abi_stable` type
//! beyond this module. The bench-only direct verifier (feature `bench-direct`) is one more kind of
//! handle.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt as _;
use poem::http::{header, HeaderMap, HeaderName, HeaderValue};
use portcullis_plugin_api::{
    abi::{
        abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec, Tuple2},
        async_ffi::BorrowingFfiFuture,
        ClientAddr, HostBox, MiddlewareBox, MiddlewareRequest, PluginModuleRef, ProviderBox,
        RequestInfo, RequestOutcome, ResponseEdit, ResponseHead,
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
        .filter(|(k, _)| !withheld(k, token_header))
        .map(|(k, v)| Tuple2(RString::from(k.as_str()), header_text(v)))
        .collect::<RVec<_>>();
    RequestInfo {
        method: method.into(),
        path: path.into(),
        headers,
    }
}

/// An IP address as text, kept inline (it is written for every request that runs a middleware):
/// an IPv4 one without the formatting machinery.
pub struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    /// The text of `ip`.
    pub fn new(ip: std::net::IpAddr) -> IpText {
        let mut out = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    if octet >= 100 {
                        out.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        out.push(b'0' + (octet / 10) % 10);
                    }
                    out.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut cursor = std::io::Cursor::new(&mut out.buf[..]);
                // 45 bytes hold the longest IPv6 text (an IPv4-mapped one is 45 at most).
                if write!(cursor, "{v6}").is_ok() {
                    out.len = usize::try_from(cursor.position()).unwrap_or(0);
                }
            }
        }
        out
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
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
        fut: BorrowingFfiFuture<'_, RResult<T, PluginError>>,
        timeout: Duration,
    ) -> Result<T, PluginError> {
        bounded(&self.in_flight, fut, timeout).await
    }
}

/// One plugin call: an in-flight permit held for it (none free: unavailable at once), bounded by
/// `timeout`, a panic caught and turned into an error.
async fn bounded<T>(
    in_flight: &Semaphore,
    fut: BorrowingFfiFuture<'_, RResult<T, PluginError>>,
    timeout: Duration,
) -> Result<T, PluginError> {
    let Ok(_permit) = in_flight.try_acquire() else {
        return Err(PluginError::unavailable(IN_FLIGHT_FULL));
    };
    let mut fut = AssertUnwindSafe(fut).catch_unwind();
    // Most calls answer on their first poll (nothing to wait for): they need no timer, whose
    // setting and clearing would cost more than the call. A call that waits is timed from then.
    // The timer is boxed, so that the calls that need none do not carry its room either.
    let polled = match futures_util::poll!(&mut fut) {
        std::task::Poll::Ready(r) => Ok(r),
        std::task::Poll::Pending => Box::pin(tokio::time::timeout(timeout, fut)).await,
    };
    finish(polled, timeout)
}

/// Why a call was refused at once: the instance's in-flight limit is reached.
const IN_FLIGHT_FULL: &str =
    "too many plugin calls in flight on this instance (server.plugin_max_in_flight)";

/// How a bounded call ended: in time or not, with or without a panic.
fn finish<T>(
    polled: Result<std::thread::Result<RResult<T, PluginError>>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<T, PluginError> {
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

/// Calls the plugin's `new_provider` (on a blocking thread, bounded by `timeout`).
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

/// Calls the plugin's `new_middleware` (on a blocking thread, bounded by `timeout`).
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

/// The user a middleware is told about: the provider instance and the user's JSON text.
#[derive(Clone, Copy)]
pub struct CallUser<'a> {
    /// The provider instance that vouched for the user.
    pub provider: &'a str,
    /// The user's claims as a JSON object's text.
    pub json: &'a str,
}

/// What a middleware is told about a request besides its headers. Lent to the plugin for the
/// call (ABI 1.2): nothing is copied to reach it.
#[derive(Clone, Copy)]
pub struct CallParts<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Canonical path.
    pub path: &'a str,
    /// The query string without the token's parameter (empty when none).
    pub query: &'a str,
    /// The client's IP address (written as text only if a plugin asks).
    pub client: Option<std::net::IpAddr>,
    /// The user, on a request that has one.
    pub user: Option<CallUser<'a>>,
    /// Only explained.
    pub dry_run: bool,
}

/// Request headers in their boundary form, borrowed from where they are kept.
type LentHeaders<'h> = Vec<Tuple2<RStr<'h>, RStr<'h>>>;

impl<'a> CallParts<'a> {
    /// The request in its boundary form, with `headers` (see [`lend_headers`]).
    fn lend(&self, headers: &'a [Tuple2<RStr<'a>, RStr<'a>>]) -> MiddlewareRequest<'a> {
        MiddlewareRequest {
            method: RStr::from_str(self.method),
            path: RStr::from_str(self.path),
            headers: RSlice::from_slice(headers),
            query: RStr::from_str(self.query),
            client: self.client.map(ClientAddr::new).unwrap_or_default(),
            user: self.user.map(|u| RStr::from_str(u.json)).into(),
            provider: self.user.map(|u| RStr::from_str(u.provider)).into(),
            dry_run: self.dry_run,
        }
    }
}

/// Whether a request header is withheld from plugins: the credentials.
fn withheld(name: &HeaderName, token_header: &HeaderName) -> bool {
    // Standard names compare as enum values, not as text.
    name == header::AUTHORIZATION
        || name == header::COOKIE
        || name == header::PROXY_AUTHORIZATION
        || name == token_header
}

/// The header values a middleware is told about that are not visible ASCII, read as Latin-1, in
/// order (see [`header_text`]).
fn latin1_values(headers: &HeaderMap, token_header: &HeaderName) -> Vec<String> {
    headers
        .iter()
        .filter(|(k, v)| !withheld(k, token_header) && v.to_str().is_err())
        .map(|(_, v)| header_text(v).into_string())
        .collect()
}

/// The headers a middleware is told about, borrowed from `headers`, and from `latin1` for the
/// values that are not visible ASCII (in order, as [`latin1_values`] gives them): one allocation
/// for the list. `None` when `latin1` lacks a value `headers` needs.
fn lend_headers<'h>(
    headers: &'h HeaderMap,
    token_header: &HeaderName,
    latin1: &'h [String],
) -> Option<LentHeaders<'h>> {
    let mut converted = latin1.iter();
    let mut out = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        if withheld(k, token_header) {
            continue;
        }
        let value = match v.to_str() {
            Ok(s) => s,
            Err(_) => converted.next()?.as_str(),
        };
        out.push(Tuple2(RStr::from_str(k.as_str()), RStr::from_str(value)));
    }
    Some(out)
}

/// The headers a middleware is told about, lent: visible ASCII, as nearly every header is, as it
/// is; only a request with another value pays for the Latin-1 copies, kept in `latin1`.
fn lend_all<'h>(
    headers: &'h HeaderMap,
    token_header: &HeaderName,
    latin1: &'h mut Vec<String>,
) -> LentHeaders<'h> {
    if let Some(lent) = lend_headers(headers, token_header, &[]) {
        return lent;
    }
    *latin1 = latin1_values(headers, token_header);
    let latin1: &'h [String] = latin1;
    lend_headers(headers, token_header, latin1).unwrap_or_default()
}

/// A request kept for the response step (`on_response`), after the request itself went on to
/// the route: owned, and lent to each call.
pub struct KeptCall {
    method: String,
    path: String,
    query: String,
    client: Option<std::net::IpAddr>,
    user: Option<(String, String)>,
    dry_run: bool,
    headers: Vec<(String, String)>,
}

impl KeptCall {
    /// Keeps `parts` and the headers a middleware is told about from `headers`.
    pub fn new(parts: &CallParts<'_>, headers: &HeaderMap, token_header: &HeaderName) -> KeptCall {
        KeptCall {
            method: parts.method.to_string(),
            path: parts.path.to_string(),
            query: parts.query.to_string(),
            client: parts.client,
            user: parts
                .user
                .map(|u| (u.provider.to_string(), u.json.to_string())),
            dry_run: parts.dry_run,
            headers: headers
                .iter()
                .filter(|(k, _)| !withheld(k, token_header))
                .map(|(k, v)| (k.as_str().to_string(), header_text(v).into_string()))
                .collect(),
        }
    }

    /// The kept request's parts.
    pub fn parts(&self) -> CallParts<'_> {
        CallParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            client: self.client,
            user: self
                .user
                .as_ref()
                .map(|(provider, json)| CallUser { provider, json }),
            dry_run: self.dry_run,
        }
    }

    /// The kept headers in their boundary form.
    fn headers(&self) -> LentHeaders<'_> {
        self.headers
            .iter()
            .map(|(k, v)| Tuple2(RStr::from_str(k), RStr::from_str(v)))
            .collect()
    }
}

/// What a middleware's `on_request` decided, as it crossed the boundary (read in place).
pub struct MiddlewareOutcome(RequestOutcome);

/// Header pairs of an outcome, as text.
fn pair_strs(v: &RVec<Tuple2<RString, RString>>) -> impl Iterator<Item = (&str, &str)> {
    v.iter().map(|t| (t.0.as_str(), t.1.as_str()))
}

impl MiddlewareOutcome {
    /// Whether it lets the request through and changes nothing.
    pub fn is_pass(&self) -> bool {
        self.0.answer.is_none()
            && self.0.set_headers.is_empty()
            && self.0.remove_headers.is_empty()
            && self.0.response_headers.is_empty()
    }

    /// Request headers set, in order.
    pub fn set_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        pair_strs(&self.0.set_headers)
    }

    /// Request headers removed (before `set_headers`).
    pub fn remove_headers(&self) -> impl Iterator<Item = &str> {
        self.0.remove_headers.iter().map(RString::as_str)
    }

    /// Headers added to the response.
    pub fn response_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        pair_strs(&self.0.response_headers)
    }

    /// The answer's status and headers, when the request ends here (the status as the plugin
    /// gave it: checked by the caller).
    pub fn answer(&self) -> Option<(u16, impl Iterator<Item = (&str, &str)>)> {
        self.0
            .answer
            .as_ref()
            .into_option()
            .map(|a| (a.status, pair_strs(&a.headers)))
    }

    /// The answer's body (empty when there is no answer).
    pub fn into_answer_body(self) -> Vec<u8> {
        self.0
            .answer
            .into_option()
            .map(|a| a.body.into_vec())
            .unwrap_or_default()
    }
}

/// What a middleware's `on_response` changes, as it crossed the boundary.
pub struct ResponseChange(ResponseEdit);

impl ResponseChange {
    /// Headers set, in order.
    pub fn set_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        pair_strs(&self.0.set_headers)
    }

    /// Headers removed (before `set_headers`).
    pub fn remove_headers(&self) -> impl Iterator<Item = &str> {
        self.0.remove_headers.iter().map(RString::as_str)
    }
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

    /// Asks for `on_request_now`'s answer on the request of `parts` with the headers of
    /// `headers` but the credentials (`token_header` is `auth.token.header`), all lent to the
    /// plugin for the call. `None`: the instance waits, call [`MiddlewareHandle::on_request`].
    /// An answer given at once holds no in-flight slot (it is over when the call returns).
    pub fn on_request_now(
        &self,
        parts: &CallParts<'_>,
        headers: &HeaderMap,
        token_header: &HeaderName,
    ) -> Option<Result<MiddlewareOutcome, PluginError>> {
        let mut latin1 = Vec::new();
        let lent = lend_all(headers, token_header, &mut latin1);
        let request = parts.lend(&lent);
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.middleware.on_request_now(request)))
        {
            Err(_) => Some(Err(PluginError::internal("plugin panicked"))),
            Ok(ROption::RSome(r)) => Some(r.into_result().map(MiddlewareOutcome)),
            Ok(ROption::RNone) => None,
        }
    }

    /// Runs `on_request`, for an instance whose `on_request_now` declined (see there), bounded
    /// by `timeout` and by the in-flight limit.
    pub async fn on_request(
        &self,
        parts: &CallParts<'_>,
        headers: &HeaderMap,
        token_header: &HeaderName,
        timeout: Duration,
    ) -> Result<MiddlewareOutcome, PluginError> {
        let mut latin1 = Vec::new();
        let lent = lend_all(headers, token_header, &mut latin1);
        let request = parts.lend(&lent);
        bounded(
            &self.in_flight,
            self.middleware.on_request(request),
            timeout,
        )
        .await
        .map(MiddlewareOutcome)
    }

    /// Runs `on_response` on a response of `status` with `headers` (values that are not visible
    /// ASCII are left out).
    pub async fn on_response(
        &self,
        call: &KeptCall,
        status: u16,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<ResponseChange, PluginError> {
        let lent: LentHeaders<'_> = headers
            .iter()
            .filter_map(|(k, v)| {
                Some(Tuple2(
                    RStr::from_str(k.as_str()),
                    RStr::from_str(v.to_str().ok()?),
                ))
            })
            .collect();
        let head = ResponseHead {
            status,
            headers: RSlice::from_slice(&lent),
        };
        let kept = call.headers();
        let parts = call.parts();
        let request = parts.lend(&kept);
        bounded(
            &self.in_flight,
            self.middleware.on_response(request, head),
            timeout,
        )
        .await
        .map(ResponseChange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_writes_every_address_as_std_does() {
        let cases = [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "0:0:0:0:0:ffff:192.168.100.200",
        ];
        for case in cases {
            let Ok(ip) = case.parse::<std::net::IpAddr>() else {
                panic!("{case} is an address");
            };
            assert_eq!(IpText::new(ip).as_str(), ip.to_string(), "{case}");
        }
    }

    #[test]
    fn lent_headers_withhold_the_credentials_and_read_other_bytes_as_latin1() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(header::COOKIE, HeaderValue::from_static("s=1"));
        h.insert("x-token", HeaderValue::from_static("t"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert(
            "x-latin",
            HeaderValue::from_bytes(b"caf\xe9").unwrap_or(HeaderValue::from_static("-")),
        );
        let token = HeaderName::from_static("x-token");
        assert!(
            lend_headers(&h, &token, &[]).is_none(),
            "a Latin-1 value needs its copy"
        );
        let latin1 = latin1_values(&h, &token);
        assert_eq!(latin1, ["café"]);
        let lent = lend_headers(&h, &token, &latin1).unwrap_or_default();
        let pairs: Vec<(&str, &str)> = lent.iter().map(|t| (t.0.as_str(), t.1.as_str())).collect();
        assert_eq!(pairs, [("x-a", "1"), ("x-a", "2"), ("x-latin", "café")]);
    }
}
