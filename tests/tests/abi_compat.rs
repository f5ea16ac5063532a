#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The plugin ABI's compatibility promise (docs/plugins.md, "The ABI and its compatibility
//! promise"), held through the real server:
//!
//! * plugins built against earlier minors' SDKs — frozen copies of portcullis-plugin-api 1.0 and
//!   1.1 in `tests/plugins/sdk-1.0` and `tests/plugins/sdk-1.1`, built here with cargo as outside
//!   crates — load and serve in this server, the provider methods and root-module fields those
//!   ABIs lack falling back to their defaults (1.1: a provider library, no middleware);
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
    ABI_MAJOR == 1 && ABI_MINOR >= 2,
    "tests/plugins/sdk-1.0 and sdk-1.1 are earlier minors only for a server of ABI 1.2 or later"
);

/// Builds the plugin of a frozen SDK (`tests/plugins/<sdk>/plugin`) as its author would, sharing
/// this build's target folder so that the dependencies compiled for the workspace are reused.
fn build_frozen_plugin(sdk: &str, library: &str) -> PathBuf {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("plugins/{sdk}/plugin/Cargo.toml"));
    let profile_dir = target_dir();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--locked", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(profile_dir.parent().unwrap())
        .env_remove("CARGO_TARGET_DIR");
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "building the plugin of {sdk} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    artifact(library)
}

/// The ABI 1.0 plugin (`tests/plugins/sdk-1.0`).
fn build_abi_1_0_plugin() -> PathBuf {
    build_frozen_plugin("sdk-1.0", "libportcullis_test_abi_1_0.so")
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

/// A plugin built against the frozen 1.1 SDK (`tests/plugins/sdk-1.1`: a root module without the
/// fields 1.2 appended) loads in this server as a provider library, its missing `exports` read as
/// "a provider" and its missing middleware fields as absent: it serves as a provider, and a
/// `middleware:` entry naming it is refused by name, never a crash.
#[tokio::test]
async fn a_plugin_of_abi_1_1_loads_as_a_provider_library_and_is_no_middleware() {
    const ELEVEN_KEY: &str = "eleven-key-0123456789";
    let lib = build_frozen_plugin("sdk-1.1", "libportcullis_test_abi_1_1.so");
    let cfg = format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: eleven\n    plugin: eleven-key\n    config:\n      key: {ELEVEN_KEY}\nauth:\n  protected: [\"/api/*\"]\n  rules:\n    - allow: true\n"
    );
    let s = Server::start(&cfg, std::slice::from_ref(&lib));
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(ELEVEN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", s.log());
    let me: Value = r.json().await.unwrap();
    assert!(me.to_string().contains(r#""abi":"1.1""#), "{me}");
    let plugins: Vec<Value> = client()
        .get(s.url("/api/admin/plugins"))
        .bearer_auth(ELEVEN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = plugins.iter().find(|p| p["name"] == "eleven-key").unwrap();
    assert_eq!(p["abi_version"], "1.1", "{p}");
    assert_eq!(p["kinds"], serde_json::json!(["provider"]), "{p}");

    // As a middleware: refused up front by `check`, naming the kind.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(&lib, dir.path().join("plugins/lib.so")).unwrap();
    let bad = format!("{cfg}middleware:\n  - name: mw\n    plugin: eleven-key\n    path: /api/*\n");
    std::fs::write(dir.path().join("c.yaml"), bad).unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg(dir.path().join("c.yaml"))
        .env("PORTCULLIS_STATE_DIR", dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("middleware[0] (mw).plugin")
            && text.contains("is a provider plugin, not a middleware plugin"),
        "{text}"
    );
    assert!(!s.log().contains("panicked"), "{}", s.log());
}
