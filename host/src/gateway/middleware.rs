//! Request middleware (`middleware:` instances, ABI 1.2): which instances run for a request, and
//! running them between the decision and the route — a built-in route, a proxied `routes:` entry
//! or a forward-auth answer.
//!
//! **Which run.** After the request was allowed: first every instance whose `path` (and
//! `methods`) match, in the order of `middleware:`; then the instances the request's `routes:`
//! entry names, in its order; each at most once. On a request that needs no user (a public path,
//! a `requires_auth: false` route) only instances with `public: true` run.
//!
//! **Fail closed.** A middleware that fails, times out, panics, answers a status that is not a
//! final one (outside 200–599: a 1xx is only ever interim, and hyper would send a 101 as a
//! protocol switch or turn a 100 into a bare 500) or changes a header it may not (see
//! [`FORBIDDEN`]) answers the request 500 (503 for an unavailable or timed-out one, or a retired
//! instance): never a pass-through of a request no middleware looked at. The same holds for
//! `on_response`: the response is replaced.

use std::sync::Arc;

use poem::{
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    Body, Response,
};
use portcullis_plugin_api::{ErrorKind, PluginError};

use crate::{
    auth::{AuthUser, MiddlewareInstance},
    config::Config,
    http::answer::error_response,
    observe::metrics::Metrics,
    plugin::{CallParts, CallUser, KeptCall, MiddlewareHandle, MiddlewareOutcome},
    reload::Snapshot,
};

/// Headers no middleware may set or remove, on the request sent onward or on the response: they
/// frame the message, and a change would let one request be read as another (smuggling). The
/// SDK's list, so that the conformance kit reports what the server refuses.
pub use portcullis_plugin_api::FRAMING_HEADERS as FORBIDDEN;

/// The instances a request runs, in order (kept inline: a request runs few).
pub type Selected = smallvec::SmallVec<[usize; 4]>;

/// The instances (indexes into `config.middleware`, and the snapshot's `middleware`) that run
/// for a `method` request on canonical `path`, served by `routes:` entry `route`, with or without
/// a user. Empty, and nothing allocated, when the config has no middleware.
pub fn selected(
    config: &Config,
    method: &str,
    path: &str,
    route: Option<usize>,
    user: bool,
) -> Selected {
    if config.middleware.is_empty() {
        return Selected::new();
    }
    let eligible = |i: usize| {
        config
            .middleware
            .get(i)
            .is_some_and(|m| (user || m.public) && m.methods_allow(method))
    };
    let mut out: Selected = (0..config.middleware.len())
        .filter(|&i| eligible(i) && config.middleware[i].runs_on(method, path))
        .collect();
    if let Some(r) = route.and_then(|r| config.routes.list.get(r)) {
        for &i in &r.middleware {
            if eligible(i) && !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out
}

/// How one instance's `on_request` ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Ran {
    /// It let the request through.
    Proceeded,
    /// It answered the request with this status.
    Answered {
        /// The status.
        status: u16,
    },
    /// It failed; the request was answered with this status.
    Failed {
        /// 500 or 503.
        status: u16,
        /// Why (for logs and explain; never a secret the plugin did not write).
        reason: String,
    },
}

/// One instance that ran, and how.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MiddlewareRun {
    /// Instance name.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub ran: Ran,
}

/// The middleware of one request: what ran, and what the response step needs.
#[derive(Default)]
pub struct Chain {
    /// The request as the response step tells it (kept only when an instance asked for it).
    call: Option<Box<KeptCall>>,
    /// Instances whose `on_request` ran, in order, with how each ended: the one that answered or
    /// failed always; those that let the request through only for a dry run (explain).
    pub runs: Vec<MiddlewareRun>,
    /// Instances that ran and asked for `on_response`.
    on_response: Vec<Arc<MiddlewareInstance>>,
    /// Headers added to the response, in order.
    response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Request headers set onward, in order (a forward-auth answer carries them).
    pub onward: Vec<(HeaderName, HeaderValue)>,
}

/// The request a middleware is told about.
pub struct Incoming<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Canonical path.
    pub path: &'a str,
    /// Query string.
    pub query: Option<&'a str>,
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
    /// The user, on a request that has one.
    pub user: Option<&'a AuthUser>,
    /// Only explained.
    pub dry_run: bool,
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    if FORBIDDEN.contains(&n.as_str()) {
        return Err(format!("it may not change the `{n}` header"));
    }
    let v = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header `{n}` is not a header value"))?;
    Ok((n, v))
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    if FORBIDDEN.contains(&n.as_str()) {
        return Err(format!("it may not change the `{n}` header"));
    }
    Ok(n)
}

/// Removes header `name` from `headers` in every spelling an upstream may read as it: `_` for
/// `-` (CGI, Django and PHP fold both to `_`). A middleware that sets or removes `x-tenant` must
/// not leave a client's `x_tenant` for the upstream to read instead.
fn remove_spellings(headers: &mut HeaderMap, name: &HeaderName) {
    headers.remove(name);
    if !name.as_str().contains('-') {
        return;
    }
    let spelled: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            k.as_str().contains('_')
                && k.as_str().len() == name.as_str().len()
                && k.as_str()
                    .bytes()
                    .zip(name.as_str().bytes())
                    .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
        })
        .cloned()
        .collect();
    for k in spelled {
        headers.remove(k);
    }
}

/// The answer to a request whose middleware failed.
fn failure(status: StatusCode) -> Response {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        error_response(status, "Service Unavailable")
    } else {
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }
}

/// How running the request middleware began: finished at once, or waiting on an instance.
// `Done` is the common case, answered in place: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Started<'a> {
    /// Every instance answered at once (`on_request_now`): the chain, and `Some(response)` when
    /// the request ends with it (a middleware answered, or failed).
    Done(Chain, Option<Response>),
    /// An instance waits (its `on_request` future): the rest of the chain, boxed, so that a
    /// request whose middleware all answer at once carries no room for it.
    Waiting(
        std::pin::Pin<Box<dyn std::future::Future<Output = (Chain, Option<Response>)> + Send + 'a>>,
    ),
}

/// Runs `on_request` of the `selected` instances of `rt` in order, applying each one's request
/// header changes to `headers` (what goes onward) before the next runs. `Some(response)`: the
/// request ends with it (a middleware answered, or failed). `metrics`: where answers are counted
/// (`None` for a request that is only explained).
pub async fn on_request(
    rt: &Snapshot,
    metrics: Option<&Metrics>,
    selected: &[usize],
    incoming: &Incoming<'_>,
    headers: &mut HeaderMap,
) -> (Chain, Option<Response>) {
    match start(rt, metrics, selected, incoming, headers) {
        Started::Done(chain, answer) => (chain, answer),
        Started::Waiting(rest) => rest.await,
    }
}

/// [`on_request`] without a future of its own: each instance is asked for an answer at once
/// (`on_request_now`), and only one that declines is awaited, with the instances after it.
pub fn start<'a>(
    rt: &'a Snapshot,
    metrics: Option<&'a Metrics>,
    selected: &'a [usize],
    incoming: &'a Incoming<'a>,
    headers: &'a mut HeaderMap,
) -> Started<'a> {
    if selected.is_empty() {
        return Started::Done(Chain::default(), None);
    }
    let mut run = Run::new(rt, metrics, incoming);
    for (k, &i) in selected.iter().enumerate() {
        let (instance, handle) = match run.instance(i) {
            Ok(found) => found,
            Err(status) => return Started::Done(run.chain, Some(failure(status))),
        };
        let Some(outcome) = handle.on_request_now(&run.parts(), headers, run.token_header) else {
            return Started::Waiting(Box::pin(run.wait(
                instance,
                handle,
                &selected[k + 1..],
                headers,
            )));
        };
        if let Some(answer) = run.apply(instance, handle, outcome, headers) {
            return Started::Done(run.chain, Some(answer));
        }
    }
    run.kept(headers);
    Started::Done(run.chain, None)
}

/// One request's middleware, being run.
struct Run<'a> {
    rt: &'a Snapshot,
    metrics: Option<&'a Metrics>,
    incoming: &'a Incoming<'a>,
    /// The query without the token's parameter, when the token may come in the query.
    query: Option<std::borrow::Cow<'a, str>>,
    user: Option<CallUser<'a>>,
    token_header: &'a HeaderName,
    chain: Chain,
}

impl<'a> Run<'a> {
    fn new(rt: &'a Snapshot, metrics: Option<&'a Metrics>, incoming: &'a Incoming<'a>) -> Run<'a> {
        let token = &rt.config.auth.token;
        // The token never reaches a middleware: not in the token header, not in the query.
        let query = match (incoming.query, &token.query) {
            (Some(q), Some(name)) => Some(std::borrow::Cow::Owned(
                crate::gateway::proxy::strip_query_param(q, name),
            )),
            (q, _) => q.map(std::borrow::Cow::Borrowed),
        };
        Run {
            rt,
            metrics,
            incoming,
            query,
            user: incoming.user.map(|u| CallUser {
                provider: &u.provider,
                json: u.claims_json(),
            }),
            token_header: &token.header_name,
            chain: Chain::default(),
        }
    }

    /// What each instance is told besides the headers.
    fn parts(&self) -> CallParts<'_> {
        CallParts {
            method: self.incoming.method,
            path: self.incoming.path,
            query: self.query.as_deref().unwrap_or_default(),
            client: self.incoming.client,
            user: self.user,
            dry_run: self.incoming.dry_run,
        }
    }

    /// Instance `i` of the snapshot and its plugin object; `Err` with the status of the answer
    /// that ends the request when it has none (retired, or missing).
    fn instance(
        &mut self,
        i: usize,
    ) -> Result<(&'a Arc<MiddlewareInstance>, &'a MiddlewareHandle), StatusCode> {
        let rt = self.rt;
        let Some(instance) = rt.middleware.get(i) else {
            // A snapshot has one instance per entry: an index without one is a bug, and a
            // request is never let past a middleware it could not run.
            tracing::error!("middleware #{i} has no instance in the snapshot");
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        };
        match &instance.handle {
            Some(handle) => Ok((instance, handle)),
            None => {
                let reason = instance.retired.clone().unwrap_or_default();
                self.failed(&instance.name, StatusCode::SERVICE_UNAVAILABLE, reason);
                Err(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// Records a failed instance; the answer that ends the request.
    fn fail(&mut self, name: &str, status: StatusCode, reason: String) -> Option<Response> {
        self.failed(name, status, reason);
        Some(failure(status))
    }

    /// Records a failed instance.
    fn failed(&mut self, name: &str, status: StatusCode, reason: String) {
        tracing::warn!(middleware = %name, "request refused: middleware failed: {reason}");
        if let Some(m) = self.metrics {
            m.observe_middleware_answer(name, status.as_u16(), true);
        }
        self.chain.runs.push(MiddlewareRun {
            name: name.to_string(),
            ran: Ran::Failed {
                status: status.as_u16(),
                reason,
            },
        });
    }

    /// The rest of the chain once `instance` declined to answer at once: its `on_request`
    /// awaited, then the instances of `rest` as [`start`] runs them.
    async fn wait(
        mut self,
        instance: &'a Arc<MiddlewareInstance>,
        handle: &'a MiddlewareHandle,
        rest: &'a [usize],
        headers: &'a mut HeaderMap,
    ) -> (Chain, Option<Response>) {
        let timeout = self.rt.config.server.plugin_timeout;
        let outcome = handle
            .on_request(&self.parts(), headers, self.token_header, timeout)
            .await;
        if let Some(answer) = self.apply(instance, handle, outcome, headers) {
            return (self.chain, Some(answer));
        }
        for &i in rest {
            let (instance, handle) = match self.instance(i) {
                Ok(found) => found,
                Err(status) => return (self.chain, Some(failure(status))),
            };
            let outcome = match handle.on_request_now(&self.parts(), headers, self.token_header) {
                Some(outcome) => outcome,
                None => {
                    handle
                        .on_request(&self.parts(), headers, self.token_header, timeout)
                        .await
                }
            };
            if let Some(answer) = self.apply(instance, handle, outcome, headers) {
                return (self.chain, Some(answer));
            }
        }
        self.kept(headers);
        (self.chain, None)
    }

    /// Applies what `instance` decided to `headers` and the chain; `Some(response)` when the
    /// request ends with it.
    fn apply(
        &mut self,
        instance: &'a Arc<MiddlewareInstance>,
        handle: &MiddlewareHandle,
        outcome: Result<MiddlewareOutcome, PluginError>,
        headers: &mut HeaderMap,
    ) -> Option<Response> {
        let name = instance.name.as_str();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let status = if e.kind() == ErrorKind::UNAVAILABLE {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                return self.fail(name, status, e.message().to_string());
            }
        };
        if handle.wants_response() {
            self.chain.on_response.push(instance.clone());
        }
        // Who let the request through is told only when it is explained (an answer or a failure
        // is always recorded): a real request does not pay for a list nobody reads.
        let proceeded = |chain: &mut Chain| {
            if self.incoming.dry_run {
                chain.runs.push(MiddlewareRun {
                    name: name.to_string(),
                    ran: Ran::Proceeded,
                });
            }
        };
        // The common answer, "go on, unchanged", has nothing to check or apply.
        if outcome.is_pass() {
            proceeded(&mut self.chain);
            return None;
        }
        // Every change is checked before any is applied: a middleware's changes apply whole or
        // not at all.
        let checked = (|| -> Result<_, String> {
            let remove = outcome
                .remove_headers()
                .map(header_name)
                .collect::<Result<Vec<_>, _>>()?;
            let set = outcome
                .set_headers()
                .map(|(n, v)| header_pair(n, v))
                .collect::<Result<Vec<_>, _>>()?;
            let response = outcome
                .response_headers()
                .map(|(n, v)| header_pair(n, v))
                .collect::<Result<Vec<_>, _>>()?;
            let answer = match outcome.answer() {
                None => None,
                Some((status, answer_headers)) => {
                    let code = StatusCode::from_u16(status)
                        .ok()
                        .filter(|s| (200..600).contains(&s.as_u16()))
                        .ok_or_else(|| format!("it answered status {status}"))?;
                    let answer_headers = answer_headers
                        .map(|(n, v)| header_pair(n, v))
                        .collect::<Result<Vec<_>, _>>()?;
                    Some((code, answer_headers))
                }
            };
            Ok((remove, set, response, answer))
        })();
        let (remove, set, response, answer) = match checked {
            Ok(c) => c,
            Err(reason) => return self.fail(name, StatusCode::INTERNAL_SERVER_ERROR, reason),
        };
        let chain = &mut self.chain;
        chain.response_headers.extend(response);
        if let Some((status, answer_headers)) = answer {
            if let Some(m) = self.metrics {
                m.observe_middleware_answer(name, status.as_u16(), false);
            }
            chain.runs.push(MiddlewareRun {
                name: name.to_string(),
                ran: Ran::Answered {
                    status: status.as_u16(),
                },
            });
            let body = outcome.into_answer_body();
            let mut resp = Response::builder().status(status).body(Body::from(body));
            for (n, v) in answer_headers {
                resp.headers_mut().append(n, v);
            }
            self.kept(headers);
            return Some(resp);
        }
        for n in remove.iter().chain(set.iter().map(|(n, _)| n)) {
            remove_spellings(headers, n);
        }
        for n in &remove {
            chain.onward.retain(|(o, _)| o != n);
        }
        for (n, v) in &set {
            headers.insert(n.clone(), v.clone());
            chain.onward.retain(|(o, _)| o != n);
            chain.onward.push((n.clone(), v.clone()));
        }
        proceeded(&mut self.chain);
        None
    }

    /// Keeps the request for the response step, when an instance that ran asked for one.
    fn kept(&mut self, headers: &HeaderMap) {
        if !self.chain.on_response.is_empty() {
            let call = KeptCall::new(&self.parts(), headers, self.token_header);
            self.chain.call = Some(Box::new(call));
        }
    }
}

impl Chain {
    /// Whether the response step has anything to do.
    pub fn has_response_step(&self) -> bool {
        !self.response_headers.is_empty() || !self.on_response.is_empty()
    }
}

/// The response step: the response headers the instances added, then `on_response` of those
/// that asked for it, in reverse order. A failure replaces the response.
pub async fn on_response(rt: &Snapshot, metrics: &Metrics, chain: Chain, resp: &mut Response) {
    for (n, v) in chain.response_headers {
        resp.headers_mut().append(n, v);
    }
    let Some(call) = chain.call else {
        return;
    };
    let timeout = rt.config.server.plugin_timeout;
    for instance in chain.on_response.iter().rev() {
        let Some(handle) = &instance.handle else {
            continue;
        };
        let status = resp.status().as_u16();
        let result = handle
            .on_response(&call, status, resp.headers(), timeout)
            .await
            .map_err(|e| {
                let code = if e.kind() == ErrorKind::UNAVAILABLE {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (code, e.message().to_string())
            })
            .and_then(|change| {
                let remove = change
                    .remove_headers()
                    .map(header_name)
                    .collect::<Result<Vec<_>, _>>();
                let set = change
                    .set_headers()
                    .map(|(n, v)| header_pair(n, v))
                    .collect::<Result<Vec<_>, _>>();
                remove
                    .and_then(|r| set.map(|s| (r, s)))
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
            });
        match result {
            Ok((remove, set)) => {
                for n in remove {
                    resp.headers_mut().remove(n);
                }
                for (n, v) in set {
                    resp.headers_mut().insert(n, v);
                }
            }
            Err((code, reason)) => {
                tracing::warn!(middleware = %instance.name, "response refused: middleware failed: {reason}");
                metrics.observe_middleware_answer(&instance.name, code.as_u16(), true);
                *resp = failure(code);
                return;
            }
        }
    }
}
