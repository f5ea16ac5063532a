//! The conformance kit against the clerk plugin, with Clerk's membership list canned.

use portcullis_plugin_api::conformance::{Canned, Conformance};
use portcullis_plugin_clerk::ClerkPlugin;

const SECRET_KEY: &str = "sk_test_conformance_0123456789";

#[test]
fn clerk_plugin_conforms() {
    Conformance::new(serde_json::json!({
        "jwks_uri": "https://clerk.example.com/.well-known/jwks.json",
        "secret_key": SECRET_KEY,
        "publishable_key": "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k",
        "authorized_parties": ["https://app.example.com"],
    }))
    .secret(SECRET_KEY)
    .respond(
        "https://api.clerk.com/v1/users/",
        Canned::json(200, r#"{"data":[{"object":"organization_membership","id":"orgmem_1","role":"org:admin"}],"total_count":1}"#),
    )
    .assert::<ClerkPlugin>();
}

/// The seed's scope (`organization: any`) asks the API for users whose token names no organization,
/// so the kit's odd users and failing API reach the remote check there too.
#[test]
fn clerk_plugin_conforms_with_any_organization() {
    Conformance::new(serde_json::json!({
        "jwks_uri": "https://clerk.example.com/.well-known/jwks.json",
        "secret_key": SECRET_KEY,
        "publishable_key": "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k",
        "organization": "any",
    }))
    .secret(SECRET_KEY)
    .respond(
        "https://api.clerk.com/v1/users/",
        Canned::json(200, r#"{"data":[{"object":"organization_membership","id":"orgmem_1","role":"org:admin","organization":{"object":"organization","id":"org_1"}}],"total_count":1}"#),
    )
    .assert::<ClerkPlugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs.
#[test]
fn clerk_plugin_with_its_example_config_conforms() {
    Conformance::example::<ClerkPlugin>()
        .respond(
            "https://api.clerk.com/v1/users/",
            Canned::json(200, r#"{"data":[{"object":"organization_membership","id":"orgmem_1","role":"org:admin"}],"total_count":1}"#),
        )
        .assert::<ClerkPlugin>();
}
