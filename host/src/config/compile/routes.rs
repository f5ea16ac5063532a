//! `gateway:` (identity headers, forward auth) and `routes:` (the seed's `apiRoutes`: paths served
//! by forwarding to an upstream, each with its own `requires_auth`).

use std::time::Duration;

use poem::http::HeaderName;
use serde::Deserialize;
use serde_yaml::Value;

use crate::config::{
    de::{de_value, duration, methods_upper, provider_list},
    error::Issues,
    raw::StringOrList,
};
use crate::matching::{CaseMode, PatternSet, PatternSpec};

/// Paths the server answers itself; a configured route never takes them over. (`/api/auth/*` and
/// `/api/admin/*` are built-in protected routes and are excluded by the decision itself.)
pub const RESERVED_PATHS: [&str; 6] = [
    "/health",
    "/ready",
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
    provider_header: Option<String>,
    forward_auth: Option<Value>,
    method_override: Option<String>,
    underscore_headers: Option<String>,
}

/// `gateway.forward_auth` in its mapping form.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct RawForwardAuth {
    proxy: String,
    #[serde(default)]
    headers: Option<RawForwardHeaders>,
}

/// `gateway.forward_auth.headers` (`proxy: custom`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct RawForwardHeaders {
    method: String,
    uri: String,
    host: String,
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
    #[serde(default)]
    middleware: Vec<String>,
    #[serde(default)]
    openapi: Option<String>,
}

/// `gateway:` compiled.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Claim name → header: sent upstream by routes, returned by forward auth. The same headers
    /// are always removed from what clients send.
    pub identity_headers: Vec<(String, HeaderName)>,
    /// The header that carries the name of the provider instance that vouched for the user
    /// (`gateway.provider_header`); removed from what clients send like an identity header.
    pub provider_header: Option<HeaderName>,
    /// `/forward-auth` answers, for this proxy only; `None`: off.
    pub forward_auth: Option<ForwardProxy>,
    /// What a proxied route does with a method-override header or `_method` query parameter.
    pub method_override: MethodOverride,
    /// Client headers whose names contain `_` are dropped before forwarding (nginx's default).
    pub drop_underscore_headers: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            identity_headers: vec![("sub".into(), HeaderName::from_static("x-user-id"))],
            provider_header: None,
            forward_auth: None,
            method_override: MethodOverride::Drop,
            drop_underscore_headers: false,
        }
    }
}

impl GatewayConfig {
    /// Whether `name` (lower case, `_` read as `-`) is a header only Portcullis may set
    /// upstream: an identity header or the provider header.
    pub fn is_identity_header(&self, normalized: &str) -> bool {
        self.identity_headers
            .iter()
            .any(|(_, h)| h.as_str() == normalized)
            || self
                .provider_header
                .as_ref()
                .is_some_and(|h| h.as_str() == normalized)
    }
}

/// What is done with a method override (`X-HTTP-Method-Override` and kin, `_method`) on a
/// proxied route: such a request would be judged under one method and run under another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodOverride {
    /// Removed before forwarding (the default).
    Drop,
    /// The request is refused with 400.
    Refuse,
}

/// The proxy in front, for forward auth: which headers name the request being judged. Only these
/// are read; a request that also carries another proxy's original-request headers is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardProxy {
    /// `nginx`, `traefik`, `caddy`, `envoy` or `custom`.
    pub kind: ProxyKind,
    /// The original method; `None`: the check request's own method (Envoy).
    pub method: Option<HeaderName>,
    /// The original request target (path and query); `None`: the check request's own path
    /// below `/forward-auth` (Envoy's `path_prefix`).
    pub uri: Option<HeaderName>,
    /// The original host; `Host` for Envoy.
    pub host: HeaderName,
}

/// The proxies forward auth knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// nginx `auth_request`, with `X-Original-Method`, `X-Original-URI` and `X-Forwarded-Host`
    /// set by `proxy_set_header`.
    Nginx,
    /// Traefik ForwardAuth: `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`.
    Traefik,
    /// Caddy `forward_auth`: the same headers as Traefik.
    Caddy,
    /// Envoy `ext_authz` (HTTP service, `path_prefix: /forward-auth`): the check request has the
    /// original method and path, and the original `Host`.
    Envoy,
    /// Header names given in the config.
    Custom,
}

impl ProxyKind {
    /// The name used in the config.
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Traefik => "traefik",
            ProxyKind::Caddy => "caddy",
            ProxyKind::Envoy => "envoy",
            ProxyKind::Custom => "custom",
        }
    }
}

/// Headers by which some proxy or web server names the original request. Whichever are not the
/// configured proxy's own must be absent from a forward-auth request: a client can send any of
/// them, and a proxy that passes client headers through would let it name another request. Some
/// frameworks also route by `X-Original-URL`/`X-Rewrite-URL`, so a route never forwards any of
/// them.
pub const ORIGINAL_REQUEST_HEADERS: [&str; 8] = [
    "x-original-uri",
    "x-original-method",
    "x-original-url",
    "x-original-host",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-rewrite-url",
    "x-envoy-original-path",
];

fn forward_proxy(value: Option<Value>, issues: &mut Issues) -> Option<ForwardProxy> {
    const AT: &str = "gateway.forward_auth";
    const NAMES: &str = "name the proxy in front: nginx, traefik, caddy, envoy, or {proxy: custom, headers: {method, uri, host}}";
    let raw = match value? {
        Value::Null | Value::Bool(false) => return None,
        Value::Bool(true) => {
            issues.push(
                AT,
                format!("`true` no longer says which headers to trust; {NAMES}"),
            );
            return None;
        }
        Value::String(s) => RawForwardAuth {
            proxy: s,
            headers: None,
        },
        v @ Value::Mapping(_) => de_value::<RawForwardAuth>(v, AT, issues)?,
        _ => {
            issues.push(AT, NAMES);
            return None;
        }
    };
    let h = HeaderName::from_static;
    let kind = match raw.proxy.as_str() {
        "nginx" => ProxyKind::Nginx,
        "traefik" => ProxyKind::Traefik,
        "caddy" => ProxyKind::Caddy,
        "envoy" => ProxyKind::Envoy,
        "custom" => ProxyKind::Custom,
        other => {
            issues.push(
                format!("{AT}.proxy"),
                format!("unknown proxy `{other}`; {NAMES}"),
            );
            return None;
        }
    };
    if raw.headers.is_some() != (kind == ProxyKind::Custom) {
        issues.push(
            format!("{AT}.headers"),
            "header names are given with `proxy: custom`, and only then",
        );
        return None;
    }
    Some(match kind {
        ProxyKind::Nginx => ForwardProxy {
            kind,
            method: Some(h("x-original-method")),
            uri: Some(h("x-original-uri")),
            host: h("x-forwarded-host"),
        },
        ProxyKind::Traefik | ProxyKind::Caddy => ForwardProxy {
            kind,
            method: Some(h("x-forwarded-method")),
            uri: Some(h("x-forwarded-uri")),
            host: h("x-forwarded-host"),
        },
        ProxyKind::Envoy => ForwardProxy {
            kind,
            method: None,
            uri: None,
            host: poem::http::header::HOST,
        },
        ProxyKind::Custom => {
            let names = raw.headers?;
            let mut parse = |key: &str, v: &str| match HeaderName::from_bytes(v.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    issues.push(format!("{AT}.headers.{key}"), "not a header name");
                    None
                }
            };
            let (method, uri, host) = (
                parse("method", &names.method),
                parse("uri", &names.uri),
                parse("host", &names.host),
            );
            ForwardProxy {
                kind,
                method: Some(method?),
                uri: Some(uri?),
                host: host?,
            }
        }
    })
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
    /// Indexes into `middleware:` of the instances the route names, in its order (they run after
    /// the instances whose `path` matches, and once each).
    pub middleware: Vec<usize>,
    /// The upstream's OpenAPI document, merged into `/openapi.json` under this route.
    pub openapi: Option<OpenApiSource>,
}

/// Where a route's upstream OpenAPI document is read from (`routes[i].openapi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenApiSource {
    /// Fetched with the host's client when a snapshot is built.
    Url(reqwest::Url),
    /// Read when a snapshot is built (relative paths are the config file's folder's).
    File(std::path::PathBuf),
}

impl std::fmt::Display for OpenApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenApiSource::Url(u) => f.write_str(u.as_str()),
            OpenApiSource::File(p) => write!(f, "{}", p.display()),
        }
    }
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
    // Below `/forward-auth` is Envoy's check path (`path_prefix`).
    RESERVED_PATHS.contains(&p) || path.starts_with("/forward-auth/")
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
                match identity_header_name(header, &at, issues) {
                    Some(h) if out.iter().any(|(_, o)| *o == h) => {
                        issues.push(at, format!("`{header}` is used by another claim"));
                    }
                    Some(h) => out.push((claim.to_string(), h)),
                    None => {}
                }
            }
            out
        }
    };
    let provider_header = raw.provider_header.and_then(|header| {
        const AT: &str = "gateway.provider_header";
        let h = identity_header_name(&header, AT, issues)?;
        if identity_headers.iter().any(|(_, o)| *o == h) {
            issues.push(AT, format!("`{header}` is already an identity header"));
            return None;
        }
        Some(h)
    });
    let method_override = match raw.method_override.as_deref() {
        None | Some("drop") => MethodOverride::Drop,
        Some("refuse") => MethodOverride::Refuse,
        Some(_) => {
            issues.push("gateway.method_override", "one of `drop` or `refuse`");
            MethodOverride::Drop
        }
    };
    let drop_underscore_headers = match raw.underscore_headers.as_deref() {
        None | Some("keep") => false,
        Some("drop") => true,
        Some(_) => {
            issues.push("gateway.underscore_headers", "one of `keep` or `drop`");
            false
        }
    };
    GatewayConfig {
        identity_headers,
        provider_header,
        forward_auth: forward_proxy(raw.forward_auth, issues),
        method_override,
        drop_underscore_headers,
    }
}

/// A header Portcullis may set for the user: not one the proxy manages, and spelled with `-`
/// (an upstream reading `_` as `-` must not see a client's copy under another spelling).
fn identity_header_name(header: &str, at: &str, issues: &mut Issues) -> Option<HeaderName> {
    match HeaderName::from_bytes(header.as_bytes()) {
        Ok(h)
            if FORBIDDEN_IDENTITY_HEADERS.contains(&h.as_str())
                || h.as_str().starts_with("proxy-")
                || h.as_str().starts_with("x-forwarded-")
                || h.as_str() == "x-real-ip" =>
        {
            issues.push(
                at,
                format!("`{header}` is managed by the proxy; pick another header"),
            );
            None
        }
        Ok(h) if h.as_str().contains('_') => {
            issues.push(at, "use `-` rather than `_` in an identity header's name");
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            issues.push(at, "not a header name");
            None
        }
    }
}

pub(super) fn compile_routes(
    value: Option<Value>,
    base: &std::path::Path,
    providers: &[String],
    middleware: &[String],
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
        let Some(route) = compile_route(
            i,
            item,
            base,
            providers,
            middleware,
            default_timeout,
            issues,
        ) else {
            continue;
        };
        origin.push(i);
        specs.push(PatternSpec {
            kind: crate::matching::PatternKind::Path(route.path.clone()),
            methods: route.methods.clone(),
        });
        list.push(route);
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

/// `routes[i]` compiled, or `None` (its problems recorded) when it cannot serve.
fn compile_route(
    i: usize,
    item: Value,
    base: &std::path::Path,
    providers: &[String],
    middleware: &[String],
    default_timeout: Duration,
    issues: &mut Issues,
) -> Option<RouteConfig> {
    let at = format!("routes[{i}]");
    let raw = de_value::<RawRoute>(item, &at, issues)?;
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
        provider_list(names, providers, &format!("{at}.providers"), issues);
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
            return None;
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
    let middleware = super::middleware::middleware_list(
        &raw.middleware,
        middleware,
        &format!("{at}.middleware"),
        issues,
    );
    let openapi = raw
        .openapi
        .and_then(|o| openapi_source(&o, &upstream, base, &format!("{at}.openapi"), issues));
    Some(RouteConfig {
        middleware,
        openapi,
        path: raw.path,
        methods,
        requires_auth: raw.requires_auth.unwrap_or(true),
        providers: raw.providers,
        upstream,
        forward_authorization: raw.forward_authorization,
        timeout,
        connect_timeout,
    })
}

/// `routes[i].openapi`: an `http(s)://` URL, or else a file path. A URL follows the route's
/// own upstream: plain `http://` only when the route already sends its requests (and its users'
/// identity headers) in the clear, `https://` always.
fn openapi_source(
    value: &str,
    upstream: &reqwest::Url,
    base: &std::path::Path,
    at: &str,
    issues: &mut Issues,
) -> Option<OpenApiSource> {
    let lower = value.trim_start().to_ascii_lowercase();
    if value.trim().is_empty() {
        issues.push(
            at,
            "name the upstream's OpenAPI document: a file path or a URL",
        );
        return None;
    }
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        if lower.contains("://") {
            issues.push(at, "a document URL must be http:// or https://");
            return None;
        }
        return Some(OpenApiSource::File(super::resolve(base, value)));
    }
    match reqwest::Url::parse(value) {
        Ok(u)
            if u.host_str().is_some()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            if u.scheme() == "http" && upstream.scheme() != "http" {
                issues.push(
                    at,
                    "plain http is refused for a route whose upstream is https; use an https:// URL",
                );
                return None;
            }
            Some(OpenApiSource::Url(u))
        }
        _ => {
            issues.push(
                at,
                "must be an http:// or https:// URL with a host and no fragment or credentials, or a file path",
            );
            None
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
