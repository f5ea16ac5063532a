//! A provider written against portcullis-plugin-api 1.1, as a plugin author did before the SDK
//! gained middleware (ABI 1.2). Built by tests/tests/abi_compat.rs against the frozen copy of that
//! SDK, it must load and serve in every server of ABI 1.x: its library has no `exports` field, so
//! the server reads it as a provider library (and as no middleware).

use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, Plugin, PluginConfig, PluginError, Request, User,
};
use serde::Deserialize;

/// The `config:` of an instance.
#[derive(Deserialize, PluginConfig)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The one accepted token.
    #[config(secret, example = "eleven-key-0123456789")]
    pub key: String,
}

/// One configured instance.
pub struct ElevenKey {
    key: String,
}

impl AuthProvider for ElevenKey {
    async fn authenticate(
        &self,
        token: String,
        request: Request,
    ) -> Result<Option<User>, PluginError> {
        if token != self.key {
            return Ok(None);
        }
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "eleven".into());
        claims.insert("abi".into(), "1.1".into());
        claims.insert("path".into(), request.path().into());
        Ok(Some(User::from_claims(claims)))
    }

    async fn warm_up(&self) -> Result<(), PluginError> {
        Ok(())
    }
}

/// The plugin.
pub struct ElevenKeyPlugin;

impl Plugin for ElevenKeyPlugin {
    type Provider = ElevenKey;
    type Config = Config;
    const NAME: &'static str = "eleven-key";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "one key, built against plugin ABI 1.1";

    fn build(config: Config, _host: Host) -> Result<ElevenKey, PluginError> {
        Ok(ElevenKey { key: config.key })
    }
}

export_provider!(ElevenKeyPlugin);
