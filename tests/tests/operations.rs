#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Operations end to end: spans exported to a local OTLP receiver, a request id on every log
//! line, SIGTERM draining, the Kubernetes manifests and Dockerfile, Swagger UI without a CDN.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value::Value as Any, AnyValue, KeyValue},
};
use poem::{handler, web::Data, EndpointExt as _, Route};
use portcullis_tests::{echo::Echo, *};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// OTLP

type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// A local OTLP/HTTP traces receiver: keeps every `POST /v1/traces` body.
async fn otlp_receiver() -> (mock::MockServer, Bodies) {
    #[handler]
    fn traces(Data(bodies): Data<&Bodies>, body: Vec<u8>) -> poem::Response {
        bodies.lock().unwrap().push(body);
        // An empty ExportTraceServiceResponse is zero bytes of protobuf.
        poem::Response::builder()
            .content_type("application/x-protobuf")
            .body(Vec::<u8>::new())
    }
    let bodies = Bodies::default();
    let server = mock::MockServer::serve(
        Route::new()
            .at("/v1/traces", poem::post(traces))
            .data(bodies.clone()),
    )
    .await;
    (server, bodies)
}

#[derive(Debug)]
struct ExportedSpan {
    name: String,
    service: String,
    trace_id: String,
    attrs: HashMap<String, String>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

fn decode(bodies: &Bodies) -> Vec<ExportedSpan> {
    let mut out = Vec::new();
    for body in bodies.lock().unwrap().iter() {
        let req = <ExportTraceServiceRequest as prost::Message>::decode(&body[..]).unwrap();
        for rs in req.resource_spans {
            let resource = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(ExportedSpan {
                        name: s.name.clone(),
                        service: resource.get("service.name").cloned().unwrap_or_default(),
                        trace_id: s.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        attrs: attrs(&s.attributes),
                    });
                }
            }
        }
    }
    out
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn spans_of_requests_and_plugin_calls_reach_an_otlp_receiver_without_secrets() {
    let (receiver, bodies) = otlp_receiver().await;
    let endpoint = &receiver.base;
    let cfg = jwt_config(&format!(
        "auth:\n  protected: [\"/api/*\"]\ntelemetry:\n  otlp_endpoint: {endpoint}\n  service_name: portcullis-test\n"
    ));
    // Export every 50 ms instead of every 5 s, so the test waits less.
    let s = Server::start_with_env(&cfg, &[jwt_plugin()], &[("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let good = hs256(SECRET, good_claims("alice", json!({})));
    let forged = hs256(
        "another-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        good_claims("mallory", json!({})),
    );

    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&good)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let has = |spans: &[ExportedSpan], name: &str, want: &[(&str, &str)]| {
        spans.iter().any(|sp| {
            sp.name == name
                && want
                    .iter()
                    .all(|(k, v)| sp.attrs.get(*k).map(String::as_str) == Some(*v))
        })
    };
    let arrived = eventually(WAIT, || {
        let spans = decode(&bodies);
        has(
            &spans,
            "auth.construct",
            &[("provider", "main"), ("plugin", "jwt")],
        ) && has(
            &spans,
            "auth.authenticate",
            &[("provider", "main"), ("plugin", "jwt"), ("outcome", "ok")],
        ) && has(&spans, "auth.authenticate", &[("outcome", "invalid_token")])
            && has(&spans, "auth.authorize", &[("provider", "main")])
            && has(
                &spans,
                "http.request",
                &[
                    ("request_id", &id),
                    ("status", "200"),
                    ("path", "/api/auth/me"),
                ],
            )
            && has(&spans, "http.request", &[("status", "401")])
    })
    .await;
    let spans = decode(&bodies);
    assert!(arrived, "spans missing; got {spans:#?}\nlog:\n{}", s.log());

    assert!(spans.iter().all(|sp| sp.service == "portcullis-test"));
    // The caller's traceparent makes the request (and the plugin calls inside it) part of its trace.
    let request = spans
        .iter()
        .find(|sp| sp.name == "http.request" && sp.attrs.get("request_id") == Some(&id))
        .unwrap();
    assert_eq!(request.trace_id, TRACE_ID);
    assert!(spans
        .iter()
        .any(|sp| sp.name == "auth.authenticate" && sp.trace_id == TRACE_ID));

    // Nothing secret went out: not the tokens, not their signatures, not the HMAC secret.
    let all: Vec<u8> = bodies.lock().unwrap().concat();
    let all = String::from_utf8_lossy(&all);
    for secret in [
        good.as_str(),
        forged.as_str(),
        good.rsplit('.').next().unwrap(),
        SECRET,
    ] {
        assert!(!all.contains(secret), "a secret was exported");
    }
    // The human log names the request on the lines logged inside it.
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("request refused") && l.contains("http.request{request_id=")),
        "{log}"
    );
    assert!(!log.contains(&good) && !log.contains(&forged));
}

#[tokio::test]
async fn a_telemetry_change_is_refused_by_name_until_restart() {
    let open = "auth:\n  rules:\n    - allow: true\n";
    let s = Server::start(&jwt_config(open), &[jwt_plugin()]);
    let token = hs256(SECRET, good_claims("ops", json!({})));
    let with_telemetry = format!(
        "{}telemetry:\n  otlp_endpoint: http://127.0.0.1:9/\n",
        jwt_config(open)
    );
    std::fs::write(s.config_path(), with_telemetry).unwrap();
    let (status, r) = admin_reload(&s, &token).await;
    assert_eq!((status, &r["result"]), (422, &json!("failed")), "{r}");
    // Typed: a setting that needs a restart, not a broken file or a plugin.
    assert_eq!(r["errors"][0]["kind"], "restart", "{r}");
    assert!(r["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("telemetry: cannot change while running"));
}

// ---------------------------------------------------------------------------------------------
// Metrics placement (`server.metrics`)

async fn get(url: String, token: Option<&str>) -> (u16, String, String) {
    let mut r = client().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_on_their_own_listener_are_not_on_the_main_one_and_stay_put_on_reload() {
    let cfg = |metrics: &str| {
        jwt_config("auth:\n  rules:\n    - allow: true\n")
            .replace("  port: 0\n", &format!("  port: 0\n  metrics: {metrics}\n"))
    };
    let s = Server::start(&cfg("{ listen: \"127.0.0.1:0\" }"), &[jwt_plugin()]);
    let m = s.metrics_addr.expect("the metrics listener is announced");
    assert_ne!(m, s.addr);
    let token = hs256(SECRET, good_claims("ops", json!({})));
    // A request through the main listener, to be counted.
    assert_eq!(get(s.url("/api/auth/me"), Some(&token)).await.0, 200);
    let (status, ct, body) = get(format!("http://{m}/metrics"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(body.contains("portcullis_"), "{body}");
    assert!(body.contains("provider=\"main\""), "{body}");
    // Not on the main listener, with or without a token; nothing else on the metrics one.
    assert_eq!(get(s.url("/metrics"), None).await.0, 404);
    assert_eq!(get(s.url("/metrics"), Some(&token)).await.0, 404);
    assert_eq!(get(format!("http://{m}/health"), None).await.0, 404);
    assert_eq!(
        get(format!("http://{m}/api/auth/me"), Some(&token)).await.0,
        404
    );
    // Moving or dropping the listener is refused by name, like a port change.
    for other in ["{ listen: \"127.0.0.1:1\" }", "true"] {
        std::fs::write(s.config_path(), cfg(other)).unwrap();
        let (status, r) = admin_reload(&s, &token).await;
        assert_eq!(
            (status, &r["result"]),
            (422, &json!("failed")),
            "{other}: {r}"
        );
        assert!(
            r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "restart"
                    && e["message"]
                        .as_str()
                        .unwrap()
                        .contains("server.metrics.listen: cannot change while running")),
            "{other}: {r}"
        );
        assert_eq!(get(format!("http://{m}/metrics"), None).await.0, 200);
        assert_eq!(get(s.url("/metrics"), None).await.0, 404);
    }
}

#[tokio::test]
async fn protected_metrics_need_a_token_and_follow_the_rules() {
    let cfg = |metrics: &str| {
        jwt_config(
            "auth:\n  rules:\n    - { path: /metrics, condition: \"user.role == 'ops'\", allow: true }\n    - { path: /api/*, allow: true }\n",
        )
        .replace("  port: 0\n", &format!("  port: 0\n  metrics: {metrics}\n"))
    };
    // Today's default first: public.
    let s = Server::start(&cfg("true"), &[jwt_plugin()]);
    assert_eq!(get(s.url("/metrics"), None).await.0, 200);
    // Switched to protected while running: applies without a restart.
    std::fs::write(s.config_path(), cfg("{ protected: true }")).unwrap();
    let end = std::time::Instant::now() + WAIT;
    while get(s.url("/metrics"), None).await.0 != 401 {
        assert!(
            std::time::Instant::now() < end,
            "protected metrics never asked for a token; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ops = hs256(SECRET, good_claims("o", json!({ "role": "ops" })));
    let dev = hs256(SECRET, good_claims("d", json!({ "role": "dev" })));
    let (status, ct, body) = get(s.url("/metrics"), Some(&ops)).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(body.contains("portcullis_"), "{body}");
    // Authenticated, but no rule allows it.
    assert_eq!(get(s.url("/metrics"), Some(&dev)).await.0, 403);
    assert_eq!(get(s.url("/metrics"), Some("not-a-token")).await.0, 401);
    // Other paths are judged as before.
    assert_eq!(get(s.url("/api/auth/me"), Some(&dev)).await.0, 200);
    assert_eq!(get(s.url("/health"), None).await.0, 200);
}

/// The value of the first sample whose line starts with `series` (a name and its labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(s: &Server) -> String {
    let (status, ct, body) = get(s.url("/metrics"), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

#[tokio::test]
async fn metrics_name_the_process_build_reloads_providers_routes_and_status_codes() {
    let up = Echo::start().await;
    let cfg = |extra: &str| {
        jwt_config("auth:\n  rules:\n    - allow: true\n")
            .replace("  port: 0\n", "  port: 0\n  body_size_limit: 1kb\n")
            + &format!(
                "routes:\n  - {{ path: /orders/*, upstream: \"{}\" }}\n{extra}",
                up.url()
            )
    };
    // No file watch: the reloads counted below are the ones this test asks for.
    let s = Server::start_without_watch(&cfg(""), &[jwt_plugin()]);
    let token = hs256(SECRET, good_claims("ops", json!({})));
    let send = |method: &str, path: &str, token: Option<&str>, body: usize| {
        let mut r = client().request(method.parse().unwrap(), s.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if body > 0 {
            r = r.body(vec![b'x'; body]);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("GET", "/api/auth/me", None, 0).await, 401);
    assert_eq!(send("GET", "/api/auth/me", Some(&token), 0).await, 200);
    assert_eq!(send("GET", "/orders/7", Some(&token), 0).await, 200);
    assert_eq!(send("GET", "/nowhere", None, 0).await, 404);
    assert_eq!(send("TRACE", "/health", None, 0).await, 405);
    assert_eq!(send("POST", "/api/auth/me", Some(&token), 4096).await, 413);

    let m = scrape(&s).await;
    let v = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("no {series} in:\n{m}"));
    // Every answer the server wrote, by code: refusals, the upstream's answer, the gate's own.
    for (code, n) in [("401", 1.0), ("404", 1.0), ("405", 1.0), ("413", 1.0)] {
        assert_eq!(
            v(&format!(
                "portcullis_http_responses_total{{code=\"{code}\"}}"
            )),
            n,
            "{code}"
        );
    }
    assert!(v("portcullis_http_responses_total{code=\"200\"}") >= 2.0);
    // Decision latency by the provider that decided (or `none`).
    assert_eq!(
        v("portcullis_decision_duration_seconds_count{provider=\"main\",result=\"allow\"}"),
        2.0
    );
    assert!(
        v("portcullis_decision_duration_seconds_sum{provider=\"main\",result=\"allow\"}") > 0.0
    );
    assert_eq!(
        v("portcullis_decision_duration_seconds_count{provider=\"none\",result=\"deny\"}"),
        1.0
    );
    // Upstream latency by the route's pattern from the config, never the request's path.
    assert_eq!(
        v("portcullis_upstream_duration_seconds_count{route=\"/orders/*\"}"),
        1.0
    );
    assert!(v("portcullis_upstream_duration_seconds_sum{route=\"/orders/*\"}") > 0.0);
    assert!(!m.contains("/orders/7"), "{m}");
    // The build, and the process read from /proc.
    assert_eq!(
        v(&format!(
            "portcullis_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    let rss = v("process_resident_memory_bytes ");
    assert!(rss > 1e6, "{rss}");
    assert!(v("process_virtual_memory_bytes ") >= rss);
    assert!(v("process_cpu_seconds_total ") >= 0.0);
    let fds = v("process_open_fds ");
    assert!(fds > 0.0 && v("process_max_fds ") >= fds);
    let now = now() as f64;
    let started = v("process_start_time_seconds ");
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "{started} {now}"
    );
    // The start is the first success.
    assert_eq!(v("portcullis_config_last_reload_successful "), 1.0);
    let first = v("portcullis_config_last_reload_success_timestamp_seconds ");
    assert!(
        first >= started - 1.0 && first <= now + 1.0,
        "{first} {now}"
    );

    // An applied reload moves the timestamp on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(
        s.config_path(),
        cfg(&format!(
            "  - {{ path: /stock/*, upstream: \"{}\" }}\n",
            up.url()
        )),
    )
    .unwrap();
    let (status, r) = admin_reload(&s, &token).await;
    assert_eq!((status, &r["result"]), (200, &json!("applied")), "{r}");
    let m = scrape(&s).await;
    let v = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("no {series} in:\n{m}"));
    assert_eq!(v("portcullis_config_last_reload_successful "), 1.0);
    let second = v("portcullis_config_last_reload_success_timestamp_seconds ");
    assert!(second > first, "{second} <= {first}");
    assert_eq!(v("portcullis_config_generation "), 2.0);

    // A refused one: the gauge says so, and the last success stays when it was.
    std::fs::write(s.config_path(), "version: 1\nserver: [\n").unwrap();
    let (status, r) = admin_reload(&s, &token).await;
    assert_eq!((status, &r["result"]), (422, &json!("failed")), "{r}");
    let m = scrape(&s).await;
    let v = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("no {series} in:\n{m}"));
    assert_eq!(v("portcullis_config_last_reload_successful "), 0.0);
    assert_eq!(
        v("portcullis_config_last_reload_success_timestamp_seconds "),
        second
    );
    assert_eq!(v("portcullis_reloads_total{result=\"failed\"}"), 1.0);
}

// ---------------------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn every_json_log_line_of_a_request_carries_its_id_and_no_token() {
    let cfg = jwt_config("auth:\n  protected: [\"/api/*\"]\n").replace(
        "openapi_docs: true }",
        "openapi_docs: true, api_req_logs: true }",
    );
    let s = Server::start_with_env(&cfg, &[jwt_plugin()], &[("PORTCULLIS_LOG_FORMAT", "json")]);
    let forged = hs256(
        "another-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        good_claims("mallory", json!({})),
    );
    // A sane incoming id is kept; anything else is replaced by one of ours.
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&forged)
        .header("x-request-id", "req-abc_123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "req-abc_123");
    let r = client()
        .get(s.url("/health"))
        .header("x-request-id", "no spaces; no <html>")
        .send()
        .await
        .unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(made, "no spaces; no <html>");
    assert!(!made.is_empty() && made.bytes().all(|b| b.is_ascii_hexdigit()));

    let lines = || -> Vec<Value> {
        s.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    assert!(
        eventually(WAIT, || lines()
            .iter()
            .filter(|l| l["target"] == "portcullis::access")
            .count()
            == 2)
        .await,
        "{}",
        s.log()
    );
    let in_request: Vec<Value> = lines()
        .into_iter()
        .filter(|l| l["span"]["name"] == "http.request")
        .collect();
    let ids: Vec<&str> = in_request
        .iter()
        .map(|l| l["span"]["request_id"].as_str().unwrap_or(""))
        .collect();
    // The refusal and two access lines, each naming its request.
    assert!(in_request.len() >= 3, "{}", s.log());
    assert!(
        ids.iter().all(|i| *i == "req-abc_123" || *i == made),
        "{ids:?}"
    );
    assert!(in_request
        .iter()
        .any(|l| l["fields"]["message"] == "request refused"
            && l["span"]["request_id"] == "req-abc_123"));
    assert!(!s.log().contains(&forged));
}

/// With `--log-format json`, what `serve` prints on stdout is JSON too, shaped like the log's
/// lines; scripts still find the URL (in `fields.url`).
#[test]
fn with_json_logs_the_listening_line_on_stdout_is_json() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        jwt_plugin(),
        dir.path().join("plugins/libportcullis_plugin_jwt.so"),
    )
    .unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, jwt_config("")).unwrap();
    let mut child = std::process::Command::new(binary())
        .args(["serve", "--no-watch", "--log-format", "json", "--config"])
        .arg(&cfg)
        .env("PORTCULLIS_STATE_DIR", dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let read = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    let line: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    let url = line["fields"]["url"].as_str().unwrap_or_default();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    assert_eq!(
        line["fields"]["message"],
        format!("portcullis listening on {url}"),
        "{line}"
    );
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
}

/// The access log names who asked (client address, user agent) and the provider that vouched.
#[tokio::test]
async fn the_access_log_names_the_client_its_user_agent_and_the_provider() {
    let cfg = jwt_config("auth:\n  protected: [\"/api/*\"]\n").replace(
        "openapi_docs: true }",
        "openapi_docs: true, api_req_logs: true }",
    );
    let s = Server::start_with_env(&cfg, &[jwt_plugin()], &[("PORTCULLIS_LOG_FORMAT", "json")]);
    let token = hs256(SECRET, good_claims("alice", json!({})));
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(&token)
        .header("user-agent", "deploy-check/1.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let access = || -> Vec<Value> {
        s.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["target"] == "portcullis::access")
            .collect()
    };
    assert!(
        eventually(WAIT, || access().len() == 2).await,
        "{}",
        s.log()
    );
    let lines = access();
    let me = lines
        .iter()
        .find(|l| l["fields"]["path"] == "/api/auth/me")
        .unwrap_or_else(|| panic!("{}", s.log()));
    assert_eq!(me["fields"]["user_agent"], "deploy-check/1.2", "{me}");
    assert_eq!(me["fields"]["provider"], "main", "{me}");
    let client_addr = me["fields"]["client"].as_str().unwrap_or_default();
    assert!(
        client_addr
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback()),
        "{me}"
    );
    // No token needed, none used: no provider.
    let health = lines
        .iter()
        .find(|l| l["fields"]["path"] == "/health")
        .unwrap_or_else(|| panic!("{}", s.log()));
    assert_eq!(health["fields"]["provider"], "-", "{health}");
    assert!(!s.log().contains(&token));
}

// ---------------------------------------------------------------------------------------------
// Shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_the_request_in_flight_refuses_new_connections_and_exits_0() {
    let held = mock::Gate::start().await;
    let cfg = format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: f\n    plugin: faulty\n    dangerous: {{ allow_http: true }}\n    config: {{ mode: slow, url: \"{}\" }}\nauth:\n  protected: [\"/api/*\"]\n",
        held.url
    );
    let mut s = Server::start(&cfg, &[plugin("portcullis_test_faulty")]);
    let in_flight = tokio::spawn({
        let url = s.url("/api/auth/me");
        async move {
            let r = client()
                .get(url)
                .bearer_auth("good-slow")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    assert!(eventually(WAIT, || held.entered.load(Ordering::SeqCst)).await);

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The listener closes: new connections are refused while the request is still held.
    let mut refused = false;
    let end = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < end {
        if tokio::net::TcpStream::connect(s.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting after SIGTERM; log:\n{}", s.log());
    assert!(
        !in_flight.is_finished(),
        "the held request is still in flight"
    );
    assert!(s.alive(), "the process waits for the request in flight");

    let _ = held.release.send(());
    let (code, body) = in_flight.await.unwrap();
    assert_eq!(code, 200, "{body}");
    // Exits on its own once drained, well within the 30 s drain window.
    assert!(
        eventually(WAIT, || s.exit_status().is_some()).await,
        "did not exit after draining; log:\n{}",
        s.log()
    );
    let status = s.exit_status().unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", s.log());
    assert!(s.log().contains("draining in-flight requests"));
}

// ---------------------------------------------------------------------------------------------
// Swagger UI

#[tokio::test]
async fn swagger_ui_is_self_contained_with_no_cdn() {
    let s = Server::start(&jwt_config(""), &[jwt_plugin()]);
    let r = client().get(s.url("/swagger-ui")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap().to_ascii_lowercase();
    assert!(html.contains("swaggeruibundle"), "the bundle is inline");
    for cdn in ["unpkg", "jsdelivr", "cdnjs", "googleapis", "cloudflare"] {
        assert!(!html.contains(cdn), "references {cdn}");
    }
    // No asset is fetched from elsewhere: no script or stylesheet with an absolute URL.
    for tag in [
        "<script src=\"http",
        "<script src='http",
        "<link rel=\"stylesheet\" href=\"http",
    ] {
        assert!(!html.contains(tag), "external asset: {tag}");
    }
    assert!(!html.contains("<script src="), "every script is inline");
    assert!(!html.contains("<link "), "every stylesheet is inline");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests and Dockerfile

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn manifests_in(dir: &str) -> Vec<(String, serde_yaml::Value)> {
    let dir = repo().join(dir);
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, v));
        }
    }
    out
}

fn manifests() -> Vec<(String, serde_yaml::Value)> {
    manifests_in("deploy/k8s")
}

fn kind<'a>(docs: &'a [(String, serde_yaml::Value)], k: &str) -> Vec<&'a serde_yaml::Value> {
    docs.iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == k)
        .collect()
}

fn s(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or("")
}

struct Vars;
impl portcullis::config::VarSource for Vars {
    fn get(&self, name: &str) -> Option<String> {
        (name == "JWT_AUTH_SECRET").then(|| SECRET.to_string())
    }
}

/// The port of a `host:port` address.
fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Compiles the ConfigMap's config; any problem fails.
fn compile_configmap_config(text: &str, file: &std::path::Path) -> portcullis::config::Config {
    portcullis::config::compile_str(text, file, &Vars)
        .unwrap_or_else(|e| panic!("the ConfigMap's config: {e}"))
}

#[test]
fn kubernetes_manifests_keep_their_invariants() {
    let docs = manifests();
    let deployments = kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let d = deployments[0];
    // Several replicas: the autoscaler's minimum when it owns the count, else the Deployment's.
    let hpas = kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1, "an autoscaler");
    let hpa = hpas[0];
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], d["metadata"]["name"]);
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert!(hpa["spec"]["maxReplicas"].as_u64() > hpa["spec"]["minReplicas"].as_u64());
    let hpa_metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(hpa_metric["name"], "cpu");
    assert!(
        d["spec"].get("replicas").is_none(),
        "the autoscaler owns the count; a count here resets it on every apply"
    );
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&d["spec"]["selector"]["matchLabels"], labels);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();

    let containers = pod["containers"].as_sequence().unwrap();
    let c = containers
        .iter()
        .find(|c| c["name"] == "portcullis")
        .unwrap();
    // Ready when the snapshot can serve; alive while the process answers.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(
        c["resources"]["limits"].get("cpu").is_none(),
        "a CPU limit throttles the request path (docs/operations.md)"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    // No secret in the environment: it is a file that can change under a running pod.
    for e in c["env"].as_sequence().unwrap() {
        assert!(e["valueFrom"].get("secretKeyRef").is_none(), "{e:?}");
    }

    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let mount = |vol: &str| mounts.iter().find(|m| m["name"] == vol).unwrap();
    // The config: a ConfigMap mounted as a folder, never with subPath (which never updates).
    for m in mounts {
        assert!(
            m.get("subPath").is_none() && m.get("subPathExpr").is_none(),
            "{m:?}"
        );
    }
    let config_mount = s(&mount("config")["mountPath"]).to_string();
    let cm_name = s(&volume("config")["configMap"]["name"]).to_string();
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().map(s).collect();
    let config_arg = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let (folder, file) = config_arg.rsplit_once('/').unwrap();
    assert_eq!(
        folder, config_mount,
        "--config points into the ConfigMap folder"
    );
    // The root file system is read-only: the plugin loader's copies need a writable /tmp.
    assert!(mounts.iter().any(|m| m["mountPath"] == "/tmp"));
    // Nothing in the pod can add or replace a plugin.
    assert_eq!(mount("plugins")["readOnly"], true);

    // The ConfigMap holds a config that compiles, whose plugins folder is the plugins volume.
    let cms = kind(&docs, "ConfigMap");
    let cm = cms
        .iter()
        .find(|m| m["metadata"]["name"] == cm_name.as_str())
        .unwrap();
    let text = s(&cm["data"][file]);
    let raw: serde_yaml::Value = serde_yaml::from_str(text).unwrap();

    // The JWT secret is read from the Secret volume's file, not from the environment.
    let secret_volume = volumes
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a Secret volume");
    let secret_mount = s(&mount(s(&secret_volume["name"]))["mountPath"]).to_string();
    let secret_ref = s(&raw["providers"][0]["config"]["secret"]).to_string();
    let secret_file = secret_ref
        .strip_prefix("${file:")
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or_else(|| panic!("the jwt secret is a ${{file:...}}: {secret_ref}"));
    assert!(
        secret_file.starts_with(&format!("{secret_mount}/")),
        "{secret_file} is in the Secret volume"
    );
    // Compile with the secret at a path this test owns.
    let tmp = tempfile::tempdir().unwrap();
    let local_secret = tmp.path().join("jwt-secret");
    std::fs::write(&local_secret, SECRET).unwrap();
    let text = text.replace(secret_file, &local_secret.display().to_string());
    let cfg = compile_configmap_config(&text, std::path::Path::new(config_arg));
    assert!(
        cfg.warnings.is_empty(),
        "the ConfigMap's config: {:?}",
        cfg.warning_lines()
    );
    assert_eq!(cfg.var_files, vec![local_secret]);
    assert_eq!(cfg.server.host, "0.0.0.0");
    let plugins_mount = s(&mount("plugins")["mountPath"]);
    assert_eq!(cfg.plugins.dir, std::path::Path::new(plugins_mount));
    assert!(volume("plugins").get("configMap").is_none());
    assert!(c["ports"][0]["containerPort"].as_u64() == Some(cfg.server.port.into()));
    // No API explorer in production.
    assert!(!cfg.server.swagger_ui && !cfg.server.openapi_docs);
    // Only pinned plugins load: one SHA-256 per plugin the image ships.
    let shipped = std::fs::read_dir(repo().join("plugins"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("Cargo.toml").exists())
        .count();
    let allow = cfg.plugins.allow.as_ref().expect("plugins.allow is set");
    assert_eq!(
        allow.len(),
        shipped,
        "one hash per shipped plugin: {allow:?}"
    );

    // Metrics on their own listener: a pod port, scraped by annotation, not in the Service.
    let listen = s(&raw["server"]["metrics"]["listen"]);
    let metrics_port = port_of(listen);
    let pod_ports = c["ports"].as_sequence().unwrap();
    let metrics = pod_ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(metrics_port))
        .expect("the metrics listener is a container port");
    assert_eq!(metrics["name"], "metrics");
    let notes = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(notes["prometheus.io/scrape"], "true");
    assert_eq!(s(&notes["prometheus.io/port"]), metrics_port.to_string());

    // Draining fits in the grace period: preStop + the server's 30 s drain.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > 30,
        "grace period {grace}s is shorter than the drain window"
    );

    // The Service and the PodDisruptionBudget select the pods.
    let svc = kind(&docs, "Service");
    assert_eq!(svc.len(), 1);
    for p in svc[0]["spec"]["ports"].as_sequence().unwrap() {
        assert!(
            p["targetPort"] != "metrics" && p["targetPort"].as_u64() != Some(metrics_port),
            "the public Service exposes metrics: {p:?}"
        );
    }
    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    let pod_labels = labels.as_mapping().unwrap();
    for (k, v) in svc[0]["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v));
    }
    assert_eq!(&pdb[0]["spec"]["selector"]["matchLabels"], labels);

    // The kustomization lists every manifest.
    let kustomization =
        std::fs::read_to_string(repo().join("deploy/k8s/kustomization.yaml")).unwrap();
    for (file, _) in docs.iter().filter(|(f, _)| f != "kustomization.yaml") {
        assert!(
            kustomization.contains(file.as_str()),
            "{file} not in kustomization.yaml"
        );
    }

    // The optional monitoring component: a ServiceMonitor whose Service names the pods' metrics
    // port and nothing else, and is not a way in (headless).
    let mon = manifests_in("deploy/k8s/monitoring");
    let sms = kind(&mon, "ServiceMonitor");
    assert_eq!(sms.len(), 1);
    let msvc = kind(&mon, "Service");
    assert_eq!(msvc.len(), 1);
    assert_eq!(msvc[0]["spec"]["clusterIP"], "None");
    let mports = msvc[0]["spec"]["ports"].as_sequence().unwrap();
    assert_eq!(mports.len(), 1);
    assert_eq!(mports[0]["targetPort"], "metrics");
    for (k, v) in msvc[0]["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v));
    }
    let msvc_labels = msvc[0]["metadata"]["labels"].as_mapping().unwrap();
    for (k, v) in sms[0]["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(msvc_labels.get(k), Some(v), "the ServiceMonitor selects it");
    }
    // ...and not the public Service.
    let public_labels = svc[0]["metadata"]["labels"].as_mapping().unwrap();
    assert!(sms[0]["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
        .iter()
        .any(|(k, v)| public_labels.get(k) != Some(v)));
    assert_eq!(sms[0]["spec"]["endpoints"][0]["port"], mports[0]["name"]);
}

#[test]
fn the_dockerfile_runs_the_server_and_every_plugin_as_a_non_root_user() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(froms[0].contains("rust:"));
    assert!(froms.last().unwrap().contains("-slim"));
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .unwrap()
        .trim_start_matches("USER ")
        .trim();
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    assert!(text.contains("libportcullis_plugin_*.so"));
    assert!(text.contains("/etc/portcullis/portcullis.yaml"));
    // The health check asks the port the config names, with the server's own binary.
    let check = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take_while(|l| l.starts_with("HEALTHCHECK") || l.starts_with("  "))
        .collect::<String>();
    assert!(check.contains("portcullis\", \"probe\""), "{check}");
    assert!(
        !check.contains("PORT") && !check.contains("curl"),
        "{check}"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

// Readiness (`/ready`)

#[tokio::test]
async fn readiness_says_whether_the_snapshot_can_answer() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let key = RsaKey::generate("k1");
    let up = Arc::new(AtomicBool::new(false));
    let (up2, jwk) = (up.clone(), key.jwk.clone());
    let idp = portcullis_tests::mock::MockServer::start(move |_| {
        if up2.load(Ordering::SeqCst) {
            portcullis_tests::mock::Reply::json(200, &json!({ "keys": [jwk.clone()] }))
        } else {
            portcullis_tests::mock::Reply::json(500, &json!({}))
        }
    })
    .await;
    let cfg = format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: idp\n    plugin: jwt\n    dangerous: {{ allow_http: true }}\n    config:\n      jwks_url: \"{}/jwks\"\n      issuer: [\"https://idp.test/\"]\n      audience: [\"api\"]\n  - name: f\n    plugin: faulty\n    config: {{ mode: ok }}\n",
        idp.base
    );
    let s = Server::start(&cfg, &[jwt_plugin(), plugin("portcullis_test_faulty")]);
    let ready = || async {
        let r = client().get(s.url("/ready")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    // The key set cannot be fetched: not ready (liveness is another matter).
    let (code, body) = ready().await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("never been fetched"),
        "{body}"
    );
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The identity provider comes up: the probe itself fetches the keys, no token needed.
    up.store(true, Ordering::SeqCst);
    let (code, body) = ready().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, json!({"ready": true, "problems": []}));
    // A plugin file deleted: its instance is retired, requests for it fail, and so does readiness.
    std::fs::remove_file(s.plugins_dir().join("libportcullis_test_faulty.so")).unwrap();
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = ready().await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1["problems"][0]
            .as_str()
            .unwrap()
            .contains("provider f is retired"),
        "{}",
        last.1
    );
}
