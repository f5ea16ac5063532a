//! The `oidc` provider: bearer JWTs from any OpenID Connect provider (Okta, Keycloak, Entra ID,
//! Google, Auth0, ...), with the keys found through discovery.
//!
//! `{issuer}/.well-known/openid-configuration` is read on first use (a provider is built
//! synchronously, so discovery cannot run at load) and kept for the life of the instance; a reload
//! builds a new instance and so discovers again. The document's `issuer` must be identical to the
//! configured one (OpenID Connect Discovery 1.0 §4.3). Its `jwks_uri` goes to the host's key cache
//! (TTL from `Cache-Control`, one shared refetch on an unknown `kid`, last good keys kept while the
//! provider is down). Algorithms are discovery's `id_token_signing_alg_values_supported`
//! intersected with the configured list and with the asymmetric algorithms: `none` and HMAC are
//! never accepted.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use futures_util::lock::Mutex as AsyncMutex;
use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, JwtVerifierSpec, OneOrMany, Plugin, PluginConfig,
    PluginError, Request, User, Verifier,
};
use serde::Deserialize;
use serde_json::Value;

/// The error when required options are missing; the names of the missing ones follow.
pub const MISSING_OPTIONS: &str = "OIDC issuer and audience are required";

/// Algorithms an OIDC key set may be used with (asymmetric only).
pub const ASYMMETRIC: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

/// The instance's `config:` mapping.
#[derive(Deserialize, PluginConfig, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// issuer URL, exactly as in `iss` (env OIDC_ISSUER)
    ///
    /// Discovery is read from `{issuer}/.well-known/openid-configuration`, so it is a URL the
    /// host calls. The seed's error `OIDC issuer and audience are required` when it is missing
    /// from both the config and the environment.
    #[config(url, env = "OIDC_ISSUER", example = "https://idp.example.com")]
    pub issuer: Option<String>,
    /// accepted `aud` value(s) (env OIDC_AUDIENCE, comma-separated)
    ///
    /// A string or a list. `OIDC_AUDIENCE` is split on commas, a configured string is not.
    #[config(env = "OIDC_AUDIENCE", split, example = r#""api://default""#)]
    pub audience: Option<OneOrMany>,
    /// allowed algorithms, intersected with discovery's (never none/HS*)
    ///
    /// Default: discovery's list.
    pub algorithms: Vec<String>,
    /// claims that must be present
    pub required_claims: Vec<String>,
    /// claim values that must match (equal, or contained in an array claim)
    pub claims: BTreeMap<String, Value>,
    /// accepted header `typ` values
    ///
    /// For example `at+jwt`; empty = not checked.
    pub typ: Vec<String>,
    /// clock leeway in seconds (default 30)
    pub leeway_secs: Option<u64>,
    /// after a failed discovery, seconds before asking again (default 5)
    ///
    /// During that time requests get that failure again instead of asking a provider that is
    /// down once more; 0 asks every time.
    pub discovery_retry_secs: Option<u64>,
}

/// A configured instance.
pub struct OidcProvider {
    host: Host,
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<String>,
    required_claims: Vec<String>,
    claims: BTreeMap<String, Value>,
    typ: Vec<String>,
    leeway_secs: Option<u64>,
    discovery_retry_ms: u64,
    verifier: AsyncMutex<Option<Verifier>>,
    attempts: AtomicU64,
    /// The last failed discovery: its attempt number, when it failed (ms) and why.
    last_error: std::sync::Mutex<Option<(u64, u64, PluginError)>>,
}

/// `{issuer minus one trailing '/'}/.well-known/openid-configuration`.
pub fn discovery_url(issuer: &str) -> String {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}/.well-known/openid-configuration")
}

/// The algorithms to pin: discovery's list (RS256 when it has none) ∩ configured (when set) ∩
/// asymmetric.
pub fn pick_algorithms(discovered: Option<&[Value]>, configured: &[String]) -> Vec<String> {
    let offered: Vec<&str> = match discovered {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => vec!["RS256"],
    };
    ASYMMETRIC
        .iter()
        .filter(|a| offered.contains(a))
        .filter(|a| configured.is_empty() || configured.iter().any(|c| c == *a))
        .map(|a| a.to_string())
        .collect()
}

/// Whether a claim value satisfies an expected one.
pub fn claim_matches(actual: Option<&Value>, expected: &Value) -> bool {
    match actual {
        Some(v) if v == expected => true,
        Some(Value::Array(items)) => items.iter().any(|i| i == expected),
        _ => false,
    }
}

impl OidcProvider {
    async fn discover(&self) -> Result<Verifier, PluginError> {
        let url = discovery_url(&self.issuer);
        let resp = self
            .host
            .get(&url, &[("accept", "application/json")])
            .await?;
        if resp.status != 200 {
            return Err(PluginError::unavailable(format!(
                "oidc discovery answered http {}",
                resp.status
            )));
        }
        let doc: Value = serde_json::from_slice(&resp.body)
            .map_err(|_| PluginError::unavailable("oidc discovery document is not json"))?;
        let issuer = doc.get("issuer").and_then(Value::as_str);
        if issuer != Some(self.issuer.as_str()) {
            return Err(PluginError::unavailable(
                "oidc discovery document names another issuer than the configured one",
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| PluginError::unavailable("oidc discovery document has no jwks_uri"))?;
        let algorithms = pick_algorithms(
            doc.get("id_token_signing_alg_values_supported")
                .and_then(Value::as_array)
                .map(Vec::as_slice),
            &self.algorithms,
        );
        if algorithms.is_empty() {
            return Err(PluginError::unavailable(
                "no signing algorithm is both offered by the provider and allowed here",
            ));
        }
        let spec = JwtVerifierSpec {
            algorithms,
            jwks_url: Some(jwks_uri.to_string()),
            issuer: vec![self.issuer.clone()],
            audience: self.audience.clone(),
            leeway_secs: self.leeway_secs,
            required_claims: self.required_claims.clone(),
            typ: self.typ.clone(),
            require_exp: Some(true),
            ..JwtVerifierSpec::default()
        };
        // A jwks_uri the host refuses (plain http without `dangerous`) is a provider problem
        // found at run time: the check cannot be made.
        self.host
            .jwt_verifier(&spec)
            .map_err(|e| PluginError::unavailable(format!("oidc jwks_uri: {e}")))
    }

    /// The verifier, discovering on first use. Concurrent first callers share one discovery; a
    /// caller that waited while it failed gets that failure rather than trying again at once.
    async fn verifier(&self) -> Result<Verifier, PluginError> {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut slot = self.verifier.lock().await;
        if let Some(v) = &*slot {
            return Ok(v.clone());
        }
        {
            let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((attempt, at, err)) = &*last {
                // A failure that happened while this caller waited, or a recent one: do not
                // ask a provider that is down again for every request.
                let recent =
                    self.host.now_unix_millis().saturating_sub(*at) < self.discovery_retry_ms;
                if *attempt > seen || recent {
                    return Err(err.clone());
                }
            }
        }
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match self.discover().await {
            Ok(v) => {
                *slot = Some(v.clone());
                Ok(v)
            }
            Err(e) => {
                self.host.warn(e.message());
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((attempt, self.host.now_unix_millis(), e.clone()));
                Err(e)
            }
        }
    }
}

impl AuthProvider for OidcProvider {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        let verifier = self.verifier().await?;
        let user = verifier.verify(&token).await?;
        if !self.claims.is_empty() {
            let claims = user.claims()?;
            for (name, expected) in &self.claims {
                if !claim_matches(claims.get(name), expected) {
                    return Err(PluginError::invalid_token(format!(
                        "claim `{name}` does not have the required value"
                    )));
                }
            }
        }
        Ok(Some(user))
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

    /// Discovers before the first request needs it (the discovery document, and through the
    /// verifier the key set), so that the first caller after a start or a reload does not wait
    /// for two round trips. A failure here is retried by the first request, as before.
    async fn warm_up(&self) -> Result<(), PluginError> {
        self.verifier().await.map(|_| ())
    }
}

/// The plugin.
pub struct OidcPlugin;

impl Plugin for OidcPlugin {
    type Provider = OidcProvider;
    type Config = Config;
    const NAME: &'static str = "oidc";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "any OpenID Connect provider: issuer discovery, JWKS, audience and claim checks";
    /// Its `authorize` only asks whether the user has a `sub`, so an answer per subject is exact.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        for a in &config.algorithms {
            if !ASYMMETRIC.contains(&a.as_str()) {
                return Err(PluginError::config(format!(
                    "algorithms: `{a}` is not allowed; use asymmetric algorithms ({})",
                    ASYMMETRIC.join(", ")
                )));
            }
        }
        if let Some(issuer) = &config.issuer {
            if !issuer.is_empty()
                && !issuer.starts_with("https://")
                && !issuer.starts_with("http://")
            {
                return Err(PluginError::config("issuer: must be an https:// URL"));
            }
        }
        Ok(())
    }

    fn build(config: Config, host: Host) -> Result<OidcProvider, PluginError> {
        // `OIDC_ISSUER` is filled in by the SDK when `issuer` is absent.
        let issuer = config.issuer.filter(|s| !s.is_empty());
        let audience: Vec<String> = config
            .audience
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let mut missing = Vec::new();
        if issuer.is_none() {
            missing.push("`issuer` (or OIDC_ISSUER)");
        }
        if audience.is_empty() {
            missing.push("`audience` (or OIDC_AUDIENCE)");
        }
        let Some(issuer) = issuer.filter(|_| missing.is_empty()) else {
            return Err(PluginError::config(format!(
                "{MISSING_OPTIONS}: set {}",
                missing.join(" and ")
            )));
        };
        if !issuer.starts_with("https://") && !issuer.starts_with("http://") {
            return Err(PluginError::config("issuer: must be an https:// URL"));
        }
        Ok(OidcProvider {
            host,
            issuer,
            audience,
            algorithms: config.algorithms,
            // Every user has a subject: rules, logs and caches key on it.
            required_claims: {
                let mut c = config.required_claims;
                if !c.iter().any(|k| k == "sub") {
                    c.push("sub".to_string());
                }
                c
            },
            claims: config.claims,
            typ: config.typ,
            leeway_secs: config.leeway_secs,
            discovery_retry_ms: config.discovery_retry_secs.unwrap_or(5).min(300) * 1000,
            verifier: AsyncMutex::new(None),
            attempts: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
        })
    }
}

export_provider!(OidcPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discovery_url_drops_one_trailing_slash() {
        assert_eq!(
            discovery_url("https://t.auth0.com/"),
            "https://t.auth0.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://kc.example/realms/main"),
            "https://kc.example/realms/main/.well-known/openid-configuration"
        );
    }

    #[test]
    fn algorithms_never_include_none_or_hmac() {
        let offered = [
            json!("HS256"),
            json!("RS256"),
            json!("none"),
            json!("PS256"),
        ];
        assert_eq!(pick_algorithms(Some(&offered), &[]), vec!["RS256", "PS256"]);
        assert_eq!(
            pick_algorithms(Some(&offered), &["PS256".into(), "HS256".into()]),
            vec!["PS256"]
        );
        assert_eq!(pick_algorithms(None, &[]), vec!["RS256"]);
        assert!(pick_algorithms(Some(&[json!("HS256")]), &[]).is_empty());
    }

    #[test]
    fn claim_checks_match_values_and_array_members() {
        assert!(claim_matches(Some(&json!(true)), &json!(true)));
        assert!(claim_matches(Some(&json!(["a", "b"])), &json!("b")));
        assert!(!claim_matches(Some(&json!("a")), &json!("b")));
        assert!(!claim_matches(None, &json!("b")));
    }
}
