//! The conformance kit against the header-policy middleware.

use portcullis_plugin_api::conformance::Conformance;
use portcullis_plugin_header_policy::HeaderPolicyPlugin;

#[test]
fn header_policy_with_its_example_config_conforms() {
    Conformance::middleware_example::<HeaderPolicyPlugin>()
        .assert_middleware::<HeaderPolicyPlugin>();
}

#[test]
fn header_policy_with_a_tenant_map_conforms() {
    Conformance::new(serde_json::json!({
        "set": { "x-user-id": "{sub}", "x-org": "{org_id}" },
        "optional": ["x-org"],
        "remove": ["x-debug"],
        "tenant": {
            "claim": "org_id",
            "header": "x-tenant-upstream",
            "values": { "org_1": "eu-1.internal" },
        },
        "response": { "x-policy": "on" },
    }))
    .assert_middleware::<HeaderPolicyPlugin>();
}
