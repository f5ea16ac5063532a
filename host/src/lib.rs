//! # Portcullis
//!
//! An authenticating HTTP server: identity providers are plugins loaded at run time through
//! `abi_stable`, the YAML config and the plugins reload live, and every route is documented with
//! OpenAPI. The `portcullis` binary runs it on its own (`portcullis serve`); this library runs
//! the same engine inside a [Poem](https://docs.rs/poem) program, in front of the program's own
//! endpoints. `README.md` and `docs/` in the repository are the tour; `docs/embedding.md` is the
//! guide to this library.
//!
//! ## Embedding
//!
//! | item | what |
//! |---|---|
//! | [`Portcullis::open`], [`Portcullis::builder`] | start the engine on a YAML config: plugins, live reload of config and plugins, key caches, metrics |
//! | [`Portcullis::middleware`], [`GateExt::gated`] | the gate as a Poem middleware: the config's rules, answers and headers in front of any endpoint |
//! | [`AuthUser`] | the user the gate let through, for plain Poem handlers |
//! | [`BearerAuth`] | the same for poem-openapi operations, documented with the `bearerAuth` scheme |
//! | [`Portcullis::serve_with`], [`Portcullis::endpoint_with`] | the program's poem-openapi API and Portcullis's own endpoints in one router, one `/openapi.json` and one Swagger UI |
//! | [`init_telemetry`] | the server's logging (and span export) for a program without its own |
//!
//! ```no_run
//! use poem_openapi::{payload::Json, OpenApi};
//! use portcullis::{BearerAuth, Portcullis};
//!
//! struct Api;
//!
//! #[OpenApi]
//! impl Api {
//!     /// The caller's claims (the config protects `/api/*`).
//!     #[oai(path = "/api/whoami", method = "get")]
//!     async fn whoami(&self, user: BearerAuth) -> Json<serde_json::Value> {
//!         Json(user.claims().clone())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), portcullis::Error> {
//!     let portcullis = Portcullis::builder("portcullis.yaml")
//!         .document("Who am I", "1.0.0")
//!         .open()
//!         .await?;
//!     // /api/whoami, /health, /api/admin/*, /openapi.json, /swagger-ui... on the config's port,
//!     // until SIGTERM or Ctrl-C.
//!     portcullis.serve_with(Api).await
//! }
//! ```
//!
//! ## Inside
//!
//! The modules below are the server's; those its tests, fuzzers and benchmarks name are public
//! and hidden from this documentation (they are not a stable interface), the others private.
//! From the bottom up (each module's doc says what it owns and what it must not import):
//!
//! | module | owns |
//! |---|---|
//! | `matching`, `jose` | path patterns and canonical paths; JWS verification |
//! | `keys` | key sets (JWKS, certificates) and the outgoing HTTP client that fetches them |
//! | `config` | the YAML: strict reading, `${VAR}` expansion, compiling, warnings, the state folder |
//! | `plugin` | loading libraries and lending them services: the only module that names `abi_stable` |
//! | `auth` | the decision: tokens, conditions, caches, provider instances as the decision sees them |
//! | `reload` | building a snapshot from a config, the reload task, file watching, reload status |
//! | `observe` | metrics and telemetry |
//! | `http` | the HTTP surface's parts: answers, listeners (TLS, slow-client guard) |
//! | `gateway` | the gate in front of every route, proxied routes, forward auth |
//! | `api` | the built-in API, `explain`, the OpenAPI documents |
//! | `app`, `cli` | wiring, and the command line |
//! | `embed` | the embedding API above |

// The library's surface: what an embedding program names.
pub use embed::{
    init_telemetry, AuthUser, BearerAuth, Builder, Error, GateExt, Gated, Gatekeeper, Portcullis,
};
pub use observe::telemetry::{LogFormat, Telemetry};
pub use reload::{ReloadError, ReloadErrorKind, ReloadOutcome, ReloadResult};

mod api;
mod app;
#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod config;
mod embed;
mod gateway;
mod http;
#[doc(hidden)]
pub mod jose;
#[doc(hidden)]
pub mod keys;
#[doc(hidden)]
pub mod matching;
mod observe;
#[doc(hidden)]
pub mod plugin;
// Public (hidden) while `routes[].openapi` is built in it: its new items are not all used yet.
#[doc(hidden)]
pub mod reload;
