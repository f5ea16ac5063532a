#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Secrets never leak: a server with a jwt secret from the environment and a WorkOS API key from
//! the config is driven through bad tokens, a failing identity provider, broken reloads and the
//! status API; no secret and no token appears in the log, in any answer body or header, or in the
//! status API.

use portcullis_tests::{mock::*, mock_workos::*, *};
use serde_json::json;

const JWT_SECRET: &str = "env-jwt-secret-SHOULD-NEVER-SHOW-0123456789abcdef";
const WORKOS_KEY: &str = "sk_live_SHOULD_NEVER_SHOW_workos_key_987654321";

fn config(workos_base: &str, extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 2s\n  build: {{ api_req_logs: true }}\nplugins:\n  dir: plugins\nproviders:\n  - name: dev\n    plugin: jwt\n    config:\n      secret: \"${{PORTCULLIS_TEST_JWT_SECRET}}\"\n      issuer: [\"https://issuer.test\"]\n      audience: [\"api\"]\n  - name: workos\n    plugin: workos\n    dangerous: {{ allow_http: true }}\n    config:\n      api_key: \"{WORKOS_KEY}\"\n      client_id: \"{CLIENT_ID}\"\n      api_base: \"{workos_base}\"\n{extra}auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n"
    )
}

/// An answer's headers and body, as text.
async fn all_of(r: reqwest::Response) -> String {
    let mut out = String::new();
    for (k, v) in r.headers() {
        out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
    }
    out.push_str(&r.text().await.unwrap());
    out
}

#[tokio::test]
async fn no_secret_or_token_in_logs_bodies_or_status() {
    let k = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k.jwk.clone()]).await;
    m.set_roles("user_admin", &["admin"]);
    let s = Server::start_with_env(
        &config(m.base(), ""),
        &[jwt_plugin(), plugin("portcullis_plugin_workos")],
        &[("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET)],
    );
    let c = client();
    let mut seen = String::new();
    let mut tokens: Vec<String> = Vec::new();
    let admin = hs256(JWT_SECRET, good_claims("root", json!({"role": "admin"})));

    // Good and bad tokens of every kind, on several routes.
    let mut expired = good_claims("x", json!({}));
    expired["exp"] = (now() - 3600).into();
    let bad = [
        hs256(JWT_SECRET, expired),
        hs256(
            "wrong-secret-0123456789abcdefghijklmnopqrstuv",
            good_claims("x", json!({})),
        ),
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(good_claims("x", json!({})).to_string().as_bytes())
        ),
        "garbage.token.with-a-MARKER-inside".to_string(),
        format!(
            "{}.e30.sig",
            b64(format!(r#"{{"alg":"HS256","kid":"{JWT_SECRET}"}}"#).as_bytes())
        ),
        hs256(JWT_SECRET, good_claims("user", json!({"role": "user"}))),
    ];
    for t in bad.iter().chain([&admin]) {
        tokens.push(t.clone());
        for path in [
            "/api/auth/me",
            "/api/admin/status",
            "/api/auth/me?access_token=x",
        ] {
            let r = c.get(s.url(path)).bearer_auth(t).send().await.unwrap();
            seen.push_str(&all_of(r).await);
        }
    }
    // The WorkOS provider failing: its tokens meet a 500 and a closed connection.
    let wt = k.sign(&m.claims("user_admin"));
    tokens.push(wt.clone());
    for fault in [Fault::ServerError, Fault::Down, Fault::Html] {
        m.api_fault(Some(fault));
        m.jwks_fault(Some(fault));
        let r = c
            .get(s.url("/api/auth/me"))
            .bearer_auth(&wt)
            .send()
            .await
            .unwrap();
        seen.push_str(&all_of(r).await);
    }
    m.api_fault(None);
    m.jwks_fault(None);

    // Broken reloads: the secret where a number belongs, an unset variable, bad YAML after it.
    let reload = |c: &reqwest::Client| {
        c.post(s.url("/api/admin/reload"))
            .bearer_auth(&admin)
            .send()
    };
    for broken in [
        config(m.base(), "").replace(
            "  port: 0\n",
            &format!("  port: 0\n  max_token_bytes: \"{JWT_SECRET}\"\n"),
        ),
        config(m.base(), "").replace(
            "${PORTCULLIS_TEST_JWT_SECRET}",
            "${PORTCULLIS_TEST_UNSET_VARIABLE}",
        ),
        config(m.base(), "").replace(
            "      client_id:",
            &format!("      colour: \"{WORKOS_KEY}\"\n      client_id:"),
        ),
        format!("{}\n  - [\"{WORKOS_KEY}\"", config(m.base(), "")),
        config(m.base(), "").replace(
            "auth:\n",
            &format!("auth:\n  token: {{ header: \"{WORKOS_KEY}!\" }}\n"),
        ),
    ] {
        std::fs::write(s.config_path(), broken).unwrap();
        let r = reload(&c).await.unwrap();
        assert_eq!(r.status(), 422);
        let body = all_of(r).await;
        assert!(body.contains("failed"), "{body}");
        seen.push_str(&body);
    }
    // The status API and every admin page.
    for path in [
        "/api/admin/status",
        "/api/admin/plugins",
        "/api/admin/providers",
        "/openapi.json",
    ] {
        let r = c.get(s.url(path)).bearer_auth(&admin).send().await.unwrap();
        seen.push_str(&all_of(r).await);
    }
    // The server still serves under the last good config.
    assert_eq!(
        c.get(s.url("/api/auth/me"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let log = s.log();
    assert!(
        log.contains("request refused"),
        "the errors were not driven: {log}"
    );
    assert!(log.contains("reload"), "{log}");
    for (what, text) in [("log", &log), ("answers", &seen)] {
        for secret in [JWT_SECRET, WORKOS_KEY] {
            assert!(!text.contains(secret), "secret in the {what}:\n{text}");
        }
        for t in &tokens {
            assert!(!text.contains(t.as_str()), "a token in the {what}:\n{text}");
            // Not even its signature part.
            let sig = t.rsplit('.').next().unwrap();
            if sig.len() > 16 {
                assert!(
                    !text.contains(sig),
                    "a token signature in the {what}:\n{text}"
                );
            }
        }
        assert!(!text.contains("MARKER"), "a garbage token in the {what}");
    }
}

/// A Kubernetes Secret volume: `jwt-secret -> ..data/jwt-secret`, `..data -> ..<version>`.
fn secret_volume_version(dir: &std::path::Path, version: &str, secret: &str) {
    let v = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&v).unwrap();
    std::fs::write(v.join("jwt-secret"), format!("{secret}\n")).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    // The kubelet's swap: one rename replaces the whole set at once.
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("jwt-secret");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/jwt-secret", &link).unwrap();
    }
}

#[tokio::test]
async fn a_secret_mounted_as_a_file_rotates_without_a_restart_and_never_shows() {
    const OLD: &str = "file-secret-OLD-SHOULD-NEVER-SHOW-0123456789abcdef";
    const NEW: &str = "file-secret-NEW-SHOULD-NEVER-SHOW-0123456789abcdef";
    let secrets = tempfile::tempdir().unwrap();
    secret_volume_version(secrets.path(), "2026_01_01_00_00_00.1", OLD);
    let cfg = jwt_config(
        "auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n",
    )
    .replace(
        &format!("secret: \"{SECRET}\""),
        &format!(
            "secret: \"${{file:{}}}\"",
            secrets.path().join("jwt-secret").display()
        ),
    );
    assert!(cfg.contains("${file:"), "{cfg}");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let c = client();
    let status_of = |token: String| {
        let c = c.clone();
        let url = s.url("/api/auth/me");
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let old = || hs256(OLD, good_claims("alice", json!({"role": "admin"})));
    let new = || hs256(NEW, good_claims("alice", json!({"role": "admin"})));
    assert_eq!(status_of(old()).await, 200, "{}", s.log());
    assert_eq!(status_of(new()).await, 401);

    // Rotate: the kubelet writes a new version and swaps `..data`; the config file is untouched.
    secret_volume_version(secrets.path(), "2026_01_01_00_01_00.2", NEW);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < end && status_of(new()).await != 200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_of(new()).await,
        200,
        "not rotated; log:\n{}",
        s.log()
    );
    assert_eq!(status_of(old()).await, 401, "the old secret still works");

    // The status API lists the file with a keyed digest: neither secret nor its plain SHA-256.
    let r = c
        .get(s.url("/api/admin/status"))
        .bearer_auth(new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("jwt-secret") && body.contains("keyed:"),
        "{body}"
    );
    let plain = portcullis::plugin::sha256_hex(format!("{NEW}\n").as_bytes());
    for secret in [OLD, NEW, plain.as_str()] {
        assert!(!body.contains(secret), "{body}");
        assert!(!s.log().contains(secret));
    }
}
