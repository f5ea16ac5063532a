//! Decision explain: for a method, a path and (optionally) a token and headers, the decision the
//! server would make now and why — the canonical path, the patterns and route that matched, where
//! the token was found, the provider that was asked, the rule that decided, or why the token was
//! refused. The token itself, cookies and header values are never part of the answer.

use std::collections::HashMap;

use poem::http::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{MaybeUndefined, ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
    Object,
};

use crate::{
    auth::{decide, extract_token, Decision, RequestParts},
    config::TokenConfig,
    gateway::middleware::{self, Ran},
    matching::canonicalize,
    reload::snapshot::Snapshot,
};

/// A JSON string, and only that: poem-openapi's `String` also takes a number or a boolean
/// (`5` as `"5"`), which the schema (`type: string`) does not allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value {
            Some(serde_json::Value::String(s)) => Ok(Text(s)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// What to explain.
#[derive(Object, Debug, Clone)]
pub struct ExplainRequest {
    /// HTTP method (any case). Anything but letters is explained as the 400 it would get.
    pub method: Text,
    /// The request target: a path, optionally with `?query` (an opted-in query token is read from it).
    pub path: Text,
    /// A bearer token, sent as the configured token header. Never echoed. Absent, not `null`,
    /// when there is none (as for `headers`: `null` is refused with 400).
    pub token: MaybeUndefined<Text>,
    /// Other request headers (a cookie token, `Access-Control-Request-Method`, ...). Never echoed.
    pub headers: MaybeUndefined<HashMap<String, Text>>,
}

/// A pattern that matched.
#[derive(Object, Debug, Clone)]
pub struct PatternMatch {
    /// Its index in the list.
    pub index: u64,
    /// The entry as configured.
    pub pattern: String,
}

/// The route that serves the path.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct RouteMatch {
    /// Its index in `routes:`.
    pub index: u64,
    /// Its path pattern.
    pub path: String,
    /// Where it forwards.
    pub upstream: String,
    /// Its `requires_auth`.
    pub requires_auth: bool,
    /// Its `providers`, when restricted.
    pub providers: Option<Vec<String>>,
}

/// Allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum Verdict {
    /// The request would reach its route.
    Allow,
    /// The request would be refused (see `status`).
    Deny,
}

/// Why. Fields that do not apply are absent (never `null`).
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct Explanation {
    /// Generation of the snapshot that decided.
    pub generation: u64,
    /// Upper-case method.
    pub method: String,
    /// The canonical path (absent when the request was refused as malformed).
    pub canonical_path: Option<String>,
    /// Whether the request would reach its route.
    pub decision: Verdict,
    /// The status a real request would get from the gate (200 = let through to the route).
    pub status: u16,
    /// The reason in words.
    pub reason: String,
    /// Whether a user is needed.
    pub requires_auth: bool,
    /// A built-in route (`/api/auth/*`, `/api/admin/*`) that always needs a user.
    pub builtin_route: bool,
    /// The `auth.protected` entry that matched first.
    pub protected_pattern: Option<PatternMatch>,
    /// The `auth.public` entry that matched first.
    pub public_pattern: Option<PatternMatch>,
    /// The `routes:` entry that serves the path.
    pub route: Option<RouteMatch>,
    /// Where the token was found: `header`, `query` or `cookie` (absent: none).
    pub token_source: Option<String>,
    /// The provider instance that vouched (or failed to).
    pub provider: Option<String>,
    /// Index of the `auth.rules` entry that decided.
    pub rule: Option<u64>,
    /// The user's `sub`, when one was established.
    pub subject: Option<String>,
    /// The request middleware that ran (asked as a dry run: they change no state), in order;
    /// absent when none applies. The last one answered when `decision` is `deny` and
    /// `denied_by_middleware` is set.
    pub middleware: Option<Vec<MiddlewareStep>>,
    /// The middleware instance that answered (or failed) instead of the route.
    pub denied_by_middleware: Option<String>,
}

/// One request middleware that ran for the explained request.
#[derive(Object, Debug, Clone)]
#[oai(skip_serializing_if_is_none)]
pub struct MiddlewareStep {
    /// Instance name.
    pub name: String,
    /// `proceeded`, `answered` or `failed`.
    pub outcome: String,
    /// The status it answered with (or the request was refused with, when it failed).
    pub status: Option<u16>,
    /// Why it failed.
    pub reason: Option<String>,
}

fn token_source(cfg: &TokenConfig, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let only = |header: &str, query: Option<String>, cookie: Option<String>| TokenConfig {
        header: header.to_string(),
        header_name: HeaderName::from_bytes(header.as_bytes())
            .unwrap_or(poem::http::header::AUTHORIZATION),
        query,
        cookie,
    };
    // A header name nobody sends, so that only the other source is looked at.
    const NONE: &str = "x-portcullis-no-such-header";
    let tries = [
        ("header", only(&cfg.header, None, None)),
        ("query", only(NONE, cfg.query.clone(), None)),
        ("cookie", only(NONE, None, cfg.cookie.clone())),
    ];
    tries
        .into_iter()
        .find_map(|(name, c)| match extract_token(&c, headers, query) {
            Ok(Some(_)) | Err(_) => Some(name.to_string()),
            Ok(None) => None,
        })
}

/// The headers of the request to explain, or why no such request can be sent: a method that is
/// not one, a header name or value HTTP does not allow. The client would have to send something
/// else; the server would refuse what it got with 400.
fn request_headers(rt: &Snapshot, input: &ExplainRequest) -> Result<HeaderMap, String> {
    if input.method.is_empty() || !input.method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("method: not an HTTP method".into());
    }
    let mut headers = HeaderMap::new();
    for (k, v) in input.headers.value().into_iter().flatten() {
        // The name is not echoed: it could be a value pasted in the wrong place.
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| "headers: a name is not a valid header name".to_string())?;
        let value = HeaderValue::from_str(&v.0)
            .map_err(|_| format!("headers.{name}: not a valid header value"))?;
        headers.append(name, value);
    }
    if let Some(t) = input.token.value() {
        let name = HeaderName::from_bytes(rt.config.auth.token.header.as_bytes())
            .map_err(|_| "the token header name is invalid".to_string())?;
        let value = HeaderValue::from_str(&format!("Bearer {}", t.0))
            .map_err(|_| "token: not a valid header value".to_string())?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Decides `input` under `rt` and says why.
pub async fn explain(rt: &Snapshot, input: ExplainRequest) -> Explanation {
    let method = input.method.to_ascii_uppercase();
    let headers = request_headers(rt, &input);
    let (path, query) = match input.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*input.path, None),
    };
    let mut out = Explanation {
        generation: rt.generation,
        method: method.clone(),
        canonical_path: None,
        decision: Verdict::Deny,
        status: 400,
        reason: String::new(),
        requires_auth: false,
        builtin_route: false,
        protected_pattern: None,
        public_pattern: None,
        route: None,
        token_source: None,
        provider: None,
        rule: None,
        subject: None,
        middleware: None,
        denied_by_middleware: None,
    };
    let headers = match headers {
        Ok(h) => h,
        Err(e) => {
            out.reason = format!("bad request: {e}");
            return out;
        }
    };
    let canonical = match canonicalize(path) {
        Ok(p) => p,
        Err(e) => {
            out.reason = format!("bad request path: {e}");
            return out;
        }
    };
    let d = decide(
        &rt.policy(),
        &RequestParts {
            method: &method,
            path: &canonical,
            headers: &headers,
            query,
            host: headers
                .get(poem::http::header::HOST)
                .and_then(|v| v.to_str().ok()),
            now: std::time::Instant::now(),
        },
    )
    .await;
    describe(&mut out, rt, &d, &headers, query);
    if let Ok(user) = &d.result {
        run_middleware(
            &mut out,
            rt,
            &d,
            user.as_deref(),
            &canonical,
            query,
            &headers,
        )
        .await;
    }
    out.canonical_path = Some(canonical);
    // Belt and braces: the token never comes back, whatever a plugin put in a reason.
    if let Some(tok) = input.token.value().map(|t| &t.0).filter(|t| t.len() >= 8) {
        let reasons = std::iter::once(&mut out.reason).chain(
            out.middleware
                .iter_mut()
                .flatten()
                .filter_map(|m| m.reason.as_mut()),
        );
        for reason in reasons {
            if reason.contains(tok.as_str()) {
                *reason = reason.replace(tok.as_str(), "[token]");
            }
        }
    }
    out
}

/// The request middleware an allowed request would run, run as a dry run: which ran, and which
/// answered instead of the route.
async fn run_middleware(
    out: &mut Explanation,
    rt: &Snapshot,
    d: &Decision,
    user: Option<&crate::auth::AuthUser>,
    canonical: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) {
    let selected = middleware::selected(
        &rt.config,
        &out.method,
        canonical,
        d.trace.route,
        user.is_some(),
    );
    if selected.is_empty() {
        return;
    }
    let incoming = middleware::Incoming {
        method: &out.method,
        path: canonical,
        query,
        client: None,
        user,
        dry_run: true,
    };
    let mut onward = headers.clone();
    let (chain, answer) = middleware::on_request(rt, None, &selected, &incoming, &mut onward).await;
    let steps = chain
        .runs
        .iter()
        .map(|r| {
            let (outcome, status, reason) = match &r.ran {
                Ran::Proceeded => ("proceeded", None, None),
                Ran::Answered { status } => ("answered", Some(*status), None),
                Ran::Failed { status, reason } => ("failed", Some(*status), Some(reason.clone())),
            };
            MiddlewareStep {
                name: r.name.clone(),
                outcome: outcome.into(),
                status,
                reason,
            }
        })
        .collect();
    out.middleware = Some(steps);
    if let (Some(resp), Some(last)) = (answer, chain.runs.last()) {
        out.decision = Verdict::Deny;
        out.status = resp.status().as_u16();
        out.denied_by_middleware = Some(last.name.clone());
        out.reason = match &last.ran {
            Ran::Failed { .. } => format!("middleware {} failed", last.name),
            _ => format!("answered by middleware {}", last.name),
        };
    }
}

/// What the decision `d` says, in the explanation's words: the patterns, route and rule that
/// matched, the provider, the verdict and its status, and the subject.
fn describe(
    out: &mut Explanation,
    rt: &Snapshot,
    d: &Decision,
    headers: &HeaderMap,
    query: Option<&str>,
) {
    let auth = &rt.config.auth;
    let t = &d.trace;
    let pattern = |i: Option<usize>, src: &[String]| {
        i.map(|i| PatternMatch {
            index: i as u64,
            pattern: src.get(i).cloned().unwrap_or_default(),
        })
    };
    out.protected_pattern = pattern(t.protected_pattern, &auth.protected_src);
    out.public_pattern = pattern(t.public_pattern, &auth.public_src);
    out.route = t
        .route
        .and_then(|i| rt.config.routes.list.get(i).map(|r| (i, r)))
        .map(|(i, r)| RouteMatch {
            index: i as u64,
            path: r.path.clone(),
            upstream: r.upstream.to_string(),
            requires_auth: r.requires_auth,
            providers: r.providers.clone(),
        });
    if t.requires_auth {
        out.token_source = token_source(&auth.token, headers, query);
    }
    out.requires_auth = t.requires_auth;
    out.builtin_route = t.builtin_route;
    out.provider = t.provider.clone();
    out.rule = t.rule.map(|r| r as u64);
    out.reason = t.reason.to_string();
    match &d.result {
        Ok(user) => {
            out.decision = Verdict::Allow;
            out.status = 200;
            if out.reason.is_empty() {
                out.reason = match t.rule {
                    Some(i) => format!("allowed by auth.rules[{i}]"),
                    None if auth.authorize.is_some() => "allowed by auth.authorize".into(),
                    None => "authenticated; no rules, so any authenticated user".into(),
                };
            }
            out.subject = user.as_ref().and_then(|u| {
                u.claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            });
        }
        Err(denial) => {
            out.status = crate::http::answer::denial_status(denial).as_u16();
        }
    }
}
