//! The `auth0` provider: Auth0 access tokens, verified by the host against the tenant's JWKS
//! (`https://{domain}/.well-known/jwks.json`), issuer `https://{domain}/` and a required audience.
//!
//! The seed's `MastraAuthAuth0`, with a key cache instead of a JWKS fetch per request.
//! Authorization: any valid user with a `sub` (the seed allowed any user; its newer version also
//! requires a subject).

use portcullis_plugin_api::{
    base_url, export_provider, AuthProvider, Host, JwtVerifierSpec, OneOrMany, Plugin,
    PluginConfig, PluginError, Request, User, Verifier,
};
use serde::Deserialize;

/// The seed's message when the domain or the audience is missing.
pub const MISSING: &str = "Auth0 domain and audience are required, please provide them in the \
                           options or set the environment variables AUTH0_DOMAIN and \
                           AUTH0_AUDIENCE";

/// The `config:` of an `auth0` instance.
#[derive(Deserialize, PluginConfig, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// tenant domain, e.g. my-tenant.us.auth0.com (env AUTH0_DOMAIN)
    #[config(env = "AUTH0_DOMAIN", example = "my-tenant.us.auth0.com")]
    pub domain: Option<String>,
    /// API identifier tokens must carry in `aud` (env AUTH0_AUDIENCE)
    ///
    /// A list accepts any of its values; `AUTH0_AUDIENCE` is one audience.
    #[config(env = "AUTH0_AUDIENCE", example = r#""https://api.example.com""#)]
    pub audience: Option<OneOrMany>,
    /// where the tenant is served (default https://{domain})
    ///
    /// For tests and private deployments. The issuer becomes `{base_url}/`, the keys
    /// `{base_url}/.well-known/jwks.json`.
    #[config(url)]
    pub base_url: Option<String>,
    /// pinned algorithms (default [RS256])
    ///
    /// PS256 for APIs configured so.
    pub algorithms: Option<Vec<String>>,
    /// clock leeway in seconds (default 30)
    pub leeway_secs: Option<u64>,
}

/// A configured instance.
pub struct Auth0Provider {
    verifier: Verifier,
    issuer: String,
}

impl AuthProvider for Auth0Provider {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        self.verifier.verify(&token).await.map(Some)
    }

    async fn authorize(&self, user: User, _request: Request) -> Result<bool, PluginError> {
        Ok(user.subject().is_some())
    }

    fn issuers(&self) -> Vec<String> {
        vec![self.issuer.clone()]
    }

    /// Only the token, the keys the host verified it with and the clock decide.
    fn reusable_authentication(&self) -> bool {
        true
    }
}

fn check_domain(domain: &str) -> Result<(), PluginError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(PluginError::config(
            "domain: write the tenant host name only, e.g. my-tenant.us.auth0.com (no https://, no path)",
        ))
    }
}

/// The tenant's key set.
fn jwks_url(base: &str) -> String {
    format!("{base}/.well-known/jwks.json")
}

/// The plugin.
pub struct Auth0Plugin;

impl Plugin for Auth0Plugin {
    type Provider = Auth0Provider;
    type Config = Config;
    const NAME: &'static str = "auth0";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Auth0 access tokens verified against the tenant's JWKS, issuer and audience";
    /// Its `authorize` only asks whether the user has a `sub`, so an answer per subject is exact.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn validate(config: &Config, host: &Host) -> Result<(), PluginError> {
        if let Some(d) = config.domain.as_deref().filter(|d| !d.is_empty()) {
            check_domain(d)?;
            if config.base_url.is_none() {
                // The default key set, built from the domain: a URL every request would need.
                host.check_url(&jwks_url(&format!("https://{d}")))
                    .map_err(|e| e.context("domain"))?;
            }
        }
        if let Some(b) = &config.base_url {
            base_url("base_url", b)?;
        }
        if let Some(OneOrMany::Many(list)) = &config.audience {
            if list.is_empty() || list.iter().any(String::is_empty) {
                return Err(PluginError::config(
                    "audience: list at least one non-empty audience",
                ));
            }
        }
        if let Some(algs) = &config.algorithms {
            let ok = !algs.is_empty()
                && algs.iter().all(|a| {
                    matches!(
                        a.as_str(),
                        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
                    )
                });
            if !ok {
                return Err(PluginError::config(
                    "algorithms: Auth0 keys are RSA; use RS256 (or RS384, RS512, PS256, PS384, PS512)",
                ));
            }
        }
        Ok(())
    }

    fn build(config: Config, host: Host) -> Result<Auth0Provider, PluginError> {
        // `AUTH0_DOMAIN` and `AUTH0_AUDIENCE` are filled in by the SDK when absent.
        let domain = config.domain.filter(|s| !s.is_empty());
        let audience = config
            .audience
            .map(OneOrMany::into_vec)
            .filter(|a| !a.is_empty() && a.iter().all(|s| !s.is_empty()));
        let (Some(domain), Some(audience)) = (domain, audience) else {
            return Err(PluginError::config(MISSING));
        };
        check_domain(&domain)?;
        let base = match &config.base_url {
            Some(b) => base_url("base_url", b)?,
            None => format!("https://{domain}"),
        };
        let issuer = format!("{base}/");
        let verifier = host.jwt_verifier(&JwtVerifierSpec {
            algorithms: config.algorithms.unwrap_or_else(|| vec!["RS256".into()]),
            jwks_url: Some(jwks_url(&base)),
            issuer: vec![issuer.clone()],
            audience,
            leeway_secs: config.leeway_secs,
            required_claims: vec!["sub".into()],
            ..JwtVerifierSpec::default()
        })?;
        Ok(Auth0Provider { verifier, issuer })
    }
}

export_provider!(Auth0Plugin);
