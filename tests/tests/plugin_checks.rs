#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! What the plugin SDK tells the server, through the real binary: `check` and a reload refuse a
//! config whose plugin would refuse every request; `plugin inspect` shows where a key's value may
//! come from; an env fallback meant for "no other key" does not become a second key;
//! `plugin test` runs the conformance kit on built libraries, and fails a plugin that panics.

use std::process::Command;

use portcullis_tests::*;
use serde_json::{json, Value};

fn workos_instance(api_base: &str, dangerous: &str) -> String {
    format!(
        "  - name: workos\n    plugin: workos\n{dangerous}    config:\n      api_key: sk_test_0123456789\n      client_id: client_0123\n      api_base: \"{api_base}\"\n"
    )
}

fn config(instances: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: dev\n    plugin: jwt\n    config:\n      secret: {SECRET}\n{instances}auth:\n  rules:\n    - allow: true\n"
    )
}

fn check(config_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for p in [jwt_plugin(), plugin("portcullis_plugin_workos")] {
        std::fs::copy(&p, plugins.join(p.file_name().unwrap())).unwrap();
    }
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, config_text).unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg(&file)
        .env_remove("WORKOS_API_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn check_refuses_a_plain_http_url_the_plugin_would_call_and_names_the_key() {
    let (ok, out) = check(&config(&workos_instance("http://api.workos.test", "")));
    assert!(!ok, "{out}");
    assert!(out.contains("providers[1] (workos)"), "{out}");
    assert!(out.contains("api_base: plain http is refused"), "{out}");
    assert!(!out.contains("sk_test_0123456789"), "{out}");

    let allowed = workos_instance(
        "http://api.workos.test",
        "    dangerous: { allow_http: true }\n",
    );
    let (ok, out) = check(&config(&allowed));
    assert!(ok, "{out}");

    let (ok, out) = check(&config(&workos_instance("https://api.workos.test", "")));
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_reload_to_such_a_url_is_refused_and_the_last_good_config_serves() {
    let s = Server::start(
        &config(""),
        &[jwt_plugin(), plugin("portcullis_plugin_workos")],
    );
    let token = hs256(SECRET, good_claims("ann", json!({})));
    std::fs::write(
        s.config_path(),
        config(&workos_instance("http://api.workos.test", "")),
    )
    .unwrap();
    let (status, body) = admin_reload(&s, &token).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("api_base: plain http is refused"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["kind"], "plugin", "{body}");
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn inspect(lib: &str) -> Value {
    let out = Command::new(binary())
        .args(["plugin", "inspect"])
        .arg(plugin(lib))
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn inspect_shows_env_fallbacks_urls_and_secrets_instead_of_a_wrong_required() {
    let workos = inspect("portcullis_plugin_workos");
    let keys = workos["manifest"]["config_keys"].as_array().unwrap();
    let key = |name: &str| keys.iter().find(|k| k["name"] == name).unwrap().clone();
    assert_eq!(key("api_key")["env"], "WORKOS_API_KEY");
    assert_eq!(key("api_key")["secret"], true);
    assert_eq!(key("api_key")["required"], false);
    assert_eq!(key("client_id")["env"], "WORKOS_CLIENT_ID");
    assert_eq!(key("api_base")["url"], true);
    assert!(key("organization")["description"]
        .as_str()
        .unwrap()
        .contains("token"));
    // The example config a `plugin test` uses builds an instance.
    assert!(workos["manifest"]["example_config"].is_object());
}

#[tokio::test]
async fn jwt_auth_secret_in_the_environment_is_not_a_second_key_for_a_jwks_instance() {
    let k1 = RsaKey::generate("k1");
    let jwks = JwksServer::start(vec![k1.jwk.clone()]).await;
    let cfg = format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: keys\n    plugin: jwt\n    dangerous: {{ allow_http: true }}\n    config:\n      jwks_url: \"{}\"\n      algorithms: [RS256]\nauth:\n  rules:\n    - allow: true\n",
        jwks.url()
    );
    let s = Server::start_with_env(&cfg, &[jwt_plugin()], &[("JWT_AUTH_SECRET", SECRET)]);
    let token = k1.sign(&good_claims("kim", json!({})));
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", s.log());
    // And the secret from the environment is not accepted by that instance.
    let hmac = hs256(SECRET, good_claims("eve", json!({})));
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&hmac)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn plugin_test(lib: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .args(["plugin", "test"])
        .arg(plugin(lib))
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn plugin_test_passes_every_shipped_plugin_on_its_own_example() {
    for lib in [
        "portcullis_plugin_jwt",
        "portcullis_plugin_oidc",
        "portcullis_plugin_auth0",
        "portcullis_plugin_workos",
        "portcullis_plugin_clerk",
        "portcullis_plugin_firebase",
    ] {
        let (ok, out) = plugin_test(lib, &[]);
        assert!(ok, "{lib}: {out}");
        assert!(out.contains(", 0 failed"), "{lib}: {out}");
    }
}

#[test]
fn plugin_test_fails_a_plugin_that_panics_and_one_that_will_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("faulty.yaml");
    std::fs::write(&cfg, "mode: panic_authenticate\n").unwrap();
    let (ok, out) = plugin_test(
        "portcullis_test_faulty",
        &["--config", cfg.to_str().unwrap()],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("internal"), "{out}");

    let (ok, out) = plugin_test("portcullis_test_abi_newer_minor", &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("needs plugin ABI 1.99"), "{out}");
}
