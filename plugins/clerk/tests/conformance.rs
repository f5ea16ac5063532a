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
