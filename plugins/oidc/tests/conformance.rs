//! The conformance kit against the oidc plugin, with a discovery document canned.

use portcullis_plugin_api::conformance::{Canned, Conformance};
use portcullis_plugin_oidc::OidcPlugin;

#[test]
fn oidc_plugin_conforms() {
    Conformance::new(serde_json::json!({
        "issuer": "https://idp.example",
        "audience": "api://conformance",
    }))
    .respond(
        "https://idp.example/.well-known/openid-configuration",
        Canned::json(
            200,
            r#"{"issuer":"https://idp.example","jwks_uri":"https://idp.example/keys","id_token_signing_alg_values_supported":["RS256"]}"#,
        ),
    )
    .assert::<OidcPlugin>();
}

#[test]
fn oidc_options_come_from_the_environment_too() {
    Conformance::new(serde_json::json!({}))
        .env("OIDC_ISSUER", "https://idp.example")
        .env("OIDC_AUDIENCE", "api://conformance")
        .assert::<OidcPlugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs.
#[test]
fn oidc_plugin_with_its_example_config_conforms() {
    Conformance::example::<OidcPlugin>()
        .respond(
            "https://idp.example.com/.well-known/openid-configuration",
            Canned::json(
                200,
                r#"{"issuer":"https://idp.example.com","jwks_uri":"https://idp.example.com/keys","id_token_signing_alg_values_supported":["RS256"]}"#,
            ),
        )
        .assert::<OidcPlugin>();
}
