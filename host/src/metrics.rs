//! Prometheus metrics, served as OpenMetrics text at `/metrics`.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client): one explicit registry
//! per [`crate::app::App`] (no process-global recorder, so several apps in one test process never
//! mix their numbers), and label sets are typed structs whose values are `&'static str` classes or
//! names from the config, so a raw path, a user id or a token can never become a label value.
//!
//! Events (decisions, reloads, upstream answers) are counted as they happen; state that other
//! parts already keep (key-set fetch counters, plugin loads, mapped library copies) is read when
//! the metrics are scraped.

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
        MetricType,
    },
    registry::Registry,
};

use crate::{
    auth::{Decision, Denial},
    keys::KeyCache,
    plugin::Loader,
};

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

type HistogramFamily = Family<ResultLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a cached JWT check is sub-millisecond, a remote membership check is not.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

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

/// One provider's decision counters, one per reason class, each made on first use (so that only
/// the series that happened are exposed, as with the family alone).
type ReasonCounters = [OnceLock<Counter>; REASONS.len()];

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    /// Handles into `decisions` by provider name, so that counting a decision neither builds a
    /// label set nor hashes one: the family's own lookup is the slow path, taken once per series.
    decision_counters: RwLock<Vec<(String, ReasonCounters)>>,
    /// The same for decisions without a provider.
    decision_counters_none: ReasonCounters,
    decision_seconds: HistogramFamily,
    /// Handles into `decision_seconds`: `allow`, `deny`.
    decision_histograms: [OnceLock<Histogram>; 2],
    reloads: Family<ResultLabels, Counter>,
    generation: Gauge,
    upstream: Family<ResultLabels, Counter>,
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
        let mut registry = Registry::with_prefix("portcullis");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Auth decisions by provider instance, result (allow, deny) and reason class",
            decisions.clone(),
        );
        let decision_seconds: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "decision_duration_seconds",
            "Time to decide a request (authentication and authorization), by result",
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
        let upstream = Family::<ResultLabels, Counter>::default();
        registry.register(
            "upstream_responses",
            "Proxied requests by outcome (response, connect_error, timeout, error)",
            upstream.clone(),
        );
        registry.register_collector(Box::new(StateCollector { keys, loader }));
        Metrics {
            registry,
            decisions,
            decision_counters: RwLock::default(),
            decision_counters_none: Default::default(),
            decision_seconds,
            decision_histograms: Default::default(),
            reloads,
            generation,
            upstream,
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
        let counter = |slots: &ReasonCounters| {
            slots[reason]
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
        };
        if d.trace.provider.is_none() {
            counter(&self.decision_counters_none);
        } else if !self.count_known(provider, &counter) {
            let mut list = self
                .decision_counters
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if !list.iter().any(|(name, _)| name == provider) {
                list.push((provider.to_string(), ReasonCounters::default()));
            }
            drop(list);
            self.count_known(provider, &counter);
        }
        self.decision_histograms[r]
            .get_or_init(|| {
                self.decision_seconds
                    .get_or_create(&ResultLabels { result })
                    .clone()
            })
            .observe(took.as_secs_f64());
    }

    /// Applies `count` to `provider`'s counters if it has them yet.
    fn count_known(&self, provider: &str, count: &impl Fn(&ReasonCounters)) -> bool {
        let list = self
            .decision_counters
            .read()
            .unwrap_or_else(|e| e.into_inner());
        match list.iter().find(|(name, _)| name == provider) {
            Some((_, slots)) => {
                count(slots);
                true
            }
            None => false,
        }
    }

    /// Counts one reload attempt (`applied`, `unchanged` or `failed`) and the generation served.
    pub fn observe_reload(&self, result: &'static str, generation: u64) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Counts one proxied request by outcome (`response`, `connect_error`, `timeout`, `error`).
    pub fn observe_upstream(&self, result: &'static str) {
        self.upstream.get_or_create(&ResultLabels { result }).inc();
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
