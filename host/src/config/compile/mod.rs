//! raw YAML → `${VAR}` expansion → typed, compiled [`Config`], with every problem reported at once.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::{
    auth::{AuthConfig, Rule, TokenConfig},
    de::{de_value, describe, duration, methods_upper, provider_list, METHODS},
    error::{ConfigError, ConfigIssue, Issues},
    expand::{expand_tree, VarSource, FILE_PREFIX},
    raw::*,
};
use crate::matching::{CaseMode, Condition, PatternKind, PatternSet, PatternSpec};

mod auth;
pub(super) mod middleware;
mod providers;
pub(super) mod routes;
mod server;

use auth::{compile_auth, compile_condition};
use middleware::{compile_middleware, MiddlewareConfig};
use providers::compile_providers;
use routes::{compile_gateway, compile_routes, GatewayConfig, RoutesConfig};
pub use server::parse_size;
use server::{compile_server, compile_telemetry};

/// The seed's default port.
pub const DEFAULT_PORT: u16 = 4111;

/// The longest `authorization_cache` a provider instance may set: an answer kept longer would
/// outlive a revoked membership by more than an operator would accept.
pub const MAX_AUTHORIZATION_CACHE_TTL: Duration = Duration::from_secs(3600);
/// The longest `authentication_cache` a provider instance may set.
pub const MAX_AUTHENTICATION_CACHE_AGE: Duration = Duration::from_secs(3600);
/// What `auth.protected` is when left out (as in `compile_auth`).
const DEFAULT_PROTECTED: &str = "/api/*";
/// The seed's default body limit, 4.5 MB.
pub const DEFAULT_BODY_LIMIT: u64 = 4_718_592;

/// A checked, compiled config: an immutable snapshot.
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// SHA-256 of the file's bytes.
    pub hash: String,
    /// Files whose content was read through `${file:PATH}` (secrets mounted as files): watched
    /// like the config, and part of what a reload compares.
    pub var_files: Vec<PathBuf>,
    /// `server:`.
    pub server: ServerConfig,
    /// `plugins:`.
    pub plugins: PluginsConfig,
    /// `providers:`.
    pub providers: Vec<ProviderConfig>,
    /// `middleware:`, in the order they run.
    pub middleware: Vec<MiddlewareConfig>,
    /// `auth:`.
    pub auth: AuthConfig,
    /// `gateway:`.
    pub gateway: GatewayConfig,
    /// `routes:`.
    pub routes: RoutesConfig,
    /// `telemetry:`.
    pub telemetry: TelemetryConfig,
    /// What the file says that can never take effect (a dead pattern, a shadowed rule or route),
    /// with key paths. Not errors: the config is served as it is.
    pub warnings: Vec<ConfigIssue>,
}

impl Config {
    /// The warnings, one line each, naming the file once: `config.yaml: auth.public[1]: ...`.
    pub fn warning_lines(&self) -> Vec<String> {
        let file = self.file.display();
        self.warnings
            .iter()
            .map(|w| format!("{file}: {w}"))
            .collect()
    }
}

/// `telemetry:`: where traces go. Read once at start (see `crate::observe::telemetry`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); `/v1/traces` is added
    /// unless the URL already ends with it. `None`: the standard `OTEL_EXPORTER_OTLP_*`
    /// environment variables decide.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (else `OTEL_SERVICE_NAME`, else `portcullis`).
    pub service_name: Option<String>,
}

/// `server:` with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Bind host.
    pub host: String,
    /// Bind port (config, then `PORT`, then 4111).
    pub port: u16,
    /// Request time limit (504 past it).
    pub timeout: Duration,
    /// Body limit in bytes (413 past it).
    pub body_limit: u64,
    /// CORS, or `None` when turned off.
    pub cors: Option<CorsConfig>,
    /// `build:` flags.
    pub swagger_ui: bool,
    /// Serve `/openapi.json`.
    pub openapi_docs: bool,
    /// Access logs.
    pub api_req_logs: bool,
    /// TLS key and certificate files.
    pub https: Option<HttpsConfig>,
    /// Time limit of one plugin call.
    pub plugin_timeout: Duration,
    /// Tokens longer than this are refused before decoding.
    pub max_token_bytes: usize,
    /// Where Prometheus metrics are served (`server.metrics`).
    pub metrics: MetricsConfig,
    /// Most plugin calls in flight at once per provider instance; past it: 503 at once.
    pub plugin_max_in_flight: usize,
    /// A request's headers must arrive within this time of the connection opening or the last
    /// response (an idle connection is closed after it too).
    pub header_read_timeout: Duration,
}

/// `server.metrics`: where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsConfig {
    /// `false`: nowhere (404).
    Off,
    /// `true` (the default): on the main listener, to anyone.
    Public,
    /// `{protected: true}`: on the main listener, behind the gate like `/api/*` (a token is
    /// needed and `auth.rules` apply).
    Protected,
    /// `{listen: addr}`: only on a second, plain-HTTP listener at this address, started with the
    /// server (the main listener answers 404). Read at start, like `server.port`.
    Listen(std::net::SocketAddr),
}

impl MetricsConfig {
    /// Whether the main listener serves `/metrics`.
    pub fn on_main_listener(self) -> bool {
        matches!(self, MetricsConfig::Public | MetricsConfig::Protected)
    }

    /// The separate listener's address, if any.
    pub fn listen(self) -> Option<std::net::SocketAddr> {
        match self {
            MetricsConfig::Listen(a) => Some(a),
            _ => None,
        }
    }
}

/// CORS options.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    /// Allowed origins; `*` = any.
    pub origins: Vec<String>,
    /// Allowed methods.
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials`.
    pub credentials: bool,
    /// Preflight cache time in seconds.
    pub max_age: u32,
}

/// TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    /// PEM private key.
    pub key: PathBuf,
    /// PEM certificate chain.
    pub cert: PathBuf,
}

/// `plugins:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginsConfig {
    /// Folder scanned for `*.so`.
    pub dir: PathBuf,
    /// Trusted SHA-256 hashes; `None` trusts every file.
    pub allow: Option<Vec<String>>,
}

/// One provider instance.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Instance name.
    pub name: String,
    /// Plugin name (from the plugin's manifest).
    pub plugin: String,
    /// The `config:` mapping as JSON, `${VAR}` expanded.
    pub config: serde_json::Value,
    /// YAML override of the plugin's `authorize`.
    pub authorize: Option<Arc<Condition>>,
    /// `dangerous.allow_http`: plain-http URLs allowed for this instance.
    pub allow_http: bool,
    /// How long answers of the plugin's own `authorize` are cached per subject.
    pub authorization_cache: CacheSetting,
    /// How long a token the instance accepted is reused without asking the plugin.
    pub authentication_cache: CacheSetting,
}

/// `authorization_cache:` or `authentication_cache:` of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSetting {
    /// Not set: the default time when the plugin declares that caching is exact for it
    /// (`authorize` by subject only; `authenticate` by token only), else off.
    Default,
    /// `0`: off.
    Off,
    /// Set: this time, whatever the plugin declares (the operator vouches for it).
    Ttl(Duration),
}

impl CacheSetting {
    /// The time to use for a plugin that does (or does not) declare the cache exact, with
    /// `default` as the default.
    pub fn ttl(self, declared: bool, default: Duration) -> Option<Duration> {
        match self {
            CacheSetting::Default if declared => Some(default),
            CacheSetting::Default | CacheSetting::Off => None,
            CacheSetting::Ttl(d) => Some(d),
        }
    }
}

/// A config that was refused, with what the plugin checks still need so that their problems are
/// reported in the same pass as the config's own.
#[derive(Debug)]
pub struct Refused {
    /// Every problem of the config itself.
    pub error: ConfigError,
    /// The instances that could be read, for the plugin checks; `None` when the file could not
    /// be read or parsed.
    pub plugins: Option<Box<PluginCheck>>,
}

/// The provider instances of a (possibly refused) config, for checks only plugins can make: that
/// the named plugin exists, and that it accepts the instance's `config:`.
#[derive(Debug, Default)]
pub struct PluginCheck {
    /// `plugins.dir`, resolved.
    pub dir: PathBuf,
    /// `plugins.allow`.
    pub allow: Option<Vec<String>>,
    /// Each provider instance whose plugin name and `config:` could be read.
    pub instances: Vec<InstanceCheck>,
    /// Each middleware instance whose plugin name and `config:` could be read.
    pub middleware: Vec<InstanceCheck>,
    /// `server.plugin_timeout` (its default when it is wrong).
    pub timeout: Duration,
    /// `${VAR}` values, kept out of any message a plugin writes.
    secrets: Vec<String>,
}

/// One provider or middleware instance to check against its plugin.
#[derive(Debug)]
pub struct InstanceCheck {
    /// Its index in `providers:` (or `middleware:`).
    pub index: usize,
    /// Instance name.
    pub name: String,
    /// Plugin name.
    pub plugin: String,
    /// The `config:` mapping as JSON, `${VAR}` expanded.
    pub config: serde_json::Value,
    /// `dangerous.allow_http`.
    pub allow_http: bool,
}

impl PluginCheck {
    /// `message` with every `${VAR}` value of the config replaced.
    pub fn redact(&self, message: &str) -> String {
        redact_values(message.to_string(), &self.secrets)
    }
}

/// Replaces each value (of at least 4 characters) that came from `${VAR}` in `message`.
fn redact_values(mut message: String, values: &[String]) -> String {
    const REDACTED: &str = "<redacted ${VAR} value>";
    for v in values.iter().filter(|v| v.len() >= 4) {
        if message.contains(v.as_str()) {
            message = message.replace(v.as_str(), REDACTED);
        }
        // Serde quotes a refused string escaped (`string "a\"b"`).
        let debug = format!("{v:?}");
        if let Some(escaped) = debug.strip_prefix('"').and_then(|d| d.strip_suffix('"')) {
            if escaped != v && message.contains(escaped) {
                message = message.replace(escaped, REDACTED);
            }
        }
    }
    message
}

/// Reads, expands and compiles a config file.
pub fn load_file(file: &Path, vars: &dyn VarSource) -> Result<Config, ConfigError> {
    load_file_checked(file, vars).map_err(|r| r.error)
}

/// [`load_file`], keeping what the plugin checks need when the config is refused.
pub fn load_file_checked(file: &Path, vars: &dyn VarSource) -> Result<Config, Refused> {
    let text = std::fs::read_to_string(file).map_err(|e| Refused {
        error: ConfigError::Read {
            file: file.display().to_string(),
            reason: e.to_string(),
        },
        plugins: None,
    })?;
    compile_checked(&text, file, vars)
}

/// Compiles config text. `file` names it in errors and anchors relative paths.
pub fn compile_str(text: &str, file: &Path, vars: &dyn VarSource) -> Result<Config, ConfigError> {
    compile_checked(text, file, vars).map_err(|r| r.error)
}

/// [`compile_str`], keeping what the plugin checks need when the config is refused.
pub fn compile_checked(text: &str, file: &Path, vars: &dyn VarSource) -> Result<Config, Refused> {
    let name = file.display().to_string();
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut doc: Value = serde_yaml::from_str(text).map_err(|e| Refused {
        error: ConfigError::Syntax {
            file: name.clone(),
            reason: yaml_reason(&e),
        },
        plugins: None,
    })?;
    let mut issues = Issues::default();
    let recorded = Recording {
        inner: vars,
        base: &base,
        values: Default::default(),
        files: Default::default(),
    };
    expand_tree(&mut doc, "", &recorded, &mut issues);

    let Value::Mapping(mut root) = doc else {
        issues.push("", "the config must be a YAML mapping with `version: 1`");
        return Err(Refused {
            error: ConfigError::Invalid {
                file: name,
                issues: issues.0,
            },
            plugins: None,
        });
    };
    let mut take = |key: &str| root.remove(key);
    let version = take("version");
    let server = take("server");
    let plugins = take("plugins");
    let providers = take("providers");
    let middleware = take("middleware");
    let auth = take("auth");
    let gateway = take("gateway");
    let routes = take("routes");
    let telemetry = take("telemetry");
    for (k, _) in root.iter() {
        let key = k.as_str().unwrap_or("?");
        issues.push(
            key,
            "unknown key (expected version, server, plugins, providers, middleware, auth, gateway, routes, telemetry)",
        );
    }
    match version.as_ref().and_then(Value::as_u64) {
        Some(1) => {}
        Some(_) => issues.push(
            "version",
            "unsupported version; this server reads version 1",
        ),
        None => issues.push("version", "missing or not a number; write `version: 1`"),
    }

    let server = de::<RawServer>(server, "server", &mut issues).unwrap_or_default();
    let server = compile_server(server, &base, &mut issues);
    let plugins = de::<RawPlugins>(plugins, "plugins", &mut issues).unwrap_or_default();
    let plugins = PluginsConfig {
        dir: resolve(&base, plugins.dir.as_deref().unwrap_or("plugins")),
        allow: plugins.allow.inspect(|v| {
            for (i, h) in v.iter().enumerate() {
                if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    issues.push(
                        format!("plugins.allow[{i}]"),
                        "not a hex SHA-256 (64 characters)",
                    );
                }
            }
        }),
    };
    let (providers, instances) = compile_providers(providers, &mut issues);
    let provider_names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
    let (middleware, middleware_checks) = compile_middleware(middleware, &mut issues);
    let middleware_names: Vec<String> = middleware.iter().map(|m| m.name.clone()).collect();
    let mut auth = de::<RawAuth>(auth, "auth", &mut issues).unwrap_or_default();
    if server.metrics == MetricsConfig::Protected {
        // Behind the gate like `/api/*`: a protected pattern of its own (after the user's), so
        // that a token is needed and `auth.rules` apply.
        auth.protected
            .get_or_insert_with(|| vec![Value::from(DEFAULT_PROTECTED)])
            .push(Value::from("/metrics"));
    }
    let auth = compile_auth(auth, &provider_names, &mut issues);
    if let (MetricsConfig::Protected, Some(a)) = (server.metrics, &auth) {
        if let Some(i) = METHODS
            .iter()
            .filter(|m| !matches!(**m, "ALL" | "*"))
            .find_map(|m| a.public.first_match(m, "/metrics"))
        {
            issues.push(
                "server.metrics.protected",
                format!("auth.public[{i}] makes /metrics public; take it out of auth.public or set server.metrics to true"),
            );
        }
    }
    let gateway = compile_gateway(gateway, &mut issues);
    let routes = compile_routes(
        routes,
        &base,
        &provider_names,
        &middleware_names,
        server.timeout,
        &mut issues,
    );
    let telemetry = de::<RawTelemetry>(telemetry, "telemetry", &mut issues).unwrap_or_default();
    let telemetry = compile_telemetry(telemetry, &mut issues);

    if !issues.is_empty() {
        // A message may quote a value that came from `${VAR}` (a pattern or CEL expression built
        // from one): never let it out.
        let values = recorded.values.into_inner();
        let mut issues = issues.0;
        for issue in &mut issues {
            issue.message = redact_values(std::mem::take(&mut issue.message), &values);
        }
        return Err(Refused {
            error: ConfigError::Invalid { file: name, issues },
            plugins: Some(Box::new(PluginCheck {
                dir: plugins.dir,
                allow: plugins.allow,
                instances,
                middleware: middleware_checks,
                timeout: server.plugin_timeout,
                secrets: values,
            })),
        });
    }
    let auth = auth.ok_or_else(|| Refused {
        error: ConfigError::Invalid {
            file: name.clone(),
            issues: vec![],
        },
        plugins: None,
    })?;
    let mut warnings = super::lint::warnings(&auth, &routes);
    for (r, route) in routes.list.iter().enumerate() {
        for (j, &i) in route.middleware.iter().enumerate() {
            let Some(m) = middleware
                .get(i)
                .filter(|m| !m.public && !route.requires_auth)
            else {
                continue;
            };
            warnings.push(ConfigIssue {
                path: format!("routes[{r}].middleware[{j}]"),
                message: format!(
                    "`{}` never runs here: the route needs no user (requires_auth: false) and the instance is not `public: true`",
                    m.name
                ),
            });
        }
    }
    for (i, m) in middleware.iter().enumerate() {
        if m.paths.is_none() && !routes.list.iter().any(|r| r.middleware.contains(&i)) {
            warnings.push(ConfigIssue {
                path: format!("middleware[{i}]"),
                message: format!(
                    "`{}` has no `path` and no route names it in `middleware:`: it never runs",
                    m.name
                ),
            });
        }
    }
    Ok(Config {
        file: file.to_path_buf(),
        hash: crate::plugin::sha256_hex(text.as_bytes()),
        var_files: recorded.files.into_inner(),
        server,
        plugins,
        providers,
        middleware,
        auth,
        gateway,
        routes,
        telemetry,
        warnings,
    })
}

/// The largest file `${file:PATH}` reads: a secret, not a document.
const MAX_VAR_FILE: u64 = 64 * 1024;

/// A [`VarSource`] that remembers every value it handed out, to keep them out of error messages,
/// and reads `${file:PATH}` itself (relative to the config's folder), remembering the paths.
struct Recording<'a> {
    inner: &'a dyn VarSource,
    base: &'a Path,
    values: std::cell::RefCell<Vec<String>>,
    files: std::cell::RefCell<Vec<PathBuf>>,
}

impl VarSource for Recording<'_> {
    fn get(&self, name: &str) -> Option<String> {
        let v = match name.strip_prefix(FILE_PREFIX) {
            Some(path) => {
                let path = resolve(self.base, path.trim());
                if !self.files.borrow().contains(&path) {
                    self.files.borrow_mut().push(path.clone());
                }
                read_var_file(&path)?
            }
            None => self.inner.get(name)?,
        };
        self.values.borrow_mut().push(v.clone());
        Some(v)
    }

    fn why_unset(&self, name: &str) -> Option<String> {
        self.inner.why_unset(name)
    }
}

/// A `${file:PATH}` value: the content, less one trailing newline; `None` if unreadable, too
/// large or not UTF-8 (the caller says which file, never what is in it).
fn read_var_file(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    f.take(MAX_VAR_FILE + 1).read_to_string(&mut text).ok()?;
    if text.len() as u64 > MAX_VAR_FILE {
        return None;
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Some(text)
}

/// Deserializes `value` (absent = `None`), recording unknown keys and the first type error.
fn de<T: DeserializeOwned>(value: Option<Value>, path: &str, issues: &mut Issues) -> Option<T> {
    let value = value.unwrap_or(Value::Mapping(Default::default()));
    let value = if value.is_null() {
        Value::Mapping(Default::default())
    } else {
        value
    };
    de_value(value, path, issues)
}

fn yaml_reason(e: &serde_yaml::Error) -> String {
    // serde_yaml's syntax messages describe the structure ("did not find expected key") and the
    // position; they do not quote values.
    let msg = e.to_string();
    msg.lines().next().unwrap_or("syntax error").to_string()
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
