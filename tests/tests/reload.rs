#![allow(clippy::unwrap_used)]
//! Live change (issue #3): files are changed for real while clients keep calling the server;
//! every answer must belong to the config before or after the change, none may fail.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use portcullis_tests::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it holds, up to [`WAIT`].
async fn until<F, Fut>(check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(WAIT, check).await
}

async fn status_code(s: &Server, path: &str, token: Option<&str>) -> u16 {
    let mut r = client().get(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    match r.send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn admin_status(s: &Server, token: &str) -> Value {
    client()
        .get(s.url("/api/admin/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Clients calling the server until stopped; every answer is checked against `valid`.
struct Load {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    bad: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(s: &Server, clients: usize, token: String, valid: fn(u16, &Value) -> bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|i| {
                let (stop, total, bad) = (stop.clone(), total.clone(), bad.clone());
                let (me, token) = (s.url("/api/auth/me"), token.clone());
                let c = client();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        // Every fourth call of one client goes without a token: always 401.
                        let anonymous = i == 0 && n.is_multiple_of(4);
                        let mut req = c.get(&me);
                        if !anonymous {
                            req = req.bearer_auth(&token);
                        }
                        let verdict = match req.send().await {
                            Err(e) => Err(format!("request failed: {e}")),
                            Ok(r) => {
                                let code = r.status().as_u16();
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                let ok = if anonymous {
                                    code == 401
                                } else {
                                    valid(code, &body)
                                };
                                if ok {
                                    Ok(())
                                } else {
                                    Err(format!("unexpected answer {code} {body}"))
                                }
                            }
                        };
                        total.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = verdict {
                            bad.lock().unwrap().push(e);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            total,
            bad,
            tasks,
        }
    }

    /// Stops the clients; returns (requests, bad answers).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let bad = self.bad.lock().unwrap().clone();
        (self.total.load(Ordering::Relaxed), bad)
    }
}

/// A jwt config whose rules allow or deny `/api/auth/me`, with or without a second instance.
fn toggling_config(k: usize) -> String {
    let deny_me = k % 2 == 1;
    let mut c = format!(
        "# change {k}\nversion: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: main\n    plugin: jwt\n    config:\n      secret: \"{SECRET}\"\n      issuer: [\"https://issuer.test\"]\n      audience: [\"api\"]\n"
    );
    if k.is_multiple_of(5) {
        c.push_str("  - name: other\n    plugin: jwt\n    config:\n      secret: \"another-secret-0123456789abcdefghijklmnop\"\n      issuer: [\"https://other.test\"]\n");
    }
    c.push_str("auth:\n  protected: [\"/api/*\"]\n");
    if k.is_multiple_of(3) {
        c.push_str("  public: [\"/docs/*\"]\n");
    }
    c.push_str("  rules:\n");
    if deny_me {
        c.push_str("    - path: /api/auth/me\n      allow: false\n");
    }
    c.push_str("    - path: /api/*\n      allow: true\n");
    c
}

fn me_allowed_or_denied(code: u16, body: &Value) -> bool {
    (code == 200 && body["user"]["sub"] == "load")
        || (code == 403 && body["error"] == "Access denied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_config_changes_under_load_lose_no_request() {
    let s = Server::start(&toggling_config(0), &[jwt_plugin()]);
    let token = hs256(SECRET, good_claims("load", json!({})));
    let load = Load::start(&s, 4, token.clone(), me_allowed_or_denied);
    for k in 1..=50 {
        let cfg = toggling_config(k);
        if k % 2 == 0 {
            std::fs::write(s.config_path(), &cfg).unwrap();
        } else {
            write_by_rename(&s.config_path(), cfg.as_bytes());
        }
        let want = if k % 2 == 1 { 403 } else { 200 };
        assert!(
            until(|| async { status_code(&s, "/api/auth/me", Some(&token)).await == want }).await,
            "change {k} was not applied; log:\n{}",
            s.log()
        );
    }
    let (total, bad) = load.finish().await;
    assert!(
        bad.is_empty(),
        "{} of {total} answers were wrong: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(total > 100, "the load ran ({total} requests)");
    let st = admin_status(&s, &token).await;
    assert!(st["generation"].as_u64().unwrap() >= 51, "{st}");
}

fn faulty_config(extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: main\n    plugin: jwt\n    config:\n      secret: \"{SECRET}\"\n      issuer: [\"https://issuer.test\"]\n      audience: [\"api\"]\n  - name: f\n    plugin: faulty\n{extra}auth:\n  protected: [\"/api/*\"]\n  rules:\n    - allow: true\n"
    )
}

fn faulty_flavor_ok(code: u16, body: &Value) -> bool {
    code == 200
        && body["provider"] == "f"
        && (body["user"]["flavor"] == "AAAAA" || body["user"]["flavor"] == "BBBBB")
}

async fn flavor(s: &Server) -> String {
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth("good-probe")
        .send()
        .await;
    match r {
        Ok(r) => {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            v["user"]["flavor"].as_str().unwrap_or("").to_string()
        }
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_plugin_swaps_under_load_lose_no_request() {
    let s = Server::start(
        &faulty_config("    config: { mode: ok }\n"),
        &[jwt_plugin(), plugin("portcullis_test_faulty")],
    );
    let admin = hs256(SECRET, good_claims("admin", json!({})));
    let so = s.plugins_dir().join("libportcullis_test_faulty.so");
    assert_eq!(flavor(&s).await, "AAAAA");
    let load = Load::start(&s, 4, "good-load".into(), faulty_flavor_ok);
    for i in 0..10 {
        let new = if i % 2 == 0 { "BBBBB" } else { "AAAAA" };
        let bytes = flavored_plugin(new);
        match i % 3 {
            // Copied over the old file in place.
            0 => std::fs::write(&so, &bytes).unwrap(),
            // Written elsewhere and renamed over it.
            1 => write_by_rename(&so, &bytes),
            // Half written (the load must fail and change nothing), then completed.
            _ => {
                let before = admin_status(&s, &admin).await["generation"].clone();
                std::fs::write(&so, &bytes[..bytes.len() / 2]).unwrap();
                assert!(
                    until(|| async {
                        let st = admin_status(&s, &admin).await;
                        st["last_attempt"]["result"] == "failed"
                            && st["last_attempt"]["errors"]
                                .to_string()
                                .contains("libportcullis_test_faulty.so")
                    })
                    .await,
                    "a half-written plugin was not refused; log:\n{}",
                    s.log()
                );
                assert_eq!(admin_status(&s, &admin).await["generation"], before);
                assert_ne!(flavor(&s).await, new, "nothing changes on a broken plugin");
                std::fs::write(&so, &bytes).unwrap();
            }
        }
        assert!(
            until(|| async { flavor(&s).await == new }).await,
            "swap {i} to {new} was not applied; log:\n{}",
            s.log()
        );
    }
    let (total, bad) = load.finish().await;
    assert!(
        bad.is_empty(),
        "{} of {total} answers were wrong: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let st = admin_status(&s, &admin).await;
    // Two contents, each mapped once: swapping back reuses the copy already mapped.
    assert_eq!(st["mapped_libraries"], 3, "jwt + two faulty flavors: {st}");
    let so_hash = st["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .ends_with("libportcullis_test_faulty.so")
        })
        .map(|f| f["sha256"].clone());
    assert!(
        so_hash.is_some(),
        "status lists the plugin file with its hash: {st}"
    );
    assert!(
        s.log()
            .lines()
            .filter(|l| l.contains("reload rejected"))
            .count()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_in_flight_finishes_on_the_old_plugin_version() {
    let gate = mock::Gate::start().await;
    let cfg = faulty_config(&format!(
        "    dangerous: {{ allow_http: true }}\n    config: {{ mode: slow, url: \"{}\" }}\n",
        gate.url
    ));
    let s = Server::start(&cfg, &[jwt_plugin(), plugin("portcullis_test_faulty")]);
    let admin = hs256(SECRET, good_claims("admin", json!({})));
    let so = s.plugins_dir().join("libportcullis_test_faulty.so");
    // The first request holds the gate: it is in flight inside plugin version A.
    let held = tokio::spawn({
        let url = s.url("/api/auth/me");
        async move {
            let r = client()
                .get(url)
                .bearer_auth("good-slow")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    });
    assert!(until(|| async { gate.entered.load(Ordering::SeqCst) }).await);
    write_by_rename(&so, &flavored_plugin("BBBBB"));
    assert!(
        until(|| async { flavor(&s).await == "BBBBB" }).await,
        "the new version was not applied; log:\n{}",
        s.log()
    );
    assert!(!held.is_finished(), "the held request is still in flight");
    let _ = gate.release.send(());
    let (code, body) = held.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["user"]["flavor"], "AAAAA",
        "finished on the old version"
    );
    assert_eq!(admin_status(&s, &admin).await["mapped_libraries"], 3);
}

#[tokio::test]
async fn broken_configs_keep_the_last_good_one_and_say_why() {
    let good = toggling_config(0);
    let s = Server::start(&good, &[jwt_plugin()]);
    let token = hs256(SECRET, good_claims("load", json!({})));
    let cases: &[(&str, String, &str)] = &[
        (
            "syntax",
            good.replace("auth:\n", "auth: [\n"),
            "config.yaml",
        ),
        (
            "unknown key",
            good.replace("auth:\n", "auth:\n  protectd: [\"/x\"]\n"),
            "auth.protectd",
        ),
        (
            "bad CEL",
            good.replace(
                "      allow: true\n",
                "      condition: \"user.role ==\"\n      allow: true\n",
            ),
            "auth.rules[0].condition",
        ),
        (
            "unknown plugin",
            good.replace("plugin: jwt", "plugin: nosuch"),
            "providers[0]",
        ),
        (
            "port change",
            good.replace("port: 0", "port: 1"),
            "server.port",
        ),
    ];
    for (what, cfg, needle) in cases {
        std::fs::write(s.config_path(), cfg).unwrap();
        assert!(
            until(|| async {
                let st = admin_status(&s, &token).await;
                st["last_attempt"]["result"] == "failed"
                    && st["last_attempt"]["errors"].to_string().contains(needle)
            })
            .await,
            "{what}: no failed attempt naming {needle}; log:\n{}",
            s.log()
        );
        let st = admin_status(&s, &token).await;
        assert_eq!(st["generation"], 1, "{what}: nothing applied");
        assert_eq!(st["last_success"]["trigger"], "startup");
        assert_eq!(
            status_code(&s, "/api/auth/me", Some(&token)).await,
            200,
            "{what}"
        );
        assert!(
            s.log()
                .lines()
                .any(|l| l.contains("reload rejected") && l.contains(needle)),
            "{what}: one log line names {needle}"
        );
    }
    // The fix applies.
    std::fs::write(s.config_path(), toggling_config(1)).unwrap();
    assert!(until(|| async { status_code(&s, "/api/auth/me", Some(&token)).await == 403 }).await);
}

#[tokio::test]
async fn a_deleted_plugin_retires_its_instances_and_comes_back() {
    let s = Server::start(
        &faulty_config("    config: { mode: ok }\n"),
        &[jwt_plugin(), plugin("portcullis_test_faulty")],
    );
    let admin = hs256(SECRET, good_claims("admin", json!({})));
    let so = s.plugins_dir().join("libportcullis_test_faulty.so");
    let bytes = std::fs::read(&so).unwrap();
    assert_eq!(status_code(&s, "/api/auth/me", Some("good-x")).await, 200);
    std::fs::remove_file(&so).unwrap();
    assert!(
        until(|| async { status_code(&s, "/api/auth/me", Some("good-x")).await == 503 }).await,
        "requests that need the deleted plugin fail closed; log:\n{}",
        s.log()
    );
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth("good-x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "Authentication service unavailable"
    );
    // The other provider is untouched.
    assert_eq!(status_code(&s, "/api/auth/me", Some(&admin)).await, 200);
    let st = admin_status(&s, &admin).await;
    assert_eq!(st["retired"][0]["name"], "f", "{st}");
    assert!(st["retired"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("removed"));
    // Back again.
    std::fs::write(&so, &bytes).unwrap();
    assert!(until(|| async { status_code(&s, "/api/auth/me", Some("good-x")).await == 200 }).await);
    assert_eq!(admin_status(&s, &admin).await["retired"], json!([]));
}

#[tokio::test]
async fn a_config_naming_a_plugin_not_there_yet_applies_when_it_arrives() {
    let s = Server::start(&toggling_config(0), &[jwt_plugin()]);
    let admin = hs256(SECRET, good_claims("admin", json!({})));
    std::fs::write(s.config_path(), faulty_config("    config: { mode: ok }\n")).unwrap();
    assert!(
        until(|| async {
            let st = admin_status(&s, &admin).await;
            st["last_attempt"]["result"] == "failed"
                && st["last_attempt"]["errors"].to_string().contains("faulty")
        })
        .await
    );
    assert_eq!(status_code(&s, "/api/auth/me", Some("good-x")).await, 401);
    std::fs::copy(
        plugin("portcullis_test_faulty"),
        s.plugins_dir().join("libportcullis_test_faulty.so"),
    )
    .unwrap();
    assert!(
        until(|| async { status_code(&s, "/api/auth/me", Some("good-x")).await == 200 }).await,
        "log:\n{}",
        s.log()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_kubernetes_configmap_update_is_applied() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("plugins")).unwrap();
    std::fs::copy(
        jwt_plugin(),
        root.join("plugins/libportcullis_plugin_jwt.so"),
    )
    .unwrap();
    // The layout the kubelet makes: data in a timestamped folder, `..data` pointing at it, and
    // each key a symlink through `..data`.
    let cm = root.join("cm");
    std::fs::create_dir_all(cm.join("..2026_11_26_00_00_00.1")).unwrap();
    let cfg = |k| toggling_config(k).replace("dir: plugins", "dir: ../plugins");
    std::fs::write(cm.join("..2026_11_26_00_00_00.1/config.yaml"), cfg(0)).unwrap();
    symlink("..2026_11_26_00_00_00.1", cm.join("..data")).unwrap();
    symlink("..data/config.yaml", cm.join("config.yaml")).unwrap();
    let s = Server::spawn_in(dir, cm.join("config.yaml"), &[], &[]).unwrap();
    let token = hs256(SECRET, good_claims("k8s", json!({})));
    assert_eq!(status_code(&s, "/api/auth/me", Some(&token)).await, 200);
    // An update: a new folder, a new link renamed over `..data`, the old folder removed.
    std::fs::create_dir(cm.join("..2026_11_26_00_01_00.2")).unwrap();
    std::fs::write(cm.join("..2026_11_26_00_01_00.2/config.yaml"), cfg(1)).unwrap();
    symlink("..2026_11_26_00_01_00.2", cm.join("..data_tmp")).unwrap();
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    std::fs::remove_dir_all(cm.join("..2026_11_26_00_00_00.1")).unwrap();
    assert!(
        until(|| async { status_code(&s, "/api/auth/me", Some(&token)).await == 403 }).await,
        "log:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn sighup_and_the_admin_endpoint_reload_and_skip_unchanged_content() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        jwt_plugin(),
        dir.path().join("plugins/libportcullis_plugin_jwt.so"),
    )
    .unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, toggling_config(0)).unwrap();
    let s = Server::spawn_in(dir, cfg, &["--no-watch"], &[]).unwrap();
    let token = hs256(SECRET, good_claims("hup", json!({})));
    let reload = || async {
        client()
            .post(s.url("/api/admin/reload"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(reload().await["result"], "unchanged");
    std::fs::write(s.config_path(), toggling_config(2)).unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(
        until(|| async { admin_status(&s, &token).await["generation"] == 2 }).await,
        "log:\n{}",
        s.log()
    );
    let st = admin_status(&s, &token).await;
    assert_eq!(st["last_success"]["trigger"], "signal");
    assert_eq!(
        st["watch"]["watching"],
        json!([]),
        "--no-watch watches nothing"
    );
    std::fs::write(s.config_path(), toggling_config(1)).unwrap();
    let r = reload().await;
    assert_eq!(r["result"], "applied", "{r}");
    assert_eq!(r["generation"], 3);
    assert_eq!(status_code(&s, "/api/auth/me", Some(&token)).await, 403);
    assert_eq!(reload().await["result"], "unchanged");
}

#[tokio::test]
async fn the_tls_certificate_rotates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path();
    let (key, cert) = (tls_dir.join("key.pem"), tls_dir.join("cert.pem"));
    self_signed_cert("first", &key, &cert);
    let (key2, cert2) = (tls_dir.join("new-key.pem"), tls_dir.join("new-cert.pem"));
    self_signed_cert("second", &key2, &cert2);
    let cfg = jwt_config("auth:\n  protected: [\"/api/*\"]\n").replace(
        "  port: 0\n",
        &format!(
            "  port: 0\n  https: {{ key: \"{}\", cert: \"{}\" }}\n",
            key.display(),
            cert.display()
        ),
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let served_cert = || async {
        // A fresh client per call: a new connection, a new handshake.
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .tls_info(true)
            .build()
            .unwrap();
        let r = c
            .get(format!("https://{}/health", s.addr))
            .send()
            .await
            .unwrap();
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .unwrap()
    };
    let der = |p: &Path| {
        let pem = std::fs::read_to_string(p).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap()
    };
    assert_eq!(served_cert().await, der(&cert));
    // The key first, then the certificate: in between the pair does not match and is refused.
    std::fs::rename(&key2, &key).unwrap();
    std::fs::rename(&cert2, &cert).unwrap();
    let want = der(&cert);
    assert!(
        until(|| async { served_cert().await == want }).await,
        "log:\n{}",
        s.log()
    );
}

/// Regression: taking a plugin build's hash out of `plugins.allow` while an instance used it
/// failed the whole reload, so the distrusted build kept answering. Now its instances are retired
/// (503, fail closed) and the rest of the edit applies.
#[tokio::test]
async fn a_plugin_taken_out_of_the_allow_list_stops_serving_at_once() {
    let jwt = portcullis::plugin::sha256_file(&jwt_plugin()).unwrap();
    let faulty = portcullis::plugin::sha256_file(&plugin("portcullis_test_faulty")).unwrap();
    let config = |allow: &[&str], public: &str| {
        faulty_config("    config: { mode: ok }\n")
            .replace(
                "plugins:\n  dir: plugins\n",
                &format!(
                    "plugins:\n  dir: plugins\n  allow: [{}]\n",
                    allow
                        .iter()
                        .map(|h| format!("\"{h}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .replace(
                "  protected: [\"/api/*\"]\n",
                &format!("  protected: [\"/api/*\"]\n  public: [{public}]\n"),
            )
    };
    let s = Server::start(
        &config(&[&jwt, &faulty], "\"/health\""),
        &[jwt_plugin(), plugin("portcullis_test_faulty")],
    );
    let token = hs256(SECRET, good_claims("alice", json!({})));
    // Twice: the second answer may come from the instance's accepted-token memory.
    assert_eq!(status_code(&s, "/api/auth/me", Some(&token)).await, 200);
    assert_eq!(status_code(&s, "/api/auth/me", Some(&token)).await, 200);
    assert_eq!(status_code(&s, "/api/open", None).await, 401);

    // Drop the jwt build's hash, and make one more change in the same edit.
    write_by_rename(
        &s.config_path(),
        config(&[&faulty], "\"/health\", \"/api/open\"").as_bytes(),
    );
    assert!(
        until(|| async { status_code(&s, "/api/auth/me", Some(&token)).await == 503 }).await,
        "the distrusted plugin's tokens must fail closed; log:\n{}",
        s.log()
    );
    // No answer comes from the distrusted build or its memory: the token it accepted, and a new
    // one, are both refused as unavailable.
    let fresh = hs256(SECRET, good_claims("bob", json!({})));
    for t in [&token, &fresh] {
        let r = client()
            .get(s.url("/api/auth/me"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "Authentication service unavailable"
        );
    }
    // The rest of the edit applied, and the other plugin serves.
    assert_eq!(status_code(&s, "/api/open", None).await, 404);
    assert_eq!(status_code(&s, "/api/auth/me", Some("good-x")).await, 200);
    let st = admin_status(&s, "good-admin").await;
    assert_eq!(st["last_attempt"]["result"], "applied", "{st}");
    assert_eq!(st["generation"], 2, "{st}");
    assert_eq!(st["retired"][0]["name"], "main", "{st}");
    assert_eq!(st["retired"][0]["plugin"], "jwt", "{st}");
    let reason = st["retired"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no longer in plugins.allow") && reason.contains(&jwt),
        "{reason}"
    );
    assert!(
        st["providers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "main"),
        "{st}"
    );
    // An unrelated reload keeps it retired, for the same reason.
    write_by_rename(
        &s.config_path(),
        config(&[&faulty], "\"/health\", \"/api/open\", \"/api/other\"").as_bytes(),
    );
    assert!(until(|| async { status_code(&s, "/api/other", None).await == 404 }).await);
    let st = admin_status(&s, "good-admin").await;
    assert_eq!(st["retired"][0]["reason"].as_str(), Some(reason), "{st}");
    assert_eq!(status_code(&s, "/api/auth/me", Some(&token)).await, 503);
    // Trusted again: back.
    write_by_rename(
        &s.config_path(),
        config(&[&jwt, &faulty], "\"/health\"").as_bytes(),
    );
    assert!(until(|| async { status_code(&s, "/api/auth/me", Some(&token)).await == 200 }).await);
    assert_eq!(admin_status(&s, "good-admin").await["retired"], json!([]));
}

/// Issue #18: a reload of a config with a dead pattern applies it (a warning is not an error),
/// logs the warning and answers it with its key path; a clean config answers none.
#[tokio::test]
async fn a_reload_applies_a_config_with_warnings_and_answers_them() {
    let clean = jwt_config("auth:\n  rules:\n    - allow: true\n");
    let s = Server::start_without_watch(&clean, &[jwt_plugin()]);
    let token = hs256(SECRET, good_claims("ops", json!({})));
    let (status, r) = admin_reload(&s, &token).await;
    assert_eq!((status, &r["result"]), (200, &json!("unchanged")), "{r}");
    assert_eq!(r["warnings"], json!([]), "{r}");
    let dead = jwt_config(
        "auth:\n  public: [/health, /api/auth/me]\n  rules:\n    - allow: true\n    - path: /api/*\n      allow: false\n",
    );
    std::fs::write(s.config_path(), &dead).unwrap();
    let (status, r) = admin_reload(&s, &token).await;
    assert_eq!((status, &r["result"]), (200, &json!("applied")), "{r}");
    let file = s.config_path().display().to_string();
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{r}");
    assert!(
        warnings[0].starts_with(&format!(
            "{file}: auth.public[1]: never applies: `/api/auth/*`"
        )),
        "{r}"
    );
    assert!(
        warnings[1].starts_with(&format!(
            "{file}: auth.rules[1]: never decides: auth.rules[0]"
        )),
        "{r}"
    );
    assert_eq!(r["errors"], json!([]), "{r}");
    // Served as it says: the first rule allows.
    assert_eq!(status_code(&s, "/api/auth/me", Some(&token)).await, 200);
    assert_eq!(
        admin_status(&s, &token).await["last_attempt"]["warnings"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        until(|| async {
            s.log().contains("config warning:") && s.log().contains("auth.rules[1]")
        })
        .await,
        "log:\n{}",
        s.log()
    );
    // Asked again, the unchanged config still answers its warnings.
    let (status, r) = admin_reload(&s, &token).await;
    assert_eq!((status, &r["result"]), (200, &json!("unchanged")), "{r}");
    assert_eq!(r["warnings"].as_array().unwrap().len(), 2, "{r}");
}
