//! The YAML schema, as written by users. Unknown keys are collected (not silently ignored) and
//! reported with their paths; see [`super::compile`].

use serde::Deserialize;
use serde_yaml::Value;

/// `server:`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawServer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub timeout: Option<String>,
    pub body_size_limit: Option<Value>,
    /// `false`, `true` or [`RawCorsOptions`]; read in `compile_server`.
    pub cors: Option<Value>,
    pub build: RawBuild,
    pub https: Option<RawHttps>,
    pub plugin_timeout: Option<String>,
    pub max_token_bytes: Option<usize>,
    /// `true`, `false`, `{listen: addr}` or `{protected: true}`; read in `compile_server`.
    pub metrics: Option<Value>,
    pub plugin_max_in_flight: Option<usize>,
    pub header_read_timeout: Option<String>,
}

/// CORS options (seed defaults apply to what is left out).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawCorsOptions {
    pub origin: Option<StringOrList>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub credentials: Option<bool>,
    pub max_age: Option<u32>,
}

/// `server.build`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawBuild {
    pub swagger_ui: bool,
    pub openapi_docs: bool,
    pub api_req_logs: bool,
}

/// `server.https`.
#[derive(Deserialize, Debug, Clone)]
pub struct RawHttps {
    pub key: String,
    pub cert: String,
}

/// `telemetry:` (traces; read at start).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<String>,
    pub service_name: Option<String>,
}

/// `plugins:`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawPlugins {
    pub dir: Option<String>,
    pub allow: Option<Vec<String>>,
}

/// One `providers:` entry.
#[derive(Deserialize, Debug, Clone)]
pub struct RawProvider {
    pub name: String,
    pub plugin: String,
    #[serde(default)]
    pub config: Option<Value>,
    #[serde(default)]
    pub authorize: Option<String>,
    #[serde(default)]
    pub dangerous: RawDangerous,
    /// How long the plugin's `authorize` answers are cached per subject (`30s`; `0` = off).
    #[serde(default)]
    pub authorization_cache: Option<Value>,
    /// How long an accepted token is reused without asking the plugin (`5m`; `0` = off).
    #[serde(default)]
    pub authentication_cache: Option<Value>,
}

/// Settings that weaken security, logged loudly at start.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawDangerous {
    pub allow_http: bool,
}

/// `auth:`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawAuth {
    pub protected: Option<Vec<Value>>,
    pub public: Option<Vec<Value>>,
    pub token: RawToken,
    pub authorize: Option<String>,
    pub rules: Vec<Value>,
}

/// `auth.token`.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RawToken {
    pub header: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
}

/// One `auth.rules` entry.
#[derive(Deserialize, Debug, Clone)]
pub struct RawRule {
    #[serde(default)]
    pub path: Option<Value>,
    #[serde(default)]
    pub methods: Option<StringOrList>,
    #[serde(default)]
    pub condition: Option<String>,
    /// Only users these provider instances vouched for; absent: any provider's.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    pub allow: bool,
}

/// A string or a list of strings.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    /// As a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// `{regex: ..., methods: ...}` pattern form.
#[derive(Deserialize, Debug, Clone)]
pub struct RawRegexPattern {
    pub regex: String,
    #[serde(default)]
    pub methods: Option<StringOrList>,
}
