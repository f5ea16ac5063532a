#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The clerk plugin through the real server and the real `.so`, against a local Clerk.

use portcullis_tests::{mock::*, mock_clerk::*, *};

const ME: &str = "/api/auth/me";
const APP: &str = "https://app.example.com";

fn config(m: &MockClerk, extra: &str, config_extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 2s\nplugins:\n  dir: plugins\nproviders:\n  - name: clerk\n    plugin: clerk\n    dangerous: {{ allow_http: true }}\n{extra}    config:\n      jwks_uri: \"{}\"\n      secret_key: \"{SECRET_KEY}\"\n      publishable_key: \"{PUBLISHABLE_KEY}\"\n      api_base: \"{}\"\n      issuer: [\"{}\"]\n{config_extra}",
        m.jwks_uri(),
        m.base(),
        m.base()
    )
}

fn plugin() -> Vec<std::path::PathBuf> {
    vec![portcullis_tests::plugin("portcullis_plugin_clerk")]
}

#[tokio::test]
async fn members_get_in_others_get_403_and_bad_tokens_get_401() {
    let k1 = RsaKey::generate("ins_2cgmfxtaRzlfJXa4gmWRP20qo7D");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    m.set_memberships("user_member", 3);
    m.set_memberships("../admin", 1);
    let s = Server::start(
        &config(&m, "", &format!("      authorized_parties: [\"{APP}\"]\n")),
        &plugin(),
    );
    let ok = |sub: &str| k1.sign(&m.claims(sub, Some(APP)));
    assert_eq!(get_with_token(&s, ME, &ok("user_member")).await.0, 200);
    assert_eq!(get_with_token(&s, ME, &ok("user_loner")).await.0, 403);
    // A `sub` of `../admin` stays one path segment: it is that user's memberships that are asked.
    assert_eq!(get_with_token(&s, ME, &ok("../admin")).await.0, 200);
    assert!(
        m.membership_paths()
            .contains(&"/v1/users/..%2Fadmin/organization_memberships".to_string()),
        "{:?}",
        m.membership_paths()
    );
    // Authorized parties: a wrong or missing `azp` is refused.
    let other = k1.sign(&m.claims("user_member", Some("https://evil.example")));
    assert_eq!(get_with_token(&s, ME, &other).await.0, 401);
    let none = k1.sign(&m.claims("user_member", None));
    assert_eq!(get_with_token(&s, ME, &none).await.0, 401);
    assert_token_rejections(&s, ME, &k1, &m.claims("user_member", Some(APP)), 200).await;
}

#[tokio::test]
async fn memberships_are_asked_once_per_subject_per_ttl() {
    let k1 = RsaKey::generate("ins_1");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    m.set_memberships("user_member", 1);
    let s = Server::start(&config(&m, "    authorization_cache: 2s\n", ""), &plugin());
    let member = k1.sign(&m.claims("user_member", None));
    for _ in 0..5 {
        assert_eq!(get_with_token(&s, ME, &member).await.0, 200);
    }
    assert_eq!(m.hits("memberships"), 1);
    let loner = k1.sign(&m.claims("user_loner", None));
    for _ in 0..5 {
        assert_eq!(get_with_token(&s, ME, &loner).await.0, 403);
    }
    assert_eq!(m.hits("memberships"), 2);
    let hits = || m.hits("memberships");
    assert!(
        until(
            &s,
            ME,
            &member,
            200,
            std::time::Duration::from_secs(10),
            || hits() >= 3
        )
        .await
    );
    assert_eq!(get_with_token(&s, ME, &member).await.0, 200);
    assert_eq!(m.hits("memberships"), 3);
}

#[tokio::test]
async fn membership_api_faults_fail_closed_and_the_next_request_works() {
    let k1 = RsaKey::generate("ins_1");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    m.set_memberships("user_member", 1);
    let s = Server::start(&config(&m, "    authorization_cache: 0\n", ""), &plugin());
    let member = k1.sign(&m.claims("user_member", None));
    assert_eq!(get_with_token(&s, ME, &member).await.0, 200);
    for fault in FAULTS {
        m.api_fault(Some(fault));
        let (status, took) = get_with_token(&s, ME, &member).await;
        // `{"data":[],"total_count":0}` is a definite "no membership": 403.
        let expected = if fault == Fault::Empty { 403 } else { 503 };
        assert_eq!(status, expected, "{fault:?}");
        assert!(took < FAIL_CLOSED_WITHIN, "{fault:?} took {took:?}");
        m.api_fault(None);
        assert_eq!(
            get_with_token(&s, ME, &member).await.0,
            200,
            "after {fault:?}"
        );
    }
}

#[tokio::test]
async fn key_set_faults_fail_closed_and_the_next_request_works() {
    for fault in FAULTS {
        let k1 = RsaKey::generate("ins_1");
        let m = MockClerk::start(vec![k1.jwk.clone()]).await;
        m.set_memberships("user_member", 1);
        let s = Server::start(&config(&m, "", ""), &plugin());
        let member = k1.sign(&m.claims("user_member", None));
        m.jwks_fault(Some(fault));
        let (status, took) = get_with_token(&s, ME, &member).await;
        assert_eq!(status, 503, "{fault:?}");
        assert!(took < FAIL_CLOSED_WITHIN, "{fault:?} took {took:?}");
        m.jwks_fault(None);
        assert_eq!(
            get_with_token(&s, ME, &member).await.0,
            200,
            "after {fault:?}"
        );
    }
}

#[tokio::test]
async fn key_rotation_and_an_unknown_kid_storm() {
    let k1 = RsaKey::generate("ins_1");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    m.set_memberships("user_a", 1);
    let s = Server::start(&config(&m, "", ""), &plugin());
    assert_rotation_and_storm(
        &s,
        ME,
        &k1,
        |sub| m.claims(sub, None),
        |keys| m.set_keys(keys),
        || m.hits("jwks"),
    )
    .await;
}

#[tokio::test]
async fn missing_options_are_reported_with_the_seeds_message() {
    let cfg = "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: clerk\n    plugin: clerk\n    config:\n      jwks_uri: \"https://clerk.example.com/.well-known/jwks.json\"\n";
    let err = Server::try_start(cfg, &plugin(), &[("CLERK_SECRET_KEY", SECRET_KEY)])
        .err()
        .unwrap();
    assert!(
        err.contains("Clerk JWKS URI, secret key and publishable key are required"),
        "{err}"
    );
    assert!(!err.contains(SECRET_KEY), "{err}");
}

/// Another organization, one a user could have created for themselves.
const ORG_B: &str = "org_2ZUtbk2yvnFGItdeze1ivCh3uqh";

/// Whether some memberships request carried `name=value`.
fn asked_with(m: &MockClerk, name: &str, value: &str) -> bool {
    m.membership_queries()
        .iter()
        .any(|q| q.iter().any(|(k, v)| k == name && v == value))
}

/// The hole this scope closes: the seed allowed anyone with a membership in *any* organization, so
/// a user who could create an organization of their own passed everywhere.
#[tokio::test]
async fn a_member_of_their_own_organization_is_not_a_member_of_the_tokens() {
    let k1 = RsaKey::generate("ins_1");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    m.set_orgs("user_a", &[ORG_ID]);
    m.set_orgs("user_b", &[ORG_B]);
    // One subject switches organizations below: keep no answers between requests.
    let s = Server::start(&config(&m, "    authorization_cache: 0\n", ""), &plugin());
    let v1 = |sub: &str, org: Option<&str>| k1.sign(&m.claims_v1(sub, None, org));
    let v2 = |sub: &str, org: Option<&str>| k1.sign(&m.claims_v2(sub, None, org));

    // A member of org A, with version-1 (`org_id`) and version-2 (`o.id`) tokens.
    assert_eq!(
        get_with_token(&s, ME, &v1("user_a", Some(ORG_ID))).await.0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &v2("user_a", Some(ORG_ID))).await.0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &v1("user_a", Some(ORG_B))).await.0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &v2("user_a", Some(ORG_B))).await.0,
        403
    );
    // A member of their own organization only, with a token naming org A.
    assert_eq!(
        get_with_token(&s, ME, &v1("user_b", Some(ORG_ID))).await.0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &v2("user_b", Some(ORG_ID))).await.0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &v2("user_b", Some(ORG_B))).await.0,
        200
    );

    // No active organization, or claims that do not say which one: 403 without asking Clerk.
    let before = m.hits("memberships");
    assert_eq!(get_with_token(&s, ME, &v1("user_a", None)).await.0, 403);
    assert_eq!(get_with_token(&s, ME, &v2("user_a", None)).await.0, 403);
    let mut both = m.claims_v1("user_a", None, Some(ORG_ID));
    both["o"] = serde_json::json!({"id": ORG_B});
    assert_eq!(get_with_token(&s, ME, &k1.sign(&both)).await.0, 403);
    let mut odd = m.claims_v2("user_a", None, None);
    for bad in [
        serde_json::json!({"id": 7}),
        serde_json::json!({"id": ""}),
        serde_json::json!(ORG_ID),
    ] {
        odd["o"] = bad.clone();
        assert_eq!(get_with_token(&s, ME, &k1.sign(&odd)).await.0, 403, "{bad}");
    }
    assert_eq!(m.hits("memberships"), before);
}

#[tokio::test]
async fn memberships_are_paged_through_until_the_tokens_organization() {
    let k1 = RsaKey::generate("ins_1");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    // 250 memberships, newest first: the oldest, in org A, is on the third page of 100.
    let others: Vec<String> = (0..249).map(|i| format!("org_other_{i:03}")).collect();
    let mut paged: Vec<&str> = vec![ORG_ID];
    paged.extend(others.iter().map(String::as_str));
    m.set_orgs("user_paged", &paged);
    m.set_orgs("user_elsewhere", &paged[1..]);
    let s = Server::start(&config(&m, "    authorization_cache: 0\n", ""), &plugin());
    let before = m.hits("memberships");
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_paged", None)))
            .await
            .0,
        200
    );
    assert_eq!(m.hits("memberships"), before + 3);
    assert!(
        asked_with(&m, "offset", "200"),
        "{:?}",
        m.membership_queries()
    );
    // Every page read, org A on none of them: 403.
    let before = m.hits("memberships");
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_elsewhere", None)))
            .await
            .0,
        403
    );
    assert_eq!(m.hits("memberships"), before + 3);

    // More pages than allowed: unknown, not "no".
    let s = Server::start(
        &config(&m, "    authorization_cache: 0\n", "      max_pages: 2\n"),
        &plugin(),
    );
    assert_eq!(
        get_with_token(&s, ME, &k1.sign(&m.claims("user_paged", None)))
            .await
            .0,
        503
    );
}

#[tokio::test]
async fn organization_any_is_the_explicit_opt_in_to_a_membership_anywhere() {
    let k1 = RsaKey::generate("ins_1");
    let m = MockClerk::start(vec![k1.jwk.clone()]).await;
    m.set_orgs("user_b", &[ORG_B]);
    let s = Server::start(
        &config(
            &m,
            "    authorization_cache: 0\n",
            "      organization: any\n",
        ),
        &plugin(),
    );
    let v2 = |sub: &str, org: Option<&str>| k1.sign(&m.claims_v2(sub, None, org));
    assert_eq!(get_with_token(&s, ME, &v2("user_b", None)).await.0, 200);
    assert_eq!(
        get_with_token(&s, ME, &v2("user_b", Some(ORG_ID))).await.0,
        200
    );
    assert_eq!(get_with_token(&s, ME, &v2("user_loner", None)).await.0, 403);

    // With a list, only memberships in listed organizations count.
    let s = Server::start(
        &config(
            &m,
            "    authorization_cache: 0\n",
            &format!("      organization: any\n      organizations: [\"{ORG_ID}\"]\n"),
        ),
        &plugin(),
    );
    assert_eq!(get_with_token(&s, ME, &v2("user_b", None)).await.0, 403);
    m.set_orgs("user_b", &[ORG_B, ORG_ID]);
    assert_eq!(get_with_token(&s, ME, &v2("user_b", None)).await.0, 200);
}

#[tokio::test]
async fn an_unknown_organization_scope_stops_the_config() {
    let m = MockClerk::start(vec![]).await;
    for (options, expected) in [
        (
            "      organization: every\n",
            "organization: must be `token`",
        ),
        (
            "      organizations: [\"\"]\n",
            "organizations: list at least one",
        ),
        (
            "      max_pages: 0\n",
            "max_pages: must be between 1 and 100",
        ),
    ] {
        let err = Server::try_start(&config(&m, "", options), &plugin(), &[])
            .err()
            .unwrap();
        assert!(err.contains(expected), "{options}: {err}");
        assert!(err.contains("clerk"), "{err}");
    }
}
