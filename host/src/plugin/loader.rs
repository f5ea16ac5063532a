//! Loads plugin libraries: hash, copy to a private staging path, open, check, read the manifest.
//!
//! The user's file is never mapped. `dlopen` dedupes by path and inode, so a changed file at the
//! same path would return the old code, and overwriting a mapped library crashes the process; each
//! new content is therefore copied to a unique staging path (content hash + sequence number) and
//! loaded from there. Libraries are never unloaded (abi_stable leaks them on purpose), so a content
//! already loaded once is reused from [`Loader`]'s table instead of being mapped again.

use std::{
    collections::HashMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use abi_stable::{
    abi_stability::abi_checking::check_layout_compatibility,
    library::{lib_header_from_path, LibraryError},
};
use portcullis_plugin_api::abi::{self, Manifest, PluginModuleRef, ABI_VERSION};
use thiserror::Error;

/// Why a plugin file could not be loaded. Each message is one line that names the file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// The file could not be read or staged.
    #[error("{file}: cannot read plugin file: {reason}")]
    Io {
        /// The plugin file.
        file: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The dynamic loader refused the file (truncated, not a shared library, wrong architecture).
    #[error("{file}: not a loadable shared library ({reason}); rebuild it or remove it from the plugins directory")]
    NotLoadable {
        /// The plugin file.
        file: PathBuf,
        /// What the dynamic loader said.
        reason: String,
    },
    /// A shared library without the Portcullis root module.
    #[error("{file}: not a Portcullis plugin (it exports no plugin root module); build it with portcullis-plugin-api's export_provider!, export_middleware! or export_plugins!")]
    NotAPlugin {
        /// The plugin file.
        file: PathBuf,
    },
    /// Built for a plugin ABI this host cannot load: another major, or a newer minor.
    #[error("{file}: {reason}")]
    IncompatibleVersion {
        /// The plugin file.
        file: PathBuf,
        /// Both versions, and what to do.
        reason: String,
    },
    /// Same ABI version, different layout of the boundary types.
    #[error("{file}: its plugin ABI layout does not match this server's ABI {host} ({detail}); rebuild the plugin against a released portcullis-plugin-api")]
    AbiMismatch {
        /// The plugin file.
        file: PathBuf,
        /// The host's version.
        host: String,
        /// The first line of abi_stable's explanation.
        detail: String,
    },
    /// The plugin's root-module constructor failed or panicked.
    #[error("{file}: the plugin's module constructor failed: {reason}")]
    ModuleInit {
        /// The plugin file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// `manifest()` returned an error (or panicked, caught by the SDK).
    #[error("{file}: the plugin's manifest failed: {reason}")]
    Manifest {
        /// The plugin file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Two files declare the same plugin name.
    #[error(
        "{file}: declares plugin name `{name}`, already declared by {other}; remove one of them"
    )]
    DuplicateName {
        /// The later file.
        file: PathBuf,
        /// The name.
        name: String,
        /// The earlier file.
        other: PathBuf,
    },
    /// The file's hash is not in `plugins.allow`.
    #[error("{file}: sha256 {hash} is not in plugins.allow; add it there to trust this build")]
    NotAllowed {
        /// The plugin file.
        file: PathBuf,
        /// Its hash.
        hash: String,
    },
}

impl PluginLoadError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            PluginLoadError::Io { file, .. }
            | PluginLoadError::NotLoadable { file, .. }
            | PluginLoadError::NotAPlugin { file }
            | PluginLoadError::IncompatibleVersion { file, .. }
            | PluginLoadError::AbiMismatch { file, .. }
            | PluginLoadError::ModuleInit { file, .. }
            | PluginLoadError::Manifest { file, .. }
            | PluginLoadError::DuplicateName { file, .. }
            | PluginLoadError::NotAllowed { file, .. } => file,
        }
    }
}

/// A plugin manifest in host types.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginManifest {
    /// Name used by `plugin:` in the config.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line.
    pub description: String,
    /// The plugin ABI version (`major.minor`) its library header declares.
    pub abi_version: String,
    /// The portcullis-plugin-api crate version it was built with.
    pub sdk_version: String,
    /// Accepted configuration keys.
    pub config_keys: Vec<ConfigKeyInfo>,
    /// An example `config:` mapping made of the keys' examples.
    pub example_config: serde_json::Value,
    /// Whether `authorize` depends only on the user's `sub` (its answers may be cached).
    pub authorize_by_subject: bool,
}

/// One configuration key a plugin accepts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigKeyInfo {
    /// Key name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether an instance cannot be built without it (unless `env` is set in the server's
    /// environment).
    pub required: bool,
    /// Whether the value is secret.
    pub secret: bool,
    /// The server environment variable read when the key is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Whether the value is a URL the plugin calls.
    pub url: bool,
}

impl PluginManifest {
    fn new(m: Manifest, abi_version: String) -> Self {
        PluginManifest {
            name: m.name.into(),
            version: m.version.into(),
            description: m.description.into(),
            abi_version,
            sdk_version: m.sdk_version.into(),
            config_keys: m
                .config_keys
                .into_iter()
                .map(|k| ConfigKeyInfo {
                    name: k.name.into(),
                    description: k.description.into(),
                    required: k.required,
                    secret: k.secret,
                    env: k.env.into_option().map(Into::into),
                    url: k.url,
                })
                .collect(),
            example_config: serde_json::from_str(m.example_config.as_str())
                .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
            authorize_by_subject: m.authorize_by_subject,
        }
    }
}

/// A plugin library mapped into the process.
pub struct LoadedPlugin {
    /// The user's file it was loaded from.
    pub file: PathBuf,
    /// SHA-256 of the content, hex.
    pub hash: String,
    /// The private copy that was mapped (removed once mapped; the mapping keeps the code).
    pub staged: PathBuf,
    /// What the plugin says about itself: its provider's manifest, or for a library that exports
    /// only middleware, its middleware's.
    pub manifest: PluginManifest,
    /// Whether the library exports a provider plugin (every library of ABI 1.0 and 1.1 does).
    pub provides: bool,
    /// The manifest of the middleware plugin the library exports (ABI 1.2), if any.
    pub middleware: Option<PluginManifest>,
    /// The root module.
    pub module: PluginModuleRef,
    /// When it was mapped.
    pub loaded_at: SystemTime,
}

impl LoadedPlugin {
    /// The name `providers:` instances use, when the library exports a provider.
    pub fn provider_name(&self) -> Option<&str> {
        self.provides.then_some(self.manifest.name.as_str())
    }

    /// The name `middleware:` instances use, when the library exports a middleware.
    pub fn middleware_name(&self) -> Option<&str> {
        self.middleware.as_ref().map(|m| m.name.as_str())
    }

    /// What the library exports, for people: `provider`, `middleware` or `provider, middleware`.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if self.provides {
            k.push("provider");
        }
        if self.middleware.is_some() {
            k.push("middleware");
        }
        k
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("file", &self.file)
            .field("hash", &self.hash)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl LoadedPlugin {
    /// A plugin with `manifest` and no library behind it, for unit tests of code that reads a
    /// loaded plugin (the decision reads its manifest). Its module refuses every call: a test
    /// makes its provider objects in process (`abi::provider_box`) and wraps them in a
    /// `ProviderHandle` itself.
    pub(crate) fn in_process(manifest: PluginManifest) -> LoadedPlugin {
        use abi_stable::{
            prefix_type::PrefixTypeTrait as _,
            std_types::{RResult, RStr},
        };
        use portcullis_plugin_api::{
            abi::{HostBox, ProviderBox},
            PluginError,
        };
        fn refused<T>() -> RResult<T, PluginError> {
            RResult::RErr(PluginError::internal(
                "an in-process test plugin has no library",
            ))
        }
        extern "C" fn no_manifest() -> RResult<Manifest, PluginError> {
            refused()
        }
        extern "C" fn no_check(_: RStr<'_>, _: HostBox) -> RResult<(), PluginError> {
            refused()
        }
        extern "C" fn no_build(_: RStr<'_>, _: HostBox) -> RResult<ProviderBox, PluginError> {
            refused()
        }
        extern "C" fn provider_only() -> u32 {
            abi::EXPORTS_PROVIDER
        }
        extern "C" fn no_middleware(
            _: RStr<'_>,
            _: HostBox,
        ) -> RResult<abi::MiddlewareBox, PluginError> {
            refused()
        }
        LoadedPlugin {
            file: PathBuf::from(format!("in-process:{}", manifest.name)),
            hash: String::new(),
            staged: PathBuf::new(),
            manifest,
            provides: true,
            middleware: None,
            module: abi::PluginModule {
                manifest: no_manifest,
                validate_config: no_check,
                new_provider: no_build,
                exports: provider_only,
                middleware_manifest: no_manifest,
                validate_middleware_config: no_check,
                new_middleware: no_middleware,
            }
            .leak_into_prefix(),
            loaded_at: SystemTime::now(),
        }
    }
}

/// Maps plugin libraries, at most once per content.
pub struct Loader {
    staging: PathBuf,
    /// Whether the loader made `staging` (and so removes it when done).
    made_staging: bool,
    /// Whether `staging` may still be written in: held from the copy until the staged file is
    /// removed, and set to false when the folder is removed. A folder removed is never written in
    /// again: anyone could make a folder of that name, and swap a copy put there before it is
    /// mapped.
    staging_open: Mutex<bool>,
    seq: AtomicU64,
    by_hash: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    /// Loads that ended [`MAPPED`], [`REUSED`] and [`FAILED`].
    counts: [AtomicU64; 3],
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.remove_staging_dir();
    }
}

const MAPPED: usize = 0;
const REUSED: usize = 1;
const FAILED: usize = 2;

/// How [`Loader::load`] calls ended, since the loader was made (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// A new library copy was mapped.
    pub mapped: u64,
    /// The same content was already mapped and was reused.
    pub reused: u64,
    /// The file was refused or could not be loaded.
    pub failed: u64,
}

impl Loader {
    /// A loader that stages copies in `staging` (created with mode 0700 if missing).
    pub fn new(staging: PathBuf) -> std::io::Result<Loader> {
        let made_staging = !staging.exists();
        create_private_dir(&staging)?;
        Ok(Loader {
            staging,
            made_staging,
            staging_open: Mutex::new(true),
            seq: AtomicU64::new(0),
            by_hash: Mutex::new(HashMap::new()),
            counts: Default::default(),
        })
    }

    /// A loader staging under a fresh private folder in the system temp dir.
    pub fn in_temp_dir() -> std::io::Result<Loader> {
        // The process id alone is not unique over time: a process killed without cleaning up
        // leaves its folder behind for the next process that gets the same id.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-staging-{}-{nanos:x}",
            std::process::id()
        ));
        Loader::new(dir)
    }

    /// Removes the staging folder (if the loader made it), waiting for a copy being staged. The
    /// folder is empty between loads: each staged copy is removed once mapped, as a mapped
    /// library needs no name. Loads of new content fail from then on. Also done when the loader
    /// is dropped; a server calls it on its way out, where nothing is dropped.
    pub fn remove_staging_dir(&self) {
        let mut open = self
            .staging_open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *open = false;
        if self.made_staging {
            let _ = fs::remove_dir(&self.staging);
        }
    }

    /// How many distinct library copies are mapped (they are never unmapped).
    pub fn mapped_count(&self) -> usize {
        self.by_hash.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// How loads have ended so far.
    pub fn load_counts(&self) -> LoadCounts {
        let [m, r, f] = &self.counts;
        LoadCounts {
            mapped: m.load(Ordering::Relaxed),
            reused: r.load(Ordering::Relaxed),
            failed: f.load(Ordering::Relaxed),
        }
    }

    /// Loads the plugin in `file` (or returns the copy already mapped for the same content).
    /// `allow` is the list of trusted SHA-256 hashes; `None` trusts every file.
    pub fn load(
        &self,
        file: &Path,
        allow: Option<&[String]>,
    ) -> Result<Arc<LoadedPlugin>, PluginLoadError> {
        let before = self.mapped_count();
        let result = self.load_streamed(file, allow);
        // Loads run one at a time (one reload task), so a grown table means this call mapped.
        let slot = match &result {
            Ok(_) if self.mapped_count() > before => MAPPED,
            Ok(_) => REUSED,
            Err(_) => FAILED,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        result
    }

    /// [`Loader::load`], told that `file` held content `hash` a moment ago (the reload's
    /// change check has just read it). When that content is already mapped (and allowed), it is
    /// returned without reading the file again. Whatever the file holds by now, only content that
    /// was checked when it was mapped is ever used; a file rewritten since brings its own change
    /// event and reload.
    pub fn load_known(
        &self,
        file: &Path,
        allow: Option<&[String]>,
        hash: Option<&str>,
    ) -> Result<Arc<LoadedPlugin>, PluginLoadError> {
        if let Some(hash) = hash {
            if let Ok(Some(hit)) = self.allowed_or_mapped(file, hash, allow) {
                self.counts[REUSED].fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
        }
        self.load(file, allow)
    }

    /// Reads `file` in small pieces (a library is several megabytes, and a whole-file buffer freed
    /// on a worker thread stays with that thread's allocator arena): once to hash it, and, when the
    /// content is new, once more to copy it to a private staging file while hashing again. What is
    /// mapped is the staged copy, whose hash is the one checked.
    fn load_streamed(
        &self,
        file: &Path,
        allow: Option<&[String]>,
    ) -> Result<Arc<LoadedPlugin>, PluginLoadError> {
        let io = |e: std::io::Error| PluginLoadError::Io {
            file: file.to_path_buf(),
            reason: e.to_string(),
        };
        let size = fs::metadata(file).map_err(io)?.len();
        if size > MAX_PLUGIN_BYTES {
            return Err(PluginLoadError::NotLoadable {
                file: file.to_path_buf(),
                reason: format!("{size} bytes, more than a plugin may be ({MAX_PLUGIN_BYTES})"),
            });
        }
        let hash = sha256_file(file).map_err(io)?;
        if let Some(hit) = self.allowed_or_mapped(file, &hash, allow)? {
            return Ok(hit);
        }
        let open = self
            .staging_open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*open {
            return Err(PluginLoadError::Io {
                file: file.to_path_buf(),
                reason: "the server is stopping: no more plugins are loaded".into(),
            });
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let staged = self.staging.join(format!("{}-{seq}.so", &hash[..16]));
        let copied = stage_copy(file, &staged);
        let result = match copied {
            Err(e) => Err(PluginLoadError::Io {
                file: file.to_path_buf(),
                reason: format!("staging copy: {e}"),
            }),
            // Rewritten between the two reads: what was staged is not what was checked. The
            // writer's own change event brings the file back once it is complete.
            Ok(copy) if copy.sha256 != hash => Err(PluginLoadError::Io {
                file: file.to_path_buf(),
                reason: "the file changed while it was being read".into(),
            }),
            Ok(copy) => check_elf(&copy.head, copy.len)
                .map_err(|reason| PluginLoadError::NotLoadable {
                    file: file.to_path_buf(),
                    reason: reason.to_string(),
                })
                .and_then(|()| self.map_staged(file, &staged, hash)),
        };
        // Once mapped, the library lives on in its mapping (the inode stays alive while mapped, so
        // its number is never handed to a later copy): the staged file is removed either way, and
        // nothing is left in the temp folder however the process ends.
        let _ = fs::remove_file(&staged);
        drop(open);
        result
    }

    /// Refuses a hash outside `allow`; returns the plugin already mapped for this content, if any.
    fn allowed_or_mapped(
        &self,
        file: &Path,
        hash: &str,
        allow: Option<&[String]>,
    ) -> Result<Option<Arc<LoadedPlugin>>, PluginLoadError> {
        if let Some(allow) = allow {
            if !allow.iter().any(|h| h.eq_ignore_ascii_case(hash)) {
                return Err(PluginLoadError::NotAllowed {
                    file: file.to_path_buf(),
                    hash: hash.to_string(),
                });
            }
        }
        Ok(self.by_hash.lock().ok().and_then(|m| m.get(hash).cloned()))
    }

    /// Maps the checked, staged copy of `file` and reads its manifest.
    fn map_staged(
        &self,
        file: &Path,
        staged: &Path,
        hash: String,
    ) -> Result<Arc<LoadedPlugin>, PluginLoadError> {
        let (module, abi_version) = open_module(file, staged)?;
        let read = |m: abi_stable::std_types::RResult<
            Manifest,
            portcullis_plugin_api::PluginError,
        >| match m {
            abi_stable::std_types::RResult::ROk(m) => {
                Ok(PluginManifest::new(m, abi_version.clone()))
            }
            abi_stable::std_types::RResult::RErr(e) => Err(PluginLoadError::Manifest {
                file: file.to_path_buf(),
                reason: e.message().into(),
            }),
        };
        // ABI 1.2 says what the library exports; an older library exports a provider.
        let exports = module.exports().map_or(abi::EXPORTS_PROVIDER, |f| f());
        let provides = exports & abi::EXPORTS_PROVIDER != 0;
        let middleware = match module.middleware_manifest() {
            Some(f) if exports & abi::EXPORTS_MIDDLEWARE != 0 => Some(read(f())?),
            _ => None,
        };
        if !provides && middleware.is_none() {
            return Err(PluginLoadError::Manifest {
                file: file.to_path_buf(),
                reason: "the library exports neither a provider nor a middleware".into(),
            });
        }
        // A library without a provider answers `manifest` with its middleware's.
        let manifest = read((module.manifest())())?;
        let loaded = Arc::new(LoadedPlugin {
            file: file.to_path_buf(),
            hash: hash.clone(),
            staged: staged.to_path_buf(),
            manifest,
            provides,
            middleware,
            module,
            loaded_at: SystemTime::now(),
        });
        if let Ok(mut m) = self.by_hash.lock() {
            m.insert(hash, loaded.clone());
        }
        Ok(loaded)
    }
}

/// Opens the staged library: its ABI version first (another major, or a newer minor, is refused
/// before any layout is compared or any plugin code runs), then abi_stable's layout check.
fn open_module(file: &Path, staged: &Path) -> Result<(PluginModuleRef, String), PluginLoadError> {
    let header = lib_header_from_path(staged).map_err(|e| classify(file, e))?;
    let version = header.version_strings();
    let parsed = version
        .parsed()
        .map_err(|_| PluginLoadError::IncompatibleVersion {
            file: file.to_path_buf(),
            reason: format!(
                "declares an unreadable plugin ABI version `{}`; this server speaks ABI {}",
                version.version, ABI_VERSION
            ),
        })?;
    abi::compatible(parsed.major, parsed.minor).map_err(|reason| {
        PluginLoadError::IncompatibleVersion {
            file: file.to_path_buf(),
            reason,
        }
    })?;
    // abi_stable's own check compares the library with this host's newest layout, and refuses a
    // prefix type with fewer fields than the host's: every plugin of an older minor. So the
    // library is checked against the layout of the minor it declares, which is a prefix of the
    // newest (a test in portcullis-plugin-api holds every minor to that).
    let (Some(expected), Some(found)) = (abi::module_layout(parsed.minor), header.layout()) else {
        return Err(PluginLoadError::AbiMismatch {
            file: file.to_path_buf(),
            host: ABI_VERSION.to_string(),
            detail: "the library does not describe its layout".into(),
        });
    };
    check_layout_compatibility(expected, found).map_err(|e| PluginLoadError::AbiMismatch {
        file: file.to_path_buf(),
        host: ABI_VERSION.to_string(),
        detail: abi_detail(&e.to_string()),
    })?;
    // SAFETY: the library's root module was just checked against the layout of its own minor,
    // and that layout is a prefix of `PluginModuleRef`'s (fields and provider methods only ever
    // appended). Prefix types carry their own length at run time: what a minor appended reads as
    // absent through `PluginModuleRef`'s accessors, and a missing provider method falls back to
    // its default. That is the access abi_stable's prefix types are built for.
    #[allow(unsafe_code)]
    let module = unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
        .map_err(|e| classify(file, e))?;
    Ok((module, format!("{}.{}", parsed.major, parsed.minor)))
}

fn classify(file: &Path, e: LibraryError) -> PluginLoadError {
    let file = file.to_path_buf();
    match e {
        LibraryError::OpenError { err, .. } => PluginLoadError::NotLoadable {
            file,
            reason: first_line(&strip_staged_path(&err.to_string())),
        },
        LibraryError::GetSymbolError { .. } => PluginLoadError::NotAPlugin { file },
        // Checked before abi_stable's own check (see `open_module`); kept for completeness.
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            let reason = abi::compatible(actual_version.major, actual_version.minor)
                .err()
                .unwrap_or_else(|| format!("declares plugin ABI {actual_version}"));
            PluginLoadError::IncompatibleVersion { file, reason }
        }
        LibraryError::ParseVersionError(e) => PluginLoadError::IncompatibleVersion {
            file,
            reason: format!("declares an unreadable plugin ABI version ({e})"),
        },
        LibraryError::RootModule { err, .. } => PluginLoadError::ModuleInit {
            file,
            reason: first_line(&err.to_string()),
        },
        LibraryError::AbiInstability(err) => PluginLoadError::AbiMismatch {
            file,
            host: ABI_VERSION.to_string(),
            detail: abi_detail(&err.to_string()),
        },
        LibraryError::Many(errs) => match errs.into_iter().next() {
            Some(first) => classify(&file, first),
            None => PluginLoadError::AbiMismatch {
                file,
                host: ABI_VERSION.to_string(),
                detail: "unspecified".into(),
            },
        },
        other => PluginLoadError::AbiMismatch {
            file,
            host: ABI_VERSION.to_string(),
            detail: first_line(&other.to_string()),
        },
    }
}

/// abi_stable's layout report is many lines; keep the most telling one.
fn abi_detail(report: &str) -> String {
    report
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Error:") || l.contains("mismatch") || l.contains("Mismatched"))
        .or_else(|| report.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(|l| l.chars().take(200).collect())
        .unwrap_or_else(|| "layout differs".into())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// dlopen errors start with the path that was opened (the staged copy); the user knows the file by
/// its own name, which the error already carries.
fn strip_staged_path(s: &str) -> String {
    match s.find(".so: ") {
        Some(i) => s[i + 5..].to_string(),
        None => s.to_string(),
    }
}

/// Checks that `bytes` is a complete 64-bit little-endian ELF shared object for this machine:
/// every table and loadable segment the headers describe lies inside the file.
/// Checks that an ELF file of `len` bytes, whose first bytes are `bytes` (at least the header and
/// the program headers), is a shared object for this machine whose loaded segments lie within the
/// file.
fn check_elf(bytes: &[u8], len: u64) -> Result<(), &'static str> {
    const HOST_MACHINE: u16 = if cfg!(target_arch = "x86_64") {
        62
    } else if cfg!(target_arch = "aarch64") {
        183
    } else {
        0
    };
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file");
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file");
    }
    if u16_at(16) != Some(3) {
        return Err("not an ELF shared object");
    }
    if HOST_MACHINE != 0 && u16_at(18) != Some(HOST_MACHINE) {
        return Err("built for another machine architecture");
    }
    let within = |off: u64, size: u64| off.checked_add(size).is_some_and(|end| end <= len);
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    let (shoff, shentsize, shnum) = (u64_at(40), u16_at(58), u16_at(60));
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Err("truncated ELF header");
    };
    if phentsize < 56 || !within(phoff, u64::from(phentsize) * u64::from(phnum)) {
        return Err("truncated or corrupt ELF file (program headers)");
    }
    for i in 0..u64::from(phnum) {
        let at = (phoff + i * u64::from(phentsize)) as usize;
        let (Some(kind), Some(off), Some(filesz)) = (u32_at(at), u64_at(at + 8), u64_at(at + 32))
        else {
            return Err("truncated or corrupt ELF file (program headers)");
        };
        // PT_LOAD, PT_DYNAMIC
        if (kind == 1 || kind == 2) && !within(off, filesz) {
            return Err("truncated or corrupt ELF file (a segment extends past the end)");
        }
    }
    if let (Some(shoff), Some(shentsize), Some(shnum)) = (shoff, shentsize, shnum) {
        if shoff != 0 && !within(shoff, u64::from(shentsize) * u64::from(shnum)) {
            return Err("truncated or corrupt ELF file (section headers)");
        }
    }
    Ok(())
}

/// The largest plugin file the loader reads (the shipped ones are under 10 MB): a file that grows
/// without end while it is copied stops the copy instead of the reload task.
const MAX_PLUGIN_BYTES: u64 = 512 * 1024 * 1024;

/// The first bytes of a file kept while copying it, for [`check_elf`]: the ELF header and program
/// headers sit at its start.
const ELF_HEAD_BYTES: usize = 64 * 1024;

/// A staged copy: its hash, length and first bytes.
struct StagedCopy {
    sha256: String,
    len: u64,
    head: Vec<u8>,
}

/// Copies `from` to a new private file `to` in small pieces, hashing what is written.
fn stage_copy(from: &Path, to: &Path) -> std::io::Result<StagedCopy> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt};
    let mut src = fs::File::open(from)?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o500)
        .open(to)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut len = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        ctx.update(chunk);
        if head.len() < ELF_HEAD_BYTES {
            let take = (ELF_HEAD_BYTES - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        dst.write_all(chunk)?;
        len += n as u64;
        if len > MAX_PLUGIN_BYTES {
            return Err(std::io::Error::other(
                "the file grew past the plugin size limit",
            ));
        }
    }
    dst.sync_all()?;
    Ok(StagedCopy {
        sha256: hex::encode(ctx.finish().as_ref()),
        len,
        head,
    })
}

/// Hex SHA-256 of a file, read in small pieces (a whole-file buffer of a multi-megabyte library,
/// once freed, stays with the allocator).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => ctx.update(&buf[..n]),
        }
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Ensures the root-module type is linked (its statics are what `init_root_module` checks).
#[allow(dead_code)]
fn _root_module_name() -> &'static str {
    <PluginModuleRef as abi_stable::library::RootModule>::NAME
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_staging_folder_goes_with_the_loader() {
        let loader = Loader::in_temp_dir().unwrap();
        let dir = loader.staging.clone();
        assert!(dir.is_dir());
        // Refused content is staged and removed like any other.
        let bogus = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bogus.path(), b"not a library").unwrap();
        assert!(loader.load(bogus.path(), None).is_err());
        assert!(dir.is_dir());
        loader.remove_staging_dir();
        assert!(!dir.exists());
        // Never written in again, even if a folder of that name comes back.
        create_private_dir(&dir).unwrap();
        let err = loader.load(bogus.path(), None).unwrap_err().to_string();
        assert!(err.contains("stopping"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
        // Dropped: the folder goes too.
        let loader = Loader::in_temp_dir().unwrap();
        let dir = loader.staging.clone();
        drop(loader);
        assert!(!dir.exists());
    }

    #[test]
    fn a_folder_the_loader_did_not_make_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let loader = Loader::new(dir.path().to_path_buf()).unwrap();
        drop(loader);
        assert!(dir.path().is_dir());
    }
}
