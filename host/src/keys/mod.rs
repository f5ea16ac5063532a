//! Key sets, and the outgoing HTTP client (time-limited, size-capped, no redirects to another
//! host) that fetches them and that plugins borrow. Imports only `jose`.
//!
//! Key sets fetched from JWKS URLs or certificate-map URLs (Google's `securetoken` format: a JSON
//! object mapping `kid` to a PEM X.509 certificate), shared by every provider instance that names
//! the same URL and kept across reloads. Both formats get the same guarantees:
//!
//! * TTL from `Cache-Control: max-age` (bounded), 5 minutes when absent; an expired set keeps
//!   serving while one background refresh runs.
//! * An unknown `kid` causes at most one refetch per URL per [`KeyCacheSettings::kid_refetch_interval`],
//!   shared by every request that asks meanwhile.
//! * When the identity provider is down, the last good set keeps serving (up to `max_stale`).
//! * Bodies are capped, key counts are capped, and a `kid` is only ever looked up inside the set of
//!   the URL the provider configured.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;

pub mod client;

pub use client::{check_scheme, HttpClient};

use crate::jose::Key;

/// Tunables of the key cache.
#[derive(Debug, Clone)]
pub struct KeyCacheSettings {
    /// TTL when the response has no `max-age`.
    pub default_ttl: Duration,
    /// Lower bound on a `max-age`.
    pub min_ttl: Duration,
    /// Upper bound on a `max-age`.
    pub max_ttl: Duration,
    /// At most one unknown-`kid` refetch per URL in this window.
    pub kid_refetch_interval: Duration,
    /// How long a set may keep serving past its TTL when refreshes fail.
    pub max_stale: Duration,
    /// Largest key set document.
    pub max_bytes: usize,
    /// Most keys in one set.
    pub max_keys: usize,
    /// Time limit of one fetch.
    pub fetch_timeout: Duration,
}

impl Default for KeyCacheSettings {
    fn default() -> Self {
        KeyCacheSettings {
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(24 * 3600),
            kid_refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 3600),
            max_bytes: 1024 * 1024,
            max_keys: 100,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// The document format a key set URL serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFormat {
    /// A JWKS (RFC 7517): `{"keys": [JWK, ...]}`.
    Jwks,
    /// A JSON object mapping each `kid` to an X.509 certificate in PEM, as Google serves at
    /// `https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com`.
    X509Map,
}

/// Why keys could not be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("keys from {url} are unavailable: {reason}")]
pub struct KeysUnavailable {
    /// The key set URL (never carries secrets: it is a public endpoint).
    pub url: String,
    /// Why.
    pub reason: String,
}

struct Fetched {
    keys: Arc<[Key]>,
    at: Instant,
    ttl: Duration,
    /// Which content of the set this is: a new number whenever a fetch brings different keys
    /// (never reused, unlike an address); a refresh that brings the very same keys keeps it.
    generation: u64,
}

/// One URL's key set.
pub struct KeySet {
    url: String,
    format: KeyFormat,
    current: ArcSwapOption<Fetched>,
    fetch_lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    last_kid_refetch: Mutex<Option<Instant>>,
    fetches: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Counters of one key set, for status and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySetStats {
    /// The URL.
    pub url: String,
    /// Fetch attempts.
    pub fetches: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Keys currently held.
    pub keys: usize,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Every key set of the process.
pub struct KeyCache {
    http: HttpClient,
    settings: KeyCacheSettings,
    sets: Mutex<HashMap<(KeyFormat, String), Arc<KeySet>>>,
}

impl KeyCache {
    /// A cache fetching through `http`.
    pub fn new(http: HttpClient, settings: KeyCacheSettings) -> KeyCache {
        KeyCache {
            http,
            settings,
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The JWKS set for `url` (created empty on first use; nothing is fetched yet).
    pub fn set(&self, url: &str) -> Arc<KeySet> {
        self.set_of(KeyFormat::Jwks, url)
    }

    /// The set for `url` served in `format` (created empty on first use). The same URL read in two
    /// formats is two sets: a key is only ever looked up in a set parsed the way its provider said.
    pub fn set_of(&self, format: KeyFormat, url: &str) -> Arc<KeySet> {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.entry((format, url.to_string()))
            .or_insert_with(|| {
                Arc::new(KeySet {
                    url: url.to_string(),
                    format,
                    current: ArcSwapOption::empty(),
                    fetch_lock: tokio::sync::Mutex::new(()),
                    refreshing: AtomicBool::new(false),
                    last_kid_refetch: Mutex::new(None),
                    fetches: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    last_error: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Counters of every set.
    pub fn stats(&self) -> Vec<KeySetStats> {
        let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<KeySetStats> = sets.values().map(|s| s.stats()).collect();
        out.sort_by(|a, b| a.url.cmp(&b.url));
        out
    }

    /// Current keys of `set`: cached if fresh; if expired, the stale ones while a background refresh
    /// runs; if none yet, fetched now.
    pub async fn keys(self: &Arc<Self>, set: &Arc<KeySet>) -> Result<Arc<[Key]>, KeysUnavailable> {
        if let Some(f) = set.current.load_full() {
            let age = f.at.elapsed();
            if age < f.ttl {
                return Ok(f.keys.clone());
            }
            if age < f.ttl + self.settings.max_stale {
                if !set.refreshing.swap(true, Ordering::AcqRel) {
                    let (cache, set2) = (self.clone(), set.clone());
                    tokio::spawn(async move {
                        let _ = cache.refresh(&set2, Instant::now()).await;
                        set2.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(f.keys.clone());
            }
        }
        self.refresh(set, Instant::now()).await
    }

    /// Called when a token's `kid` is not in the set: refetches at most once per window (shared by
    /// concurrent callers). Returns the new keys, or `None` when rate-limited.
    pub async fn refresh_for_unknown_kid(
        &self,
        set: &Arc<KeySet>,
    ) -> Option<Result<Arc<[Key]>, KeysUnavailable>> {
        let asked = Instant::now();
        let recent = {
            let mut last = set
                .last_kid_refetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match *last {
                Some(t) if t.elapsed() < self.settings.kid_refetch_interval => Some(t),
                _ => {
                    *last = Some(asked);
                    None
                }
            }
        };
        if let Some(t) = recent {
            // A refetch is running or just ran: wait for it, then use what it got.
            let _g = set.fetch_lock.lock().await;
            return set
                .current
                .load_full()
                .filter(|f| f.at >= t)
                .map(|f| Ok(f.keys.clone()));
        }
        Some(self.refresh(set, asked).await)
    }

    /// Fetches the set unless another caller fetched it after `asked`.
    async fn refresh(
        &self,
        set: &Arc<KeySet>,
        asked: Instant,
    ) -> Result<Arc<[Key]>, KeysUnavailable> {
        let _g = set.fetch_lock.lock().await;
        if let Some(f) = set.current.load_full() {
            if f.at >= asked {
                return Ok(f.keys.clone());
            }
        }
        let generation = set.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        match self.fetch(&set.url, set.format).await {
            Ok((keys, ttl)) => {
                // The same keys again (a refresh at the end of max-age, a refetch for an unknown
                // kid): keep the content's identity, so that what was verified with it stands.
                let (keys, generation) = match set.current.load_full() {
                    Some(f)
                        if f.keys.len() == keys.len()
                            && f.keys.iter().zip(&keys).all(|(a, b)| a.same_key(b)) =>
                    {
                        (f.keys.clone(), f.generation)
                    }
                    _ => (Arc::<[Key]>::from(keys), generation),
                };
                set.current.store(Some(Arc::new(Fetched {
                    keys: keys.clone(),
                    at: Instant::now(),
                    ttl,
                    generation,
                })));
                *set.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(keys)
            }
            Err(reason) => {
                set.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %set.url, %reason, "key set fetch failed");
                *set.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                // Keep serving the last good set while it is not too old.
                if let Some(f) = set.current.load_full() {
                    if f.at.elapsed() < f.ttl + self.settings.max_stale {
                        return Ok(f.keys.clone());
                    }
                }
                Err(KeysUnavailable {
                    url: set.url.clone(),
                    reason,
                })
            }
        }
    }

    async fn fetch(&self, url: &str, format: KeyFormat) -> Result<(Vec<Key>, Duration), String> {
        let resp = self
            .http
            .get_capped(
                url,
                &[("accept", "application/json")],
                self.settings.fetch_timeout,
                self.settings.max_bytes,
            )
            .await?;
        if resp.status != 200 {
            return Err(format!("http status {}", resp.status));
        }
        let parse = match format {
            KeyFormat::Jwks => crate::jose::parse_jwks_limited,
            KeyFormat::X509Map => crate::jose::parse_x509_map_limited,
        };
        let (keys, _skipped) = parse(&resp.body, self.settings.max_keys, self.settings.max_bytes)
            .map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Err("the key set has no usable signing keys".into());
        }
        let ttl = resp
            .header("cache-control")
            .and_then(max_age)
            .map(|s| Duration::from_secs(s).clamp(self.settings.min_ttl, self.settings.max_ttl))
            .unwrap_or(self.settings.default_ttl);
        Ok((keys, ttl))
    }
}

impl KeySet {
    /// The keys held now, as `(which content, fresh until)`; `None` before the first good fetch.
    /// Two equal generations mean the very same keys.
    pub fn witness(&self) -> Option<(u64, Instant)> {
        self.current
            .load()
            .as_ref()
            .map(|f| (f.generation, f.at + f.ttl))
    }

    /// Counters.
    pub fn stats(&self) -> KeySetStats {
        KeySetStats {
            url: self.url.clone(),
            fetches: self.fetches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            keys: self
                .current
                .load()
                .as_ref()
                .map(|f| f.keys.len())
                .unwrap_or(0),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The key sets one provider instance verifies with (every JWKS or certificate-map set its
/// verifiers were built on), so that the host can tell whether an answer it kept for a token
/// still stands on the same, fresh keys.
#[derive(Default)]
pub struct InstanceKeySets {
    sets: arc_swap::ArcSwap<Vec<Arc<KeySet>>>,
}

/// The contents of an instance's key sets at one moment (see [`InstanceKeySets::stamp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStamp {
    /// Per set, in registration order: which content it held.
    generations: Box<[u64]>,
}

impl InstanceKeySets {
    /// Records that the instance verifies with `set` (once per set).
    pub fn register(&self, set: &Arc<KeySet>) {
        self.sets.rcu(|sets| {
            let mut sets = Vec::clone(sets);
            if !sets.iter().any(|s| Arc::ptr_eq(s, set)) {
                sets.push(set.clone());
            }
            sets
        });
    }

    /// The sets registered so far.
    pub fn sets(&self) -> Arc<Vec<Arc<KeySet>>> {
        self.sets.load_full()
    }

    /// The sets' contents now; `None` while one of them holds no keys yet.
    pub fn stamp(&self) -> Option<KeyStamp> {
        let sets = self.sets.load();
        let generations = sets
            .iter()
            .map(|set| set.witness().map(|(generation, _)| generation))
            .collect::<Option<Box<[u64]>>>()?;
        Some(KeyStamp { generations })
    }

    /// Whether every set still holds the content of `stamp` (none changed, none added) and is
    /// fresh at `now`. A stale set sends the request to the plugin, whose verifier refreshes it.
    pub fn unchanged_since(&self, stamp: &KeyStamp, now: Instant) -> bool {
        let sets = self.sets.load();
        sets.len() == stamp.generations.len()
            && sets.iter().zip(stamp.generations.iter()).all(|(set, g)| {
                set.witness()
                    .is_some_and(|(current, fresh_until)| current == *g && now < fresh_until)
            })
    }
}

/// `max-age` from a `Cache-Control` value.
pub fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| {
        let d = d.trim();
        let (k, v) = d.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64::Engine as _;

    /// A P-256 JWK with id `kid`, freshly generated.
    fn ec_jwk(kid: &str) -> serde_json::Value {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = kp.public_key().as_ref().to_vec();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        })
    }

    /// Serves whatever `body` holds, as a JWKS, on 127.0.0.1; returns its URL.
    async fn serve(body: Arc<Mutex<String>>) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = body.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            }
        });
        format!("http://{addr}/jwks")
    }

    #[tokio::test]
    async fn a_refresh_with_the_same_keys_keeps_their_identity_and_new_keys_change_it() {
        let (a, b) = (ec_jwk("a"), ec_jwk("b"));
        let body = Arc::new(Mutex::new(serde_json::json!({ "keys": [a] }).to_string()));
        let url = serve(body.clone()).await;
        let settings = KeyCacheSettings {
            kid_refetch_interval: Duration::ZERO,
            ..KeyCacheSettings::default()
        };
        let cache = Arc::new(KeyCache::new(HttpClient::new().unwrap(), settings));
        let set = cache.set(&url);
        let sets = InstanceKeySets::default();
        sets.register(&set);
        assert!(sets.stamp().is_none(), "no keys yet: nothing may be kept");
        let first = cache.keys(&set).await.unwrap();
        let stamp = sets.stamp().unwrap();
        assert!(sets.unchanged_since(&stamp, Instant::now()));

        // Refetched, the same document: the same content, the same keys.
        let again = cache.refresh_for_unknown_kid(&set).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(sets.unchanged_since(&stamp, Instant::now()));
        assert_eq!(set.stats().fetches, 2);

        // The provider adds a key: a new content; what was kept under the old one no longer holds.
        *body.lock().unwrap() = serde_json::json!({ "keys": [a, b] }).to_string();
        let changed = cache.refresh_for_unknown_kid(&set).await.unwrap().unwrap();
        assert_eq!(changed.len(), 2);
        assert!(!sets.unchanged_since(&stamp, Instant::now()));
        let newer = sets.stamp().unwrap();
        assert!(sets.unchanged_since(&newer, Instant::now()));
        // A stale set holds nothing either, whatever its content.
        assert!(!sets.unchanged_since(&newer, Instant::now() + Duration::from_secs(301)));
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19302, must-revalidate, no-transform"),
            Some(19302)
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
