//! The safe SDK for middleware plugins (ABI 1.2): code that runs after the gate has authenticated
//! and authorized a request, before the route serves it.

use std::{
    borrow::Cow,
    future::Future,
    sync::{Arc, OnceLock},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RSlice, RStr, RString, Tuple2},
};
use async_ffi::BorrowingFfiFuture;

use crate::{
    abi::{
        ClientAddr, HostBox, Manifest, Middleware, MiddlewareAnswer, MiddlewareBox,
        MiddlewareRequest, Middleware_TO, RequestOutcome, ResponseEdit, ResponseHead,
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
    /// Decides at once, for a middleware that needs nothing but the request (a header check, a
    /// counter, a header written from the user): `Some` with the answer, and the server builds no
    /// future for the call, which makes it cheaper. `None` (the default) sends the request to
    /// [`RequestMiddleware::on_request`]. It must not block: it runs on the server's runtime
    /// thread, where `server.plugin_timeout` cannot interrupt it; anything that waits belongs in
    /// `on_request`. The same rules as `on_request` hold otherwise (dry runs, panics, errors).
    fn on_request_now(&self, call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
        let _ = call;
        None
    }

    /// Looks at the request (and the user the gate authenticated, if any): let it through or
    /// answer it. [`Call::is_dry_run`] requests are only being explained: answer as for a real
    /// one, but change no state. Called only when [`RequestMiddleware::on_request_now`] answered
    /// `None`. The default answers what `on_request_now` answers, and fails (the request is
    /// answered 500) when that is `None` too: a middleware implements at least one of the two.
    fn on_request(&self, call: Call<'_>) -> impl Future<Output = Result<Flow, PluginError>> + Send {
        let now = self.on_request_now(&call);
        async move {
            now.unwrap_or_else(|| {
                Err(PluginError::internal(
                    "this middleware implements neither on_request_now nor on_request",
                ))
            })
        }
    }

    /// Adjusts the response about to be sent (its headers only), for the requests this instance
    /// let through or answered. Called only when [`RequestMiddleware::wants_response`] is `true`,
    /// in the reverse order of `on_request`. Default: no change.
    fn on_response(
        &self,
        call: Call<'_>,
        response: ResponseView<'_>,
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

/// Header pairs as a middleware sees them: lent by the host, or owned (tests, kits).
#[derive(Clone, Debug)]
enum Pairs<'a> {
    Lent(RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>),
    Owned(Vec<(String, String)>),
}

impl Default for Pairs<'_> {
    fn default() -> Self {
        Pairs::Owned(Vec::new())
    }
}

impl Pairs<'_> {
    fn owned(headers: &[(&str, &str)]) -> Pairs<'static> {
        Pairs::Owned(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_string()))
                .collect(),
        )
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let (lent, owned) = match self {
            Pairs::Lent(l) => (l.as_slice(), &[][..]),
            Pairs::Owned(o) => (&[][..], o.as_slice()),
        };
        lent.iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
            .chain(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Runs `f` with the pairs in their boundary form.
    fn with_abi<R>(&self, f: impl FnOnce(RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>) -> R) -> R {
        match self {
            Pairs::Lent(l) => f(*l),
            Pairs::Owned(o) => {
                let v: Vec<Tuple2<RStr<'_>, RStr<'_>>> = o
                    .iter()
                    .map(|(k, v)| Tuple2(RStr::from_str(k), RStr::from_str(v)))
                    .collect();
                f(RSlice::from_slice(&v))
            }
        }
    }
}

/// The request a middleware runs for.
///
/// `path` is the canonical path (the one the server matched and serves); header names are lower
/// case; the `authorization`, `cookie` and `proxy-authorization` headers are withheld.
///
/// The server lends the request for the call (nothing in it is copied to reach the plugin):
/// keep what you need beyond the call as owned values (`to_string()`).
#[derive(Clone, Debug, Default)]
pub struct Call<'a> {
    method: Cow<'a, str>,
    path: Cow<'a, str>,
    headers: Pairs<'a>,
    query: Cow<'a, str>,
    client: ClientAddr,
    // The client's address as text, written the first time it is asked for (or given by a test).
    client_text: OnceLock<String>,
    provider: Option<Cow<'a, str>>,
    user_json: Option<RStr<'a>>,
    // Read from the lent JSON text the first time it is asked for (a middleware that never looks
    // at the user copies nothing).
    user: OnceLock<Option<User>>,
    dry_run: bool,
}

impl Call<'static> {
    /// A request (for tests of a middleware): no query, no client address, no user.
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Call<'static> {
        Call {
            method: Cow::Owned(method.to_ascii_uppercase()),
            path: Cow::Owned(path.to_string()),
            headers: Pairs::owned(headers),
            ..Call::default()
        }
    }
}

impl<'a> Call<'a> {
    /// The same request, authenticated by `provider` as `user` (for tests).
    pub fn with_user(mut self, provider: &str, user: User) -> Call<'a> {
        self.provider = Some(Cow::Owned(provider.to_string()));
        self.user_json = None;
        self.user = OnceLock::from(Some(user));
        self
    }

    /// The same request, from client address `client` (for tests; an empty or unparsable text
    /// reads as an unknown address to a plugin behind the boundary).
    pub fn with_client(mut self, client: &str) -> Call<'a> {
        self.client = client
            .parse::<std::net::IpAddr>()
            .map(ClientAddr::new)
            .unwrap_or_default();
        self.client_text = OnceLock::from(client.to_string());
        self
    }

    /// The same request, with query string `query` (without `?`; for tests).
    pub fn with_query(mut self, query: &str) -> Call<'a> {
        self.query = Cow::Owned(query.to_string());
        self
    }

    /// The same request, only being explained (for tests).
    pub fn as_dry_run(mut self) -> Call<'a> {
        self.dry_run = true;
        self
    }

    /// The request as it crossed the boundary, still lent (hosts and test kits).
    pub fn from_abi(raw: MiddlewareRequest<'a>) -> Call<'a> {
        Call {
            method: Cow::Borrowed(raw.method.as_str()),
            path: Cow::Borrowed(raw.path.as_str()),
            headers: Pairs::Lent(raw.headers),
            query: Cow::Borrowed(raw.query.as_str()),
            client: raw.client,
            client_text: OnceLock::new(),
            provider: raw
                .provider
                .into_option()
                .map(|p| Cow::Borrowed(p.as_str())),
            user_json: raw.user.into_option(),
            user: OnceLock::new(),
            dry_run: raw.dry_run,
        }
    }

    /// Runs `f` with this request in its boundary form (hosts and test kits).
    pub fn with_abi<R>(&self, f: impl FnOnce(MiddlewareRequest<'_>) -> R) -> R {
        self.headers.with_abi(|headers| {
            f(MiddlewareRequest {
                method: RStr::from_str(&self.method),
                path: RStr::from_str(&self.path),
                headers,
                query: RStr::from_str(&self.query),
                client: self.client,
                user: self.user_text().map(RStr::from_str).into(),
                provider: self.provider.as_deref().map(RStr::from_str).into(),
                dry_run: self.dry_run,
            })
        })
    }

    /// The user's JSON text, as lent or as given.
    fn user_text(&self) -> Option<&str> {
        match self.user_json {
            Some(j) => Some(j.as_str()),
            None => self.user.get().and_then(|u| u.as_ref()).map(User::as_json),
        }
    }

    /// Upper-case HTTP method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Canonical path, without the query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string without `?`; empty when there is none.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of a header. Names are compared case-insensitively and with `_` read as
    /// `-`: a client's `X_Debug` is the `x-debug` an upstream that folds both (CGI, Django, PHP)
    /// would read. A value that is not visible ASCII comes as its bytes read as Latin-1.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| same_header_name(k, name))
            .map(|(_, v)| v)
    }

    /// Every value of a header, in the order received (names compared as [`Call::header`] does):
    /// a client may repeat a header, and the upstream gets every copy.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(k, _)| same_header_name(k, name))
            .map(|(_, v)| v)
    }

    /// Every header, lower-case names, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter()
    }

    /// The IP address of the client the server saw, as text (empty when unknown).
    pub fn client(&self) -> &str {
        self.client_text.get_or_init(|| {
            self.client
                .ip()
                .map(|ip| ip.to_string())
                .unwrap_or_default()
        })
    }

    /// The IP address of the client the server saw; `None` when unknown (or, in a test, when
    /// [`Call::with_client`] was given text that is not an address).
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client.ip()
    }

    /// The authenticated user; `None` on a public route.
    pub fn user(&self) -> Option<&User> {
        self.user
            .get_or_init(|| {
                self.user_json
                    .map(|j| User::from_verified(RString::from(j.as_str())))
            })
            .as_ref()
    }

    /// The provider instance that authenticated the user; `None` on a public route.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// Whether the request is only being explained: answer as usual, change no state.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
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

/// The response about to be sent, as [`RequestMiddleware::on_response`] sees it (lent by the
/// server for the call).
#[derive(Clone, Debug, Default)]
pub struct ResponseView<'a> {
    status: u16,
    headers: Pairs<'a>,
}

impl ResponseView<'static> {
    /// A response head (for tests).
    pub fn new(status: u16, headers: &[(&str, &str)]) -> ResponseView<'static> {
        ResponseView {
            status,
            headers: Pairs::owned(headers),
        }
    }
}

impl<'a> ResponseView<'a> {
    /// From the boundary form, still lent (hosts and test kits).
    pub fn from_abi(raw: ResponseHead<'a>) -> ResponseView<'a> {
        ResponseView {
            status: raw.status,
            headers: Pairs::Lent(raw.headers),
        }
    }

    /// Runs `f` with this response head in its boundary form (hosts and test kits).
    pub fn with_abi<R>(&self, f: impl FnOnce(ResponseHead<'_>) -> R) -> R {
        self.headers.with_abi(|headers| {
            f(ResponseHead {
                status: self.status,
                headers,
            })
        })
    }

    /// Status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
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
    fn on_request_now<'a>(
        &'a self,
        request: MiddlewareRequest<'a>,
    ) -> ROption<RResult<RequestOutcome, PluginError>> {
        match guard(|| Ok(self.0.on_request_now(&Call::from_abi(request)))) {
            Ok(Some(Ok(flow))) => ROption::RSome(RResult::ROk(flow.raw)),
            Ok(Some(Err(e))) | Err(e) => ROption::RSome(RResult::RErr(e)),
            Ok(None) => ROption::RNone,
        }
    }

    fn on_request<'a>(
        &'a self,
        request: MiddlewareRequest<'a>,
    ) -> BorrowingFfiFuture<'a, RResult<RequestOutcome, PluginError>> {
        let m = &*self.0;
        guard_future(move || async move { Ok(m.on_request(Call::from_abi(request)).await?.raw) })
    }

    fn on_response<'a>(
        &'a self,
        request: MiddlewareRequest<'a>,
        response: ResponseHead<'a>,
    ) -> BorrowingFfiFuture<'a, RResult<ResponseEdit, PluginError>> {
        let m = &*self.0;
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

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        task::{Context, Poll, Waker},
    };

    use super::*;
    use crate::ErrorKind;

    /// Polls a future that needs nothing to wait for; `None` if it is not ready at once.
    fn ready<F: Future>(fut: F) -> Option<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        match std::pin::pin!(fut).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    struct AtOnce;
    impl RequestMiddleware for AtOnce {
        fn on_request_now(&self, call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
            Some(Ok(if call.header("x-deny").is_some() {
                Flow::error(403, "no")
            } else {
                Flow::proceed().set_request_header("x-seen", call.path())
            }))
        }
    }

    struct Waits;
    impl RequestMiddleware for Waits {
        async fn on_request(&self, _call: Call<'_>) -> Result<Flow, PluginError> {
            Ok(Flow::respond(204))
        }
    }

    struct Explodes;
    impl RequestMiddleware for Explodes {
        fn on_request_now(&self, _call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
            panic!("boom")
        }
    }

    struct Neither;
    impl RequestMiddleware for Neither {}

    fn now(m: &MiddlewareBox, call: &Call<'_>) -> ROption<RResult<RequestOutcome, PluginError>> {
        call.with_abi(|r| m.on_request_now(r))
    }

    fn later(m: &MiddlewareBox, call: &Call<'_>) -> Option<RResult<RequestOutcome, PluginError>> {
        call.with_abi(|r| ready(m.on_request(r)))
    }

    #[test]
    fn an_answer_given_at_once_crosses_without_a_future_and_on_request_gives_the_same() {
        let m = middleware_box(AtOnce);
        for call in [
            Call::new("GET", "/a", &[]),
            Call::new("GET", "/a", &[("x-deny", "1")]),
        ] {
            let ROption::RSome(RResult::ROk(at_once)) = now(&m, &call) else {
                panic!("answered at once");
            };
            assert_eq!(later(&m, &call), Some(RResult::ROk(at_once.clone())));
            let flow = Flow::from_abi(at_once);
            if call.header("x-deny").is_some() {
                assert_eq!(flow.answer_status(), Some(403));
            } else {
                assert_eq!(
                    flow.request_headers_set().collect::<Vec<_>>(),
                    [("x-seen", "/a")]
                );
            }
        }
    }

    #[test]
    fn a_middleware_that_waits_declines_the_answer_at_once() {
        let m = middleware_box(Waits);
        let call = Call::new("GET", "/a", &[]);
        assert!(matches!(now(&m, &call), ROption::RNone));
        let Some(RResult::ROk(o)) = later(&m, &call) else {
            panic!("answered");
        };
        assert_eq!(Flow::from_abi(o).answer_status(), Some(204));
    }

    #[test]
    fn a_panic_at_once_is_an_internal_error_and_a_middleware_with_no_hook_fails() {
        let call = Call::new("GET", "/a", &[]);
        let ROption::RSome(RResult::RErr(e)) = now(&middleware_box(Explodes), &call) else {
            panic!("a panic is an answer: an error");
        };
        assert_eq!(e.kind(), ErrorKind::INTERNAL);
        assert!(e.message().contains("boom"), "{}", e.message());

        let m = middleware_box(Neither);
        assert!(matches!(now(&m, &call), ROption::RNone));
        let Some(RResult::RErr(e)) = later(&m, &call) else {
            panic!("fails closed");
        };
        assert_eq!(e.kind(), ErrorKind::INTERNAL);
    }
}
