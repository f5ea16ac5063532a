#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The workos plugin through the real server and the real `.so`, against a local WorkOS.

use portcullis_tests::{mock::*, mock_workos::*, *};
use serde_json::json;

const ME: &str = "/api/auth/me";

/// Another organization, one a user could have created for themselves.
const ORG_B: &str = "org_01HSELFMADE0000000000000B";

fn config(base: &str, extra: &str) -> String {
    config_with(base, extra, "")
}

/// `extra`: provider lines before `config:`; `options`: more lines under `config:`.
fn config_with(base: &str, extra: &str, options: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 2s\nplugins:\n  dir: plugins\nproviders:\n  - name: workos\n    plugin: workos\n    dangerous: {{ allow_http: true }}\n{extra}    config:\n      api_key: \"{API_KEY}\"\n      client_id: \"{CLIENT_ID}\"\n      api_base: \"{base}\"\n{options}"
    )
}

/// Whether some memberships request carried `name=value`.
fn asked_with(m: &MockWorkos, name: &str, value: &str) -> bool {
    m.queries()
        .iter()
        .any(|q| q.iter().any(|(k, v)| k == name && v == value))
}

fn plugin() -> Vec<std::path::PathBuf> {
    vec![portcullis_tests::plugin("portcullis_plugin_workos")]
}

#[tokio::test]
async fn admins_get_in_members_get_403_and_bad_tokens_get_401() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    // Memberships in the organization the tokens name (`claims` names ORG_ID).
    m.set_roles("user_admin", &["member", "admin"]);
    m.set_roles("user_member", &["member"]);
    // An admin here who is a member of 149 other organizations: only this one is asked about.
    m.set_roles("user_paged", &["admin"]);
    for i in 0..149 {
        m.add_membership(
            "user_paged",
            &format!("org_other_{i:03}"),
            &["member"],
            "active",
        );
    }
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

/// The hole this scope closes: the seed allowed an admin of *any* organization, so anyone who can
/// create an organization of their own was an admin of every other one.
#[tokio::test]
async fn an_admin_of_their_own_organization_is_not_an_admin_of_the_tokens() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    // Admin of ORG_ID (org A).
    m.set_roles("user_a_admin", &["admin"]);
    // Admin of their own organization only.
    m.add_membership("user_b_admin", ORG_B, &["admin"], "active");
    // A member here and an admin elsewhere.
    m.set_roles("user_mixed", &["member"]);
    m.add_membership("user_mixed", ORG_B, &["admin"], "active");
    // Admin here, but the membership is not active (asked for explicitly by neither side).
    m.add_membership("user_pending", ORG_ID, &["admin"], "pending");
    m.add_membership("user_inactive", ORG_ID, &["admin"], "inactive");
    // One subject switches organizations below: keep no answers between requests.
    let s = Server::start(&config(m.base(), "    authorization_cache: 0\n"), &plugin());
    let token = |sub: &str, org: Option<&str>| k1.sign(&m.claims_in(sub, org));

    assert_eq!(
        get_with_token(&s, ME, &token("user_a_admin", Some(ORG_ID)))
            .await
            .0,
        200
    );
    assert!(
        asked_with(&m, "organization_id", ORG_ID),
        "{:?}",
        m.queries()
    );
    assert!(
        asked_with(&m, "user_id", "user_a_admin"),
        "{:?}",
        m.queries()
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_b_admin", Some(ORG_ID)))
            .await
            .0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_mixed", Some(ORG_ID)))
            .await
            .0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_pending", Some(ORG_ID)))
            .await
            .0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_inactive", Some(ORG_ID)))
            .await
            .0,
        403
    );
    // Their own organization is still theirs.
    assert_eq!(
        get_with_token(&s, ME, &token("user_b_admin", Some(ORG_B)))
            .await
            .0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_mixed", Some(ORG_B)))
            .await
            .0,
        200
    );
    // A token for an organization the admin is not in.
    assert_eq!(
        get_with_token(&s, ME, &token("user_a_admin", Some(ORG_B)))
            .await
            .0,
        403
    );

    // A token naming no organization is not authorized, and the API is not even asked.
    let before = m.hits("memberships");
    assert_eq!(
        get_with_token(&s, ME, &token("user_a_admin", None)).await.0,
        403
    );
    let mut odd = m.claims("user_a_admin");
    for bad in [
        json!(null),
        json!(""),
        json!(7),
        json!([ORG_ID]),
        json!({"id": ORG_ID}),
    ] {
        odd["org_id"] = bad.clone();
        assert_eq!(get_with_token(&s, ME, &k1.sign(&odd)).await.0, 403, "{bad}");
    }
    assert_eq!(m.hits("memberships"), before);

    // An `org_id` cannot smuggle another filter into the query (the mock refuses a parameter
    // given twice, which would be a 503 here).
    let sneaky = format!("{ORG_B}&organization_id={ORG_ID}");
    assert_eq!(
        get_with_token(&s, ME, &token("user_a_admin", Some(&sneaky)))
            .await
            .0,
        403
    );
    assert!(
        asked_with(&m, "organization_id", &sneaky),
        "{:?}",
        m.queries()
    );
}

#[tokio::test]
async fn organization_any_is_the_explicit_opt_in_to_a_membership_anywhere() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    m.add_membership("user_b_admin", ORG_B, &["admin"], "active");
    m.set_roles("user_member", &["member"]);
    // 150 memberships, the admin one the oldest: it is on the second page of 100.
    m.add_membership("user_paged", ORG_B, &["admin"], "active");
    for i in 0..149 {
        m.add_membership(
            "user_paged",
            &format!("org_other_{i:03}"),
            &["member"],
            "active",
        );
    }
    let s = Server::start(
        &config_with(
            m.base(),
            "    authorization_cache: 0\n",
            "      organization: any\n",
        ),
        &plugin(),
    );
    let token = |sub: &str, org: Option<&str>| k1.sign(&m.claims_in(sub, org));
    assert_eq!(
        get_with_token(&s, ME, &token("user_b_admin", None)).await.0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_b_admin", Some(ORG_ID)))
            .await
            .0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_member", None)).await.0,
        403
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_nobody", None)).await.0,
        403
    );
    let before = m.hits("memberships");
    assert_eq!(
        get_with_token(&s, ME, &token("user_paged", None)).await.0,
        200
    );
    assert_eq!(m.hits("memberships"), before + 2);
    assert!(m
        .queries()
        .iter()
        .all(|q| q.iter().all(|(k, _)| k != "organization_id")));
}

#[tokio::test]
async fn an_organizations_list_narrows_either_scope() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    m.set_roles("user_a_admin", &["admin"]);
    m.add_membership("user_b_admin", ORG_B, &["admin"], "active");
    let list = format!("      organizations: [\"{ORG_ID}\"]\n");
    let s = Server::start(&config_with(m.base(), "", &list), &plugin());
    let token = |sub: &str, org: Option<&str>| k1.sign(&m.claims_in(sub, org));
    assert_eq!(
        get_with_token(&s, ME, &token("user_a_admin", Some(ORG_ID)))
            .await
            .0,
        200
    );
    // An admin of an organization off the list, with a token for it: not asked about.
    let before = m.hits("memberships");
    assert_eq!(
        get_with_token(&s, ME, &token("user_b_admin", Some(ORG_B)))
            .await
            .0,
        403
    );
    assert_eq!(m.hits("memberships"), before);

    let any = format!("{list}      organization: any\n");
    let s = Server::start(&config_with(m.base(), "", &any), &plugin());
    assert_eq!(
        get_with_token(&s, ME, &token("user_a_admin", None)).await.0,
        200
    );
    assert_eq!(
        get_with_token(&s, ME, &token("user_b_admin", None)).await.0,
        403
    );
}

#[tokio::test]
async fn an_unknown_organization_scope_stops_the_config() {
    for (options, expected) in [
        ("      organization: all\n", "organization: must be `token`"),
        (
            "      organization: \"\"\n",
            "organization: must be `token`",
        ),
        (
            "      organizations: []\n",
            "organizations: list at least one",
        ),
    ] {
        let cfg = config_with("http://127.0.0.1:9", "", options);
        let err = Server::try_start(&cfg, &plugin(), &[]).err().unwrap();
        assert!(err.contains(expected), "{options}: {err}");
        assert!(err.contains("workos"), "{err}");
    }
}

/// With the authorization cache on (its default), an answer for one organization is never
/// reused for a token scoped to another: the host keys answers by subject and organization.
#[tokio::test]
async fn a_cached_answer_for_one_organization_is_not_reused_for_another() {
    let k1 = RsaKey::generate("key_01");
    let m = MockWorkos::start(vec![k1.jwk.clone()]).await;
    // A member of ORG_ID and an admin of their own ORG_B.
    m.set_roles("user_mixed", &["member"]);
    m.add_membership("user_mixed", ORG_B, &["admin"], "active");
    let s = Server::start(&config(m.base(), ""), &plugin());
    let token = |org: &str| k1.sign(&m.claims_in("user_mixed", Some(org)));
    assert_eq!(get_with_token(&s, ME, &token(ORG_B)).await.0, 200);
    assert_eq!(get_with_token(&s, ME, &token(ORG_ID)).await.0, 403);
    // Both answers are kept, each for its own organization.
    let asked = m.queries().len();
    assert_eq!(get_with_token(&s, ME, &token(ORG_B)).await.0, 200);
    assert_eq!(get_with_token(&s, ME, &token(ORG_ID)).await.0, 403);
    assert_eq!(m.queries().len(), asked, "answered from the cache");
}
