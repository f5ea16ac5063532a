//! The safe SDK for middleware plugins (ABI 1.2): code that runs after the gate has authenticated
//! and authorized a request, before the route serves it.

use std::{future::Future, sync::Arc};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, Tuple2},
};
use async_ffi::FfiFuture;

use crate::{
    abi::{
        HostBox, Manifest, Middleware, MiddlewareAnswer, MiddlewareBox, MiddlewareRequest,
        Middleware_TO, RequestInfo, RequestOutcome, ResponseEdit, ResponseHead,
    },
    config::{self, PluginConfig},
    error::PluginError,
    host::Host,
    request::User,
    sdk::{guard, guard_future, manifest_of},
};

/// Headers a middleware may not set or remove, on the request sent onward or on the response
/// (lower case): they frame the HTTP message, and changing them would let one request be read as
/// another. The server answers 500 for a middleware that tries; the conformance kit reports it.
pub const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A request middleware, written as ordinary async Rust.
///
/// The server runs the middleware instances that apply to a request, in the order the YAML lists
/// them, after the request was authenticated and authorized and before its route: a built-in
/// route, a proxied `routes:` entry, or a forward-auth answer. Each may let the request through
/// ([`Flow::proceed`], optionally changing the request headers sent onward and adding response
/// headers) or answer it ([`Flow::respond`]): no later middleware and no route then runs. Both
/// hooks run on the server's runtime, bounded by `server.plugin_timeout`; do I/O only through
/// [`Host`]. A panic, an error or a time-out answers the request 500 or 503: a request a
/// middleware could not look at is never let through.
pub trait RequestMiddleware: Send + Sync + 'static {
    /// Looks at the request (and the user the gate authenticated, if any): let it through or
    /// answer it. [`Call::is_dry_run`] requests are only being explained: answer as for a real
    /// one, but change no state.
    fn on_request(&self, call: Call) -> impl Future<Output = Result<Flow, PluginError>> + Send;

    /// Adjusts the response about to be sent (its headers only), for the requests this instance
    /// let through or answered. Called only when [`RequestMiddleware::wants_response`] is `true`,
    /// in the reverse order of `on_request`. Default: no change.
    fn on_response(
        &self,
        call: Call,
        response: ResponseView,
    ) -> impl Future<Output = Result<ResponseChanges, PluginError>> + Send {
        let _ = (call, response);
        async { Ok(ResponseChanges::none()) }
    }

    /// Whether the server calls [`RequestMiddleware::on_response`] (asked once, when the instance
    /// is built; a response hook costs a call per request). Default `false`: set it to `true`
    /// when you implement `on_response`. Headers known when the request arrives are cheaper
    /// added with [`Flow::add_response_header`].
    fn wants_response(&self) -> bool {
        false
    }
}

/// A middleware plugin: its manifest, its configuration type and how to build an instance.
pub trait MiddlewarePlugin: 'static {
    /// The middleware this plugin builds.
    type Middleware: RequestMiddleware;
    /// The instance configuration (the `config:` mapping of a `middleware:` entry): a struct with
    /// `#[derive(Deserialize, PluginConfig)]` and `#[serde(deny_unknown_fields)]`.
    type Config: PluginConfig;

    /// The name `middleware:` entries use in `plugin:`.
    const NAME: &'static str;
    /// The plugin's version (use `env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    /// One line on what it does.
    const DESCRIPTION: &'static str;

    /// Checks a configuration beyond what deserialization checks. Must not do I/O. Runs when a
    /// config is checked and before every [`MiddlewarePlugin::build`].
    fn validate(config: &Self::Config, host: &Host) -> Result<(), PluginError> {
        let _ = (config, host);
        Ok(())
    }

    /// Builds an instance. Must not block. An instance is kept across reloads while its plugin
    /// build and configuration are unchanged, so state it holds (counters, buckets) survives
    /// them.
    fn build(config: Self::Config, host: Host) -> Result<Self::Middleware, PluginError>;
}

/// The request a middleware runs for.
///
/// `path` is the canonical path (the one the server matched and serves); header names are lower
/// case; the `authorization`, `cookie` and `proxy-authorization` headers are withheld.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Call {
    raw: MiddlewareRequest,
    user: Option<User>,
}

impl Call {
    /// A request (for tests of a middleware): no query, no client address, no user.
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Call {
        Call {
            raw: MiddlewareRequest {
                request: RequestInfo {
                    method: method.to_ascii_uppercase().into(),
                    path: path.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| Tuple2(k.to_ascii_lowercase().into(), (*v).into()))
                        .collect(),
                },
                ..MiddlewareRequest::default()
            },
            user: None,
        }
    }

    /// The same request, authenticated by `provider` as `user` (for tests).
    pub fn with_user(mut self, provider: &str, user: User) -> Call {
        self.raw.provider = ROption::RSome(provider.into());
        self.user = Some(user);
        self
    }

    /// The same request, from client address `client` (for tests).
    pub fn with_client(mut self, client: &str) -> Call {
        self.raw.client = client.into();
        self
    }

    /// The same request, with query string `query` (without `?`; for tests).
    pub fn with_query(mut self, query: &str) -> Call {
        self.raw.query = query.into();
        self
    }

    /// The same request, only being explained (for tests).
    pub fn as_dry_run(mut self) -> Call {
        self.raw.dry_run = true;
        self
    }

    /// The request as it crosses the boundary (hosts and test kits).
    pub fn from_abi(mut raw: MiddlewareRequest) -> Call {
        // The user's text is kept once, in the `User` (not copied).
        let user = std::mem::take(&mut raw.user)
            .into_option()
            .map(User::from_verified);
        Call { raw, user }
    }

    /// The boundary form of this request (hosts and test kits).
    pub fn to_abi(&self) -> MiddlewareRequest {
        MiddlewareRequest {
            user: self.user.clone().map(User::into_abi).into(),
            ..self.raw.clone()
        }
    }

    /// Upper-case HTTP method.
    pub fn method(&self) -> &str {
        self.raw.request.method.as_str()
    }

    /// Canonical path, without the query.
    pub fn path(&self) -> &str {
        self.raw.request.path.as_str()
    }

    /// The query string without `?`; empty when there is none.
    pub fn query(&self) -> &str {
        self.raw.query.as_str()
    }

    /// The first value of a header. Names are compared case-insensitively and with `_` read as
    /// `-`: a client's `X_Debug` is the `x-debug` an upstream that folds both (CGI, Django, PHP)
    /// would read. A value that is not visible ASCII comes as its bytes read as Latin-1.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw
            .request
            .headers
            .iter()
            .find(|t| same_header_name(t.0.as_str(), name))
            .map(|t| t.1.as_str())
    }

    /// Every value of a header, in the order received (names compared as [`Call::header`] does):
    /// a client may repeat a header, and the upstream gets every copy.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.raw
            .request
            .headers
            .iter()
            .filter(move |t| same_header_name(t.0.as_str(), name))
            .map(|t| t.1.as_str())
    }

    /// Every header, lower-case names, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw
            .request
            .headers
            .iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
    }

    /// The IP address of the client the server saw (empty when unknown).
    pub fn client(&self) -> &str {
        self.raw.client.as_str()
    }

    /// The authenticated user; `None` on a public route.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// The provider instance that authenticated the user; `None` on a public route.
    pub fn provider(&self) -> Option<&str> {
        self.raw
            .provider
            .as_ref()
            .into_option()
            .map(RString::as_str)
    }

    /// Whether the request is only being explained: answer as usual, change no state.
    pub fn is_dry_run(&self) -> bool {
        self.raw.dry_run
    }
}

/// Whether two header names are the same to an upstream: case-insensitively, `_` read as `-`.
fn same_header_name(a: &str, b: &str) -> bool {
    let fold = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// What [`RequestMiddleware::on_request`] decided: let the request through, or answer it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    raw: RequestOutcome,
}

impl Flow {
    /// Let the request through, unchanged.
    pub fn proceed() -> Flow {
        Flow::default()
    }

    /// Answer the request with `status` (and an empty body): no later middleware and no route
    /// runs. A final status, 200–599: anything else is answered 500 by the server. In forward
    /// auth, a 2xx answer is answered 500 too (the proxy would read it as "allowed").
    pub fn respond(status: u16) -> Flow {
        Flow {
            raw: RequestOutcome {
                answer: ROption::RSome(MiddlewareAnswer {
                    status,
                    ..MiddlewareAnswer::default()
                }),
                ..RequestOutcome::default()
            },
        }
    }

    /// Answer with `status` and a JSON body `{"error": message}` (the server's own error
    /// shape).
    pub fn error(status: u16, message: &str) -> Flow {
        let body = serde_json::json!({ "error": message }).to_string();
        Flow::respond(status)
            .with_answer_header("content-type", "application/json")
            .with_body(body.into_bytes())
    }

    /// A header on the answer (only when answering; ignored when proceeding).
    pub fn with_answer_header(mut self, name: &str, value: &str) -> Flow {
        if let ROption::RSome(a) = &mut self.raw.answer {
            a.headers.push(Tuple2(name.into(), value.into()));
        }
        self
    }

    /// The answer's body (only when answering; ignored when proceeding).
    pub fn with_body(mut self, body: Vec<u8>) -> Flow {
        if let ROption::RSome(a) = &mut self.raw.answer {
            a.body = body.into();
        }
        self
    }

    /// Sets a request header sent onward (replacing any of that name). The server applies a
    /// flow's removals before its sets, whatever the order of the calls: a header both removed
    /// and set ends up set.
    pub fn set_request_header(mut self, name: &str, value: &str) -> Flow {
        self.raw.set_headers.push(Tuple2(name.into(), value.into()));
        self
    }

    /// Removes a request header before the request goes onward (see
    /// [`Flow::set_request_header`] for the order).
    pub fn remove_request_header(mut self, name: &str) -> Flow {
        self.raw.remove_headers.push(name.into());
        self
    }

    /// Adds a header to the response the client gets, whoever answers it: the route, a later
    /// middleware, or this flow's own answer.
    pub fn add_response_header(mut self, name: &str, value: &str) -> Flow {
        self.raw
            .response_headers
            .push(Tuple2(name.into(), value.into()));
        self
    }

    /// The status of the answer, when this flow answers the request.
    pub fn answer_status(&self) -> Option<u16> {
        self.raw.answer.as_ref().into_option().map(|a| a.status)
    }

    /// The boundary form (hosts and test kits).
    pub fn into_abi(self) -> RequestOutcome {
        self.raw
    }

    /// From the boundary form (hosts and test kits).
    pub fn from_abi(raw: RequestOutcome) -> Flow {
        Flow { raw }
    }

    /// The request headers set, in order.
    pub fn request_headers_set(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw
            .set_headers
            .iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
    }

    /// The response headers added, in order.
    pub fn response_headers_added(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw
            .response_headers
            .iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
    }

    /// The request headers removed, in order.
    pub fn request_headers_removed(&self) -> impl Iterator<Item = &str> {
        self.raw.remove_headers.iter().map(RString::as_str)
    }

    /// The body of the answer, when this flow answers the request.
    pub fn answer_body(&self) -> Option<&[u8]> {
        self.raw
            .answer
            .as_ref()
            .into_option()
            .map(|a| a.body.as_slice())
    }

    /// The headers of the answer, when this flow answers the request.
    pub fn answer_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw
            .answer
            .as_ref()
            .into_option()
            .into_iter()
            .flat_map(|a| a.headers.iter().map(|t| (t.0.as_str(), t.1.as_str())))
    }
}

/// The response about to be sent, as [`RequestMiddleware::on_response`] sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseView {
    raw: ResponseHead,
}

impl ResponseView {
    /// A response head (for tests).
    pub fn new(status: u16, headers: &[(&str, &str)]) -> ResponseView {
        ResponseView {
            raw: ResponseHead {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| Tuple2(k.to_ascii_lowercase().into(), (*v).into()))
                    .collect(),
            },
        }
    }

    /// From the boundary form (hosts and test kits).
    pub fn from_abi(raw: ResponseHead) -> ResponseView {
        ResponseView { raw }
    }

    /// Status code.
    pub fn status(&self) -> u16 {
        self.raw.status
    }

    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw
            .headers
            .iter()
            .find(|t| t.0.as_str().eq_ignore_ascii_case(name))
            .map(|t| t.1.as_str())
    }
}

/// What [`RequestMiddleware::on_response`] changes in the response headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseChanges {
    raw: ResponseEdit,
}

impl ResponseChanges {
    /// No change.
    pub fn none() -> ResponseChanges {
        ResponseChanges::default()
    }

    /// Sets a response header (replacing any of that name).
    pub fn set_header(mut self, name: &str, value: &str) -> ResponseChanges {
        self.raw.set_headers.push(Tuple2(name.into(), value.into()));
        self
    }

    /// Removes a response header.
    pub fn remove_header(mut self, name: &str) -> ResponseChanges {
        self.raw.remove_headers.push(name.into());
        self
    }

    /// The boundary form (hosts and test kits).
    pub fn into_abi(self) -> ResponseEdit {
        self.raw
    }
}

struct Adapter<M>(Arc<M>);

impl<M: RequestMiddleware> Middleware for Adapter<M> {
    fn on_request(
        &self,
        request: MiddlewareRequest,
    ) -> FfiFuture<RResult<RequestOutcome, PluginError>> {
        let m = self.0.clone();
        guard_future(move || async move { Ok(m.on_request(Call::from_abi(request)).await?.raw) })
    }

    fn on_response(
        &self,
        request: MiddlewareRequest,
        response: ResponseHead,
    ) -> FfiFuture<RResult<ResponseEdit, PluginError>> {
        let m = self.0.clone();
        guard_future(move || async move {
            let changes = m
                .on_response(Call::from_abi(request), ResponseView::from_abi(response))
                .await?;
            Ok(changes.raw)
        })
    }

    fn wants_response(&self) -> bool {
        // A panic here means "no": the response is then sent as it is.
        guard(|| Ok(self.0.wants_response())).unwrap_or(false)
    }
}

/// Adapts an in-process [`RequestMiddleware`] into the boundary type (hosts' tests, test kits).
pub fn middleware_box<M: RequestMiddleware>(middleware: M) -> MiddlewareBox {
    Middleware_TO::from_value(Adapter(Arc::new(middleware)), TD_Opaque)
}

pub(crate) extern "C" fn middleware_manifest<M: MiddlewarePlugin>() -> RResult<Manifest, PluginError>
{
    guard(|| manifest_of::<M::Config>(M::NAME, M::VERSION, M::DESCRIPTION, false)).into()
}

pub(crate) extern "C" fn validate_middleware_config<M: MiddlewarePlugin>(
    config: RStr<'_>,
    host: HostBox,
) -> RResult<(), PluginError> {
    guard(|| {
        let host = Host::from_abi(host);
        let config = config::read::<M::Config>(config.as_str(), &host)?;
        M::validate(&config, &host)
    })
    .into()
}

pub(crate) extern "C" fn new_middleware<M: MiddlewarePlugin>(
    config: RStr<'_>,
    host: HostBox,
) -> RResult<MiddlewareBox, PluginError> {
    guard(|| {
        let host = Host::from_abi(host);
        let config = config::read::<M::Config>(config.as_str(), &host)?;
        M::validate(&config, &host)?;
        Ok(middleware_box(M::build(config, host)?))
    })
    .into()
}

fn no_middleware() -> PluginError {
    PluginError::config("this plugin library exports no middleware")
}

pub(crate) extern "C" fn no_middleware_manifest() -> RResult<Manifest, PluginError> {
    RResult::RErr(no_middleware())
}

pub(crate) extern "C" fn no_middleware_check(_: RStr<'_>, _: HostBox) -> RResult<(), PluginError> {
    RResult::RErr(no_middleware())
}

pub(crate) extern "C" fn no_middleware_build(
    _: RStr<'_>,
    _: HostBox,
) -> RResult<MiddlewareBox, PluginError> {
    RResult::RErr(no_middleware())
}

#[allow(dead_code)]
fn _assert_box_send_sync(m: MiddlewareBox) {
    fn is_send_sync<T: Send + Sync>(_: &T) {}
    is_send_sync(&m);
}
