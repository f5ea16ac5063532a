//! The `clerk` provider: Clerk session tokens, verified by the host against the instance's JWKS,
//! with the SDK's optional authorized-parties (`azp`) check, and authorization by organization
//! membership through the Clerk Backend API.
//!
//! The seed's `MastraAuthClerk`, with what it lacked: keys are cached by the host (the seed built a
//! new JWKS client per request), algorithms are pinned to RS256/384/512 as in Clerk's SDK, `azp`
//! is enforced when `authorized_parties` is set, and membership answers are cached by the host's
//! authorization cache.
//!
//! Authorization is scoped to the organization the session token is for (`org_id` in version-1
//! claims, `o.id` in version 2): the seed allowed any user with a membership in *any*
//! organization, so a user who can create an organization of their own passed. The memberships
//! are paged through (`limit`/`offset`) until that organization is found. `organization: any`
//! keeps the seed's behaviour, by explicit choice.

use portcullis_plugin_api::{
    base_url, export_provider,
    organization::{OrganizationPolicy, Target},
    path_segment, AuthProvider, Host, JwtVerifierSpec, Plugin, PluginConfig, PluginError, Request,
    User, Verifier,
};
use serde::Deserialize;

/// The seed's message when a required option is missing.
pub const MISSING: &str = "Clerk JWKS URI, secret key and publishable key are required, please \
                           provide them in the options or set the environment variables \
                           CLERK_JWKS_URI, CLERK_SECRET_KEY and CLERK_PUBLISHABLE_KEY";

/// Production Backend API.
pub const DEFAULT_API_BASE: &str = "https://api.clerk.com";
/// Memberships asked for per page (the API allows 1 to 500).
pub const PAGE_SIZE: usize = 100;
/// Pages of memberships read at most before giving up.
pub const DEFAULT_MAX_PAGES: u32 = 10;

/// The `config:` of a `clerk` instance.
#[derive(Deserialize, PluginConfig, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// the instance's JWKS URL (env CLERK_JWKS_URI)
    ///
    /// For example `https://<frontend api>/.well-known/jwks.json`.
    #[config(
        url,
        env = "CLERK_JWKS_URI",
        example = "https://clerk.example.com/.well-known/jwks.json"
    )]
    pub jwks_uri: Option<String>,
    /// Backend API secret key sk_… (env CLERK_SECRET_KEY)
    #[config(
        secret,
        env = "CLERK_SECRET_KEY",
        example = "sk_test_a1b2c3d4e5f6a7b8c9d0"
    )]
    pub secret_key: Option<String>,
    /// publishable key pk_… (env CLERK_PUBLISHABLE_KEY)
    #[config(
        env = "CLERK_PUBLISHABLE_KEY",
        example = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k"
    )]
    pub publishable_key: Option<String>,
    /// Backend API base URL (default https://api.clerk.com)
    #[config(url)]
    pub api_base: Option<String>,
    /// accepted `azp` values; a token without `azp` is then refused
    pub authorized_parties: Option<Vec<String>>,
    /// accepted `iss` values (default: not checked)
    ///
    /// The Frontend API URL; not checked by default, as Clerk's SDK.
    pub issuer: Option<Vec<String>>,
    /// clock leeway in seconds (default 5)
    ///
    /// Clerk's default skew.
    pub leeway_secs: Option<u64>,
    /// whose membership counts: token (default; the token's org_id or o.id, none =
    /// not authorized) or any (any organization)
    pub organization: Option<String>,
    /// organization ids a membership may be in (default: any)
    ///
    /// Subject to `organization`.
    pub organizations: Option<Vec<String>>,
    /// membership pages of 100 read at most (default 10)
    ///
    /// 1 to 100.
    pub max_pages: Option<u32>,
}

/// A configured instance.
pub struct ClerkProvider {
    host: Host,
    verifier: Verifier,
    api_base: String,
    secret_key: String,
    authorized_parties: Vec<String>,
    issuers: Vec<String>,
    organizations: OrganizationPolicy,
    max_pages: u32,
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
        let target = user
            .claims()
            .map_or(Target::Refuse, |c| self.organizations.target(&c));
        if target == Target::Refuse {
            // No active organization, claims that do not say which one clearly, or one outside
            // `organizations`: nothing to be a member of.
            return Ok(false);
        }
        // Whether one membership (an item of `data`) is in an organization that counts.
        let counts = |m: &serde_json::Value| {
            let id = m
                .get("organization")
                .and_then(|o| o.get("id"))
                .and_then(|i| i.as_str());
            self.organizations.counts(&target, id)
        };
        let auth = format!("Bearer {}", self.secret_key);
        let mut offset = 0usize;
        for _ in 0..self.max_pages {
            let url = format!(
                "{}/v1/users/{segment}/organization_memberships?limit={PAGE_SIZE}&offset={offset}",
                self.api_base
            );
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
            let list: Memberships = match resp.status {
                200 => serde_json::from_slice(&resp.body).map_err(|_| {
                    PluginError::unavailable(
                        "clerk organization memberships answered 200 with a body that is not a list",
                    )
                })?,
                // An unknown user: no memberships (the API does not say which of 404 or an empty
                // list). Only Clerk's own not-found answer counts: a 404 from a wrong `api_base` or
                // a proxy would otherwise deny (and cache the denial for) everyone.
                404 if clerk_error_code(&resp.body).as_deref() == Some("resource_not_found") => {
                    return Ok(false)
                }
                status => {
                    let code = clerk_error_code(&resp.body)
                        .filter(|c| c.len() <= 64 && c.chars().all(|c| c.is_ascii_graphic()))
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default();
                    let hint = match status {
                        401 | 403 => ": check secret_key",
                        429 => ": rate limited",
                        _ => "",
                    };
                    return Err(PluginError::unavailable(format!(
                        "clerk organization memberships answered {status}{code}{hint}"
                    )));
                }
            };
            if list.data.iter().any(counts) {
                return Ok(true);
            }
            let total = list.total_count;
            if self.organizations.any_membership_counts(&target) {
                // Any membership at all: a count without items still says there is one.
                return Ok(total.unwrap_or(0) > 0);
            }
            // Offset paging, newest first; `total_count` is the total across pages. An empty page
            // ends the list whatever the count says (memberships can go while we page).
            offset = offset.saturating_add(list.data.len());
            let done = match total {
                Some(t) => u64::try_from(offset).map_or(true, |o| o >= t),
                None => list.data.len() < PAGE_SIZE,
            };
            if list.data.is_empty() || done {
                return Ok(false);
            }
        }
        // More memberships than we read: the answer is unknown, not "no".
        Err(PluginError::unavailable(format!(
            "clerk user has more than {} pages of memberships; raise max_pages",
            self.max_pages
        )))
    }

    fn issuers(&self) -> Vec<String> {
        self.issuers.clone()
    }

    /// Only the token, the keys the host verified it with and the clock decide.
    fn reusable_authentication(&self) -> bool {
        true
    }
}

/// What `validate` checks: everything that needs no host.
fn check(config: &Config) -> Result<(), PluginError> {
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
    OrganizationPolicy::new(
        config.organization.as_deref(),
        config.organizations.as_deref(),
    )?;
    if config.max_pages.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(PluginError::config("max_pages: must be between 1 and 100"));
    }
    Ok(())
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
    // The answer depends on the subject and, with `organization: token`, the token's organization
    // (a lookup by `sub`, matched against `org_id` or `o.id`): the host caches it per (subject,
    // organization), the organization being the `org_id` claim, else `o.id`.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        check(config)
    }

    fn build(config: Config, host: Host) -> Result<ClerkProvider, PluginError> {
        let organizations = OrganizationPolicy::new(
            config.organization.as_deref(),
            config.organizations.as_deref(),
        )?;
        // `CLERK_JWKS_URI`, `CLERK_SECRET_KEY` and `CLERK_PUBLISHABLE_KEY` are filled in by the
        // SDK when absent.
        let given = |option: Option<String>| option.filter(|s| !s.is_empty());
        let (Some(jwks_uri), Some(secret_key), Some(_publishable_key)) = (
            given(config.jwks_uri),
            given(config.secret_key),
            given(config.publishable_key),
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
            organizations,
            max_pages: config.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_organization_scope_is_a_config_error() {
        let config = Config {
            organization: Some("Any".into()),
            ..Config::default()
        };
        let err = check(&config).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.message().starts_with("organization: must be")),
            "{err:?}"
        );
    }
}
