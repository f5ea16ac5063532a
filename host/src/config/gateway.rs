//! `gateway:` (identity headers, forward auth) and `routes:` (the seed's `apiRoutes`: paths served
//! by forwarding to an upstream, each with its own `requires_auth`).

use std::time::Duration;

use poem::http::HeaderName;
use serde::Deserialize;
use serde_yaml::Value;

use super::{
    compile::{de_value, duration, methods_upper},
    error::Issues,
    raw::StringOrList,
};
use crate::matching::{CaseMode, PatternSet, PatternSpec};

/// Paths the server answers itself; a configured route never takes them over. (`/api/auth/*` and
/// `/api/admin/*` are built-in protected routes and are excluded by the decision itself.)
pub const RESERVED_PATHS: [&str; 5] = [
    "/health",
    "/openapi.json",
    "/swagger-ui",
    "/metrics",
    "/forward-auth",
];

/// Headers an identity header may not be: the proxy manages them, or they would change how the
/// request is framed or authenticated.
const FORBIDDEN_IDENTITY_HEADERS: [&str; 20] = [
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
    "www-authenticate",
];

/// `gateway:` as written.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
struct RawGateway {
    identity_headers: Option<serde_yaml::Mapping>,
    forward_auth: bool,
}

/// One `routes:` entry as written.
#[derive(Deserialize, Debug, Clone)]
struct RawRoute {
    path: String,
    #[serde(default)]
    methods: Option<StringOrList>,
    #[serde(default)]
    requires_auth: Option<bool>,
    #[serde(default)]
    providers: Option<Vec<String>>,
    upstream: String,
    #[serde(default)]
    forward_authorization: bool,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    connect_timeout: Option<String>,
}

/// `gateway:` compiled.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Claim name → header: sent upstream by routes, returned by forward auth. The same headers
    /// are always removed from what clients send.
    pub identity_headers: Vec<(String, HeaderName)>,
    /// `GET /forward-auth` answers (nginx `auth_request`, Traefik ForwardAuth).
    pub forward_auth: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            identity_headers: vec![("sub".into(), HeaderName::from_static("x-user-id"))],
            forward_auth: false,
        }
    }
}

/// One route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The path pattern as written.
    pub path: String,
    /// Upper-case methods; `None` = every method.
    pub methods: Option<Vec<String>>,
    /// Whether a user is needed (default true, as the seed's `requiresAuth`). Decides alone: it
    /// overrides both `auth.protected` and `auth.public` for the paths the route serves.
    pub requires_auth: bool,
    /// Only these provider instances may vouch for the caller; `None` = any.
    pub providers: Option<Vec<String>>,
    /// Base URL the canonical path is appended to.
    pub upstream: reqwest::Url,
    /// Forward the token header (`auth.token.header`) upstream; default false: stripped.
    pub forward_authorization: bool,
    /// Whole exchange: connect, send, and the complete response body.
    pub timeout: Duration,
    /// Connection establishment.
    pub connect_timeout: Duration,
}

/// `routes:` compiled: the list, one case-sensitive matcher over every route, and one
/// case-insensitive matcher over the routes that need a user. A path that a route needing a user
/// matches in any case is that route's (an upstream may fold case: `/Vault` must not slip past
/// `/vault/*` into a public route); a public route matches its exact spelling only.
#[derive(Debug)]
pub struct RoutesConfig {
    /// The routes, in order: the first that matches serves.
    pub list: Vec<RouteConfig>,
    matcher: PatternSet,
    protected: PatternSet,
    /// Index in `list` of each pattern of `protected`.
    protected_index: Vec<usize>,
}

impl Default for RoutesConfig {
    fn default() -> Self {
        RoutesConfig {
            list: Vec::new(),
            matcher: PatternSet::compile(&[], CaseMode::Sensitive)
                .unwrap_or_else(|_| unreachable!("an empty set compiles")),
            protected: PatternSet::compile(&[], CaseMode::Insensitive)
                .unwrap_or_else(|_| unreachable!("an empty set compiles")),
            protected_index: Vec::new(),
        }
    }
}

impl RoutesConfig {
    /// The first route serving `method` and the canonical `path`; never a reserved path.
    pub fn find(&self, method: &str, path: &str) -> Option<usize> {
        if self.list.is_empty() || is_reserved(path) {
            return None;
        }
        let exact = self.matcher.first_match(method, path);
        let folded = self
            .protected
            .first_match(method, path)
            .and_then(|i| self.protected_index.get(i).copied());
        match (exact, folded) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether the server answers `path` itself (see [`RESERVED_PATHS`]).
pub fn is_reserved(path: &str) -> bool {
    let p = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    RESERVED_PATHS.contains(&p)
}

pub(super) fn compile_gateway(value: Option<Value>, issues: &mut Issues) -> GatewayConfig {
    let raw = match value {
        None | Some(Value::Null) => return GatewayConfig::default(),
        Some(v) => match de_value::<RawGateway>(v, "gateway", issues) {
            Some(r) => r,
            None => return GatewayConfig::default(),
        },
    };
    let identity_headers = match raw.identity_headers {
        None => GatewayConfig::default().identity_headers,
        Some(map) => {
            let mut out: Vec<(String, HeaderName)> = Vec::new();
            for (k, v) in map {
                let (Some(claim), Some(header)) = (k.as_str(), v.as_str()) else {
                    issues.push(
                        "gateway.identity_headers",
                        "each entry is `claim: Header-Name`",
                    );
                    continue;
                };
                let at = format!("gateway.identity_headers.{claim}");
                if claim.is_empty() {
                    issues.push(at, "the claim name is empty");
                    continue;
                }
                match HeaderName::from_bytes(header.as_bytes()) {
                    Ok(h)
                        if FORBIDDEN_IDENTITY_HEADERS.contains(&h.as_str())
                            || h.as_str().starts_with("proxy-") =>
                    {
                        issues.push(
                            at,
                            format!("`{header}` is managed by the proxy; pick another header"),
                        );
                    }
                    Ok(h) if out.iter().any(|(_, o)| *o == h) => {
                        issues.push(at, format!("`{header}` is used by another claim"));
                    }
                    Ok(h) => out.push((claim.to_string(), h)),
                    Err(_) => issues.push(at, "not a header name"),
                }
            }
            out
        }
    };
    GatewayConfig {
        identity_headers,
        forward_auth: raw.forward_auth,
    }
}

pub(super) fn compile_routes(
    value: Option<Value>,
    providers: &[String],
    default_timeout: Duration,
    issues: &mut Issues,
) -> RoutesConfig {
    let items = match value {
        None | Some(Value::Null) => return RoutesConfig::default(),
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            issues.push("routes", "must be a list of routes");
            return RoutesConfig::default();
        }
    };
    let mut list = Vec::new();
    let mut specs = Vec::new();
    // `routes[i]` of each compiled spec, for error paths.
    let mut origin = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        let Some(raw) = de_value::<RawRoute>(item, &at, issues) else {
            continue;
        };
        if is_reserved(&raw.path) {
            issues.push(
                format!("{at}.path"),
                "the server answers this path itself; a route cannot take it over",
            );
        }
        let methods = raw
            .methods
            .map(|m| methods_upper(m.into_vec(), &format!("{at}.methods"), issues));
        if let Some(names) = &raw.providers {
            if names.is_empty() {
                issues.push(
                    format!("{at}.providers"),
                    "an empty list lets nobody in; leave it out to accept every provider",
                );
            }
            for (j, n) in names.iter().enumerate() {
                if !providers.contains(n) {
                    issues.push(
                        format!("{at}.providers[{j}]"),
                        format!("no provider instance is named `{n}`"),
                    );
                }
            }
        }
        let upstream = match reqwest::Url::parse(&raw.upstream) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.password().is_none() =>
            {
                u
            }
            _ => {
                issues.push(
                    format!("{at}.upstream"),
                    "must be an http:// or https:// URL with a host and no query, fragment or credentials",
                );
                continue;
            }
        };
        let timeout = duration(
            raw.timeout.as_deref(),
            default_timeout,
            &format!("{at}.timeout"),
            issues,
        );
        let connect_timeout = duration(
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
            &format!("{at}.connect_timeout"),
            issues,
        );
        origin.push(i);
        specs.push(PatternSpec {
            kind: crate::matching::PatternKind::Path(raw.path.clone()),
            methods: methods.clone(),
        });
        list.push(RouteConfig {
            path: raw.path,
            methods,
            requires_auth: raw.requires_auth.unwrap_or(true),
            providers: raw.providers,
            upstream,
            forward_authorization: raw.forward_authorization,
            timeout,
            connect_timeout,
        });
    }
    let protected_index: Vec<usize> = (0..list.len()).filter(|&i| list[i].requires_auth).collect();
    let protected_specs: Vec<PatternSpec> = protected_index
        .iter()
        .filter_map(|&i| specs.get(i).cloned())
        .collect();
    let protected = PatternSet::compile(&protected_specs, CaseMode::Insensitive);
    match (PatternSet::compile(&specs, CaseMode::Sensitive), protected) {
        (Ok(matcher), Ok(protected)) => RoutesConfig {
            list,
            matcher,
            protected,
            protected_index,
        },
        (Err(errs), _) => {
            for (i, e) in errs {
                let i = origin.get(i).copied().unwrap_or(i);
                issues.push(format!("routes[{i}].path"), e.to_string());
            }
            RoutesConfig::default()
        }
        (Ok(_), Err(errs)) => {
            for (i, e) in errs {
                let i = protected_index
                    .get(i)
                    .and_then(|&j| origin.get(j))
                    .copied()
                    .unwrap_or(i);
                issues.push(format!("routes[{i}].path"), e.to_string());
            }
            RoutesConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_reserved;

    #[test]
    fn reserved_paths_include_their_trailing_slash_form() {
        assert!(is_reserved("/metrics"));
        assert!(is_reserved("/metrics/"));
        assert!(is_reserved("/forward-auth"));
        assert!(!is_reserved("/metrics/x"));
        assert!(!is_reserved("/"));
    }
}
