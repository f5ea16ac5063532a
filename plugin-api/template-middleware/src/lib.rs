// The `stamp-user` middleware: tells the route who the user is, in a request header.
//
// Written by `portcullis plugin new --middleware`; replace `on_request_now` with your own policy. It
// runs after the server has authenticated and authorized the request, before the route. Do I/O
// only through `Host`: a plugin has no runtime of its own.

use portcullis_plugin_api::{
    export_middleware, Call, Flow, Host, MiddlewarePlugin, PluginConfig, PluginError,
    RequestMiddleware,
};
use serde::Deserialize;

/// The `config:` of an instance. Each key is declared once, here: its description is the `///`
/// line, and `#[config(…)]` says what else the server must know about it.
#[derive(Deserialize, PluginConfig)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The request header that carries the user's `sub` to the route (default `x-auth-subject`).
    #[config(example = "x-auth-subject")]
    pub header: Option<String>,
}

/// One configured instance.
pub struct StampUser {
    header: String,
}

impl RequestMiddleware for StampUser {
    // Decided from the request alone, so answered at once: the server makes no future for the
    // call. A middleware that must wait (a call through `Host`) implements
    // `async fn on_request(&self, call: Call<'_>)` instead.
    fn on_request_now(&self, call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
        // A public route (one that needs no user) runs this only with `public: true` in the
        // YAML: a client must never choose the header's value, so it is removed.
        let Some(user) = call.user() else {
            return Some(Ok(Flow::proceed().remove_request_header(&self.header)));
        };
        Some(Ok(match user.subject() {
            Some(sub) if !sub.chars().any(char::is_control) => {
                Flow::proceed().set_request_header(&self.header, &sub)
            }
            // Fail closed: a user the route could not tell apart is refused.
            _ => Flow::error(403, "the user has no usable subject"),
        }))
    }
}

/// The plugin.
pub struct StampUserPlugin;

impl MiddlewarePlugin for StampUserPlugin {
    type Middleware = StampUser;
    type Config = Config;
    const NAME: &'static str = "stamp-user";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "the user's subject in a request header";

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        let header = config
            .header
            .as_deref()
            .unwrap_or("x-auth-subject")
            .to_ascii_lowercase();
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid || portcullis_plugin_api::FRAMING_HEADERS.contains(&header.as_str()) {
            return Err(PluginError::config(format!(
                "header: `{header}` cannot be set by a middleware"
            )));
        }
        Ok(())
    }

    fn build(config: Config, _host: Host) -> Result<StampUser, PluginError> {
        Ok(StampUser {
            header: config
                .header
                .unwrap_or_else(|| "x-auth-subject".into())
                .to_ascii_lowercase(),
        })
    }
}

export_middleware!(StampUserPlugin);
