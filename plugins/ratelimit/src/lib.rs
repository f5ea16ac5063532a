//! The `ratelimit` middleware: a token bucket per subject (or per client address), refilled at
//! `rate` tokens a second up to `burst`; a request takes one token or is answered 429.
//!
//! Each bucket is kept as the moment it will be full again (the "theoretical arrival time" of the
//! generic cell rate algorithm), in whole nanoseconds: refilling is exact, with no floating-point
//! drift, and a bucket that is full holds nothing worth keeping. One lock guards the map, so the
//! check and the take are one step: however many requests race on a key, no more than `burst`
//! (plus what refills meanwhile) get through.
//!
//! * **Keys.** With `key: subject` (the default) a request is counted against the user's `sub`;
//!   a request without a user (a public route) or without a string `sub` is counted against its
//!   client address instead. `key: client` always counts the client address. Subjects and client
//!   addresses are kept apart: a `sub` that reads like an IP address does not share that
//!   client's bucket. Requests whose client address the server does not know share one bucket.
//! * **Memory.** At most `max_keys` buckets are tracked. When a new key arrives and the map is
//!   full, every bucket that has refilled completely is dropped (a full bucket is the same as a
//!   new one). If none has, the request is answered **503** (with a `retry-after` until the
//!   first bucket is full again) rather than letting the map grow or forgetting a bucket that
//!   still holds back a client: the limiter fails closed. One warning is logged each time the
//!   map becomes full.
//! * **Answers.** A request let through gets the response headers `ratelimit-limit` (`burst`)
//!   and `ratelimit-remaining` (whole tokens left). A refused one is answered
//!   `429 {"error":"Too Many Requests"}` with the same two headers and `retry-after` (whole
//!   seconds until a token is back, at least 1).
//! * **Dry runs** (`/api/admin/explain`) are answered as a real request would be, but take no
//!   token and create or drop no bucket.
//!
//! ```yaml
//! middleware:
//!   - name: per-user
//!     plugin: ratelimit
//!     config: { rate: 5, burst: 20 }
//! ```

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use portcullis_plugin_api::{
    export_middleware, Call, Flow, Host, MiddlewarePlugin, PluginConfig, PluginError,
    RequestMiddleware,
};
use serde::Deserialize;

/// `max_keys` when the config does not set it.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// The smallest `rate`: one token in about 32 years.
pub const MIN_RATE: f64 = 1e-9;
/// The largest `rate`: one token a nanosecond.
pub const MAX_RATE: f64 = 1e9;

/// The `config:` of a `ratelimit` instance.
#[derive(Deserialize, PluginConfig, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// tokens added to a bucket per second (greater than 0; fractions allowed)
    ///
    /// From 1e-9 to 1e9.
    #[config(example = "5")]
    pub rate: f64,
    /// bucket size: requests allowed at once (at least 1)
    #[config(example = "20")]
    pub burst: u32,
    /// what a bucket is kept for: subject (default; the user's sub, else the client address) or
    /// client (the client address)
    #[serde(default)]
    pub key: KeyBy,
    /// buckets tracked at most (default 100000); when full, new keys are answered 503
    ///
    /// Buckets that have refilled completely are dropped first.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

/// What a bucket is kept for (the `key` setting).
#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeyBy {
    /// The user's `sub`; the client address on requests without one.
    #[default]
    Subject,
    /// The client address.
    Client,
}

/// A bucket's key. The two kinds never compare equal, so a subject and a client address that
/// read the same count apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A user: the provider instance that vouched for it, and its `sub` (a `sub` is unique only
    /// within its issuer).
    Subject(Box<str>, Box<str>),
    /// A client address: an IPv4 address, or the /64 network of an IPv6 one (one host holds a
    /// whole /64, and could otherwise fill the map with keys).
    Client(Box<str>),
}

/// The bucket of a client address: an IPv4 address as it is (an IPv4-mapped IPv6 one too), the
/// /64 network of an IPv6 one, anything else as it came.
fn client_key(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
        _ => client.to_string(),
    }
}

/// The limits of a config, checked: what the limiter computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    /// Time to add one token (`1 / rate`), at least 1 ns.
    interval: Duration,
    /// Time to refill an empty bucket (`burst * interval`).
    window: Duration,
    burst: u32,
    max_keys: usize,
}

impl Limits {
    fn of(config: &Config) -> Result<Limits, PluginError> {
        let rate = config.rate;
        if rate.is_nan() || rate <= 0.0 {
            return Err(PluginError::config("rate: must be greater than 0"));
        }
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(PluginError::config(
                "rate: must be from 1e-9 to 1e9 tokens per second",
            ));
        }
        if config.burst == 0 {
            return Err(PluginError::config("burst: must be at least 1"));
        }
        if config.max_keys == 0 {
            return Err(PluginError::config("max_keys: must be at least 1"));
        }
        let interval = Duration::try_from_secs_f64(1.0 / rate)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                PluginError::config("rate: must be from 1e-9 to 1e9 tokens per second")
            })?;
        let window = interval
            .checked_mul(config.burst)
            .ok_or_else(|| PluginError::config("burst: too large for this rate"))?;
        Ok(Limits {
            interval,
            window,
            burst: config.burst,
            max_keys: config.max_keys,
        })
    }
}

/// What the limiter decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Let through; whole tokens left in the bucket.
    Allow { remaining: u64 },
    /// Refused (429); seconds until a token is back.
    Deny { retry_after: u64 },
    /// No room for a new bucket (503); seconds until one may be dropped.
    Full { retry_after: u64 },
}

#[derive(Default)]
struct Buckets {
    /// Per key, when its bucket is full again; a bucket is full at or after that moment.
    full_at: HashMap<Key, Instant>,
    /// While the map is full: no bucket can be dropped before this moment (the earliest
    /// `full_at` when it was last swept), so no sweep is tried before it.
    next_sweep: Option<Instant>,
    /// Whether the map being full was logged (reset once there is room again).
    full_logged: bool,
}

/// A configured instance.
pub struct RateLimit {
    limits: Limits,
    key_by: KeyBy,
    buckets: Mutex<Buckets>,
    host: Host,
}

impl RateLimit {
    fn lock(&self) -> MutexGuard<'_, Buckets> {
        // Nothing panics while the lock is held; if something did, the map is still consistent.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_of(&self, call: &Call<'_>) -> Key {
        if self.key_by == KeyBy::Subject {
            if let Some(sub) = call.user().and_then(|u| u.subject()) {
                return Key::Subject(call.provider().unwrap_or_default().into(), sub.into());
            }
        }
        Key::Client(client_key(call.client()).into())
    }

    /// Takes a token from `key`'s bucket at `now` (or, for a dry run, says whether it could).
    #[cfg(test)]
    fn decide(&self, key: Key, now: Instant, dry_run: bool) -> Result<Decision, PluginError> {
        self.decide_with(key, || now, dry_run)
    }

    /// The decision for `key`, at the time `clock` tells once the buckets are locked: a time read
    /// before would let a request that got the lock later take a token at an earlier moment, and
    /// a bucket would look fuller than it is to the one that waited.
    fn decide_with(
        &self,
        key: Key,
        clock: impl FnOnce() -> Instant,
        dry_run: bool,
    ) -> Result<Decision, PluginError> {
        let Limits {
            interval, window, ..
        } = self.limits;
        let mut buckets = self.lock();
        let now = clock();
        let full_at = match buckets.full_at.get(&key) {
            Some(t) => *t,
            None => {
                if buckets.full_at.len() >= self.limits.max_keys
                    && !self.make_room(&mut buckets, now, dry_run)
                {
                    // A dry run does not sweep: the earliest bucket to refill stands in.
                    let wait = buckets
                        .next_sweep
                        .or_else(|| buckets.full_at.values().min().copied())
                        .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                    return Ok(Decision::Full {
                        retry_after: whole_seconds(wait),
                    });
                }
                now
            }
        };
        // Taking a token moves the moment the bucket is full again one interval later.
        let taken = full_at
            .max(now)
            .checked_add(interval)
            .ok_or_else(|| PluginError::internal("ratelimit: clock out of range"))?;
        let ahead = taken.saturating_duration_since(now);
        if ahead > window {
            return Ok(Decision::Deny {
                retry_after: whole_seconds(ahead - window),
            });
        }
        let remaining = (window - ahead).as_nanos() / interval.as_nanos();
        if !dry_run {
            buckets.full_at.insert(key, taken);
        }
        Ok(Decision::Allow {
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
        })
    }

    /// Drops the buckets that are full at `now`; whether there is room for one more. A dry run
    /// drops nothing and only says whether a real request would find room.
    fn make_room(&self, buckets: &mut Buckets, now: Instant, dry_run: bool) -> bool {
        if buckets.next_sweep.is_some_and(|t| now < t) {
            return false;
        }
        if dry_run {
            return buckets.full_at.values().any(|t| *t <= now);
        }
        buckets.full_at.retain(|_, t| *t > now);
        if buckets.full_at.len() < self.limits.max_keys {
            buckets.next_sweep = None;
            buckets.full_logged = false;
            return true;
        }
        // Buckets only get fuller-later when used, so none is full before the earliest one now.
        buckets.next_sweep = buckets.full_at.values().min().copied();
        if !buckets.full_logged {
            buckets.full_logged = true;
            self.host.warn(&format!(
                "ratelimit: all {} buckets (max_keys) are in use and none has refilled: new keys \
                 are answered 503",
                self.limits.max_keys
            ));
        }
        false
    }

    fn flow(&self, decision: Decision) -> Flow {
        let limit = self.limits.burst.to_string();
        match decision {
            Decision::Allow { remaining } => Flow::proceed()
                .add_response_header("ratelimit-limit", &limit)
                .add_response_header("ratelimit-remaining", &remaining.to_string()),
            Decision::Deny { retry_after } => Flow::error(429, "Too Many Requests")
                .with_answer_header("retry-after", &retry_after.to_string())
                .with_answer_header("ratelimit-limit", &limit)
                .with_answer_header("ratelimit-remaining", "0"),
            Decision::Full { retry_after } => Flow::error(503, "Service Unavailable")
                .with_answer_header("retry-after", &retry_after.to_string()),
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl RequestMiddleware for RateLimit {
    // A bucket in memory: answered at once, no future (and `on_request`, left to its default,
    // gives the same answer).
    fn on_request_now(&self, call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
        let key = self.key_of(call);
        Some(
            self.decide_with(key, Instant::now, call.is_dry_run())
                .map(|d| self.flow(d)),
        )
    }
}

/// The plugin.
pub struct RateLimitPlugin;

impl MiddlewarePlugin for RateLimitPlugin {
    type Middleware = RateLimit;
    type Config = Config;
    const NAME: &'static str = "ratelimit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "token-bucket rate limit per subject or client address: 429 with retry-after";

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        Limits::of(config).map(|_| ())
    }

    fn build(config: Config, host: Host) -> Result<RateLimit, PluginError> {
        Ok(RateLimit {
            limits: Limits::of(&config)?,
            key_by: config.key,
            buckets: Mutex::default(),
            host,
        })
    }
}

export_middleware!(RateLimitPlugin);

#[cfg(test)]
mod tests;
