//! The conformance kit against the workos plugin, with WorkOS's membership list canned.

use portcullis_plugin_api::conformance::{Canned, Conformance};
use portcullis_plugin_workos::WorkosPlugin;

const API_KEY: &str = "sk_test_conformance_0123456789";

#[test]
fn workos_plugin_conforms() {
    let admin = r#"{"object":"list","data":[{"object":"organization_membership","id":"om_1","user_id":"user_1","organization_id":"org_1","status":"active","role":{"slug":"admin"}}],"list_metadata":{"before":null,"after":null}}"#;
    Conformance::new(serde_json::json!({
        "api_key": API_KEY,
        "client_id": "client_01CONFORMANCE",
        "roles": ["admin"],
    }))
    .secret(API_KEY)
    .respond(
        "https://api.workos.com/user_management/organization_memberships",
        Canned::json(200, admin),
    )
    .assert::<WorkosPlugin>();
}

/// The seed's scope (`organization: any`) asks the API for users whose token names no organization,
/// so the kit's odd users and failing API reach the remote check there too.
#[test]
fn workos_plugin_conforms_with_any_organization() {
    let admin = r#"{"object":"list","data":[{"object":"organization_membership","id":"om_1","user_id":"user_1","organization_id":"org_1","status":"active","role":{"slug":"admin"}}],"list_metadata":{"before":null,"after":null}}"#;
    Conformance::new(serde_json::json!({
        "api_key": API_KEY,
        "client_id": "client_01CONFORMANCE",
        "organization": "any",
        "organizations": ["org_1"],
    }))
    .secret(API_KEY)
    .respond(
        "https://api.workos.com/user_management/organization_memberships",
        Canned::json(200, admin),
    )
    .assert::<WorkosPlugin>();
}

#[test]
fn workos_options_come_from_the_environment_too() {
    Conformance::new(serde_json::json!({}))
        .env("WORKOS_API_KEY", API_KEY)
        .env("WORKOS_CLIENT_ID", "client_01ENV")
        .secret(API_KEY)
        .assert::<WorkosPlugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs.
#[test]
fn workos_plugin_with_its_example_config_conforms() {
    let admin = r#"{"object":"list","data":[{"object":"organization_membership","id":"om_1","user_id":"user_1","organization_id":"org_1","status":"active","role":{"slug":"admin"}}],"list_metadata":{"before":null,"after":null}}"#;
    Conformance::example::<WorkosPlugin>()
        .respond(
            "https://api.workos.com/user_management/organization_memberships",
            Canned::json(200, admin),
        )
        .assert::<WorkosPlugin>();
}
