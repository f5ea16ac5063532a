//! The policy driven through the SDK: templates, fail-closed claims, public requests, the header
//! lists, tenants, and the config checks.

use portcullis_plugin_api::{
    conformance::{block_on, test_host},
    example_config, User,
};
use serde_json::json;

use super::*;

fn config(value: serde_json::Value) -> Config {
    serde_json::from_value(value).expect("config parses")
}

fn policy(value: serde_json::Value) -> HeaderPolicy {
    HeaderPolicyPlugin::build(config(value), test_host()).expect("config builds")
}

/// The message of the config error, or a panic.
fn refused(value: serde_json::Value) -> String {
    let config = config(value.clone());
    let by_validate = HeaderPolicyPlugin::validate(&config, &test_host())
        .expect_err(&format!("{value} is refused"));
    assert_eq!(
        by_validate.kind(),
        portcullis_plugin_api::ErrorKind::CONFIG,
        "{value}"
    );
    assert!(HeaderPolicyPlugin::build(config, test_host()).is_err());
    by_validate.message().to_string()
}

fn user(claims: serde_json::Value) -> User {
    User::from_claims(claims.as_object().cloned().expect("claims are an object"))
}

fn get(headers: &[(&str, &str)]) -> Call<'static> {
    Call::new("GET", "/api/x", headers)
}

fn as_user(claims: serde_json::Value) -> Call<'static> {
    get(&[]).with_user("jwt-main", user(claims))
}

fn run(policy: &HeaderPolicy, call: Call<'_>) -> Flow {
    block_on(policy.on_request(call)).expect("the policy answers")
}

fn set_headers(flow: &Flow) -> Vec<(String, String)> {
    flow.request_headers_set()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn removed(flow: &Flow) -> Vec<String> {
    flow.clone()
        .into_abi()
        .remove_headers
        .iter()
        .map(|h| h.to_string())
        .collect()
}

fn body(flow: &Flow) -> serde_json::Value {
    let answer = flow
        .clone()
        .into_abi()
        .answer
        .into_option()
        .expect("an answer");
    serde_json::from_slice(answer.body.as_slice()).expect("a JSON body")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Templates.

#[test]
fn templates_fill_in_claims_paths_and_the_provider() {
    let p = policy(json!({"set": {
        "X-User": "{sub}",
        "x-org": "org={o.id};slug={o.slg}",
        "x-by": "{provider}",
        "x-admin": "{admin}",
        "x-level": "{level}",
        "x-ns": "{https://example.com/tenant}",
        "x-braces": "{{literal}} {sub}",
    }}));
    let flow = run(
        &p,
        as_user(json!({
            "sub": "user_1",
            "o": {"id": "org_9", "slg": "acme"},
            "admin": true,
            "level": 3.5,
            "https://example.com/tenant": "t-1",
        })),
    );
    assert_eq!(flow.answer_status(), None);
    // Header names are lower case; `set` is applied in name order.
    assert_eq!(
        set_headers(&flow),
        pairs(&[
            ("x-admin", "true"),
            ("x-braces", "{literal} user_1"),
            ("x-by", "jwt-main"),
            ("x-level", "3.5"),
            ("x-ns", "t-1"),
            ("x-org", "org=org_9;slug=acme"),
            ("x-user", "user_1"),
        ])
    );
    assert!(removed(&flow).is_empty());
}

#[test]
fn a_numeric_sub_is_written_as_json_text() {
    let p = policy(json!({"set": {"x-user": "{sub}"}}));
    let flow = run(&p, as_user(json!({"sub": 42})));
    assert_eq!(set_headers(&flow), pairs(&[("x-user", "42")]));
}

#[test]
fn a_missing_claim_is_answered_403_naming_it() {
    let p = policy(json!({"set": {"x-user": "{sub}", "x-org": "{o.id}"}}));
    for claims in [
        json!({"sub": "u"}),
        json!({"sub": "u", "o": {}}),
        json!({"sub": "u", "o": "not an object"}),
        json!({"sub": "u", "o": {"id": null}}),
    ] {
        let flow = run(&p, as_user(claims.clone()));
        assert_eq!(flow.answer_status(), Some(403), "{claims}");
        assert_eq!(body(&flow), json!({"error": "missing claim `o.id`"}));
        assert_eq!(flow.request_headers_set().count(), 0, "{claims}");
    }
}

#[test]
fn lists_objects_and_control_characters_are_refused() {
    let p = policy(json!({"set": {"x-roles": "{roles}"}, "optional": ["x-roles"]}));
    for (roles, why) in [
        (json!(["a", "b"]), "is not a string, number or boolean"),
        (json!({"a": 1}), "is not a string, number or boolean"),
        (
            json!("a\r\nx-injected: 1"),
            "holds a character a header cannot carry",
        ),
    ] {
        let flow = run(&p, as_user(json!({"sub": "u", "roles": roles})));
        assert_eq!(flow.answer_status(), Some(403), "{roles}");
        assert_eq!(
            body(&flow),
            json!({ "error": format!("claim `roles` {why}") })
        );
    }
    // Non-ASCII text is fine.
    let flow = run(&p, as_user(json!({"sub": "u", "roles": "José"})));
    assert_eq!(set_headers(&flow), pairs(&[("x-roles", "José")]));
}

#[test]
fn an_optional_header_is_removed_when_its_claim_is_missing() {
    let p = policy(json!({
        "set": {"x-user": "{sub}", "x-org": "{o.id}"},
        "optional": ["X-Org"],
    }));
    let flow = run(&p, as_user(json!({"sub": "u"})));
    assert_eq!(flow.answer_status(), None);
    assert_eq!(set_headers(&flow), pairs(&[("x-user", "u")]));
    assert_eq!(removed(&flow), ["x-org"]);
    // Present: set as usual.
    let flow = run(&p, as_user(json!({"sub": "u", "o": {"id": "o1"}})));
    assert_eq!(
        set_headers(&flow),
        pairs(&[("x-org", "o1"), ("x-user", "u")])
    );
    // `optional` is for x-org only: without `sub`, 403.
    let flow = run(&p, as_user(json!({"o": {"id": "o1"}})));
    assert_eq!(flow.answer_status(), Some(403));
}

#[test]
fn a_public_request_has_every_set_and_tenant_header_removed() {
    let p = policy(json!({
        "set": {"x-user": "{sub}", "x-static": "fixed"},
        "tenant": {"claim": "org_id", "header": "x-pool", "values": {"o1": "eu"}},
        "remove": ["x-debug"],
    }));
    let call = get(&[
        ("x-user", "admin"),
        ("x-pool", "eu"),
        ("x-static", "forged"),
    ]);
    let flow = run(&p, call);
    assert_eq!(flow.answer_status(), None);
    assert_eq!(flow.request_headers_set().count(), 0);
    assert_eq!(removed(&flow), ["x-debug", "x-static", "x-user", "x-pool"]);
}

#[test]
fn a_set_header_from_the_client_is_replaced() {
    let p = policy(json!({"set": {"x-user": "{sub}"}}));
    let call = get(&[("x-user", "admin")]).with_user("jwt", user(json!({"sub": "u"})));
    let flow = run(&p, call);
    assert_eq!(set_headers(&flow), pairs(&[("x-user", "u")]));
}

// ------------------------------------------------------------------------------------------------
// remove, require, deny, response.

#[test]
fn remove_require_and_deny() {
    let p = policy(json!({
        "remove": ["X-Debug", "x-trace"],
        "require": ["x-request-id"],
        "deny": ["x-internal"],
    }));
    let flow = run(&p, get(&[("x-request-id", "1"), ("x-debug", "on")]));
    assert_eq!(flow.answer_status(), None);
    assert_eq!(removed(&flow), ["x-debug", "x-trace"]);

    let flow = run(&p, get(&[]));
    assert_eq!(flow.answer_status(), Some(400));
    assert_eq!(
        body(&flow),
        json!({"error": "missing required header `x-request-id`"})
    );
    // Names compare case-insensitively.
    let flow = run(&p, get(&[("X-Request-Id", "1"), ("X-Internal", "yes")]));
    assert_eq!(flow.answer_status(), Some(400));
    assert_eq!(
        body(&flow),
        json!({"error": "header `x-internal` is not allowed"})
    );
    // Users are checked the same.
    let call = get(&[("x-internal", "")]).with_user("jwt", user(json!({"sub": "u"})));
    assert_eq!(run(&p, call).answer_status(), Some(400));
}

#[test]
fn response_headers_are_added_to_every_answer() {
    let p = policy(json!({
        "set": {"x-user": "{sub}"},
        "require": ["x-request-id"],
        "response": {"X-Frame-Options": "DENY", "x-policy": "v1"},
    }));
    let expected = pairs(&[("x-frame-options", "DENY"), ("x-policy", "v1")]);
    let added = |flow: &Flow| -> Vec<(String, String)> {
        flow.response_headers_added()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ok = get(&[("x-request-id", "1")]).with_user("jwt", user(json!({"sub": "u"})));
    assert_eq!(added(&run(&p, ok)), expected);
    let bad_request = run(&p, get(&[]));
    assert_eq!(bad_request.answer_status(), Some(400));
    assert_eq!(added(&bad_request), expected);
    let forbidden = get(&[("x-request-id", "1")]).with_user("jwt", user(json!({})));
    let forbidden = run(&p, forbidden);
    assert_eq!(forbidden.answer_status(), Some(403));
    assert_eq!(added(&forbidden), expected);
}

// ------------------------------------------------------------------------------------------------
// Tenants.

#[test]
fn tenants_map_to_header_values() {
    let values = json!({"org_1": "pool-eu", "org_2": "pool-us", "7": "pool-seven"});
    let strict = policy(json!({
        "tenant": {"claim": "o.id", "header": "X-Pool", "values": values},
    }));
    let with_default = policy(json!({
        "tenant": {"claim": "o.id", "header": "x-pool", "values": values, "default": "pool-shared"},
    }));
    let org = |id: serde_json::Value| as_user(json!({"sub": "u", "o": {"id": id}}));

    for p in [&strict, &with_default] {
        let flow = run(p, org(json!("org_2")));
        assert_eq!(set_headers(&flow), pairs(&[("x-pool", "pool-us")]));
        // A number is looked up as its JSON text.
        let flow = run(p, org(json!(7)));
        assert_eq!(set_headers(&flow), pairs(&[("x-pool", "pool-seven")]));
        // A client cannot choose its pool on a public route.
        let flow = run(p, get(&[("x-pool", "pool-eu")]));
        assert_eq!(removed(&flow), ["x-pool"]);
        // A list is never a tenant.
        assert_eq!(run(p, org(json!(["org_1"]))).answer_status(), Some(403));
    }

    // Unknown tenant, or no tenant claim: the default, else 403.
    let flow = run(&with_default, org(json!("org_3")));
    assert_eq!(set_headers(&flow), pairs(&[("x-pool", "pool-shared")]));
    let flow = run(&with_default, as_user(json!({"sub": "u"})));
    assert_eq!(set_headers(&flow), pairs(&[("x-pool", "pool-shared")]));
    let flow = run(&strict, org(json!("org_3")));
    assert_eq!(flow.answer_status(), Some(403));
    assert_eq!(
        body(&flow),
        json!({"error": "claim `o.id`: unknown tenant"})
    );
    let flow = run(&strict, as_user(json!({"sub": "u"})));
    assert_eq!(flow.answer_status(), Some(403));
    assert_eq!(body(&flow), json!({"error": "missing claim `o.id`"}));
}

// ------------------------------------------------------------------------------------------------
// Config.

#[test]
fn the_example_config_builds_and_every_key_is_optional() {
    let example = example_config(Config::KEYS).expect("examples are JSON");
    let p = policy(example.into());
    let flow = run(&p, as_user(json!({"sub": "u"})));
    assert_eq!(flow.answer_status(), None);
    assert!(Config::KEYS.iter().all(|k| !k.is_required()));
    // An empty policy changes nothing.
    let flow = run(&policy(json!({})), as_user(json!({"sub": "u"})));
    assert_eq!(flow, Flow::proceed());
}

#[test]
fn broken_templates_name_their_key() {
    for (template, message) in [
        ("{sub", "set.x-user: unclosed {"),
        ("id-{", "set.x-user: unclosed {"),
        ("{sub}}", "set.x-user: unmatched }"),
        ("sub}", "set.x-user: unmatched }"),
        ("{}", "set.x-user: empty placeholder {}"),
        ("a{{b}", "set.x-user: unmatched }"),
        ("{a{b}}", "set.x-user: { inside a placeholder"),
        (
            "{ sub }",
            "set.x-user: placeholder { sub } has spaces around its name",
        ),
        ("a\nb", "set.x-user: the template holds a control character"),
    ] {
        assert_eq!(
            refused(json!({"set": {"x-user": template}})),
            message,
            "{template}"
        );
    }
}

#[test]
fn bad_headers_and_values_name_their_key() {
    let tenant = |t: serde_json::Value| json!({ "tenant": t });
    let cases = [
        (
            json!({"set": {"x user": "a"}}),
            "set.x user: not a valid header name",
        ),
        (json!({"set": {"": "a"}}), "set.: not a valid header name"),
        (
            json!({"set": {"Content-Length": "1"}}),
            "set.Content-Length: a header the server manages itself",
        ),
        (
            json!({"set": {"X-A": "1", "x-a": "2"}}),
            "set.x-a: listed twice (header names ignore case)",
        ),
        (
            json!({"remove": ["x-a", "X-A"]}),
            "remove.x-a: listed twice",
        ),
        (
            json!({"remove": ["host"]}),
            "remove.host: a header the server manages itself",
        ),
        (
            json!({"require": ["bad:name"]}),
            "require.bad:name: not a valid header name",
        ),
        (
            json!({"require": ["Authorization"]}),
            "require.authorization: withheld from middleware: it is never seen",
        ),
        (
            json!({"deny": ["cookie"]}),
            "deny.cookie: withheld from middleware: it is never seen",
        ),
        (
            json!({"require": ["x-a"], "deny": ["x-a"]}),
            "deny.x-a: also in `require`",
        ),
        (
            json!({"set": {"x-a": "{sub}"}, "optional": ["x-b"]}),
            "optional.x-b: not a header of `set`",
        ),
        (
            json!({"response": {"x-a": "a\r\nb"}}),
            "response.x-a: not a valid header value (a control character)",
        ),
        (
            json!({"response": {"transfer-encoding": "chunked"}}),
            "response.transfer-encoding: a header the server manages itself",
        ),
        (
            tenant(json!({"claim": "", "header": "x-p", "values": {"a": "b"}})),
            "tenant.claim: empty",
        ),
        (
            tenant(json!({"claim": "org", "header": "x p", "values": {"a": "b"}})),
            "tenant.header: not a valid header name",
        ),
        (
            tenant(json!({"claim": "org", "header": "x-p", "values": {}})),
            "tenant.values: no tenant listed",
        ),
        (
            tenant(json!({"claim": "org", "header": "x-p", "values": {"acme": "a\u{7f}"}})),
            "tenant.values.acme: not a valid header value (a control character)",
        ),
        (
            tenant(json!({"claim": "org", "header": "x-p", "values": {"a": "b"}, "default": "\n"})),
            "tenant.default: not a valid header value (a control character)",
        ),
        (
            json!({
                "set": {"X-P": "{sub}"},
                "tenant": {"claim": "org", "header": "x-p", "values": {"a": "b"}},
            }),
            "tenant.header: also a header of `set`",
        ),
    ];
    for (value, message) in cases {
        assert_eq!(refused(value.clone()), message, "{value}");
    }
}

#[test]
fn serde_refuses_unknown_keys_and_wrong_shapes() {
    for value in [
        json!({"sett": {}}),
        json!({"set": {"x-a": 1}}),
        json!({"set": ["x-a"]}),
        json!({"remove": "x-a"}),
        json!({"tenant": {"claim": "org", "header": "x-p"}}),
        json!({"tenant": {"claim": "org", "header": "x-p", "values": {}, "fallback": "x"}}),
    ] {
        assert!(
            serde_json::from_value::<Config>(value.clone()).is_err(),
            "{value}"
        );
    }
}

#[test]
fn templates_are_parsed_once_into_parts() {
    let t = Template::parse("a{b}{{c}}{provider}{d.e}").expect("parses");
    assert_eq!(
        t.parts,
        [
            Part::Text("a".into()),
            Part::Claim("b".into()),
            Part::Text("{c}".into()),
            Part::Provider,
            Part::Claim("d.e".into()),
        ]
    );
    assert!(t.needs_claims());
    assert!(!Template::parse("{provider}")
        .expect("parses")
        .needs_claims());
    assert!(Template::parse("").expect("parses").parts.is_empty());
}
