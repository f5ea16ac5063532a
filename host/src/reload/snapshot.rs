//! The runtime snapshot: a compiled config plus the provider instances it needs, built completely
//! before it is published with one atomic swap. Requests load it once and keep it to the end, so
//! in-flight requests finish on the set they started with; nothing is ever half-applied.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

pub use crate::auth::{MiddlewareInstance, ProviderInstance, RetiredInstance};
use crate::{
    auth::{authn_cache, authz_cache, AuthnCache, AuthzCache, Policy},
    config::{Config, PluginCheck},
    observe::telemetry::{self, PluginCall},
    plugin::{
        construct, construct_middleware, validate, CheckServices, InstanceServices, LoadedPlugin,
        Loader, PluginKind, PluginLoadError, SharedServices,
    },
};

/// A plugin file's state in a snapshot.
pub enum PluginFile {
    /// Loaded; its manifest is usable.
    Loaded(Arc<LoadedPlugin>),
    /// Could not be loaded; others are unaffected.
    Failed(PluginLoadError),
}

impl Snapshot {
    /// What the decision reads of this snapshot.
    pub fn policy(&self) -> Policy<'_> {
        Policy {
            config: &self.config,
            providers: &self.providers,
            retired: &self.retired,
        }
    }
}

/// A file a snapshot was built from, and the hash of its content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileHash {
    /// The path.
    pub path: String,
    /// SHA-256 of the content, or `unreadable: ...` when it could not be read.
    pub sha256: String,
}

/// An immutable, complete view of what the server enforces.
pub struct Snapshot {
    /// Increases by one on every published snapshot.
    pub generation: u64,
    /// The compiled config.
    pub config: Arc<Config>,
    /// Provider instances, in config order.
    pub providers: Vec<Arc<ProviderInstance>>,
    /// Instances named by the config whose plugin file was deleted or is no longer trusted.
    pub retired: Vec<RetiredInstance>,
    /// Middleware instances, one per `config.middleware` entry, at the same index.
    pub middleware: Vec<Arc<MiddlewareInstance>>,
    /// Every `*.so` found in the plugins folder.
    pub plugins: Vec<PluginFile>,
    /// Upstream latency series of `config.routes`, by route index; set by the app before the
    /// snapshot is published (a snapshot built for `check` times nothing).
    pub route_timers: crate::observe::metrics::RouteTimers,
    /// The TLS key and certificate new connections are accepted with, when serving https; set
    /// with the rest before the snapshot is published, so that one store changes everything.
    pub tls: Option<Arc<crate::http::listen::tls::TlsMaterial>>,
    /// Every file the snapshot was built from (config, plugins, TLS files, `${file:...}`
    /// secrets, routes' OpenAPI document files) with its hash; a reload that finds the same
    /// list is skipped.
    pub files: Vec<FileHash>,
    /// The upstream OpenAPI documents `routes:` name, read for this snapshot; set with the rest
    /// before the snapshot is published.
    pub route_docs: Arc<super::route_docs::RouteDocuments>,
}

/// Scans `dir` for `*.so` files, in name order.
pub fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot read plugins folder: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every plugin file in the config's plugins folder. One bad file never stops the others.
/// `known` maps paths to the content hashes the caller has just computed (see
/// [`Loader::load_known`]).
pub async fn load_plugins(
    config: &Config,
    loader: &Arc<Loader>,
    known: &HashMap<String, String>,
) -> Result<Vec<PluginFile>, String> {
    load_plugins_in(
        &config.plugins.dir,
        config.plugins.allow.clone(),
        loader,
        known,
    )
    .await
}

/// [`load_plugins`] for a folder and allow list of their own.
async fn load_plugins_in(
    dir: &Path,
    allow: Option<Vec<String>>,
    loader: &Arc<Loader>,
    known: &HashMap<String, String>,
) -> Result<Vec<PluginFile>, String> {
    let files = plugin_files(dir)?;
    let mut out: Vec<PluginFile> = Vec::new();
    for file in files {
        let (loader, allow2, f2) = (loader.clone(), allow.clone(), file.clone());
        let hash = known.get(&file.display().to_string()).cloned();
        let result = tokio::task::spawn_blocking(move || {
            loader.load_known(&f2, allow2.as_deref(), hash.as_deref())
        })
        .await
        .unwrap_or_else(|_| {
            Err(PluginLoadError::ModuleInit {
                file: file.clone(),
                reason: "loader panicked".into(),
            })
        });
        let entry = match result {
            Ok(p) => {
                // Providers and middleware have names of their own: a library may export a
                // provider and a middleware of the same name, two libraries may not export two
                // providers (or two middleware) of the same name.
                let clash = out.iter().find_map(|e| match e {
                    PluginFile::Loaded(o) => {
                        let provider = p.provider_name().filter(|n| o.provider_name() == Some(*n));
                        let middleware = p
                            .middleware_name()
                            .filter(|n| o.middleware_name() == Some(*n));
                        provider
                            .or(middleware)
                            .map(|n| (n.to_string(), o.file.clone()))
                    }
                    _ => None,
                });
                match clash {
                    Some((name, other)) => PluginFile::Failed(PluginLoadError::DuplicateName {
                        file: file.clone(),
                        name,
                        other,
                    }),
                    None => PluginFile::Loaded(p),
                }
            }
            Err(e) => PluginFile::Failed(e),
        };
        if let PluginFile::Failed(e) = &entry {
            tracing::error!("{e}");
        }
        out.push(entry);
    }
    Ok(out)
}

/// The loaded library that exports the `kind` plugin named `name`.
fn find_plugin(plugins: &[PluginFile], kind: PluginKind, name: &str) -> Option<Arc<LoadedPlugin>> {
    plugins.iter().find_map(|p| match p {
        PluginFile::Loaded(l) => {
            let n = match kind {
                PluginKind::Provider => l.provider_name(),
                PluginKind::Middleware => l.middleware_name(),
            };
            (n == Some(name)).then(|| l.clone())
        }
        PluginFile::Failed(_) => None,
    })
}

/// `{at}.plugin: no loaded provider (or middleware) plugin is named ...`, naming the files that failed to load (and the
/// library that has a plugin of that name of the other kind).
fn no_such_plugin(
    at: &str,
    kind: PluginKind,
    plugin: &str,
    dir: &Path,
    plugins: &[PluginFile],
) -> String {
    let (wanted, other_kind) = match kind {
        PluginKind::Provider => ("provider", PluginKind::Middleware),
        PluginKind::Middleware => ("middleware", PluginKind::Provider),
    };
    if let Some(other) = find_plugin(plugins, other_kind, plugin) {
        return format!(
            "{at}.plugin: `{plugin}` ({}) is a {} plugin, not a {wanted} plugin",
            other.file.display(),
            if wanted == "provider" {
                "middleware"
            } else {
                "provider"
            },
        );
    }
    let failed: Vec<String> = plugins
        .iter()
        .filter_map(|p| match p {
            PluginFile::Failed(e) => Some(e.file().display().to_string()),
            _ => None,
        })
        .collect();
    let hint = if failed.is_empty() {
        String::new()
    } else {
        format!(" (files that failed to load: {})", failed.join(", "))
    };
    format!(
        "{at}.plugin: no loaded {wanted} plugin is named `{plugin}` in {}{hint}",
        dir.display()
    )
}

/// The problems only plugins can find in a config that is refused for other reasons, so that one
/// pass reports them all: an instance naming no loaded plugin, and an instance `config:` its
/// plugin's `validate_config` refuses. Nothing is constructed. An instance that `previous` serves
/// (or has retired) under the same plugin name is not reported missing: a build would retire it.
/// Messages have the key paths [`build`] uses, with `${VAR}` values redacted.
pub async fn plugin_issues(
    check: &PluginCheck,
    loader: &Arc<Loader>,
    previous: Option<&Snapshot>,
) -> Vec<String> {
    let plugins =
        match load_plugins_in(&check.dir, check.allow.clone(), loader, &HashMap::new()).await {
            Ok(p) => p,
            Err(e) => return vec![e],
        };
    let mut out = Vec::new();
    let instances = check
        .instances
        .iter()
        .map(|ic| (PluginKind::Provider, ic))
        .chain(
            check
                .middleware
                .iter()
                .map(|ic| (PluginKind::Middleware, ic)),
        );
    for (kind, ic) in instances {
        let at = match kind {
            PluginKind::Provider => format!("providers[{}] ({})", ic.index, ic.name),
            PluginKind::Middleware => format!("middleware[{}] ({})", ic.index, ic.name),
        };
        let Some(plugin) = find_plugin(&plugins, kind, &ic.plugin) else {
            let served = previous.is_some_and(|prev| match kind {
                PluginKind::Provider => {
                    prev.providers
                        .iter()
                        .any(|p| p.name == ic.name && p.plugin.manifest.name == ic.plugin)
                        || prev
                            .retired
                            .iter()
                            .any(|r| r.name == ic.name && r.plugin == ic.plugin)
                }
                PluginKind::Middleware => prev
                    .config
                    .middleware
                    .iter()
                    .any(|m| m.name == ic.name && m.plugin == ic.plugin),
            });
            if !served {
                out.push(no_such_plugin(&at, kind, &ic.plugin, &check.dir, &plugins));
            }
            continue;
        };
        let services = CheckServices::new(&ic.name, ic.allow_http);
        let config = ic.config.to_string();
        if let Err(e) = validate(&plugin, kind, config, services, check.timeout).await {
            out.push(format!("{at}: {e}"));
        }
    }
    out.into_iter().map(|m| check.redact(&m)).collect()
}

/// Builds a complete snapshot, reusing unchanged instances of `previous`. Every problem is
/// returned at once; on any problem nothing is built.
pub async fn build(
    config: Config,
    generation: u64,
    loader: &Arc<Loader>,
    shared: &Arc<SharedServices>,
    previous: Option<&Snapshot>,
    known: &HashMap<String, String>,
) -> Result<Snapshot, Vec<String>> {
    let plugins = load_plugins(&config, loader, known)
        .await
        .map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut providers = Vec::new();
    let mut retired = Vec::new();
    for (i, pc) in config.providers.iter().enumerate() {
        let at = format!("providers[{i}] ({})", pc.name);
        let Some(plugin) = find_plugin(&plugins, PluginKind::Provider, &pc.plugin) else {
            if let Some(r) = retire(previous, pc, &plugins, config.plugins.allow.as_deref()) {
                tracing::warn!(provider = %r.name, "{}", r.reason);
                retired.push(r);
                continue;
            }
            errors.push(no_such_plugin(
                &at,
                PluginKind::Provider,
                &pc.plugin,
                &config.plugins.dir,
                &plugins,
            ));
            continue;
        };
        match build_instance(&at, pc, plugin, &config, shared, previous).await {
            Ok(p) => providers.push(Arc::new(p)),
            Err(e) => errors.push(e),
        }
    }
    let mut middleware = Vec::new();
    for (i, mc) in config.middleware.iter().enumerate() {
        let at = format!("middleware[{i}] ({})", mc.name);
        match build_middleware(&at, mc, &plugins, &config, shared, previous).await {
            Ok(m) => middleware.push(Arc::new(m)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The host answers repeated tokens itself while it keeps them: the verifiers then only see
    // tokens it does not hold, and need not hash and store each one again. Only now: the flag is
    // shared with the instance the serving snapshot may hold, which a failed build must leave
    // as it is.
    for p in &providers {
        p.verifiers_remember.store(
            p.authn_cache.is_none(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    Ok(Snapshot {
        generation,
        config: Arc::new(config),
        providers,
        retired,
        middleware,
        plugins,
        route_timers: Default::default(),
        tls: None,
        files: Vec::new(),
        route_docs: Default::default(),
    })
}

/// Builds one provider instance of `config` (`pc`, the `at`-th), or keeps `previous`'s when its
/// plugin build and config are unchanged: the same plugin object with its caches and calls in
/// flight. A new one starts with empty caches.
async fn build_instance(
    at: &str,
    pc: &crate::config::ProviderConfig,
    plugin: Arc<LoadedPlugin>,
    config: &Config,
    shared: &Arc<SharedServices>,
    previous: Option<&Snapshot>,
) -> Result<ProviderInstance, String> {
    if pc.allow_http {
        tracing::warn!(provider = %pc.name, "dangerous.allow_http is set: plain-http identity provider URLs are accepted");
    }
    let config_json = pc.config.to_string();
    let build_key = format!(
        "{}|{}|{}|{}",
        plugin.hash,
        pc.allow_http,
        config.server.max_token_bytes,
        crate::plugin::sha256_hex(config_json.as_bytes())
    );
    let reused = previous.and_then(|prev| {
        prev.providers
            .iter()
            .find(|p| p.name == pc.name && p.build_key == build_key)
    });
    // The same instance keeps its cached answers (same plugin, same config); anything else
    // starts empty.
    let ttl = pc.authorization_cache.ttl(
        plugin.manifest.authorize_by_subject,
        authz_cache::DEFAULT_TTL,
    );
    let authz_cache = ttl.map(|ttl| {
        reused
            .and_then(|p| p.authz_cache.clone())
            .filter(|c| c.ttl() == ttl)
            .unwrap_or_else(|| Arc::new(AuthzCache::new(ttl, authz_cache::MAX_ENTRIES)))
    });
    // The same instance keeps counting the calls it has in flight across reloads.
    let in_flight_limit = config.server.plugin_max_in_flight;
    let reused_parts = reused.map(|p| {
        (
            p.provider.with_limit(in_flight_limit),
            p.key_sets.clone(),
            p.verifiers_remember.clone(),
        )
    });
    let (provider, key_sets, verifiers_remember) = match reused_parts {
        Some(p) => p,
        None => {
            let services = InstanceServices::new(
                shared.clone(),
                &pc.name,
                pc.allow_http,
                config.server.max_token_bytes,
            );
            let key_sets = services.key_sets().clone();
            let remember = services.verifiers_remember().clone();
            let ctor = construct(
                &plugin,
                config_json,
                services,
                config.server.plugin_timeout,
                in_flight_limit,
            );
            let (name, plugin_name) = (&pc.name, &plugin.manifest.name);
            match telemetry::traced(PluginCall::Construct, name, plugin_name, ctor).await {
                Ok(p) => (p, key_sets, remember),
                Err(e) => return Err(format!("{at}: {e}")),
            }
        }
    };
    #[cfg(feature = "bench-direct")]
    let mut provider = provider;
    let issuers = provider.issuers();
    let max_age = pc.authentication_cache.ttl(
        provider.reusable_authentication(),
        authn_cache::DEFAULT_MAX_AGE,
    );
    // Accepted tokens carry the authorization answers they were given (`AuthzMemo`): they are
    // kept only with the authorization cache those answers came from.
    let same_authz = reused.is_some_and(|p| match (&p.authz_cache, &authz_cache) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    });
    let authn_cache = max_age.map(|age| {
        reused
            .filter(|_| same_authz)
            .and_then(|p| p.authn_cache.clone())
            .filter(|c| c.max_age() == age)
            .unwrap_or_else(|| Arc::new(AuthnCache::new(age, authn_cache::MAX_BYTES)))
    });
    #[cfg(feature = "bench-direct")]
    let direct = (plugin.manifest.name == "jwt")
        .then(|| {
            let services = InstanceServices::new(
                shared.clone(),
                &pc.name,
                pc.allow_http,
                config.server.max_token_bytes,
            );
            // This build's own verifier, so set here (the instance's is set below, once the
            // whole snapshot is built).
            services
                .verifiers_remember()
                .store(authn_cache.is_none(), std::sync::atomic::Ordering::Relaxed);
            crate::plugin::direct_verifier(&services, &pc.config)
        })
        .flatten();
    #[cfg(feature = "bench-direct")]
    provider.set_direct(direct);
    Ok(ProviderInstance {
        name: pc.name.clone(),
        plugin,
        provider,
        issuers,
        authorize: pc.authorize.clone(),
        authz_cache,
        authn_cache,
        key_sets,
        verifiers_remember,
        build_key,
    })
}

/// Builds one middleware instance (`mc`, the `at`-th), or keeps `previous`'s when its plugin
/// build and config are unchanged: the same plugin object, with the state it holds (a rate
/// limiter's buckets) and its calls in flight. An instance whose plugin file was deleted, or whose
/// build is no longer trusted, is retired (its requests are refused) rather than failing the
/// reload, as a provider instance is.
async fn build_middleware(
    at: &str,
    mc: &crate::config::MiddlewareConfig,
    plugins: &[PluginFile],
    config: &Config,
    shared: &Arc<SharedServices>,
    previous: Option<&Snapshot>,
) -> Result<MiddlewareInstance, String> {
    let in_flight_limit = config.server.plugin_max_in_flight;
    let prev = previous.and_then(|p| {
        p.config
            .middleware
            .iter()
            .zip(&p.middleware)
            .find(|(c, _)| c.name == mc.name && c.plugin == mc.plugin)
            .map(|(_, m)| m.clone())
    });
    let Some(plugin) = find_plugin(plugins, PluginKind::Middleware, &mc.plugin) else {
        let allow = config.plugins.allow.as_deref();
        let trusted =
            |hash: &str| allow.is_none_or(|a| a.iter().any(|h| h.eq_ignore_ascii_case(hash)));
        let why = prev.as_ref().and_then(|m| match (&m.plugin, &m.retired) {
            (_, Some(reason)) => Some(reason.clone()),
            (Some(p), None) if !trusted(&p.hash) => Some(format!(
                "middleware {}: plugin `{}` at {} (sha256 {}) is no longer in plugins.allow; requests it runs for are refused until a trusted build is loaded",
                mc.name, mc.plugin, p.file.display(), p.hash
            )),
            (Some(p), None) if !p.file.exists() && !plugins.iter().any(|f| matches!(f, PluginFile::Failed(e) if e.file() == p.file.as_path())) => Some(format!(
                "middleware {}: plugin `{}` was removed ({} is gone); requests it runs for are refused until it is back",
                mc.name, mc.plugin, p.file.display()
            )),
            _ => None,
        });
        if let Some(reason) = why {
            tracing::warn!(middleware = %mc.name, "{reason}");
            return Ok(MiddlewareInstance {
                name: mc.name.clone(),
                plugin: None,
                handle: None,
                retired: Some(reason),
                build_key: String::new(),
            });
        }
        return Err(no_such_plugin(
            at,
            PluginKind::Middleware,
            &mc.plugin,
            &config.plugins.dir,
            plugins,
        ));
    };
    let config_json = mc.config.to_string();
    let build_key = format!(
        "{}|{}",
        plugin.hash,
        crate::plugin::sha256_hex(config_json.as_bytes())
    );
    if let Some(m) = prev.as_ref().filter(|m| m.build_key == build_key) {
        if let Some(handle) = &m.handle {
            return Ok(MiddlewareInstance {
                name: mc.name.clone(),
                plugin: Some(plugin),
                handle: Some(handle.with_limit(in_flight_limit)),
                retired: None,
                build_key,
            });
        }
    }
    let services = InstanceServices::new(
        shared.clone(),
        &mc.name,
        false,
        config.server.max_token_bytes,
    );
    let ctor = construct_middleware(
        &plugin,
        config_json,
        services,
        config.server.plugin_timeout,
        in_flight_limit,
    );
    let plugin_name = plugin.middleware_name().unwrap_or_default().to_string();
    let handle = telemetry::traced(PluginCall::Construct, &mc.name, &plugin_name, ctor)
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    Ok(MiddlewareInstance {
        name: mc.name.clone(),
        plugin: Some(plugin),
        handle: Some(handle),
        retired: None,
        build_key,
    })
}

/// Asks every instance `runtime` built anew (not one it kept from `previous`) to prepare itself
/// (`Provider::warm_up`, ABI 1.1; a plugin of ABI 1.0 answers at once), in the background, all
/// at the same time, each bounded by `server.plugin_timeout`. Neither a start nor a reload waits
/// for it (an identity provider that is slow to answer must not hold a config change back); a
/// plugin makes its first requests wait for the work in flight rather than start it again. A
/// failure is logged and changes nothing: requests then do the work themselves.
pub fn warm_up(runtime: &Snapshot, previous: Option<&Snapshot>) {
    let timeout = runtime.config.server.plugin_timeout;
    let fresh: Vec<Arc<ProviderInstance>> = runtime
        .providers
        .iter()
        .filter(|p| {
            !previous.is_some_and(|prev| {
                prev.providers
                    .iter()
                    .any(|q| q.provider.same_object(&p.provider))
            })
        })
        .cloned()
        .collect();
    if fresh.is_empty() {
        return;
    }
    let calls = fresh.into_iter().map(move |p| async move {
        if let Err(e) = p.provider.warm_up(timeout).await {
            tracing::warn!(provider = %p.name, "warm-up failed, requests will try again: {}", e.message());
        }
    });
    tokio::spawn(futures_util::future::join_all(calls));
}

/// An instance of the previous snapshot whose plugin file is gone (not merely unloadable: a file
/// being rewritten in place fails to load and must not retire anything), or whose plugin build's
/// hash was taken out of `plugins.allow`, is retired rather than failing the reload, so that
/// deleting or distrusting a plugin takes effect (and the distrusted code stops serving at once).
fn retire(
    previous: Option<&Snapshot>,
    pc: &crate::config::ProviderConfig,
    plugins: &[PluginFile],
    allow: Option<&[String]>,
) -> Option<RetiredInstance> {
    let prev = previous?;
    let trusted = |hash: &str| allow.is_none_or(|a| a.iter().any(|h| h.eq_ignore_ascii_case(hash)));
    let distrust = |file: Option<&Path>, hash: &str| {
        RetiredInstance {
        name: pc.name.clone(),
        plugin: pc.plugin.clone(),
        issuers: Vec::new(),
        reason: format!(
            "provider {}: plugin `{}`{} (sha256 {hash}) is no longer in plugins.allow; requests that need it are refused until a trusted build is loaded",
            pc.name,
            pc.plugin,
            file.map(|f| format!(" at {}", f.display())).unwrap_or_default(),
        ),
        distrusted: Some(hash.to_string()),
    }
    };
    if let Some(p) = prev
        .providers
        .iter()
        .find(|p| p.name == pc.name && p.plugin.provider_name() == Some(pc.plugin.as_str()))
    {
        if !trusted(&p.plugin.hash) {
            return Some(RetiredInstance {
                issuers: p.issuers.clone(),
                ..distrust(Some(&p.plugin.file), &p.plugin.hash)
            });
        }
        let file = &p.plugin.file;
        let still_there = file.exists()
            || plugins.iter().any(|p| match p {
                PluginFile::Failed(e) => e.file() == file.as_path(),
                PluginFile::Loaded(_) => false,
            });
        if still_there {
            return None;
        }
        return Some(RetiredInstance {
            name: pc.name.clone(),
            plugin: pc.plugin.clone(),
            issuers: p.issuers.clone(),
            reason: format!(
                "provider {}: plugin `{}` was removed ({} is gone); requests that need it are refused until it is back",
                pc.name,
                pc.plugin,
                file.display()
            ),
            distrusted: None,
        });
    }
    let r = prev
        .retired
        .iter()
        .find(|r| r.name == pc.name && r.plugin == pc.plugin)?;
    if let Some(hash) = r.distrusted.as_deref().filter(|h| !trusted(h)) {
        return Some(RetiredInstance {
            issuers: r.issuers.clone(),
            reason: r.reason.clone(),
            ..distrust(None, hash)
        });
    }
    Some(RetiredInstance {
        name: pc.name.clone(),
        plugin: pc.plugin.clone(),
        issuers: r.issuers.clone(),
        reason: format!(
            "provider {}: plugin `{}` is still missing; requests that need it are refused",
            pc.name, pc.plugin
        ),
        distrusted: None,
    })
}
