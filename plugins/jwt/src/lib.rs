//! The `jwt` provider: bearer JWTs verified by the host against an HMAC secret, PEM public keys or
//! a JWKS URL, with pinned algorithms, issuer, audience, leeway and required claims.
//!
//! It is the seed's `MastraJwtAuth` and more: with no key configured it falls back to the
//! `JWT_AUTH_SECRET` environment variable, as the seed does; its `authorize` allows any valid user
//! unless the YAML `authorize:` of the instance says otherwise.

use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, JwtVerifierSpec, Plugin, PluginConfig, PluginError,
    Request, User, Verifier,
};
use serde::Deserialize;

/// The seed's error text when no key is configured.
pub const MISSING_SECRET: &str = "JWT auth secret is required: set `secret` (or the environment \
                                  variable JWT_AUTH_SECRET), `public_keys`, `jwks_url` or \
                                  `x509_url`";

/// The `config:` of a `jwt` instance: the host's [`JwtVerifierSpec`], key by key.
#[derive(Deserialize, PluginConfig, Default, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HMAC secret, at least 32 bytes (env JWT_AUTH_SECRET)
    ///
    /// The environment variable is the seed's fallback for an instance without any key: an
    /// instance with `public_keys`, `jwks_url` or `x509_url` does not take it.
    #[config(
        secret,
        env = "JWT_AUTH_SECRET",
        env_unless = "public_keys jwks_url x509_url"
    )]
    pub secret: Option<String>,
    /// PEM public keys or certificates
    pub public_keys: Vec<String>,
    /// JWKS URL (https)
    #[config(url, example = "https://idp.example.com/.well-known/jwks.json")]
    pub jwks_url: Option<String>,
    /// URL of a kid -> PEM certificate map (Google securetoken format; https)
    #[config(url)]
    pub x509_url: Option<String>,
    /// allowed algorithms, pinned (default: from the keys)
    pub algorithms: Vec<String>,
    /// accepted `iss` values
    #[config(example = r#"["https://idp.example.com/"]"#)]
    pub issuer: Vec<String>,
    /// accepted `aud` values; a token without `aud` is refused
    #[config(example = r#"["https://api.example.com"]"#)]
    pub audience: Vec<String>,
    /// clock leeway in seconds (default 30)
    pub leeway_secs: Option<u64>,
    /// claims that must be present
    pub required_claims: Vec<String>,
    /// accepted header `typ` values
    pub typ: Vec<String>,
    /// whether `exp` is required (default true)
    pub require_exp: Option<bool>,
}

impl Config {
    /// The verifier spec the host is asked for.
    fn into_spec(self) -> JwtVerifierSpec {
        JwtVerifierSpec {
            algorithms: self.algorithms,
            secret: self.secret,
            public_keys: self.public_keys,
            jwks_url: self.jwks_url,
            x509_url: self.x509_url,
            issuer: self.issuer,
            audience: self.audience,
            leeway_secs: self.leeway_secs,
            required_claims: self.required_claims,
            typ: self.typ,
            require_exp: self.require_exp,
        }
    }
}

/// A configured instance.
pub struct JwtProvider {
    verifier: Verifier,
    issuers: Vec<String>,
}

impl AuthProvider for JwtProvider {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        self.verifier.verify(&token).await.map(Some)
    }

    fn issuers(&self) -> Vec<String> {
        self.issuers.clone()
    }

    /// Only the token, the keys the host verified it with and the clock decide.
    fn reusable_authentication(&self) -> bool {
        true
    }
}

/// The plugin.
pub struct JwtPlugin;

impl Plugin for JwtPlugin {
    type Provider = JwtProvider;
    type Config = Config;
    const NAME: &'static str = "jwt";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "JWT bearer tokens: HMAC secret, PEM public keys or a JWKS URL";
    /// Its `authorize` is the default: every authenticated user, so an answer per subject is exact.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn build(config: Config, host: Host) -> Result<JwtProvider, PluginError> {
        // JWT_AUTH_SECRET (the SDK fills `secret` from it) is the seed's fallback for an instance
        // without any key: `env_unless` keeps it from becoming a second key source.
        let has_key = config.secret.as_deref().is_some_and(|s| !s.is_empty())
            || !config.public_keys.is_empty()
            || config.jwks_url.is_some()
            || config.x509_url.is_some();
        if !has_key {
            return Err(PluginError::config(MISSING_SECRET));
        }
        let spec = config.into_spec();
        let verifier = host.jwt_verifier(&spec)?;
        Ok(JwtProvider {
            verifier,
            issuers: spec.issuer,
        })
    }
}

export_provider!(JwtPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    /// The host refuses a spec with two key sources: the example must name exactly one.
    #[test]
    fn the_example_config_has_exactly_one_key_source() {
        let example = portcullis_plugin_api::example_config(Config::KEYS).unwrap_or_default();
        let sources = ["secret", "public_keys", "jwks_url", "x509_url"]
            .iter()
            .filter(|k| example.contains_key(**k))
            .count();
        assert_eq!(sources, 1, "{example:?}");
        let config: Result<Config, _> = serde_json::from_value(example.into());
        assert!(config.is_ok_and(|c| c.jwks_url.is_some()));
    }
}
