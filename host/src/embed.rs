//! Portcullis inside a Poem program: the same engine as `portcullis serve` (plugins, live reload
//! of the config and the plugins, key caches, metrics), the same gate in front of the program's
//! own endpoints, its user handed to handlers, and one OpenAPI document for everything served.
//!
//! * [`Portcullis::open`] (or [`Portcullis::builder`]) starts the engine from a YAML config.
//! * [`Portcullis::middleware`] is a Poem [`Middleware`] that gates any endpoint with the config's
//!   rules: the same canonical path, the same answers (401, 403, 503, with their bodies and
//!   `WWW-Authenticate`), request ids, CORS, body limit, timeout, request middleware plugins, the
//!   access log and the metrics. [`GateExt::gated`] is the same as a method on any endpoint.
//! * [`AuthUser`] is the user the gate let through, for plain Poem handlers; [`BearerAuth`] is the
//!   same user for poem-openapi operations, which then declare the `bearerAuth` security scheme.
//! * [`Portcullis::serve_with`] serves a poem-openapi API together with Portcullis's own endpoints
//!   (`/health`, `/ready`, `/api/auth/me`, `/api/admin/*`, `/metrics`, the proxied `routes:`),
//!   merged into one `/openapi.json` and one Swagger UI, on the listeners the config names.
//!
//! The gate has already authenticated and authorized a request when a handler runs: the
//! extractors only read the user it established, and fail closed (500, with a log line that says
//! what to fix) when there is none, because the gate is not in front of the handler or the config
//! leaves the path public.
//!
//! ```no_run
//! use poem_openapi::{payload::PlainText, OpenApi};
//! use portcullis::{BearerAuth, Portcullis};
//!
//! struct Hello;
//!
//! #[OpenApi]
//! impl Hello {
//!     /// Greets the caller (the config protects `/api/*`).
//!     #[oai(path = "/api/hello", method = "get")]
//!     async fn hello(&self, user: BearerAuth) -> PlainText<String> {
//!         PlainText(format!("hello {}", user.subject().unwrap_or("?")))
//!     }
//! }
//!
//! # async fn run() -> Result<(), portcullis::Error> {
//! let portcullis = Portcullis::open("portcullis.yaml").await?;
//! portcullis.serve_with(Hello).await
//! # }
//! ```

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
};

use futures_util::future::Either;
use poem::{
    endpoint::BoxEndpoint, http::StatusCode, Endpoint, EndpointExt, FromRequest, Middleware,
    Request, RequestBody, Response, Route,
};
use poem_openapi::{
    registry::Registry, ApiExtractor, ApiExtractorType, ExtractParamOptions, OpenApi,
};

use crate::{
    api::{docs::DocumentInfo, routes::Caller},
    app::{App, Triggers},
    gateway::gate::Gate,
    http::answer::error_response,
    observe::telemetry::{LogFormat, Telemetry},
    reload::{ReloadError, ReloadOutcome},
};

/// Why Portcullis could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config or its plugins were refused: every problem, one a line, with key paths.
    #[error("{}", lines(.0))]
    Start(Vec<ReloadError>),
    /// The program's API cannot be served beside Portcullis's own (an operation both declare, an
    /// operation id used twice, routes that cannot take the APIs beside them).
    #[error("{0}")]
    Api(String),
    /// A listener could not be bound or failed.
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
}

fn lines(errors: &[ReloadError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How to start Portcullis: the config, the reload triggers, and what the served document says
/// of the program. [`Portcullis::builder`] makes one; [`Builder::open`] starts the engine.
#[derive(Debug, Clone)]
pub struct Builder {
    config: PathBuf,
    triggers: Triggers,
    info: DocumentInfo,
    log_format: LogFormat,
}

impl Builder {
    /// Whether the config file's folder and the plugins folder are watched, so that an edit or a
    /// new, replaced or deleted plugin applies by itself (default: yes). Without, reloads come
    /// from `SIGHUP`, `POST /api/admin/reload` and [`Portcullis::reload`].
    pub fn watch(mut self, on: bool) -> Self {
        self.triggers.watch = on;
        self
    }

    /// Whether `SIGHUP` reloads (default: yes).
    pub fn reload_on_sighup(mut self, on: bool) -> Self {
        self.triggers.sighup = on;
        self
    }

    /// The served document's title and version (default: `Portcullis` and this crate's version).
    pub fn document(mut self, title: impl Into<String>, version: impl Into<String>) -> Self {
        self.info.title = title.into();
        self.info.version = version.into();
        self
    }

    /// The served document's description (Markdown).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.info.description = Some(text.into());
        self
    }

    /// How the `portcullis listening on <url>` lines that [`Portcullis::serve`] prints are written
    /// (default: plain text; [`LogFormat::Json`] writes them as the JSON log lines are).
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// Reads the config, loads the plugins, builds the first snapshot and starts the reload
    /// task and triggers: what `portcullis serve` does before it listens. Needs a Tokio runtime.
    /// Fails with every problem the config and plugins have.
    pub async fn open(self) -> Result<Portcullis, Error> {
        let app = App::start_engine(&self.config, self.triggers)
            .await
            .map_err(Error::Start)?;
        Ok(Portcullis {
            app,
            info: self.info,
            log_format: self.log_format,
        })
    }
}

/// Portcullis running inside a program: the engine, its gate and its documents.
///
/// Cheap to clone (the clones share the engine).
#[derive(Clone)]
pub struct Portcullis {
    app: Arc<App>,
    info: DocumentInfo,
    log_format: LogFormat,
}

impl std::fmt::Debug for Portcullis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portcullis")
            .field("config", &self.app.config_path())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Portcullis {
    /// Starts the engine on the config at `config`, with the file watch and `SIGHUP` on (see
    /// [`Builder::open`]).
    pub async fn open(config: impl AsRef<Path>) -> Result<Portcullis, Error> {
        Self::builder(config).open().await
    }

    /// A [`Builder`] for the config at `config`.
    pub fn builder(config: impl AsRef<Path>) -> Builder {
        Builder {
            config: config.as_ref().to_path_buf(),
            triggers: Triggers::default(),
            info: DocumentInfo {
                title: "Portcullis".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: None,
            },
            log_format: LogFormat::Human,
        }
    }

    /// The gate as a Poem middleware: `endpoint.with(portcullis.middleware())`.
    ///
    /// It must wrap the whole application, outside any `Route::nest`: a nested endpoint sees its
    /// path without the prefix, which is not the path the config's rules name. A request whose
    /// path was rewritten before it reached the gate is refused (500, with a log line), never
    /// judged under the wrong path. Proxied `routes:` and Portcullis's own endpoints are not
    /// served by the middleware; [`Portcullis::serve_with`] serves them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use poem::{get, handler, http::StatusCode, Endpoint as _, EndpointExt as _, Request, Route};
    /// use portcullis::{AuthUser, Portcullis};
    ///
    /// #[handler]
    /// fn notes(user: AuthUser) -> String {
    ///     format!("notes of {}", user.subject().unwrap_or("?"))
    /// }
    ///
    /// #[handler]
    /// fn health() -> &'static str {
    ///     "up"
    /// }
    ///
    /// // A config whose rules protect /api/* (no provider: this example sends no token).
    /// let dir = tempfile::tempdir()?;
    /// let config = dir.path().join("portcullis.yaml");
    /// std::fs::write(&config, "version: 1\nplugins: { dir: . }\nproviders: []\n\
    ///     auth: { protected: ['/api/*'], public: ['/health'] }\n")?;
    /// let portcullis = Portcullis::builder(&config).watch(false).open().await?;
    ///
    /// let app = Route::new()
    ///     .at("/api/notes", get(notes))
    ///     .at("/health", get(health))
    ///     .with(portcullis.middleware());
    /// let get = |path: &'static str| Request::builder().uri_str(path).finish();
    ///
    /// let refused = app.get_response(get("/api/notes")).await;
    /// assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(refused.headers()["www-authenticate"], "Bearer realm=\"portcullis\"");
    /// let body = refused.into_body().into_string().await?;
    /// assert_eq!(body, r#"{"error":"Authentication required"}"#);
    ///
    /// // The same canonical path as the server: `/api/../health` is `/health`.
    /// let up = app.get_response(get("/api/../health")).await;
    /// assert_eq!(up.into_body().into_string().await?, "up");
    /// # Ok(())
    /// # }
    /// ```
    pub fn middleware(&self) -> Gatekeeper {
        Gatekeeper {
            app: self.app.clone(),
        }
    }

    /// Portcullis's own endpoints and `api` behind the gate, in one router and one document
    /// (`/openapi.json`, `/swagger-ui`, as the config's `server.build` turns them on), with the
    /// proxied `routes:` of the config: the endpoint [`Portcullis::serve_with`] serves, for a
    /// program that runs its own server (or a test, with `poem::test::TestClient`).
    ///
    /// Refused when `api` declares an operation Portcullis has (the same method and path) or an
    /// operation id twice.
    pub fn endpoint_with<T: OpenApi + 'static>(
        &self,
        api: T,
    ) -> Result<BoxEndpoint<'static, Response>, Error> {
        crate::api::docs::endpoint_with(self.app.clone(), api, &self.info, None)
            .map(EndpointExt::boxed)
            .map_err(Error::Api)
    }

    /// As [`Portcullis::endpoint_with`], with the program's plain Poem endpoints too: `routes`
    /// serves the paths it names, the APIs every other path. The gate is in front of all of them.
    pub fn endpoint_with_routes<T: OpenApi + 'static>(
        &self,
        api: T,
        routes: Route,
    ) -> Result<BoxEndpoint<'static, Response>, Error> {
        crate::api::docs::endpoint_with(self.app.clone(), api, &self.info, Some(routes))
            .map(EndpointExt::boxed)
            .map_err(Error::Api)
    }

    /// Serves [`Portcullis::endpoint_with`]`(api)` on the config's listeners until `SIGTERM` or
    /// Ctrl-C (see [`Portcullis::serve`]).
    pub async fn serve_with<T: OpenApi + 'static>(&self, api: T) -> Result<(), Error> {
        self.serve(self.endpoint_with(api)?).await
    }

    /// Serves [`Portcullis::endpoint_with_routes`]`(api, routes)` on the config's listeners until
    /// `SIGTERM` or Ctrl-C (see [`Portcullis::serve`]).
    pub async fn serve_with_routes<T: OpenApi + 'static>(
        &self,
        api: T,
        routes: Route,
    ) -> Result<(), Error> {
        self.serve(self.endpoint_with_routes(api, routes)?).await
    }

    /// Serves `endpoint` as `portcullis serve` serves its own: on `server.host` and `server.port`
    /// (https with `server.https`, the certificate reloaded live), the slow-client guard, the
    /// separate metrics listener of `server.metrics.listen`; prints `portcullis listening on
    /// <url>` once bound; stops on `SIGTERM` or Ctrl-C, draining requests in flight. `endpoint`
    /// is served as given: put the gate in front of it ([`Portcullis::middleware`]), or serve
    /// [`Portcullis::endpoint_with`].
    pub async fn serve<E: Endpoint + 'static>(&self, endpoint: E) -> Result<(), Error> {
        self.serve_until(endpoint, crate::app::shutdown_signal())
            .await
    }

    /// As [`Portcullis::serve`], stopping when `shutdown` completes.
    pub async fn serve_until<E: Endpoint + 'static>(
        &self,
        endpoint: E,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        crate::app::serve_announced(self.app.clone(), endpoint, self.log_format, shutdown)
            .await
            .map_err(Error::Serve)
    }

    /// Reads the config and plugins again now (as `POST /api/admin/reload` does) and waits for
    /// the outcome; on any problem the served state stays as it was.
    pub async fn reload(&self) -> ReloadOutcome {
        self.app.request_reload("program").await
    }

    /// The generation of the snapshot being served: 1 at start, one more per applied reload.
    pub fn generation(&self) -> u64 {
        self.app.snapshot().generation
    }
}

/// Sets up logging to stderr (filtered by `PORTCULLIS_LOG`, `info` by default, the access log
/// included) and span export as the config's `telemetry:` says, as `portcullis serve` does.
/// Call it once, before starting the async runtime; [`Telemetry::shutdown`] before exiting. A
/// program with its own `tracing` subscriber skips it.
pub fn init_telemetry(config: impl AsRef<Path>, format: LogFormat) -> Telemetry {
    let telemetry = crate::app::read_config(config.as_ref())
        .ok()
        .map(|c| c.telemetry);
    crate::observe::telemetry::init(format, telemetry.as_ref())
}

/// The gate as a Poem [`Middleware`] (from [`Portcullis::middleware`]).
#[derive(Clone)]
pub struct Gatekeeper {
    app: Arc<App>,
}

impl std::fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatekeeper").finish_non_exhaustive()
    }
}

impl<E: Endpoint> Middleware<E> for Gatekeeper {
    type Output = Gated<E>;

    fn transform(&self, ep: E) -> Gated<E> {
        Gated {
            gate: Gate::new(ep, self.app.clone(), Arc::new(|_| None)),
        }
    }
}

/// `endpoint.gated(&portcullis)`: the same as `endpoint.with(portcullis.middleware())`.
pub trait GateExt: Endpoint + Sized {
    /// This endpoint behind the gate of `portcullis`.
    fn gated(self, portcullis: &Portcullis) -> Gated<Self> {
        portcullis.middleware().transform(self)
    }
}

impl<E: Endpoint> GateExt for E {}

/// An endpoint behind the gate (see [`Portcullis::middleware`]).
pub struct Gated<E> {
    gate: Gate<E>,
}

impl<E: Endpoint> Endpoint for Gated<E> {
    type Output = Response;

    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        // A router that strips a prefix (`Route::nest`) rewrites the URI before this runs: the
        // rules would then be matched against a path that is not the one requested. A request
        // built without a server (`poem::test`) has `/` as its original URI.
        let original = req.original_uri().path();
        if original != "/" && original != req.uri().path() {
            tracing::error!(
                requested = %original,
                seen = %req.uri().path(),
                "refused: the Portcullis middleware sees a rewritten path; it must wrap the whole \
                 application, outside any Route::nest (or use Route::nest_no_strip)"
            );
            return Either::Left(std::future::ready(Ok(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ))));
        }
        Either::Right(self.gate.call(req))
    }
}

/// The user the gate let through: the provider instance that vouched for them and their claims.
///
/// An extractor for plain Poem handlers (`async fn h(user: AuthUser)`). A handler that serves
/// requests with and without a user takes the `&Request` and asks [`AuthUser::of`] (an
/// `Option<AuthUser>` argument would log every request without one as a mistake). In
/// poem-openapi operations use [`BearerAuth`], which documents the security scheme.
///
/// The gate has already checked the token: this only reads the user it put in the request. A
/// request that reached the handler without one (no gate in front of it, or a path the config
/// leaves public) is answered 500 `{"error":"Internal Server Error"}` and logged with what to fix;
/// it never reaches the handler.
#[derive(Clone)]
pub struct AuthUser(Arc<crate::auth::AuthUser>);

impl AuthUser {
    /// The provider instance (its `name:` in the config) that vouched for the user.
    pub fn provider(&self) -> &str {
        &self.0.provider
    }

    /// The `sub` claim, when it is a non-empty string.
    pub fn subject(&self) -> Option<&str> {
        self.0.subject()
    }

    /// Every claim, as the provider returned them (a JSON object).
    pub fn claims(&self) -> &serde_json::Value {
        &self.0.claims
    }

    /// One claim.
    pub fn claim(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.claims.get(name)
    }

    /// The user in `req`, as the gate put it there; `None` without one.
    pub fn of(req: &Request) -> Option<AuthUser> {
        req.extensions()
            .get::<Arc<crate::auth::AuthUser>>()
            .cloned()
            .map(AuthUser)
    }

    fn required(req: &Request) -> poem::Result<AuthUser> {
        AuthUser::of(req).ok_or_else(|| {
            tracing::error!(
                method = %req.method(),
                path = %req.uri().path(),
                "refused: the handler needs a user but the gate established none; put the \
                 Portcullis gate in front of it (Portcullis::middleware or serve_with) and a \
                 pattern of auth.protected over its path"
            );
            poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }
}

impl std::fmt::Debug for AuthUser {
    // The claims may be personal data: a debug line names the user only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthUser")
            .field("provider", &self.provider())
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}

impl<'a> FromRequest<'a> for AuthUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        AuthUser::required(req)
    }
}

/// The user the gate let through, for poem-openapi operations: declaring it documents the
/// operation with the `bearerAuth` security scheme (and the query or cookie token, when the
/// config turns them on), as Portcullis's own protected operations are.
///
/// It reads the user the gate established (the token is not checked again) and fails closed as
/// [`AuthUser`] does. It dereferences to [`AuthUser`].
///
/// ```
/// use poem_openapi::{payload::PlainText, OpenApi};
/// use portcullis::BearerAuth;
///
/// struct Notes;
///
/// #[OpenApi]
/// impl Notes {
///     /// The caller's notes.
///     #[oai(path = "/api/notes", method = "get")]
///     async fn list(&self, user: BearerAuth) -> PlainText<String> {
///         PlainText(format!("{} via {}", user.subject().unwrap_or("?"), user.provider()))
///     }
/// }
///
/// let spec = poem_openapi::OpenApiService::new(Notes, "Notes", "1").spec();
/// assert!(spec.contains("\"bearerAuth\""));
/// ```
#[derive(Clone, Debug)]
pub struct BearerAuth(pub AuthUser);

impl std::ops::Deref for BearerAuth {
    type Target = AuthUser;

    fn deref(&self) -> &AuthUser {
        &self.0
    }
}

impl<'a> ApiExtractor<'a> for BearerAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Caller as ApiExtractor<'a>>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <Caller as ApiExtractor<'a>>::security_schemes()
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        AuthUser::required(request).map(BearerAuth)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use poem::{
        get, handler, listener::Acceptor as _, listener::Listener as _, listener::TcpListener,
        EndpointExt as _, Route,
    };

    use super::{AuthUser, Portcullis};

    #[handler]
    fn notes(user: AuthUser) -> String {
        user.subject().unwrap_or_default().to_string()
    }

    #[handler]
    fn open() -> &'static str {
        "open"
    }

    /// A path the rules protect, seen by the gate without its prefix, would be judged as another
    /// path (here a public one): refused instead, on a real server.
    #[tokio::test]
    async fn a_gate_inside_a_nest_refuses_rather_than_judge_the_wrong_path() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            "version: 1\nplugins: { dir: . }\nproviders: []\nauth: { protected: ['/api/*'] }\n",
        )
        .unwrap();
        let portcullis = Portcullis::builder(&config)
            .watch(false)
            .reload_on_sighup(false)
            .open()
            .await
            .unwrap();
        let inner = Route::new()
            .at("/notes", get(notes))
            .at("/open", get(open))
            .with(portcullis.middleware());
        let app = Route::new()
            .nest("/api", inner)
            .nest_no_strip(
                "/v2",
                Route::new()
                    .at("/v2/open", get(open))
                    .with(portcullis.middleware()),
            )
            .at("/open", get(open).with(portcullis.middleware()));
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let server = tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        let status = |path: &'static str| async move {
            reqwest::get(format!("http://{addr}{path}"))
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        // Judged as `/notes` it would be public and its handler would fail closed too; judged as
        // `/open` it would be served. Neither: 500 before any judgement.
        assert_eq!(status("/api/notes").await, 500);
        assert_eq!(status("/api/open").await, 500);
        // Not stripped, or not nested: judged on the path requested.
        assert_eq!(status("/v2/open").await, 200);
        assert_eq!(status("/open").await, 200);
        server.abort();
    }
}
