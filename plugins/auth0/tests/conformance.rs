//! The conformance kit against the auth0 plugin.

use portcullis_plugin_api::conformance::Conformance;
use portcullis_plugin_auth0::Auth0Plugin;

#[test]
fn auth0_plugin_conforms() {
    Conformance::new(serde_json::json!({
        "domain": "my-tenant.us.auth0.com",
        "audience": "https://api.example.com",
    }))
    .assert::<Auth0Plugin>();
}

#[test]
fn auth0_options_come_from_the_environment_too() {
    Conformance::new(serde_json::json!({}))
        .env("AUTH0_DOMAIN", "my-tenant.us.auth0.com")
        .env("AUTH0_AUDIENCE", "https://api.example.com")
        .assert::<Auth0Plugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs.
#[test]
fn auth0_plugin_with_its_example_config_conforms() {
    Conformance::example::<Auth0Plugin>().assert::<Auth0Plugin>();
}
