//! Forward auth: the gate's verdict for a proxy in front of the services (nginx `auth_request`,
//! Traefik ForwardAuth, Caddy `forward_auth`, Envoy `ext_authz`). The proxy says which request it
//! is asking about; the answer is the one a request sent straight to Portcullis would get, without
//! serving anything.
//!
//! **Whose word is trusted.** `gateway.forward_auth` names the proxy, and only that proxy's headers
//! say which request is judged (see [`ForwardProxy`]): for nginx `X-Original-Method`,
//! `X-Original-URI` and `X-Forwarded-Host` (set with `proxy_set_header`); for Traefik and Caddy
//! `X-Forwarded-Method`, `X-Forwarded-Uri` and `X-Forwarded-Host`; for Envoy the check request's
//! own method, its path below `/forward-auth` and its `Host`. Proxies pass the client's headers on,
//! so a client can send any of these; what is refused with 400:
//!
//! * another proxy's original-request headers ([`ORIGINAL_REQUEST_HEADERS`]): a client's
//!   `X-Original-URI` behind Traefik would otherwise name a request of its choosing;
//! * the configured headers missing, empty or repeated;
//! * an original path that is not already canonical (`/a/../b`, `%7e`, `//`): the proxy forwards
//!   the raw path, and the upstream must not see a path other than the one judged;
//! * a method override (`X-HTTP-Method-Override` and kin, a `_method` query parameter): the
//!   proxy would forward it, and the upstream would run another method than the one judged;
//! * a client's copy of an identity header (or the provider header), in any spelling, and of
//!   `Forwarded`/`X-Forwarded-*`/`X-Real-IP` spelled with `_`: only Portcullis says who the user
//!   is, and a proxy copies the answer's identity headers only when there are some.
//!
//! A CORS preflight gets no exemption here: it is judged like any request (the proxy forwards what
//! is allowed, so an exemption would pass an unauthenticated `OPTIONS` to a protected upstream).
//!
//! Answers: 200 with the identity headers (`gateway.identity_headers`, and
//! `gateway.provider_header`) when allowed; 401 with `WWW-Authenticate`; 403; 400 as above; 503
//! and 500 as for any request.

use std::time::Instant;

use poem::{
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    Request, Response,
};

use crate::{
    app::App,
    auth::{decide, RequestParts},
    config::{ForwardProxy, GatewayConfig, ORIGINAL_REQUEST_HEADERS},
    gateway::{
        middleware,
        proxy::{identity_headers, is_method_override, normalized_name, query_has_method_override},
    },
    http::answer::{denial_response, error_response},
    matching::canonicalize,
};

/// Where the endpoint is served (a reserved path: no route can take it). With `proxy: envoy`,
/// the original path follows it (`/forward-auth/api/x`).
pub const PATH: &str = "/forward-auth";

/// The one value of header `name`, trimmed; `Err` when it is repeated or not text.
fn only<'a>(h: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, &'static str> {
    let mut values = h.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("repeated");
    }
    let v = first.to_str().map_err(|_| "not text")?.trim();
    Ok((!v.is_empty()).then_some(v))
}

fn bad(message: &str) -> Response {
    tracing::info!("forward auth refused: {message}");
    error_response(StatusCode::BAD_REQUEST, message)
}

/// The first header of `headers` that a forward-auth request may not carry, as a message.
fn refused_header(
    gateway: &GatewayConfig,
    proxy: &ForwardProxy,
    headers: &HeaderMap,
) -> Option<String> {
    let own = |n: &str| {
        proxy.method.as_ref().is_some_and(|h| h == n)
            || proxy.uri.as_ref().is_some_and(|h| h == n)
            || proxy.host == n
    };
    // One pass over the request's names (a lookup by name would parse and hash each listed one).
    for name in headers.keys() {
        let raw = name.as_str();
        if let Some(n) = ORIGINAL_REQUEST_HEADERS.iter().find(|n| **n == raw) {
            if !own(n) {
                return Some(format!(
                    "`{n}` is not a header {} sends; refused",
                    proxy.kind.name()
                ));
            }
        }
    }
    for name in headers.keys() {
        let raw = name.as_str();
        let norm = normalized_name(raw);
        if is_method_override(&norm) {
            return Some(format!("method override header `{raw}` refused"));
        }
        if gateway.is_identity_header(&norm) {
            return Some(format!(
                "`{raw}` is an identity header; only Portcullis sets it"
            ));
        }
        if raw.contains('_')
            && (norm == "forwarded" || norm == "x-real-ip" || norm.starts_with("x-forwarded-"))
        {
            return Some(format!("`{raw}` spells a forwarding header with `_`"));
        }
    }
    None
}

/// The verdict on the request the proxy names in `req`.
pub async fn answer(app: &App, req: &Request) -> Response {
    let rt = app.snapshot();
    let gateway = &rt.config.gateway;
    let Some(proxy) = &gateway.forward_auth else {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    };
    let headers = req.headers();
    if let Some(why) = refused_header(gateway, proxy, headers) {
        return bad(&why);
    }
    // The original method and target, from the configured proxy's headers only.
    let (method, path, query) = match (&proxy.method, &proxy.uri) {
        (Some(mh), Some(uh)) => {
            let (method, uri) = match (only(headers, mh), only(headers, uh)) {
                (Ok(Some(m)), Ok(Some(u))) => (m, u),
                _ => {
                    return bad(&format!(
                        "one `{mh}` and one `{uh}` are required (forward_auth proxy: {})",
                        proxy.kind.name()
                    ))
                }
            };
            let (path, query) = match uri.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (uri, None),
            };
            (method.to_string(), path, query)
        }
        // Envoy: the check request is the original one, below `/forward-auth`.
        _ => match req.uri().path().strip_prefix(PATH) {
            Some(p) if p.starts_with('/') => (req.method().as_str().to_string(), p, req.uri().query()),
            _ => {
                return bad(
                    "with proxy: envoy, the original path follows /forward-auth (ext_authz path_prefix)",
                )
            }
        },
    };
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return bad("invalid original method");
    }
    let method = method.to_ascii_uppercase();
    let host = match only(headers, &proxy.host) {
        Ok(Some(h)) => h,
        _ => return bad(&format!("one `{}` is required", proxy.host)),
    };
    if !path.starts_with('/') || path.contains('#') {
        return bad("bad original path");
    }
    // Judged only in the form the upstream will see: the proxy forwards the raw target.
    match canonicalize(path) {
        Ok(c) if c == path => {}
        Ok(_) => return bad("the original path is not in canonical form"),
        Err(e) => {
            tracing::info!("forward auth: bad original path: {e}");
            return bad("bad original path");
        }
    }
    if query.is_some_and(query_has_method_override) {
        return bad("method override parameter `_method` refused");
    }
    let started = Instant::now();
    let decision = decide(
        &rt.policy(),
        &RequestParts {
            method: &method,
            path,
            headers,
            query,
            host: Some(host),
            now: started,
        },
    )
    .await;
    app.metrics().observe_decision(&decision, started.elapsed());
    tracing::debug!(
        method = %method,
        path = %path,
        host = %host,
        proxy = proxy.kind.name(),
        reason = %decision.trace.reason,
        "forward auth"
    );
    let user = match decision.result {
        Ok(user) => user,
        Err(d) => return denial_response(&d),
    };
    // The request middleware that would run for the original request run now: one may answer
    // (deny) it, and the headers they set onward go back to the proxy with the 200.
    let selected = middleware::selected(
        &rt.config,
        &method,
        path,
        decision.trace.route,
        user.is_some(),
    );
    let incoming = middleware::Incoming {
        method: &method,
        path,
        query,
        client: req.remote_addr().as_socket_addr().map(|a| a.ip()),
        user: user.as_deref(),
        dry_run: false,
    };
    // The middleware change a copy of the headers (their changes go back with the verdict):
    // made only when one runs.
    let mut onward = if selected.is_empty() {
        HeaderMap::new()
    } else {
        headers.clone()
    };
    let (chain, answer) =
        middleware::on_request(&rt, Some(app.metrics()), &selected, &incoming, &mut onward).await;
    let allowed = answer.is_none();
    let mut r = match answer {
        // A proxy reads a 2xx verdict as "let it through": a middleware's own 2xx answer would
        // send on the very request it answered instead of the route (and without the identity
        // headers). It cannot be relayed; fail closed.
        Some(answer) if answer.status().is_success() => {
            tracing::warn!(
                path = %path,
                status = answer.status().as_u16(),
                "forward auth refused: a middleware answered with a success status, which the proxy would read as allowed"
            );
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Some(answer) => answer,
        None => {
            let mut r = Response::builder().status(StatusCode::OK).finish();
            for (k, v) in &chain.onward {
                r.headers_mut().insert(k.clone(), v.clone());
            }
            r
        }
    };
    if chain.has_response_step() {
        middleware::on_response(&rt, app.metrics(), chain, &mut r).await;
    }
    // The proxy copies the verdict's identity headers onto the request: only Portcullis says who
    // the user is, so none comes from a middleware (a request header it set, a response header
    // it added), in any spelling — as on a proxied route, where they are always replaced.
    let spoofed: Vec<HeaderName> = r
        .headers()
        .keys()
        .filter(|k| gateway.is_identity_header(&normalized_name(k.as_str())))
        .cloned()
        .collect();
    for k in spoofed {
        r.headers_mut().remove(k);
    }
    // Allowed, and no response hook failed: the identity goes back with the 200.
    if allowed && r.status().is_success() {
        if let Some(u) = &user {
            for (k, v) in identity_headers(gateway, u).iter() {
                r.headers_mut().insert(k.clone(), v.clone());
            }
        }
    }
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::ProxyKind;

    fn traefik() -> ForwardProxy {
        ForwardProxy {
            kind: ProxyKind::Traefik,
            method: Some(HeaderName::from_static("x-forwarded-method")),
            uri: Some(HeaderName::from_static("x-forwarded-uri")),
            host: HeaderName::from_static("x-forwarded-host"),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn another_proxys_headers_overrides_and_spoofed_identities_are_refused() {
        let g = GatewayConfig::default();
        let p = traefik();
        let ok = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/api/x"),
            ("x-forwarded-host", "app.test"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        assert_eq!(refused_header(&g, &p, &ok), None);
        for extra in [
            ("x-original-uri", "/health"),
            ("x-original-method", "GET"),
            ("x-original-url", "/health"),
            ("x-rewrite-url", "/health"),
            ("x-http-method-override", "DELETE"),
            ("x_http_method_override", "DELETE"),
            ("x-method-override", "DELETE"),
            ("x-user-id", "admin"),
            ("X_User_Id", "admin"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x_real_ip", "1.2.3.4"),
        ] {
            let mut h = ok.clone();
            h.append(
                HeaderName::from_bytes(extra.0.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            assert!(refused_header(&g, &p, &h).is_some(), "{extra:?}");
        }
    }

    #[test]
    fn a_repeated_header_is_not_one_value() {
        let h = headers(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert!(only(&h, &HeaderName::from_static("x-forwarded-uri")).is_err());
        let h = headers(&[("x-forwarded-uri", "  ")]);
        assert_eq!(
            only(&h, &HeaderName::from_static("x-forwarded-uri")),
            Ok(None)
        );
    }
}
