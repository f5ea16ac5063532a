//! The built-in API, documented with poem-openapi: every route, the bearer security scheme and
//! every error body appear in `/openapi.json`.

use std::sync::Arc;

use std::{collections::HashMap, sync::LazyLock};

use poem::{
    http::{HeaderValue, Method},
    IntoResponse, Request, Result,
};
use poem_openapi::{
    param::Header,
    payload::Json,
    registry::{MetaResponses, MetaSchema, MetaSchemaRef, MetaSecurityScheme, Registry},
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
};

use crate::{
    app::{App, ReloadStatus},
    auth::AuthUser,
    config::TokenConfig,
    reload::snapshot::PluginFile,
    reload::{ReloadError, ReloadErrorKind, ReloadOutcome, ReloadResult},
};

/// The security scheme of a token in the query parameter `auth.token.query` names.
const QUERY_SCHEME: &str = "queryToken";
/// The security scheme of a token in the cookie `auth.token.cookie` names.
const COOKIE_SCHEME: &str = "cookieToken";

/// The error body every failure uses (the seed's shape).
#[derive(Object, Debug, Clone)]
pub struct ErrorBody {
    /// What went wrong: `Authentication required`, `Invalid or expired token`, `Access denied`,
    /// `Authentication service unavailable`, `Request body too large`, `Internal Server Error`...
    pub error: String,
}

/// The caller, as established by the auth gate in front of every route. Declaring it on an
/// operation documents the bearer security scheme for it.
pub struct Caller(pub Arc<AuthUser>);

impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            "bearerAuth",
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "`Authorization: Bearer <token>` (or the header `auth.token.header` names), \
                     checked by the provider the config names.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("JWT"),
                flows: None,
                openid_connect_url: None,
            },
        );
        // Named after the config when the spec is finished (`finish_spec`), and left out of it
        // when the config does not opt in.
        for (scheme, key_in, description) in [
            (
                QUERY_SCHEME,
                "query",
                "The token in the query parameter `auth.token.query` names (opt-in; read only \
                 when no header token is sent; never forwarded upstream).",
            ),
            (
                COOKIE_SCHEME,
                "cookie",
                "The token in the cookie `auth.token.cookie` names (opt-in; read only when \
                 neither a header nor a query token is sent).",
            ),
        ] {
            registry.create_security_scheme(
                scheme,
                MetaSecurityScheme {
                    ty: "apiKey",
                    description: Some(description),
                    name: Some(scheme),
                    key_in: Some(key_in),
                    scheme: None,
                    bearer_format: None,
                    flows: None,
                    openid_connect_url: None,
                },
            );
        }
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["bearerAuth", QUERY_SCHEME, COOKIE_SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut poem::RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> Result<Self> {
        // The gate runs before every route; a protected route without a user is a wiring bug, and
        // it fails closed.
        request
            .extensions()
            .get::<Arc<AuthUser>>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::UNAUTHORIZED))
    }
}

/// `GET /health`.
#[derive(Object)]
struct Health {
    /// Always true while the server answers.
    success: bool,
}

/// `GET /ready`.
#[derive(Object)]
struct Readiness {
    /// Whether the served snapshot can answer requests.
    ready: bool,
    /// Why not, one line each (empty when ready).
    problems: Vec<String>,
}

/// The caller's identity.
#[derive(Object)]
struct Me {
    /// The provider instance that authenticated the caller.
    provider: String,
    /// The caller's claims, as the provider returned them.
    user: serde_json::Value,
}

/// A plugin file in the plugins folder.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct PluginInfo {
    /// The file.
    file: String,
    /// Name from the manifest (absent when the file failed to load): the provider's, or for a
    /// library that exports only middleware, the middleware's.
    name: Option<String>,
    /// What the library exports: `provider`, `middleware` or both (absent when it failed to
    /// load).
    kinds: Option<Vec<String>>,
    /// The name `middleware:` instances use, when the library exports a middleware.
    middleware_name: Option<String>,
    /// The plugin's version.
    version: Option<String>,
    /// The plugin ABI version (`major.minor`) it was built for.
    abi_version: Option<String>,
    /// What it does.
    description: Option<String>,
    /// SHA-256 of the content.
    hash: Option<String>,
    /// Unix seconds when it was mapped.
    loaded_at: Option<u64>,
    /// Why it could not be loaded.
    error: Option<String>,
}

/// A provider instance.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct ProviderInfo {
    /// Instance name.
    name: String,
    /// Plugin name.
    plugin: String,
    /// Plugin version.
    plugin_version: String,
    /// Plugin file hash.
    plugin_hash: String,
    /// Issuers it accepts (empty = unspecified).
    issuers: Vec<String>,
    /// Whether the YAML overrides the plugin's authorize.
    authorize_overridden: bool,
    /// How long an accepted token is answered again without the plugin, in seconds (never past
    /// its `exp`); absent when every request asks the plugin.
    authentication_cache_secs: Option<u64>,
    /// Tokens held by that cache now (some may be past their time, not yet evicted).
    authentication_cache_entries: Option<u64>,
    /// How long the plugin's `authorize` answers are kept per subject, in seconds; absent when
    /// off.
    authorization_cache_secs: Option<u64>,
}

/// A request middleware instance.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct MiddlewareInfo {
    /// Instance name.
    name: String,
    /// Plugin name.
    plugin: String,
    /// Plugin file hash (absent when retired).
    plugin_hash: Option<String>,
    /// Path patterns where it runs on its own (empty: only on the routes that name it).
    paths: Vec<String>,
    /// Methods it runs for (absent: every method).
    methods: Option<Vec<String>>,
    /// Whether it also runs on requests that need no user.
    public: bool,
    /// Whether it adjusts responses (`on_response`).
    on_response: bool,
    /// Why it is retired (its plugin was removed or is no longer trusted): requests it would run
    /// for get 503.
    retired: Option<String>,
}

/// A provider instance whose plugin file was removed or is no longer in `plugins.allow`;
/// requests that need it get 503.
#[derive(Object)]
struct RetiredInfo {
    /// Instance name.
    name: String,
    /// The plugin it needs.
    plugin: String,
    /// Why it is retired.
    reason: String,
}

/// A route's upstream OpenAPI document (`routes[i].openapi`), as read for the served snapshot.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct RouteDocumentInfo {
    /// Index of the route in `routes`.
    route: u64,
    /// The route's path pattern.
    path: String,
    /// Where the document was read (a URL without its query, or a file).
    source: String,
    /// What the route's operation ids, tags and component names start with (then a `.`).
    prefix: String,
    /// Operations of the document in `/openapi.json`.
    operations: u64,
    /// Operations of the document the route does not serve, left out: `METHOD path (why)`.
    left_out: Vec<String>,
    /// Why the document could not be used (the route serves all the same).
    error: Option<String>,
}

/// A file the served snapshot was built from.
#[derive(Object)]
struct FileInfo {
    /// The path.
    path: String,
    /// SHA-256 of its content.
    sha256: String,
}

/// The file watch.
#[derive(Object)]
struct WatchInfo {
    /// Folders watched for changes.
    watching: Vec<String>,
    /// Folders that could not be watched, and why.
    errors: Vec<String>,
}

/// A reload attempt.
#[derive(Object)]
struct AttemptInfo {
    /// Unix seconds.
    at: u64,
    /// What asked for it.
    trigger: String,
    /// How long it took, in milliseconds.
    duration_ms: u64,
    /// What it did.
    result: ReloadResult,
    /// Problems, one line each, with their kind.
    errors: Vec<ReloadProblem>,
    /// What the config says that can never take effect (a dead pattern, a shadowed rule or
    /// route), one line each with its key path; for an applied or unchanged config only.
    warnings: Vec<String>,
}

/// A JWKS URL's cache counters.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct KeySetInfo {
    /// The URL.
    url: String,
    /// Fetch attempts.
    fetches: u64,
    /// Failed attempts.
    failures: u64,
    /// Keys held.
    keys: u64,
    /// The last failure.
    last_error: Option<String>,
}

/// Server status.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct Status {
    /// Generation of the snapshot being served.
    generation: u64,
    /// The config file.
    config_file: String,
    /// SHA-256 of the config being served.
    config_hash: String,
    /// Every file the served snapshot was built from, with its hash.
    files: Vec<FileInfo>,
    /// The file watch.
    watch: WatchInfo,
    /// The last reload attempt.
    last_attempt: Option<AttemptInfo>,
    /// The last successful reload.
    last_success: Option<AttemptInfo>,
    /// Plugin library copies kept mapped.
    mapped_libraries: u64,
    /// Plugin files.
    plugins: Vec<PluginInfo>,
    /// Provider instances.
    providers: Vec<ProviderInfo>,
    /// Instances whose plugin was removed.
    retired: Vec<RetiredInfo>,
    /// Request middleware instances, in the order they run.
    middleware: Vec<MiddlewareInfo>,
    /// JWKS caches.
    key_sets: Vec<KeySetInfo>,
    /// The upstream OpenAPI documents routes name, merged into `/openapi.json`.
    route_documents: Vec<RouteDocumentInfo>,
}

/// One problem that refused a reload.
#[derive(Object)]
struct ReloadProblem {
    /// What kind of problem: `config` (the file), `plugin`, `restart` (a setting that cannot
    /// change while running), `tls`, `stopped`.
    kind: ReloadErrorKind,
    /// The line an operator reads, with key paths and file names.
    message: String,
}

fn problems(errors: Vec<ReloadError>) -> Vec<ReloadProblem> {
    errors
        .into_iter()
        .map(|e| ReloadProblem {
            kind: e.kind,
            message: e.message,
        })
        .collect()
}

/// Result of `POST /api/admin/reload`.
#[derive(Object)]
struct ReloadAnswer {
    /// What the reload did.
    result: ReloadResult,
    /// Generation now served.
    generation: u64,
    /// Why it failed, one problem each, with its kind.
    errors: Vec<ReloadProblem>,
    /// What the config says that can never take effect (a dead pattern, a shadowed rule or
    /// route), one line each with its key path; the config is served all the same. Empty when
    /// the reload failed.
    warnings: Vec<String>,
}

// Only `Ok` is built by the handler; the gate answers the others before it runs.
#[allow(dead_code)]
#[derive(ApiResponse)]
#[oai(header(
    name = "x-request-id",
    ty = "String",
    description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
))]
enum HealthResponse {
    /// The server is up.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The request path cannot be made canonical, or `Content-Length` is not a number.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The body is larger than `server.body_size_limit` (`Request body too large`).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The answer took longer than `server.timeout` (`Gateway Timeout`).
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

// `Ok` and `NotReady` are built by the handler; the gate answers the others before it runs.
#[allow(dead_code)]
#[derive(ApiResponse)]
#[oai(header(
    name = "x-request-id",
    ty = "String",
    description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
))]
enum ReadyResponse {
    /// The served snapshot can answer: every provider instance is built and none is retired, and
    /// every key set they verify with has been fetched at least once (stale keys count).
    #[oai(status = 200)]
    Ok(Json<Readiness>),
    /// The request path cannot be made canonical, or `Content-Length` is not a number.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The body is larger than `server.body_size_limit` (`Request body too large`).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// Not ready: a retired instance, no provider, or a key set never fetched; `problems` says
    /// which.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
    /// The answer took longer than `server.timeout` (`Gateway Timeout`).
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

// Only `Ok` is built by handlers: the gate answers the failures before a handler runs. The other
// variants are here so that the spec documents every answer a protected route can give.
#[allow(dead_code)]
#[derive(ApiResponse)]
#[oai(header(
    name = "x-request-id",
    ty = "String",
    description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
))]
enum ProtectedResponse<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Success.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// The request path cannot be made canonical, or `Content-Length` is not a number.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No token (`Authentication required`) or a bad one (`Invalid or expired token`); carries
    /// `WWW-Authenticate: Bearer`.
    #[oai(
        status = 401,
        header(
            name = "WWW-Authenticate",
            ty = "String",
            description = "`Bearer realm=\"portcullis\"`, with `error=\"invalid_token\"` for a bad token."
        )
    )]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated but not allowed (`Access denied`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The identity provider could not be asked; nothing is allowed meanwhile.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// A plugin failed; details are in the server log only.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The body is larger than `server.body_size_limit` (`Request body too large`).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The answer took longer than `server.timeout` (`Gateway Timeout`).
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

// Only `Ok` and `Failed` are built by the handler; the gate answers the others before it runs.
#[allow(dead_code)]
#[derive(ApiResponse)]
#[oai(header(
    name = "x-request-id",
    ty = "String",
    description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
))]
enum ReloadResponse {
    /// `applied` (a new generation is served) or `unchanged` (the files are as loaded).
    #[oai(status = 200)]
    Ok(Json<ReloadAnswer>),
    /// The request path cannot be made canonical, or `Content-Length` is not a number.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No token (`Authentication required`) or a bad one (`Invalid or expired token`); carries
    /// `WWW-Authenticate: Bearer`.
    #[oai(
        status = 401,
        header(
            name = "WWW-Authenticate",
            ty = "String",
            description = "`Bearer realm=\"portcullis\"`, with `error=\"invalid_token\"` for a bad token."
        )
    )]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated but not allowed (`Access denied`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The body is larger than `server.body_size_limit` (`Request body too large`).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// `failed`: the config or a plugin was refused, `errors` says why with key paths; the
    /// generation in `generation` keeps serving.
    #[oai(status = 422)]
    Failed(Json<ReloadAnswer>),
    /// A plugin failed; details are in the server log only.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The identity provider could not be asked; nothing is allowed meanwhile.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// The answer took longer than `server.timeout` (`Gateway Timeout`).
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

/// The answers of `/forward-auth`, for the spec (handlers answer with [`ForwardAuthAnswer`]).
#[allow(dead_code)]
#[derive(ApiResponse)]
#[oai(header(
    name = "x-request-id",
    ty = "String",
    description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
))]
enum ForwardAuthDoc {
    /// Allowed. When a user was needed, the identity headers (`gateway.identity_headers`, by
    /// default `X-User-Id` from `sub`) carry who it is.
    #[oai(status = 200)]
    Ok,
    /// The configured proxy's original method, URI or host is missing or repeated; another
    /// proxy's original-request header is present; the original path is not canonical; or the
    /// request carries a method override or a client's identity header.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No token or a bad one; carries `WWW-Authenticate: Bearer`.
    #[oai(
        status = 401,
        header(
            name = "WWW-Authenticate",
            ty = "String",
            description = "`Bearer realm=\"portcullis\"`, with `error=\"invalid_token\"` for a bad token."
        )
    )]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Forward auth is off (`gateway.forward_auth` unset or `false`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The body is larger than `server.body_size_limit` (`Request body too large`).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// A plugin failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The identity provider could not be asked.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// The answer took longer than `server.timeout` (`Gateway Timeout`).
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

/// A forward-auth verdict: status and headers decided at run time.
pub struct ForwardAuthAnswer(poem::Response);

impl IntoResponse for ForwardAuthAnswer {
    fn into_response(self) -> poem::Response {
        self.0
    }
}

impl ApiResponse for ForwardAuthAnswer {
    fn meta() -> MetaResponses {
        ForwardAuthDoc::meta()
    }

    fn register(registry: &mut Registry) {
        ForwardAuthDoc::register(registry);
    }
}

#[allow(dead_code)]
#[derive(ApiResponse)]
#[oai(header(
    name = "x-request-id",
    ty = "String",
    description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
))]
enum ExplainResponse {
    /// The decision and why. No token, cookie or header value is ever part of it. A request that
    /// could not be sent as given (a method that is not one, a header name or value that HTTP
    /// does not allow) is explained too: as the 400 it would get.
    #[oai(status = 200)]
    Ok(Json<Box<crate::api::explain::Explanation>>),
    /// The body is not a JSON object of this shape (`token` or `headers` `null` included), or
    /// `Content-Length` is not a number.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No token or a bad one on the explain call itself.
    #[oai(
        status = 401,
        header(
            name = "WWW-Authenticate",
            ty = "String",
            description = "`Bearer realm=\"portcullis\"`, with `error=\"invalid_token\"` for a bad token."
        )
    )]
    Unauthorized(Json<ErrorBody>),
    /// The caller may not use admin endpoints.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The identity provider could not be asked about the caller.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// A plugin failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The body is larger than `server.body_size_limit` (`Request body too large`).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The body is not sent as `Content-Type: application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The answer took longer than `server.timeout` (`Gateway Timeout`).
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

/// The built-in routes.
pub struct Api {
    /// The application.
    pub app: Arc<App>,
}

fn attempt(a: Option<crate::app::Attempt>) -> Option<AttemptInfo> {
    a.map(|a| AttemptInfo {
        at: a.at,
        trigger: a.trigger,
        duration_ms: a.duration_ms,
        result: a.result,
        errors: problems(a.errors),
        warnings: a.warnings,
    })
}

fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Api {
    fn plugins(&self) -> Vec<PluginInfo> {
        self.app
            .snapshot()
            .plugins
            .iter()
            .map(|p| match p {
                PluginFile::Loaded(l) => PluginInfo {
                    file: l.file.display().to_string(),
                    name: Some(l.manifest.name.clone()),
                    kinds: Some(l.kinds().into_iter().map(String::from).collect()),
                    middleware_name: l.middleware_name().map(String::from),
                    version: Some(l.manifest.version.clone()),
                    abi_version: Some(l.manifest.abi_version.clone()),
                    description: Some(l.manifest.description.clone()),
                    hash: Some(l.hash.clone()),
                    loaded_at: Some(secs(l.loaded_at)),
                    error: None,
                },
                PluginFile::Failed(e) => PluginInfo {
                    file: e.file().display().to_string(),
                    name: None,
                    kinds: None,
                    middleware_name: None,
                    version: None,
                    abi_version: None,
                    description: None,
                    hash: None,
                    loaded_at: None,
                    error: Some(e.to_string()),
                },
            })
            .collect()
    }

    fn route_documents(&self) -> Vec<RouteDocumentInfo> {
        self.app
            .snapshot()
            .route_docs
            .routes
            .iter()
            .map(|d| {
                let (operations, left_out, error) = match &d.outcome {
                    Ok(ops) => (ops.count() as u64, ops.left_out.clone(), None),
                    Err(e) => (0, Vec::new(), Some(e.clone())),
                };
                RouteDocumentInfo {
                    route: d.route as u64,
                    path: d.path.clone(),
                    source: d.source.clone(),
                    prefix: d.prefix.clone(),
                    operations,
                    left_out,
                    error,
                }
            })
            .collect()
    }

    fn middleware(&self) -> Vec<MiddlewareInfo> {
        let rt = self.app.snapshot();
        rt.config
            .middleware
            .iter()
            .zip(&rt.middleware)
            .map(|(c, m)| MiddlewareInfo {
                name: c.name.clone(),
                plugin: c.plugin.clone(),
                plugin_hash: m.plugin.as_ref().map(|p| p.hash.clone()),
                paths: c.paths_src.clone(),
                methods: c.methods.clone(),
                public: c.public,
                on_response: m.handle.as_ref().is_some_and(|h| h.wants_response()),
                retired: m.retired.clone(),
            })
            .collect()
    }

    fn providers(&self) -> Vec<ProviderInfo> {
        self.app
            .snapshot()
            .providers
            .iter()
            .map(|p| ProviderInfo {
                name: p.name.clone(),
                plugin: p.plugin.manifest.name.clone(),
                plugin_version: p.plugin.manifest.version.clone(),
                plugin_hash: p.plugin.hash.clone(),
                issuers: p.issuers.clone(),
                authorize_overridden: p.authorize.is_some(),
                authentication_cache_secs: p.authn_cache.as_ref().map(|c| c.max_age().as_secs()),
                authentication_cache_entries: p.authn_cache.as_ref().map(|c| c.len() as u64),
                authorization_cache_secs: p.authz_cache.as_ref().map(|c| c.ttl().as_secs()),
            })
            .collect()
    }
}

#[OpenApi]
impl Api {
    /// Liveness: always public.
    #[oai(path = "/health", method = "get", tag = "ApiTags::System")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health { success: true }))
    }

    /// Readiness (a Kubernetes readiness probe): 200 when the served snapshot can answer —
    /// every provider instance built, none retired, every key set they verify with fetched at
    /// least once (stale keys count: they still verify) — else 503 with the problems. A key set
    /// never fetched is fetched here (at most 2 s), so a new replica becomes ready without
    /// waiting for a first token. `/health` stays liveness.
    #[oai(path = "/ready", method = "get", tag = "ApiTags::System")]
    async fn ready(&self) -> ReadyResponse {
        let rt = self.app.snapshot();
        let mut problems: Vec<String> = rt
            .retired
            .iter()
            .map(|r| format!("provider {} is retired: {}", r.name, r.reason))
            .chain(rt.middleware.iter().filter_map(|m| {
                m.retired
                    .as_ref()
                    .map(|r| format!("middleware {} is retired: {r}", m.name))
            }))
            .collect();
        if rt.providers.is_empty() && rt.retired.is_empty() {
            problems.push("no identity provider is configured".into());
        }
        for p in &rt.providers {
            for set in p.key_sets.sets().iter() {
                if set.witness().is_some() {
                    continue;
                }
                let fetched = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    self.app.key_cache().keys(set),
                )
                .await;
                if !matches!(fetched, Ok(Ok(_))) {
                    problems.push(format!(
                        "provider {}: key set {} has never been fetched",
                        p.name,
                        set.stats().url
                    ));
                }
            }
        }
        let body = Json(Readiness {
            ready: problems.is_empty(),
            problems,
        });
        if body.0.ready {
            ReadyResponse::Ok(body)
        } else {
            ReadyResponse::NotReady(body)
        }
    }

    /// The caller's identity: the provider that authenticated the bearer token and its claims.
    #[oai(path = "/api/auth/me", method = "get", tag = "ApiTags::Auth")]
    async fn me(&self, caller: Caller) -> ProtectedResponse<Me> {
        ProtectedResponse::Ok(Json(Me {
            provider: caller.0.provider.clone(),
            user: caller.0.claims.clone(),
        }))
    }

    /// Generation, config hash, last reload attempt and success, plugins, providers and key caches.
    #[oai(path = "/api/admin/status", method = "get", tag = "ApiTags::Admin")]
    async fn status(&self, _caller: Caller) -> ProtectedResponse<Status> {
        let st: ReloadStatus = self.app.status();
        let watch = {
            let w = self.app.watch_status();
            let w = w.lock().unwrap_or_else(|p| p.into_inner());
            WatchInfo {
                watching: w.watching.clone(),
                errors: w.errors.clone(),
            }
        };
        ProtectedResponse::Ok(Json(Status {
            generation: st.generation,
            config_file: self.app.config_path().display().to_string(),
            config_hash: st.config_hash,
            files: st
                .files
                .into_iter()
                .map(|f| FileInfo {
                    path: f.path,
                    sha256: f.sha256,
                })
                .collect(),
            watch,
            last_attempt: attempt(st.last_attempt),
            last_success: attempt(st.last_success),
            mapped_libraries: self.app.mapped_libraries() as u64,
            plugins: self.plugins(),
            providers: self.providers(),
            retired: self
                .app
                .snapshot()
                .retired
                .iter()
                .map(|r| RetiredInfo {
                    name: r.name.clone(),
                    plugin: r.plugin.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
            middleware: self.middleware(),
            route_documents: self.route_documents(),
            key_sets: self
                .app
                .key_sets()
                .into_iter()
                .map(|k| KeySetInfo {
                    url: k.url,
                    fetches: k.fetches,
                    failures: k.failures,
                    keys: k.keys as u64,
                    last_error: k.last_error,
                })
                .collect(),
        }))
    }

    /// Plugin files: name, version, file, hash, and the load error of any that failed.
    #[oai(path = "/api/admin/plugins", method = "get", tag = "ApiTags::Admin")]
    async fn plugin_list(&self, _caller: Caller) -> ProtectedResponse<Vec<PluginInfo>> {
        ProtectedResponse::Ok(Json(self.plugins()))
    }

    /// Provider instances of the snapshot being served.
    #[oai(path = "/api/admin/providers", method = "get", tag = "ApiTags::Admin")]
    async fn provider_list(&self, _caller: Caller) -> ProtectedResponse<Vec<ProviderInfo>> {
        ProtectedResponse::Ok(Json(self.providers()))
    }

    /// Re-reads the config and the plugins folder; applies them only if all of it is valid.
    /// Unchanged content is not reloaded.
    #[oai(path = "/api/admin/reload", method = "post", tag = "ApiTags::Admin")]
    async fn reload(&self, _caller: Caller) -> ReloadResponse {
        let outcome = self.app.request_reload("admin").await;
        let result = outcome.result();
        let (generation, errors, warnings) = match outcome {
            ReloadOutcome::Applied(g, w) | ReloadOutcome::Unchanged(g, w) => (g, vec![], w),
            ReloadOutcome::Failed(e) => (self.app.snapshot().generation, e, vec![]),
        };
        let body = Json(ReloadAnswer {
            result,
            generation,
            errors: problems(errors),
            warnings,
        });
        // A refused config is the caller's to fix, and a deploy script running `curl -f` must
        // notice it: never a 2xx.
        if result == ReloadResult::Failed {
            ReloadResponse::Failed(body)
        } else {
            ReloadResponse::Ok(body)
        }
    }
}

/// The gateway and explain routes (a second `OpenApi` impl: one per concern keeps each short).
pub struct GatewayApi {
    /// The application.
    pub app: Arc<App>,
}

#[OpenApi]
impl GatewayApi {
    /// Forward auth for the proxy named by `gateway.forward_auth`: the verdict on the request
    /// that proxy names — `X-Original-Method` + `X-Original-URI` + `X-Forwarded-Host` (nginx) or
    /// `X-Forwarded-Method` + `X-Forwarded-Uri` + `X-Forwarded-Host` (Traefik, Caddy) — judged
    /// with the caller's own `Authorization` / cookies, as if it had been sent here. Only the
    /// configured proxy's headers are read; another proxy's original-request headers, a
    /// non-canonical original path, a method override or a client's identity header are
    /// refused with 400. (Envoy `ext_authz` asks below this path instead, with the original
    /// method.) Off unless `gateway.forward_auth` names a proxy.
    #[oai(
        path = "/forward-auth",
        method = "get",
        method = "head",
        method = "post",
        tag = "ApiTags::Gateway"
    )]
    // One parameter per header the proxies send, so that the spec lists each of them.
    #[allow(clippy::too_many_arguments)]
    async fn forward_auth(
        &self,
        req: &Request,
        /// nginx: the original request target (`$request_uri`).
        #[oai(name = "X-Original-URI")]
        _original_uri: Header<Option<String>>,
        /// nginx: the original method (`$request_method`).
        #[oai(name = "X-Original-Method")]
        _original_method: Header<Option<String>>,
        /// Traefik and Caddy: the original path and query.
        #[oai(name = "X-Forwarded-Uri")]
        _forwarded_uri: Header<Option<String>>,
        /// Traefik and Caddy: the original method.
        #[oai(name = "X-Forwarded-Method")]
        _forwarded_method: Header<Option<String>>,
        /// The original host (every proxy but Envoy); conditions see it as `host`.
        #[oai(name = "X-Forwarded-Host")]
        _forwarded_host: Header<Option<String>>,
        /// Traefik: the original scheme (logged).
        #[oai(name = "X-Forwarded-Proto")]
        _forwarded_proto: Header<Option<String>>,
    ) -> ForwardAuthAnswer {
        ForwardAuthAnswer(crate::gateway::forward_auth::answer(&self.app, req).await)
    }

    /// Explains the decision the server would make now for a method, a path and optionally a
    /// token and headers: the canonical path, the patterns and route that matched, where the token
    /// was found, the provider, the rule that decided, or why the token was refused. Secrets are
    /// never echoed.
    #[oai(path = "/api/admin/explain", method = "post", tag = "ApiTags::Admin")]
    async fn explain(
        &self,
        _caller: Caller,
        body: Json<crate::api::explain::ExplainRequest>,
    ) -> ExplainResponse {
        // `null` is not what the schema says (a string, an object, or absent): refused rather
        // than read as absent, so that the schema says exactly what is accepted.
        if body.token.is_null() || body.headers.is_null() {
            return ExplainResponse::BadRequest(Json(ErrorBody {
                error: "token and headers are absent or set, never null".into(),
            }));
        }
        let rt = self.app.snapshot();
        ExplainResponse::Ok(Json(Box::new(
            crate::api::explain::explain(&rt, body.0).await,
        )))
    }
}

/// The OpenMetrics text of `/metrics`.
pub struct OpenMetricsText(pub String);

impl poem_openapi::payload::Payload for OpenMetricsText {
    const CONTENT_TYPE: &'static str = crate::observe::metrics::CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }
}

impl IntoResponse for OpenMetricsText {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type(crate::observe::metrics::CONTENT_TYPE)
            .body(self.0)
    }
}

macro_rules! document_response {
    ($(#[$doc:meta])* $name:ident, $payload:ty) => {
        // The server answers these paths before the API router (see `api::docs::Site`); the enum
        // documents what it answers.
        #[allow(dead_code)]
        #[derive(ApiResponse)]
        #[oai(header(
            name = "x-request-id",
            ty = "String",
            description = "The request's id, in every answer: the caller's own `x-request-id` when it is 1 to 128 of `A-Z a-z 0-9 - _`, else a new one."
        ))]
        enum $name {
            $(#[$doc])*
            #[oai(
                status = 200,
                header(
                    name = "Content-Encoding",
                    ty = "Option<String>",
                    description = "`gzip` when the request's `Accept-Encoding` accepts it (`/openapi.json` and `/swagger-ui` only)."
                ),
                header(
                    name = "Vary",
                    ty = "Option<String>",
                    description = "`Accept-Encoding` (`/openapi.json` and `/swagger-ui`)."
                )
            )]
            Ok($payload),
            /// The request path cannot be made canonical, or `Content-Length` is not a number.
            #[oai(status = 400)]
            BadRequest(Json<ErrorBody>),
            /// Turned off in the config (`server.build.openapi_docs`, `server.build.swagger_ui`,
            /// `server.metrics`).
            #[oai(status = 404)]
            NotFound(Json<ErrorBody>),
            /// The body is larger than `server.body_size_limit`.
            #[oai(status = 413)]
            TooLarge(Json<ErrorBody>),
            /// The answer took longer than `server.timeout`.
            #[oai(status = 504)]
            Timeout(Json<ErrorBody>),
        }
    };
}

document_response!(
    /// This document (OpenAPI 3).
    SpecResponse,
    Json<serde_json::Value>
);
document_response!(
    /// Swagger UI, one self-contained page (no request leaves for a CDN).
    UiResponse,
    poem_openapi::payload::Html<String>
);
document_response!(
    /// The metrics, in the OpenMetrics text format.
    MetricsResponse,
    OpenMetricsText
);

/// The documents: answered by the server before the API router (`api::docs::Site`, which also
/// compresses the large ones), listed here so that the spec documents every route.
pub struct DocsApi;

#[OpenApi]
impl DocsApi {
    /// This OpenAPI document (with `server.build.openapi_docs: true`). Compressed with gzip when
    /// `Accept-Encoding` allows it.
    #[oai(path = "/openapi.json", method = "get", tag = "ApiTags::System")]
    async fn openapi_document(&self) -> SpecResponse {
        // Not reached: `api::docs::Site` answers this path first.
        SpecResponse::NotFound(Json(ErrorBody {
            error: "Not Found".into(),
        }))
    }

    /// Swagger UI for this document (with `server.build.swagger_ui: true`), usable offline.
    /// About 1.6 MB; compressed with gzip (to about a quarter) when `Accept-Encoding` allows it.
    #[oai(path = "/swagger-ui", method = "get", tag = "ApiTags::System")]
    async fn swagger_ui(&self) -> UiResponse {
        // Not reached: `api::docs::Site` answers this path first.
        UiResponse::NotFound(Json(ErrorBody {
            error: "Not Found".into(),
        }))
    }

    /// Prometheus metrics (with `server.metrics`, on by default). Public unless a pattern of
    /// `auth.protected` covers it.
    #[oai(path = "/metrics", method = "get", tag = "ApiTags::System")]
    async fn metrics(&self) -> MetricsResponse {
        // Not reached: `api::docs::Site` answers this path first.
        MetricsResponse::NotFound(Json(ErrorBody {
            error: "Not Found".into(),
        }))
    }
}

/// Every documented operation.
pub type Apis = (Api, GatewayApi, DocsApi);

/// The `Allow` header for a 405 on `path`: the methods the spec declares for it, and `HEAD`
/// wherever `GET` is (the router answers it). `None` for a path the spec does not list.
pub fn allow(path: &str) -> Option<HeaderValue> {
    static ALLOW: LazyLock<HashMap<String, HeaderValue>> = LazyLock::new(|| {
        let mut by_path: HashMap<String, Vec<&'static str>> = HashMap::new();
        for api in <Apis as OpenApi>::meta() {
            for p in api.paths {
                let methods = by_path.entry(p.path).or_default();
                for op in p.operations {
                    for m in [op.method.as_str(), "HEAD"]
                        .into_iter()
                        .take(if op.method == Method::GET { 2 } else { 1 })
                    {
                        if let Some(m) = KNOWN_METHODS.iter().find(|k| **k == m) {
                            if !methods.contains(m) {
                                methods.push(m);
                            }
                        }
                    }
                }
            }
        }
        by_path
            .into_iter()
            .filter_map(|(path, methods)| {
                HeaderValue::from_str(&methods.join(", "))
                    .ok()
                    .map(|v| (path, v))
            })
            .collect()
    });
    ALLOW.get(path).cloned()
}

const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// The spec as served: poem-openapi's document with an `operationId` on every operation that has
/// none (`getApiAdminStatus`: the method, then the path's words; unique because method and path
/// are) and the token schemes the config turns on (`queryToken`, `cookieToken`, named as in
/// `auth.token.query` / `auth.token.cookie`; undeclared when off). The ids are added here rather
/// than with `#[oai(operation_id)]`, which wraps every handler in one more layer per request.
pub fn finish_spec(raw: &str, token: &TokenConfig) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.to_string();
    };
    let sources = [
        (QUERY_SCHEME, token.query.as_deref()),
        (COOKIE_SCHEME, token.cookie.as_deref()),
    ];
    if let Some(schemes) = doc
        .pointer_mut("/components/securitySchemes")
        .and_then(|v| v.as_object_mut())
    {
        for (scheme, name) in sources {
            match name {
                Some(n) => {
                    if let Some(s) = schemes.get_mut(scheme).and_then(|s| s.as_object_mut()) {
                        s.insert("name".into(), n.into());
                    }
                }
                None => {
                    schemes.remove(scheme);
                }
            }
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(|v| v.as_object_mut()) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                let Some(op) = op.as_object_mut() else {
                    continue;
                };
                // An embedding program's own `#[oai(operation_id)]` is kept.
                op.entry("operationId").or_insert_with(|| {
                    crate::reload::route_docs::operation_id(method, path).into()
                });
                if let Some(reqs) = op.get_mut("security").and_then(|v| v.as_array_mut()) {
                    reqs.retain(|r| {
                        !sources
                            .iter()
                            .any(|(scheme, name)| name.is_none() && r.get(scheme).is_some())
                    });
                }
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| raw.to_string())
}

#[derive(poem_openapi::Tags)]
enum ApiTags {
    /// Verdicts for a proxy in front of other services.
    Gateway,
    /// Always-public endpoints.
    System,
    /// The caller's identity.
    Auth,
    /// Operating the server (protected by the same policy as everything else).
    Admin,
}
