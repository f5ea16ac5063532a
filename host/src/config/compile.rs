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
    gateway::{compile_gateway, compile_routes, GatewayConfig, RoutesConfig},
    raw::*,
};
use crate::matching::{CaseMode, Condition, PatternKind, PatternSet, PatternSpec};

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
    /// Each instance whose plugin name and `config:` could be read.
    pub instances: Vec<InstanceCheck>,
    /// `server.plugin_timeout` (its default when it is wrong).
    pub timeout: Duration,
    /// `${VAR}` values, kept out of any message a plugin writes.
    secrets: Vec<String>,
}

/// One provider instance to check against its plugin.
#[derive(Debug)]
pub struct InstanceCheck {
    /// Its index in `providers:`.
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
    let auth = take("auth");
    let gateway = take("gateway");
    let routes = take("routes");
    let telemetry = take("telemetry");
    for (k, _) in root.iter() {
        let key = k.as_str().unwrap_or("?");
        issues.push(
            key,
            "unknown key (expected version, server, plugins, providers, auth, gateway, routes, telemetry)",
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
    let routes = compile_routes(routes, &provider_names, server.timeout, &mut issues);
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
    let warnings = super::lint::warnings(&auth, &routes);
    Ok(Config {
        file: file.to_path_buf(),
        hash: crate::plugin::sha256_hex(text.as_bytes()),
        var_files: recorded.files.into_inner(),
        server,
        plugins,
        providers,
        auth,
        gateway,
        routes,
        telemetry,
        warnings,
    })
}

fn compile_telemetry(raw: RawTelemetry, issues: &mut Issues) -> TelemetryConfig {
    let otlp_endpoint =
        raw.otlp_endpoint
            .filter(|e| !e.is_empty())
            .and_then(|e| match reqwest::Url::parse(&e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    Some(e)
                }
                _ => {
                    issues.push(
                        "telemetry.otlp_endpoint",
                        "not an http(s) URL (example: http://otel-collector:4318)",
                    );
                    None
                }
            });
    let service_name = raw.service_name.filter(|s| !s.is_empty());
    TelemetryConfig {
        otlp_endpoint,
        service_name,
    }
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

/// Parses `4.5mb`, `512kb`, `1mib`, `100b` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = (n * mult).round();
    (1.0..1e15).contains(&v).then_some(v as u64)
}

fn compile_server(raw: RawServer, base: &Path, issues: &mut Issues) -> ServerConfig {
    let port = raw
        .port
        .or_else(|| std::env::var("PORT").ok().and_then(|p| p.parse().ok()))
        .unwrap_or(DEFAULT_PORT);
    let body_limit = match &raw.body_size_limit {
        None => DEFAULT_BODY_LIMIT,
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).unwrap_or_else(|| {
            issues.push(
                "server.body_size_limit",
                "must be a positive number of bytes",
            );
            DEFAULT_BODY_LIMIT
        }),
        Some(Value::String(s)) => parse_size(s).unwrap_or_else(|| {
            issues.push(
                "server.body_size_limit",
                "not a size (examples: 4.5mb, 512kb, 1048576)",
            );
            DEFAULT_BODY_LIMIT
        }),
        Some(_) => {
            issues.push("server.body_size_limit", "must be a size such as 4.5mb");
            DEFAULT_BODY_LIMIT
        }
    };
    // `false`, `true` or options; read here rather than through an untagged enum, which serde
    // reads from a buffered copy where unknown keys go unseen.
    let cors = match raw.cors {
        Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) | None | Some(Value::Null) => {
            Some(cors_defaults(RawCorsOptions::default()))
        }
        Some(v @ Value::Mapping(_)) => {
            de_value::<RawCorsOptions>(v, "server.cors", issues).map(cors_defaults)
        }
        Some(_) => {
            issues.push(
                "server.cors",
                "expected true, false or a mapping of options",
            );
            None
        }
    };
    if let Some(c) = &cors {
        if c.credentials && c.origins.iter().any(|o| o == "*") {
            issues.push(
                "server.cors.credentials",
                "credentials cannot be combined with origin `*`; list the allowed origins",
            );
        }
    }
    let https = raw.https.map(|h| HttpsConfig {
        key: resolve(base, &h.key),
        cert: resolve(base, &h.cert),
    });
    let max_token_bytes = raw.max_token_bytes.unwrap_or(16 * 1024);
    if !(512..=1024 * 1024).contains(&max_token_bytes) {
        issues.push("server.max_token_bytes", "must be between 512 and 1048576");
    }
    let plugin_max_in_flight = raw.plugin_max_in_flight.unwrap_or(256);
    if !(1..=65536).contains(&plugin_max_in_flight) {
        issues.push("server.plugin_max_in_flight", "must be between 1 and 65536");
    }
    let header_read_timeout = duration(
        raw.header_read_timeout.as_deref(),
        Duration::from_secs(30),
        "server.header_read_timeout",
        issues,
    );
    ServerConfig {
        host: raw.host.unwrap_or_else(|| "localhost".into()),
        port,
        timeout: duration(
            raw.timeout.as_deref(),
            Duration::from_secs(180),
            "server.timeout",
            issues,
        ),
        body_limit,
        cors,
        swagger_ui: raw.build.swagger_ui,
        openapi_docs: raw.build.openapi_docs || raw.build.swagger_ui,
        api_req_logs: raw.build.api_req_logs,
        https,
        plugin_timeout: duration(
            raw.plugin_timeout.as_deref(),
            Duration::from_secs(10),
            "server.plugin_timeout",
            issues,
        ),
        max_token_bytes,
        metrics: metrics_setting(raw.metrics.as_ref(), issues),
        plugin_max_in_flight,
        header_read_timeout,
    }
}

/// `server.metrics`: `true`, `false`, `{listen: "127.0.0.1:9464"}` or `{protected: true}`.
fn metrics_setting(value: Option<&Value>, issues: &mut Issues) -> MetricsConfig {
    const PATH: &str = "server.metrics";
    const EXPECTED: &str = "must be true, false, {listen: \"127.0.0.1:9464\"} or {protected: true}";
    let map = match value {
        None | Some(Value::Null) | Some(Value::Bool(true)) => return MetricsConfig::Public,
        Some(Value::Bool(false)) => return MetricsConfig::Off,
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            issues.push(PATH, EXPECTED);
            return MetricsConfig::Public;
        }
    };
    let (mut listen, mut protected) = (None, false);
    for (k, v) in map {
        match (k.as_str(), v) {
            (Some("listen"), Value::String(a)) => match a.trim().parse() {
                Ok(addr) => listen = Some(addr),
                Err(_) => issues.push(
                    format!("{PATH}.listen"),
                    "not an IP address and port (example: 127.0.0.1:9464)",
                ),
            },
            (Some("listen"), _) => issues.push(
                format!("{PATH}.listen"),
                "must be an IP address and port such as \"127.0.0.1:9464\"",
            ),
            (Some("protected"), Value::Bool(b)) => protected = *b,
            (Some("protected"), _) => {
                issues.push(format!("{PATH}.protected"), "must be true or false")
            }
            (Some(other), _) => issues.push(
                format!("{PATH}.{other}"),
                "unknown key (expected listen or protected)",
            ),
            (None, _) => issues.push(PATH, "unknown key (expected listen or protected)"),
        }
    }
    match (listen, protected) {
        (Some(_), true) => {
            issues.push(
                PATH,
                "listen and protected cannot be combined: the separate listener has no gate; keep it on a private address",
            );
            MetricsConfig::Off
        }
        (Some(addr), false) => MetricsConfig::Listen(addr),
        (None, true) => MetricsConfig::Protected,
        (None, false) => MetricsConfig::Public,
    }
}

fn cors_defaults(o: RawCorsOptions) -> CorsConfig {
    let mut allow_headers = vec!["Content-Type".to_string(), "Authorization".to_string()];
    for h in o.allow_headers.unwrap_or_default() {
        if !allow_headers.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
            allow_headers.push(h);
        }
    }
    let mut expose_headers = vec!["Content-Length".to_string(), "X-Requested-With".to_string()];
    for h in o.expose_headers.unwrap_or_default() {
        if !expose_headers.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
            expose_headers.push(h);
        }
    }
    CorsConfig {
        origins: o
            .origin
            .map(StringOrList::into_vec)
            .unwrap_or_else(|| vec!["*".into()]),
        allow_methods: o.allow_methods.unwrap_or_else(|| {
            ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec()
        }),
        allow_headers,
        expose_headers,
        credentials: o.credentials.unwrap_or(false),
        max_age: o.max_age.unwrap_or(3600),
    }
}

/// The instances, and what of them the plugin checks need (kept apart: a refused config has no
/// `Vec<ProviderConfig>` to show, and an index may be skipped).
fn compile_providers(
    value: Option<Value>,
    issues: &mut Issues,
) -> (Vec<ProviderConfig>, Vec<InstanceCheck>) {
    let items = match value {
        None | Some(Value::Null) => return Default::default(),
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            issues.push("providers", "must be a list of provider instances");
            return Default::default();
        }
    };
    let mut out: Vec<ProviderConfig> = Vec::new();
    let mut checks: Vec<InstanceCheck> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("providers[{i}]");
        let Some(raw) = de_value::<RawProvider>(item, &path, issues) else {
            continue;
        };
        if !valid_name(&raw.name) {
            issues.push(
                format!("{path}.name"),
                "use lower-case letters, digits, `-` and `_` (1-64)",
            );
        }
        if out.iter().any(|p| p.name == raw.name) {
            issues.push(
                format!("{path}.name"),
                format!("duplicate provider name `{}`", raw.name),
            );
        }
        if !valid_name(&raw.plugin) {
            issues.push(format!("{path}.plugin"), "not a plugin name");
        }
        let config = match raw.config {
            None | Some(Value::Null) => serde_json::Value::Object(Default::default()),
            Some(v @ Value::Mapping(_)) => match serde_json::to_value(&v) {
                Ok(j) => j,
                Err(_) => {
                    issues.push(
                        format!("{path}.config"),
                        "cannot be represented as JSON (non-string keys?)",
                    );
                    continue;
                }
            },
            Some(_) => {
                issues.push(format!("{path}.config"), "must be a mapping");
                continue;
            }
        };
        // A name that cannot be a plugin's is reported above; no plugin is asked about it.
        if valid_name(&raw.plugin) {
            checks.push(InstanceCheck {
                index: i,
                name: raw.name.clone(),
                plugin: raw.plugin.clone(),
                config: config.clone(),
                allow_http: raw.dangerous.allow_http,
            });
        }
        let authorize = compile_condition(
            raw.authorize.as_deref(),
            format!("{path}.authorize"),
            issues,
        )
        .map(Arc::new);
        let authorization_cache = cache_setting(
            raw.authorization_cache.as_ref(),
            &format!("{path}.authorization_cache"),
            (Duration::ZERO, MAX_AUTHORIZATION_CACHE_TTL),
            "at most 1h: cached answers outlive membership changes",
            issues,
        );
        let authentication_cache = cache_setting(
            raw.authentication_cache.as_ref(),
            &format!("{path}.authentication_cache"),
            // Token expiry is in whole seconds, and so is this.
            (Duration::from_secs(1), MAX_AUTHENTICATION_CACHE_AGE),
            "at most 1h: an accepted token is reused no longer than that (and never past its exp)",
            issues,
        );
        out.push(ProviderConfig {
            name: raw.name,
            plugin: raw.plugin,
            config,
            authorize,
            allow_http: raw.dangerous.allow_http,
            authorization_cache,
            authentication_cache,
        });
    }
    (out, checks)
}

/// `authorization_cache:` or `authentication_cache:` — a duration such as `30s`, or `0` to turn
/// the cache off; within `(min, max)` (`too_long` says why not longer). Absent: the default, which
/// depends on the plugin (see [`CacheSetting`]).
fn cache_setting(
    value: Option<&Value>,
    path: &str,
    (min, max): (Duration, Duration),
    too_long: &str,
    issues: &mut Issues,
) -> CacheSetting {
    let ttl = match value {
        None | Some(Value::Null) => return CacheSetting::Default,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => return CacheSetting::Off,
        Some(Value::Bool(false)) => return CacheSetting::Off,
        Some(Value::String(s)) if s.trim() == "0" => return CacheSetting::Off,
        Some(Value::String(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(_) => {
                issues.push(
                    path,
                    "not a duration (examples: 30s, 2m; 0 turns the cache off)",
                );
                return CacheSetting::Off;
            }
        },
        Some(_) => {
            issues.push(
                path,
                "must be a duration such as 30s, or 0 to turn the cache off",
            );
            return CacheSetting::Off;
        }
    };
    if ttl.is_zero() {
        CacheSetting::Off
    } else if ttl > max {
        issues.push(path, too_long);
        CacheSetting::Off
    } else if ttl < min {
        issues.push(
            path,
            format!(
                "at least {} (or 0 to turn the cache off)",
                humantime::format_duration(min)
            ),
        );
        CacheSetting::Off
    } else {
        CacheSetting::Ttl(ttl)
    }
}

/// Compiles an optional CEL expression, recording a failure at `path`.
fn compile_condition(
    source: Option<&str>,
    path: impl Into<String>,
    issues: &mut Issues,
) -> Option<Condition> {
    match Condition::compile(source?) {
        Ok(c) => Some(c),
        Err(e) => {
            issues.push(path, e);
            None
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Parses one pattern entry: `"/path"`, `["/path", METHOD | [METHODS]]` or `{regex, methods}`.
fn pattern_spec(value: Value, path: &str, issues: &mut Issues) -> Option<PatternSpec> {
    match value {
        Value::String(s) => Some(PatternSpec {
            kind: PatternKind::Path(s),
            methods: None,
        }),
        Value::Sequence(mut pair) => {
            if pair.len() != 2 {
                issues.push(path, "a pattern pair is [path, method or [methods]]");
                return None;
            }
            let methods = pair
                .pop()
                .and_then(|m| de_value::<StringOrList>(m, &format!("{path}[1]"), issues))?;
            let p = pair.pop()?;
            let kind = match p {
                Value::String(s) => PatternKind::Path(s),
                Value::Mapping(_) => {
                    let r = de_value::<RawRegexPattern>(p, &format!("{path}[0]"), issues)?;
                    PatternKind::Regex(r.regex)
                }
                _ => {
                    issues.push(
                        format!("{path}[0]"),
                        "must be a path pattern or {regex: ...}",
                    );
                    return None;
                }
            };
            Some(PatternSpec {
                kind,
                methods: Some(methods_upper(methods.into_vec(), path, issues)),
            })
        }
        v @ Value::Mapping(_) => {
            let r = de_value::<RawRegexPattern>(v, path, issues)?;
            let methods = r.methods.map(|m| methods_upper(m.into_vec(), path, issues));
            Some(PatternSpec {
                kind: PatternKind::Regex(r.regex),
                methods,
            })
        }
        _ => {
            issues.push(
                path,
                "must be a path pattern, [path, methods] or {regex: ...}",
            );
            None
        }
    }
}

/// Compiles a pattern list (`default` when absent), keeping the entries as compiled in `specs`.
fn pattern_list(
    values: Option<Vec<Value>>,
    default: &[&str],
    path: &str,
    case: CaseMode,
    issues: &mut Issues,
    specs_out: &mut Vec<PatternSpec>,
) -> Option<PatternSet> {
    let specs: Vec<PatternSpec> = match values {
        None => default
            .iter()
            .map(|s| PatternSpec {
                kind: PatternKind::Path((*s).into()),
                methods: None,
            })
            .collect(),
        Some(vs) => {
            let n = vs.len();
            let specs: Vec<PatternSpec> = vs
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| pattern_spec(v, &format!("{path}[{i}]"), issues))
                .collect();
            if specs.len() != n {
                return None;
            }
            specs
        }
    };
    let compiled = match PatternSet::compile(&specs, case) {
        Ok(set) => Some(set),
        Err(errs) => {
            for (i, e) in errs {
                issues.push(format!("{path}[{i}]"), e.to_string());
            }
            None
        }
    };
    *specs_out = specs;
    compiled
}

fn compile_auth(
    raw: RawAuth,
    provider_names: &[String],
    issues: &mut Issues,
) -> Option<AuthConfig> {
    let (mut protected_specs, mut public_specs) = (Vec::new(), Vec::new());
    let protected = pattern_list(
        raw.protected,
        &["/api/*"],
        "auth.protected",
        CaseMode::Insensitive,
        issues,
        &mut protected_specs,
    );
    let public = pattern_list(
        raw.public,
        &["/health"],
        "auth.public",
        CaseMode::Sensitive,
        issues,
        &mut public_specs,
    );
    let header = raw.token.header.unwrap_or_else(|| "Authorization".into());
    if header.is_empty()
        || !header
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        issues.push("auth.token.header", "not a header name");
    }
    let header_name = poem::http::HeaderName::from_bytes(header.as_bytes())
        .unwrap_or(poem::http::header::AUTHORIZATION);
    let token = TokenConfig {
        header,
        header_name,
        query: raw.token.query,
        cookie: raw.token.cookie,
    };
    let authorize = compile_condition(raw.authorize.as_deref(), "auth.authorize", issues);

    let mut rules = Vec::new();
    let mut specs = Vec::new();
    let mut rule_of_spec = Vec::new();
    // The rule's place in the file, for messages: a refused rule is not kept, so the kept
    // rules' numbers can differ from it.
    let mut entry_of_spec = Vec::new();
    for (i, value) in raw.rules.into_iter().enumerate() {
        let path = format!("auth.rules[{i}]");
        let Some(rule) = de_value::<RawRule>(value, &path, issues) else {
            continue;
        };
        let methods = rule
            .methods
            .map(|m| methods_upper(m.into_vec(), &format!("{path}.methods"), issues));
        let kinds: Vec<PatternKind> = match rule.path {
            None | Some(Value::Null) => vec![PatternKind::Path("/*".into())],
            Some(Value::String(s)) => vec![PatternKind::Path(s)],
            Some(Value::Sequence(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(j, v)| match v {
                    Value::String(s) => Some(PatternKind::Path(s)),
                    other => {
                        let r = de_value::<RawRegexPattern>(
                            other,
                            &format!("{path}.path[{j}]"),
                            issues,
                        )?;
                        Some(PatternKind::Regex(r.regex))
                    }
                })
                .collect(),
            Some(other) => {
                match de_value::<RawRegexPattern>(other, &format!("{path}.path"), issues) {
                    Some(r) => vec![PatternKind::Regex(r.regex)],
                    None => continue,
                }
            }
        };
        let condition = compile_condition(
            rule.condition.as_deref(),
            format!("{path}.condition"),
            issues,
        );
        if let Some(names) = &rule.providers {
            provider_list(names, provider_names, &format!("{path}.providers"), issues);
        }
        for kind in kinds {
            specs.push(PatternSpec {
                kind,
                methods: methods.clone(),
            });
            rule_of_spec.push(rules.len());
            entry_of_spec.push(i);
        }
        rules.push(Rule {
            condition,
            providers: rule.providers,
            allow: rule.allow,
        });
    }
    let rule_paths = match PatternSet::compile(&specs, CaseMode::Insensitive) {
        Ok(s) => Some(s),
        Err(errs) => {
            for (i, e) in errs {
                let rule = entry_of_spec.get(i).copied().unwrap_or(0);
                issues.push(format!("auth.rules[{rule}].path"), e.to_string());
            }
            None
        }
    };
    Some(AuthConfig {
        protected: protected?,
        public: public?,
        protected_src: protected_specs.iter().map(describe).collect(),
        public_src: public_specs.iter().map(describe).collect(),
        token,
        authorize,
        rules,
        rule_paths: rule_paths?,
        rule_of_spec,
        public_specs,
        rule_specs: specs,
    })
}
