//! Prometheus metrics, served as OpenMetrics text at `/metrics`.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client): one explicit registry
//! per [`crate::app::App`] (no process-global recorder, so several apps in one test process never
//! mix their numbers), and label sets are typed structs whose values are `&'static str` classes or
//! names from the config, so a raw path, a user id or a token can never become a label value.
//!
//! Events (decisions, reloads, upstream answers, responses) are counted as they happen; state that
//! other parts already keep (key-set fetch counters, plugin loads, mapped library copies) and the
//! process's own figures (`process_*`, see `process.rs`) are read when the metrics are scraped.
//!
//! The request path never builds a label set: each series is looked up in its family once and
//! its handle kept (per provider and reason, per status code, per route of a snapshot).

use std::{
    fmt,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{exponential_buckets, Histogram},
        info::Info,
        MetricType,
    },
    registry::Registry,
};

use crate::{
    auth::{Decision, Denial},
    config::RouteConfig,
    keys::KeyCache,
    plugin::Loader,
};

mod process;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// A provider instance name from the config, or `none`.
    provider: String,
    /// `allow` or `deny`.
    result: &'static str,
    /// A fixed class (see [`REASONS`]).
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResultLabels {
    /// A provider instance name from the config, or `none`.
    provider: String,
    /// `allow` or `deny`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// A route's `path` pattern, as written in the config.
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MiddlewareLabels {
    /// A middleware instance name from the config.
    middleware: String,
    /// The status it answered with (a failure counts as the 500 or 503 it was answered with).
    code: u16,
    /// `answer` (the middleware answered) or `failure` (it failed, timed out or panicked).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    /// An HTTP status code (100 to 999).
    code: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a cached JWT check is sub-millisecond, a remote membership check is not.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

fn upstream_histogram() -> Histogram {
    // 1 ms .. ~33 s: an upstream on the same host answers in a millisecond, a report in seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The status codes HTTP allows (`http::StatusCode` holds 100 to 999).
const FIRST_CODE: u16 = 100;
const CODES: usize = 900;

/// The reason classes (see [`reason_index`]); the first five are allowed requests.
const REASONS: [&str; 10] = [
    "authenticated",
    "route_open",
    "public",
    "preflight",
    "not_protected",
    "no_token",
    "invalid_token",
    "forbidden",
    "unavailable",
    "internal",
];

/// One provider's decision series: a counter per reason class and a latency histogram per result
/// (`allow`, `deny`), each made on first use (so that only the series that happened are exposed,
/// as with the families alone).
#[derive(Default)]
struct ProviderSeries {
    counters: [OnceLock<Counter>; REASONS.len()],
    seconds: [OnceLock<Histogram>; 2],
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: HistogramFamily<ProviderResultLabels>,
    /// Handles into `decisions` and `decision_seconds` by provider name, so that counting a
    /// decision neither builds a label set nor hashes one: the families' own lookup is the slow
    /// path, taken once per series.
    decision_series: RwLock<Vec<(String, ProviderSeries)>>,
    /// The same for decisions without a provider.
    decision_series_none: ProviderSeries,
    reloads: Family<ResultLabels, Counter>,
    generation: Gauge,
    /// 1 when the last reload attempt succeeded (applied or unchanged), 0 when it failed.
    reload_ok: Gauge,
    /// When a snapshot was last published (start or applied reload), Unix seconds.
    reload_success_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    upstream: Family<ResultLabels, Counter>,
    upstream_seconds: HistogramFamily<RouteLabels>,
    responses: Family<CodeLabels, Counter>,
    middleware_answers: Family<MiddlewareLabels, Counter>,
    /// Handles into `responses`, by status code less [`FIRST_CODE`].
    response_counters: Box<[OnceLock<Counter>]>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The class of a decision's reason, as an index in [`REASONS`]: a small fixed set, so that label
/// values stay bounded.
fn reason_index(d: &Decision) -> usize {
    match &d.result {
        Ok(Some(_)) => 0,
        Ok(None) if d.trace.route.is_some() => 1,
        Ok(None) if d.trace.public_pattern.is_some() => 2,
        Ok(None) if d.trace.reason == "cors preflight" => 3,
        Ok(None) => 4,
        Err(Denial::NoToken) => 5,
        Err(Denial::InvalidToken(_)) => 6,
        Err(Denial::Forbidden(_)) => 7,
        Err(Denial::Unavailable(_)) => 8,
        Err(Denial::Internal(_)) => 9,
    }
}

impl Metrics {
    /// Metrics reading key-set counters from `keys` and plugin counters from `loader` when scraped.
    pub fn new(keys: Arc<KeyCache>, loader: Arc<Loader>) -> Metrics {
        let mut root = Registry::default();
        // The standard process metrics keep their standard names; everything else is ours.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("portcullis");
        registry.register(
            "build",
            "The version of the running server (the value is always 1)",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Auth decisions by provider instance, result (allow, deny) and reason class",
            decisions.clone(),
        );
        let decision_seconds: HistogramFamily<ProviderResultLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "decision_duration_seconds",
            "Time to decide a request (authentication and authorization), by provider instance (or none) and result",
            decision_seconds.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reload attempts by result (applied, unchanged, failed), startup included",
            reloads.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the runtime snapshot being served",
            generation.clone(),
        );
        let reload_ok = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "Whether the last reload attempt succeeded (1: applied or unchanged) or was refused (0)",
            reload_ok.clone(),
        );
        let reload_success_time = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the snapshot being served was published (start or applied reload), in Unix seconds",
            reload_success_time.clone(),
        );
        let upstream = Family::<ResultLabels, Counter>::default();
        registry.register(
            "upstream_responses",
            "Proxied requests by outcome (response, connect_error, timeout, error)",
            upstream.clone(),
        );
        let upstream_seconds: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(upstream_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time until a route's upstream answered with its response headers, by route path pattern",
            upstream_seconds.clone(),
        );
        let responses = Family::<CodeLabels, Counter>::default();
        registry.register(
            "http_responses",
            "Responses written on the main listener, by status code (proxied answers included)",
            responses.clone(),
        );
        let middleware_answers = Family::<MiddlewareLabels, Counter>::default();
        registry.register(
            "middleware_answers",
            "Requests a middleware instance answered instead of letting through, by instance, status code and result (answer, failure)",
            middleware_answers.clone(),
        );
        registry.register_collector(Box::new(StateCollector { keys, loader }));
        Metrics {
            registry: root,
            decisions,
            decision_seconds,
            decision_series: RwLock::default(),
            decision_series_none: ProviderSeries::default(),
            reloads,
            generation,
            reload_ok,
            reload_success_time,
            upstream,
            upstream_seconds,
            responses,
            middleware_answers,
            response_counters: (0..CODES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts one decision and how long it took.
    pub fn observe_decision(&self, d: &Decision, took: Duration) {
        let reason = reason_index(d);
        let (result, r) = if d.result.is_ok() {
            ("allow", 0)
        } else {
            ("deny", 1)
        };
        let provider = d.trace.provider.as_deref().unwrap_or("none");
        let count = |series: &ProviderSeries| {
            series.counters[reason]
                .get_or_init(|| {
                    self.decisions
                        .get_or_create(&DecisionLabels {
                            provider: provider.to_string(),
                            result,
                            reason: REASONS[reason],
                        })
                        .clone()
                })
                .inc();
            series.seconds[r]
                .get_or_init(|| {
                    self.decision_seconds
                        .get_or_create(&ProviderResultLabels {
                            provider: provider.to_string(),
                            result,
                        })
                        .clone()
                })
                .observe(took.as_secs_f64());
        };
        if d.trace.provider.is_none() {
            count(&self.decision_series_none);
        } else if !self.count_known(provider, &count) {
            let mut list = self
                .decision_series
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if !list.iter().any(|(name, _)| name == provider) {
                list.push((provider.to_string(), ProviderSeries::default()));
            }
            drop(list);
            self.count_known(provider, &count);
        }
    }

    /// Applies `count` to `provider`'s series if it has them yet.
    fn count_known(&self, provider: &str, count: &impl Fn(&ProviderSeries)) -> bool {
        let list = self
            .decision_series
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match list.iter().find(|(name, _)| name == provider) {
            Some((_, series)) => {
                count(series);
                true
            }
            None => false,
        }
    }

    /// Counts one reload attempt (`applied`, `unchanged` or `failed`; the start counts as
    /// `applied`) and the generation served; an applied one is the last success from now.
    pub fn observe_reload(&self, result: &'static str, generation: u64) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.reload_ok.set(i64::from(result != "failed"));
        if result == "applied" {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.reload_success_time.set(now);
        }
    }

    /// Counts one proxied request by outcome (`response`, `connect_error`, `timeout`, `error`).
    pub fn observe_upstream(&self, result: &'static str) {
        self.upstream.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one request middleware instance `middleware` answered with `code` (`failed`: it
    /// failed, and the request was refused with `code`).
    pub fn observe_middleware_answer(&self, middleware: &str, code: u16, failed: bool) {
        self.middleware_answers
            .get_or_create(&MiddlewareLabels {
                middleware: middleware.to_string(),
                code,
                result: if failed { "failure" } else { "answer" },
            })
            .inc();
    }

    /// Counts one response written on the main listener, by its status code.
    pub fn observe_response(&self, status: poem::http::StatusCode) {
        let code = status.as_u16();
        let Some(slot) = code
            .checked_sub(FIRST_CODE)
            .and_then(|i| self.response_counters.get(usize::from(i)))
        else {
            return;
        };
        slot.get_or_init(|| self.responses.get_or_create(&CodeLabels { code }).clone())
            .inc();
    }

    /// The upstream latency series of a snapshot's routes (`routes:`, in order), each labelled
    /// with its route's path pattern and made on the route's first answer. Made once per
    /// snapshot, so that timing a proxied request is an index, not a lookup by name.
    pub fn route_timers(&self, routes: &[RouteConfig]) -> RouteTimers {
        RouteTimers {
            family: Some(self.upstream_seconds.clone()),
            routes: routes
                .iter()
                .map(|r| (r.path.clone(), OnceLock::new()))
                .collect(),
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; an encoder error is a bug worth seeing.
            tracing::error!("metrics could not be encoded");
        }
        out
    }
}

/// One snapshot's upstream latency series, by route index (see [`Metrics::route_timers`]). The
/// default times nothing (a snapshot built for `check`).
#[derive(Default)]
pub struct RouteTimers {
    family: Option<HistogramFamily<RouteLabels>>,
    routes: Box<[(String, OnceLock<Histogram>)]>,
}

impl fmt::Debug for RouteTimers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTimers")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl RouteTimers {
    /// Records that route `index`'s upstream answered after `took`.
    pub fn observe(&self, index: usize, took: Duration) {
        let (Some(family), Some((route, slot))) = (&self.family, self.routes.get(index)) else {
            return;
        };
        slot.get_or_init(|| {
            family
                .get_or_create(&RouteLabels {
                    route: route.clone(),
                })
                .clone()
        })
        .observe(took.as_secs_f64());
    }
}

/// Reads counters other parts keep, at scrape time.
struct StateCollector {
    keys: Arc<KeyCache>,
    loader: Arc<Loader>,
}

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let stats = self.keys.stats();
        let fetches = ConstCounter::new(stats.iter().map(|s| s.fetches).sum::<u64>());
        fetches.encode(encoder.encode_descriptor(
            "key_fetches",
            "Key set (JWKS, certificate map) fetch attempts, all URLs together",
            None,
            fetches.metric_type(),
        )?)?;
        let failures = ConstCounter::new(stats.iter().map(|s| s.failures).sum::<u64>());
        failures.encode(encoder.encode_descriptor(
            "key_fetch_failures",
            "Key set fetches that failed (the last good set keeps serving while it may)",
            None,
            failures.metric_type(),
        )?)?;
        let key_sets = ConstGauge::new(i64::try_from(stats.len()).unwrap_or(i64::MAX));
        key_sets.encode(encoder.encode_descriptor(
            "key_sets",
            "Key set URLs known to the process",
            None,
            key_sets.metric_type(),
        )?)?;
        let counts = self.loader.load_counts();
        let mut loads = encoder.encode_descriptor(
            "plugin_loads",
            "Plugin file loads by result: mapped (a new library copy), reused (same content already mapped), failed",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("mapped", counts.mapped),
            ("reused", counts.reused),
            ("failed", counts.failed),
        ] {
            let labels = [("result", result)];
            ConstCounter::new(n).encode(loads.encode_family(&labels)?)?;
        }
        let mapped = ConstGauge::new(i64::try_from(self.loader.mapped_count()).unwrap_or(i64::MAX));
        mapped.encode(encoder.encode_descriptor(
            "plugin_libraries_mapped",
            "Distinct plugin library copies mapped into the process (never unmapped)",
            None,
            mapped.metric_type(),
        )?)?;
        Ok(())
    }
}
