//! `server:` and `telemetry:` compiled: limits, CORS, TLS files, the metrics listener, sizes.

use super::*;

pub(super) fn compile_server(raw: RawServer, base: &Path, issues: &mut Issues) -> ServerConfig {
    let port = raw
        .port
        .or_else(|| std::env::var("PORT").ok().and_then(|p| p.parse().ok()))
        .unwrap_or(DEFAULT_PORT);
    let body_limit = match &raw.body_size_limit {
        None => DEFAULT_BODY_LIMIT,
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).unwrap_or_else(|| {
            issues.push(
                "server.body_size_limit",
                "must be a positive number of bytes",
            );
            DEFAULT_BODY_LIMIT
        }),
        Some(Value::String(s)) => parse_size(s).unwrap_or_else(|| {
            issues.push(
                "server.body_size_limit",
                "not a size (examples: 4.5mb, 512kb, 1048576)",
            );
            DEFAULT_BODY_LIMIT
        }),
        Some(_) => {
            issues.push("server.body_size_limit", "must be a size such as 4.5mb");
            DEFAULT_BODY_LIMIT
        }
    };
    // `false`, `true` or options; read here rather than through an untagged enum, which serde
    // reads from a buffered copy where unknown keys go unseen.
    let cors = match raw.cors {
        Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) | None | Some(Value::Null) => {
            Some(cors_defaults(RawCorsOptions::default()))
        }
        Some(v @ Value::Mapping(_)) => {
            de_value::<RawCorsOptions>(v, "server.cors", issues).map(cors_defaults)
        }
        Some(_) => {
            issues.push(
                "server.cors",
                "expected true, false or a mapping of options",
            );
            None
        }
    };
    if let Some(c) = &cors {
        if c.credentials && c.origins.iter().any(|o| o == "*") {
            issues.push(
                "server.cors.credentials",
                "credentials cannot be combined with origin `*`; list the allowed origins",
            );
        }
    }
    let https = raw.https.map(|h| HttpsConfig {
        key: resolve(base, &h.key),
        cert: resolve(base, &h.cert),
    });
    let max_token_bytes = raw.max_token_bytes.unwrap_or(16 * 1024);
    if !(512..=1024 * 1024).contains(&max_token_bytes) {
        issues.push("server.max_token_bytes", "must be between 512 and 1048576");
    }
    let plugin_max_in_flight = raw.plugin_max_in_flight.unwrap_or(256);
    if !(1..=65536).contains(&plugin_max_in_flight) {
        issues.push("server.plugin_max_in_flight", "must be between 1 and 65536");
    }
    let header_read_timeout = duration(
        raw.header_read_timeout.as_deref(),
        Duration::from_secs(30),
        "server.header_read_timeout",
        issues,
    );
    ServerConfig {
        host: raw.host.unwrap_or_else(|| "localhost".into()),
        port,
        timeout: duration(
            raw.timeout.as_deref(),
            Duration::from_secs(180),
            "server.timeout",
            issues,
        ),
        body_limit,
        cors,
        swagger_ui: raw.build.swagger_ui,
        openapi_docs: raw.build.openapi_docs || raw.build.swagger_ui,
        api_req_logs: raw.build.api_req_logs,
        https,
        plugin_timeout: duration(
            raw.plugin_timeout.as_deref(),
            Duration::from_secs(10),
            "server.plugin_timeout",
            issues,
        ),
        max_token_bytes,
        metrics: metrics_setting(raw.metrics.as_ref(), issues),
        plugin_max_in_flight,
        header_read_timeout,
    }
}

/// `server.metrics`: `true`, `false`, `{listen: "127.0.0.1:9464"}` or `{protected: true}`.
pub(super) fn metrics_setting(value: Option<&Value>, issues: &mut Issues) -> MetricsConfig {
    const PATH: &str = "server.metrics";
    const EXPECTED: &str = "must be true, false, {listen: \"127.0.0.1:9464\"} or {protected: true}";
    let map = match value {
        None | Some(Value::Null) | Some(Value::Bool(true)) => return MetricsConfig::Public,
        Some(Value::Bool(false)) => return MetricsConfig::Off,
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            issues.push(PATH, EXPECTED);
            return MetricsConfig::Public;
        }
    };
    let (mut listen, mut protected) = (None, false);
    for (k, v) in map {
        match (k.as_str(), v) {
            (Some("listen"), Value::String(a)) => match a.trim().parse() {
                Ok(addr) => listen = Some(addr),
                Err(_) => issues.push(
                    format!("{PATH}.listen"),
                    "not an IP address and port (example: 127.0.0.1:9464)",
                ),
            },
            (Some("listen"), _) => issues.push(
                format!("{PATH}.listen"),
                "must be an IP address and port such as \"127.0.0.1:9464\"",
            ),
            (Some("protected"), Value::Bool(b)) => protected = *b,
            (Some("protected"), _) => {
                issues.push(format!("{PATH}.protected"), "must be true or false")
            }
            (Some(other), _) => issues.push(
                format!("{PATH}.{other}"),
                "unknown key (expected listen or protected)",
            ),
            (None, _) => issues.push(PATH, "unknown key (expected listen or protected)"),
        }
    }
    match (listen, protected) {
        (Some(_), true) => {
            issues.push(
                PATH,
                "listen and protected cannot be combined: the separate listener has no gate; keep it on a private address",
            );
            MetricsConfig::Off
        }
        (Some(addr), false) => MetricsConfig::Listen(addr),
        (None, true) => MetricsConfig::Protected,
        (None, false) => MetricsConfig::Public,
    }
}

pub(super) fn cors_defaults(o: RawCorsOptions) -> CorsConfig {
    let mut allow_headers = vec!["Content-Type".to_string(), "Authorization".to_string()];
    for h in o.allow_headers.unwrap_or_default() {
        if !allow_headers.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
            allow_headers.push(h);
        }
    }
    let mut expose_headers = vec!["Content-Length".to_string(), "X-Requested-With".to_string()];
    for h in o.expose_headers.unwrap_or_default() {
        if !expose_headers.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
            expose_headers.push(h);
        }
    }
    CorsConfig {
        origins: o
            .origin
            .map(StringOrList::into_vec)
            .unwrap_or_else(|| vec!["*".into()]),
        allow_methods: o.allow_methods.unwrap_or_else(|| {
            ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec()
        }),
        allow_headers,
        expose_headers,
        credentials: o.credentials.unwrap_or(false),
        max_age: o.max_age.unwrap_or(3600),
    }
}

pub(super) fn compile_telemetry(raw: RawTelemetry, issues: &mut Issues) -> TelemetryConfig {
    let otlp_endpoint =
        raw.otlp_endpoint
            .filter(|e| !e.is_empty())
            .and_then(|e| match reqwest::Url::parse(&e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    Some(e)
                }
                _ => {
                    issues.push(
                        "telemetry.otlp_endpoint",
                        "not an http(s) URL (example: http://otel-collector:4318)",
                    );
                    None
                }
            });
    let service_name = raw.service_name.filter(|s| !s.is_empty());
    TelemetryConfig {
        otlp_endpoint,
        service_name,
    }
}

/// Parses `4.5mb`, `512kb`, `1mib`, `100b` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = (n * mult).round();
    (1.0..1e15).contains(&v).then_some(v as u64)
}
