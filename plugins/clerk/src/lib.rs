//! The `clerk` provider: Clerk session tokens, verified by the host against the instance's JWKS,
//! with the SDK's optional authorized-parties (`azp`) check, and authorization by organization
//! membership through the Clerk Backend API.
//!
//! The seed's `MastraAuthClerk`, with what it lacked: keys are cached by the host (the seed built a
//! new JWKS client per request), algorithms are pinned to RS256/384/512 as in Clerk's SDK, `azp`
//! is enforced when `authorized_parties` is set, and membership answers are cached by the host's
//! authorization cache.

use portcullis_plugin_api::{
    base_url, config_key, export_provider, path_segment, AuthProvider, ConfigKey, Host,
    JwtVerifierSpec, Plugin, PluginError, Request, User, Verifier,
};
use serde::Deserialize;

/// The seed's message when a required option is missing.
pub const MISSING: &str = "Clerk JWKS URI, secret key and publishable key are required, please \
                           provide them in the options or set the environment variables \
                           CLERK_JWKS_URI, CLERK_SECRET_KEY and CLERK_PUBLISHABLE_KEY";

/// Production Backend API.
pub const DEFAULT_API_BASE: &str = "https://api.clerk.com";

/// The `config:` of a `clerk` instance.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The instance's JWKS URL, e.g. `https://<frontend api>/.well-known/jwks.json`
    /// (env `CLERK_JWKS_URI`).
    pub jwks_uri: Option<String>,
    /// Backend API secret key `sk_…` (env `CLERK_SECRET_KEY`).
    pub secret_key: Option<String>,
    /// Publishable key `pk_…` (env `CLERK_PUBLISHABLE_KEY`).
    pub publishable_key: Option<String>,
    /// Backend API base URL (default `https://api.clerk.com`).
    pub api_base: Option<String>,
    /// Accepted `azp` values; when set, a token without `azp` is refused.
    pub authorized_parties: Option<Vec<String>>,
    /// Accepted `iss` values (the Frontend API URL); default: not checked, as Clerk's SDK.
    pub issuer: Option<Vec<String>>,
    /// Clock leeway in seconds (default 5, Clerk's default skew).
    pub leeway_secs: Option<u64>,
}

/// A configured instance.
pub struct ClerkProvider {
    host: Host,
    verifier: Verifier,
    api_base: String,
    secret_key: String,
    authorized_parties: Vec<String>,
    issuers: Vec<String>,
}

#[derive(Deserialize)]
struct Memberships {
    data: Vec<serde_json::Value>,
    #[serde(default)]
    total_count: Option<u64>,
}

#[derive(Deserialize)]
struct ClerkErrors {
    errors: Vec<ClerkError>,
}

#[derive(Deserialize)]
struct ClerkError {
    code: String,
}

impl AuthProvider for ClerkProvider {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        let user = self.verifier.verify(&token).await?;
        if !self.authorized_parties.is_empty() {
            match user.claim("azp") {
                Some(serde_json::Value::String(azp)) if self.authorized_parties.contains(&azp) => {}
                Some(_) => {
                    return Err(PluginError::invalid_token(
                        "token `azp` is not an authorized party",
                    ))
                }
                None => {
                    return Err(PluginError::invalid_token(
                        "token has no `azp` and authorized_parties is set",
                    ))
                }
            }
        }
        Ok(Some(user))
    }

    async fn authorize(&self, user: User, _request: Request) -> Result<bool, PluginError> {
        let Some(sub) = user.subject() else {
            return Ok(false);
        };
        let Some(segment) = path_segment(&sub) else {
            return Ok(false);
        };
        let url = format!(
            "{}/v1/users/{segment}/organization_memberships?limit=1",
            self.api_base
        );
        let auth = format!("Bearer {}", self.secret_key);
        let resp = self
            .host
            .get(
                &url,
                &[
                    ("authorization", auth.as_str()),
                    ("accept", "application/json"),
                ],
            )
            .await?;
        match resp.status {
            200 => {
                let list: Memberships = serde_json::from_slice(&resp.body).map_err(|_| {
                    PluginError::unavailable(
                        "clerk organization memberships answered 200 with a body that is not a list",
                    )
                })?;
                Ok(!list.data.is_empty() || list.total_count.unwrap_or(0) > 0)
            }
            // An unknown user: no memberships (the API does not say which of 404 or an empty list).
            // Only Clerk's own not-found answer counts: a 404 from a wrong `api_base` or a proxy
            // would otherwise deny (and cache the denial for) everyone.
            404 if clerk_error_code(&resp.body).as_deref() == Some("resource_not_found") => {
                Ok(false)
            }
            status => {
                let code = serde_json::from_slice::<ClerkErrors>(&resp.body)
                    .ok()
                    .and_then(|b| b.errors.into_iter().next())
                    .map(|e| e.code)
                    .filter(|c| c.len() <= 64 && c.chars().all(|c| c.is_ascii_graphic()))
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                let hint = match status {
                    401 | 403 => ": check secret_key",
                    429 => ": rate limited",
                    _ => "",
                };
                Err(PluginError::unavailable(format!(
                    "clerk organization memberships answered {status}{code}{hint}"
                )))
            }
        }
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
pub struct ClerkPlugin;

impl Plugin for ClerkPlugin {
    type Provider = ClerkProvider;
    type Config = Config;
    const NAME: &'static str = "clerk";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Clerk session tokens (JWKS, authorized parties) and organization-membership authorization";
    // The answer depends on the subject alone (a lookup by `sub`): the host may cache it.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            config_key(
                "jwks_uri",
                "the instance's JWKS URL (env CLERK_JWKS_URI)",
                true,
                false,
            ),
            config_key(
                "secret_key",
                "Backend API secret key sk_… (env CLERK_SECRET_KEY)",
                true,
                true,
            ),
            config_key(
                "publishable_key",
                "publishable key pk_… (env CLERK_PUBLISHABLE_KEY)",
                true,
                false,
            ),
            config_key(
                "api_base",
                "Backend API base URL (default https://api.clerk.com)",
                false,
                false,
            ),
            config_key(
                "authorized_parties",
                "accepted `azp` values; a token without `azp` is then refused",
                false,
                false,
            ),
            config_key(
                "issuer",
                "accepted `iss` values (default: not checked)",
                false,
                false,
            ),
            config_key(
                "leeway_secs",
                "clock leeway in seconds (default 5)",
                false,
                false,
            ),
        ]
    }

    fn validate(config: &Config) -> Result<(), PluginError> {
        if let Some(b) = &config.api_base {
            base_url("api_base", b)?;
        }
        if let Some(u) = config.jwks_uri.as_deref().filter(|u| !u.is_empty()) {
            base_url("jwks_uri", u)?;
        }
        if config
            .authorized_parties
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.iter().any(String::is_empty))
        {
            return Err(PluginError::config(
                "authorized_parties: list at least one origin, or leave it out",
            ));
        }
        if config
            .issuer
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.iter().any(String::is_empty))
        {
            return Err(PluginError::config(
                "issuer: list at least one non-empty issuer",
            ));
        }
        Ok(())
    }

    fn build(config: Config, host: Host) -> Result<ClerkProvider, PluginError> {
        let pick = |option: Option<String>, env: &str| {
            option
                .filter(|s| !s.is_empty())
                .or_else(|| host.env(env).filter(|s| !s.is_empty()))
        };
        let (Some(jwks_uri), Some(secret_key), Some(_publishable_key)) = (
            pick(config.jwks_uri, "CLERK_JWKS_URI"),
            pick(config.secret_key, "CLERK_SECRET_KEY"),
            pick(config.publishable_key, "CLERK_PUBLISHABLE_KEY"),
        ) else {
            return Err(PluginError::config(MISSING));
        };
        let jwks_uri = base_url("jwks_uri", &jwks_uri)?;
        let api_base = base_url(
            "api_base",
            config.api_base.as_deref().unwrap_or(DEFAULT_API_BASE),
        )?;
        let issuers = config.issuer.unwrap_or_default();
        let verifier = host.jwt_verifier(&JwtVerifierSpec {
            algorithms: vec!["RS256".into(), "RS384".into(), "RS512".into()],
            jwks_url: Some(jwks_uri),
            issuer: issuers.clone(),
            leeway_secs: Some(config.leeway_secs.unwrap_or(5)),
            required_claims: vec!["sub".into()],
            ..JwtVerifierSpec::default()
        })?;
        Ok(ClerkProvider {
            host,
            verifier,
            api_base,
            secret_key,
            authorized_parties: config.authorized_parties.unwrap_or_default(),
            issuers,
        })
    }
}

export_provider!(ClerkPlugin);

/// The first error code of a `ClerkErrors` body, if the body is one.
fn clerk_error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ClerkErrors>(body)
        .ok()
        .and_then(|b| b.errors.into_iter().next())
        .map(|e| e.code)
}
