//! The `header-policy` middleware: request headers sent onward made from the user's claims,
//! headers removed, required or refused, a per-tenant upstream header, and fixed response
//! headers.
//!
//! * **`set`** maps a header to a template: text with `{claim}` placeholders. A placeholder names
//!   a claim of the user (`{sub}`, `{email}`), a path into one (`{o.id}` is the `id` of the
//!   object claim `o`; a claim whose own name has a dot, such as `{https://example.com/org}`, is
//!   found first), or `{provider}`, the provider instance that authenticated the user. `{{` and
//!   `}}` write a brace. String claims are written as they are, numbers and booleans as JSON
//!   text; a list or an object is refused. Templates are read once, when the instance is built.
//! * **Fail closed.** A request whose user lacks a claim a `set` template names (or has it
//!   `null`) is answered `403` naming the claim, unless that header is listed in **`optional`**:
//!   the header is then removed instead. A claim that is a list or an object, or that holds a
//!   control character, is answered `403` too. On a request without a user (a public route),
//!   every `set` header is removed, so a client can never supply one itself.
//! * **`remove`** lists request headers removed before the request goes onward.
//! * **`require`** and **`deny`** list headers a request must carry, or must not: otherwise it is
//!   answered `400` naming the header. (`authorization`, `cookie` and `proxy-authorization` are
//!   withheld from middleware, so they cannot be listed there.)
//! * **`tenant`** sets one header from a lookup: the value of the user's `claim` (a path, as in
//!   templates) is looked up in `values`, and `header` is set to what it maps to. A tenant not
//!   listed (or a user without the claim) gets `default`, or is answered `403` without one. On a
//!   request without a user the header is removed.
//! * **`response`** maps response headers to fixed values, added to every answer.
//!
//! Headers the server itself manages (`host`, `content-length`, `transfer-encoding`,
//! `connection` and the other hop-by-hop headers) cannot be set or removed.
//!
//! ```yaml
//! middleware:
//!   - name: upstream-identity
//!     plugin: header-policy
//!     config:
//!       set: { x-subject: "{sub}", x-org-id: "{o.id}", x-auth: "{provider}" }
//!       optional: [x-org-id]
//!       remove: [x-debug]
//!       deny: [x-internal-token]
//!       tenant:
//!         claim: org_id
//!         header: x-upstream-pool
//!         values: { org_1: eu-1, org_2: us-1 }
//!         default: shared
//!       response: { x-frame-options: DENY }
//! ```

use std::collections::{BTreeMap, HashMap};

use portcullis_plugin_api::{
    export_middleware, Call, Flow, Host, MiddlewarePlugin, PluginConfig, PluginError,
    RequestMiddleware,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The `config:` of a `header-policy` instance.
#[derive(Deserialize, PluginConfig, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// request headers set onward: header name to a template with {claim} placeholders
    /// ({sub}, {o.id}, {provider}); a missing claim is answered 403
    ///
    /// Removed on requests without a user.
    #[serde(default)]
    #[config(example = r#"{"x-subject": "{sub}", "x-auth-provider": "{provider}"}"#)]
    pub set: BTreeMap<String, String>,
    /// `set` headers removed, rather than the request answered 403, when a claim they name is
    /// missing
    #[serde(default)]
    pub optional: Vec<String>,
    /// request headers removed before the request goes onward
    #[serde(default)]
    #[config(example = r#"["x-debug"]"#)]
    pub remove: Vec<String>,
    /// headers a request must carry, else 400
    #[serde(default)]
    pub require: Vec<String>,
    /// headers a request must not carry, else 400
    #[serde(default)]
    pub deny: Vec<String>,
    /// a per-tenant upstream header: {claim, header, values: tenant to value, default}
    pub tenant: Option<TenantConfig>,
    /// response headers added: header name to a fixed value
    #[serde(default)]
    pub response: BTreeMap<String, String>,
}

/// The `tenant:` setting.
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The claim (or path into one) naming the user's tenant.
    pub claim: String,
    /// The request header set to the tenant's value.
    pub header: String,
    /// Tenant (the claim's value) to header value.
    pub values: BTreeMap<String, String>,
    /// The value for a tenant not in `values`; without it such a request is answered 403.
    #[serde(default)]
    pub default: Option<String>,
}

/// Headers the server manages itself: framing and hop-by-hop headers (the SDK's list, which the
/// server refuses a middleware to change).
const MANAGED: &[&str] = portcullis_plugin_api::FRAMING_HEADERS;

/// Headers the server withholds from middleware: a middleware never sees them.
const WITHHELD: &[&str] = &["authorization", "cookie", "proxy-authorization"];

// ------------------------------------------------------------------------------------------------
// Templates.

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Provider,
    Claim(String),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Template {
    parts: Vec<Part>,
}

/// Why a template could not be filled for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unfilled {
    /// The claim is absent or `null` (or there is no provider): an `optional` header is removed.
    Missing(String),
    /// The claim cannot be written into a header: always refused.
    Unusable(String, &'static str),
}

impl Unfilled {
    fn message(&self) -> String {
        match self {
            Unfilled::Missing(claim) => format!("missing claim `{claim}`"),
            Unfilled::Unusable(claim, why) => format!("claim `{claim}` {why}"),
        }
    }
}

impl Template {
    /// Reads a template; `Err` is what is wrong with it.
    fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err("unmatched }".into()),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            None => return Err("unclosed {".into()),
                            Some('}') => break,
                            Some('{') => return Err("{ inside a placeholder".into()),
                            Some(c) => name.push(c),
                        }
                    }
                    if name.is_empty() {
                        return Err("empty placeholder {}".into());
                    }
                    if name.trim() != name {
                        return Err(format!("placeholder {{{name}}} has spaces around its name"));
                    }
                    if !valid_value(&name) {
                        return Err("a placeholder holds a control character".into());
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(if name == "provider" {
                        Part::Provider
                    } else {
                        Part::Claim(name)
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if parts
            .iter()
            .any(|p| matches!(p, Part::Text(t) if !valid_value(t)))
        {
            return Err("the template holds a control character".into());
        }
        Ok(Template { parts })
    }

    /// Whether it names a claim (and so needs the user's claims parsed).
    fn needs_claims(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Claim(_)))
    }

    /// Fills the template in for a user.
    fn render(
        &self,
        claims: &Map<String, Value>,
        provider: Option<&str>,
    ) -> Result<String, Unfilled> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Provider => {
                    out.push_str(provider.ok_or_else(|| Unfilled::Missing("provider".into()))?)
                }
                Part::Claim(name) => out.push_str(&claim_text(claims, name)?),
            }
        }
        Ok(out)
    }
}

/// A claim by name, or else by dotted path (`o.id`).
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut segments = name.split('.');
    let first = claims.get(segments.next()?)?;
    segments.try_fold(first, |v, s| v.as_object()?.get(s))
}

/// A claim's value as header text.
fn claim_text(claims: &Map<String, Value>, name: &str) -> Result<String, Unfilled> {
    let text = match lookup(claims, name) {
        None | Some(Value::Null) => return Err(Unfilled::Missing(name.into())),
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
        Some(Value::Array(_) | Value::Object(_)) => {
            return Err(Unfilled::Unusable(
                name.into(),
                "is not a string, number or boolean",
            ))
        }
    };
    if !valid_value(&text) {
        return Err(Unfilled::Unusable(
            name.into(),
            "holds a character a header cannot carry",
        ));
    }
    Ok(text)
}

/// A header name: one or more token characters (RFC 9110).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value: no control character but tab (bytes above 0x7f pass, as HTTP allows).
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

// ------------------------------------------------------------------------------------------------
// The compiled policy.

/// A `set` header.
#[derive(Clone, Debug)]
struct SetHeader {
    name: String,
    template: Template,
    optional: bool,
}

/// The `tenant` setting, compiled.
#[derive(Clone, Debug)]
struct Tenant {
    claim: String,
    header: String,
    values: HashMap<String, String>,
    default: Option<String>,
}

/// A configured instance.
#[derive(Clone, Debug)]
pub struct HeaderPolicy {
    set: Vec<SetHeader>,
    remove: Vec<String>,
    require: Vec<String>,
    deny: Vec<String>,
    tenant: Option<Tenant>,
    response: Vec<(String, String)>,
    needs_claims: bool,
}

fn refuse(key: &str, why: impl std::fmt::Display) -> PluginError {
    PluginError::config(format!("{key}: {why}"))
}

/// A header name from the config, lower case; `managed` refuses the server's own headers.
fn header_name(key: &str, name: &str, managed: bool) -> Result<String, PluginError> {
    if !valid_name(name) {
        return Err(refuse(key, "not a valid header name"));
    }
    let name = name.to_ascii_lowercase();
    if managed && MANAGED.contains(&name.as_str()) {
        return Err(refuse(key, "a header the server manages itself"));
    }
    Ok(name)
}

/// A list of header names (`list` is the key's name), lower case, without repeats.
fn header_list(list: &str, names: &[String], managed: bool) -> Result<Vec<String>, PluginError> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = header_name(&format!("{list}.{name}"), name, managed)?;
        if out.contains(&name) {
            return Err(refuse(&format!("{list}.{name}"), "listed twice"));
        }
        out.push(name);
    }
    Ok(out)
}

fn header_value(key: &str, value: &str) -> Result<(), PluginError> {
    if valid_value(value) {
        Ok(())
    } else {
        Err(refuse(
            key,
            "not a valid header value (a control character)",
        ))
    }
}

impl HeaderPolicy {
    /// Checks a config and reads its templates.
    fn compile(config: &Config) -> Result<HeaderPolicy, PluginError> {
        let optional = header_list("optional", &config.optional, true)?;
        let mut set: Vec<SetHeader> = Vec::with_capacity(config.set.len());
        for (name, text) in &config.set {
            let key = format!("set.{name}");
            let lower = header_name(&key, name, true)?;
            if set.iter().any(|s| s.name == lower) {
                return Err(refuse(&key, "listed twice (header names ignore case)"));
            }
            let template = Template::parse(text).map_err(|why| refuse(&key, why))?;
            set.push(SetHeader {
                optional: optional.contains(&lower),
                name: lower,
                template,
            });
        }
        // Applied in the order of the lower-case names, whatever case the YAML wrote them in.
        set.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(name) = optional.iter().find(|o| !set.iter().any(|s| &s.name == *o)) {
            return Err(refuse(&format!("optional.{name}"), "not a header of `set`"));
        }
        let remove = header_list("remove", &config.remove, true)?;
        let require = header_list("require", &config.require, false)?;
        let deny = header_list("deny", &config.deny, false)?;
        for (list, names) in [("require", &require), ("deny", &deny)] {
            if let Some(name) = names.iter().find(|n| WITHHELD.contains(&n.as_str())) {
                return Err(refuse(
                    &format!("{list}.{name}"),
                    "withheld from middleware: it is never seen",
                ));
            }
        }
        if let Some(name) = deny.iter().find(|d| require.contains(d)) {
            return Err(refuse(&format!("deny.{name}"), "also in `require`"));
        }
        let tenant = config.tenant.as_ref().map(compile_tenant).transpose()?;
        if let Some(t) = &tenant {
            if set.iter().any(|s| s.name == t.header) {
                return Err(refuse("tenant.header", "also a header of `set`"));
            }
        }
        let mut response: Vec<(String, String)> = Vec::with_capacity(config.response.len());
        for (name, value) in &config.response {
            let key = format!("response.{name}");
            let lower = header_name(&key, name, true)?;
            if response.iter().any(|(n, _)| *n == lower) {
                return Err(refuse(&key, "listed twice (header names ignore case)"));
            }
            header_value(&key, value)?;
            response.push((lower, value.clone()));
        }
        response.sort();
        let needs_claims = tenant.is_some() || set.iter().any(|s| s.template.needs_claims());
        Ok(HeaderPolicy {
            set,
            remove,
            require,
            deny,
            tenant,
            response,
            needs_claims,
        })
    }

    /// An answer that ends the request, with the policy's response headers.
    fn answer(&self, status: u16, message: &str) -> Flow {
        self.with_response_headers(Flow::error(status, message))
    }

    fn with_response_headers(&self, mut flow: Flow) -> Flow {
        for (name, value) in &self.response {
            flow = flow.add_response_header(name, value);
        }
        flow
    }

    /// The policy applied to one request.
    fn decide(&self, call: &Call<'_>) -> Result<Flow, PluginError> {
        if let Some(name) = self.deny.iter().find(|h| call.header(h).is_some()) {
            return Ok(self.answer(400, &format!("header `{name}` is not allowed")));
        }
        if let Some(name) = self.require.iter().find(|h| call.header(h).is_none()) {
            return Ok(self.answer(400, &format!("missing required header `{name}`")));
        }
        let mut flow = Flow::proceed();
        for name in &self.remove {
            flow = flow.remove_request_header(name);
        }
        // A user comes with the provider that vouched for it; only a policy that reads claims
        // needs the user itself.
        if call.provider().is_none() {
            // A public route: none of the headers this policy vouches for may come from the client.
            for s in &self.set {
                flow = flow.remove_request_header(&s.name);
            }
            if let Some(t) = &self.tenant {
                flow = flow.remove_request_header(&t.header);
            }
            return Ok(self.with_response_headers(flow));
        }
        if self.set.is_empty() && self.tenant.is_none() {
            return Ok(self.with_response_headers(flow));
        }
        let claims = match self.needs_claims.then(|| call.user()).flatten() {
            Some(user) => user.claims()?,
            None => Map::new(),
        };
        for s in &self.set {
            flow = match s.template.render(&claims, call.provider()) {
                Ok(value) => flow.set_request_header(&s.name, &value),
                Err(Unfilled::Missing(_)) if s.optional => flow.remove_request_header(&s.name),
                Err(e) => return Ok(self.answer(403, &e.message())),
            };
        }
        if let Some(t) = &self.tenant {
            let value = match claim_text(&claims, &t.claim) {
                Ok(tenant) => t
                    .values
                    .get(&tenant)
                    .or(t.default.as_ref())
                    .ok_or_else(|| format!("claim `{}`: unknown tenant", t.claim)),
                Err(e @ Unfilled::Missing(_)) => t.default.as_ref().ok_or_else(|| e.message()),
                Err(e) => Err(e.message()),
            };
            match value {
                Ok(value) => flow = flow.set_request_header(&t.header, value),
                Err(message) => return Ok(self.answer(403, &message)),
            }
        }
        Ok(self.with_response_headers(flow))
    }
}

fn compile_tenant(config: &TenantConfig) -> Result<Tenant, PluginError> {
    if config.claim.is_empty() {
        return Err(refuse("tenant.claim", "empty"));
    }
    if config.claim.trim() != config.claim || !valid_value(&config.claim) {
        return Err(refuse(
            "tenant.claim",
            "spaces around the name or a control character",
        ));
    }
    let header = header_name("tenant.header", &config.header, true)?;
    if config.values.is_empty() {
        return Err(refuse("tenant.values", "no tenant listed"));
    }
    for (tenant, value) in &config.values {
        header_value(&format!("tenant.values.{tenant}"), value)?;
    }
    if let Some(default) = &config.default {
        header_value("tenant.default", default)?;
    }
    Ok(Tenant {
        claim: config.claim.clone(),
        header,
        values: config
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        default: config.default.clone(),
    })
}

impl RequestMiddleware for HeaderPolicy {
    // Decided from the request alone: answered at once, no future (and `on_request`, left to
    // its default, gives the same answer).
    fn on_request_now(&self, call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
        Some(self.decide(call))
    }
}

/// The plugin.
pub struct HeaderPolicyPlugin;

impl MiddlewarePlugin for HeaderPolicyPlugin {
    type Middleware = HeaderPolicy;
    type Config = Config;
    const NAME: &'static str = "header-policy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "request headers from the user's claims, removed, required or denied; tenant and response headers";

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        HeaderPolicy::compile(config).map(|_| ())
    }

    fn build(config: Config, _host: Host) -> Result<HeaderPolicy, PluginError> {
        HeaderPolicy::compile(&config)
    }
}

export_middleware!(HeaderPolicyPlugin);

#[cfg(test)]
mod tests;
