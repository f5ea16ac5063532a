//! The decision: classify the canonical path, find the token, authenticate with the right
//! provider, authorize (provider hook or its YAML override, then the route policy), and say why.

use std::{
    borrow::Cow,
    sync::{Arc, LazyLock, OnceLock},
    time::{Duration, Instant},
};

use poem::http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_plugin_api::{ErrorKind, PluginError};

use super::{
    authn_cache::Accepted,
    authz_cache::AuthzMemo,
    instance::{Policy, ProviderInstance, RetiredInstance},
    token::{self, TokenError},
};
use crate::{
    config::AuthConfig,
    jose,
    matching::condition::{user_value, CondInput},
    matching::{CaseMode, PatternSet, PatternSpec},
    observe::telemetry::{
        self,
        PluginCall::{Authenticate, Authorize},
    },
    plugin::{PluginRequest, UserJson},
};

/// Built-in routes that always need a user, whatever `auth.public` says.
static BUILTIN_PROTECTED: LazyLock<PatternSet> = LazyLock::new(|| {
    let specs = [
        PatternSpec::path("/api/auth/*"),
        PatternSpec::path("/api/admin/*"),
    ];
    PatternSet::compile(&specs, CaseMode::Insensitive)
        .unwrap_or_else(|_| unreachable!("static patterns compile"))
});

/// Whether `path` (canonical) is one of the built-in routes that always need a user
/// (`/api/auth/*`, `/api/admin/*`, in any case): no `routes:` entry ever serves it.
pub fn is_builtin_route(method: &str, path: &str) -> bool {
    BUILTIN_PROTECTED.is_match(method, path)
}

/// An authenticated, authorized caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The provider instance that vouched for the user.
    pub provider: String,
    /// The user's claims (a JSON object).
    pub claims: serde_json::Value,
    /// `claims.sub` when it is a non-empty string, read once: the authorization cache is keyed
    /// by it on every request.
    subject: Option<String>,
    /// What the authorization cache keys this user by: the subject, and the organization the
    /// token is scoped to when it names one (see [`AuthUser::authorization_key`]).
    authz_key: Option<String>,
    /// `claims` as JSON text, written once when first needed (request middleware are told the
    /// user on every request, and a user accepted before is the same object).
    json: std::sync::OnceLock<String>,
    /// The identity headers sent upstream for this user, rendered once for the gateway mapping
    /// they were rendered under (see `gateway::proxy::identity_headers`).
    pub(crate) identity: OnceLock<IdentityHeaders>,
}

/// A user's identity headers, as rendered under one gateway mapping.
#[derive(Debug, Clone)]
pub(crate) struct IdentityHeaders {
    /// `gateway.identity_headers` when they were rendered.
    pub mapping: Vec<(String, HeaderName)>,
    /// `gateway.provider_header` when they were rendered.
    pub provider_header: Option<HeaderName>,
    /// The headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl AuthUser {
    /// The user `provider` vouched for, with `claims`.
    pub fn new(provider: String, claims: serde_json::Value) -> Self {
        let subject = match claims.get("sub") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let org = claims
            .get("org_id")
            .or_else(|| claims.get("o").and_then(|o| o.get("id")))
            .and_then(serde_json::Value::as_str);
        // The subject's length first: no (subject, organization) pair spells another's key.
        let authz_key = subject.as_ref().map(|s| match org {
            Some(o) => format!("{}:{s}:{o}", s.len()),
            None => format!("{}:{s}", s.len()),
        });
        AuthUser {
            provider,
            claims,
            subject,
            authz_key,
            json: std::sync::OnceLock::new(),
            identity: OnceLock::new(),
        }
    }

    /// The claims as JSON text (written once).
    pub fn claims_json(&self) -> &str {
        self.json.get_or_init(|| self.claims.to_string())
    }

    /// `claims.sub`, when it is a non-empty string.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The key of this user's cached authorization answers: the subject, with the organization
    /// the token names (`org_id`, or Clerk's `o.id`) when it names one. Providers that authorize
    /// by organization membership answer per organization, so an answer for one organization is
    /// never reused for a token scoped to another.
    pub fn authorization_key(&self) -> Option<&str> {
        self.authz_key.as_deref()
    }

    /// The `iss` claim, when it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(serde_json::Value::as_str)
    }
}

/// Why a request is refused. Each maps to one status and body (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No token on a path that needs one: 401 "Authentication required".
    NoToken,
    /// Bad, expired or forged token: 401 "Invalid or expired token".
    InvalidToken(String),
    /// Authenticated but not allowed: 403 "Access denied".
    Forbidden(String),
    /// A check could not be made (identity provider down, plugin timed out, no provider): 503.
    Unavailable(String),
    /// A plugin failed or panicked: 500.
    Internal(String),
}

/// The outcome, with what led to it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Allowed (with the user when one was needed) or denied.
    pub result: Result<Option<Arc<AuthUser>>, Denial>,
    /// Why, for logs and the explain endpoint (never a secret).
    pub trace: Trace,
}

/// Why a decision was made.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Trace {
    /// Whether the path needs a user.
    pub requires_auth: bool,
    /// Index of the matching `auth.protected` pattern, if any.
    pub protected_pattern: Option<usize>,
    /// Index of the matching `auth.public` pattern, if any.
    pub public_pattern: Option<usize>,
    /// A built-in route that always needs a user.
    pub builtin_route: bool,
    /// Index of the `routes:` entry that serves the path, if any; its `requires_auth` decides
    /// whether a user is needed, and its `providers` who may vouch.
    pub route: Option<usize>,
    /// The provider instance used.
    pub provider: Option<String>,
    /// Index of the rule that decided, if any.
    pub rule: Option<usize>,
    /// How it ended, in words.
    pub reason: Cow<'static, str>,
}

/// The parts of a request a decision needs.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Canonical path.
    pub path: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// The request's host as sent (`Host`, or the authority of an HTTP/2 request; for forward
    /// auth, the host the proxy named). Read only by conditions.
    pub host: Option<&'a str>,
    /// When the decision is made: the time kept answers are judged at. Read again after any
    /// wait (a plugin call may take seconds), so that an answer is never judged at a time
    /// already past.
    pub now: Instant,
}

/// Decides a request under snapshot `rt`.
pub async fn decide(rt: &Policy<'_>, req: &RequestParts<'_>) -> Decision {
    let auth = &rt.config.auth;
    let mut trace = Trace {
        builtin_route: BUILTIN_PROTECTED.is_match(req.method, req.path),
        protected_pattern: auth.protected.first_match(req.method, req.path),
        public_pattern: auth.public.first_match(req.method, req.path),
        ..Trace::default()
    };
    // No exemption for a CORS preflight here: the gate answers one itself, and only where CORS
    // is configured and the request has an `Origin`. Anything else called OPTIONS is judged
    // like any request (forward auth would otherwise let it through to a protected upstream).
    if !trace.builtin_route {
        trace.route = rt.config.routes.find(req.method, req.path);
    }
    let route_requires = trace
        .route
        .and_then(|i| rt.config.routes.list.get(i))
        .map(|r| r.requires_auth);
    trace.requires_auth = trace.builtin_route
        || route_requires
            .unwrap_or(trace.protected_pattern.is_some() && trace.public_pattern.is_none());
    if !trace.requires_auth {
        trace.reason = if route_requires.is_some() {
            "route does not require auth"
        } else if trace.public_pattern.is_some() {
            "public path"
        } else {
            "path not protected"
        }
        .into();
        return Decision {
            result: Ok(None),
            trace,
        };
    }
    let result = authenticate_and_authorize(rt, req, &mut trace).await;
    if let Err(d) = &result {
        trace.reason = match d {
            Denial::NoToken => "no token".into(),
            Denial::InvalidToken(r)
            | Denial::Forbidden(r)
            | Denial::Unavailable(r)
            | Denial::Internal(r) => r.clone().into(),
        };
    }
    Decision {
        result: result.map(Some),
        trace,
    }
}

async fn authenticate_and_authorize(
    rt: &Policy<'_>,
    req: &RequestParts<'_>,
    trace: &mut Trace,
) -> Result<Arc<AuthUser>, Denial> {
    let auth = &rt.config.auth;
    // The alphabet is checked below, after the first candidate's cache: a token found there is
    // byte for byte one that passed every check, this one included.
    let raw = match token::extract_unchecked(&auth.token, req.headers, req.query) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(Denial::NoToken),
        Err(TokenError::Malformed) => return Err(malformed()),
    };
    if raw.len() > rt.config.server.max_token_bytes {
        return Err(if token::well_formed(&raw) {
            Denial::InvalidToken("token is larger than the configured limit".into())
        } else {
            malformed()
        });
    }
    let retired = retired_for(rt, &raw);
    let mut candidates = candidates(rt, &raw);
    // A route may name the only instances that can vouch for its callers.
    let mut excluded_by_route = false;
    if let Some(allowed) = trace
        .route
        .and_then(|i| rt.config.routes.list.get(i))
        .and_then(|r| r.providers.as_ref())
    {
        let before = candidates.len();
        candidates.retain(|p| allowed.contains(&p.name));
        excluded_by_route = before > 0 && candidates.is_empty();
    }
    let cached = |p: &ProviderInstance, now: Instant| {
        p.authn_cache
            .as_ref()
            .and_then(|c| c.get(&raw, &p.key_sets, now))
    };
    // Made on first need: a token answered from an instance's cache never builds it.
    let info = OnceLock::new();
    // The first candidate is the one the loop below would look at first.
    if let Some(p) = candidates.first() {
        if let Some(hit) = cached(p, req.now) {
            return kept_user(rt, p, &hit, &info, req, trace).await;
        }
    }
    let Some(token) = token::checked(raw.clone()) else {
        return Err(malformed());
    };
    if excluded_by_route {
        return Err(Denial::InvalidToken(
            "this route does not accept tokens from that provider".into(),
        ));
    }
    if candidates.is_empty() {
        if let Some(r) = retired {
            trace.provider = Some(r.name.clone());
            return Err(Denial::Unavailable(r.reason.clone()));
        }
        return Err(if rt.providers.is_empty() {
            // Nothing can check any token: fail closed, and say it is our side.
            Denial::Unavailable("no identity provider is configured".into())
        } else {
            // Every provider names its issuers and none is this token's: the token's fault.
            Denial::InvalidToken("no provider accepts this token's issuer".into())
        });
    }
    let timeout = rt.config.server.plugin_timeout;
    let mut unavailable = None;
    let mut last_reason = None;
    for (i, p) in candidates.into_iter().enumerate() {
        // The first one's cache was looked at above. For the others, the previous candidate's
        // plugin call took time: the clock is read again.
        if i > 0 {
            let later = RequestParts {
                now: Instant::now(),
                ..*req
            };
            if let Some(hit) = cached(p, later.now) {
                return kept_user(rt, p, &hit, &info, &later, trace).await;
            }
        }
        // The key sets as they are before the plugin is asked: a set refreshed meanwhile makes
        // what is kept below unusable rather than wrongly current.
        let stamp = p.authn_cache.as_ref().and_then(|_| p.key_sets.stamp());
        let plugin = &p.plugin.manifest.name;
        let request = info.get_or_init(|| request_info(rt, req));
        match telemetry::traced(
            Authenticate,
            &p.name,
            plugin,
            authenticate(p, &token, request, timeout),
        )
        .await
        {
            Ok(Some(user_json)) => {
                return accepted(rt, p, &token, user_json, stamp, &info, req, trace).await;
            }
            // Each reason is kept with the instance it names: the trace says which one it was.
            Ok(_) => {
                last_reason = Some((format!("provider {} rejected the token", p.name), p));
            }
            Err(e) if e.kind() == ErrorKind::INVALID_TOKEN => {
                last_reason = Some((format!("provider {}: {}", p.name, e.message()), p));
            }
            // A provider that cannot reach its identity provider, or whose settings make the
            // check impossible (a URL the host refuses): the check could not be made, 503.
            Err(e) if e.kind() == ErrorKind::UNAVAILABLE || e.kind() == ErrorKind::CONFIG => {
                unavailable = Some((format!("provider {}: {}", p.name, e.message()), p));
            }
            Err(e) => {
                trace.provider = Some(p.name.clone());
                return Err(Denial::Internal(format!(
                    "provider {}: {}",
                    p.name,
                    e.message()
                )));
            }
        }
    }
    Err(refusal(unavailable, retired, last_reason, trace))
}

/// Why no candidate vouched for the token: a provider that could not be asked (503) outranks a
/// retired instance that might have (503), which outranks the last provider's reason (401).
fn refusal(
    unavailable: Option<(String, &Arc<ProviderInstance>)>,
    retired: Option<&RetiredInstance>,
    last_reason: Option<(String, &Arc<ProviderInstance>)>,
    trace: &mut Trace,
) -> Denial {
    match (unavailable, retired, last_reason) {
        (Some((r, p)), _, _) => {
            trace.provider = Some(p.name.clone());
            Denial::Unavailable(r)
        }
        // The instance that could have vouched for the token is retired: the check could not be
        // made, which is our side's fault.
        (None, Some(r), _) => {
            trace.provider = Some(r.name.clone());
            Denial::Unavailable(r.reason.clone())
        }
        (None, None, Some((r, p))) => {
            trace.provider = Some(p.name.clone());
            Denial::InvalidToken(r)
        }
        (None, None, None) => Denial::InvalidToken("token rejected".into()),
    }
}

/// Instance `p` accepted the token (`user_json` is what it vouched for): the user, once its
/// issuer is one `p` declared and it is authorized for the request; kept for the token's
/// lifetime when the instance's answers may be reused.
#[allow(clippy::too_many_arguments)]
async fn accepted(
    rt: &Policy<'_>,
    p: &ProviderInstance,
    token: &str,
    user_json: UserJson,
    stamp: Option<crate::keys::KeyStamp>,
    info: &OnceLock<PluginRequest>,
    req: &RequestParts<'_>,
    trace: &mut Trace,
) -> Result<Arc<AuthUser>, Denial> {
    trace.provider = Some(p.name.clone());
    let claims: serde_json::Value = match serde_json::from_str(user_json.as_str()) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            return Err(Denial::Internal(format!(
                "provider {} returned a user that is not a JSON object",
                p.name
            )))
        }
    };
    let user = Arc::new(AuthUser::new(p.name.clone(), claims));
    // A plugin vouches only for the issuers it declared (tokens are routed to it by
    // them): a user of another issuer is refused, and not kept.
    if !p.issuers.is_empty() {
        match user.claims.get("iss") {
            None => {}
            Some(serde_json::Value::String(iss)) if p.issuers.contains(iss) => {}
            Some(_) => {
                return Err(Denial::InvalidToken(format!(
                    "provider {} vouched for an issuer it does not declare",
                    p.name
                )))
            }
        }
    }
    if let (Some(cache), Some(stamp)) = (&p.authn_cache, stamp) {
        let token_exp = jose::peek_exp(token, rt.config.server.max_token_bytes);
        cache.insert(token, token_exp, user.clone(), user_json.clone(), stamp);
    }
    // The provider's own text goes back to its `authorize`: no re-serialising.
    // The plugin call took time: kept authorization answers are judged at the time
    // it ended.
    let later = RequestParts {
        now: Instant::now(),
        ..*req
    };
    authorize(rt, p, &user, &user_json, None, info, &later, trace).await?;
    Ok(user)
}

/// The user instance `p` had accepted for this token, once authorized for this request.
async fn kept_user(
    rt: &Policy<'_>,
    p: &ProviderInstance,
    hit: &Accepted,
    info: &OnceLock<PluginRequest>,
    req: &RequestParts<'_>,
    trace: &mut Trace,
) -> Result<Arc<AuthUser>, Denial> {
    trace.provider = Some(p.name.clone());
    let memo = Some(&hit.authorized);
    authorize(rt, p, &hit.user, &hit.user_json, memo, info, req, trace).await?;
    Ok(hit.user.clone())
}

fn malformed() -> Denial {
    Denial::InvalidToken("malformed authorization header".into())
}

/// Asks instance `p` about `token`.
async fn authenticate(
    p: &ProviderInstance,
    token: &str,
    request: &PluginRequest,
    timeout: Duration,
) -> Result<Option<UserJson>, PluginError> {
    p.provider.authenticate(token, request, timeout).await
}

/// The `iss` of a token as the request brought it (unverified, and `None` when it is not a JWT).
fn peek_issuer(rt: &Policy<'_>, token: &[u8]) -> Option<String> {
    let token = std::str::from_utf8(token).ok()?;
    jose::peek_issuer(token, rt.config.server.max_token_bytes)
}

/// A retired instance that could have been the one for this token: one declaring the token's
/// issuer, else one declaring no issuer.
fn retired_for<'a>(rt: &'a Policy<'a>, token: &[u8]) -> Option<&'a RetiredInstance> {
    if rt.retired.is_empty() {
        return None;
    }
    let iss = peek_issuer(rt, token);
    rt.retired
        .iter()
        .find(|r| iss.as_ref().is_some_and(|i| r.issuers.contains(i)))
        .or_else(|| {
            let claimed = iss
                .as_ref()
                .is_some_and(|i| rt.providers.iter().any(|p| p.issuers.contains(i)));
            if claimed {
                None
            } else {
                rt.retired.iter().find(|r| r.issuers.is_empty())
            }
        })
}

/// Providers to try for this token: the one whose declared issuer matches the token's `iss`; else
/// those that declare no issuer, in config order. With one provider, that provider.
fn candidates<'a>(
    rt: &'a Policy<'a>,
    token: &[u8],
) -> smallvec::SmallVec<[&'a Arc<ProviderInstance>; 4]> {
    if rt.providers.len() == 1 && rt.retired.is_empty() {
        return rt.providers.iter().collect();
    }
    if let Some(iss) = peek_issuer(rt, token) {
        let by_issuer: smallvec::SmallVec<_> = rt
            .providers
            .iter()
            .filter(|p| p.issuers.contains(&iss))
            .collect();
        if !by_issuer.is_empty() {
            return by_issuer;
        }
    }
    rt.providers
        .iter()
        .filter(|p| p.issuers.is_empty())
        .collect()
}

/// `memo`: the token's copy of the instance's cached answer, on a request whose token was
/// accepted before.
#[allow(clippy::too_many_arguments)]
async fn authorize(
    rt: &Policy<'_>,
    p: &ProviderInstance,
    user: &AuthUser,
    user_json: &UserJson,
    memo: Option<&AuthzMemo>,
    info: &OnceLock<PluginRequest>,
    req: &RequestParts<'_>,
    trace: &mut Trace,
) -> Result<(), Denial> {
    let auth = &rt.config.auth;
    // The claims as a CEL value, made once, and only if a condition is evaluated.
    let cel_user = OnceLock::new();
    let input = || CondInput {
        method: req.method,
        path: req.path,
        user: cel_user.get_or_init(|| user_value(&user.claims)),
        provider: &user.provider,
        iss: user.issuer(),
        host: req.host,
    };

    // 1. The provider's own check, or its YAML override.
    let allowed = match &p.authorize {
        Some(cond) => cond.eval(&input()).unwrap_or(false),
        None => {
            // The plugin is called only when the answer is not cached (the call happens when this
            // future is first polled).
            let check = || {
                telemetry::traced(Authorize, &p.name, &p.plugin.manifest.name, async {
                    let info = info.get_or_init(|| request_info(rt, req));
                    p.provider
                        .authorize(user_json, info, rt.config.server.plugin_timeout)
                        .await
                })
            };
            // Cached per (instance, subject and organization); a user without a `sub` is always
            // asked about. A token accepted before carries the answer the cache gave for it.
            match (&p.authz_cache, user.authorization_key()) {
                (Some(cache), Some(sub)) => match memo.and_then(|m| m.get(req.now, cache.ttl())) {
                    Some(answer) => Ok(answer),
                    None => {
                        let wait = rt.config.server.plugin_timeout;
                        cache
                            .get_or_check_kept(sub, check(), wait, req.now, memo)
                            .await
                    }
                },
                _ => check().await,
            }
        }
        .map_err(|e| match e.kind() {
            ErrorKind::UNAVAILABLE | ErrorKind::CONFIG => {
                Denial::Unavailable(format!("provider {}: {}", p.name, e.message()))
            }
            ErrorKind::INVALID_TOKEN => {
                Denial::Forbidden(format!("provider {}: {}", p.name, e.message()))
            }
            _ => Denial::Internal(format!("provider {}: {}", p.name, e.message())),
        })?,
    };
    if !allowed {
        return Err(Denial::Forbidden(format!(
            "provider {} did not authorize the user",
            p.name
        )));
    }

    // 2. The route policy.
    let (result, rule) = route_policy(auth, req, user, &cel_user);
    trace.rule = rule;
    result
}

/// The built-in admin API: open only to users an `auth.rules` entry allows.
static ADMIN_API: LazyLock<PatternSet> = LazyLock::new(|| {
    PatternSet::compile(&[PatternSpec::path("/api/admin/*")], CaseMode::Insensitive)
        .unwrap_or_else(|_| unreachable!("static patterns compile"))
});

/// The route policy for an authenticated `user`: the first rule of `auth.rules` that applies
/// decides, else `auth.authorize`, else allowed when there are no rules. The admin API
/// (`/api/admin/*`) is the exception: only a rule that allows opens it, never the fallbacks.
/// Also returns the index of the rule that decided. `cel_user` holds the claims as a CEL value,
/// made on first need (a path whose rules have no condition never makes it).
pub fn route_policy(
    auth: &AuthConfig,
    req: &RequestParts<'_>,
    user: &AuthUser,
    cel_user: &OnceLock<cel::Value>,
) -> (Result<(), Denial>, Option<usize>) {
    let (method, path) = (req.method, req.path);
    let input = || CondInput {
        method,
        path,
        user: cel_user.get_or_init(|| user_value(&user.claims)),
        provider: &user.provider,
        iss: user.issuer(),
        host: req.host,
    };
    let hits = auth.rule_paths.matches(method, path);
    let mut last = usize::MAX;
    for spec in hits {
        let Some(&i) = auth.rule_of_spec.get(spec) else {
            continue;
        };
        if i == last {
            continue;
        }
        last = i;
        let rule = &auth.rules[i];
        // A rule naming providers is about their users only.
        if rule
            .providers
            .as_ref()
            .is_some_and(|names| !names.contains(&user.provider))
        {
            continue;
        }
        let applies = match &rule.condition {
            None => true,
            // Fail closed: an evaluation error never makes an allow rule apply, and always makes a
            // deny rule apply.
            Some(c) => c.eval(&input()).unwrap_or(!rule.allow),
        };
        if applies {
            let result = if rule.allow {
                Ok(())
            } else {
                Err(Denial::Forbidden(format!("denied by auth.rules[{i}]")))
            };
            return (result, Some(i));
        }
    }
    let result = if ADMIN_API.is_match(method, path) {
        Err(Denial::Forbidden(
            "the admin API is open only to users an auth.rules entry allows".into(),
        ))
    } else if let Some(cond) = &auth.authorize {
        if cond.eval(&input()).unwrap_or(false) {
            Ok(())
        } else {
            Err(Denial::Forbidden("denied by auth.authorize".into()))
        }
    } else if auth.rules.is_empty() {
        Ok(())
    } else {
        Err(Denial::Forbidden("no rule allowed the request".into()))
    };
    (result, None)
}

fn request_info(rt: &Policy<'_>, req: &RequestParts<'_>) -> PluginRequest {
    PluginRequest::new(
        req.method,
        req.path,
        req.headers,
        &rt.config.auth.token.header_name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(claims: serde_json::Value) -> Option<String> {
        AuthUser::new("p".into(), claims)
            .authorization_key()
            .map(str::to_string)
    }

    #[test]
    fn authorization_answers_are_kept_per_subject_and_organization() {
        let plain = key(serde_json::json!({"sub": "amy"}));
        let org_a = key(serde_json::json!({"sub": "amy", "org_id": "org_a"}));
        let org_b = key(serde_json::json!({"sub": "amy", "org_id": "org_b"}));
        let clerk_v2 = key(serde_json::json!({"sub": "amy", "o": {"id": "org_a"}}));
        assert!(plain.is_some());
        assert_ne!(plain, org_a);
        assert_ne!(org_a, org_b);
        assert_eq!(org_a, clerk_v2);
        // No pair of (subject, organization) spells another's key.
        assert_ne!(
            key(serde_json::json!({"sub": "a:b", "org_id": "c"})),
            key(serde_json::json!({"sub": "a", "org_id": "b:c"}))
        );
        assert_ne!(
            key(serde_json::json!({"sub": "amy:org_a"})),
            key(serde_json::json!({"sub": "amy", "org_id": "org_a"}))
        );
        assert_eq!(key(serde_json::json!({"org_id": "org_a"})), None);
    }
}
