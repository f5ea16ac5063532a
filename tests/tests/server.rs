#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The foundation end to end: the real binary, the real jwt plugin, real HTTP.

use portcullis_tests::*;
use serde_json::{json, Value};

const RULES: &str = "auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n";

fn start() -> Server {
    Server::start(&jwt_config(RULES), &[jwt_plugin()])
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = client().get(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("request")
}

#[tokio::test]
async fn valid_token_gets_the_callers_claims() {
    let s = start();
    let t = hs256(SECRET, good_claims("alice", json!({"role": "admin"})));
    let r = get(&s, "/api/auth/me", Some(&t)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["provider"], "main");
    assert_eq!(body["user"]["sub"], "alice");
    assert_eq!(body["user"]["role"], "admin");
}

#[tokio::test]
async fn missing_token_is_401_authentication_required() {
    let s = start();
    let r = get(&s, "/api/auth/me", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Authentication required"})
    );
}

#[tokio::test]
async fn bad_tokens_are_401_invalid_and_the_next_good_one_works() {
    let s = start();
    let good = good_claims("bob", json!({}));
    let mut expired = good.clone();
    expired["exp"] = (now() - 3600).into();
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = "https://evil.test".into();
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = "other".into();
    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let none_alg = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    let none_alg2 = format!(
        "{}.{}.",
        b64(br#"{"alg":"nOnE"}"#),
        b64(good.to_string().as_bytes())
    );
    let cases = vec![
        (
            "bad signature",
            hs256(
                "another-secret-that-is-long-enough-0123456789",
                good.clone(),
            ),
        ),
        ("expired", hs256(SECRET, expired)),
        ("wrong issuer", hs256(SECRET, wrong_iss)),
        ("wrong audience", hs256(SECRET, wrong_aud)),
        ("missing audience", hs256(SECRET, no_aud)),
        ("alg none", none_alg),
        ("alg nOnE", none_alg2),
        ("garbage", "not-a-jwt".to_string()),
        ("two parts", "abc.def".to_string()),
    ];
    for (what, token) in cases {
        let r = get(&s, "/api/auth/me", Some(&token)).await;
        assert_eq!(r.status(), 401, "{what}");
        let www = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(www.contains("invalid_token"), "{what}: {www}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Invalid or expired token"}),
            "{what}"
        );
        let ok = get(&s, "/api/auth/me", Some(&hs256(SECRET, good.clone()))).await;
        assert_eq!(ok.status(), 200, "good token after {what}");
    }
}

#[tokio::test]
async fn rules_first_match_decides_and_deny_is_403() {
    let s = start();
    let user = hs256(SECRET, good_claims("carol", json!({"role": "user"})));
    let admin = hs256(SECRET, good_claims("dave", json!({"role": "admin"})));
    let no_role = hs256(SECRET, good_claims("erin", json!({})));
    let r = get(&s, "/api/admin/status", Some(&user)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Access denied"})
    );
    // A missing claim makes the allow rule not apply; the deny rule after it decides.
    assert_eq!(
        get(&s, "/api/admin/status", Some(&no_role)).await.status(),
        403
    );
    let r = get(&s, "/api/admin/status", Some(&admin)).await;
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["generation"], 1);
    assert_eq!(st["providers"][0]["plugin"], "jwt");
    assert_eq!(st["plugins"][0]["name"], "jwt");
    assert_eq!(st["plugins"][0]["hash"].as_str().unwrap().len(), 64);
    // Any authenticated user for the rest of /api.
    assert_eq!(get(&s, "/api/auth/me", Some(&user)).await.status(), 200);
}

#[tokio::test]
async fn public_paths_and_preflight_are_open() {
    let s = start();
    let r = get(&s, "/health", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    let r = client()
        .request(reqwest::Method::OPTIONS, s.url("/api/auth/me"))
        .header("origin", "https://app.test")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_get_without_length_passes() {
    let cfg = jwt_config(RULES).replace("  port: 0\n", "  port: 0\n  body_size_limit: 1kb\n");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let t = hs256(SECRET, good_claims("frank", json!({"role": "admin"})));
    let r = client()
        .post(s.url("/api/admin/reload"))
        .bearer_auth(&t)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Request body too large"})
    );
    assert_eq!(get(&s, "/api/auth/me", Some(&t)).await.status(), 200);
}

#[tokio::test]
async fn openapi_documents_routes_security_and_errors() {
    let s = start();
    let spec: Value = get(&s, "/openapi.json", None).await.json().await.unwrap();
    for path in [
        "/health",
        "/api/auth/me",
        "/api/admin/status",
        "/api/admin/plugins",
        "/api/admin/providers",
        "/api/admin/reload",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let me = &spec["paths"]["/api/auth/me"]["get"];
    assert!(me["security"].to_string().contains("bearerAuth"));
    for code in ["200", "401", "403", "500", "503"] {
        assert!(
            me["responses"][code].is_object(),
            "/api/auth/me lacks {code}"
        );
    }
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
    let ui = get(&s, "/swagger-ui", None).await;
    assert_eq!(ui.status(), 200);
    let html = ui.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle") && html.contains("/api/auth/me"));
}

#[tokio::test]
async fn docs_are_off_unless_enabled() {
    let cfg = jwt_config(RULES).replace("  build: { swagger_ui: true, openapi_docs: true }\n", "");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    assert_eq!(get(&s, "/openapi.json", None).await.status(), 404);
    assert_eq!(get(&s, "/swagger-ui", None).await.status(), 404);
}

#[tokio::test]
async fn paths_are_judged_and_served_on_one_canonical_form() {
    let s = start();
    let t = hs256(SECRET, good_claims("gina", json!({"role": "admin"})));
    // Without a token, nothing protected is ever a 2xx, however the path is spelled.
    for target in [
        "/api/x/../auth/me",
        "/api/%2e%2e/api/auth/me",
        "//api/auth/me",
        "/api//auth/me",
        "/API/auth/me",
        "/api/auth/me/",
        "/api/auth/me;x",
        "/public/..%2F..%2Fapi/auth/me",
        "/api/auth/me?x=/health",
        "/api/auth/./me",
        "/health/../api/auth/me",
    ] {
        let code = raw_status(s.addr, target, &[]).await;
        assert!(
            !(200..300).contains(&code),
            "{target} answered {code} without a token"
        );
    }
    // Ambiguous encodings are refused outright.
    for target in [
        "/api%2Fauth/me",
        "/api/auth%5Cme",
        "/api/auth/me%00",
        "/api/%zz",
    ] {
        assert_eq!(raw_status(s.addr, target, &[]).await, 400, "{target}");
    }
    let long = format!("/api/{}", "a".repeat(9000));
    let code = raw_status(s.addr, &long, &[]).await;
    assert!(
        code == 400 || code == 414 || code == 431,
        "overlong path answered {code}"
    );
    // With a token, the canonical form is what is served.
    let auth = format!("Bearer {t}");
    assert_eq!(
        raw_status(s.addr, "/api/x/../auth/me", &[("authorization", &auth)]).await,
        200
    );
    assert_eq!(
        raw_status(s.addr, "//api//auth/me", &[("authorization", &auth)]).await,
        200
    );
}

#[tokio::test]
async fn the_token_command_mints_for_the_config() {
    let s = start();
    let out = std::process::Command::new(binary())
        .args(["token", "--config"])
        .arg(s.config_path())
        .args([
            "--sub",
            "alice",
            "--claim",
            "role=admin",
            "--claim",
            "level=3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = get(&s, "/api/auth/me", Some(&token)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["sub"], "alice");
    assert_eq!(body["user"]["level"], 3);
    assert_eq!(body["user"]["iss"], "https://issuer.test");
}

#[tokio::test]
async fn admin_reload_applies_a_new_config_and_refuses_a_broken_one() {
    let s = Server::start_without_watch(&jwt_config(RULES), &[jwt_plugin()]);
    let admin = hs256(SECRET, good_claims("hal", json!({"role": "admin"})));
    let reload = || {
        client()
            .post(s.url("/api/admin/reload"))
            .bearer_auth(&admin)
            .send()
    };
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["result"], "unchanged");
    // Make /api/auth/me admin-only.
    let cfg = jwt_config("auth:\n  rules:\n    - path: /api/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n");
    std::fs::write(s.config_path(), cfg).unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["result"], "applied", "{r}");
    assert_eq!(r["generation"], 2);
    let user = hs256(SECRET, good_claims("ian", json!({"role": "user"})));
    assert_eq!(get(&s, "/api/auth/me", Some(&user)).await.status(), 403);
    // A broken config is refused with its key path; the last good one keeps serving.
    // Plugin problems are reported with the config's own, in the same attempt.
    let broken = jwt_config("auth:\n  rulez: []\n")
        .replace("auth:\n", "  - name: other\n    plugin: jwtt\nauth:\n");
    std::fs::write(s.config_path(), broken).unwrap();
    let r = reload().await.unwrap();
    // Not a 2xx, so a deploy script's `curl -f` fails.
    assert_eq!(r.status(), 422);
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["result"], "failed");
    assert_eq!(r["generation"], 2, "{r}");
    // Each problem says what kind it is: the file's own, or a plugin's.
    let kind_of = |needle: &str| {
        r["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["message"].as_str().unwrap().contains(needle))
            .map(|e| e["kind"].clone())
    };
    assert_eq!(kind_of("auth.rulez"), Some(json!("config")), "{r}");
    assert_eq!(
        kind_of("providers[1] (other).plugin: no loaded provider plugin is named `jwtt`"),
        Some(json!("plugin")),
        "{r}"
    );
    assert_eq!(get(&s, "/api/auth/me", Some(&user)).await.status(), 403);
    assert_eq!(get(&s, "/api/auth/me", Some(&admin)).await.status(), 200);
    let st: Value = get(&s, "/api/admin/status", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(st["last_attempt"]["result"], "failed");
    assert_eq!(st["last_success"]["result"], "applied");
    assert_eq!(st["generation"], 2);
}

#[tokio::test]
async fn https_serves_with_the_configured_key_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    self_signed_cert("localhost", &key, &cert);
    let cfg = jwt_config(RULES).replace(
        "  port: 0\n",
        &format!(
            "  port: 0\n  https: {{ key: \"{}\", cert: \"{}\" }}\n",
            key.display(),
            cert.display()
        ),
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let t = hs256(SECRET, good_claims("tls", json!({})));
    let base = format!("https://{}", s.addr);
    // The TLS config is built before the listener accepts: the very first handshake works.
    assert_eq!(
        tls.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = tls
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        tls.get(format!("{base}/api/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Plain http on the TLS port does not get an answer from the API.
    assert!(client()
        .get(s.url("/health"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true));
}

#[tokio::test]
async fn tokens_are_routed_to_the_provider_of_their_issuer() {
    let other = "other-secret-0123456789abcdefghijklmnopqrstuvwxyz";
    let cfg = jwt_config(RULES).replace(
        "auth:\n",
        &format!("  - name: second\n    plugin: jwt\n    config:\n      secret: \"{other}\"\n      issuer: [\"https://second.test\"]\n      audience: [\"api\"]\nauth:\n"),
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let mut second = good_claims("sam", json!({}));
    second["iss"] = "https://second.test".into();
    let r = get(&s, "/api/auth/me", Some(&hs256(other, second.clone()))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["provider"], "second");
    let r = get(
        &s,
        "/api/auth/me",
        Some(&hs256(SECRET, good_claims("max", json!({})))),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["provider"], "main");
    // Cross-provider: the second issuer's claims signed with the first provider's secret.
    assert_eq!(
        get(&s, "/api/auth/me", Some(&hs256(SECRET, second)))
            .await
            .status(),
        401
    );
    // An issuer nobody declares is the token's fault: 401, not 503.
    let mut stranger = good_claims("zed", json!({}));
    stranger["iss"] = "https://nobody.test".into();
    assert_eq!(
        get(&s, "/api/auth/me", Some(&hs256(SECRET, stranger)))
            .await
            .status(),
        401
    );
}
