#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Config files: every shipped example is valid, and broken configs are refused with key paths,
//! all errors at once, secrets never echoed.

use std::process::Command;

use portcullis_tests::*;

fn check(path: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("check")
        .arg(path)
        .env("PORTCULLIS_STATE_DIR", tempfile::tempdir().unwrap().path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_shipped_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let plugins = target_dir();
            let (ok, out) = check(
                &path,
                &[("PORTCULLIS_PLUGINS_DIR", plugins.to_str().unwrap())],
            );
            assert!(ok, "{}: {out}", path.display());
            // No config warning (the test plugins in that folder are warned about, not the file).
            assert!(
                !out.contains(&format!("warning: {}", path.display())),
                "{}: {out}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 1, "no configs found in {}", dir.display());
}

/// (config text, key paths that must be reported)
/// Broken configs `check` must name by key path, through the binary. Only what needs the real
/// binary and a real plugin is here: every error the compiler finds on its own is a unit test in
/// `host/src/config/tests.rs`, where it runs in microseconds instead of a process each.
fn broken() -> Vec<(String, Vec<&'static str>)> {
    let base = |auth: &str| jwt_config(auth);
    vec![
        // One compiler error, to see `check` print it with its key path.
        (
            base("").replace("  port: 0\n", "  port: 0\n  prot: 1\n"),
            vec!["server.prot"],
        ),
        // What only a loaded plugin can say.
        (
            base("").replace("plugin: jwt", "plugin: nosuch"),
            vec!["providers[0] (main).plugin", "nosuch"],
        ),
        (
            base("").replace("      issuer:", "      issuerr: x\n      issuer:"),
            vec!["providers[0] (main)", "issuerr"],
        ),
        (
            base("").replace(&format!("secret: \"{SECRET}\""), "secret: \"short\""),
            vec!["providers[0] (main)", "secret"],
        ),
        (
            base("").replace(
                &format!("secret: \"{SECRET}\""),
                &format!("secret: \"{SECRET}\"\n      algorithms: [RS256]"),
            ),
            vec!["providers[0] (main)", "algorithms"],
        ),
    ]
}

#[test]
fn broken_configs_name_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cases = broken();
    for (i, (text, expected)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&path, &text).unwrap();
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
        let _ = std::fs::copy(
            jwt_plugin(),
            dir.path().join("plugins/libportcullis_plugin_jwt.so"),
        );
        let (ok, out) = check(&path, &[]);
        assert!(!ok, "case {i} passed:\n{text}");
        for e in expected {
            assert!(
                out.contains(e),
                "case {i}: expected `{e}` in:\n{out}\nconfig:\n{text}"
            );
        }
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.yaml");
    std::fs::write(
        &path,
        "version: 1\nserver:\n  prot: 1\n  timeout: soon\nauth:\n  rules:\n    - path: /a/*\n      condition: \"x ==\"\n      allow: true\n    - path: /b/*\n      allow: maybe\n",
    )
    .unwrap();
    let (ok, out) = check(&path, &[]);
    assert!(!ok);
    for e in [
        "server.prot",
        "server.timeout",
        "auth.rules[0].condition",
        "auth.rules[1].allow",
    ] {
        assert!(out.contains(e), "`{e}` missing from:\n{out}");
    }
}

#[test]
fn secrets_never_appear_in_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.yaml");
    let secret = "sk_live_VERY_SECRET_VALUE_123456789";
    // The secret lands where a number is expected: serde would normally quote it back.
    std::fs::write(
        &path,
        "version: 1\nserver:\n  port: ${LEAKY}\nauth:\n  token: { header: \"${LEAKY}!\" }\n",
    )
    .unwrap();
    let (ok, out) = check(&path, &[("LEAKY", secret)]);
    assert!(!ok);
    assert!(
        out.contains("server.port") && out.contains("auth.token.header"),
        "{out}"
    );
    assert!(!out.contains(secret), "secret leaked:\n{out}");
}

/// Regression (found by `scripts/fuzz.sh config`): a pattern or CEL expression built from a
/// `${VAR}` quoted the variable's value in its error message.
#[test]
fn a_var_value_quoted_by_a_pattern_or_cel_error_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quoted.yaml");
    let secret = "sk_live_QUOTED_SECRET_987654321";
    std::fs::write(
        &path,
        "version: 1\nauth:\n  public: [\"/x${LEAKY}*\"]\n  rules:\n    - path: /api/*\n      condition: \"user.key == '${LEAKY}' &&\"\n      allow: true\n",
    )
    .unwrap();
    let (ok, out) = check(&path, &[("LEAKY", secret)]);
    assert!(!ok);
    assert!(
        out.contains("auth.public[0]") && out.contains("auth.rules[0].condition"),
        "{out}"
    );
    assert!(!out.contains(secret), "secret leaked:\n{out}");
}

/// Regression: `${VAR}` was expanded inside CEL expressions and path patterns, so a variable's
/// value became code (`x' || true || '` as an organisation id allowed everyone).
#[test]
fn a_var_in_a_cel_expression_or_path_pattern_is_refused_at_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        jwt_plugin(),
        dir.path().join("plugins/libportcullis_plugin_jwt.so"),
    )
    .unwrap();
    let injected = "x' || true || '";
    let path = dir.path().join("vars.yaml");
    let text = jwt_config(
        "auth:\n  protected: [\"/api/*\", \"/${ZONE}/*\"]\n  public: [[\"/${ZONE}\", GET]]\n  authorize: \"user.org == '${ORG}'\"\n  rules:\n    - { path: { regex: \"^/${ZONE}\" }, condition: \"user.org == '${ORG}'\", allow: true }\n",
    )
    .replace(
        "    plugin: jwt\n",
        "    plugin: jwt\n    authorize: \"user.org == '${ORG}'\"\n",
    )
    .replace(
        "providers:",
        "routes:\n  - { path: \"/${ZONE}/up\", upstream: \"http://127.0.0.1:9\" }\nproviders:",
    );
    std::fs::write(&path, &text).unwrap();
    let (ok, out) = check(&path, &[("ORG", injected), ("ZONE", "zone")]);
    assert!(!ok, "{out}");
    for at in [
        "auth.protected[1]",
        "auth.public[0][0]",
        "auth.authorize",
        "auth.rules[0].path.regex",
        "auth.rules[0].condition",
        "providers[0].authorize",
        "routes[0].path",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{at}: `${{...}}` is not expanded"))),
            "no error at {at} in:\n{out}"
        );
    }
    assert!(out.contains("write the value literally"), "{out}");
    assert!(!out.contains(injected), "{out}");
    // Written literally, the same config is fine; `$${` is still a literal `${`.
    let literal = text
        .replace("${ORG}", "acme")
        .replace("${ZONE}", "zone")
        .replace(
            "  authorize: \"user.org == 'acme'\"\n",
            "  authorize: \"user.org != '$${x}'\"\n",
        );
    std::fs::write(&path, &literal).unwrap();
    let (ok, out) = check(&path, &[]);
    assert!(ok, "{out}");
}

/// The development secret (`${portcullis.dev_secret}`) is refused when someone else could have
/// written it; the config error names the key, the file and what is wrong.
#[test]
fn a_dev_secret_others_can_write_is_refused() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        jwt_plugin(),
        dir.path().join("plugins/libportcullis_plugin_jwt.so"),
    )
    .unwrap();
    let path = dir.path().join("dev.yaml");
    std::fs::write(
        &path,
        jwt_config("").replace(
            &format!("\"{SECRET}\""),
            "${JWT_AUTH_SECRET:-${portcullis.dev_secret}}",
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let state_env = [("PORTCULLIS_STATE_DIR", state.to_str().unwrap())];
    // First use: made 0600 in a 0700 folder.
    let (ok, out) = check(&path, &state_env);
    assert!(ok, "{out}");
    let file = state.join("dev-secret");
    assert_eq!(std::fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    // Someone else could have chosen it: refused.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o622)).unwrap();
    let (ok, out) = check(&path, &state_env);
    assert!(!ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("providers[0].config.secret"))
        .unwrap_or_else(|| panic!("no error at the secret's key:\n{out}"));
    assert!(
        line.contains(&file.display().to_string())
            && line.contains("group- and world-writable (mode 0622)"),
        "{line}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, out) = check(&path, &state_env);
    assert!(
        !ok && out.contains(&format!("{} is group- and world-writable", state.display())),
        "{out}"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (ok, out) = check(&path, &state_env);
    assert!(ok, "{out}");
}

/// A folder with the jwt plugin in `plugins/`, for configs that name it.
fn with_jwt_plugin() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        jwt_plugin(),
        dir.path().join("plugins/libportcullis_plugin_jwt.so"),
    )
    .unwrap();
    dir
}

/// Regression: the plugin checks (an unknown plugin, an instance `config:` its plugin refuses)
/// ran only once the rest of the file was clean, so each fix revealed the next problem.
#[test]
fn plugin_problems_are_reported_with_the_configs_own_in_one_pass() {
    let dir = with_jwt_plugin();
    let path = dir.path().join("many.yaml");
    let text = jwt_config(
        "auth:\n  protectd: [\"/api/*\"]\n  rules:\n    - path: /api/*\n      condition: \"claims.role == 'admin'\"\n      allow: true\n",
    )
    .replace("      issuer:", "      issuerr: x\n      issuer:")
    .replace(
        "auth:\n",
        &format!("  - name: main\n    plugin: jwt\n    config: {{ secret: \"{SECRET}\" }}\n  - name: other\n    plugin: jwtt\nauth:\n"),
    );
    std::fs::write(&path, &text).unwrap();
    let (ok, out) = check(&path, &[]);
    assert!(!ok, "{out}");
    for e in [
        "auth.protectd: unknown key",
        "auth.rules[0].condition",
        "providers[1].name: duplicate provider name `main`",
        "providers[0] (main): config rejected by plugin",
        "issuerr",
        "providers[2] (other).plugin: no loaded provider plugin is named `jwtt`",
    ] {
        assert!(
            out.contains(e),
            "`{e}` missing from:\n{out}\nconfig:\n{text}"
        );
    }
    // Every line names the file once.
    let file = path.display().to_string();
    for line in out.lines() {
        assert_eq!(line.matches(&file).count(), 1, "{line}");
    }
}

/// Regression: a YAML syntax error named the file twice (`dup.yaml: dup.yaml: not valid YAML`).
#[test]
fn a_yaml_syntax_error_names_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.yaml");
    std::fs::write(&path, "version: 1\nserver: [\n").unwrap();
    let (ok, out) = check(&path, &[]);
    assert!(!ok);
    let file = path.display().to_string();
    assert!(
        out.starts_with(&format!("{file}: not valid YAML: ")),
        "{out}"
    );
    assert_eq!(out.matches(&file).count(), 1, "{out}");
}

/// Regression: every refused value was masked as if it were a secret (`allow: "…"`), so the
/// message did not say what was wrong. Only `${VAR}` values (even as serde escapes them) stay out.
#[test]
fn a_plain_value_is_quoted_in_a_type_error_but_a_var_value_is_not() {
    let dir = with_jwt_plugin();
    let path = dir.path().join("typed.yaml");
    std::fs::write(
        &path,
        jwt_config("auth:\n  rules:\n    - path: /api/*\n      allow: yes\n")
            .replace("  port: 0\n", "  port: ${LEAKY}\n"),
    )
    .unwrap();
    let secret = "sk_live_\"QUOTED\\SECRET_42";
    let (ok, out) = check(&path, &[("LEAKY", secret)]);
    assert!(!ok);
    assert!(
        out.contains("auth.rules[0].allow: invalid type: string \"yes\", expected a boolean"),
        "{out}"
    );
    assert!(out.contains("server.port"), "{out}");
    assert!(!out.contains("QUOTED"), "secret leaked:\n{out}");
}

/// Issue #18: a public pattern inside a route that needs a user, and a rule behind a wider one
/// with no condition, never take effect; `check` says so by key path and still passes.
#[test]
fn check_warns_of_a_dead_public_pattern_and_a_shadowed_rule_and_passes() {
    let dir = with_jwt_plugin();
    let path = dir.path().join("dead.yaml");
    std::fs::write(
        &path,
        jwt_config(
            "auth:\n  public: [/health, /vault/open]\n  rules:\n    - path: /api/*\n      allow: true\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n",
        ) + "routes:\n  - path: /vault/*\n    requires_auth: true\n    upstream: http://127.0.0.1:9/\n",
    )
    .unwrap();
    let (ok, out) = check(&path, &[]);
    assert!(ok, "warnings alone must not fail check:\n{out}");
    let file = path.display().to_string();
    for e in [
        format!("warning: {file}: auth.public[1]: never applies: routes[0] (`/vault/*`)"),
        format!("warning: {file}: auth.rules[1]: never decides: auth.rules[0] (`/api/*`)"),
        format!("{file}: ok (1 provider instance(s), 2 warning(s))"),
    ] {
        assert!(out.contains(&e), "`{e}` missing from:\n{out}");
    }
    assert_eq!(out.matches("warning:").count(), 2, "{out}");

    // The same file with the pattern taken out and the rules in the right order: silent.
    std::fs::write(
        &path,
        jwt_config(
            "auth:\n  public: [/health]\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/*\n      allow: true\n",
        ) + "routes:\n  - path: /vault/*\n    requires_auth: true\n    upstream: http://127.0.0.1:9/\n",
    )
    .unwrap();
    let (ok, out) = check(&path, &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("warning"), "{out}");
    assert!(
        out.contains(&format!("{file}: ok (1 provider instance(s))")),
        "{out}"
    );
}
