//! # Portcullis
//!
//! An authenticating HTTP server: identity providers are plugins loaded at run time through
//! `abi_stable`, the YAML config and the plugins reload live, and every route is documented with
//! OpenAPI. See `README.md` and `docs/` for the tour; `main.rs` only parses the command line.
//!
//! The folders, from the bottom up (each module's doc says what it owns and what it must not
//! import):
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

// The library's surface: what an embedding program or a test names. The modules behind it are
// public for the server's own tests, fuzzers and benchmarks, and hidden from the documentation.
pub use app::App;
pub use auth::{AuthUser, Decision, Denial};
pub use config::{compile_str, load_file, Config, ConfigError};
pub use reload::{ReloadError, ReloadErrorKind, ReloadOutcome, ReloadResult, Snapshot};

#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod app;
#[doc(hidden)]
pub mod auth;
pub mod cli;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod gateway;
#[doc(hidden)]
pub mod http;
#[doc(hidden)]
pub mod jose;
#[doc(hidden)]
pub mod keys;
#[doc(hidden)]
pub mod matching;
#[doc(hidden)]
pub mod observe;
#[doc(hidden)]
pub mod plugin;
#[doc(hidden)]
pub mod reload;
