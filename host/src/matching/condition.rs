//! CEL conditions (rules, `auth.authorize`, a provider's `authorize`), compiled once at load so a
//! bad expression is a config error rather than a request-time failure.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Variables a condition may use: `user` (the authenticated user's claims), `method` (upper-case),
/// `path` (canonical, in lower case: path patterns that require auth ignore case, and so must a
/// condition, or `/API/x` would evade `path.startsWith('/api/')`), `provider` (the instance that
/// vouched for the user), `iss` (the user's `iss` claim, `""` when it has none) and `host` (the
/// request's host in lower case, without the port; `""` when the request named none).
pub const VARIABLES: [&str; 6] = ["user", "method", "path", "provider", "iss", "host"];

/// A compiled CEL expression that must evaluate to a boolean.
pub struct Condition {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

/// What a condition is evaluated against.
pub struct CondInput<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Canonical path (given to the condition in lower case).
    pub path: &'a str,
    /// The user's claims as a CEL value.
    pub user: &'a Value,
    /// The provider instance that vouched for the user.
    pub provider: &'a str,
    /// The user's `iss` claim, when it is a string.
    pub iss: Option<&'a str>,
    /// The request's `Host` as sent (or the host a forward-auth proxy named), if any.
    pub host: Option<&'a str>,
}

/// A `Host` value as a condition sees it: lower case, without the port (`[::1]:80` → `[::1]`).
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let without_port = if h.starts_with('[') {
        h.find(']').map_or(h, |i| &h[..=i])
    } else {
        match h.rsplit_once(':') {
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => h,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

impl Condition {
    /// Compiles `source`; the error is one line naming what is wrong.
    pub fn compile(source: &str) -> Result<Condition, String> {
        let program = ENV.compile(source).map_err(|e| {
            let msg = e.to_string();
            let line = msg
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("syntax error")
                .trim();
            format!("invalid CEL expression: {line}")
        })?;
        let refs = program.references();
        let unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown variable(s) {} in CEL expression; available: user, method, path, provider, iss, host",
                unknown
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Condition {
            source: source.to_string(),
            program,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition. `Ok(bool)` for a boolean result; `Err` for an evaluation error
    /// (a missing claim, a type mismatch) or a non-boolean result. Callers decide how an error
    /// fails closed.
    pub fn eval(&self, input: &CondInput<'_>) -> Result<bool, String> {
        let mut ctx = Context::with_env(ENV.clone());
        ctx.add_variable_from_value("user", input.user.clone());
        ctx.add_variable_from_value("method", input.method.to_string());
        ctx.add_variable_from_value("path", input.path.to_ascii_lowercase());
        ctx.add_variable_from_value("provider", input.provider.to_string());
        ctx.add_variable_from_value("iss", input.iss.unwrap_or_default().to_string());
        ctx.add_variable_from_value("host", input.host.map(host_name).unwrap_or_default());
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(_) => Err("condition did not evaluate to a boolean".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Converts claims to a CEL value.
pub fn user_value(claims: &serde_json::Value) -> Value {
    cel::to_value(claims).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, user: serde_json::Value) -> Result<bool, String> {
        let c = Condition::compile(src).unwrap();
        let u = user_value(&user);
        c.eval(&CondInput {
            method: "GET",
            path: "/API/x",
            user: &u,
            provider: "corp",
            iss: user.get("iss").and_then(serde_json::Value::as_str),
            host: Some("Admin.Example.test:8443"),
        })
    }

    #[test]
    fn provider_iss_and_host_are_visible_and_path_is_lower_case() {
        assert_eq!(eval("provider == 'corp'", json!({})), Ok(true));
        assert_eq!(
            eval(
                "iss == 'https://corp.test'",
                json!({"iss": "https://corp.test"})
            ),
            Ok(true)
        );
        assert_eq!(eval("iss == ''", json!({"iss": 7})), Ok(true));
        assert_eq!(eval("host == 'admin.example.test'", json!({})), Ok(true));
        assert_eq!(eval("path.startsWith('/api/')", json!({})), Ok(true));
    }

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("Example.COM:80"), "example.com");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn evaluates_claims_method_and_path() {
        assert_eq!(
            eval("user.role == 'admin'", json!({"role":"admin"})),
            Ok(true)
        );
        assert_eq!(
            eval("user.role == 'admin'", json!({"role":"user"})),
            Ok(false)
        );
        assert_eq!(
            eval("method == 'GET' && path.startsWith('/api/')", json!({})),
            Ok(true)
        );
        assert_eq!(
            eval("'admin' in user.roles", json!({"roles":["a","admin"]})),
            Ok(true)
        );
        assert_eq!(eval("has(user.role)", json!({})), Ok(false));
    }

    #[test]
    fn missing_claim_is_an_error_not_a_value() {
        assert!(eval("user.role == 'admin'", json!({})).is_err());
    }

    #[test]
    fn non_boolean_is_an_error() {
        assert!(eval("user.role", json!({"role":"x"})).is_err());
    }

    #[test]
    fn syntax_errors_and_unknown_variables_fail_compilation() {
        assert!(Condition::compile("user.role ==")
            .unwrap_err()
            .starts_with("invalid CEL"));
        let e = Condition::compile("request.x == 1").unwrap_err();
        assert!(e.contains("`request`"), "{e}");
    }
}
