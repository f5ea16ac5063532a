//! The conformance kit against the ratelimit middleware.

use portcullis_plugin_api::conformance::Conformance;
use portcullis_plugin_ratelimit::RateLimitPlugin;

#[test]
fn ratelimit_with_its_example_config_conforms() {
    Conformance::middleware_example::<RateLimitPlugin>().assert_middleware::<RateLimitPlugin>();
}

#[test]
fn ratelimit_keyed_by_client_with_a_bucket_of_one_conforms() {
    // A bucket of one is empty after the first request: the kit's dry runs must still all get
    // the same answer.
    Conformance::new(serde_json::json!({ "rate": 0.001, "burst": 1, "key": "client" }))
        .assert_middleware::<RateLimitPlugin>();
}
