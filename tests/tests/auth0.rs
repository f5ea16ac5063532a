#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The auth0 plugin through the real server and the real `.so`, against a local Auth0 tenant.

use portcullis_tests::{mock::*, mock_auth0::*, *};

const ME: &str = "/api/auth/me";

fn config(m: &MockAuth0, extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 2s\nplugins:\n  dir: plugins\nproviders:\n  - name: auth0\n    plugin: auth0\n    dangerous: {{ allow_http: true }}\n{extra}    config:\n      domain: my-tenant.us.auth0.com\n      audience: \"{AUDIENCE}\"\n      base_url: \"{}\"\n",
        m.base()
    )
}

fn plugin() -> Vec<std::path::PathBuf> {
    vec![portcullis_tests::plugin("portcullis_plugin_auth0")]
}

#[tokio::test]
async fn valid_users_get_in_and_bad_tokens_get_401() {
    let k1 = RsaKey::generate("auth0-key-1");
    let m = MockAuth0::start(vec![k1.jwk.clone()]).await;
    let s = Server::start(&config(&m, ""), &plugin());
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("auth0|123456")))
            .await
            .0,
        200
    );
    // `aud` as a plain string works too.
    let mut one = m.claims("auth0|123456");
    one["aud"] = AUDIENCE.into();
    assert_eq!(get_with_token(&s, ME, &k1.sign(&one)).await.0, 200);
    // Wrong audience, no audience, no subject: 401.
    let mut wrong = m.claims("auth0|123456");
    wrong["aud"] = "https://other-api.example.com".into();
    assert_eq!(get_with_token(&s, ME, &k1.sign(&wrong)).await.0, 401);
    let mut none = m.claims("auth0|123456");
    none.as_object_mut().unwrap().remove("aud");
    assert_eq!(get_with_token(&s, ME, &k1.sign(&none)).await.0, 401);
    let mut nosub = m.claims("x");
    nosub.as_object_mut().unwrap().remove("sub");
    assert_eq!(get_with_token(&s, ME, &k1.sign(&nosub)).await.0, 401);
    // The issuer keeps its trailing slash: without it, 401.
    let mut slashless = m.claims("auth0|123456");
    slashless["iss"] = m.base().into();
    assert_eq!(get_with_token(&s, ME, &k1.sign(&slashless)).await.0, 401);
    assert_token_rejections(&s, ME, &k1, &m.claims("auth0|123456"), 200).await;
}

#[tokio::test]
async fn the_yaml_authorize_override_can_deny() {
    let k1 = RsaKey::generate("auth0-key-1");
    let m = MockAuth0::start(vec![k1.jwk.clone()]).await;
    let s = Server::start(
        &config(&m, "    authorize: \"user.azp == 'admin_client'\"\n"),
        &plugin(),
    );
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("auth0|1")))
            .await
            .0,
        403
    );
    let mut admin = m.claims("auth0|1");
    admin["azp"] = "admin_client".into();
    assert_eq!(get_with_token(&s, ME, &k1.sign(&admin)).await.0, 200);
}

#[tokio::test]
async fn key_set_faults_fail_closed_and_the_next_request_works() {
    for fault in FAULTS {
        let k1 = RsaKey::generate("auth0-key-1");
        let m = MockAuth0::start(vec![k1.jwk.clone()]).await;
        let s = Server::start(&config(&m, ""), &plugin());
        let token = k1.sign(&m.claims("auth0|1"));
        m.fault(Some(fault));
        let (status, took) = get_with_token(&s, ME, &token).await;
        assert_eq!(status, 503, "{fault:?}");
        assert!(took < FAIL_CLOSED_WITHIN, "{fault:?} took {took:?}");
        m.fault(None);
        assert_eq!(
            get_with_token(&s, ME, &token).await.0,
            200,
            "after {fault:?}"
        );
    }
}

#[tokio::test]
async fn key_rotation_and_an_unknown_kid_storm() {
    let k1 = RsaKey::generate("auth0-key-1");
    let m = MockAuth0::start(vec![k1.jwk.clone()]).await;
    let s = Server::start(&config(&m, ""), &plugin());
    assert_rotation_and_storm(
        &s,
        ME,
        &k1,
        |sub| m.claims(sub),
        |keys| m.set_keys(keys),
        || m.jwks_hits(),
    )
    .await;
}

#[tokio::test]
async fn missing_options_are_reported_with_the_seeds_message() {
    let cfg = "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: auth0\n    plugin: auth0\n    config: { domain: my-tenant.us.auth0.com }\n";
    let err = Server::try_start(cfg, &plugin(), &[]).err().unwrap();
    assert!(
        err.contains("Auth0 domain and audience are required"),
        "{err}"
    );
    // The environment fills in what the options leave out.
    let s = Server::try_start(cfg, &plugin(), &[("AUTH0_AUDIENCE", AUDIENCE)]);
    assert!(s.is_ok());
}
