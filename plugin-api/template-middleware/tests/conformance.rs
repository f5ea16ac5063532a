//! The conformance kit of portcullis-plugin-api, on this middleware: garbage configs, odd
//! requests and users, dry runs; nothing may panic, hang, fail with an internal error or set a
//! header that frames the message. `portcullis plugin test` runs the same kit on the built
//! library.

use portcullis_plugin_api::{conformance::Conformance, Call, MiddlewarePlugin, User};
use stamp_user::StampUserPlugin;

#[test]
fn stamp_user_conforms() {
    // The plugin's own example config (the `example = "…"` of its keys).
    Conformance::middleware_example::<StampUserPlugin>()
        .assert_middleware::<StampUserPlugin>();
}

#[test]
fn the_route_learns_the_subject_and_a_client_cannot_forge_it() {
    let host = portcullis_plugin_api::conformance::test_host();
    let config = serde_json::from_value(serde_json::json!({})).expect("a config");
    let stamp = StampUserPlugin::build(config, host).expect("an instance");
    let run = |call: Call| {
        use portcullis_plugin_api::RequestMiddleware as _;
        portcullis_plugin_api::conformance::block_on(stamp.on_request(call)).expect("an answer")
    };
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "alice".into());
    let user = Call::new("GET", "/api/x", &[]).with_user("main", User::from_claims(claims));
    let flow = run(user);
    assert_eq!(
        flow.request_headers_set().collect::<Vec<_>>(),
        [("x-auth-subject", "alice")]
    );
    let public = Call::new("GET", "/public", &[("x-auth-subject", "mallory")]);
    let flow = run(public);
    assert_eq!(flow.request_headers_removed().collect::<Vec<_>>(), ["x-auth-subject"]);
}
