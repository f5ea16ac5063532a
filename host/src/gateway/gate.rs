//! The gate in front of every route: canonical path, CORS, body limit, the auth decision,
//! timeout, request id and access log; routes of `routes:` go to their upstream, the forward-auth
//! path is answered here.

use std::{borrow::Cow, sync::Arc, time::Instant};

use poem::{
    http::{header, HeaderValue, Method, StatusCode, Uri},
    Endpoint, IntoResponse, Request, Response,
};
use tracing::Instrument as _;

use crate::{
    app::App,
    auth::{decide, AuthUser, Denial, RequestParts},
    gateway::middleware,
    http::{
        answer::{denial_response, error_response, BodyTooLarge},
        cors::{add_cors, preflight},
    },
    matching::canonicalize,
    observe::telemetry,
};

/// What an allowed request carries on: its user (when one was needed) and its `routes:` entry.
type Judged = (Option<Arc<AuthUser>>, Option<usize>);

/// The methods a path has, for the `Allow` header of a 405 (RFC 9110); `None` when not known.
pub type Allow = Arc<dyn Fn(&str) -> Option<HeaderValue> + Send + Sync>;

/// The gate in front of every route.
pub struct Gate<E> {
    inner: E,
    app: Arc<App>,
    allow: Allow,
}

impl<E> Gate<E> {
    /// The gate of `app` in front of `inner`; `allow` names the methods a path has, for the
    /// `Allow` header of a 405 (RFC 9110).
    pub fn new(inner: E, app: Arc<App>, allow: Allow) -> Self {
        Gate { inner, app, allow }
    }
}

/// Named once: a header looked up by a `&str` name has that name parsed on every call.
static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The request's id, as sent back in `x-request-id`: the caller's own when it is a sane one, else
/// a new one.
fn request_id(req: &Request) -> HeaderValue {
    if let Some(v) = req.headers().get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return v.clone();
        }
    }
    // An id names a request in logs and traces; it need not be secret, only unique. 96 bits of a
    // fast per-thread generator (seeded from the OS) make a repeat vanishingly unlikely.
    let bits = (u128::from(fastrand::u32(..)) << 64) | u128::from(fastrand::u64(..));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 24];
    for (i, c) in hex.iter_mut().enumerate() {
        *c = HEX[((bits >> (4 * (23 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("-"))
}

impl<E: Endpoint> Endpoint for Gate<E> {
    type Output = Response;

    // Not an `async fn`: the gate's future is returned as is, not wrapped in one more layer that
    // would hold another copy of the request.
    fn call(
        &self,
        req: Request,
    ) -> impl std::future::Future<Output = poem::Result<Response>> + Send {
        let id = request_id(&req);
        // Only visible ASCII gets in (above), so this is the id itself.
        let span = telemetry::request_span(
            id.to_str().unwrap_or_default(),
            req.method().as_str(),
            req.headers(),
        );
        self.gate(req, id).instrument(span)
    }
}

impl<E: Endpoint> Gate<E> {
    /// Everything a request goes through, inside its span (every log line names the request).
    async fn gate(&self, mut req: Request, id_value: HeaderValue) -> poem::Result<Response> {
        let rt = self.app.snapshot();
        // Read only for the access log: a clock read costs tens of nanoseconds on a virtual
        // machine, a few percent of a whole request.
        let started = rt.config.server.api_req_logs.then(Instant::now);
        let server = &rt.config.server;
        let id = id_value.to_str().unwrap_or_default();
        // Rules match upper-case methods; the standard ones already are (no copy for them).
        let method_value = req.method().clone();
        let method: Cow<'_, str> = match method_value.as_str() {
            m if m.bytes().any(|b| b.is_ascii_lowercase()) => m.to_ascii_uppercase().into(),
            m => m.into(),
        };
        // Kept past the request only when CORS will need it.
        let origin = server
            .cors
            .as_ref()
            .and_then(|_| req.headers().get(header::ORIGIN))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut log_path = String::new();
        // Who asked, for the access log only: copied when it is on.
        let (log_client, log_agent) = if server.api_req_logs {
            let client = match req.remote_addr().as_socket_addr() {
                Some(a) => a.to_string(),
                None => req.remote_addr().to_string(),
            };
            (client, access_user_agent(req.headers()))
        } else {
            (String::new(), String::new())
        };
        let mut log_provider: Option<String> = None;

        let mut resp = 'answer: {
            // 0. Envoy's `ext_authz` asks about a request by sending it below `/forward-auth`,
            // with its own method: judged as that request, never served.
            if rt
                .config
                .gateway
                .forward_auth
                .as_ref()
                .is_some_and(|p| p.kind == crate::config::ProxyKind::Envoy)
                && req.uri().path().starts_with("/forward-auth/")
            {
                // Boxed: held inline, a forward-auth answer's state (3.5 kB) would be room in
                // every request's future, which is copied whole when it is boxed.
                break 'answer Box::pin(crate::gateway::forward_auth::answer(&self.app, &req))
                    .await;
            }
            // 1. One canonical path, used for matching and for serving.
            let canonical = match canonical_path(&mut req, id) {
                Ok(p) => p,
                Err(refused) => break 'answer refused.answer(),
            };
            if server.api_req_logs {
                log_path.clone_from(&canonical);
            }
            // 2. CORS preflight (never auth-checked).
            if let (Some(cors), Some(o)) = (&server.cors, &origin) {
                if req.method() == Method::OPTIONS
                    && req
                        .headers()
                        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
                {
                    break 'answer preflight(cors, o);
                }
            }
            // 3. Body limit.
            if let Err(refused) = bound_body(&mut req, server.body_limit) {
                break 'answer refused.answer();
            }
            // 4. The decision. The forward-auth endpoint is itself a decision about another
            // request (named in its headers), so it is not judged on its own path.
            if rt.config.gateway.forward_auth.is_some()
                && canonical == crate::gateway::forward_auth::PATH
            {
                // Answered here for the methods the endpoint has (its OpenAPI operation documents
                // the headers it reads; extracting them there would only cost time). Any other
                // method goes to the router, and its 405.
                if matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
                    let answer = crate::gateway::forward_auth::answer(&self.app, &req);
                    break 'answer match tokio::time::timeout(server.timeout, Box::pin(answer)).await
                    {
                        Ok(r) => r,
                        Err(_) => error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
                    };
                }
                break 'answer self.serve(req, &canonical, server.timeout).await;
            }
            let (judged, provider) = self.judge(&rt, &mut req, &method, &canonical, id).await;
            if server.api_req_logs {
                log_provider = provider;
            }
            let (user, route) = match judged {
                Err(resp) => break 'answer resp,
                Ok(j) => j,
            };
            // 5. Request middleware, then serve, within the time limit.
            let selected =
                middleware::selected(&rt.config, &method, &canonical, route, user.is_some());
            if selected.is_empty() {
                break 'answer self.serve(req, &canonical, server.timeout).await;
            }
            // Run without a future when every instance answers at once (`on_request_now`); the
            // rest of the chain is boxed only when one waits, so that the middleware's state is
            // not held inline in every request's future (copied whole when it is boxed). The
            // request stays here and is served as without middleware.
            // The middleware change the request headers: taken out meanwhile, and put back
            // for the route (no copy).
            let mut headers = std::mem::take(req.headers_mut());
            let incoming = middleware::Incoming {
                method: &method,
                path: &canonical,
                query: req.uri().query(),
                client: req.remote_addr().as_socket_addr().map(|a| a.ip()),
                user: user.as_deref(),
                dry_run: false,
            };
            let (chain, answer) = match middleware::start(
                &rt,
                Some(self.app.metrics()),
                &selected,
                &incoming,
                &mut headers,
            ) {
                middleware::Started::Done(chain, answer) => (chain, answer),
                middleware::Started::Waiting(rest) => rest.await,
            };
            *req.headers_mut() = headers;
            let mut resp = match answer {
                Some(r) => r,
                None => self.serve(req, &canonical, server.timeout).await,
            };
            if chain.has_response_step() {
                Box::pin(middleware::on_response(
                    &rt,
                    self.app.metrics(),
                    chain,
                    &mut resp,
                ))
                .await;
            }
            resp
        };

        if let (Some(cors), Some(o)) = (&server.cors, &origin) {
            add_cors(&mut resp, cors, o);
        }
        resp.headers_mut()
            .insert(X_REQUEST_ID.clone(), id_value.clone());
        telemetry::record_status(resp.status().as_u16());
        self.app.metrics().observe_response(resp.status());
        if server.api_req_logs {
            tracing::info!(
                target: "portcullis::access",
                request_id = %id,
                method = %method,
                path = %log_path,
                status = resp.status().as_u16(),
                micros = started.map_or(0, |s| s.elapsed().as_micros() as u64),
                client = %log_client,
                user_agent = %log_agent,
                provider = log_provider.as_deref().unwrap_or("-"),
            );
        }
        Ok(resp)
    }
}

/// Why the gate refused a request before any decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Malformed {
    /// The path has no canonical form (400).
    Path,
    /// The declared body is over the limit (413).
    TooLarge,
    /// `Content-Length` is not a number (400).
    Length,
}

impl Malformed {
    fn answer(self) -> Response {
        match self {
            Malformed::Path => error_response(StatusCode::BAD_REQUEST, "Bad request path"),
            Malformed::TooLarge => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            }
            Malformed::Length => error_response(StatusCode::BAD_REQUEST, "Invalid Content-Length"),
        }
    }
}

/// Step 1 of the gate: the one canonical path the request is matched and served on; the request's
/// URI is rewritten to it. A path that has none is a 400.
fn canonical_path(req: &mut Request, id: &str) -> Result<String, Malformed> {
    let canonical = canonicalize(req.uri().path()).map_err(|e| {
        tracing::info!(request_id = %id, "bad request path: {e}");
        Malformed::Path
    })?;
    telemetry::record_path(&canonical);
    if canonical != req.uri().path() {
        let pq = match req.uri().query() {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical.clone(),
        };
        *req.uri_mut() = pq.parse::<Uri>().map_err(|_| Malformed::Path)?;
    }
    Ok(canonical)
}

/// Step 3 of the gate: a declared length over `limit` is refused at once (413); a body without a
/// declared length (HTTP/1 chunked, or HTTP/2 DATA frames without `content-length`) is cut off
/// with an error once `limit` has been read. A request without a body (a GET; in HTTP/2, one
/// whose HEADERS ended the stream) is never refused for lacking a length.
fn bound_body(req: &mut Request, limit: u64) -> Result<(), Malformed> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
    match declared {
        Some(Some(n)) if n > limit => Err(Malformed::TooLarge),
        Some(Some(_)) => Ok(()),
        Some(None) => Err(Malformed::Length),
        None => {
            // Bounded unless known to be empty (an HTTP/1 request without Transfer-Encoding, an
            // HTTP/2 one whose HEADERS ended the stream). Taking the body out to look costs
            // nothing: an empty body, which allocates nothing, stands in meanwhile.
            let body = req.take_body();
            req.set_body(if body.is_empty() {
                body
            } else {
                limit_body(body, limit)
            });
            Ok(())
        }
    }
}

/// The longest `User-Agent` the access log keeps.
const MAX_LOGGED_USER_AGENT: usize = 256;

/// The request's `User-Agent` for the access log: `-` when absent or not visible ASCII (so it
/// cannot break a log line), cut at [`MAX_LOGGED_USER_AGENT`] bytes.
fn access_user_agent(headers: &poem::http::HeaderMap) -> String {
    match headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        // `to_str` accepts visible ASCII, space and tab only: any byte is a char boundary.
        Some(ua) if !ua.is_empty() => ua
            .get(..ua.len().min(MAX_LOGGED_USER_AGENT))
            .unwrap_or("-")
            .to_string(),
        _ => "-".to_string(),
    }
}

impl<E: Endpoint> Gate<E> {
    /// Step 4 of the gate: the decision on `req` (method upper-cased, path canonical). Allowed,
    /// the user and the route hit go into the request's extensions; refused, the answer is
    /// returned. Either way, the provider that decided (for the access log).
    async fn judge(
        &self,
        rt: &Arc<crate::reload::Snapshot>,
        req: &mut Request,
        method: &str,
        canonical: &str,
        id: &str,
    ) -> (Result<Judged, Response>, Option<String>) {
        let decided_at = Instant::now();
        let decision = {
            let parts = RequestParts {
                method,
                path: canonical,
                headers: req.headers(),
                query: req.uri().query(),
                host: req
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .or_else(|| req.uri().authority().map(|a| a.as_str())),
                now: decided_at,
            };
            // Boxed: held inline, the decision's state would make the whole request future
            // that much larger, and that future is copied whole when it is boxed.
            Box::pin(decide(&rt.policy(), &parts)).await
        };
        self.app
            .metrics()
            .observe_decision(&decision, decided_at.elapsed());
        match decision.result {
            Err(d) => {
                match &d {
                    Denial::Internal(r) | Denial::Unavailable(r) => {
                        tracing::warn!(request_id = %id, path = %canonical, reason = %r, "request refused")
                    }
                    _ => {
                        tracing::info!(request_id = %id, path = %canonical, reason = %decision.trace.reason, "request refused")
                    }
                }
                (Err(denial_response(&d)), decision.trace.provider)
            }
            Ok(user) => {
                if let Some(u) = &user {
                    req.extensions_mut().insert(u.clone());
                }
                if let Some(index) = decision.trace.route {
                    req.extensions_mut()
                        .insert(crate::gateway::proxy::RouteHit {
                            runtime: rt.clone(),
                            index,
                        });
                }
                (Ok((user, decision.trace.route)), decision.trace.provider)
            }
        }
    }

    /// Calls the inner endpoint within `timeout`; errors become JSON error bodies. `path` (the
    /// canonical one the request is served on) names the `Allow` methods of a 405.
    async fn serve(&self, req: Request, path: &str, timeout: std::time::Duration) -> Response {
        // Boxed, like the decision below: the inner future is large, and every layer that holds
        // it inline is copied whole when the request future is boxed.
        match tokio::time::timeout(timeout, Box::pin(self.inner.call(req))).await {
            Err(_) => error_response(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
            Ok(Ok(r)) => r.into_response(),
            Ok(Err(e)) => {
                let status = e.status();
                let msg = status.canonical_reason().unwrap_or("Error");
                let mut r = error_response(status, msg);
                // RFC 9110: a 405 lists the methods the resource has.
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allow) = (self.allow)(path) {
                        r.headers_mut().insert(header::ALLOW, allow);
                    }
                }
                r
            }
        }
    }
}

/// A body that fails with an error once more than `limit` bytes have been read.
fn limit_body(body: poem::Body, limit: u64) -> poem::Body {
    use futures_util::StreamExt as _;
    let mut seen = 0u64;
    let stream = body.into_bytes_stream().map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > limit {
            Err(std::io::Error::other(BodyTooLarge))
        } else {
            Ok(chunk)
        }
    });
    poem::Body::from_bytes_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_24_hex_digits_and_a_valid_incoming_one_is_kept() {
        let plain = Request::builder().finish();
        let a = request_id(&plain);
        let b = request_id(&plain);
        assert_eq!(a.len(), 24);
        assert!(a
            .as_bytes()
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        let given = Request::builder()
            .header("x-request-id", "abc-123_X")
            .finish();
        assert_eq!(request_id(&given), "abc-123_X");
        let bad = Request::builder()
            .header("x-request-id", "no spaces")
            .finish();
        assert_eq!(request_id(&bad).len(), 24);
    }
}
