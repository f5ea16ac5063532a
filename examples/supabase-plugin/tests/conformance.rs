//! The Portcullis conformance kit, run on this plugin.

use portcullis_plugin_api::conformance::{Canned, Conformance};
use portcullis_supabase_plugin::SupabasePlugin;

const ANON_KEY: &str = "sb_publishable_conformance_0123456789";

#[test]
fn supabase_plugin_conforms() {
    Conformance::new(serde_json::json!({
        "url": "https://abcdefghijklmnop.supabase.co",
        "anon_key": ANON_KEY,
        "admin": { "table": "users" },
    }))
    .secret(ANON_KEY)
    // What GoTrue says about the kit's garbage tokens.
    .respond(
        "https://abcdefghijklmnop.supabase.co/auth/v1/user",
        Canned::json(403, r#"{"code":403,"error_code":"bad_jwt","msg":"invalid JWT: unable to parse or verify signature, token is malformed"}"#),
    )
    .respond(
        "https://abcdefghijklmnop.supabase.co/rest/v1/users",
        Canned::json(200, r#"{"isAdmin":true}"#),
    )
    .assert::<SupabasePlugin>();
}

#[test]
fn supabase_without_admin_check_conforms() {
    Conformance::new(serde_json::json!({}))
        .env("SUPABASE_URL", "https://abcdefghijklmnop.supabase.co")
        .env("SUPABASE_ANON_KEY", ANON_KEY)
        .secret(ANON_KEY)
        .assert::<SupabasePlugin>();
}

/// The example config `plugin inspect` shows and `plugin test` runs.
#[test]
fn supabase_plugin_with_its_example_config_conforms() {
    Conformance::example::<SupabasePlugin>()
        .respond(
            "https://abcdefghijklmnop.supabase.co/auth/v1/user",
            Canned::json(403, r#"{"code":403,"error_code":"bad_jwt","msg":"invalid JWT: unable to parse or verify signature, token is malformed"}"#),
        )
        .assert::<SupabasePlugin>();
}
