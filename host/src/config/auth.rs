//! `auth:` compiled: the rules, the patterns and how the token is found. Read by the decision
//! engine (`crate::auth`) and by the config's own warnings (`lint`).

use crate::matching::{Condition, PatternSet, PatternSpec};

/// How the token is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// Header carrying `Bearer <token>`.
    pub header: String,
    /// The same, parsed once (a lookup by `&str` parses the name on every request).
    pub header_name: poem::http::HeaderName,
    /// Query parameter, when opted in.
    pub query: Option<String>,
    /// Cookie, when opted in.
    pub cookie: Option<String>,
}

/// One rule.
#[derive(Debug)]
pub struct Rule {
    /// Condition, if any; a rule without one always applies.
    pub condition: Option<Condition>,
    /// The provider instances whose users the rule is about; `None`: every provider's.
    pub providers: Option<Vec<String>>,
    /// Allow or deny when the rule applies.
    pub allow: bool,
}

/// `auth:` compiled.
#[derive(Debug)]
pub struct AuthConfig {
    /// Paths that need a user (case-insensitive: fail closed).
    pub protected: PatternSet,
    /// Paths open to all (case-sensitive: fail closed).
    pub public: PatternSet,
    /// `protected` entries as text, by index (for explanations).
    pub protected_src: Vec<String>,
    /// `public` entries as text, by index (for explanations).
    pub public_src: Vec<String>,
    /// Token sources.
    pub token: TokenConfig,
    /// `authorize` CEL, consulted when no rule matched.
    pub authorize: Option<Condition>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// Rule path patterns (case-insensitive); spec `i` belongs to rule `rule_of_spec[i]`.
    pub rule_paths: PatternSet,
    /// Maps a `rule_paths` index to its rule.
    pub rule_of_spec: Vec<usize>,
    /// `public` entries as compiled, by index (for the config's warnings).
    pub public_specs: Vec<PatternSpec>,
    /// `rule_paths` as compiled, by index (for the config's warnings).
    pub rule_specs: Vec<PatternSpec>,
}
