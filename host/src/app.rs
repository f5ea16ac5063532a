//! The application: the published runtime snapshot, what survives reloads (loaded libraries, key
//! caches), and the reload procedure every trigger goes through.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;

use crate::{
    config::{self, Config, EnvVars},
    http::HttpClient,
    keys::{KeyCache, KeyCacheSettings},
    plugin::{sha256_hex, Loader, SharedServices},
    runtime::{self, Runtime},
    state,
};

/// The last reload attempt and the last success.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Generation of the snapshot being served.
    pub generation: u64,
    /// Hash of the config file being served.
    pub config_hash: String,
    /// Combined hash of the plugin files being served.
    pub plugins_hash: String,
    /// The last attempt.
    pub last_attempt: Option<Attempt>,
    /// The last attempt that published a snapshot.
    pub last_success: Option<Attempt>,
}

/// One reload attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    /// Unix seconds.
    pub at: u64,
    /// What asked for it (`startup`, `admin`, `signal`, `watch`).
    pub trigger: String,
    /// `applied`, `unchanged` or `failed`.
    pub result: String,
    /// The problems, one line each (no secrets).
    pub errors: Vec<String>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot was published.
    Applied(u64),
    /// The config and plugin files are the same as the ones served.
    Unchanged(u64),
    /// Nothing changed; these are the reasons.
    Failed(Vec<String>),
}

/// The running application.
pub struct App {
    runtime: ArcSwap<Runtime>,
    loader: Arc<Loader>,
    shared: Arc<SharedServices>,
    config_path: PathBuf,
    status: Mutex<ReloadStatus>,
    reload_lock: tokio::sync::Mutex<()>,
    listen: (String, u16),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loads and compiles the config at `path`, expanding `${VAR}` from the environment.
pub fn read_config(path: &Path) -> Result<Config, config::ConfigError> {
    let vars = EnvVars {
        dev_secret: &state::dev_secret,
    };
    config::load_file(path, &vars)
}

/// A hash over every plugin file's name and content (what "unchanged" compares).
fn plugins_hash(dir: &Path) -> String {
    let mut acc = String::new();
    if let Ok(files) = runtime::plugin_files(dir) {
        for f in files {
            let h = std::fs::read(&f)
                .map(|b| sha256_hex(&b))
                .unwrap_or_default();
            acc.push_str(&format!("{}={h};", f.display()));
        }
    }
    sha256_hex(acc.as_bytes())
}

impl App {
    /// Reads the config, loads the plugins and builds the first snapshot. Fails with every problem.
    pub async fn start(config_path: &Path) -> Result<Arc<App>, Vec<String>> {
        let config = read_config(config_path).map_err(|e| {
            e.issues()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?;
        let loader = Arc::new(
            Loader::in_temp_dir().map_err(|e| vec![format!("plugin staging folder: {e}")])?,
        );
        let http = HttpClient::new().map_err(|e| vec![e])?;
        let shared = Arc::new(SharedServices {
            http: http.clone(),
            keys: Arc::new(KeyCache::new(http, KeyCacheSettings::default())),
            max_response_bytes: 4 * 1024 * 1024,
            http_timeout: Duration::from_secs(10),
        });
        let config_hash = config.hash.clone();
        let plugins_hash = plugins_hash(&config.plugins.dir);
        let listen = (config.server.host.clone(), config.server.port);
        let rt = runtime::build(config, 1, &loader, &shared, None).await?;
        let attempt = Attempt {
            at: now_secs(),
            trigger: "startup".into(),
            result: "applied".into(),
            errors: vec![],
        };
        let status = ReloadStatus {
            generation: 1,
            config_hash,
            plugins_hash,
            last_attempt: Some(attempt.clone()),
            last_success: Some(attempt),
        };
        Ok(Arc::new(App {
            runtime: ArcSwap::from_pointee(rt),
            loader,
            shared,
            config_path: config_path.to_path_buf(),
            status: Mutex::new(status),
            reload_lock: tokio::sync::Mutex::new(()),
            listen,
        }))
    }

    /// The snapshot to serve one request with (load once, keep to the end).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The config file being served.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Reload status.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Distinct plugin library copies mapped (never unmapped).
    pub fn mapped_libraries(&self) -> usize {
        self.loader.mapped_count()
    }

    /// JWKS cache counters.
    pub fn key_sets(&self) -> Vec<crate::keys::KeySetStats> {
        self.shared.keys.stats()
    }

    /// Reads the config and plugins again and publishes a new snapshot if anything changed and
    /// everything is valid. On any problem the served snapshot stays as it was.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one_at_a_time = self.reload_lock.lock().await;
        let outcome = self.try_reload().await;
        let (result, errors) = match &outcome {
            ReloadOutcome::Applied(_) => ("applied", vec![]),
            ReloadOutcome::Unchanged(_) => ("unchanged", vec![]),
            ReloadOutcome::Failed(e) => ("failed", e.clone()),
        };
        let attempt = Attempt {
            at: now_secs(),
            trigger: trigger.into(),
            result: result.into(),
            errors,
        };
        match &outcome {
            ReloadOutcome::Applied(g) => tracing::info!(generation = g, trigger, "config reloaded"),
            ReloadOutcome::Unchanged(_) => tracing::debug!(trigger, "reload: nothing changed"),
            ReloadOutcome::Failed(errs) => {
                for e in errs {
                    tracing::error!(
                        trigger,
                        "reload rejected, still serving the last good config: {e}"
                    );
                }
            }
        }
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(outcome, ReloadOutcome::Applied(_)) {
            st.last_success = Some(attempt.clone());
        }
        st.last_attempt = Some(attempt);
        outcome
    }

    async fn try_reload(&self) -> ReloadOutcome {
        let config = match read_config(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                return ReloadOutcome::Failed(e.issues().iter().map(ToString::to_string).collect())
            }
        };
        let current = self.runtime();
        let plugins_hash = plugins_hash(&config.plugins.dir);
        {
            let st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            if st.config_hash == config.hash && st.plugins_hash == plugins_hash {
                return ReloadOutcome::Unchanged(current.generation);
            }
        }
        let mut refused = Vec::new();
        if config.server.host != self.listen.0 {
            refused.push(
                "server.host: cannot change while running; restart to listen elsewhere".to_string(),
            );
        }
        if config.server.port != self.listen.1 {
            refused.push(
                "server.port: cannot change while running; restart to listen elsewhere".to_string(),
            );
        }
        if !refused.is_empty() {
            return ReloadOutcome::Failed(refused);
        }
        let generation = current.generation + 1;
        let config_hash = config.hash.clone();
        match runtime::build(
            config,
            generation,
            &self.loader,
            &self.shared,
            Some(&current),
        )
        .await
        {
            Ok(rt) => {
                self.runtime.store(Arc::new(rt));
                let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
                st.generation = generation;
                st.config_hash = config_hash;
                st.plugins_hash = plugins_hash;
                ReloadOutcome::Applied(generation)
            }
            Err(errors) => ReloadOutcome::Failed(errors),
        }
    }
}
