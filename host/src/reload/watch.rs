//! The file watch: the config file's folder, the plugins folder, the TLS files' and the
//! `${file:...}` secrets' folders are watched (folders, not files: editors save by rename and
//! Kubernetes swaps a `..data` symlink, which a watch on the file itself would lose). Relevant events are debounced and sent to the
//! one reload task; the watched set follows the config after each reload.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{Reloader, Snapshot};

/// Quiet time after the last event before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// A steady stream of events (a slow copy) still reloads after this long.
pub const MAX_DELAY: Duration = Duration::from_millis(1000);

/// What a watched folder's events are relevant for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Interest {
    /// These file names (and Kubernetes' `..`-prefixed entries).
    Names(Vec<String>),
    /// Any `*.so`.
    Plugins,
}

/// The folders to watch and what in them matters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets(BTreeMap<PathBuf, Vec<Interest>>);

fn canonical_dir(dir: &Path) -> PathBuf {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Targets {
    fn add_file(&mut self, file: &Path) {
        let dir = canonical_dir(file.parent().unwrap_or(Path::new(".")));
        let name = name_of(file);
        let entry = self.0.entry(dir).or_default();
        match entry.iter_mut().find_map(|i| match i {
            Interest::Names(n) => Some(n),
            Interest::Plugins => None,
        }) {
            Some(names) => names.push(name),
            None => entry.push(Interest::Names(vec![name])),
        }
    }

    /// What a server serving `rt` from the config file `config` needs watched.
    pub fn of(config: &Path, rt: &Snapshot) -> Targets {
        let mut t = Targets::default();
        t.add_file(config);
        for f in &rt.config.var_files {
            t.add_file(f);
        }
        t.0.entry(canonical_dir(&rt.config.plugins.dir))
            .or_default()
            .push(Interest::Plugins);
        if let Some(h) = &rt.config.server.https {
            t.add_file(&h.key);
            t.add_file(&h.cert);
        }
        t
    }

    /// Whether a change to `path` can change what the app serves.
    pub fn is_relevant(&self, path: &Path) -> bool {
        let Some(dir) = path.parent() else {
            return false;
        };
        let Some(interests) = self.0.get(dir) else {
            return false;
        };
        let name = name_of(path);
        interests.iter().any(|i| match i {
            Interest::Names(names) => names.contains(&name) || name.starts_with(".."),
            Interest::Plugins => path.extension().is_some_and(|e| e == "so"),
        })
    }

    /// The watched folders.
    pub fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.keys()
    }
}

/// The watch's own state, for the status API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WatchStatus {
    /// Folders being watched.
    pub watching: Vec<String>,
    /// Folders that could not be watched, and why (retried after every reload).
    pub errors: Vec<String>,
}

/// Shared watch status.
pub type SharedWatchStatus = Arc<Mutex<WatchStatus>>;

/// What the watch needs of the server: where reloads are asked for, the config file, the
/// snapshot being served (to know what else to watch), and where to say what it watches.
pub struct Watched {
    /// The reload task's queue.
    pub reloader: Reloader,
    /// The config file.
    pub config: PathBuf,
    /// The snapshot being served.
    pub snapshot: Box<dyn Fn() -> Arc<Snapshot> + Send + Sync>,
    /// The watch's status, shared with the status API.
    pub status: SharedWatchStatus,
}

/// Starts watching; events reach the reload task. Fails only when the platform has no file
/// watch at all.
pub fn spawn(w: Watched) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|e| format!("file watch unavailable: {e}"))?;
    let mut targets = Targets::default();
    let mut watched: Vec<PathBuf> = Vec::new();
    retarget(&mut watcher, &mut watched, &mut targets, &w);
    // A change made between the first read and the watch being in place would be missed: look
    // once more now that it is (unchanged content costs a hash).
    w.reloader.notify("watch");
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if !relevant(&targets, &ev) {
                continue;
            }
            // Debounce: wait until relevant events stop for a moment, but not forever. Other
            // files in the same folders (a log written next to the config) do not delay it.
            let first = Instant::now();
            let mut quiet_from = Instant::now();
            while first.elapsed() < MAX_DELAY {
                let left = DEBOUNCE.saturating_sub(quiet_from.elapsed());
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some(ev)) => {
                        if relevant(&targets, &ev) {
                            quiet_from = Instant::now();
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            w.reloader.request("watch").await;
            retarget(&mut watcher, &mut watched, &mut targets, &w);
        }
    });
    Ok(())
}

fn relevant(targets: &Targets, ev: &notify::Result<notify::Event>) -> bool {
    match ev {
        // The watch itself failed or overflowed: look at everything again.
        Err(_) => true,
        Ok(ev) if ev.need_rescan() => true,
        Ok(ev) if ev.kind.is_access() => false,
        Ok(ev) => ev.paths.iter().any(|p| targets.is_relevant(p)),
    }
}

/// Watches what the app needs now; a folder that cannot be watched (not there yet) is retried
/// after the next reload.
fn retarget(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut Vec<PathBuf>,
    targets: &mut Targets,
    w: &Watched,
) {
    let wanted = Targets::of(&w.config, &(w.snapshot)());
    let mut errors = Vec::new();
    watched.retain(|d| {
        let keep = wanted.0.contains_key(d);
        if !keep {
            let _ = watcher.unwatch(d);
        }
        keep
    });
    for dir in wanted.dirs() {
        if watched.contains(dir) {
            continue;
        }
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => watched.push(dir.clone()),
            Err(e) => {
                let line = format!("{}: cannot watch: {e}", dir.display());
                tracing::warn!("{line}; changes there need SIGHUP or the reload endpoint");
                errors.push(line);
            }
        }
    }
    *targets = wanted;
    let mut st = w.status.lock().unwrap_or_else(|p| p.into_inner());
    st.watching = watched.iter().map(|d| d.display().to_string()).collect();
    st.errors = errors;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance_follows_names_links_and_plugins() {
        let mut t = Targets::default();
        t.add_file(Path::new("/etc/portcullis/portcullis.yaml"));
        t.0.entry(PathBuf::from("/opt/plugins"))
            .or_default()
            .push(Interest::Plugins);
        assert!(t.is_relevant(Path::new("/etc/portcullis/portcullis.yaml")));
        assert!(t.is_relevant(Path::new("/etc/portcullis/..data")));
        assert!(t.is_relevant(Path::new("/etc/portcullis/..2026_11_26_20_00_00.123")));
        assert!(!t.is_relevant(Path::new("/etc/portcullis/.portcullis.yaml.swp")));
        assert!(!t.is_relevant(Path::new("/etc/portcullis/other.yaml")));
        assert!(t.is_relevant(Path::new("/opt/plugins/libportcullis_jwt.so")));
        assert!(!t.is_relevant(Path::new("/opt/plugins/libportcullis_jwt.d")));
        assert!(!t.is_relevant(Path::new("/opt/elsewhere/x.so")));
    }
}
