//! Configured routes (`routes:`): the request the gate let through is forwarded to the route's
//! upstream with the canonical path, a streamed body and the caller's identity in headers.
//!
//! What goes upstream:
//! * the canonical path (the one the decision was made on) appended to the upstream URL's path,
//!   and the query without the token's query parameter (`auth.token.query`);
//! * the client's headers, except: hop-by-hop headers (`Connection` and every header it names,
//!   `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`), `Host`, `Expect`,
//!   `Forwarded`, every configured identity header (always, even on routes that need no user),
//!   the token header unless the route sets `forward_authorization`, and the token's cookie
//!   (`auth.token.cookie`) out of `Cookie`;
//! * `X-Forwarded-For` (the address of the client this server saw; the client's own value is
//!   dropped), `X-Forwarded-Proto`, `X-Forwarded-Host`;
//! * the identity headers, from the claims of the user the decision established.
//!
//! Answers: the upstream's status, headers (hop-by-hop removed) and streamed body; 502
//! `{"error":"Bad Gateway"}` when it cannot be reached or fails, 504 `{"error":"Gateway Timeout"}`
//! past the route's `connect_timeout` or `timeout` (the whole exchange, body included).

use std::{
    future::Future as _,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use poem::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri},
    Endpoint, IntoResponse, Request, Response,
};
use tokio::time::Instant;

use super::upstream_pool::{Lease, Pools, SendError};
use crate::{
    app::App,
    auth::{AuthUser, IdentityHeaders},
    config::{GatewayConfig, MethodOverride, RouteConfig},
    http::answer::error_response,
    reload::snapshot::Snapshot,
};

/// Set by the gate when the decision found a route: the snapshot it was decided under, and which
/// route serves the request.
#[derive(Clone)]
pub struct RouteHit {
    /// The snapshot of the decision.
    pub runtime: Arc<Snapshot>,
    /// Index into `runtime.config.routes.list`.
    pub index: usize,
}

/// A body on its way through: the client's to the upstream, the upstream's to the client.
pub(super) type ProxyBody = BoxBody<Bytes, std::io::Error>;

/// Forwards requests that hit a configured route; everything else goes to `inner`.
pub struct Upstreams<E> {
    inner: E,
    app: Arc<App>,
    /// The connections to each upstream, kept across reloads so that their warm connections are.
    pools: Pools,
}

impl<E> Upstreams<E> {
    /// Wraps `inner`.
    pub fn new(inner: E, app: Arc<App>) -> Self {
        Upstreams {
            inner,
            app,
            pools: Pools::default(),
        }
    }
}

impl<E: Endpoint> Endpoint for Upstreams<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let Some(hit) = req.extensions().get::<RouteHit>().cloned() else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let Some(route) = hit.runtime.config.routes.list.get(hit.index) else {
            return Ok(error_response(StatusCode::NOT_FOUND, "Not Found"));
        };
        Ok(self.forward(&hit.runtime, hit.index, route, req).await)
    }
}

/// How an exchange with an upstream failed.
enum Failed {
    /// Past the route's `timeout` or `connect_timeout`.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The client's body went past `server.body_size_limit` while being forwarded.
    BodyTooLarge,
    /// Anything else.
    Other,
}

impl Failed {
    fn of(e: &SendError) -> Failed {
        match e {
            SendError::Connect {
                timed_out: true, ..
            } => Failed::Timeout,
            SendError::Connect { .. } => Failed::Connect,
            SendError::Exchange(e) if crate::http::answer::BodyTooLarge::caused(e) => {
                Failed::BodyTooLarge
            }
            SendError::Exchange(_) => Failed::Other,
        }
    }
}

impl<E> Upstreams<E> {
    async fn forward(
        &self,
        rt: &Snapshot,
        index: usize,
        route: &RouteConfig,
        mut req: Request,
    ) -> Response {
        if let Some(why) = refused_override(&rt.config.gateway, &req) {
            tracing::info!(route = index, "{why}");
            return error_response(StatusCode::BAD_REQUEST, why);
        }
        // The whole exchange, response body included, within the route's time limit.
        let deadline = Instant::now() + route.timeout;
        let uri = match upstream_uri(route, &req, rt.config.auth.token.query.as_deref()) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(route = index, "upstream URL: {e}");
                return error_response(StatusCode::BAD_GATEWAY, "Bad Gateway");
            }
        };
        let pool = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                self.pools.get(scheme, authority, route.connect_timeout)
            }
            _ => Err(format!("upstream URL `{uri}` has no scheme or host")),
        };
        let pool = match pool {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(route = index, "{e}");
                return error_response(StatusCode::BAD_GATEWAY, "Bad Gateway");
            }
        };
        // Sent in origin form (path and query); the pool sets `Host`.
        let target = uri
            .path_and_query()
            .map(|pq| Uri::from(pq.clone()))
            .unwrap_or_else(|| Uri::from_static("/"));
        let token = &rt.config.auth.token;
        let user = req.extensions().get::<Arc<AuthUser>>().cloned();
        // HTTP/2 announces a body by not ending the stream with its HEADERS, not by a header: a
        // body that is not known to be empty is forwarded (the gate has bounded it).
        let client_body = req.take_body();
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
            || req.headers().contains_key(header::TRANSFER_ENCODING)
            || (req.version() >= poem::http::Version::HTTP_2 && !client_body.is_empty());
        let body: ProxyBody = if has_body {
            client_body.into()
        } else {
            poem::Body::empty().into()
        };
        let mut headers = std::mem::take(req.headers_mut());
        prepare_headers(
            &mut headers,
            &req,
            &rt.config.gateway,
            route,
            &token.header,
            token.cookie.as_deref(),
            user.as_deref(),
        );
        let mut request = poem::http::Request::new(body);
        *request.method_mut() = req.method().clone();
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        drop(req);
        let metrics = self.app.metrics();
        let sent = std::time::Instant::now();
        let answer = tokio::time::timeout_at(deadline, pool.send(request)).await;
        match answer {
            Ok(Ok((resp, lease))) => {
                rt.route_timers.observe(index, sent.elapsed());
                metrics.observe_upstream("response");
                let (parts, body) = resp.into_parts();
                let mut headers = parts.headers;
                strip_hop_by_hop(&mut headers);
                let mut out = Response::builder().status(parts.status).finish();
                *out.headers_mut() = headers;
                let mut body = DeadlineBody {
                    inner: body,
                    deadline,
                    timer: None,
                    lease: Some(lease),
                };
                body.release_when_done();
                out.set_body(poem::Body::from(BoxBody::new(body)));
                out
            }
            Err(_) => {
                metrics.observe_upstream("timeout");
                tracing::warn!(route = index, "upstream timed out");
                error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
            }
            Ok(Err(e)) => match Failed::of(&e) {
                Failed::Timeout => {
                    metrics.observe_upstream("timeout");
                    tracing::warn!(route = index, "upstream connection timed out: {e}");
                    error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
                }
                Failed::Connect => {
                    metrics.observe_upstream("connect_error");
                    tracing::warn!(route = index, "upstream connection failed: {e}");
                    error_response(StatusCode::BAD_GATEWAY, "Bad Gateway")
                }
                // The client's fault, as a declared length over the limit would be.
                Failed::BodyTooLarge => {
                    metrics.observe_upstream("error");
                    error_response(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
                }
                Failed::Other => {
                    metrics.observe_upstream("error");
                    tracing::warn!(route = index, "upstream request failed: {e}");
                    error_response(StatusCode::BAD_GATEWAY, "Bad Gateway")
                }
            },
        }
    }
}

/// The URL a request is forwarded to: the upstream's (without a trailing `/`) followed by the
/// canonical path, and the query without the token's parameter and without `_method` (a method
/// the gate did not judge).
fn upstream_uri(
    route: &RouteConfig,
    req: &Request,
    token_query: Option<&str>,
) -> Result<Uri, poem::http::uri::InvalidUri> {
    // The upstream URL has no query or fragment (checked when the config was read): its text is
    // scheme, authority and path.
    let base = route.upstream.as_str().trim_end_matches('/');
    let path = req.uri().path();
    let query = match req.uri().query() {
        Some(q) if token_query.is_some() || query_has_method_override(q) => {
            Some(std::borrow::Cow::Owned(strip_query_where(q, |key| {
                token_query == Some(key) || key.eq_ignore_ascii_case("_method")
            })))
        }
        q => q.map(std::borrow::Cow::Borrowed),
    };
    let query = query.filter(|q| !q.is_empty());
    let mut text =
        String::with_capacity(base.len() + path.len() + query.as_ref().map_or(0, |q| q.len() + 1));
    text.push_str(base);
    text.push_str(path);
    if let Some(q) = query {
        text.push('?');
        text.push_str(&q);
    }
    Uri::try_from(text)
}

/// The upstream's body, cut off with an error at the route's deadline. The timer is set only when
/// the body is not all there (most small answers are read with their head).
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection it came on, given back to its pool once the body has ended.
    lease: Option<Lease>,
}

impl DeadlineBody {
    /// Gives the connection back when the body has ended (at once for an empty one).
    fn release_when_done(&mut self) {
        if self.inner.is_end_stream() {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            match &frame {
                // The end of the body: the connection is free. After an error it is not.
                None => self.release_when_done(),
                Some(Err(_)) => self.lease = None,
                Some(Ok(_)) => self.release_when_done(),
            }
            return Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "upstream body past the route's timeout",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Removes the hop-by-hop headers of a message in place: `Connection` and every header it names,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and `Proxy-*`. One pass over the
/// names, and a removal only for those present (an HTTP/1.1 answer usually has `Connection`
/// alone).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    let gone: smallvec::SmallVec<[HeaderName; 4]> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k) || named.contains(k))
        .cloned()
        .collect();
    for k in gone {
        headers.remove(k);
    }
}

/// Whether a header is hop-by-hop by its name alone: the fixed list or `Proxy-*`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Standard names compare as enum values, not as text.
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// The headers a message's `Connection` names besides the fixed hop-by-hop ones (and besides
/// `close`, an option rather than a header): usually none, and nothing allocated then.
fn connection_named(headers: &HeaderMap) -> smallvec::SmallVec<[HeaderName; 2]> {
    let mut out = smallvec::SmallVec::new();
    for v in headers.get_all(header::CONNECTION) {
        let Ok(s) = v.to_str() else { continue };
        for token in s.split(',').map(str::trim) {
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            if let Ok(h) = HeaderName::from_bytes(token.as_bytes()) {
                if !is_hop_by_hop(&h) {
                    out.push(h);
                }
            }
        }
    }
    out
}

/// The identity headers for `user`: each configured claim that the user has, as text (strings as
/// they are, numbers and booleans printed, lists and objects as JSON), and the provider header
/// with the name of the instance that vouched. A value that cannot be a header (a control
/// character) is left out.
pub fn identity_headers<'u>(
    cfg: &GatewayConfig,
    user: &'u AuthUser,
) -> std::borrow::Cow<'u, [(HeaderName, HeaderValue)]> {
    use std::borrow::Cow;
    // Rendered once per user (a user accepted before is the same object, request after
    // request), and used while the mapping is the one they were rendered under.
    let current = |kept: &IdentityHeaders| {
        kept.mapping == cfg.identity_headers && kept.provider_header == cfg.provider_header
    };
    let kept = user.identity.get_or_init(|| IdentityHeaders {
        mapping: cfg.identity_headers.clone(),
        provider_header: cfg.provider_header.clone(),
        headers: render_identity(cfg, user),
    });
    if current(kept) {
        Cow::Borrowed(&kept.headers)
    } else {
        Cow::Owned(render_identity(cfg, user))
    }
}

/// `user`'s identity headers under `cfg`: each mapped claim that is present, not null and
/// sendable as a header value, then the provider header.
fn render_identity(cfg: &GatewayConfig, user: &AuthUser) -> Vec<(HeaderName, HeaderValue)> {
    let provider = cfg.provider_header.as_ref().and_then(|name| {
        HeaderValue::from_str(&user.provider)
            .ok()
            .map(|v| (name.clone(), v))
    });
    cfg.identity_headers
        .iter()
        .filter_map(|(claim, name)| {
            let text = match user.claims.get(claim)? {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match HeaderValue::from_bytes(text.as_bytes()) {
                Ok(v) => Some((name.clone(), v)),
                Err(_) => {
                    tracing::debug!(claim, "claim value cannot be sent as a header; left out");
                    None
                }
            }
        })
        .chain(provider)
        .collect()
}

/// A header name as an upstream that reads `_` as `-` (CGI, PHP, Django, older Rack) and ignores
/// case sees it: lower case, `_` as `-`. Allocates only for a name with `_` (header names in a
/// `HeaderMap` are already lower case).
pub fn normalized_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('_') {
        name.to_ascii_lowercase().replace('_', "-").into()
    } else {
        name.into()
    }
}

/// Headers with which common frameworks let a request say it is another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether a normalized header name (see [`normalized_name`]) is a method override.
pub fn is_method_override(normalized: &str) -> bool {
    METHOD_OVERRIDES.contains(&normalized)
}

/// Whether a query string carries `_method` (the form field Rails, Laravel and Symfony read as
/// the method), in any spelling that decodes to it.
pub fn query_has_method_override(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        crate::auth::token::form_decode(key).is_some_and(|k| k.eq_ignore_ascii_case("_method"))
    })
}

/// Whether the client's header `normalized` (see [`normalized_name`]) is one only the gate
/// may set upstream: an identity or provider header, `Forwarded`, `X-Forwarded-*`, `X-Real-IP`,
/// or a header by which a proxy names the original request (`X-Original-URL`, ...), which some
/// frameworks route by.
fn is_gate_header(gateway: &GatewayConfig, normalized: &str) -> bool {
    gateway.is_identity_header(normalized)
        || normalized == "forwarded"
        || normalized == "x-real-ip"
        || normalized.starts_with("x-forwarded-")
        || crate::config::ORIGINAL_REQUEST_HEADERS.contains(&normalized)
}

/// Why a request may not be forwarded as it is under `gateway.method_override: refuse`.
pub fn refused_override(gateway: &GatewayConfig, req: &Request) -> Option<&'static str> {
    if gateway.method_override != MethodOverride::Refuse {
        return None;
    }
    if req
        .headers()
        .keys()
        .any(|k| is_method_override(&normalized_name(k.as_str())))
    {
        return Some("method override header refused");
    }
    if req.uri().query().is_some_and(query_has_method_override) {
        return Some("method override parameter `_method` refused");
    }
    None
}

/// Turns the client's headers into the ones sent upstream, in place (the headers the gate has
/// read are not copied): see the module's list.
fn prepare_headers(
    headers: &mut HeaderMap,
    req: &Request,
    gateway: &GatewayConfig,
    route: &RouteConfig,
    token_header: &str,
    token_cookie: Option<&str>,
    user: Option<&AuthUser>,
) {
    let host = headers.get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let named = connection_named(headers);
    let mut gone: smallvec::SmallVec<[HeaderName; 8]> = smallvec::SmallVec::new();
    for k in headers.keys() {
        let name = k.as_str();
        let normalized = normalized_name(name);
        // What the gate did not judge never goes through: identity and forwarding headers in
        // any spelling (the gate sets its own below), method overrides, and, when asked, every
        // name with `_`.
        let skip = is_hop_by_hop(k)
            || named.contains(k)
            || matches!(name, "host" | "expect")
            || is_gate_header(gateway, &normalized)
            || is_method_override(&normalized)
            || (gateway.drop_underscore_headers && name.contains('_'))
            || (!route.forward_authorization && name.eq_ignore_ascii_case(token_header));
        if skip {
            gone.push(k.clone());
        }
    }
    for k in gone {
        headers.remove(k);
    }
    if let Some(c) = token_cookie {
        if headers.contains_key(header::COOKIE) {
            let values: Vec<HeaderValue> =
                headers.get_all(header::COOKIE).iter().cloned().collect();
            headers.remove(header::COOKIE);
            for v in values {
                match v.to_str().ok().map(|s| strip_cookie(s, c)) {
                    Some(Some(rest)) => {
                        if let Ok(v) = HeaderValue::from_str(&rest) {
                            headers.append(header::COOKIE, v);
                        }
                    }
                    // Only the token's cookie was there.
                    Some(None) => {}
                    // Not text: the token's cookie cannot be told apart; drop it all.
                    None => {}
                }
            }
        }
    }
    // The client's own `X-Forwarded-For` was dropped above: it is the client's word. The
    // upstream gets the address this server saw.
    if let Some(addr) = req.remote_addr().as_socket_addr() {
        let ip = crate::plugin::IpText::new(addr.ip());
        if let Ok(v) = HeaderValue::from_str(ip.as_str()) {
            headers.insert(&X_FORWARDED_FOR, v);
        }
    }
    let proto = if req.scheme() == &poem::http::uri::Scheme::HTTPS {
        "https"
    } else {
        "http"
    };
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(h) = host {
        headers.insert(&X_FORWARDED_HOST, h);
    }
    if let Some(u) = user {
        for (k, v) in identity_headers(gateway, u).iter() {
            headers.insert(k.clone(), v.clone());
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `query` without the pairs whose (percent-decoded) name is `name`.
pub fn strip_query_param(query: &str, name: &str) -> String {
    strip_query_where(query, |key| key == name)
}

/// `query` without the pairs whose percent-decoded name `drop` picks (and without a pair whose
/// name cannot be decoded: it cannot be told apart).
fn strip_query_where(query: &str, drop: impl Fn(&str) -> bool) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            crate::auth::token::form_decode(key).is_some_and(|k| !drop(&k))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A `Cookie` value without the cookie `name`; `None` when nothing else is left.
pub fn strip_cookie(value: &str, name: &str) -> Option<String> {
    let rest: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(k, _)| k.trim()) != name)
        .collect();
    (!rest.is_empty()).then(|| rest.join("; "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_stripped_in_place_and_the_rest_kept() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, keep-alive, X-Hop"),
            ("connection", "X-Other-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("x-other-hop", "1"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic x"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ] {
            h.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "set-cookie"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn the_token_query_parameter_is_removed_in_any_spelling() {
        assert_eq!(
            strip_query_param("a=1&access_token=abc&b=2", "access_token"),
            "a=1&b=2"
        );
        assert_eq!(
            strip_query_param("access%5Ftoken=abc&b=2", "access_token"),
            "b=2"
        );
        assert_eq!(strip_query_param("access_token=abc", "access_token"), "");
        assert_eq!(strip_query_param("tok=1", "access_token"), "tok=1");
    }

    #[test]
    fn the_token_cookie_is_removed_and_others_kept() {
        assert_eq!(
            strip_cookie("a=1; session=tok; b=2", "session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("session=tok", "session"), None);
        assert_eq!(
            strip_cookie("sessionx=1", "session").as_deref(),
            Some("sessionx=1")
        );
    }

    #[test]
    fn identity_headers_render_claims_and_skip_unsendable_ones() {
        let cfg = GatewayConfig {
            identity_headers: vec![
                ("sub".into(), HeaderName::from_static("x-user-id")),
                ("roles".into(), HeaderName::from_static("x-user-roles")),
                ("bad".into(), HeaderName::from_static("x-bad")),
                ("absent".into(), HeaderName::from_static("x-absent")),
            ],
            provider_header: Some(HeaderName::from_static("x-auth-provider")),
            ..GatewayConfig::default()
        };
        let user = AuthUser::new(
            "p".into(),
            serde_json::json!({"sub": "alice", "roles": ["a", "b"], "bad": "x\r\nInjected: 1"}),
        );
        let h = identity_headers(&cfg, &user);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].1, "alice");
        assert_eq!(h[1].1, r#"["a","b"]"#);
        assert_eq!(
            (h[2].0.as_str(), h[2].1.to_str().unwrap()),
            ("x-auth-provider", "p")
        );
        // Rendered once for the user; a reloaded mapping is never answered from what was
        // rendered under the old one.
        assert_eq!(identity_headers(&cfg, &user), h);
        let reloaded = GatewayConfig {
            identity_headers: vec![("sub".into(), HeaderName::from_static("x-subject"))],
            ..GatewayConfig::default()
        };
        let h2 = identity_headers(&reloaded, &user);
        assert_eq!(h2.len(), 1);
        assert_eq!(
            (h2[0].0.as_str(), h2[0].1.to_str().unwrap()),
            ("x-subject", "alice")
        );
        let no_provider = GatewayConfig {
            provider_header: None,
            ..cfg.clone()
        };
        assert_eq!(identity_headers(&no_provider, &user).len(), 2);
    }

    #[test]
    fn names_read_as_an_upstream_reads_them() {
        assert_eq!(normalized_name("x-user-id"), "x-user-id");
        assert_eq!(normalized_name("X_User_Id"), "x-user-id");
        assert!(is_method_override(&normalized_name(
            "X_HTTP_Method_Override"
        )));
        assert!(query_has_method_override("a=1&_method=DELETE"));
        assert!(query_has_method_override("%5Fmethod=DELETE"));
        assert!(query_has_method_override("_METHOD=DELETE"));
        assert!(!query_has_method_override("method=DELETE&x_method=1"));
        assert_eq!(
            strip_query_where("a=1&_method=DELETE&b=2&%zz=3", |k| k == "_method"),
            "a=1&b=2"
        );
    }
}
