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
    config::{GatewayConfig, RouteConfig},
    runtime::Runtime,
    server::error_response,
};

/// Set by the gate when the decision found a route: the snapshot it was decided under, and which
/// route serves the request.
#[derive(Clone)]
pub struct RouteHit {
    /// The snapshot of the decision.
    pub runtime: Arc<Runtime>,
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
        rt: &Runtime,
        index: usize,
        route: &RouteConfig,
        mut req: Request,
    ) -> Response {
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
        let query = match (req.uri().query(), &token.query) {
            (Some(q), Some(name)) => Some(strip_query_param(q, name)),
            (q, _) => q.map(str::to_string),
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
        match builder.send().await {
            Ok(resp) => {
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
/// they are, numbers and booleans printed, lists and objects as JSON). A value that cannot be a
/// header (a control character) is left out.
pub fn identity_headers(cfg: &GatewayConfig, user: &AuthUser) -> Vec<(HeaderName, HeaderValue)> {
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
        .collect()
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
    let mut forwarded_for: Vec<String> = Vec::new();
    for (k, v) in src {
        let name = k.as_str();
        let skip = drop.contains(k)
            || matches!(
                name,
                "host" | "expect" | "forwarded" | "x-forwarded-proto" | "x-forwarded-host"
            )
            || gateway.identity_headers.iter().any(|(_, h)| h == k)
            || (!route.forward_authorization && name.eq_ignore_ascii_case(token_header));
        if skip {
            continue;
        }
        if name == "x-forwarded-for" {
            if let Ok(s) = v.to_str() {
                forwarded_for.push(s.to_string());
            }
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
    if let Some(addr) = req.remote_addr().as_socket_addr() {
        forwarded_for.push(addr.ip().to_string());
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded_for.join(", ")) {
        if !forwarded_for.is_empty() {
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
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            crate::auth::token::form_decode(key).as_deref() != Some(name)
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
            forward_auth: false,
        };
        let user = AuthUser::new(
            "p".into(),
            serde_json::json!({"sub": "alice", "roles": ["a", "b"], "bad": "x\r\nInjected: 1"}),
        );
        let h = identity_headers(&cfg, &user);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].1, "alice");
        assert_eq!(h[1].1, r#"["a","b"]"#);
    }
}
