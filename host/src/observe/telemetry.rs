//! Logs and traces.
//!
//! Logs go to stderr, human-readable or one JSON object per line (`--log-format`,
//! `PORTCULLIS_LOG_FORMAT`), filtered by `PORTCULLIS_LOG` (`info` by default). Every request runs
//! in an `http.request` span that carries its request id, so every line logged while serving it
//! names the request; each plugin call (`auth.construct`, `auth.authenticate`, `auth.authorize`,
//! the seed's `@InstrumentClass({prefix: 'auth'})`) has its own span naming the provider instance
//! and the plugin.
//!
//! The same spans are exported over OTLP (HTTP/protobuf) when `telemetry.otlp_endpoint` is set in
//! the YAML or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! variables are; a `traceparent` header on a request makes its span a child of the caller's.
//!
//! Spans never carry a token, a header value or a config value: only the request id, method,
//! canonical path, status, provider instance, plugin name and how a call ended.

use std::{
    future::Future,
    io::IsTerminal as _,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{propagation::TextMapPropagator as _, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use portcullis_plugin_api::{ErrorKind, PluginError};
use tracing::{field::Empty, Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{filter::Targets, layer::SubscriberExt as _, Layer as _};

use crate::config::TelemetryConfig;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event, with the spans it happened in.
    Human,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`, `spans`).
    Json,
}

/// Whether spans are exported (decides whether incoming `traceparent` headers are read).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The installed logging and tracing; [`Telemetry::shutdown`] flushes spans not yet exported.
#[must_use = "call shutdown() before exiting so that the last spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Where spans are exported, if anywhere.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: exporting the last traces failed: {e}");
            }
        }
    }
}

/// The OTLP traces URL: the YAML's base URL with `/v1/traces`, else what the standard
/// environment variables say (the exporter reads them itself), else `None`: no export.
pub fn otlp_traces_url(
    config: Option<&TelemetryConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Option<String>> {
    if let Some(base) = config.and_then(|c| c.otlp_endpoint.as_deref()) {
        let base = base.trim_end_matches('/');
        return Some(Some(if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        }));
    }
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .then_some(None)
}

fn exporter(
    config: Option<&TelemetryConfig>,
) -> Result<Option<SdkTracerProvider>, opentelemetry_otlp::ExporterBuildError> {
    let Some(url) = otlp_traces_url(config, |k| std::env::var(k).ok()) else {
        return Ok(None);
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Some(url) = url {
        builder = builder.with_endpoint(url);
    }
    let exporter = builder.build()?;
    let service_name = config
        .and_then(|c| c.service_name.clone())
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "portcullis".into());
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Installs the global subscriber: log lines to stderr in `format`, and span export when
/// `config` or the environment asks for it. Call once, before the async runtime starts.
pub fn init(format: LogFormat, config: Option<&TelemetryConfig>) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a container log gets plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match format {
        LogFormat::Human => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let (provider, problem) = match exporter(config) {
        Ok(p) => (p, None),
        Err(e) => (None, Some(e.to_string())),
    };
    // Only our own spans and events, whatever PORTCULLIS_LOG says: the exporter's HTTP client
    // logs through `tracing` too, and exporting those would feed on itself.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("portcullis"))
            .with_filter(Targets::new().with_target("portcullis", tracing::Level::INFO))
    });
    let subscriber = tracing_subscriber::registry().with(fmt).with(otel);
    let _ = tracing::subscriber::set_global_default(subscriber);
    if let Some(e) = problem {
        tracing::warn!("traces are not exported: {e}");
    }
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Telemetry { provider }
}

struct Headers<'a>(&'a poem::http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one request. `path` and `status` are recorded once known (the canonical path,
/// never the raw one). With export on, a W3C `traceparent` header makes it a child of the
/// caller's span.
pub fn request_span(request_id: &str, method: &str, headers: &poem::http::HeaderMap) -> Span {
    let span = tracing::info_span!(
        "http.request",
        request_id,
        method,
        path = Empty,
        status = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
    );
    if EXPORTING.load(Ordering::Relaxed) && headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the canonical path on the current request span.
pub fn record_path(path: &str) {
    Span::current().record("path", path);
}

/// Records the answer's status on the current request span (5xx marks it failed).
pub fn record_status(status: u16) {
    let span = Span::current();
    span.record("status", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// A call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginCall {
    /// `new_provider`: building an instance from its config.
    Construct,
    /// `authenticate`: token → user.
    Authenticate,
    /// `authorize`: user → allowed.
    Authorize,
}

/// How a plugin call ended, for its span: `ok` or the error's kind, and whether it is a failure
/// of the call (a rejected token is an answer, not a failure).
pub trait CallOutcome {
    /// `(outcome, failed)`.
    fn outcome(&self) -> (&'static str, bool);
}

impl<T> CallOutcome for Result<T, PluginError> {
    fn outcome(&self) -> (&'static str, bool) {
        match self {
            Ok(_) => ("ok", false),
            Err(e) => match e.kind() {
                ErrorKind::INVALID_TOKEN => ("invalid_token", false),
                ErrorKind::UNAVAILABLE => ("unavailable", true),
                ErrorKind::CONFIG => ("config", true),
                _ => ("error", true),
            },
        }
    }
}

impl<T> CallOutcome for Result<T, String> {
    fn outcome(&self) -> (&'static str, bool) {
        match self {
            Ok(_) => ("ok", false),
            Err(_) => ("error", true),
        }
    }
}

fn plugin_span(call: PluginCall, provider: &str, plugin: &str) -> Span {
    macro_rules! span {
        ($name:literal) => {
            tracing::info_span!(
                $name,
                provider,
                plugin,
                outcome = Empty,
                otel.status_code = Empty
            )
        };
    }
    match call {
        PluginCall::Construct => span!("auth.construct"),
        PluginCall::Authenticate => span!("auth.authenticate"),
        PluginCall::Authorize => span!("auth.authorize"),
    }
}

/// Runs `fut`, a call into the plugin `plugin` for the provider instance `provider`, in its own
/// span, and records how it ended. The span starts when the future is first polled, so a call
/// that is never made (an answer served from a cache) leaves no span.
pub async fn traced<T, R>(call: PluginCall, provider: &str, plugin: &str, fut: T) -> R
where
    T: Future<Output = R>,
    R: CallOutcome,
{
    let span = plugin_span(call, provider, plugin);
    let result = fut.instrument(span.clone()).await;
    let (outcome, failed) = result.outcome();
    span.record("outcome", outcome);
    if failed {
        span.record("otel.status_code", "ERROR");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(endpoint: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.into()),
            service_name: None,
        }
    }

    #[test]
    fn the_yaml_endpoint_is_a_base_url_and_wins_over_the_environment() {
        let env = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://env:4318".into());
        assert_eq!(
            otlp_traces_url(Some(&cfg("http://c:4318/")), env),
            Some(Some("http://c:4318/v1/traces".into()))
        );
        assert_eq!(
            otlp_traces_url(Some(&cfg("http://c:4318/v1/traces")), env),
            Some(Some("http://c:4318/v1/traces".into()))
        );
    }

    #[test]
    fn the_standard_variables_turn_export_on_and_nothing_else_does() {
        let none = |_: &str| None;
        assert_eq!(otlp_traces_url(None, none), None);
        assert_eq!(
            otlp_traces_url(Some(&TelemetryConfig::default()), none),
            None
        );
        let base = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://e:4318".into());
        assert_eq!(otlp_traces_url(None, base), Some(None));
        let traces =
            |k: &str| (k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "http://e/t".into());
        assert_eq!(otlp_traces_url(None, traces), Some(None));
        let blank = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| " ".into());
        assert_eq!(otlp_traces_url(None, blank), None);
        let disabled = |k: &str| match k {
            "OTEL_SDK_DISABLED" => Some("true".into()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://e:4318".into()),
            _ => None,
        };
        assert_eq!(otlp_traces_url(None, disabled), None);
    }

    struct NoVars;
    impl crate::config::VarSource for NoVars {
        fn get(&self, _: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_yaml_section_is_checked_with_its_key_path() {
        let compile = |t: &str| {
            crate::config::compile_str(
                &format!("version: 1\ntelemetry: {t}\n"),
                std::path::Path::new("c.yaml"),
                &NoVars,
            )
        };
        let ok = compile("{ otlp_endpoint: 'http://collector:4318', service_name: edge }")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok.telemetry.otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(ok.telemetry.service_name.as_deref(), Some("edge"));
        for bad in [
            "{ otlp_endpoint: 'collector:4318' }",
            "{ otlp_endpoint: 'ftp://c' }",
        ] {
            let e = compile(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains("telemetry.otlp_endpoint: not an http(s) URL"),
                "{e}"
            );
        }
        let e = compile("{ endpoint: x }")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("telemetry.endpoint"), "{e}");
    }

    #[test]
    fn a_rejected_token_is_an_answer_and_an_unreachable_provider_a_failure() {
        let r: Result<(), PluginError> = Err(PluginError::invalid_token("expired"));
        assert_eq!(r.outcome(), ("invalid_token", false));
        let r: Result<(), PluginError> = Err(PluginError::unavailable("down"));
        assert_eq!(r.outcome(), ("unavailable", true));
        let r: Result<(), String> = Err("rejected".into());
        assert_eq!(r.outcome(), ("error", true));
    }
}
