//! # Portcullis
//!
//! An authenticating HTTP server: identity providers are plugins loaded at run time through
//! `abi_stable`, the YAML config and the plugins reload live, and every route is documented with
//! OpenAPI. See `README.md` and `docs/` for the tour; `main.rs` only parses the command line.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn_guard;
pub mod explain;
pub mod forward_auth;
pub mod http;
pub mod jose;
pub mod keys;
pub mod matching;
pub mod metrics;
pub mod plugin;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod watch;
