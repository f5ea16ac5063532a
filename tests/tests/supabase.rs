#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The third-party Supabase plugin of `examples/supabase-plugin`: built with cargo from outside
//! the workspace, as its author would, loaded by the real server, run against a local Supabase;
//! and the conformance kit run by the author's own `cargo test`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use portcullis_tests::{mock::*, mock_supabase::*, *};

const ME: &str = "/api/auth/me";

fn example_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples/supabase-plugin/Cargo.toml")
}

/// `cargo <verb>` on the example, sharing this build's target folder so dependencies are reused.
fn cargo_on_example(verb: &str) -> std::process::Output {
    let profile_dir = target_dir();
    let target = profile_dir.parent().unwrap();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg(verb)
        .arg("--manifest-path")
        .arg(example_manifest())
        .arg("--target-dir")
        .arg(target)
        .env_remove("CARGO_TARGET_DIR");
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    cmd.output().expect("run cargo")
}

fn build_example() -> PathBuf {
    let out = cargo_on_example("build");
    assert!(
        out.status.success(),
        "building the example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    artifact("libportcullis_supabase_plugin.so")
}

fn config(url: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 2s\nplugins:\n  dir: plugins\nproviders:\n  - name: supabase\n    plugin: supabase\n    dangerous: {{ allow_http: true }}\n    config:\n      url: \"{url}\"\n      anon_key: \"{ANON_KEY}\"\n      admin: {{ table: users, id_column: id, flag_column: isAdmin }}\n"
    )
}

#[tokio::test]
async fn the_example_plugin_builds_loads_and_decides() {
    let so = build_example();
    let m = MockSupabase::start().await;
    let s = Server::start(&config(m.url()), &[so]);
    let admin_id = "8f14e45f-ceea-467f-a0a6-0b3c9a2d1e55";
    let user_id = "5b1c2f0e-9a7d-4c1b-8e3f-2a6d9c0b1e44";
    m.set_admin(admin_id, true);
    m.set_admin(user_id, false);
    let admin = m.sign_in(admin_id);
    assert_eq!(get_with_token(&s, ME, &admin).await.0, 200);
    assert_eq!(get_with_token(&s, ME, &m.sign_in(user_id)).await.0, 403);
    // No row in `users`: PostgREST's 406 PGRST116, not an admin.
    assert_eq!(
        get_with_token(&s, ME, &m.sign_in("no-row-user")).await.0,
        403
    );
    // GoTrue's 403 bad_jwt and garbage: 401.
    assert_eq!(get_with_token(&s, ME, "sbat.forged.1").await.0, 401);
    assert_eq!(get_with_token(&s, ME, "a b").await.0, 401);
    // The admin answer is cached per user: one PostgREST call for several requests.
    let rest = m.hits("rest");
    for _ in 0..3 {
        assert_eq!(get_with_token(&s, ME, &admin).await.0, 200);
    }
    assert_eq!(m.hits("rest"), rest);
    // Supabase misbehaving: 503 in time (an empty `{}` user has no id: unavailable too), then
    // the next request works.
    for fault in FAULTS {
        m.fault(Some(fault));
        let (status, took) = get_with_token(&s, ME, &admin).await;
        assert_eq!(status, 503, "{fault:?}");
        assert!(took < FAIL_CLOSED_WITHIN, "{fault:?} took {took:?}");
        m.fault(None);
        assert_eq!(
            get_with_token(&s, ME, &admin).await.0,
            200,
            "after {fault:?}"
        );
    }
}

#[tokio::test]
async fn the_example_reports_missing_options() {
    let so = build_example();
    let cfg = "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: supabase\n    plugin: supabase\n";
    let err = Server::try_start(cfg, &[so], &[]).err().unwrap();
    assert!(
        err.contains("Supabase URL and anon key are required"),
        "{err}"
    );
}

#[test]
fn the_conformance_kit_passes_for_the_example() {
    let out = cargo_on_example("test");
    assert!(
        out.status.success(),
        "the example's own tests (the conformance kit) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("supabase_plugin_conforms ... ok"));
}
