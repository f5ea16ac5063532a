//! Test-only plugin that misbehaves on demand, so the host's fault handling can be proven with a
//! real library. `mode` in its config picks the fault; tokens are `good-<sub>` (anything else is
//! rejected).

use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, Plugin, PluginConfig, PluginError, Request, User,
};
use serde::Deserialize;

/// The config.
#[derive(Deserialize, PluginConfig)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `ok`, `fail_ctor`, `panic_ctor`, `hang_ctor`, `panic_authenticate`, `hang_authenticate`,
    /// `garbage_user`, `unavailable`, `deny`, `deny_admin_paths`, `panic_authorize`, `slow` (fetches `url` through
    /// the host before answering, so a test can hold a request in flight), `count` (declares its
    /// authentication reusable and numbers its `authenticate` calls in the user's `call` claim).
    #[config(example = "ok")]
    pub mode: String,
    /// For `slow`.
    #[serde(default)]
    #[config(url)]
    pub url: Option<String>,
    /// The issuers the instance declares (none by default).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// When set, every user it vouches for carries this `iss` (declared or not).
    #[serde(default)]
    pub user_issuer: Option<String>,
}

/// The provider.
pub struct Faulty {
    mode: String,
    url: Option<String>,
    host: Host,
    calls: std::sync::atomic::AtomicU64,
    issuers: Vec<String>,
    user_issuer: Option<String>,
}

/// Tests rewrite the five letters after the colon in the built file to make a second version
/// of this plugin (different content, different answers) without a second build.
#[used]
static FLAVOR: [u8; 23] = *b"PORTCULLIS-FLAVOR:AAAAA";

/// This library copy's flavor, read from memory so that a rewritten file answers differently.
fn flavor() -> String {
    let bytes: &[u8; 23] = std::hint::black_box(&FLAVOR);
    String::from_utf8_lossy(&bytes[18..]).into_owned()
}

impl AuthProvider for Faulty {
    async fn authenticate(
        &self,
        token: String,
        _req: Request,
    ) -> Result<Option<User>, PluginError> {
        match self.mode.as_str() {
            "panic_authenticate" => panic!("authenticate exploded"),
            "hang_authenticate" => std::future::pending().await,
            "unavailable" => Err(PluginError::unavailable("identity provider is down")),
            "garbage_user" => Ok(Some(
                User::from_json("{not json".to_string()).unwrap_or_else(|_| {
                    // from_json only checks the first character; smuggle garbage past it.
                    User::from_claims(Default::default())
                }),
            )),
            mode => {
                if mode == "slow" {
                    if let Some(url) = &self.url {
                        self.host.get(url, &[]).await?;
                    }
                }
                let call = self
                    .calls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                Ok(token.strip_prefix("good-").map(|sub| {
                    let mut claims =
                        serde_json::json!({ "sub": sub, "flavor": flavor(), "call": call });
                    if let Some(iss) = &self.user_issuer {
                        claims["iss"] = iss.clone().into();
                    }
                    User::from_claims(claims.as_object().cloned().unwrap_or_default())
                }))
            }
        }
    }

    async fn authorize(&self, _user: User, req: Request) -> Result<bool, PluginError> {
        match self.mode.as_str() {
            "deny" => Ok(false),
            // An answer that depends on the path, which no per-subject cache may remember.
            "deny_admin_paths" => Ok(!req.path().contains("/admin")),
            "panic_authorize" => panic!("authorize exploded"),
            _ => Ok(true),
        }
    }

    fn reusable_authentication(&self) -> bool {
        self.mode == "count"
    }

    fn issuers(&self) -> Vec<String> {
        self.issuers.clone()
    }
}

/// The plugin.
pub struct FaultyPlugin;

impl Plugin for FaultyPlugin {
    type Provider = Faulty;
    type Config = Config;
    const NAME: &'static str = "faulty";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "test plugin that fails on demand";

    fn build(config: Config, host: Host) -> Result<Faulty, PluginError> {
        match config.mode.as_str() {
            "fail_ctor" => Err(PluginError::config("mode fail_ctor: refusing to start")),
            "panic_ctor" => panic!("constructor exploded"),
            "hang_ctor" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            _ => Ok(Faulty {
                mode: config.mode,
                url: config.url,
                host,
                calls: Default::default(),
                issuers: config.issuers,
                user_issuer: config.user_issuer,
            }),
        }
    }
}

export_provider!(FaultyPlugin);
