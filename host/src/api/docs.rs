//! The documents the server serves about itself: the OpenAPI spec and the Swagger UI, gzipped
//! once on first ask, and the whole route tree they describe.

use std::sync::Arc;

use bytes::Bytes;
use poem::{
    http::{header, HeaderValue, Method, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};
use poem_openapi::OpenApiService;

use super::{Api, Apis, DocsApi, GatewayApi};
use crate::{app::App, gateway::gate::Gate, http::answer::error_response};

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
    Gate::new(inner, app, super::allow)
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
