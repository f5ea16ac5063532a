#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The workos plugin through the real server and the real `.so`, against a local WorkOS.

use portcullis_tests::{mock::*, mock_workos::*, *};

const ME: &str = "/api/auth/me";

fn config(base: &str, extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 2s\nplugins:\n  dir: plugins\nproviders:\n  - name: workos\n    plugin: workos\n    dangerous: {{ allow_http: true }}\n{extra}    config:\n      api_key: \"{API_KEY}\"\n      client_id: \"{CLIENT_ID}\"\n      api_base: \"{base}\"\n"
    )
}

fn plugin() -> Vec<std::path::PathBuf> {
    vec![portcullis_tests::plugin("portcullis_plugin_workos")]
}

#[tokio::test]
async fn admins_get_in_members_get_403_and_bad_tokens_get_401() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    m.set_roles("user_admin", &["member", "admin"]);
    m.set_roles("user_member", &["member"]);
    // 150 memberships, the admin one the oldest: it is on the second page of 100.
    let mut many = vec!["admin"];
    many.extend(std::iter::repeat_n("member", 149));
    m.set_roles("user_paged", &many);
    // The seed read the client id from the environment: a different one there must not matter.
    let s = Server::start_with_env(
        &config(m.base(), ""),
        &plugin(),
        &[("WORKOS_CLIENT_ID", "client_from_the_environment")],
    );
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_admin")))
            .await
            .0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_member")))
            .await
            .0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_paged")))
            .await
            .0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_nobody")))
            .await
            .0,
        403
    );
    // A subject cannot smuggle another query parameter.
    let sneaky = k1.sign(&m.claims("user_member&user_id=user_admin"));
    assert_eq!(get_with_token(&s, ME, &sneaky).await.0, 403);
    assert_token_rejections(&s, ME, &k1, &m.claims("user_admin"), 200).await;
}

#[tokio::test]
async fn memberships_are_asked_once_per_subject_per_ttl() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    m.set_roles("user_admin", &["admin"]);
    m.set_roles("user_member", &["member"]);
    let s = Server::start(
        &config(m.base(), "    authorization_cache: 2s\n"),
        &plugin(),
    );
    let admin = k1.sign(&m.claims("user_admin"));
    for _ in 0..5 {
        assert_eq!(get_with_token(&s, ME, &admin).await.0, 200);
    }
    assert_eq!(m.hits("memberships"), 1);
    // A deny is cached too; another subject is asked about once.
    let member = k1.sign(&m.claims("user_member"));
    for _ in 0..5 {
        assert_eq!(get_with_token(&s, ME, &member).await.0, 403);
    }
    assert_eq!(m.hits("memberships"), 2);
    // Past the TTL the answer is asked for again — once.
    let hits = || m.hits("memberships");
    assert!(
        until(
            &s,
            ME,
            &admin,
            200,
            std::time::Duration::from_secs(10),
            || hits() >= 3
        )
        .await
    );
    assert_eq!(get_with_token(&s, ME, &admin).await.0, 200);
    assert_eq!(m.hits("memberships"), 3);
}

#[tokio::test]
async fn membership_api_faults_fail_closed_and_the_next_request_works() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    m.set_roles("user_admin", &["admin"]);
    let s = Server::start(&config(m.base(), "    authorization_cache: 0\n"), &plugin());
    let admin = k1.sign(&m.claims("user_admin"));
    assert_eq!(get_with_token(&s, ME, &admin).await.0, 200);
    for fault in FAULTS {
        m.api_fault(Some(fault));
        let (status, took) = get_with_token(&s, ME, &admin).await;
        // An empty list is a definite answer (no memberships): 403. Everything else is "could not
        // check": 503.
        let expected = if fault == Fault::Empty { 403 } else { 503 };
        assert_eq!(status, expected, "{fault:?}");
        assert!(took < FAIL_CLOSED_WITHIN, "{fault:?} took {took:?}");
        m.api_fault(None);
        assert_eq!(
            get_with_token(&s, ME, &admin).await.0,
            200,
            "after {fault:?}"
        );
    }
    // Uncached: every request asked.
    assert!(m.hits("memberships") >= 13);
}

#[tokio::test]
async fn key_set_faults_fail_closed_and_the_next_request_works() {
    for fault in FAULTS {
        let k1 = RsaKey::generate("key_01");
        let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
        m.set_roles("user_admin", &["admin"]);
        let s = Server::start(&config(m.base(), ""), &plugin());
        let admin = k1.sign(&m.claims("user_admin"));
        m.jwks_fault(Some(fault));
        let (status, took) = get_with_token(&s, ME, &admin).await;
        assert_eq!(status, 503, "{fault:?}");
        assert!(took < FAIL_CLOSED_WITHIN, "{fault:?} took {took:?}");
        m.jwks_fault(None);
        assert_eq!(
            get_with_token(&s, ME, &admin).await.0,
            200,
            "after {fault:?}"
        );
    }
}

#[tokio::test]
async fn key_rotation_and_an_unknown_kid_storm() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    m.set_roles("user_a", &["admin"]);
    let s = Server::start(&config(m.base(), ""), &plugin());
    assert_rotation_and_storm(
        &s,
        ME,
        &k1,
        |sub| m.claims(sub),
        |keys| m.set_keys(keys),
        || m.hits("jwks"),
    )
    .await;
}

#[tokio::test]
async fn missing_options_are_reported_with_the_seeds_message() {
    let cfg = "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: workos\n    plugin: workos\n";
    let err = Server::try_start(cfg, &plugin(), &[]).err().unwrap();
    assert!(
        err.contains("WorkOS API key and client ID are required"),
        "{err}"
    );
    assert!(err.contains("workos"), "{err}");
    // Plain http needs the dangerous flag.
    let cfg = config("http://127.0.0.1:9", "").replace("    dangerous: { allow_http: true }\n", "");
    let err = Server::try_start(&cfg, &plugin(), &[]).err().unwrap();
    assert!(err.contains("plain http is refused"), "{err}");
}
