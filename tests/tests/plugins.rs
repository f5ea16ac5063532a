#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The loader and plugin faults, with real bad files: each gives its one-line error naming the
//! file, the others keep working, and a misbehaving plugin costs one request, not the process.

use std::path::PathBuf;

use portcullis_tests::*;
use serde_json::{json, Value};

fn inspect(file: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .args(["plugin", "inspect"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn truncated_copy(dir: &std::path::Path) -> PathBuf {
    let bytes = std::fs::read(jwt_plugin()).unwrap();
    let p = dir.join("libtruncated.so");
    std::fs::write(&p, &bytes[..4096]).unwrap();
    p
}

#[test]
fn inspect_explains_each_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = inspect(&jwt_plugin());
    assert!(ok, "{out}");
    let manifest: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(manifest["manifest"]["name"], "jwt");
    assert_eq!(
        format!(
            "{}.0",
            manifest["manifest"]["abi_version"].as_str().unwrap()
        ),
        manifest["host_abi_version"].as_str().unwrap()
    );
    // Keys say where a value may come from instead of a wrong `required`.
    let keys = manifest["manifest"]["config_keys"].as_array().unwrap();
    let secret = keys.iter().find(|k| k["name"] == "secret").unwrap();
    assert_eq!(secret["env"], "JWT_AUTH_SECRET", "{secret}");
    assert_eq!(secret["required"], false, "{secret}");
    assert_eq!(secret["secret"], true, "{secret}");
    let jwks = keys.iter().find(|k| k["name"] == "jwks_url").unwrap();
    assert_eq!(jwks["url"], true, "{jwks}");

    let cases: Vec<(PathBuf, &str)> = vec![
        (truncated_copy(dir.path()), "not a loadable shared library"),
        (
            plugin("portcullis_test_not_a_plugin"),
            "not a Portcullis plugin",
        ),
        (
            plugin("portcullis_test_abi_mismatch"),
            "ABI layout does not match",
        ),
        (
            plugin("portcullis_test_old_api"),
            "built for plugin ABI 0.2, this server speaks ABI 1.",
        ),
        (
            plugin("portcullis_test_abi_newer_minor"),
            "needs plugin ABI 1.99, this server speaks ABI 1.",
        ),
        (
            plugin("portcullis_test_abi_next_major"),
            "built for plugin ABI 2.0, this server speaks ABI 1.",
        ),
    ];
    for (file, expected) in cases {
        let (ok, out) = inspect(&file);
        assert!(!ok, "{} loaded", file.display());
        assert!(out.contains(expected), "{}: {out}", file.display());
        assert!(
            out.contains(&file.display().to_string()),
            "error must name the file: {out}"
        );
        assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    }
}

#[tokio::test]
async fn bad_files_in_the_plugins_folder_do_not_stop_the_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = vec![
        jwt_plugin(),
        truncated_copy(dir.path()),
        plugin("portcullis_test_not_a_plugin"),
        plugin("portcullis_test_abi_mismatch"),
        plugin("portcullis_test_old_api"),
        plugin("portcullis_test_abi_newer_minor"),
        plugin("portcullis_test_abi_next_major"),
    ];
    let s = Server::start(
        &jwt_config("auth:\n  rules:\n    - path: /api/*\n      allow: true\n"),
        &plugins,
    );
    let t = hs256(SECRET, good_claims("ann", json!({})));
    let r = client()
        .get(s.url("/api/admin/plugins"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list.len(), 7);
    let loaded: Vec<_> = list.iter().filter(|p| p["error"].is_null()).collect();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0]["name"], "jwt");
    assert_eq!(list.iter().filter(|p| p["error"].is_string()).count(), 6);
    let log = s.log();
    assert!(
        log.contains("libtruncated.so: not a loadable shared library"),
        "{log}"
    );
}

fn faulty_config(mode: &str, extra_server: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n{extra_server}plugins:\n  dir: plugins\nproviders:\n  - name: flaky\n    plugin: faulty\n    config: {{ mode: {mode} }}\n"
    )
}

#[test]
fn constructor_failure_and_panic_are_reported_and_the_server_does_not_start_half_configured() {
    for (mode, expected) in [
        ("fail_ctor", "config rejected by plugin"),
        ("panic_ctor", "panicked"),
        ("hang_ctor", "did not return within"),
    ] {
        let server = if mode == "hang_ctor" {
            "  plugin_timeout: 500ms\n"
        } else {
            ""
        };
        let err = Server::try_start(
            &faulty_config(mode, server),
            &[plugin("portcullis_test_faulty")],
            &[],
        )
        .err()
        .unwrap_or_else(|| panic!("{mode}: server started"));
        assert!(err.contains("providers[0] (flaky)"), "{mode}: {err}");
        assert!(err.contains(expected), "{mode}: {err}");
        assert!(
            err.contains("libportcullis_test_faulty.so"),
            "{mode}: error must name the file: {err}"
        );
    }
}

#[tokio::test]
async fn a_panicking_authenticate_costs_one_request() {
    let s = Server::start(
        &faulty_config("panic_authenticate", ""),
        &[plugin("portcullis_test_faulty")],
    );
    for _ in 0..3 {
        let r = client()
            .get(s.url("/api/auth/me"))
            .bearer_auth("good-x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Internal Server Error"})
        );
    }
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(s.log().contains("authenticate exploded"));
}

#[tokio::test]
async fn a_hanging_authenticate_is_cut_off_and_fails_closed() {
    let s = Server::start(
        &faulty_config("hang_authenticate", "  plugin_timeout: 300ms\n"),
        &[plugin("portcullis_test_faulty")],
    );
    let started = std::time::Instant::now();
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth("good-x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn plugin_answers_map_to_the_documented_statuses() {
    for (mode, token, status) in [
        ("ok", "good-amy", 200),
        ("ok", "bad", 401),
        ("deny", "good-amy", 403),
        ("unavailable", "good-amy", 503),
        ("panic_authorize", "good-amy", 500),
        ("garbage_user", "good-amy", 500),
    ] {
        let s = Server::start(
            &faulty_config(mode, ""),
            &[plugin("portcullis_test_faulty")],
        );
        let r = client()
            .get(s.url("/api/auth/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{mode} {token}");
    }
}

#[tokio::test]
async fn an_allow_list_refuses_unlisted_plugin_hashes() {
    let cfg = jwt_config("").replace(
        "plugins:\n  dir: plugins\n",
        "plugins:\n  dir: plugins\n  allow: [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n",
    );
    let err = Server::try_start(&cfg, &[jwt_plugin()], &[])
        .err()
        .expect("server started with an unlisted plugin");
    assert!(err.contains("is not in plugins.allow"), "{err}");
}

#[tokio::test]
async fn an_authorize_that_depends_on_the_path_is_not_answered_from_a_per_subject_cache() {
    // The faulty plugin does not declare subject-only authorization, so nothing is cached by
    // default: the same user is allowed on one path and refused on another.
    let s = Server::start(
        &faulty_config("deny_admin_paths", ""),
        &[plugin("portcullis_test_faulty")],
    );
    let status = |path: &'static str| {
        let url = s.url(path);
        async move {
            client()
                .get(url)
                .bearer_auth("good-eve")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/api/auth/me").await, 200);
    assert_eq!(status("/api/admin/status").await, 403);
    assert_eq!(status("/api/auth/me").await, 200);
    let inspected = inspect(&plugin("portcullis_test_faulty")).1;
    assert!(
        inspected.contains("\"authorize_by_subject\": false"),
        "{inspected}"
    );
    // The jwt plugin's `authorize` is the default (every authenticated user): exact per subject.
    assert!(inspect(&plugin("portcullis_plugin_jwt"))
        .1
        .contains("\"authorize_by_subject\": true"));
}

/// A hung plugin cannot pile up work: at most `server.plugin_max_in_flight` calls per instance
/// are in flight; the rest fail closed with 503 at once instead of queueing behind the hung ones,
/// and the slots come back when the timeout cuts the hung calls off.
#[tokio::test]
async fn a_hung_plugin_holds_at_most_plugin_max_in_flight_calls() {
    let s = Server::start(
        &faulty_config(
            "hang_authenticate",
            "  plugin_timeout: 10s\n  plugin_max_in_flight: 2\n",
        ),
        &[plugin("portcullis_test_faulty")],
    );
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = s.url("/api/auth/me");
        tasks.push(tokio::spawn(async move {
            let r = client()
                .get(url)
                .bearer_auth(format!("good-{i}"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), std::time::Instant::now())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(answers.iter().all(|(code, _)| *code == 503), "{answers:?}");
    let quick = answers
        .iter()
        .filter(|(_, at)| at.duration_since(started) < std::time::Duration::from_secs(8))
        .count();
    assert_eq!(
        quick, 8,
        "8 of 10 must be refused without waiting for the timeout"
    );
    let log = s.log();
    assert_eq!(
        log.matches("too many plugin calls in flight").count(),
        8,
        "{log}"
    );
    assert_eq!(log.matches("did not finish within").count(), 2, "{log}");
    // The cut-off calls gave their slots back: the next call is admitted (and cut off again).
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth("good-z")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(s.log().matches("did not finish within").count(), 3);
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn staged_copies_are_removed_once_mapped() {
    let staging = tempfile::tempdir().unwrap();
    let dir = staging.path().join("stage");
    let loader = portcullis::plugin::Loader::new(dir.clone()).unwrap();
    let p = loader.load(&jwt_plugin(), None).unwrap();
    assert_eq!(p.manifest.name, "jwt");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing stays in the staging folder: {left:?}"
    );
    // The mapping outlives the file: the module still answers, and the same content is reused.
    assert_eq!(loader.load(&jwt_plugin(), None).unwrap().hash, p.hash);
    assert_eq!(loader.mapped_count(), 1);
    assert!(matches!(
        (p.module.manifest())(),
        portcullis_plugin_api::abi::abi_stable::std_types::RResult::ROk(_)
    ));
}
