#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The host's memory of accepted tokens (`authentication_cache`): the same token is answered
//! without calling the plugin, and never past the token's `exp`, a key set's refresh or staleness,
//! or the operator's `0`.

use portcullis_tests::*;
use serde_json::{json, Value};

fn count_config(cache: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: counted\n    plugin: faulty\n    config: {{ mode: count }}\n{cache}auth:\n  rules:\n    - allow: true\n"
    )
}

async fn provider_status(s: &Server, token: &str) -> Value {
    let (status, body) = mock::get_json_with_token(s, "/api/admin/status", token).await;
    assert_eq!(status, 200);
    body["providers"][0].clone()
}

async fn me(s: &Server, token: &str) -> (u16, Value) {
    mock::get_json_with_token(s, "/api/auth/me", token).await
}

#[tokio::test]
async fn a_token_sent_again_is_answered_without_the_plugin() {
    let s = Server::start(&count_config(""), &[plugin("portcullis_test_faulty")]);
    // The plugin numbers its `authenticate` calls in the `call` claim.
    let (status, body) = me(&s, "good-amy").await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["call"], 1);
    for _ in 0..5 {
        assert_eq!(me(&s, "good-amy").await.1["user"]["call"], 1);
    }
    // Another token is another call; the first is still remembered.
    assert_eq!(me(&s, "good-bob").await.1["user"]["call"], 2);
    assert_eq!(me(&s, "good-amy").await.1["user"]["call"], 1);
    // A refused token is never remembered: each try asks again (and is refused again).
    assert_eq!(me(&s, "bad-eve").await.0, 401);
    assert_eq!(me(&s, "bad-eve").await.0, 401);
    assert_eq!(me(&s, "good-cat").await.1["user"]["call"], 5);
    // The status API says what is kept and for how long (the default, 5 minutes).
    let p = provider_status(&s, "good-amy").await;
    assert_eq!(p["authentication_cache_secs"], 300, "{p}");
}

#[tokio::test]
async fn authentication_cache_zero_asks_the_plugin_every_time() {
    let s = Server::start(
        &count_config("    authentication_cache: 0\n"),
        &[plugin("portcullis_test_faulty")],
    );
    for expected in 1..=3 {
        assert_eq!(me(&s, "good-amy").await.1["user"]["call"], expected);
    }
    let p = provider_status(&s, "good-amy").await;
    assert!(p["authentication_cache_secs"].is_null(), "{p}");
}

#[tokio::test]
async fn a_plugin_that_does_not_declare_reuse_is_asked_every_time() {
    // Mode `ok` numbers its calls too, but does not declare its authentication reusable.
    let cfg = count_config("").replace("mode: count", "mode: ok");
    let s = Server::start(&cfg, &[plugin("portcullis_test_faulty")]);
    for expected in 1..=3 {
        assert_eq!(me(&s, "good-amy").await.1["user"]["call"], expected);
    }
    // The operator may vouch for it.
    std::fs::write(
        s.config_path(),
        count_config("    authentication_cache: 1m\n").replace("mode: count", "mode: ok"),
    )
    .unwrap();
    // Once the reload is applied, the answers repeat.
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(me(&s, "good-amy").await.1["user"]["call"].as_u64().unwrap());
        if seen.len() >= 3 && seen[seen.len() - 1] == seen[seen.len() - 3] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let n = seen.len();
    assert!(
        n >= 3 && seen[n - 1] == seen[n - 3],
        "answers never came from the cache after the reload: {seen:?}"
    );
}

#[tokio::test]
async fn a_kept_token_ends_at_its_exp_not_later() {
    // No leeway, so the plugin itself refuses the token from its `exp` on.
    let cfg = jwt_config("").replace(
        "      audience: [\"api\"]\n",
        "      audience: [\"api\"]\n      leeway_secs: 0\n",
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let exp = now() + 2;
    let token = hs256(SECRET, good_claims("amy", json!({ "exp": exp })));
    assert_eq!(me(&s, &token).await.0, 200);
    assert_eq!(me(&s, &token).await.0, 200);
    while now() < exp {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(me(&s, &token).await.0, 401);
}

#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_stops_a_kept_token_once_the_set_is_refreshed() {
    let k1 = RsaKey::generate("k1");
    let k2 = RsaKey::generate("k2");
    let jwks = JwksServer::start(vec![k1.jwk.clone(), k2.jwk.clone()]).await;
    // The shortest lifetime the server grants a key set (its minimum TTL is 5 s).
    jwks.set_max_age(0);
    let cfg = format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: idp\n    plugin: jwt\n    dangerous: {{ allow_http: true }}\n    config:\n      jwks_url: \"{}\"\n      issuer: [\"https://idp.test/\"]\n      audience: [\"api\"]\n",
        jwks.url()
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let claims_for = |sub: &str| {
        let mut c = claims(sub, json!({}));
        c["iss"] = "https://idp.test/".into();
        c["aud"] = "api".into();
        c
    };
    let old = k1.sign(&claims_for("ann"));
    let new = k2.sign(&claims_for("bob"));
    // The first request fetches the key set; the next ones are kept and answered from memory.
    for _ in 0..3 {
        assert_eq!(me(&s, &old).await.0, 200);
        assert_eq!(me(&s, &new).await.0, 200);
    }
    // The provider withdraws k1. Until the set is refreshed the token keeps working (as with any
    // cached JWKS); after it, it must not.
    jwks.set_keys(vec![k2.jwk.clone()]);
    let started = std::time::Instant::now();
    let mut refused = false;
    while started.elapsed() < std::time::Duration::from_secs(20) {
        if me(&s, &old).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "a token signed by a withdrawn key was still accepted"
    );
    assert!(jwks.hits() >= 2);
    // The key still published keeps working, and the withdrawn one stays refused.
    assert_eq!(me(&s, &new).await.0, 200);
    assert_eq!(me(&s, &old).await.0, 401);
}

async fn generation(s: &Server) -> u64 {
    let (_, status) = mock::get_json_with_token(s, "/api/admin/status", "good-amy").await;
    status["generation"].as_u64().unwrap_or(0)
}

/// Writes `config` and waits until the server serves a newer generation.
async fn reload_to(s: &Server, config: &str) {
    let before = generation(s).await;
    std::fs::write(s.config_path(), config).unwrap();
    for _ in 0..200 {
        if generation(s).await > before {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the reload was not applied");
}

#[tokio::test]
async fn a_reload_keeps_the_cache_of_an_unchanged_instance_and_empties_a_rebuilt_one() {
    let s = Server::start(&count_config(""), &[plugin("portcullis_test_faulty")]);
    // bob is asked first; amy (whose token the status polls below use) second.
    assert_eq!(me(&s, "good-bob").await.1["user"]["call"], 1);
    assert_eq!(me(&s, "good-amy").await.1["user"]["call"], 2);
    // Another part of the config changes: the instance is the same, and so are its answers.
    let other_rule =
        count_config("").replace("auth:\n", "auth:\n  protected: [\"/api/*\", \"/x/*\"]\n");
    reload_to(&s, &other_rule).await;
    assert_eq!(me(&s, "good-bob").await.1["user"]["call"], 1);
    // The instance's own config changes: it is rebuilt, with an empty cache and a new plugin
    // object whose calls are numbered from 1 again (the first is amy's status poll).
    let rebuilt = count_config("").replace(
        "{ mode: count }",
        "{ mode: count, url: \"https://unused.test\" }",
    );
    reload_to(&s, &rebuilt).await;
    assert_eq!(me(&s, "good-bob").await.1["user"]["call"], 2);
}
