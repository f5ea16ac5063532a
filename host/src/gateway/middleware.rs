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
use portcullis_plugin_api::ErrorKind;

use crate::{
    auth::{AuthUser, MiddlewareInstance},
    config::Config,
    http::answer::error_response,
    observe::metrics::Metrics,
    plugin::{CallParts, CallUser, KeptCall},
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
    let mut chain = Chain::default();
    if selected.is_empty() {
        return (chain, None);
    }
    let timeout = rt.config.server.plugin_timeout;
    let user = incoming.user.map(|u| CallUser {
        provider: &u.provider,
        json: u.claims_json(),
    });
    let token = &rt.config.auth.token;
    // The token never reaches a middleware: not in the token header, not in the query.
    let query = match (incoming.query, &token.query) {
        (Some(q), Some(name)) => Some(std::borrow::Cow::Owned(
            crate::gateway::proxy::strip_query_param(q, name),
        )),
        (q, _) => q.map(std::borrow::Cow::Borrowed),
    };
    let parts = CallParts {
        method: incoming.method,
        path: incoming.path,
        query: query.as_deref().unwrap_or_default(),
        client: incoming.client,
        user,
        dry_run: incoming.dry_run,
    };
    let token_header = &token.header_name;
    for &i in selected {
        let Some(instance) = rt.middleware.get(i) else {
            // A snapshot has one instance per entry: an index without one is a bug, and a
            // request is never let past a middleware it could not run.
            tracing::error!("middleware #{i} has no instance in the snapshot");
            return (chain, Some(failure(StatusCode::INTERNAL_SERVER_ERROR)));
        };
        let name = instance.name.as_str();
        let fail = |chain: &mut Chain, status: StatusCode, reason: String| {
            tracing::warn!(middleware = %name, "request refused: middleware failed: {reason}");
            if let Some(m) = metrics {
                m.observe_middleware_answer(name, status.as_u16(), true);
            }
            chain.runs.push(MiddlewareRun {
                name: name.to_string(),
                ran: Ran::Failed {
                    status: status.as_u16(),
                    reason,
                },
            });
            Some(failure(status))
        };
        let Some(handle) = &instance.handle else {
            let reason = instance.retired.clone().unwrap_or_default();
            let answer = fail(&mut chain, StatusCode::SERVICE_UNAVAILABLE, reason);
            return (chain, answer);
        };
        let outcome = match handle
            .on_request(&parts, headers, token_header, timeout)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let status = if e.kind() == ErrorKind::UNAVAILABLE {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                let answer = fail(&mut chain, status, e.message().to_string());
                return (chain, answer);
            }
        };
        if handle.wants_response() {
            chain.on_response.push(instance.clone());
        }
        // The common answer, "go on, unchanged", has nothing to check or apply.
        if outcome.is_pass() {
            if incoming.dry_run {
                chain.runs.push(MiddlewareRun {
                    name: name.to_string(),
                    ran: Ran::Proceeded,
                });
            }
            continue;
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
            Err(reason) => {
                let answer = fail(&mut chain, StatusCode::INTERNAL_SERVER_ERROR, reason);
                return (chain, answer);
            }
        };
        chain.response_headers.extend(response);
        if let Some((status, answer_headers)) = answer {
            if let Some(m) = metrics {
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
            chain.keep_call(&parts, headers, token_header);
            return (chain, Some(resp));
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
        // Who let the request through is told only when it is explained (an answer or a failure
        // is always recorded): a real request does not pay for a list nobody reads.
        if incoming.dry_run {
            chain.runs.push(MiddlewareRun {
                name: name.to_string(),
                ran: Ran::Proceeded,
            });
        }
    }
    chain.keep_call(&parts, headers, token_header);
    (chain, None)
}

impl Chain {
    /// Keeps the request for the response step, when an instance that ran asked for one.
    fn keep_call(&mut self, parts: &CallParts<'_>, headers: &HeaderMap, token_header: &HeaderName) {
        if !self.on_response.is_empty() {
            self.call = Some(Box::new(KeptCall::new(parts, headers, token_header)));
        }
    }

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
