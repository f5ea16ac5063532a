//! The conformance kit of portcullis-plugin-api, on this plugin: garbage configs, garbage tokens,
//! odd users, an identity provider that is down; nothing may panic, hang, let a bad token in or
//! leak the key. `portcullis plugin test` runs the same kit on the built library.

use portcullis_plugin_api::conformance::Conformance;
use static_key::StaticKeyPlugin;

#[test]
fn static_key_conforms() {
    // The plugin's own example config (the `example = "…"` of its keys).
    Conformance::example::<StaticKeyPlugin>().assert::<StaticKeyPlugin>();
}
