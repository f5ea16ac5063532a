//! The conformance kit against the jwt plugin, in each of its key modes.

use portcullis_plugin_api::conformance::Conformance;
use portcullis_plugin_jwt::JwtPlugin;

const SECRET: &str = "conformance-secret-0123456789abcdefghijklmnop";

#[test]
fn jwt_plugin_with_a_secret_conforms() {
    Conformance::new(serde_json::json!({
        "secret": SECRET,
        "issuer": ["https://issuer.test"],
        "audience": ["api"],
    }))
    .secret(SECRET)
    .assert::<JwtPlugin>();
}

#[test]
fn jwt_plugin_with_a_jwks_url_conforms() {
    Conformance::new(serde_json::json!({
        "jwks_url": "https://idp.example/.well-known/jwks.json",
        "algorithms": ["RS256"],
    }))
    .assert::<JwtPlugin>();
}

#[test]
fn jwt_plugin_secret_from_the_environment_conforms() {
    Conformance::new(serde_json::json!({}))
        .env("JWT_AUTH_SECRET", SECRET)
        .secret(SECRET)
        .assert::<JwtPlugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs (a JWKS URL).
#[test]
fn jwt_plugin_with_its_example_config_conforms() {
    Conformance::example::<JwtPlugin>().assert::<JwtPlugin>();
}
