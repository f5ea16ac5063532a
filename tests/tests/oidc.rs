#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The oidc plugin through the real server and the real `.so`, against a local OpenID Connect
//! provider (discovery document + JWKS, Keycloak-style issuer with a path).

use std::time::{Duration, Instant};

use portcullis_tests::{
    mock::{Fault, FAULTS},
    mock_google::unsigned,
    mock_oidc::*,
    *,
};
use serde_json::{json, Value};

fn oidc_plugin() -> std::path::PathBuf {
    plugin("portcullis_plugin_oidc")
}

// The tests that count discoveries run multi-threaded: `Server::start` blocks its thread until the
// server is up, and the mock identity provider must answer the instance's warm-up meanwhile (a
// warm-up that waited past `plugin_timeout` on a loaded machine is retried by the first request:
// two discoveries where the test counts one). The others rely on the warm-up not having reached
// the provider before they set its faults.

fn config(issuer: &str, extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 3s\nplugins:\n  dir: plugins\nproviders:\n  - name: sso\n    plugin: oidc\n    dangerous: {{ allow_http: true }}\n    config:\n      issuer: \"{issuer}\"\n      audience: api://portcullis\n{extra}"
    )
}

fn claims_for(issuer: &str, sub: &str) -> Value {
    let mut c = claims(
        sub,
        json!({"email_verified": true, "groups": ["staff", "ops"]}),
    );
    c["iss"] = issuer.into();
    c["aud"] = json!(["api://portcullis", "https://other/userinfo"]);
    c
}

async fn status(s: &Server, token: &str) -> u16 {
    mock::get_with_token(s, "/api/auth/me", token).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_keys_verify_tokens_and_every_bad_token_is_401() {
    let k1 = RsaKey::generate("k1");
    let idp = MockOidc::start(vec![k1.jwk.clone()]).await;
    let s = Server::start(
        &config(
            &idp.issuer,
            "      claims: { email_verified: true, groups: ops }\n",
        ),
        &[oidc_plugin()],
    );
    // Discovery is shared: the instance's warm-up and twenty first requests, one discovery, one
    // JWKS fetch.
    let good = claims_for(&idp.issuer, "ann");
    let tokens = (0..20).map(|_| k1.sign(&good)).collect();
    assert!(mock::storm(&s, "/api/auth/me", tokens)
        .await
        .iter()
        .all(|&c| c == 200));
    assert_eq!(idp.discovery_hits(), 1);
    assert_eq!(idp.jwks_hits(), 1);

    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(k1.sign(&good))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["provider"], "sso");
    assert_eq!(body["user"]["sub"], "ann");

    let t = now();
    let set = |changes: Value| {
        let mut c = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let no_sub = {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("sub");
        c
    };
    let stranger = RsaKey::generate("k1");
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &good,
        &jsonwebtoken::EncodingKey::from_secret(k1.pem.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong iss",
            k1.sign(&set(json!({"iss": format!("{}/../other", idp.issuer)}))),
        ),
        ("wrong aud", k1.sign(&set(json!({"aud": "api://else"})))),
        (
            "expired",
            k1.sign(&set(json!({"exp": t - 3600, "iat": t - 7200}))),
        ),
        ("bad signature", stranger.sign(&good)),
        ("no sub", k1.sign(&no_sub)),
        ("unknown kid", k1.sign_with_kid("k9", &good)),
        ("alg none", unsigned(&good)),
        ("HS256 with the public key", confused),
        (
            "claim value differs",
            k1.sign(&set(json!({"email_verified": false}))),
        ),
        (
            "array claim lacks the value",
            k1.sign(&set(json!({"groups": ["staff"]}))),
        ),
    ];
    for (what, token) in cases {
        assert_eq!(status(&s, &token).await, 401, "{what}");
    }
    assert_eq!(status(&s, &k1.sign(&good)).await, 200);
    assert_eq!(idp.discovery_hits(), 1);
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_an_unknown_kid_storm_costs_one_fetch() {
    let k1 = RsaKey::generate("k1");
    let idp = MockOidc::start(vec![k1.jwk.clone()]).await;
    let s = Server::start(&config(&idp.issuer, ""), &[oidc_plugin()]);
    let good = claims_for(&idp.issuer, "ann");
    assert_eq!(status(&s, &k1.sign(&good)).await, 200);
    assert_eq!(idp.jwks_hits(), 1);

    let k2 = RsaKey::generate("k2");
    idp.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    assert_eq!(status(&s, &k2.sign(&good)).await, 200);
    assert_eq!(idp.jwks_hits(), 2);

    let tokens = (0..50)
        .map(|i| k1.sign_with_kid(&format!("nope-{i}"), &good))
        .collect();
    assert!(mock::storm(&s, "/api/auth/me", tokens)
        .await
        .iter()
        .all(|&c| c == 401));
    assert_eq!(idp.jwks_hits(), 2, "unknown-kid storm refetched");
    assert_eq!(status(&s, &k1.sign(&good)).await, 200);
    assert_eq!(idp.discovery_hits(), 1);
}

#[tokio::test]
async fn discovery_and_jwks_failures_fail_closed_and_recover() {
    let k1 = RsaKey::generate("k1");
    let idp = MockOidc::start(vec![k1.jwk.clone()]).await;
    // Every failure mode must be seen by a request of its own: no retry pause.
    let s = Server::start(
        &config(&idp.issuer, "      discovery_retry_secs: 0\n"),
        &[oidc_plugin()],
    );
    let token = k1.sign(&claims_for(&idp.issuer, "ann"));
    for fault in FAULTS {
        idp.discovery_fault(Some(fault));
        let started = Instant::now();
        assert_eq!(status(&s, &token).await, 503, "discovery {fault:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // A document that names another issuer is refused (OIDC Discovery §4.3).
    idp.discovery_fault(None);
    idp.set_document_issuer(Some("https://evil.example/"));
    assert_eq!(status(&s, &token).await, 503);
    // A provider that only offers HS256/none leaves nothing to verify with.
    idp.set_document_issuer(None);
    idp.set_algorithms(json!(["HS256", "none"]));
    assert_eq!(status(&s, &token).await, 503);
    idp.set_algorithms(json!(["RS256"]));

    for fault in FAULTS {
        idp.jwks_fault(Some(fault));
        let started = Instant::now();
        assert_eq!(status(&s, &token).await, 503, "jwks {fault:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    idp.jwks_fault(None);
    assert_eq!(status(&s, &token).await, 200);
}

#[tokio::test]
async fn configured_algorithms_narrow_discovery_and_typ_is_checked() {
    let k1 = RsaKey::generate("k1");
    let idp = MockOidc::start(vec![k1.jwk.clone()]).await;
    // Only PS256 allowed here: RS256 tokens are refused even though discovery offers RS256.
    let s = Server::start(
        &config(&idp.issuer, "      algorithms: [PS256]\n"),
        &[oidc_plugin()],
    );
    assert_eq!(
        status(&s, &k1.sign(&claims_for(&idp.issuer, "ann"))).await,
        401
    );
    let s = Server::start(
        &config(&idp.issuer, "      typ: [at+jwt]\n"),
        &[oidc_plugin()],
    );
    // RsaKey signs with `typ: JWT`.
    assert_eq!(
        status(&s, &k1.sign(&claims_for(&idp.issuer, "ann"))).await,
        401
    );
}

#[tokio::test]
async fn missing_options_are_named_and_hmac_is_refused() {
    let cfg = "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: sso\n    plugin: oidc\n    config: {}\n";
    let err = Server::try_start(cfg, &[oidc_plugin()], &[])
        .err()
        .expect("started without issuer and audience");
    assert!(
        err.contains("OIDC issuer and audience are required")
            && err.contains("`issuer`")
            && err.contains("`audience`"),
        "{err}"
    );
    let err = Server::try_start(
        &config("https://idp.example", "      algorithms: [HS256]\n"),
        &[oidc_plugin()],
        &[],
    )
    .err()
    .expect("started with HS256");
    assert!(err.contains("`HS256` is not allowed"), "{err}");
    // The env fallbacks fill what the YAML leaves out.
    let s = Server::start_with_env(
        &cfg.replace("config: {}", "config: { audience: api }"),
        &[oidc_plugin()],
        &[("OIDC_ISSUER", "https://idp.example/")],
    );
    drop(s);
}

/// ABI 1.1's `warm_up`: the plugin discovers as soon as the server has built the instance, before
/// any request asks (the first caller then does not wait for the round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_happens_at_start_before_any_request() {
    let k1 = RsaKey::generate("k1");
    let idp = MockOidc::start(vec![k1.jwk.clone()]).await;
    let _s = Server::start(&config(&idp.issuer, ""), &[oidc_plugin()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while idp.discovery_hits() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(idp.discovery_hits(), 1, "discovered once, with no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_discovery_is_not_retried_by_every_request() {
    let k1 = RsaKey::generate("k1");
    let idp = MockOidc::start(vec![k1.jwk.clone()]).await;
    idp.discovery_fault(Some(Fault::ServerError));
    let s = Server::start(
        &config(&idp.issuer, "      discovery_retry_secs: 300\n"),
        &[oidc_plugin()],
    );
    let token = k1.sign(&claims_for(&idp.issuer, "ann"));
    for _ in 0..10 {
        assert_eq!(status(&s, &token).await, 503);
    }
    let tokens = (0..20).map(|_| token.clone()).collect();
    assert!(mock::storm(&s, "/api/auth/me", tokens)
        .await
        .iter()
        .all(|&c| c == 503));
    assert_eq!(
        idp.discovery_hits(),
        1,
        "one discovery per retry window while the provider is down"
    );
}
