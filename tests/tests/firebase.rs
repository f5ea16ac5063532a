#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The firebase plugin through the real server and the real `.so`, against a local Google that
//! speaks the real wire formats (securetoken certificates, the JWT-bearer token endpoint,
//! Firestore REST, the Auth emulator).

use std::time::{Duration, Instant};

use portcullis_tests::{
    mock::{Fault, FAULTS},
    mock_google::*,
    *,
};
use serde_json::{json, Value};

const PROJECT: &str = "demo-project";
const KID1: &str = "0d8a67399e7882acae7d7f68b2280256a796a582";
const KID2: &str = "e5a91d9f39fa4de254a1e89df00f05b7e248b985";

fn firebase_plugin() -> std::path::PathBuf {
    plugin("portcullis_plugin_firebase")
}

fn config(g: &MockGoogle, extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 3s\nplugins:\n  dir: plugins\nproviders:\n  - name: fb\n    plugin: firebase\n    dangerous: {{ allow_http: true }}\n    config:\n      certs_url: \"{}\"\n      firestore_url: \"{}\"\n{extra}",
        g.certs_url(),
        g.base
    )
}

/// A server whose service account comes from `FIREBASE_SERVICE_ACCOUNT` (JSON text).
fn start(g: &MockGoogle) -> Server {
    let sa = g.service_account_json();
    Server::start_with_env(
        &config(g, ""),
        &[firebase_plugin()],
        &[("FIREBASE_SERVICE_ACCOUNT", &sa)],
    )
}

/// As [`start`], with the authorization cache off, so that every request reads Firestore.
fn start_uncached(g: &MockGoogle) -> Server {
    let sa = g.service_account_json();
    Server::start_with_env(
        &config(g, "").replace(
            "    dangerous:",
            "    authorization_cache: 0s\n    dangerous:",
        ),
        &[firebase_plugin()],
        &[("FIREBASE_SERVICE_ACCOUNT", &sa)],
    )
}

async fn status(s: &Server, token: &str) -> u16 {
    mock::get_with_token(s, "/api/auth/me", token).await.0
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

#[tokio::test]
async fn allowed_user_is_200_others_403_and_one_access_token_serves_everyone() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let s = start(&g);

    // Twenty first requests at once: one certificate fetch, one token grant, shared.
    let tokens = (0..20)
        .map(|_| k1.sign(&id_token_claims(PROJECT, "ada")))
        .collect();
    assert!(mock::storm(&s, "/api/auth/me", tokens)
        .await
        .iter()
        .all(|&c| c == 200));
    assert_eq!(g.certs_hits(), 1);
    assert_eq!(g.token_hits(), 1, "the access token must be fetched once");
    assert_eq!(
        g.firestore_hits(),
        1,
        "one Firestore read per subject per authorization_cache TTL, shared by concurrent requests"
    );

    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(k1.sign(&id_token_claims(PROJECT, "ada")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["provider"], "fb");
    assert_eq!(body["user"]["uid"], "ada");
    assert_eq!(body["user"]["email"], "ada@example.com");

    // No user_access document: authenticated, not allowed.
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "bob"))).await,
        403
    );
    // A uid that would be a path in Firestore never reads another document.
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada/x/ada"))).await,
        403
    );
    assert_eq!(g.token_hits(), 1);
    assert_eq!(g.certs_hits(), 1);
}

#[tokio::test]
async fn every_bad_token_is_401_and_never_reaches_firestore() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let s = start(&g);
    let good = id_token_claims(PROJECT, "ada");
    assert_eq!(status(&s, &k1.sign(&good)).await, 200);
    let reads = g.firestore_hits();

    let t = now() as i64;
    let stranger = GoogleKey::generate(KID1);
    let hs_with = |secret: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(KID1.into());
        jsonwebtoken::encode(
            &h,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let none_as = |alg: &str| {
        format!(
            "{}.{}.",
            b64(json!({"alg": alg, "kid": KID1, "typ": "JWT"})
                .to_string()
                .as_bytes()),
            b64(good.to_string().as_bytes())
        )
    };
    let tampered = {
        let real = k1.sign(&good);
        let other = b64(with(good.clone(), json!({"sub": "root"}))
            .to_string()
            .as_bytes());
        let parts: Vec<&str> = real.split('.').collect();
        format!("{}.{other}.{}", parts[0], parts[2])
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong iss",
            k1.sign(&with(
                good.clone(),
                json!({"iss": "https://securetoken.google.com/other-project"}),
            )),
        ),
        (
            "wrong aud",
            k1.sign(&with(good.clone(), json!({"aud": "other-project"}))),
        ),
        (
            "expired",
            k1.sign(&with(
                good.clone(),
                json!({"exp": t - 3600, "iat": t - 7200, "auth_time": t - 7200}),
            )),
        ),
        ("no exp", k1.sign(&with(good.clone(), json!({"exp": null})))),
        ("bad signature", stranger.sign(&good)),
        ("tampered payload", tampered),
        ("unknown kid", k1.sign_with_kid(Some("nope"), &good)),
        ("no kid", k1.sign_with_kid(None, &good)),
        ("alg none", unsigned(&good)),
        ("alg None", none_as("None")),
        ("alg NONE", none_as("NONE")),
        ("HS256 with the public key", hs_with(&k1.public_pem)),
        ("HS256 with the certificate", hs_with(&k1.cert_pem)),
        (
            "empty sub",
            k1.sign(&with(good.clone(), json!({"sub": ""}))),
        ),
        (
            "sub over 128 chars",
            k1.sign(&with(good.clone(), json!({"sub": "a".repeat(129)}))),
        ),
        ("no sub", k1.sign(&with(good.clone(), json!({"sub": null})))),
        (
            "auth_time in the future",
            k1.sign(&with(good.clone(), json!({"auth_time": t + 600}))),
        ),
        (
            "no auth_time",
            k1.sign(&with(good.clone(), json!({"auth_time": null}))),
        ),
        (
            "iat in the future",
            k1.sign(&with(good.clone(), json!({"iat": t + 600}))),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, token) in cases {
        assert_eq!(status(&s, &token).await, 401, "{what}");
    }
    assert_eq!(g.firestore_hits(), reads, "a bad token reached Firestore");
    assert_eq!(status(&s, &k1.sign(&good)).await, 200);
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_an_unknown_kid_storm_costs_one_fetch() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let s = start(&g);
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        200
    );
    assert_eq!(g.certs_hits(), 1);

    // Google rotates: a token under the new kid triggers one refetch, no restart.
    let k2 = GoogleKey::generate(KID2);
    g.set_keys(&[&k1, &k2]);
    assert_eq!(
        status(&s, &k2.sign(&id_token_claims(PROJECT, "ada"))).await,
        200
    );
    assert_eq!(g.certs_hits(), 2);

    // Fifty unknown kids at once, in the same window: all 401, no further fetch.
    let tokens = (0..50)
        .map(|i| {
            k1.sign_with_kid(
                Some(&format!("unknown-{i}")),
                &id_token_claims(PROJECT, "ada"),
            )
        })
        .collect();
    assert!(mock::storm(&s, "/api/auth/me", tokens)
        .await
        .iter()
        .all(|&c| c == 401));
    assert_eq!(g.certs_hits(), 2, "unknown-kid storm refetched");
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        200
    );
}

#[tokio::test]
async fn a_certificate_endpoint_that_misbehaves_fails_closed_and_recovers() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let s = start(&g);
    let token = k1.sign(&id_token_claims(PROJECT, "ada"));
    for fault in FAULTS {
        g.certs_fault(Some(fault));
        let started = Instant::now();
        assert_eq!(status(&s, &token).await, 503, "{fault:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{fault:?}");
    }
    assert_eq!(g.firestore_hits(), 0);
    g.certs_fault(None);
    assert_eq!(status(&s, &token).await, 200);

    // Once keys are cached, the endpoint going down does not matter until they expire.
    g.certs_fault(Some(Fault::ServerError));
    assert_eq!(status(&s, &token).await, 200);
}

#[tokio::test]
async fn a_certificate_endpoint_nobody_listens_on_is_503() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    let dead = mock::refused_port();
    let dead_url = format!("http://{}/certs", dead.addr);
    let cfg = config(&g, "").replace(&g.certs_url(), &dead_url);
    let s = Server::start_with_env(
        &cfg,
        &[firebase_plugin()],
        &[("FIREBASE_SERVICE_ACCOUNT", &g.service_account_json())],
    );
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        503
    );
}

#[tokio::test]
async fn firestore_and_token_endpoint_failures_fail_closed_and_recover() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let s = start_uncached(&g);
    let token = k1.sign(&id_token_claims(PROJECT, "ada"));
    assert_eq!(status(&s, &token).await, 200);
    for fault in FAULTS {
        g.firestore_fault(Some(fault));
        let started = Instant::now();
        assert_eq!(status(&s, &token).await, 503, "firestore {fault:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "{fault:?}");
    }
    g.firestore_fault(None);
    assert_eq!(status(&s, &token).await, 200);
    assert_eq!(g.token_hits(), 1);

    // Firestore refuses the access token: one new grant, transparently.
    g.revoke_access_tokens();
    assert_eq!(status(&s, &token).await, 200);
    assert_eq!(g.token_hits(), 2);

    // And when the token endpoint is what misbehaves, the check cannot be made.
    for fault in [Fault::ServerError, Fault::Html, Fault::Slow] {
        g.revoke_access_tokens();
        g.token_fault(Some(fault));
        assert_eq!(status(&s, &token).await, 503, "token endpoint {fault:?}");
    }
    g.token_fault(None);
    assert_eq!(status(&s, &token).await, 200);
}

#[tokio::test]
async fn service_account_from_a_file_and_a_named_database() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sa.json");
    std::fs::write(&path, g.service_account_json()).unwrap();
    let extra = format!("      service_account: \"{}\"\n", path.display());
    let s = Server::start_with_env(
        &config(&g, &extra),
        &[firebase_plugin()],
        &[("FIRESTORE_DATABASE_ID", "users-db")],
    );
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        200
    );
    // A database that does not exist is not "user not allowed": the check failed.
    let extra = format!(
        "      service_account: \"{}\"\n      database_id: missing-db\n",
        path.display()
    );
    let s = Server::start(&config(&g, &extra), &[firebase_plugin()]);
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        503
    );
}

#[tokio::test]
async fn a_missing_service_account_is_refused_at_load_by_name() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    let err = Server::try_start(&config(&g, ""), &[firebase_plugin()], &[])
        .err()
        .expect("started without a service account");
    assert!(
        err.contains("Firebase service account is required") && err.contains("fb"),
        "{err}"
    );
    let err = Server::try_start(
        &config(
            &g,
            "      service_account: \"{\\\"project_id\\\": \\\"p\\\"}\"\n",
        ),
        &[firebase_plugin()],
        &[],
    )
    .err()
    .expect("started with a broken service account");
    assert!(
        err.contains("service_account: not a service-account key"),
        "{err}"
    );
}

#[tokio::test]
async fn emulator_variables_are_ignored_without_the_explicit_opt_in() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    let sa = g.service_account_json();
    let s = Server::start_with_env(
        &config(&g, ""),
        &[firebase_plugin()],
        &[
            ("FIREBASE_SERVICE_ACCOUNT", &sa),
            ("FIREBASE_AUTH_EMULATOR_HOST", &g.host_port()),
            ("FIRESTORE_EMULATOR_HOST", &g.host_port()),
        ],
    );
    assert_eq!(
        status(&s, &unsigned(&id_token_claims(PROJECT, "ada"))).await,
        401
    );
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        200
    );
    assert_eq!(g.lookup_hits(), 0);
    assert!(s.log().contains("dangerous_emulator"), "no warning logged");
}

#[tokio::test]
async fn emulator_mode_takes_unsigned_tokens_checks_the_account_and_uses_bearer_owner() {
    let k1 = GoogleKey::generate(KID1);
    let g = MockGoogle::start(PROJECT, &[&k1]).await;
    g.allow("ada");
    g.allow("dan");
    g.accept_owner();
    let t = now();
    g.add_emulator_user(
        json!({"localId": "ada", "disabled": false, "validSince": (t - 3600).to_string()}),
    );
    g.add_emulator_user(json!({"localId": "dan", "disabled": true, "validSince": "0"}));
    g.add_emulator_user(
        json!({"localId": "rev", "disabled": false, "validSince": (t - 5).to_string()}),
    );
    let cfg = "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 3s\nplugins:\n  dir: plugins\nproviders:\n  - name: fb\n    plugin: firebase\n    dangerous: { allow_http: true }\n    config:\n      dangerous_emulator: true\n";
    let s = Server::start_with_env(
        cfg,
        &[firebase_plugin()],
        &[
            ("GOOGLE_CLOUD_PROJECT", PROJECT),
            ("FIREBASE_AUTH_EMULATOR_HOST", &g.host_port()),
            ("FIRESTORE_EMULATOR_HOST", &g.host_port()),
        ],
    );
    assert!(s.log().contains("UNSIGNED"), "no loud warning");
    assert_eq!(
        status(&s, &unsigned(&id_token_claims(PROJECT, "ada"))).await,
        200
    );
    assert_eq!(g.lookup_hits(), 1);
    // A signed token is not an emulator token.
    assert_eq!(
        status(&s, &k1.sign(&id_token_claims(PROJECT, "ada"))).await,
        401
    );
    // Unknown, disabled and revoked accounts; wrong audience; expired.
    for (what, claims) in [
        ("unknown user", id_token_claims(PROJECT, "zed")),
        ("disabled user", id_token_claims(PROJECT, "dan")),
        ("revoked session", id_token_claims(PROJECT, "rev")),
        (
            "wrong aud",
            with(id_token_claims(PROJECT, "ada"), json!({"aud": "other"})),
        ),
        (
            "expired",
            with(
                id_token_claims(PROJECT, "ada"),
                json!({"exp": t - 100, "iat": t - 4000, "auth_time": t - 4000}),
            ),
        ),
    ] {
        assert_eq!(status(&s, &unsigned(&claims)).await, 401, "{what}");
    }
    assert_eq!(g.token_hits(), 0, "the emulator needs no OAuth token");
    assert_eq!(g.certs_hits(), 0);
}

#[test]
fn portcullis_check_names_the_missing_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("firebase.yaml");
    std::fs::write(
        &cfg,
        format!(
            "version: 1\nplugins:\n  dir: \"{}\"\nproviders:\n  - name: fb\n    plugin: firebase\n    config: {{ database_id: users-db }}\n",
            target_dir().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .arg("check")
        .arg(&cfg)
        .env("PORTCULLIS_STATE_DIR", dir.path().join("state"))
        .env_remove("FIREBASE_SERVICE_ACCOUNT")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("providers[0] (fb)") && text.contains("FIREBASE_SERVICE_ACCOUNT"),
        "{text}"
    );
}
