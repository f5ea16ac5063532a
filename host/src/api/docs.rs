//! The documents the server serves about itself: the OpenAPI spec and the Swagger UI, made on
//! first ask (a server that never serves them never builds the 1.6 MB page), gzipped once on
//! first ask, and the whole route tree they describe.

use std::{
    collections::HashMap,
    marker::PhantomData,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use poem::{
    endpoint::BoxEndpoint,
    http::{header, HeaderValue, Method, StatusCode},
    Endpoint, EndpointExt as _, IntoResponse, Request, Response,
};
use poem_openapi::{
    registry::{MetaApi, Registry},
    OpenApi, OpenApiService,
};

use super::{Api, Apis, DocsApi, GatewayApi};
use crate::{
    app::App, config::TokenConfig, gateway::gate::Gate, http::answer::error_response,
    reload::route_docs::RouteDocuments,
};

fn builtin(app: Arc<App>) -> Apis {
    (Api { app: app.clone() }, GatewayApi { app }, DocsApi)
}

/// What the built-in API's document says of itself.
fn builtin_info() -> DocumentInfo {
    DocumentInfo {
        title: "Portcullis".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: Some(
            "An authenticating server whose identity providers are run-time-loaded plugins.".into(),
        ),
    }
}

/// The service for `api` as the documents describe it: the router and the documents are made
/// from the same settings.
fn service<X>(api: X, info: &DocumentInfo) -> OpenApiService<X, ()> {
    let mut service = OpenApiService::new(api, &info.title, &info.version).server("/");
    if let Some(d) = &info.description {
        service = service.description(d);
    }
    service
}

/// The whole endpoint: routes behind the gate.
pub fn endpoint(app: Arc<App>) -> impl Endpoint<Output = Response> {
    let info = builtin_info();
    let documents = Documents::of::<Apis>(app.snapshot().config.auth.token.clone(), info.clone());
    let api = poem::IntoEndpoint::into_endpoint(service(builtin(app.clone()), &info));
    gated_site(app, documents, api, Arc::new(super::allow))
}

/// What an embedding program's document says of itself.
#[derive(Debug, Clone)]
pub struct DocumentInfo {
    /// The title.
    pub title: String,
    /// The API's version.
    pub version: String,
    /// What it is (Markdown).
    pub description: Option<String>,
}

/// The whole endpoint of an embedding program: the built-in routes and `extra` (its own
/// operations) in one document and one router, behind the gate; with `routes` (its plain Poem
/// endpoints) for the paths neither API has. Refused when `extra` declares an operation the
/// built-in API has (same method and path) or repeats an operation id.
pub fn endpoint_with<T: OpenApi + 'static>(
    app: Arc<App>,
    extra: T,
    info: &DocumentInfo,
    routes: Option<poem::Route>,
) -> Result<impl Endpoint<Output = Response>, String> {
    check_operations::<T>()?;
    let allow = allow_of::<(Apis, T)>();
    let token = app.snapshot().config.auth.token.clone();
    let documents = Documents::of::<(Apis, T)>(token, info.clone());
    let api =
        poem::IntoEndpoint::into_endpoint(service((builtin(app.clone()), extra), info)).boxed();
    let api = match routes {
        None => api,
        // The user's routes take the paths they name; every other path is the APIs'.
        Some(r) => r
            .try_nest("/", api)
            .map_err(|e| format!("the routes cannot take the APIs beside them: {e}"))?
            .boxed(),
    };
    Ok(gated_site(app, documents, api, allow))
}

/// An API's operations and schemas without its handlers: what the documents are made from, on
/// first ask, while the API itself went into the router.
struct Described<A>(PhantomData<fn() -> A>);

impl<A: OpenApi> OpenApi for Described<A> {
    fn meta() -> Vec<MetaApi> {
        A::meta()
    }

    fn register(registry: &mut Registry) {
        A::register(registry);
    }

    fn add_routes(self, _: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {}
}

/// Makes one of the two documents: the spec (`false`) or the Swagger UI page (`true`).
type Make = Box<dyn Fn(bool) -> String + Send + Sync>;

/// The spec as served (operation ids, the token schemes of the config at start) and the Swagger
/// UI page, which embeds poem-openapi's own text of the spec, replaced by that: each made on its
/// first ask, then kept.
struct Documents {
    make: Make,
    spec: OnceLock<Document>,
    ui: OnceLock<Document>,
}

impl Documents {
    /// The documents of the API `A` described by `info`, with the token schemes of `token`.
    fn of<A: OpenApi + 'static>(token: TokenConfig, info: DocumentInfo) -> Documents {
        let make: Make = Box::new(move |ui| {
            let service = service(Described::<A>(PhantomData), &info);
            let raw = service.spec();
            let spec = crate::api::finish_spec(&raw, &token);
            if ui {
                service.swagger_ui_html().replacen(&raw, &spec, 1)
            } else {
                spec
            }
        });
        Documents {
            make,
            spec: OnceLock::new(),
            ui: OnceLock::new(),
        }
    }

    /// The spec, made now if it was not yet.
    fn spec(&self) -> &Document {
        self.spec.get_or_init(|| Document::new((self.make)(false)))
    }

    /// The Swagger UI page, made now if it was not yet.
    fn ui(&self) -> &Document {
        self.ui.get_or_init(|| Document::new((self.make)(true)))
    }

    /// Whether either document was made.
    #[cfg(test)]
    fn made(&self) -> (bool, bool) {
        (self.spec.get().is_some(), self.ui.get().is_some())
    }
}

/// The gate in front of the documents, the proxied routes and `api`.
fn gated_site<E: Endpoint + 'static>(
    app: Arc<App>,
    documents: Documents,
    api: E,
    allow: crate::gateway::gate::Allow,
) -> impl Endpoint<Output = Response> {
    let site = Site {
        documents,
        merged: std::sync::Mutex::new(None),
        api,
        app: app.clone(),
    };
    let inner = crate::gateway::proxy::Upstreams::new(site, app.clone());
    // Its output is already a response: no `map_to_response` layer (poem's server adds its own).
    Gate::new(inner, app, allow)
}

/// An embedding program's operations against the built-in ones: no method and path twice (one
/// would silently replace the other), no operation id twice and no schema name of two types
/// (poem-openapi panics on them).
fn check_operations<T: OpenApi>() -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for (api, own) in <Apis as OpenApi>::meta()
        .into_iter()
        .map(|a| (a, true))
        .chain(T::meta().into_iter().map(|a| (a, false)))
    {
        for path in api.paths {
            for op in path.operations {
                if !seen.insert((op.method.clone(), path.path.clone())) {
                    problems.push(if own {
                        format!("{} {} is declared twice", op.method, path.path)
                    } else {
                        format!(
                            "{} {} is already an operation of Portcullis (or declared twice)",
                            op.method, path.path
                        )
                    });
                }
                if let Some(id) = op.operation_id {
                    if !ids.insert(id) {
                        problems.push(format!("operation id `{id}` is declared twice"));
                    }
                }
            }
        }
    }
    // poem-openapi panics on two types of one schema name.
    let (mut ours, mut theirs) = (Registry::new(), Registry::new());
    <Apis as OpenApi>::register(&mut ours);
    T::register(&mut theirs);
    for (name, schema) in &theirs.schemas {
        if let Some(own) = ours.schemas.get(name) {
            if own.rust_typename.is_some() && own.rust_typename != schema.rust_typename {
                problems.push(format!(
                    "the schema name `{name}` is Portcullis's: rename the program's type or its \
                     schema (#[oai(rename = \"...\")])"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The `Allow` header for a 405, from the methods `A` declares per path (and `HEAD` wherever
/// `GET` is), as [`super::allow`] does for the built-in API alone.
fn allow_of<A: OpenApi>() -> crate::gateway::gate::Allow {
    let mut by_path: HashMap<String, Vec<String>> = HashMap::new();
    for api in A::meta() {
        for p in api.paths {
            let methods = by_path.entry(p.path).or_default();
            for op in p.operations {
                let mut add = |m: &str| {
                    if !methods.iter().any(|k| k == m) {
                        methods.push(m.to_string());
                    }
                };
                add(op.method.as_str());
                if op.method == Method::GET {
                    add("HEAD");
                }
            }
        }
    }
    let values: HashMap<String, HeaderValue> = by_path
        .into_iter()
        .filter_map(|(path, methods)| {
            HeaderValue::from_str(&methods.join(", "))
                .ok()
                .map(|v| (path, v))
        })
        .collect();
    Arc::new(move |path: &str| values.get(path).cloned())
}

/// The three documents, by exact path, then the API itself. Matched here rather than by a
/// `Route` around the API: that second router and the boxed future it adds were a sixth of the
/// instructions of a public request. (`api::DocsApi` documents them in the spec.)
struct Site<A> {
    api: A,
    app: Arc<App>,
    documents: Documents,
    /// The documents with the routes' upstream documents merged in, and the snapshot's
    /// documents they were made from: made on the first ask after a reload that read any.
    merged: std::sync::Mutex<Option<(Arc<RouteDocuments>, Merged)>>,
}

/// The spec of one snapshot's route documents, and its Swagger UI page, made on its first ask.
struct MergedDocuments {
    spec: Document,
    ui: OnceLock<Option<Document>>,
}

type Merged = Arc<MergedDocuments>;

impl MergedDocuments {
    /// The page: the built-in one with the merged spec in place of its own (`None` when the
    /// built-in page does not hold its spec, which it always does).
    fn ui(&self, documents: &Documents) -> Option<&Document> {
        self.ui
            .get_or_init(|| {
                let base_spec = std::str::from_utf8(&documents.spec().plain).ok()?;
                let base_ui = std::str::from_utf8(&documents.ui().plain).ok()?;
                let text = std::str::from_utf8(&self.spec.plain).ok()?;
                // The page embeds the spec in a script element: the upstreams' text must not
                // end it.
                let (before, after) = base_ui.split_once(base_spec)?;
                let ui = format!("{before}{}{after}", super::route_docs::script_safe(text));
                Some(Document::new(ui))
            })
            .as_ref()
    }
}

impl<A> Site<A> {
    /// The documents with `docs` merged in (`None`: the built-in ones serve).
    fn merged(&self, docs: &Arc<RouteDocuments>) -> Option<Merged> {
        if docs.is_empty() {
            return None;
        }
        let mut cache = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made_from, merged)) = cache.as_ref() {
            if Arc::ptr_eq(made_from, docs) {
                return Some(merged.clone());
            }
        }
        let spec = std::str::from_utf8(&self.documents.spec().plain).ok()?;
        let base: serde_json::Value = serde_json::from_str(spec).ok()?;
        let text = serde_json::to_string_pretty(&super::route_docs::merge(&base, docs)).ok()?;
        let merged = Arc::new(MergedDocuments {
            spec: Document::new(text),
            ui: OnceLock::new(),
        });
        *cache = Some((docs.clone(), merged.clone()));
        Some(merged)
    }
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
        let rt = self.app.snapshot();
        let server = &rt.config.server;
        let (on, document) = match req.uri().path() {
            "/openapi.json" => (server.openapi_docs, Some(false)),
            "/swagger-ui" => (server.swagger_ui, Some(true)),
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
            Some(ui) => {
                let merged = self.merged(&rt.route_docs);
                let docs = &self.documents;
                let (doc, content_type) = match (ui, &merged) {
                    (true, Some(m)) => (
                        m.ui(docs).unwrap_or_else(|| docs.ui()),
                        "text/html; charset=utf-8",
                    ),
                    (true, None) => (docs.ui(), "text/html; charset=utf-8"),
                    (false, Some(m)) => (&m.spec, "application/json"),
                    (false, None) => (docs.spec(), "application/json"),
                };
                doc.response(content_type, req.headers().get(header::ACCEPT_ENCODING))
                    .await
            }
            None => Response::builder()
                .content_type(crate::observe::metrics::CONTENT_TYPE)
                .body(self.app.metrics().render()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use poem_openapi::{payload::Json, payload::PlainText, Object, OpenApi};

    use super::{builtin_info, check_operations, Documents};
    use crate::{api::Apis, config::TokenConfig};

    struct Clean;

    #[OpenApi]
    impl Clean {
        /// A path of its own, and a method of its own on a path Portcullis has.
        #[oai(path = "/api/notes", method = "get")]
        async fn notes(&self) -> PlainText<&'static str> {
            PlainText("")
        }

        #[oai(path = "/health", method = "post")]
        async fn poke(&self) -> PlainText<&'static str> {
            PlainText("")
        }
    }

    struct Clash;

    #[OpenApi]
    impl Clash {
        #[oai(path = "/health", method = "get")]
        async fn health(&self) -> PlainText<&'static str> {
            PlainText("")
        }
    }

    /// The name of Portcullis's error body.
    #[derive(Object)]
    struct ErrorBody {
        message: String,
    }

    struct SameSchemaName;

    #[OpenApi]
    impl SameSchemaName {
        #[oai(path = "/api/oops", method = "get")]
        async fn oops(&self) -> Json<ErrorBody> {
            Json(ErrorBody {
                message: String::new(),
            })
        }
    }

    /// The token looked for in the `Authorization` header and in `access_token` queries.
    fn token_config() -> TokenConfig {
        TokenConfig {
            header: "authorization".into(),
            header_name: poem::http::header::AUTHORIZATION,
            query: Some("access_token".into()),
            cookie: None,
        }
    }

    #[test]
    fn the_documents_are_made_on_first_ask_each_and_kept() {
        let docs = Documents::of::<Apis>(token_config(), builtin_info());
        // A server that never serves them never makes them.
        assert_eq!(docs.made(), (false, false));

        let spec = std::str::from_utf8(&docs.spec().plain).unwrap().to_string();
        assert_eq!(
            docs.made(),
            (true, false),
            "the spec alone does not make the page"
        );
        let doc: serde_json::Value = serde_json::from_str(&spec).unwrap();
        assert_eq!(doc["info"]["title"], "Portcullis");
        assert_eq!(doc["servers"][0]["url"], "/");
        // Finished: operation ids, and the query scheme named after the config's parameter.
        assert!(
            doc["paths"]["/health"]["get"]["operationId"].is_string(),
            "{spec}"
        );
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert!(
            schemes
                .values()
                .any(|s| s["in"] == "query" && s["name"] == "access_token"),
            "{schemes:?}"
        );
        assert!(
            !schemes.values().any(|s| s["in"] == "cookie"),
            "{schemes:?}"
        );

        let page = std::str::from_utf8(&docs.ui().plain).unwrap().to_string();
        assert_eq!(docs.made(), (true, true));
        assert!(page.contains("SwaggerUIBundle"));
        // The page embeds the finished spec, not poem-openapi's own text of it.
        assert!(page.contains(&spec));
        // Kept: the same bytes on the next ask.
        assert_eq!(docs.spec().plain.as_ptr(), docs.spec().plain.as_ptr());
        assert_eq!(std::str::from_utf8(&docs.ui().plain).unwrap(), page);
    }

    #[test]
    fn a_program_api_that_would_replace_or_break_the_built_in_one_is_refused() {
        assert_eq!(check_operations::<Clean>(), Ok(()));
        let e = check_operations::<Clash>().unwrap_err();
        assert!(e.contains("GET /health"), "{e}");
        let e = check_operations::<SameSchemaName>().unwrap_err();
        assert!(e.contains("`ErrorBody`"), "{e}");
        // Two copies of one API: every operation twice.
        let e = check_operations::<(Clean, Clean)>().unwrap_err();
        assert!(e.contains("GET /api/notes"), "{e}");
    }
}
