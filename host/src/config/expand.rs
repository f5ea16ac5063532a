//! `${VAR}` expansion of string values, after YAML parsing (so a value can never inject YAML).
//!
//! Forms: `${NAME}` (an error when unset), `${NAME:-fallback}` (the fallback may itself contain
//! `${...}`), `$${` for a literal `${`. The name `portcullis.dev_secret` is provided by the host: a
//! development-only secret generated on first use and kept in the state folder.
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
}

/// The process environment plus the host's own variables.
pub struct EnvVars<'a> {
    /// Supplies `portcullis.dev_secret` on demand.
    pub dev_secret: &'a dyn Fn() -> Option<String>,
}

impl VarSource for EnvVars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        if name == "portcullis.dev_secret" {
            return (self.dev_secret)();
        }
        std::env::var(name).ok()
    }
}

/// Expands every string scalar under `value` in place; problems are recorded with key paths.
pub fn expand_tree(value: &mut Value, path: &str, vars: &dyn VarSource, issues: &mut Issues) {
    match value {
        Value::String(s) if s.contains('$') => match expand_str(s, vars) {
            Ok(out) => *s = out,
            Err(msg) => issues.push(path, msg),
        },
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
                        None => format!("environment variable `{name}` is not set"),
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
    fn tree_expansion_reports_paths_without_values() {
        let mut v: Value = serde_yaml::from_str("a: { b: [ok, '${NOPE}'] }").unwrap();
        let mut issues = Issues::default();
        expand_tree(&mut v, "", &vars(), &mut issues);
        assert_eq!(issues.0.len(), 1);
        assert_eq!(issues.0[0].path, "a.b[1]");
    }
}
