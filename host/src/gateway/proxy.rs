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
//! * `X-Forwarded-For` (the client's address appended), `X-Forwarded-Proto`, `X-Forwarded-Host`;
//! * the identity headers, from the claims of the user the decision established.
//!
//! Answers: the upstream's status, headers (hop-by-hop removed) and streamed body; 502
//! `{"error":"Bad Gateway"}` when it cannot be reached or fails, 504 `{"error":"Gateway Timeout"}`
//! past the route's `connect_timeout` or `timeout` (the whole exchange, body included).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::TryStreamExt as _;
use poem::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};

use crate::{
    app::App,
    auth::AuthUser,
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

/// Forwards requests that hit a configured route; everything else goes to `inner`.
pub struct Upstreams<E> {
    inner: E,
    app: Arc<App>,
    /// One client per connect timeout (connection pools are per client).
    clients: Mutex<HashMap<Duration, reqwest::Client>>,
}

impl<E> Upstreams<E> {
    /// Wraps `inner`.
    pub fn new(inner: E, app: Arc<App>) -> Self {
        Upstreams {
            inner,
            app,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, connect_timeout: Duration) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&connect_timeout) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            // Redirects are the client's business; proxies from the environment are not used.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| format!("upstream client: {e}"))?;
        clients.insert(connect_timeout, c.clone());
        Ok(c)
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
        let client = match self.client(route.connect_timeout) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(route = index, "{e}");
                return error_response(StatusCode::BAD_GATEWAY, "Bad Gateway");
            }
        };
        let token = &rt.config.auth.token;
        let mut url = route.upstream.clone();
        let path = format!("{}{}", url.path().trim_end_matches('/'), req.uri().path());
        url.set_path(&path);
        // Without the token's parameter, and without `_method` (a method the gate did not judge).
        let query = match req.uri().query() {
            Some(q) if token.query.is_some() || query_has_method_override(q) => {
                Some(strip_query_where(q, |key| {
                    token.query.as_deref() == Some(key) || key.eq_ignore_ascii_case("_method")
                }))
            }
            q => q.map(str::to_string),
        };
        url.set_query(query.as_deref().filter(|q| !q.is_empty()));

        let user = req.extensions().get::<Arc<AuthUser>>().cloned();
        let headers = upstream_headers(
            &req,
            &rt.config.gateway,
            route,
            &token.header,
            token.cookie.as_deref(),
            user.as_deref(),
        );
        // HTTP/2 announces a body by not ending the stream with its HEADERS, not by a header: a
        // body that is not known to be empty is forwarded (the gate has bounded it).
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
            || req.headers().contains_key(header::TRANSFER_ENCODING)
            || (req.version() >= poem::http::Version::HTTP_2 && {
                let body = req.take_body();
                let empty = body.is_empty();
                req.set_body(body);
                !empty
            });
        let mut builder = client
            .request(req.method().clone(), url)
            .headers(headers)
            .timeout(route.timeout);
        if has_body {
            let stream = req.take_body().into_bytes_stream();
            builder = builder.body(reqwest::Body::wrap_stream(stream));
        }
        let metrics = self.app.metrics();
        let sent = std::time::Instant::now();
        match builder.send().await {
            Ok(resp) => {
                rt.route_timers.observe(index, sent.elapsed());
                metrics.observe_upstream("response");
                let mut out = Response::builder().status(resp.status()).finish();
                let drop = hop_by_hop(resp.headers());
                for (k, v) in resp.headers() {
                    if !drop.contains(k) {
                        out.headers_mut().append(k.clone(), v.clone());
                    }
                }
                let stream = resp.bytes_stream().map_err(std::io::Error::other);
                out.set_body(poem::Body::from_bytes_stream(stream));
                out
            }
            Err(e) if e.is_timeout() => {
                metrics.observe_upstream("timeout");
                tracing::warn!(route = index, "upstream timed out");
                error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
            }
            Err(e) if e.is_connect() => {
                metrics.observe_upstream("connect_error");
                tracing::warn!(route = index, "upstream connection failed");
                error_response(StatusCode::BAD_GATEWAY, "Bad Gateway")
            }
            // The client's body went past `server.body_size_limit` while being forwarded (one
            // without a declared length): the client's fault, as a declared one would be.
            Err(e) if crate::http::answer::BodyTooLarge::caused(&e) => {
                metrics.observe_upstream("error");
                error_response(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            }
            Err(_) => {
                metrics.observe_upstream("error");
                tracing::warn!(route = index, "upstream request failed");
                error_response(StatusCode::BAD_GATEWAY, "Bad Gateway")
            }
        }
    }
}

/// Headers that describe one connection, not the message: never forwarded in either direction.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The hop-by-hop headers of a message: the fixed list, every `Proxy-*` header, and the headers
/// its `Connection` names.
pub fn hop_by_hop(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = HOP_BY_HOP
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    for v in headers.get_all(header::CONNECTION) {
        let Ok(s) = v.to_str() else { continue };
        for name in s.split(',') {
            if let Ok(h) = HeaderName::from_bytes(name.trim().as_bytes()) {
                out.push(h);
            }
        }
    }
    for k in headers.keys() {
        if k.as_str().starts_with("proxy-") {
            out.push(k.clone());
        }
    }
    out
}

/// The identity headers for `user`: each configured claim that the user has, as text (strings as
/// they are, numbers and booleans printed, lists and objects as JSON), and the provider header
/// with the name of the instance that vouched. A value that cannot be a header (a control
/// character) is left out.
pub fn identity_headers(cfg: &GatewayConfig, user: &AuthUser) -> Vec<(HeaderName, HeaderValue)> {
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

fn upstream_headers(
    req: &Request,
    gateway: &GatewayConfig,
    route: &RouteConfig,
    token_header: &str,
    token_cookie: Option<&str>,
    user: Option<&AuthUser>,
) -> HeaderMap {
    let src = req.headers();
    let drop = hop_by_hop(src);
    let mut out = HeaderMap::new();
    for (k, v) in src {
        let name = k.as_str();
        let normalized = normalized_name(name);
        // What the gate did not judge never goes through: identity and forwarding headers in
        // any spelling (the gate sets its own below), method overrides, and, when asked, every
        // name with `_`.
        let skip = drop.contains(k)
            || matches!(name, "host" | "expect")
            || is_gate_header(gateway, &normalized)
            || is_method_override(&normalized)
            || (gateway.drop_underscore_headers && name.contains('_'))
            || (!route.forward_authorization && name.eq_ignore_ascii_case(token_header));
        if skip {
            continue;
        }
        if name == "cookie" {
            if let Some(c) = token_cookie {
                match v.to_str().ok().map(|s| strip_cookie(s, c)) {
                    Some(Some(rest)) => {
                        if let Ok(v) = HeaderValue::from_str(&rest) {
                            out.append(header::COOKIE, v);
                        }
                    }
                    // Only the token's cookie was there.
                    Some(None) => {}
                    // Not text: the token's cookie cannot be told apart; drop it all.
                    None => {}
                }
                continue;
            }
        }
        out.append(k.clone(), v.clone());
    }
    // The client's own `X-Forwarded-For` was dropped above: it is the client's word. The
    // upstream gets the address this server saw.
    if let Some(addr) = req.remote_addr().as_socket_addr() {
        if let Ok(v) = HeaderValue::from_str(&addr.ip().to_string()) {
            out.insert("x-forwarded-for", v);
        }
    }
    let proto = if req.scheme() == &poem::http::uri::Scheme::HTTPS {
        "https"
    } else {
        "http"
    };
    out.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    let host = src.get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(h) = host {
        out.insert("x-forwarded-host", h);
    }
    if let Some(u) = user {
        for (k, v) in identity_headers(gateway, u) {
            out.insert(k, v);
        }
    }
    out
}

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
    fn hop_by_hop_includes_what_connection_names_and_proxy_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, X-Secret-Hop"),
        );
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        let d = hop_by_hop(&h);
        for n in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "x-secret-hop",
            "close",
            "proxy-authorization",
        ] {
            assert!(d.iter().any(|x| x == n), "{n}");
        }
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
