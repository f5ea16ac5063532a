//! The HTTP server: one gate in front of every route (canonical path, CORS, body limit, auth
//! decision, timeout, access log), the built-in API, OpenAPI and Swagger UI.

use std::{borrow::Cow, net::SocketAddr, sync::Arc, time::Instant};

use bytes::Bytes;

use poem::{
    http::{header, HeaderValue, Method, StatusCode, Uri},
    listener::{Acceptor, Listener, TcpListener},
    Endpoint, IntoResponse, Request, Response,
};
use poem_openapi::OpenApiService;
use tracing::Instrument as _;

use crate::{
    api::{Api, Apis, DocsApi, GatewayApi},
    app::App,
    auth::{decide, Denial, RequestParts},
    config::CorsConfig,
    matching::canonicalize,
    observe::telemetry,
};

/// A JSON error answer with the seed's body shape.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::json!({ "error": message }).to_string())
}

/// The answer to a refused request (status, fixed body, `WWW-Authenticate` on 401).
pub fn denial_response(d: &Denial) -> Response {
    match d {
        Denial::NoToken => {
            let mut r = error_response(StatusCode::UNAUTHORIZED, "Authentication required");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
            r
        }
        Denial::InvalidToken(_) => {
            let mut r = error_response(StatusCode::UNAUTHORIZED, "Invalid or expired token");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            );
            r
        }
        Denial::Forbidden(_) => error_response(StatusCode::FORBIDDEN, "Access denied"),
        Denial::Unavailable(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "Authentication service unavailable",
        ),
        Denial::Internal(_) => {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// The gate in front of every route.
pub struct Gate<E> {
    inner: E,
    app: Arc<App>,
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
                break 'answer crate::gateway::forward_auth::answer(&self.app, &req).await;
            }
            // 1. One canonical path, used for matching and for serving.
            let canonical = match canonicalize(req.uri().path()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(request_id = %id, "bad request path: {e}");
                    break 'answer error_response(StatusCode::BAD_REQUEST, "Bad request path");
                }
            };
            if server.api_req_logs {
                log_path.clone_from(&canonical);
            }
            telemetry::record_path(&canonical);
            if canonical != req.uri().path() {
                let pq = match req.uri().query() {
                    Some(q) => format!("{canonical}?{q}"),
                    None => canonical.clone(),
                };
                match pq.parse::<Uri>() {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(_) => {
                        break 'answer error_response(StatusCode::BAD_REQUEST, "Bad request path")
                    }
                }
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
            // 3. Body limit: a declared length over the limit is refused at once; a body without a
            // declared length (HTTP/1 chunked, or HTTP/2 DATA frames without `content-length`) is
            // cut off with an error once the limit has been read. A request without a body (a GET;
            // in HTTP/2, one whose HEADERS ended the stream) is never refused for lacking a length.
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()));
            match declared {
                Some(Some(n)) if n > server.body_limit => {
                    break 'answer error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request body too large",
                    )
                }
                Some(Some(_)) => {}
                Some(None) => {
                    break 'answer error_response(StatusCode::BAD_REQUEST, "Invalid Content-Length")
                }
                None => {
                    // Bounded unless known to be empty (an HTTP/1 request without Transfer-Encoding,
                    // an HTTP/2 one whose HEADERS ended the stream). Taking the body out to look
                    // costs nothing: an empty body, which allocates nothing, stands in meanwhile.
                    let body = req.take_body();
                    req.set_body(if body.is_empty() {
                        body
                    } else {
                        limit_body(body, server.body_limit)
                    });
                }
            }
            // 4. The decision. The forward-auth endpoint is itself a decision about another
            // request (named in its headers), so it is not judged on its own path.
            if rt.config.gateway.forward_auth.is_some()
                && canonical == crate::gateway::forward_auth::PATH
            {
                break 'answer self.serve(req, &canonical, server.timeout).await;
            }
            let decided_at = Instant::now();
            let decision = {
                let parts = RequestParts {
                    method: &method,
                    path: &canonical,
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
                Box::pin(decide(&rt, &parts)).await
            };
            self.app
                .metrics()
                .observe_decision(&decision, decided_at.elapsed());
            if server.api_req_logs {
                log_provider.clone_from(&decision.trace.provider);
            }
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
                    break 'answer denial_response(&d);
                }
                Ok(user) => {
                    if let Some(u) = user {
                        req.extensions_mut().insert(u);
                    }
                    if let Some(index) = decision.trace.route {
                        req.extensions_mut()
                            .insert(crate::gateway::proxy::RouteHit {
                                runtime: rt.clone(),
                                index,
                            });
                    }
                }
            }
            // 5. Serve, within the time limit.
            self.serve(req, &canonical, server.timeout).await
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
                    if let Some(allow) = crate::api::allow(path) {
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

/// Streams a client may open at once on one HTTP/2 connection (poem's default is unbounded).
pub const HTTP2_MAX_STREAMS: u32 = 128;

/// The error a body without a declared length fails with past `server.body_size_limit`.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body too large")
    }
}

impl std::error::Error for BodyTooLarge {}

impl BodyTooLarge {
    /// Whether `err`, or an error it wraps, is a body cut off at the limit.
    pub fn caused(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(err);
        while let Some(e) = next {
            if e.is::<BodyTooLarge>()
                || e.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<BodyTooLarge>())
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

fn allowed_origin<'a>(cors: &CorsConfig, origin: &'a str) -> Option<&'a str> {
    if cors.origins.iter().any(|o| o == "*") {
        Some(if cors.credentials { origin } else { "*" })
    } else if cors.origins.iter().any(|o| o == origin) {
        Some(origin)
    } else {
        None
    }
}

fn preflight(cors: &CorsConfig, origin: &str) -> Response {
    let mut r = Response::builder().status(StatusCode::NO_CONTENT).finish();
    if allowed_origin(cors, origin).is_some() {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&cors.allow_methods.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cors.allow_headers.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cors.max_age.to_string()) {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
        }
    }
    r
}

fn add_cors(resp: &mut Response, cors: &CorsConfig, origin: &str) {
    let Some(allow) = allowed_origin(cors, origin) else {
        return;
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if allow != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", ")) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

/// The OpenAPI service for the built-in routes.
pub fn openapi(app: Arc<App>) -> OpenApiService<Apis, ()> {
    let apis = (Api { app: app.clone() }, GatewayApi { app }, DocsApi);
    OpenApiService::new(apis, "Portcullis", env!("CARGO_PKG_VERSION"))
        .description(
            "An authenticating server whose identity providers are run-time-loaded plugins.",
        )
        .server("/")
}

/// The whole endpoint: routes behind the gate.
pub fn endpoint(app: Arc<App>) -> impl Endpoint<Output = Response> {
    let service = openapi(app.clone());
    // The spec as served (operation ids, the token schemes of the config at start); the UI page
    // embeds poem-openapi's own text of it, which is replaced by that.
    let raw = service.spec();
    let spec = crate::api::finish_spec(&raw, &app.snapshot().config.auth.token);
    let ui = service.swagger_ui_html().replacen(&raw, &spec, 1);
    let site = Site {
        spec: Document::new(spec),
        ui: Document::new(ui),
        api: poem::IntoEndpoint::into_endpoint(service),
        app: app.clone(),
    };
    let inner = crate::gateway::proxy::Upstreams::new(site, app.clone());
    // Its output is already a response: no `map_to_response` layer (poem's server adds its own).
    Gate { inner, app }
}

/// The three documents, by exact path, then the API itself. Matched here rather than by a
/// `Route` around the API: that second router and the boxed future it adds were a sixth of the
/// instructions of a public request. (`api::DocsApi` documents them in the spec.)
struct Site<A> {
    api: A,
    app: Arc<App>,
    spec: Document,
    ui: Document,
}

/// A fixed document, and its gzip form made on first ask (the Swagger UI page is 1.6 MB; the
/// compressed form is about a quarter of it).
struct Document {
    plain: Bytes,
    gzip: tokio::sync::OnceCell<Option<Bytes>>,
}

impl Document {
    fn new(text: String) -> Self {
        Document {
            plain: Bytes::from(text),
            gzip: tokio::sync::OnceCell::new(),
        }
    }

    /// The body, compressed when `accept` (the request's `Accept-Encoding`) takes gzip.
    async fn response(&self, content_type: &str, accept: Option<&HeaderValue>) -> Response {
        let builder = Response::builder()
            .content_type(content_type)
            .header(header::VARY, "accept-encoding");
        if accept.is_some_and(accepts_gzip) {
            let plain = self.plain.clone();
            // Compressed off the async threads, once; a failure serves the plain text.
            let gz = self
                .gzip
                .get_or_init(|| async move {
                    tokio::task::spawn_blocking(move || gzip(&plain))
                        .await
                        .ok()
                        .flatten()
                })
                .await;
            if let Some(gz) = gz {
                return builder
                    .header(header::CONTENT_ENCODING, "gzip")
                    .body(gz.clone());
            }
        }
        builder.body(self.plain.clone())
    }
}

fn gzip(data: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// Whether an `Accept-Encoding` value takes gzip (RFC 9110 §12.5.3): `gzip`, `x-gzip` or `*`
/// with a weight above zero, the named coding's weight winning over `*`'s.
fn accepts_gzip(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let (mut named, mut any) = (None, None);
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok());
        let Some(weight) = weight else { continue };
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            named = Some(weight);
        } else if coding == "*" {
            any = Some(weight);
        }
    }
    named.or(any).is_some_and(|q| q > 0.0)
}

impl<A: Endpoint> Endpoint for Site<A> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let server = &self.app.snapshot().config.server;
        let (on, document) = match req.uri().path() {
            "/openapi.json" => (server.openapi_docs, Some((&self.spec, "application/json"))),
            "/swagger-ui" => (
                server.swagger_ui,
                Some((&self.ui, "text/html; charset=utf-8")),
            ),
            "/metrics" => (server.metrics.on_main_listener(), None),
            _ => return self.api.call(req).await.map(IntoResponse::into_response),
        };
        if !on {
            return Ok(error_response(StatusCode::NOT_FOUND, "Not Found"));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(r);
        }
        Ok(match document {
            Some((doc, content_type)) => {
                doc.response(content_type, req.headers().get(header::ACCEPT_ENCODING))
                    .await
            }
            None => Response::builder()
                .content_type(crate::observe::metrics::CONTENT_TYPE)
                .body(self.app.metrics().render()),
        })
    }
}

/// A listener that is bound and about to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The main listener, and whether it is TLS.
    Main {
        /// The address bound (port 0 picks a free port).
        addr: SocketAddr,
        /// Whether it serves https.
        tls: bool,
    },
    /// The separate metrics listener (`server.metrics.listen`), plain HTTP.
    Metrics(SocketAddr),
}

/// Binds the configured address (TLS when `server.https` is set) and, when
/// `server.metrics.listen` is set, the metrics address first; calls `on_bound` for each with the
/// address actually bound (port 0 picks a free port), then serves until `shutdown` completes,
/// draining in-flight requests for up to 30 s.
pub async fn serve(
    app: Arc<App>,
    mut on_bound: impl FnMut(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let rt = app.snapshot();
    let s = &rt.config.server;
    let drain = Some(std::time::Duration::from_secs(30));
    // The metrics listener stops once the main one has (for whatever reason).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = match s.metrics.listen() {
        Some(addr) => {
            let acceptor = crate::http::listen::conn_guard::GuardedAcceptor::new(
                TcpListener::bind(addr.to_string()).into_acceptor().await?,
                app.clone(),
            );
            on_bound(Bound::Metrics(first_addr(&acceptor)?));
            let mut stop = stop_rx;
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let ep = MetricsOnly { app: app.clone() };
            Some(tokio::spawn(
                poem::Server::new_with_acceptor(acceptor)
                    .run_with_graceful_shutdown(ep, stopped, drain),
            ))
        }
        None => None,
    };
    let tcp = TcpListener::bind(format!("{}:{}", s.host, s.port));
    let served = match &s.https {
        None => {
            let acceptor = crate::http::listen::conn_guard::GuardedAcceptor::new(
                tcp.into_acceptor().await?,
                app.clone(),
            );
            on_bound(Bound::Main {
                addr: first_addr(&acceptor)?,
                tls: false,
            });
            poem::Server::new_with_acceptor(acceptor)
                .http2_max_concurrent_streams(HTTP2_MAX_STREAMS)
                .run_with_graceful_shutdown(endpoint(app.clone()), shutdown, drain)
                .await
        }
        Some(_) => {
            let state = app.tls().ok_or_else(|| {
                std::io::Error::other("server.https is set but no TLS was loaded")
            })?;
            let acceptor = crate::http::listen::tls::ReloadingTlsAcceptor::new(
                tcp.into_acceptor().await?,
                state,
            );
            // Above TLS, so the guard sees plain HTTP (and a stalled handshake is cut off too).
            let acceptor =
                crate::http::listen::conn_guard::GuardedAcceptor::new(acceptor, app.clone());
            on_bound(Bound::Main {
                addr: first_addr(&acceptor)?,
                tls: true,
            });
            poem::Server::new_with_acceptor(acceptor)
                .http2_max_concurrent_streams(HTTP2_MAX_STREAMS)
                .run_with_graceful_shutdown(endpoint(app.clone()), shutdown, drain)
                .await
        }
    };
    let _ = stop_tx.send(true);
    if let Some(task) = metrics {
        match task.await {
            Ok(r) => r?,
            Err(e) => return Err(std::io::Error::other(format!("metrics listener: {e}"))),
        }
    }
    served
}

/// The separate metrics listener's only route: `GET /metrics` (and `HEAD`); everything else 404.
/// No gate: it is meant for a private address that only the scraper can reach.
struct MetricsOnly {
    app: Arc<App>,
}

impl Endpoint for MetricsOnly {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path() != "/metrics" {
            return Ok(error_response(StatusCode::NOT_FOUND, "Not Found"));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
            ));
        }
        Ok(Response::builder()
            .content_type(crate::observe::metrics::CONTENT_TYPE)
            .body(self.app.metrics().render()))
    }
}

fn first_addr(a: &impl Acceptor) -> std::io::Result<SocketAddr> {
    a.local_addr()
        .into_iter()
        .find_map(|addr| addr.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("listener has no socket address"))
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
