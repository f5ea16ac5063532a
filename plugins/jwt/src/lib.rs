//! The `jwt` provider: bearer JWTs verified by the host against an HMAC secret, PEM public keys or
//! a JWKS URL, with pinned algorithms, issuer, audience, leeway and required claims.
//!
//! It is the seed's `MastraJwtAuth` and more: with no key configured it falls back to the
//! `JWT_AUTH_SECRET` environment variable, as the seed does; its `authorize` allows any valid user
//! unless the YAML `authorize:` of the instance says otherwise.

use portcullis_plugin_api::{
    config_key, export_provider, AuthProvider, ConfigKey, Host, JwtVerifierSpec, Plugin,
    PluginError, Request, User, Verifier,
};

/// The seed's error text when no key is configured.
pub const MISSING_SECRET: &str = "JWT auth secret is required: set `secret` (or the environment \
                                  variable JWT_AUTH_SECRET), `public_keys`, `jwks_url` or \
                                  `x509_url`";

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
    type Config = JwtVerifierSpec;
    const NAME: &'static str = "jwt";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "JWT bearer tokens: HMAC secret, PEM public keys or a JWKS URL";
    /// Its `authorize` is the default: every authenticated user, so an answer per subject is exact.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            config_key(
                "secret",
                "HMAC secret, at least 32 bytes (env JWT_AUTH_SECRET)",
                false,
                true,
            ),
            config_key(
                "public_keys",
                "PEM public keys or certificates",
                false,
                false,
            ),
            config_key("jwks_url", "JWKS URL (https)", false, false),
            config_key(
                "x509_url",
                "URL of a kid -> PEM certificate map (Google securetoken format; https)",
                false,
                false,
            ),
            config_key(
                "algorithms",
                "allowed algorithms, pinned (default: from the keys)",
                false,
                false,
            ),
            config_key("issuer", "accepted `iss` values", false, false),
            config_key(
                "audience",
                "accepted `aud` values; a token without `aud` is refused",
                false,
                false,
            ),
            config_key(
                "leeway_secs",
                "clock leeway in seconds (default 30)",
                false,
                false,
            ),
            config_key(
                "required_claims",
                "claims that must be present",
                false,
                false,
            ),
            config_key("typ", "accepted header `typ` values", false, false),
            config_key(
                "require_exp",
                "whether `exp` is required (default true)",
                false,
                false,
            ),
        ]
    }

    fn build(mut config: JwtVerifierSpec, host: Host) -> Result<JwtProvider, PluginError> {
        let has_key = config.secret.as_deref().is_some_and(|s| !s.is_empty())
            || !config.public_keys.is_empty()
            || config.jwks_url.is_some()
            || config.x509_url.is_some();
        if !has_key {
            match host.env("JWT_AUTH_SECRET").filter(|s| !s.is_empty()) {
                Some(secret) => config.secret = Some(secret),
                None => return Err(PluginError::config(MISSING_SECRET)),
            }
        }
        let verifier = host.jwt_verifier(&config)?;
        Ok(JwtProvider {
            verifier,
            issuers: config.issuer,
        })
    }
}

export_provider!(JwtPlugin);
