#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The plugin ABI's compatibility promise (docs/plugins.md, "The ABI and its compatibility
//! promise"), held through the real server:
//!
//! * a plugin built against the previous minor's SDK — a frozen copy of portcullis-plugin-api 1.0
//!   in `tests/plugins/sdk-1.0`, built here with cargo as an outside crate — loads and serves in
//!   this server, the provider methods that ABI lacks falling back to their defaults;
//! * a plugin declaring a newer minor, another major, or the pre-1.0 API is refused with a
//!   one-line message naming both versions, and the others keep serving.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use portcullis_plugin_api::abi::{ABI_MAJOR, ABI_MINOR};
use portcullis_tests::*;
use serde_json::Value;

const KEY: &str = "legacy-key-0123456789";

// The fixture is ABI 1.0: this server must be a later minor of the same major for the test to
// mean anything.
const _: () = assert!(
    ABI_MAJOR == 1 && ABI_MINOR >= 1,
    "tests/plugins/sdk-1.0 is the previous minor only for a server of ABI 1.1 or later"
);

fn fixture_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/sdk-1.0/plugin/Cargo.toml")
}

/// Builds the ABI 1.0 plugin as its author would, sharing this build's target folder so that the
/// dependencies compiled for the workspace are reused.
fn build_abi_1_0_plugin() -> PathBuf {
    let profile_dir = target_dir();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--locked", "--manifest-path"])
        .arg(fixture_manifest())
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap())
        .env_remove("CARGO_TARGET_DIR");
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "building the ABI 1.0 plugin failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    artifact("libportcullis_test_abi_1_0.so")
}

fn config() -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: legacy\n    plugin: legacy-key\n    config:\n      key: {KEY}\nauth:\n  protected: [\"/api/*\"]\n  rules:\n    - allow: true\n"
    )
}

#[tokio::test]
async fn a_plugin_of_the_previous_minor_loads_and_serves() {
    let so = build_abi_1_0_plugin();
    let s = Server::start(&config(), &[so]);

    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", s.log());
    let me: Value = r.json().await.unwrap();
    let text = me.to_string();
    assert!(text.contains(r#""abi":"1.0""#), "{text}");
    assert!(text.contains(r#""sub":"legacy""#), "{text}");

    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth("not-the-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The server reports the plugin's own ABI, older than its own.
    let plugins: Vec<Value> = client()
        .get(s.url("/api/admin/plugins"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let legacy = plugins.iter().find(|p| p["name"] == "legacy-key").unwrap();
    assert_eq!(legacy["abi_version"], "1.0", "{legacy}");
    assert!(
        !s.log().contains("panicked"),
        "a missing method must fall back, not panic:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn newer_minor_other_major_and_pre_1_0_plugins_are_refused_by_name() {
    let so = build_abi_1_0_plugin();
    let refused = [
        (
            plugin("portcullis_test_abi_newer_minor"),
            format!("needs plugin ABI 1.99, this server speaks ABI {ABI_MAJOR}.{ABI_MINOR}: upgrade the server"),
        ),
        (
            plugin("portcullis_test_abi_next_major"),
            format!("built for plugin ABI 2.0, this server speaks ABI {ABI_MAJOR}.{ABI_MINOR}: rebuild the plugin"),
        ),
        (
            plugin("portcullis_test_old_api"),
            format!("built for plugin ABI 0.2, this server speaks ABI {ABI_MAJOR}.{ABI_MINOR}"),
        ),
    ];
    let mut files = vec![so];
    files.extend(refused.iter().map(|(f, _)| f.clone()));
    let s = Server::start(&config(), &files);
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the compatible plugin keeps serving");
    let log = s.log();
    for (file, message) in &refused {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let line = log
            .lines()
            .find(|l| l.contains(&name) && l.contains("ABI"))
            .unwrap_or_else(|| panic!("no refusal of {name} in\n{log}"));
        assert!(line.contains(message.as_str()), "{line}");
    }
}
