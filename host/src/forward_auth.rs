//! Forward auth: the gate's verdict for a proxy in front of the services (nginx `auth_request`,
//! Traefik ForwardAuth). The proxy says which request it is asking about; the answer is the one a
//! request sent straight to Portcullis would get, without serving anything:
//!
//! * the original request: `X-Original-Method` and `X-Original-URI` (nginx; set them with
//!   `proxy_set_header`), else `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik). Both a
//!   method and a URI are required (400 otherwise): rules may depend on the method, and guessing
//!   `GET` for a `DELETE` would be a hole. `X-Forwarded-Host` and `X-Forwarded-Proto` are logged.
//! * the path is canonicalized like any request (400 on an ambiguous encoding), and the query of
//!   the original URI is where an opted-in query token is found;
//! * the caller's token and cookies come from the request's own headers, which both proxies pass on.
//!
//! Answers: 200 with the identity headers (`gateway.identity_headers`) when allowed; 401 with
//! `WWW-Authenticate`; 403; 503 and 500 as for any request.

use std::time::Instant;

use poem::{
    http::{HeaderMap, HeaderValue, StatusCode},
    Response,
};

use crate::{
    app::App,
    auth::{decide, RequestParts},
    matching::canonicalize,
    proxy::identity_headers,
    server::{denial_response, error_response},
};

/// Where the endpoint is served (a reserved path: no route can take it).
pub const PATH: &str = "/forward-auth";

fn first<'a>(h: &'a HeaderMap, names: [&str; 2]) -> Option<&'a str> {
    names.iter().find_map(|n| {
        h.get(*n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    })
}

/// The verdict on the request described by `headers`.
pub async fn answer(app: &App, headers: &HeaderMap) -> Response {
    let rt = app.runtime();
    if !rt.config.gateway.forward_auth {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    }
    let (Some(uri), Some(method)) = (
        first(headers, ["x-original-uri", "x-forwarded-uri"]),
        first(headers, ["x-original-method", "x-forwarded-method"]),
    ) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "Missing X-Original-URI/X-Forwarded-Uri or X-Original-Method/X-Forwarded-Method",
        );
    };
    if !method.bytes().all(|b| b.is_ascii_alphabetic()) || method.len() > 16 {
        return error_response(StatusCode::BAD_REQUEST, "Invalid original method");
    }
    let method = method.to_ascii_uppercase();
    let uri = uri.split_once('#').map_or(uri, |(u, _)| u);
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    if !path.starts_with('/') {
        return error_response(StatusCode::BAD_REQUEST, "Bad request path");
    }
    let canonical = match canonicalize(path) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!("forward auth: bad original path: {e}");
            return error_response(StatusCode::BAD_REQUEST, "Bad request path");
        }
    };
    let started = Instant::now();
    let decision = decide(
        &rt,
        &RequestParts {
            method: &method,
            path: &canonical,
            headers,
            query,
            now: started,
        },
    )
    .await;
    app.metrics().observe_decision(&decision, started.elapsed());
    tracing::debug!(
        method = %method,
        path = %canonical,
        host = first(headers, ["x-forwarded-host", "host"]).unwrap_or(""),
        proto = first(headers, ["x-forwarded-proto", "x-forwarded-proto"]).unwrap_or(""),
        reason = %decision.trace.reason,
        "forward auth"
    );
    match decision.result {
        Ok(user) => {
            let mut r = Response::builder().status(StatusCode::OK).finish();
            if let Some(u) = user {
                for (k, v) in identity_headers(&rt.config.gateway, &u) {
                    r.headers_mut().insert(k, v);
                }
            }
            r.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            r
        }
        Err(d) => denial_response(&d),
    }
}
