//! What a rule matches: request-path canonicalization, compiled path-pattern sets, and CEL
//! conditions. Shared by `config` (which compiles them) and `auth` (which evaluates them); imports
//! neither.
//!
//! * [`canonicalize`] turns the raw request-target path into the one canonical path that is used both for
//!   matching and for serving (see `canonical.rs` for the exact rules).
//! * [`PatternSet`] compiles public / protected / rule patterns once and answers "which patterns match this
//!   (method, canonical path)" with an indexed lookup (see `pattern.rs` for the pattern semantics).
//!
//! Callers must pass the output of [`canonicalize`] to the [`PatternSet`] queries; matching a raw path is a bug.

mod canonical;
pub mod condition;
mod pattern;

pub use canonical::{canonicalize, PathError, MAX_PATH_LEN};
pub use condition::Condition;
pub use pattern::{
    CaseMode, PatternError, PatternKind, PatternSet, PatternSpec, MAX_PATTERN_SEGMENTS,
    MAX_REGEX_LEN,
};
