//! Helpers every part of the config compiler uses: reading a YAML value into a type with every
//! unknown key and type error recorded at its key path, durations, method lists, provider lists,
//! and a pattern entry as one line of text.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::error::{join_path, Issues};
use crate::matching::{PatternKind, PatternSpec};

pub(super) fn de_value<T: DeserializeOwned>(
    value: Value,
    path: &str,
    issues: &mut Issues,
) -> Option<T> {
    let mut unknown = Vec::new();
    let result: Result<T, _> = {
        let mut record = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
        let ignored = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(ignored)
    };
    for u in unknown {
        issues.push(join_path(path, &bracket_indices(&u)), "unknown key");
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path.to_string()
            } else {
                join_path(path, &inner)
            };
            let message = e.into_inner().to_string();
            // Serde quotes the value it refused. Elsewhere that is what the user needs to see
            // (`allow: yes`); a `${VAR}` value is removed from every message at the end.
            let message = if may_hold_secret(&at) {
                portcullis_plugin_api::redact_serde_error(&message)
            } else {
                message
            };
            issues.push(at, message);
            None
        }
    }
}

/// Whether a value at key path `at` may be a secret written literally: a plugin's instance
/// settings (`providers[i].config...`), where client secrets and keys live.
fn may_hold_secret(at: &str) -> bool {
    at.strip_prefix("providers[")
        .and_then(|rest| rest.split_once("]."))
        .is_some_and(|(_, key)| {
            key == "config" || key.starts_with("config.") || key.starts_with("config[")
        })
}

/// serde_ignored writes sequence indices as `.0`; key paths here use `[0]`.
fn bracket_indices(p: &str) -> String {
    p.split('.')
        // serde_ignored marks the `Some` of an optional section with `?`: not a key.
        .filter(|seg| *seg != "?")
        .map(|seg| {
            if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
                format!("[{seg}]")
            } else {
                format!(".{seg}")
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

pub(super) fn duration(
    value: Option<&str>,
    default: Duration,
    path: &str,
    issues: &mut Issues,
) -> Duration {
    match value {
        None => default,
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                issues.push(path, "must be greater than zero");
                default
            }
            Err(_) => {
                issues.push(path, "not a duration (examples: 500ms, 30s, 3m)");
                default
            }
        },
    }
}

pub(super) const METHODS: [&str; 11] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "ALL", "*",
];

pub(super) fn methods_upper(methods: Vec<String>, path: &str, issues: &mut Issues) -> Vec<String> {
    methods
        .into_iter()
        .map(|m| {
            let up = m.to_ascii_uppercase();
            if !METHODS.contains(&up.as_str()) {
                issues.push(path, format!("unknown HTTP method `{m}`"));
            }
            up
        })
        .collect()
}

/// A pattern entry as one line of text: `/api/*`, `regex:^/docs/`, with `[GET, POST]` when
/// restricted to methods.
pub(super) fn describe(spec: &PatternSpec) -> String {
    let mut s = match &spec.kind {
        PatternKind::Path(p) => p.clone(),
        PatternKind::Regex(r) => format!("regex:{r}"),
    };
    if let Some(m) = &spec.methods {
        s.push_str(&format!(" [{}]", m.join(", ")));
    }
    s
}

/// Checks a `providers:` list at `path` against the configured instance names.
pub(super) fn provider_list(names: &[String], known: &[String], path: &str, issues: &mut Issues) {
    if names.is_empty() {
        issues.push(
            path,
            "an empty list names nobody; leave it out to mean every provider",
        );
    }
    for (j, n) in names.iter().enumerate() {
        if !known.contains(n) {
            issues.push(
                format!("{path}[{j}]"),
                format!("no provider instance is named `{n}`"),
            );
        }
    }
}
