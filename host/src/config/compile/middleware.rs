//! `middleware:` compiled: instance names, plugin names, where each runs, and the plugin checks a
//! refused config still gets.

use super::*;

/// One `middleware:` entry, as written.
#[derive(serde::Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct RawMiddleware {
    name: String,
    plugin: String,
    #[serde(default)]
    config: Option<Value>,
    /// Path patterns where the instance runs on its own (as in `auth.protected`); absent: only on
    /// the `routes:` entries that name it.
    #[serde(default)]
    path: Option<Value>,
    #[serde(default)]
    methods: Option<StringOrList>,
    /// Also run on requests that need no user (public paths, `requires_auth: false` routes).
    #[serde(default)]
    public: bool,
}

/// One middleware instance.
#[derive(Debug)]
pub struct MiddlewareConfig {
    /// Instance name.
    pub name: String,
    /// Plugin name (from the plugin's middleware manifest).
    pub plugin: String,
    /// The `config:` mapping as JSON, `${VAR}` expanded.
    pub config: serde_json::Value,
    /// Where the instance runs on its own; `None`: only on the `routes:` entries that name it.
    pub paths: Option<PatternSet>,
    /// `paths` as written, for status and explain.
    pub paths_src: Vec<String>,
    /// Upper-case methods it runs for; `None` = every method.
    pub methods: Option<Vec<String>>,
    /// Whether it also runs on requests that need no user.
    pub public: bool,
}

impl MiddlewareConfig {
    /// Whether the instance runs for a `method` request (upper-case) on `path` (canonical) on its
    /// own (not counting `routes:` entries that name it).
    pub fn runs_on(&self, method: &str, path: &str) -> bool {
        self.methods_allow(method)
            && self
                .paths
                .as_ref()
                .is_some_and(|p| p.is_match(method, path))
    }

    /// Whether `methods:` lets a `method` request through to it. A list that names `GET` names
    /// `HEAD` too, as in every other method list (see `matching::pattern`): a route serves `HEAD`
    /// with its `GET`, and a `GET`-only instance must not be skipped by asking `HEAD`.
    pub fn methods_allow(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| {
            m.iter()
                .any(|x| x == method || x == "ALL" || x == "*" || (method == "HEAD" && x == "GET"))
        })
    }
}

/// The instances, and what of them the plugin checks need.
pub(super) fn compile_middleware(
    value: Option<Value>,
    issues: &mut Issues,
) -> (Vec<MiddlewareConfig>, Vec<InstanceCheck>) {
    let items = match value {
        None | Some(Value::Null) => return Default::default(),
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            issues.push("middleware", "must be a list of middleware instances");
            return Default::default();
        }
    };
    let mut out: Vec<MiddlewareConfig> = Vec::new();
    let mut checks: Vec<InstanceCheck> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("middleware[{i}]");
        let Some(raw) = de_value::<RawMiddleware>(item, &at, issues) else {
            continue;
        };
        if !providers::valid_name(&raw.name) {
            issues.push(
                format!("{at}.name"),
                "use lower-case letters, digits, `-` and `_` (1-64)",
            );
        }
        if out.iter().any(|m| m.name == raw.name) {
            issues.push(
                format!("{at}.name"),
                format!("duplicate middleware name `{}`", raw.name),
            );
        }
        if !providers::valid_name(&raw.plugin) {
            issues.push(format!("{at}.plugin"), "not a plugin name");
        }
        let Some(config) = providers::config_json(raw.config, &at, issues) else {
            continue;
        };
        if providers::valid_name(&raw.plugin) {
            checks.push(InstanceCheck {
                index: i,
                name: raw.name.clone(),
                plugin: raw.plugin.clone(),
                config: config.clone(),
                allow_http: false,
            });
        }
        let methods = raw
            .methods
            .map(|m| methods_upper(m.into_vec(), &format!("{at}.methods"), issues));
        let mut specs = Vec::new();
        let paths = match raw.path {
            None | Some(Value::Null) => None,
            Some(Value::Sequence(list)) if list.is_empty() => {
                issues.push(
                    format!("{at}.path"),
                    "an empty list matches nothing; leave it out to run only on the routes that name the instance",
                );
                None
            }
            // One pattern, or a list of them.
            Some(value) => {
                let list = match value {
                    Value::Sequence(list) => list,
                    one => vec![one],
                };
                let path = format!("{at}.path");
                let case = CaseMode::Insensitive;
                match auth::pattern_list(Some(list), &[], &path, case, issues, &mut specs) {
                    Some(set) => Some(set),
                    None => continue,
                }
            }
        };
        out.push(MiddlewareConfig {
            name: raw.name,
            plugin: raw.plugin,
            config,
            paths,
            paths_src: specs.iter().map(describe).collect(),
            methods,
            public: raw.public,
        });
    }
    (out, checks)
}

/// `routes[i].middleware`: names of instances, as indexes into `middleware:`.
pub(super) fn middleware_list(
    names: &[String],
    known: &[String],
    path: &str,
    issues: &mut Issues,
) -> Vec<usize> {
    let mut out = Vec::new();
    for (j, n) in names.iter().enumerate() {
        match known.iter().position(|k| k == n) {
            Some(i) if out.contains(&i) => issues.push(
                format!("{path}[{j}]"),
                format!("`{n}` is already listed; an instance runs once per request"),
            ),
            Some(i) => out.push(i),
            None => issues.push(
                format!("{path}[{j}]"),
                format!("no middleware instance is named `{n}`"),
            ),
        }
    }
    out
}
