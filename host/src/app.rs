//! The application: the published runtime snapshot, what survives reloads (loaded libraries, key
//! caches), and the reload procedure every trigger goes through.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::{
    config::state,
    config::{self, Config, EnvVars},
    http::listen::{
        conn_guard::HeaderTimeout,
        tls::{TlsMaterial, TlsSource},
    },
    http::server,
    keys::HttpClient,
    keys::{KeyCache, KeyCacheSettings},
    observe::metrics::Metrics,
    observe::telemetry::LogFormat,
    plugin::{Loader, SharedServices},
    reload::snapshot::FileHash,
    reload::{
        route_docs,
        snapshot::{self, Snapshot},
        ReloadError, ReloadOutcome, ReloadRequest, ReloadResult, Reloader,
    },
};

/// The last reload attempt and the last success, with what the served snapshot was built from.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Generation of the snapshot being served.
    pub generation: u64,
    /// Hash of the config file being served.
    pub config_hash: String,
    /// Every file the served snapshot was built from (config, plugins, TLS key and certificate,
    /// `${file:...}` secrets) with its SHA-256; a reload that finds the same list is skipped. A
    /// secret file's digest is keyed with a random per-process key, so it shows a change without
    /// offering a hash to guess the secret against.
    pub files: Vec<FileHash>,
    /// The last attempt.
    pub last_attempt: Option<Attempt>,
    /// The last attempt that published a snapshot.
    pub last_success: Option<Attempt>,
}

/// The last reload attempt and the last success (a failed attempt changes no snapshot, so these
/// live beside it).
#[derive(Debug, Clone, Default)]
struct Attempts {
    last_attempt: Option<Attempt>,
    last_success: Option<Attempt>,
}

impl HeaderTimeout for App {
    fn header_read_timeout(&self) -> Duration {
        self.snapshot.load().config.server.header_read_timeout
    }
}

impl TlsSource for App {
    fn current(&self) -> Option<Arc<TlsMaterial>> {
        self.snapshot.load().tls.clone()
    }
}

/// One reload attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    /// Unix seconds.
    pub at: u64,
    /// What asked for it (`startup`, `admin`, `signal`, `watch`, `program` for an embedding
    /// program's `Portcullis::reload`; several joined by `+` when requests arrived together and
    /// were served by one attempt).
    pub trigger: String,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
    /// What it did.
    pub result: ReloadResult,
    /// The problems, one line each (no secrets), each with its kind.
    pub errors: Vec<ReloadError>,
    /// The config's warnings (what it says that can never take effect), one line each; for an
    /// applied or unchanged config only.
    pub warnings: Vec<String>,
}

/// The running application.
pub struct App {
    snapshot: ArcSwap<Snapshot>,
    loader: Arc<Loader>,
    shared: Arc<SharedServices>,
    config_path: PathBuf,
    status: Mutex<Attempts>,
    reload_lock: tokio::sync::Mutex<()>,
    reloader: Reloader,
    listen: (String, u16),
    /// `server.metrics.listen` at start (its listener is bound once, like the main one).
    metrics_listen: Option<std::net::SocketAddr>,
    watch: crate::reload::watch::SharedWatchStatus,
    metrics: Arc<Metrics>,
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

/// [`read_config`] for a start, a reload and `check`: when the config is refused, the checks only
/// plugins can make (a plugin of that name, an instance `config:` it accepts) still run, so one
/// pass reports every problem. Each line names the file once.
pub async fn read_config_reporting_all(
    path: &Path,
    loader: &Arc<Loader>,
    previous: Option<&Snapshot>,
) -> Result<Config, Vec<ReloadError>> {
    // The variable source is not `Send`: done with before the first await.
    let loaded = {
        let vars = EnvVars {
            dev_secret: &state::dev_secret,
        };
        config::load_file_checked(path, &vars)
    };
    match loaded {
        Ok(c) => Ok(c),
        Err(refused) => {
            let mut lines: Vec<ReloadError> = refused
                .error
                .lines()
                .into_iter()
                .map(ReloadError::config)
                .collect();
            if let Some(check) = &refused.plugins {
                let file = refused.error.file();
                let found = snapshot::plugin_issues(check, loader, previous).await;
                lines.extend(
                    found
                        .into_iter()
                        .map(|m| ReloadError::plugin(format!("{file}: {m}"))),
                );
            }
            Err(lines)
        }
    }
}

fn file_hash(path: &Path) -> FileHash {
    FileHash {
        path: path.display().to_string(),
        sha256: match crate::plugin::sha256_file(path) {
            Ok(h) => h,
            Err(e) => format!("unreadable: {e}"),
        },
    }
}

/// A `${file:...}` secret's digest: SHA-256 of a per-process random key and the content.
fn secret_file_hash(path: &Path) -> FileHash {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // Without randomness the key stays zero: the digest still detects a change.
        let _ = aws_lc_rs::rand::fill(&mut k);
        k
    });
    FileHash {
        path: path.display().to_string(),
        sha256: match std::fs::read(path) {
            Ok(bytes) => format!(
                "keyed:{}",
                crate::plugin::sha256_hex(&[&key[..], &bytes].concat())
            ),
            Err(e) => format!("unreadable: {e}"),
        },
    }
}

/// The files a snapshot of `config` is built from, with their hashes (what "unchanged" compares).
/// Hashing reads every plugin file (megabytes each), so it runs on the blocking pool, not on a
/// thread that serves requests.
async fn input_files(config_path: &Path, config: &Config) -> Vec<FileHash> {
    let config_file = FileHash {
        path: config_path.display().to_string(),
        sha256: config.hash.clone(),
    };
    let dir = config.plugins.dir.clone();
    let tls = config
        .server
        .https
        .as_ref()
        .map(|h| (h.key.clone(), h.cert.clone()));
    let dir_name = dir.display().to_string();
    let secrets = config.var_files.clone();
    let documents: Vec<PathBuf> = config
        .routes
        .list
        .iter()
        .filter_map(|r| match &r.openapi {
            Some(config::OpenApiSource::File(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let hashed = tokio::task::spawn_blocking(move || {
        let mut out: Vec<FileHash> = secrets.iter().map(|f| secret_file_hash(f)).collect();
        out.extend(documents.iter().map(|f| file_hash(f)));
        if let Ok(files) = snapshot::plugin_files(&dir) {
            out.extend(files.iter().map(|f| file_hash(f)));
        }
        if let Some((key, cert)) = tls {
            out.push(file_hash(&key));
            out.push(file_hash(&cert));
        }
        out
    })
    .await
    .unwrap_or_else(|_| {
        // Never equal to a real hash: the reload goes ahead and the loader reads for itself.
        vec![FileHash {
            path: dir_name,
            sha256: "unreadable: hashing failed".into(),
        }]
    });
    let mut out = vec![config_file];
    out.extend(hashed);
    out
}

/// The content hashes just computed, by path, for the loader to reuse.
fn known_hashes(files: &[FileHash]) -> std::collections::HashMap<String, String> {
    files
        .iter()
        .filter(|f| !f.sha256.starts_with("unreadable"))
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect()
}

impl App {
    /// Reads the config, loads the plugins and builds the first snapshot. Fails with every problem.
    pub async fn start(config_path: &Path) -> Result<Arc<App>, Vec<ReloadError>> {
        let loader = Arc::new(
            Loader::in_temp_dir()
                .map_err(|e| vec![ReloadError::plugin(format!("plugin staging folder: {e}"))])?,
        );
        let config = read_config_reporting_all(config_path, &loader, None).await?;
        let mut warnings = config.warning_lines();
        for w in &warnings {
            tracing::warn!("config warning: {w}");
        }
        let http = HttpClient::new().map_err(|e| vec![ReloadError::config(e)])?;
        let shared = Arc::new(SharedServices {
            http: http.clone(),
            keys: Arc::new(KeyCache::new(http, KeyCacheSettings::default())),
            max_response_bytes: 4 * 1024 * 1024,
            http_timeout: Duration::from_secs(10),
        });
        let started = std::time::Instant::now();
        let files = input_files(config_path, &config).await;
        let listen = (config.server.host.clone(), config.server.port);
        let metrics_listen = config.server.metrics.listen();
        let tls = match &config.server.https {
            Some(h) => Some(Arc::new(
                TlsMaterial::load(h).map_err(|e| vec![ReloadError::tls(e)])?,
            )),
            None => None,
        };
        let metrics = Arc::new(Metrics::new(shared.keys.clone(), loader.clone()));
        let mut rt = snapshot::build(config, 1, &loader, &shared, None, &known_hashes(&files))
            .await
            .map_err(plugin_errors)?;
        rt.route_timers = metrics.route_timers(&rt.config.routes.list);
        rt.tls = tls;
        rt.files = files;
        rt.route_docs = Arc::new(route_docs::load(&rt.config, &shared.http).await);
        for w in rt.route_docs.warnings() {
            tracing::warn!("{w}");
            warnings.push(w);
        }
        snapshot::warm_up(&rt, None);
        metrics.observe_reload("applied", 1);
        let attempt = Attempt {
            at: now_secs(),
            trigger: "startup".into(),
            duration_ms: started.elapsed().as_millis() as u64,
            result: ReloadResult::Applied,
            errors: vec![],
            warnings,
        };
        let status = Attempts {
            last_attempt: Some(attempt.clone()),
            last_success: Some(attempt),
        };
        let (reloader, reload_rx) = Reloader::channel();
        let app = Arc::new(App {
            snapshot: ArcSwap::from_pointee(rt),
            loader,
            shared,
            config_path: config_path.to_path_buf(),
            status: Mutex::new(status),
            reload_lock: tokio::sync::Mutex::new(()),
            reloader,
            listen,
            metrics_listen,
            watch: Arc::default(),
            metrics,
        });
        tokio::spawn(reload_task(app.clone(), reload_rx));
        Ok(app)
    }

    /// Asks the reload task for a reload and waits for its outcome. Requests that arrive while
    /// one is queued are served by the same attempt.
    pub async fn request_reload(&self, trigger: &'static str) -> ReloadOutcome {
        self.reloader.request(trigger).await
    }

    /// The reload task's queue, for triggers that run apart from the app (the file watch).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The file watch's state (shared with the watch task).
    pub fn watch_status(&self) -> crate::reload::watch::SharedWatchStatus {
        self.watch.clone()
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The plugin loader.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// The snapshot to serve one request with (load once, keep to the end).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The config file being served.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Reload status: what the served snapshot was built from, and the last attempts.
    pub fn status(&self) -> ReloadStatus {
        let rt = self.snapshot();
        let attempts = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ReloadStatus {
            generation: rt.generation,
            config_hash: rt.config.hash.clone(),
            files: rt.files.clone(),
            last_attempt: attempts.last_attempt,
            last_success: attempts.last_success,
        }
    }

    /// Distinct plugin library copies mapped (never unmapped).
    pub fn mapped_libraries(&self) -> usize {
        self.loader.mapped_count()
    }

    /// The process's key-set cache.
    pub fn key_cache(&self) -> &Arc<crate::keys::KeyCache> {
        &self.shared.keys
    }

    /// Counters of every key set.
    pub fn key_sets(&self) -> Vec<crate::keys::KeySetStats> {
        self.shared.keys.stats()
    }

    /// Reads the config and plugins again and publishes a new snapshot if anything changed and
    /// everything is valid. On any problem the served snapshot stays as it was.
    pub async fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one_at_a_time = self.reload_lock.lock().await;
        let started = std::time::Instant::now();
        let outcome = self.try_reload().await;
        let (errors, warnings) = match &outcome {
            ReloadOutcome::Applied(_, w) | ReloadOutcome::Unchanged(_, w) => (vec![], w.clone()),
            ReloadOutcome::Failed(e) => (e.clone(), vec![]),
        };
        let result = outcome.result();
        self.metrics
            .observe_reload(result.name(), self.snapshot().generation);
        let attempt = Attempt {
            at: now_secs(),
            trigger: trigger.into(),
            duration_ms: started.elapsed().as_millis() as u64,
            result,
            errors,
            warnings,
        };
        match &outcome {
            ReloadOutcome::Applied(g, warnings) => {
                tracing::info!(generation = g, trigger, "config reloaded");
                // Once per new config: an unchanged one was warned about when it was applied.
                for w in warnings {
                    tracing::warn!(trigger, "config warning: {w}");
                }
            }
            ReloadOutcome::Unchanged(..) => tracing::debug!(trigger, "reload: nothing changed"),
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
        if matches!(outcome, ReloadOutcome::Applied(..)) {
            st.last_success = Some(attempt.clone());
        }
        st.last_attempt = Some(attempt);
        outcome
    }

    async fn try_reload(&self) -> ReloadOutcome {
        let current = self.snapshot();
        let config = match read_config_reporting_all(
            &self.config_path,
            &self.loader,
            Some(&current),
        )
        .await
        {
            Ok(c) => c,
            Err(errors) => return ReloadOutcome::Failed(errors),
        };
        let files = input_files(&self.config_path, &config).await;
        let mut warnings = config.warning_lines();
        if current.files == files {
            // The served snapshot's documents are as they were read.
            warnings.extend(current.route_docs.warnings());
            return ReloadOutcome::Unchanged(current.generation, warnings);
        }
        let mut refused = Vec::new();
        if config.server.host != self.listen.0 {
            refused.push(ReloadError::restart(
                "server.host: cannot change while running; restart to listen elsewhere",
            ));
        }
        if config.server.port != self.listen.1 {
            refused.push(ReloadError::restart(
                "server.port: cannot change while running; restart to listen elsewhere",
            ));
        }
        if config.server.metrics.listen() != self.metrics_listen {
            refused.push(ReloadError::restart(
                "server.metrics.listen: cannot change while running (nor be added or removed); restart to serve metrics elsewhere",
            ));
        }
        if config.telemetry != current.config.telemetry {
            refused.push(ReloadError::restart(
                "telemetry: cannot change while running; restart to export elsewhere",
            ));
        }
        match (&config.server.https, &current.tls) {
            (Some(_), None) | (None, Some(_)) => refused.push(ReloadError::restart(
                "server.https: cannot switch TLS on or off while running; restart to change it",
            )),
            _ => {}
        }
        if !refused.is_empty() {
            return ReloadOutcome::Failed(refused);
        }
        // New key or certificate content is checked before anything is swapped.
        // New key or certificate content is checked before anything is built; unchanged
        // material is kept as it is.
        let tls = match (&config.server.https, &current.tls) {
            (Some(h), Some(served)) => match TlsMaterial::load(h) {
                Ok(m) if m.hash != served.hash => {
                    tracing::info!("tls key and certificate replaced for new connections");
                    Some(Arc::new(m))
                }
                Ok(_) => Some(served.clone()),
                Err(e) => return ReloadOutcome::Failed(vec![ReloadError::tls(e)]),
            },
            _ => None,
        };
        let generation = current.generation + 1;
        match snapshot::build(
            config,
            generation,
            &self.loader,
            &self.shared,
            Some(&current),
            &known_hashes(&files),
        )
        .await
        {
            Ok(mut rt) => {
                rt.route_timers = self.metrics.route_timers(&rt.config.routes.list);
                rt.tls = tls;
                rt.files = files;
                // Read again for every new snapshot (a document is the upstream's, and may have
                // changed with it); a document that cannot be read is a warning, not a failure.
                rt.route_docs = Arc::new(route_docs::load(&rt.config, &self.shared.http).await);
                warnings.extend(rt.route_docs.warnings());
                snapshot::warm_up(&rt, Some(&current));
                // One store: the config, the instances, the TLS material and what they were built
                // from change together.
                self.snapshot.store(Arc::new(rt));
                ReloadOutcome::Applied(generation, warnings)
            }
            Err(errors) => ReloadOutcome::Failed(plugin_errors(errors)),
        }
    }
}

/// What, besides the admin endpoint, asks the running engine for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggers {
    /// Watch the config file's folder and the plugins folder.
    pub watch: bool,
    /// Reload on `SIGHUP`.
    pub sighup: bool,
}

impl Default for Triggers {
    /// Both, as `portcullis serve` runs.
    fn default() -> Self {
        Triggers {
            watch: true,
            sighup: true,
        }
    }
}

impl App {
    /// The engine `portcullis serve` runs, and an embedding program too: [`App::start`] (config,
    /// plugins, key caches, metrics, the reload task), then the reload triggers. A platform
    /// without a file watch is warned about and reloads on the other triggers.
    pub async fn start_engine(
        config_path: &Path,
        triggers: Triggers,
    ) -> Result<Arc<App>, Vec<ReloadError>> {
        let app = App::start(config_path).await?;
        if triggers.sighup {
            spawn_sighup(app.clone());
        }
        if triggers.watch {
            if let Err(e) = crate::reload::watch::spawn(crate::reload::watch::Watched {
                reloader: app.reloader(),
                config: app.config_path().to_path_buf(),
                snapshot: {
                    let app = app.clone();
                    Box::new(move || app.snapshot())
                },
                status: app.watch_status(),
            }) {
                tracing::warn!("{e}; reload with SIGHUP or the admin endpoint");
            }
        }
        Ok(app)
    }
}

fn spawn_sighup(app: Arc<App>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            app.request_reload("signal").await;
        }
    });
}

/// Completes on `SIGTERM` or Ctrl-C: when a server stops taking requests and drains the ones in
/// flight.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

/// A line the server writes itself rather than through the log: `human` prints `text` as is;
/// `json` one object shaped like the log's lines (`timestamp`, `level`, `fields.message`,
/// `target`), with `url` among the fields when given.
pub fn plain_line(format: LogFormat, level: &str, text: &str, url: Option<&str>) -> String {
    match format {
        LogFormat::Human => text.to_string(),
        LogFormat::Json => {
            let mut fields = serde_json::Map::new();
            fields.insert("message".into(), text.into());
            if let Some(u) = url {
                fields.insert("url".into(), u.into());
            }
            serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
                "level": level,
                "fields": fields,
                "target": "portcullis",
            })
            .to_string()
        }
    }
}

/// Serves `endpoint` on the config's listeners (TLS, the slow-client guard, the separate metrics
/// listener) until `shutdown` completes, printing `portcullis listening on <url>` on stdout for
/// each listener once bound; then removes the plugin staging folder. What `portcullis serve`
/// does once the engine runs.
pub async fn serve_announced<E>(
    app: Arc<App>,
    endpoint: E,
    format: LogFormat,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    E: poem::Endpoint + 'static,
{
    let generation = app.snapshot().generation;
    let on_bound = |bound: server::Bound| match bound {
        server::Bound::Main { addr, tls } => {
            let scheme = if tls { "https" } else { "http" };
            let url = format!("{scheme}://{addr}");
            let text = format!("portcullis listening on {url}");
            println!("{}", plain_line(format, "INFO", &text, Some(&url)));
            tracing::info!(%addr, generation, "serving");
        }
        server::Bound::Metrics(addr) => {
            let url = format!("http://{addr}");
            let text = format!("portcullis metrics listening on {url}");
            println!("{}", plain_line(format, "INFO", &text, Some(&url)));
            tracing::info!(%addr, "serving /metrics on its own listener");
        }
    };
    let served = server::serve(app.clone(), endpoint, on_bound, shutdown).await;
    // The process exits without dropping the app: the loader's empty folder is removed here.
    app.loader().remove_staging_dir();
    served
}

/// The problems `snapshot::build` finds are the plugins' (loading, naming, building instances).
fn plugin_errors(lines: Vec<String>) -> Vec<ReloadError> {
    lines.into_iter().map(ReloadError::plugin).collect()
}

/// The one reload task: every trigger (file watch, `SIGHUP`, the admin endpoint) sends here.
/// Requests queued while an attempt runs are served together by the next attempt.
async fn reload_task(app: Arc<App>, mut rx: mpsc::Receiver<ReloadRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut triggers: Vec<&str> = batch.iter().map(|r| r.trigger).collect();
        triggers.sort_unstable();
        triggers.dedup();
        let outcome = app.reload(&triggers.join("+")).await;
        for r in batch {
            if let Some(reply) = r.reply {
                let _ = reply.send(outcome.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn streamed_hash_equals_the_whole_file_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.so");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        assert_eq!(
            crate::plugin::sha256_file(&path).unwrap(),
            crate::plugin::sha256_hex(&content)
        );
    }
}
