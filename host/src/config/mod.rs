//! Strict YAML config: unknown keys rejected, all errors at once with key paths, `${VAR}`
//! expansion, secrets never echoed, warnings for what can never take effect, and the state folder
//! (the development secret). Imports `matching` for patterns and conditions; never `auth`,
//! `plugin`, `reload`, `http`, `gateway` or `api`.

mod auth;
mod compile;
mod de;
mod error;
mod expand;
mod lint;
mod raw;
pub mod state;
#[cfg(test)]
mod tests;

pub use auth::{AuthConfig, Rule, TokenConfig};
pub use compile::middleware::MiddlewareConfig;
pub use compile::routes::{
    is_reserved, ForwardProxy, GatewayConfig, MethodOverride, OpenApiSource, ProxyKind,
    RouteConfig, RoutesConfig, ORIGINAL_REQUEST_HEADERS, RESERVED_PATHS,
};
pub use compile::{
    compile_checked, compile_str, load_file, load_file_checked, parse_size, CacheSetting, Config,
    CorsConfig, HttpsConfig, InstanceCheck, MetricsConfig, PluginCheck, PluginsConfig,
    ProviderConfig, Refused, ServerConfig, TelemetryConfig, DEFAULT_BODY_LIMIT, DEFAULT_PORT,
    MAX_AUTHENTICATION_CACHE_AGE, MAX_AUTHORIZATION_CACHE_TTL,
};
pub use error::{ConfigError, ConfigIssue};
pub use expand::{expand_str, EnvVars, VarSource};
