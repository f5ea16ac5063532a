//! A provider written against portcullis-plugin-api 1.0, as a plugin author did before the SDK
//! moved on. Built by tests/tests/abi_compat.rs against the frozen copy of that SDK, it must load
//! and serve in every server of ABI 1.x.

use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, Plugin, PluginConfig, PluginError, Request, User,
};
use serde::Deserialize;

/// The `config:` of an instance.
#[derive(Deserialize, PluginConfig)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The one accepted token.
    #[config(secret, example = "legacy-key-0123456789")]
    pub key: String,
}

/// One configured instance.
pub struct LegacyKey {
    key: String,
}

impl AuthProvider for LegacyKey {
    async fn authenticate(
        &self,
        token: String,
        request: Request,
    ) -> Result<Option<User>, PluginError> {
        if token != self.key {
            return Ok(None);
        }
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "legacy".into());
        claims.insert("abi".into(), "1.0".into());
        claims.insert("path".into(), request.path().into());
        Ok(Some(User::from_claims(claims)))
    }
}

/// The plugin.
pub struct LegacyKeyPlugin;

impl Plugin for LegacyKeyPlugin {
    type Provider = LegacyKey;
    type Config = Config;
    const NAME: &'static str = "legacy-key";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "one key, built against plugin ABI 1.0";

    fn build(config: Config, _host: Host) -> Result<LegacyKey, PluginError> {
        Ok(LegacyKey { key: config.key })
    }
}

export_provider!(LegacyKeyPlugin);
