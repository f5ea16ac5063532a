//! The built-in API, documented with poem-openapi: every route, the bearer security scheme and
//! every error body appear in `/openapi.json`.

use std::sync::Arc;

use poem::{IntoResponse, Request, Result};
use poem_openapi::{
    param::Header,
    payload::Json,
    registry::{MetaResponses, MetaSecurityScheme, Registry},
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
};

use crate::{
    app::{App, ReloadOutcome, ReloadStatus},
    auth::AuthUser,
    runtime::PluginFile,
};

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
                    "`Authorization: Bearer <token>`, checked by the provider the config names. \
                     Query-parameter and cookie tokens work only when `auth.token` opts in.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("JWT"),
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["bearerAuth"]
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
struct PluginInfo {
    /// The file.
    file: String,
    /// Name from the manifest (absent when the file failed to load).
    name: Option<String>,
    /// The plugin's version.
    version: Option<String>,
    /// The plugin-api version it was built against.
    api_version: Option<String>,
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
    /// `applied`, `unchanged` or `failed`.
    result: String,
    /// Problems, one line each.
    errors: Vec<String>,
}

/// A JWKS URL's cache counters.
#[derive(Object)]
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
    /// JWKS caches.
    key_sets: Vec<KeySetInfo>,
}

/// Result of `POST /api/admin/reload`.
#[derive(Object)]
struct ReloadResult {
    /// `applied`, `unchanged` or `failed`.
    result: String,
    /// Generation now served.
    generation: u64,
    /// Why it failed.
    errors: Vec<String>,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The server is up.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

// Only `Ok` is built by handlers: the gate answers the failures before a handler runs. The other
// variants are here so that the spec documents every answer a protected route can give.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum ProtectedResponse<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Success.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// No token (`Authentication required`) or a bad one (`Invalid or expired token`); carries
    /// `WWW-Authenticate: Bearer`.
    #[oai(status = 401)]
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
}

/// The answers of `/forward-auth`, for the spec (handlers answer with [`ForwardAuthAnswer`]).
#[allow(dead_code)]
#[derive(ApiResponse)]
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
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Forward auth is off (`gateway.forward_auth` unset or `false`).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// A plugin failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The identity provider could not be asked.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
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
enum ExplainResponse {
    /// The decision and why. No token, cookie or header value is ever part of it.
    #[oai(status = 200)]
    Ok(Json<Box<crate::explain::Explanation>>),
    /// The request to explain is malformed (method, header names or values).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No token or a bad one on the explain call itself.
    #[oai(status = 401)]
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
        errors: a.errors,
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
            .runtime()
            .plugins
            .iter()
            .map(|p| match p {
                PluginFile::Loaded(l) => PluginInfo {
                    file: l.file.display().to_string(),
                    name: Some(l.manifest.name.clone()),
                    version: Some(l.manifest.version.clone()),
                    api_version: Some(l.manifest.api_version.clone()),
                    description: Some(l.manifest.description.clone()),
                    hash: Some(l.hash.clone()),
                    loaded_at: Some(secs(l.loaded_at)),
                    error: None,
                },
                PluginFile::Failed(e) => PluginInfo {
                    file: e.file().display().to_string(),
                    name: None,
                    version: None,
                    api_version: None,
                    description: None,
                    hash: None,
                    loaded_at: None,
                    error: Some(e.to_string()),
                },
            })
            .collect()
    }

    fn providers(&self) -> Vec<ProviderInfo> {
        self.app
            .runtime()
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
                .runtime()
                .retired
                .iter()
                .map(|r| RetiredInfo {
                    name: r.name.clone(),
                    plugin: r.plugin.clone(),
                    reason: r.reason.clone(),
                })
                .collect(),
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
    async fn reload(&self, _caller: Caller) -> ProtectedResponse<ReloadResult> {
        let (result, generation, errors) = match self.app.request_reload("admin").await {
            ReloadOutcome::Applied(g) => ("applied", g, vec![]),
            ReloadOutcome::Unchanged(g) => ("unchanged", g, vec![]),
            ReloadOutcome::Failed(e) => ("failed", self.app.runtime().generation, e),
        };
        ProtectedResponse::Ok(Json(ReloadResult {
            result: result.into(),
            generation,
            errors,
        }))
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
        ForwardAuthAnswer(crate::forward_auth::answer(&self.app, req).await)
    }

    /// Explains the decision the server would make now for a method, a path and optionally a
    /// token and headers: the canonical path, the patterns and route that matched, where the token
    /// was found, the provider, the rule that decided, or why the token was refused. Secrets are
    /// never echoed.
    #[oai(path = "/api/admin/explain", method = "post", tag = "ApiTags::Admin")]
    async fn explain(
        &self,
        _caller: Caller,
        body: Json<crate::explain::ExplainRequest>,
    ) -> ExplainResponse {
        let rt = self.app.runtime();
        match crate::explain::explain(&rt, body.0).await {
            Ok(e) => ExplainResponse::Ok(Json(Box::new(e))),
            Err(crate::explain::BadInput(error)) => {
                ExplainResponse::BadRequest(Json(ErrorBody { error }))
            }
        }
    }
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
