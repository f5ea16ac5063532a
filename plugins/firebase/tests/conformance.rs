//! The conformance kit against the firebase plugin, with Google's endpoints canned.

use portcullis_plugin_api::conformance::{Canned, Conformance};
use portcullis_plugin_firebase::FirebasePlugin;

const PRIVATE_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIconformancekitfakekeymaterial0123456789\n-----END PRIVATE KEY-----\n";

fn service_account() -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "conformance-project",
        "private_key_id": "kid-conformance",
        "private_key": PRIVATE_KEY,
        "client_email": "svc@conformance-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

#[test]
fn firebase_plugin_conforms() {
    Conformance::new(serde_json::json!({ "service_account": service_account() }))
        .secret("MIIconformancekitfakekeymaterial0123456789")
        .respond(
            "https://oauth2.googleapis.com/token",
            Canned::json(
                200,
                r#"{"access_token":"ya29.conformance","expires_in":3599,"token_type":"Bearer"}"#,
            ),
        )
        .respond(
            "https://firestore.googleapis.com/",
            Canned::json(
                200,
                r#"{"name":"projects/conformance-project/databases/(default)/documents/user_access/u","fields":{},"createTime":"2026-01-01T00:00:00Z","updateTime":"2026-01-01T00:00:00Z"}"#,
            ),
        )
        .assert::<FirebasePlugin>();
}

#[test]
fn firebase_options_come_from_the_environment_too() {
    Conformance::new(serde_json::json!({}))
        .env("FIREBASE_SERVICE_ACCOUNT", &service_account())
        .env("FIRESTORE_DATABASE_ID", "other-db")
        .secret("MIIconformancekitfakekeymaterial0123456789")
        .assert::<FirebasePlugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs (its service account's key is
/// no key: the kit's host only checks that it looks like one).
#[test]
fn firebase_plugin_with_its_example_config_conforms() {
    Conformance::example::<FirebasePlugin>()
        .respond(
            "https://oauth2.googleapis.com/token",
            Canned::json(
                200,
                r#"{"access_token":"ya29.conformance","expires_in":3599,"token_type":"Bearer"}"#,
            ),
        )
        .respond(
            "https://firestore.googleapis.com/",
            Canned::json(
                200,
                r#"{"name":"projects/my-project/databases/(default)/documents/user_access/u","fields":{},"createTime":"2026-01-01T00:00:00Z","updateTime":"2026-01-01T00:00:00Z"}"#,
            ),
        )
        .assert::<FirebasePlugin>();
}
