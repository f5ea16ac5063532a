//! CEL conditions (rules, `auth.authorize`, a provider's `authorize`), compiled once at load so a
//! bad expression is a config error rather than a request-time failure.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Variables a condition may use: `user` (the authenticated user's claims), `method` (upper-case)
/// and `path` (canonical).
pub const VARIABLES: [&str; 3] = ["user", "method", "path"];

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
    /// Canonical path.
    pub path: &'a str,
    /// The user's claims as a CEL value.
    pub user: &'a Value,
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
                "unknown variable(s) {} in CEL expression; available: user, method, path",
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
        ctx.add_variable_from_value("path", input.path.to_string());
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
            path: "/api/x",
            user: &u,
        })
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
