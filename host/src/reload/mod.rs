//! Live change: a [`Snapshot`] built from a config (plugins loaded, instances built or kept), the
//! watcher that notices file changes, and what the last reloads did.
//!
//! Must not import `http`, `gateway` or `api`.

mod error;
pub mod route_docs;
pub mod snapshot;
pub mod trigger;
pub mod watch;

pub use error::{ReloadError, ReloadErrorKind};
pub use snapshot::Snapshot;
pub use trigger::{ReloadOutcome, ReloadRequest, ReloadResult, Reloader};
