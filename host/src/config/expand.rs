//! `${VAR}` expansion of string values, after YAML parsing (so a value can never inject YAML).
//!
//! Forms: `${NAME}` (an error when unset), `${NAME:-fallback}` (the fallback may itself contain
//! `${...}`), `$${` for a literal `${`. The name `portcullis.dev_secret` is provided by the host: a
//! development-only secret generated on first use and kept in the state folder.
//!
//! Strings that are code or patterns (CEL conditions, path patterns; see [`LITERAL_ONLY`]) are
//! never expanded: a variable's value pasted there would become part of the expression or the
//! pattern, so `${...}` in them is an error and only the `$${` escape is read.
//!
//! `${file:PATH}` is the content of a file (one trailing newline removed), relative paths from the
//! config's folder: a secret mounted as a file (a Kubernetes Secret volume). The compiler reads it
//! and records the path, so the file is watched and a new content reloads like a config edit.

use serde_yaml::Value;

use super::error::{join_path, Issues};

/// The prefix of a `${file:PATH}` reference; [`VarSource::get`] receives `file:PATH` whole.
pub const FILE_PREFIX: &str = "file:";

/// Where `${NAME}` values come from.
pub trait VarSource {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
    /// Why `name` has no value, when the source can say more than "not set" (one line, never a
    /// secret).
    fn why_unset(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The process environment plus the host's own variables.
pub struct EnvVars<'a> {
    /// Supplies `portcullis.dev_secret` on demand, or says why it cannot.
    pub dev_secret: &'a dyn Fn() -> Result<String, String>,
}

impl VarSource for EnvVars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        if name == DEV_SECRET {
            return (self.dev_secret)().ok();
        }
        std::env::var(name).ok()
    }

    fn why_unset(&self, name: &str) -> Option<String> {
        if name == DEV_SECRET {
            return (self.dev_secret)().err();
        }
        None
    }
}

/// The host's own variable: the development secret.
const DEV_SECRET: &str = "portcullis.dev_secret";

/// Key paths (`[*]` for any index) whose strings, and everything under them, are CEL
/// expressions or path patterns: `${...}` is refused there.
pub const LITERAL_ONLY: [&str; 7] = [
    "auth.protected[*]",
    "auth.public[*]",
    "auth.rules[*].path",
    "auth.rules[*].condition",
    "auth.authorize",
    "providers[*].authorize",
    "routes[*].path",
];

/// Whether the string at key path `path` is code or a pattern (see [`LITERAL_ONLY`]).
fn literal_only(path: &str) -> bool {
    // Every `[<digits>]` becomes `[*]`.
    let mut generic = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        generic.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if close > 0 && after[..close].bytes().all(|b| b.is_ascii_digit()) => {
                generic.push_str("[*]");
                rest = &after[close + 1..];
            }
            _ => {
                generic.push('[');
                rest = after;
            }
        }
    }
    generic.push_str(rest);
    LITERAL_ONLY.iter().any(|p| {
        generic
            .strip_prefix(p)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
    })
}

/// A code or pattern string: `$${` becomes `${`, and `${` is an error.
fn literal_str(input: &str) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
        } else {
            return Err("`${...}` is not expanded in CEL expressions and path patterns (a variable's value would become part of the expression); write the value literally, or `$${` for a literal `${`".into());
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands every string scalar under `value` in place; problems are recorded with key paths.
pub fn expand_tree(value: &mut Value, path: &str, vars: &dyn VarSource, issues: &mut Issues) {
    match value {
        Value::String(s) if s.contains('$') => {
            let expanded = if literal_only(path) {
                literal_str(s)
            } else {
                expand_str(s, vars)
            };
            match expanded {
                Ok(out) => *s = out,
                Err(msg) => issues.push(path, msg),
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &join_path(path, &format!("[{i}]")), vars, issues);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                expand_tree(v, &join_path(path, &key), vars, issues);
            }
        }
        Value::Tagged(t) => expand_tree(&mut t.value, path, vars, issues),
        _ => {}
    }
}

/// Expands one string.
pub fn expand_str(input: &str, vars: &dyn VarSource) -> Result<String, String> {
    expand_depth(input, vars, 0)
}

fn expand_depth(input: &str, vars: &dyn VarSource, depth: usize) -> Result<String, String> {
    if depth > 4 {
        return Err("`${...}` fallbacks nest too deeply".into());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = matching_brace(tail).ok_or("unclosed `${` in value")?;
            let inner = &tail[..end];
            let (name, fallback) = match inner.find(":-") {
                Some(p) => (&inner[..p], Some(&inner[p + 2..])),
                None => (inner, None),
            };
            let file = name.strip_prefix(FILE_PREFIX);
            if file.is_some_and(|p| p.trim().is_empty()) {
                return Err("`${file:...}` needs a path".into());
            }
            if file.is_none()
                && (name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            {
                return Err("invalid variable name in `${...}`".into());
            }
            match (vars.get(name).filter(|v| !v.is_empty()), fallback) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(fb)) => out.push_str(&expand_depth(fb, vars, depth + 1)?),
                (None, None) => {
                    return Err(match file {
                        Some(path) => format!("file `{path}` cannot be read or is empty"),
                        None => vars
                            .why_unset(name)
                            .unwrap_or_else(|| format!("environment variable `{name}` is not set")),
                    });
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Index of the `}` closing a `${` whose content starts at `s`, allowing nested `${...}`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>);
    impl VarSource for Map {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    fn vars() -> Map {
        Map(HashMap::from([("A", "alpha"), ("EMPTY", "")]))
    }

    #[test]
    fn expands_set_variables() {
        assert_eq!(expand_str("x-${A}-y", &vars()).unwrap(), "x-alpha-y");
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let e = expand_str("${NOPE}", &vars()).unwrap_err();
        assert!(e.contains("`NOPE`"), "{e}");
    }

    #[test]
    fn fallbacks_nest() {
        assert_eq!(expand_str("${NOPE:-${A}}", &vars()).unwrap(), "alpha");
        assert_eq!(expand_str("${NOPE:-plain}", &vars()).unwrap(), "plain");
        assert_eq!(expand_str("${EMPTY:-used}", &vars()).unwrap(), "used");
    }

    #[test]
    fn escapes_and_lone_dollars() {
        assert_eq!(
            expand_str("$${A} costs $5", &vars()).unwrap(),
            "${A} costs $5"
        );
    }

    #[test]
    fn file_references_pass_their_path_through_and_name_it_when_missing() {
        struct Files;
        impl VarSource for Files {
            fn get(&self, name: &str) -> Option<String> {
                (name == "file:/run/secrets/jwt").then(|| "s3cret".to_string())
            }
        }
        assert_eq!(
            expand_str("k=${file:/run/secrets/jwt}", &Files).unwrap(),
            "k=s3cret"
        );
        let e = expand_str("${file:/nope}", &Files).unwrap_err();
        assert!(e.contains("`/nope`") && e.contains("cannot be read"), "{e}");
        assert_eq!(expand_str("${file:/nope:-dev}", &Files).unwrap(), "dev");
        assert!(expand_str("${file:}", &Files).is_err());
        assert!(expand_str("${file: }", &Files).is_err());
    }

    #[test]
    fn unclosed_is_an_error() {
        assert!(expand_str("${A", &vars()).is_err());
        assert!(expand_str("${}", &vars()).is_err());
        assert!(expand_str("${A B}", &vars()).is_err());
    }

    #[test]
    fn code_and_pattern_paths_are_recognised_at_any_depth() {
        for p in [
            "auth.protected[0]",
            "auth.public[3]",
            "auth.public[1][0]",
            "auth.public[1][0].regex",
            "auth.public[2].regex",
            "auth.rules[0].path",
            "auth.rules[12].path[1]",
            "auth.rules[0].path.regex",
            "auth.rules[0].path[2].regex",
            "auth.rules[4].condition",
            "auth.authorize",
            "providers[7].authorize",
            "routes[0].path",
        ] {
            assert!(literal_only(p), "{p}");
        }
        for p in [
            "auth.protected",
            "auth.rules[0].paths",
            "auth.rules[0].allow",
            "auth.authorized",
            "auth.token.header",
            "providers[0].config.secret",
            "providers[0].config.authorize",
            "routes[0].upstream",
            "routes[x].path",
            "server.host",
        ] {
            assert!(!literal_only(p), "{p}");
        }
    }

    #[test]
    fn literal_strings_keep_escapes_and_refuse_variables() {
        assert_eq!(literal_str("cost is $5").unwrap(), "cost is $5");
        assert_eq!(literal_str("'$${A}' + x").unwrap(), "'${A}' + x");
        assert_eq!(literal_str("$$${A}").unwrap(), "$${A}");
        let e = literal_str("user.org == '${A}'").unwrap_err();
        assert!(
            e.contains("write the value literally") && e.contains("$${"),
            "{e}"
        );
        assert!(literal_str("x $${A} ${A}").is_err());
    }

    /// Regression: a variable's value was pasted into CEL and path patterns, where it became code
    /// (`x' || true || '` as an organisation id).
    #[test]
    fn variables_in_cel_and_patterns_are_errors_at_their_key_paths() {
        let yaml = r#"
auth:
  protected: ["/api/${A}/*", "/ok/*"]
  public: ["/h", ["/p/${A}", GET], { regex: "^/${A}" }, [{ regex: "^/x${A}" }, GET]]
  authorize: "user.org == '${A}'"
  rules:
    - { path: "/r/${A}", condition: "user.org == '${A}'", allow: true }
    - { path: ["/ok", "/s/${A}", { regex: "^/t${A}" }], allow: true }
    - { path: { regex: "^/u${A}" }, allow: true }
    - { path: "/literal/$${A}", condition: "'$${A}' == user.x", allow: true }
providers:
  - { name: p, plugin: jwt, config: { secret: "${A}", authorize: "${A}" }, authorize: "user.org == '${A}'" }
routes:
  - { path: "/route/${A}", upstream: "http://${A}:8080" }
"#;
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        let mut issues = Issues::default();
        expand_tree(&mut v, "", &vars(), &mut issues);
        let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "auth.protected[0]",
                "auth.public[1][0]",
                "auth.public[2].regex",
                "auth.public[3][0].regex",
                "auth.authorize",
                "auth.rules[0].path",
                "auth.rules[0].condition",
                "auth.rules[1].path[1]",
                "auth.rules[1].path[2].regex",
                "auth.rules[2].path.regex",
                "providers[0].authorize",
                "routes[0].path",
            ]
        );
        for i in &issues.0 {
            assert!(!i.message.contains("alpha"), "{i}");
        }
        // Everything else is expanded as before; the escape stays literal in code.
        assert_eq!(v["providers"][0]["config"]["secret"], "alpha");
        assert_eq!(v["providers"][0]["config"]["authorize"], "alpha");
        assert_eq!(v["routes"][0]["upstream"], "http://alpha:8080");
        assert_eq!(v["auth"]["rules"][3]["path"], "/literal/${A}");
        assert_eq!(v["auth"]["rules"][3]["condition"], "'${A}' == user.x");
    }

    #[test]
    fn tree_expansion_reports_paths_without_values() {
        let mut v: Value = serde_yaml::from_str("a: { b: [ok, '${NOPE}'] }").unwrap();
        let mut issues = Issues::default();
        expand_tree(&mut v, "", &vars(), &mut issues);
        assert_eq!(issues.0.len(), 1);
        assert_eq!(issues.0[0].path, "a.b[1]");
    }
}
