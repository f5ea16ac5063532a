// The `static-key` provider: accepts one shared API key as a bearer token.
//
// Written by `portcullis plugin new`; replace `authenticate` with your identity provider's check.
// Do I/O only through `Host` (`host.get`, `host.post`, `host.jwt_verifier`): a plugin has no
// runtime of its own.

use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, Plugin, PluginConfig, PluginError, Request, User,
};
use serde::Deserialize;

/// The `config:` of an instance. Each key is declared once, here: its description is the `///`
/// line, and `#[config(…)]` says what else the server must know about it.
#[derive(Deserialize, PluginConfig)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The shared API key (at least 16 characters).
    #[config(secret, env = "STATIC_KEY", example = "k-0123456789abcdef")]
    pub key: String,
    /// The `sub` of the user the key stands for (default `service`).
    pub subject: Option<String>,
}

/// One configured instance.
pub struct StaticKey {
    key: String,
    subject: String,
}

impl AuthProvider for StaticKey {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        // Compare in constant time: how long a refusal takes must not tell how close a guess was.
        let matches = token.len() == self.key.len()
            && token
                .bytes()
                .zip(self.key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !matches {
            return Ok(None); // 401
        }
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), self.subject.clone().into());
        Ok(Some(User::from_claims(claims)))
    }

    /// The answer depends only on the token.
    fn reusable_authentication(&self) -> bool {
        true
    }
}

/// The plugin.
pub struct StaticKeyPlugin;

impl Plugin for StaticKeyPlugin {
    type Provider = StaticKey;
    type Config = Config;
    const NAME: &'static str = "static-key";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "one shared API key";

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        if config.key.len() < 16 {
            return Err(PluginError::config("key: must be at least 16 characters"));
        }
        Ok(())
    }

    fn build(config: Config, _host: Host) -> Result<StaticKey, PluginError> {
        Ok(StaticKey {
            key: config.key,
            subject: config.subject.unwrap_or_else(|| "service".into()),
        })
    }
}

export_provider!(StaticKeyPlugin);
