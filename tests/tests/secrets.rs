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
