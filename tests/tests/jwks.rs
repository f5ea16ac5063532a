#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! A JWKS-backed jwt provider against a local key server: RS256 tokens, key rotation without a
//! restart, and an unknown-`kid` storm costing at most one refetch.

use portcullis_tests::*;
use serde_json::json;

fn config(url: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: idp\n    plugin: jwt\n    dangerous: {{ allow_http: true }}\n    config:\n      jwks_url: \"{url}\"\n      issuer: [\"https://idp.test/\"]\n      audience: [\"api\"]\n"
    )
}

fn claims_for(sub: &str) -> serde_json::Value {
    let mut c = claims(sub, json!({}));
    c["iss"] = "https://idp.test/".into();
    c["aud"] = "api".into();
    c
}

#[tokio::test]
async fn rs256_via_jwks_rotation_and_unknown_kid_storm() {
    let k1 = RsaKey::generate("k1");
    let jwks = JwksServer::start(vec![k1.jwk.clone()]).await;
    let s = Server::start(&config(&jwks.url()), &[jwt_plugin()]);
    let c = client();
    let me = |t: String| c.get(s.url("/api/auth/me")).bearer_auth(t).send();

    assert_eq!(me(k1.sign(&claims_for("ann"))).await.unwrap().status(), 200);
    assert_eq!(jwks.hits(), 1);
    // Cached: no more fetches.
    assert_eq!(me(k1.sign(&claims_for("ann"))).await.unwrap().status(), 200);
    assert_eq!(jwks.hits(), 1);

    // The provider rotates to a new key: the first token with the new kid triggers one refetch.
    let k2 = RsaKey::generate("k2");
    jwks.set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    assert_eq!(me(k2.sign(&claims_for("bob"))).await.unwrap().status(), 200);
    assert_eq!(jwks.hits(), 2);

    // A storm of unknown kids, concurrently: all 401, at most one more fetch in the window.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let token = k1.sign_with_kid(&format!("nope-{i}"), &claims_for("eve"));
        let url = s.url("/api/auth/me");
        tasks.push(tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 401);
    }
    assert!(
        jwks.hits() <= 3,
        "unknown-kid storm caused {} fetches",
        jwks.hits()
    );

    // A token signed by a key the provider never published is refused.
    let stranger = RsaKey::generate("k1");
    assert_eq!(
        me(stranger.sign(&claims_for("mallory")))
            .await
            .unwrap()
            .status(),
        401
    );
    // Key confusion: HS256 "signed" with the provider's public key PEM.
    let confused = hs256(&k1.pem, claims_for("mallory"));
    assert_eq!(me(confused).await.unwrap().status(), 401);
    // And the next good token still works.
    assert_eq!(me(k1.sign(&claims_for("ann"))).await.unwrap().status(), 200);
}

#[tokio::test]
async fn identity_provider_down_with_no_cached_keys_fails_closed_with_503() {
    // A port nothing listens on.
    let refused = mock::refused_port();
    let url = format!("http://{}/jwks", refused.addr);
    let s = Server::start(&config(&url), &[jwt_plugin()]);
    let k = RsaKey::generate("k1");
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(k.sign(&claims_for("ann")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "Authentication service unavailable"})
    );
}

#[tokio::test]
async fn plain_http_jwks_needs_the_dangerous_flag() {
    let k1 = RsaKey::generate("k1");
    let jwks = JwksServer::start(vec![k1.jwk.clone()]).await;
    let cfg = config(&jwks.url()).replace("    dangerous: { allow_http: true }\n", "");
    let err = Server::try_start(&cfg, &[jwt_plugin()], &[])
        .err()
        .expect("started with plain http");
    assert!(err.contains("plain http is refused"), "{err}");
}
