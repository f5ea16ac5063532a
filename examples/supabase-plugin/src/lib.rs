//! A Portcullis provider for Supabase Auth.
//!
//! `authenticate` asks the project's GoTrue who the bearer token belongs to
//! (`GET {url}/auth/v1/user` with the `apikey` header); `authorize` optionally reads an admin flag
//! through PostgREST (`GET {url}/rest/v1/{table}?select={column}&{id_column}=eq.{id}`).

use portcullis_plugin_api::{
    export_provider, query_value, AuthProvider, Host, Plugin, PluginConfig, PluginError, Request,
    User,
};
use serde::Deserialize;

/// The message when the project URL or the anon key is missing.
pub const MISSING: &str = "Supabase URL and anon key are required, please provide them in the \
                           options or set the environment variables SUPABASE_URL and \
                           SUPABASE_ANON_KEY";

/// The `config:` of a `supabase` instance. Each key is declared once, here: the first paragraph
/// of its comment is what `portcullis plugin inspect` shows.
#[derive(Deserialize, PluginConfig, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// project URL (env SUPABASE_URL)
    ///
    /// `https://<ref>.supabase.co`.
    #[config(
        url,
        env = "SUPABASE_URL",
        example = "https://abcdefghijklmnop.supabase.co"
    )]
    pub url: Option<String>,
    /// anon key, sent as `apikey` (env SUPABASE_ANON_KEY)
    ///
    /// The anon (publishable) key.
    #[config(
        secret,
        env = "SUPABASE_ANON_KEY",
        example = "sb_publishable_0123456789abcdefghij"
    )]
    pub anon_key: Option<String>,
    /// optional admin check: {table, id_column, flag_column}
    ///
    /// Without it any user Supabase vouches for is allowed.
    pub admin: Option<AdminCheck>,
}

/// Where the admin flag lives.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct AdminCheck {
    /// Table (default `users`).
    #[serde(default = "default_table")]
    pub table: String,
    /// Column holding the user id (default `id`).
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// Boolean column (default `isAdmin`).
    #[serde(default = "default_flag_column")]
    pub flag_column: String,
}

fn default_table() -> String {
    "users".into()
}
fn default_id_column() -> String {
    "id".into()
}
fn default_flag_column() -> String {
    "isAdmin".into()
}

fn identifier(what: &str, s: &str) -> Result<(), PluginError> {
    if !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(PluginError::config(format!(
            "admin.{what}: letters, digits and `_` only"
        )))
    }
}

/// A configured instance.
pub struct Supabase {
    host: Host,
    url: String,
    anon_key: String,
    admin: Option<AdminCheck>,
}

impl AuthProvider for Supabase {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        // Not a bearer token at all: no need to ask.
        if token.is_empty()
            || token.len() > 8192
            || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Ok(None);
        }
        let bearer = format!("Bearer {token}");
        let resp = self
            .host
            .get(
                &format!("{}/auth/v1/user", self.url),
                &[
                    ("apikey", self.anon_key.as_str()),
                    ("authorization", bearer.as_str()),
                    ("accept", "application/json"),
                ],
            )
            .await?;
        match resp.status {
            200 => {}
            // GoTrue: 401 no bearer, 403 (401 before 2024) bad or expired JWT, unknown user or
            // session, 400 a `sub` that is not a UUID or a wrong audience. All the token's fault.
            400 | 401 | 403 | 404 => return Ok(None),
            s => {
                return Err(PluginError::unavailable(format!(
                    "supabase auth answered {s}"
                )))
            }
        }
        let mut claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&resp.body).map_err(|_| {
                PluginError::unavailable(
                    "supabase auth answered 200 with a body that is not a user",
                )
            })?;
        match claims.get("id") {
            Some(serde_json::Value::String(id)) if !id.is_empty() => {
                let id = id.clone();
                // The host caches authorization answers per `sub`.
                claims.insert("sub".into(), id.into());
                Ok(Some(User::from_claims(claims)))
            }
            _ => Err(PluginError::unavailable(
                "supabase auth answered 200 with a user without an id",
            )),
        }
    }

    async fn authorize(&self, user: User, _request: Request) -> Result<bool, PluginError> {
        let Some(id) = user.subject() else {
            return Ok(false);
        };
        let Some(admin) = &self.admin else {
            return Ok(true);
        };
        let url = format!(
            "{}/rest/v1/{}?select={}&{}=eq.{}",
            self.url,
            admin.table,
            admin.flag_column,
            admin.id_column,
            query_value(&id)
        );
        let bearer = format!("Bearer {}", self.anon_key);
        let resp = self
            .host
            .get(
                &url,
                &[
                    ("apikey", self.anon_key.as_str()),
                    ("authorization", bearer.as_str()),
                    ("accept", "application/vnd.pgrst.object+json"),
                ],
            )
            .await?;
        match resp.status {
            200 => {
                let row: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&resp.body).map_err(|_| {
                        PluginError::unavailable(
                            "postgrest answered 200 with a body that is not a row",
                        )
                    })?;
                Ok(row.get(&admin.flag_column) == Some(&serde_json::Value::Bool(true)))
            }
            // PGRST116: no row for this user — not an admin.
            406 => Ok(false),
            s => Err(PluginError::unavailable(format!("postgrest answered {s}"))),
        }
    }

    fn issuers(&self) -> Vec<String> {
        vec![format!("{}/auth/v1", self.url)]
    }
}

/// The plugin.
pub struct SupabasePlugin;

impl Plugin for SupabasePlugin {
    type Provider = Supabase;
    type Config = Config;
    const NAME: &'static str = "supabase";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Supabase Auth access tokens, with an optional admin flag read through PostgREST";
    // The answer depends on the subject alone (a lookup by `sub`): the host may cache it.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        if let Some(url) = config.url.as_deref().filter(|u| !u.is_empty()) {
            check_url(url)?;
        }
        if let Some(a) = &config.admin {
            identifier("table", &a.table)?;
            identifier("id_column", &a.id_column)?;
            identifier("flag_column", &a.flag_column)?;
        }
        Ok(())
    }

    fn build(config: Config, host: Host) -> Result<Supabase, PluginError> {
        // SUPABASE_URL and SUPABASE_ANON_KEY are filled in by the SDK when the keys are absent.
        let given = |v: Option<String>| v.filter(|s| !s.is_empty());
        let (Some(url), Some(anon_key)) = (given(config.url), given(config.anon_key)) else {
            return Err(PluginError::config(MISSING));
        };
        check_url(&url)?;
        Ok(Supabase {
            host,
            url: url.trim_end_matches('/').to_string(),
            anon_key,
            admin: config.admin,
        })
    }
}

fn check_url(url: &str) -> Result<(), PluginError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(['?', '#', ' ', '@']) => Ok(()),
        _ => Err(PluginError::config(
            "url: must be the project URL, https://<ref>.supabase.co",
        )),
    }
}

export_provider!(SupabasePlugin);
