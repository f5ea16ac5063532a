//! The `workos` provider: WorkOS AuthKit (User Management) access tokens, verified by the host
//! against the client's JWKS, and authorization by organization role.
//!
//! The seed's `MastraAuthWorkos`, with its gaps closed:
//! * the key set is `{api_base}/sso/jwks/{client_id}` of the *configured* client (the seed read
//!   `WORKOS_CLIENT_ID` from the environment even when the option was given);
//! * the token's issuer is checked (default `{api_base}/user_management/{client_id}`);
//! * `authorize` follows `list_metadata.after` through every page of memberships (the seed read the
//!   first ten) and looks at each membership's `role` and `roles`;
//! * `authorize` is scoped to the organization the token was issued for (`org_id`): the seed
//!   allowed an admin of *any* organization, so a user who can create an organization of their
//!   own was an admin everywhere. `organization: any` keeps that behaviour, by explicit choice.

use portcullis_plugin_api::{
    base_url, export_provider,
    organization::{OrganizationPolicy, Target},
    path_segment, query_value, AuthProvider, Host, JwtVerifierSpec, Plugin, PluginConfig,
    PluginError, Request, User, Verifier,
};
use serde::Deserialize;

/// The seed's message when the API key or the client id is missing.
pub const MISSING: &str = "WorkOS API key and client ID are required, please provide them in the \
                           options or set the environment variables WORKOS_API_KEY and \
                           WORKOS_CLIENT_ID";

/// Production API.
pub const DEFAULT_API_BASE: &str = "https://api.workos.com";
/// Pages of memberships read at most (100 each) before giving up.
pub const DEFAULT_MAX_PAGES: u32 = 10;

/// The `config:` of a `workos` instance.
#[derive(Deserialize, PluginConfig, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// secret API key sk_… (env WORKOS_API_KEY)
    #[config(
        secret,
        env = "WORKOS_API_KEY",
        example = "sk_test_a1b2c3d4e5f6a7b8c9d0"
    )]
    pub api_key: Option<String>,
    /// client id client_… (env WORKOS_CLIENT_ID)
    #[config(
        env = "WORKOS_CLIENT_ID",
        example = "client_01HZX5EXAMPLE0CLIENT000000"
    )]
    pub client_id: Option<String>,
    /// API base URL (default https://api.workos.com)
    #[config(url)]
    pub api_base: Option<String>,
    /// accepted `iss` (default {api_base}/user_management/{client_id})
    pub issuer: Option<Vec<String>>,
    /// accepted `aud` (default: not checked)
    ///
    /// AuthKit session tokens carry none.
    pub audience: Option<Vec<String>>,
    /// role slugs that authorize (default [admin])
    pub roles: Option<Vec<String>>,
    /// clock leeway in seconds (default 30)
    pub leeway_secs: Option<u64>,
    /// membership pages of 100 read at most (default 10)
    ///
    /// 1 to 100.
    pub max_pages: Option<u32>,
    /// whose membership counts: token (default; the token's org_id or o.id, none =
    /// not authorized) or any (any organization)
    pub organization: Option<String>,
    /// organization ids a membership may be in (default: any)
    ///
    /// Subject to `organization`.
    pub organizations: Option<Vec<String>>,
}

/// A configured instance.
pub struct WorkosProvider {
    host: Host,
    verifier: Verifier,
    api_base: String,
    api_key: String,
    roles: Vec<String>,
    issuers: Vec<String>,
    max_pages: u32,
    organizations: OrganizationPolicy,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<Membership>,
    #[serde(default)]
    list_metadata: Option<ListMetadata>,
}

#[derive(Deserialize)]
struct ListMetadata {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Deserialize)]
struct Membership {
    #[serde(default)]
    organization_id: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    roles: Option<Vec<Role>>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Role {
    slug: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
}

impl WorkosProvider {
    /// Whether membership `m` authorizes for `target`: active, in an organization that counts
    /// (the list is asked for with `organization_id`, but an answer that ignored the filter must
    /// not widen the check: the membership itself has to say which organization it is in), with a
    /// listed role.
    fn membership_allows(&self, m: &Membership, target: &Target) -> bool {
        if m.status.as_deref().is_some_and(|s| s != "active") {
            return false;
        }
        if !self
            .organizations
            .counts(target, m.organization_id.as_deref())
        {
            return false;
        }
        let listed = |r: &Role| self.roles.contains(&r.slug);
        m.role.as_ref().is_some_and(listed) || m.roles.iter().flatten().any(listed)
    }
}

impl AuthProvider for WorkosProvider {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        self.verifier.verify(&token).await.map(Some)
    }

    async fn authorize(&self, user: User, _request: Request) -> Result<bool, PluginError> {
        let Some(sub) = user.subject() else {
            return Ok(false);
        };
        let target = user
            .claims()
            .map_or(Target::Refuse, |c| self.organizations.target(&c));
        let org = match &target {
            // No organization selected for the session, or one outside `organizations`.
            Target::Refuse => return Ok(false),
            Target::Org(o) => Some(o),
            Target::Any => None,
        };
        let mut query = format!("user_id={}", query_value(&sub));
        if let Some(o) = &org {
            query.push_str("&organization_id=");
            query.push_str(&query_value(o));
        }
        let auth = format!("Bearer {}", self.api_key);
        let mut after: Option<String> = None;
        for _ in 0..self.max_pages {
            let mut url = format!(
                "{}/user_management/organization_memberships?{query}&limit=100",
                self.api_base
            );
            if let Some(cursor) = &after {
                url.push_str("&after=");
                url.push_str(&query_value(cursor));
            }
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
            if resp.status != 200 {
                let code = serde_json::from_slice::<ErrorBody>(&resp.body)
                    .ok()
                    .and_then(|b| b.code)
                    .filter(|c| c.len() <= 64 && c.chars().all(|c| c.is_ascii_graphic()))
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                let hint = match resp.status {
                    401 | 403 => ": check api_key",
                    429 => ": rate limited",
                    _ => "",
                };
                return Err(PluginError::unavailable(format!(
                    "workos organization memberships answered {}{code}{hint}",
                    resp.status
                )));
            }
            let page: Page = serde_json::from_slice(&resp.body).map_err(|_| {
                PluginError::unavailable(
                    "workos organization memberships answered 200 with a body that is not a list",
                )
            })?;
            if page.data.iter().any(|m| self.membership_allows(m, &target)) {
                return Ok(true);
            }
            match page.list_metadata.and_then(|m| m.after) {
                None => return Ok(false),
                Some(next) if after.as_deref() == Some(next.as_str()) || next.is_empty() => {
                    return Err(PluginError::unavailable(
                        "workos organization memberships repeated a page cursor",
                    ))
                }
                Some(next) => after = Some(next),
            }
        }
        // More memberships than we read: the answer is unknown, not "no".
        Err(PluginError::unavailable(format!(
            "workos user has more than {} pages of memberships; raise max_pages",
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
    if let Some(id) = &config.client_id {
        if !id.is_empty() && path_segment(id).is_none() {
            return Err(PluginError::config("client_id: not a client id"));
        }
    }
    if config
        .roles
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.iter().any(String::is_empty))
    {
        return Err(PluginError::config(
            "roles: list at least one non-empty role slug",
        ));
    }
    OrganizationPolicy::new(
        config.organization.as_deref(),
        config.organizations.as_deref(),
    )?;
    if config.max_pages.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(PluginError::config("max_pages: must be between 1 and 100"));
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

/// The plugin.
pub struct WorkosPlugin;

impl Plugin for WorkosPlugin {
    type Provider = WorkosProvider;
    type Config = Config;
    const NAME: &'static str = "workos";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "WorkOS AuthKit access tokens (JWKS) and organization-role authorization";
    // The answer depends on the subject and, with `organization: token`, the token's `org_id`
    // (a lookup by `sub` and that organization): the host caches it per (subject, organization),
    // the organization being the `org_id` claim (else `o.id`).
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        check(config)
    }

    fn build(config: Config, host: Host) -> Result<WorkosProvider, PluginError> {
        let organizations = OrganizationPolicy::new(
            config.organization.as_deref(),
            config.organizations.as_deref(),
        )?;
        // `WORKOS_API_KEY` and `WORKOS_CLIENT_ID` are filled in by the SDK when absent.
        let given = |option: Option<String>| option.filter(|s| !s.is_empty());
        let (Some(api_key), Some(client_id)) = (given(config.api_key), given(config.client_id))
        else {
            return Err(PluginError::config(MISSING));
        };
        let segment = path_segment(&client_id)
            .ok_or_else(|| PluginError::config("client_id: not a client id"))?;
        let api_base = base_url(
            "api_base",
            config.api_base.as_deref().unwrap_or(DEFAULT_API_BASE),
        )?;
        let issuers = config
            .issuer
            .unwrap_or_else(|| vec![format!("{api_base}/user_management/{client_id}")]);
        let verifier = host.jwt_verifier(&JwtVerifierSpec {
            algorithms: vec!["RS256".into()],
            jwks_url: Some(format!("{api_base}/sso/jwks/{segment}")),
            issuer: issuers.clone(),
            audience: config.audience.unwrap_or_default(),
            leeway_secs: config.leeway_secs,
            required_claims: vec!["sub".into()],
            ..JwtVerifierSpec::default()
        })?;
        Ok(WorkosProvider {
            host,
            verifier,
            api_base,
            api_key,
            roles: config.roles.unwrap_or_else(|| vec!["admin".into()]),
            issuers,
            max_pages: config.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
            organizations,
        })
    }
}

export_provider!(WorkosPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_organization_scope_is_a_config_error() {
        for bad in ["", "all", "Token", "org_01HRDMC6CM357W30QMHMQ96Q0S"] {
            let config = Config {
                organization: Some(bad.into()),
                ..Config::default()
            };
            let err = check(&config).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.message().starts_with("organization: must be")),
                "{bad}: {err:?}"
            );
        }
    }
}
