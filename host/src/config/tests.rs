//! The config compiler, in process: every error it can produce, at its key path and with its
//! message; all of a file's errors in one pass; no `${VAR}` value in any message; the warnings.
//! What needs the binary or a plugin (`portcullis check` output, a plugin refusing its `config:`)
//! stays in `tests/tests/config.rs`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{path::Path, time::Duration};

use super::*;

/// `${NAME}` values for a test: a fixed list, never the process environment (tests run in
/// parallel, and `PORT` or a stray variable must not change what they see).
struct Vars(&'static [(&'static str, &'static str)]);

impl VarSource for Vars {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

const NO_VARS: Vars = Vars(&[]);
const FILE: &str = "/etc/portcullis/c.yaml";

/// One provider and a port, so that `PORT` in the environment changes nothing.
const BASE: &str = "version: 1\nserver:\n  port: 8080\nproviders:\n  - name: main\n    plugin: jwt\n    config: { secret: s }\n";

fn with(rest: &str) -> String {
    format!("{BASE}{rest}")
}

fn compile_with(text: &str, vars: &dyn VarSource) -> Result<Config, ConfigError> {
    compile_str(text, Path::new(FILE), vars)
}

fn ok(text: &str) -> Config {
    compile_with(text, &NO_VARS).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// Every problem of a refused config, as `path: message` lines, in the order reported.
fn issues_with(text: &str, vars: &dyn VarSource) -> Vec<String> {
    match compile_with(text, vars) {
        Ok(_) => panic!("compiled, but should not have:\n{text}"),
        Err(e) => e.issues().iter().map(ToString::to_string).collect(),
    }
}

fn issues(text: &str) -> Vec<String> {
    issues_with(text, &NO_VARS)
}

/// The message of the one problem at `path` (a panic when there is none, or several).
fn at(text: &str, path: &str) -> String {
    let found: Vec<ConfigIssue> = match compile_with(text, &NO_VARS) {
        Ok(_) => panic!("compiled, but should not have:\n{text}"),
        Err(e) => e.issues().into_iter().filter(|i| i.path == path).collect(),
    };
    match found.as_slice() {
        [one] => one.message.clone(),
        _ => panic!("expected one issue at `{path}`, found {found:?}\n---\n{text}"),
    }
}

const CEL_SYNTAX: &str = "invalid CEL expression: ERROR: <input>:";
const NAMES: &str = "name the proxy in front: nginx, traefik, caddy, envoy, or {proxy: custom, headers: {method, uri, host}}";
const UPSTREAM: &str =
    "must be an http:// or https:// URL with a host and no query, fragment or credentials";
const LITERAL: &str = "`${...}` is not expanded in CEL expressions and path patterns (a variable's value would become part of the expression); write the value literally, or `$${` for a literal `${`";

// ---- the document ----------------------------------------------------------------------------

#[test]
fn text_that_is_not_yaml_is_one_syntax_error_naming_the_file_once() {
    let e = compile_with("version: 1\nserver: [\n", &NO_VARS).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert_eq!(e.file(), FILE);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}: not valid YAML: ")),
        "{shown}"
    );
    assert_eq!(shown.matches(FILE).count(), 1, "{shown}");
    // What `check` prints: one line, naming the file once.
    let [line] = e.lines().try_into().unwrap();
    assert!(
        line.starts_with(&format!("{FILE}: not valid YAML: ")),
        "{line}"
    );
    assert_eq!(line.matches(FILE).count(), 1, "{line}");
    let [issue] = e.issues().try_into().unwrap();
    assert_eq!(issue.path, "");
    assert!(issue.message.starts_with("not valid YAML: "), "{issue}");
}

#[test]
fn a_key_written_twice_is_a_syntax_error() {
    let e = compile_with(&with("server: { port: 1 }\n"), &NO_VARS).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{FILE}: not valid YAML: duplicate entry with key \"server\"")
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused_whole() {
    for text in ["- a\n- b\n", "", "just text\n"] {
        assert_eq!(
            issues(text),
            ["the config must be a YAML mapping with `version: 1`"],
            "{text:?}"
        );
    }
}

#[test]
fn version_must_be_present_and_1() {
    assert_eq!(
        issues("server: {}\n"),
        ["version: missing or not a number; write `version: 1`"]
    );
    assert_eq!(
        issues("version: one\n"),
        ["version: missing or not a number; write `version: 1`"]
    );
    assert_eq!(
        issues("version: 2\n"),
        ["version: unsupported version; this server reads version 1"]
    );
}

#[test]
fn unknown_top_level_keys_are_each_named_with_the_keys_expected() {
    const EXPECTED: &str =
        "unknown key (expected version, server, plugins, providers, middleware, auth, gateway, routes, telemetry)";
    assert_eq!(
        issues("version: 1\nsevrer: {}\ncolour: 2\n"),
        [format!("colour: {EXPECTED}"), format!("sevrer: {EXPECTED}")]
    );
}

#[test]
fn an_invalid_config_says_how_many_errors_and_names_the_file_once_per_line() {
    let e = compile_with("version: 1\nserver: { prot: 1, timeout: soon }\n", &NO_VARS).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{FILE}: 2 error(s): server.prot: unknown key; server.timeout: not a duration (examples: 500ms, 30s, 3m)")
    );
    assert_eq!(
        e.lines(),
        [
            format!("{FILE}: server.prot: unknown key"),
            format!("{FILE}: server.timeout: not a duration (examples: 500ms, 30s, 3m)"),
        ]
    );
}

// ---- server ----------------------------------------------------------------------------------

#[test]
fn server_keys_are_typed_and_unknown_ones_named() {
    assert_eq!(
        issues("version: 1\nserver: { prot: 1, port: seventy }\n"),
        [
            "server.prot: unknown key",
            "server.port: invalid type: string \"seventy\", expected u16",
        ]
    );
    assert_eq!(
        at("version: 1\nserver: { port: 70000 }\n", "server.port"),
        "invalid value: integer `70000`, expected u16"
    );
    assert_eq!(
        at(
            "version: 1\nserver: { max_token_bytes: -1 }\n",
            "server.max_token_bytes"
        ),
        "invalid value: integer `-1`, expected usize"
    );
    assert_eq!(
        at(
            "version: 1\nserver: { build: { swagger: true } }\n",
            "server.build.swagger"
        ),
        "unknown key"
    );
    assert_eq!(
        at(
            "version: 1\nserver: { https: { key: k.pem } }\n",
            "server.https"
        ),
        "missing field `cert`"
    );
    assert_eq!(
        at("version: 1\nserver: [1]\n", "server"),
        "invalid type: sequence, expected struct RawServer"
    );
}

#[test]
fn server_durations_must_parse_and_be_greater_than_zero() {
    assert_eq!(
        issues("version: 1\nserver: { timeout: soon, plugin_timeout: 0s, header_read_timeout: 1 fortnight }\n"),
        [
            "server.header_read_timeout: not a duration (examples: 500ms, 30s, 3m)",
            "server.timeout: not a duration (examples: 500ms, 30s, 3m)",
            "server.plugin_timeout: must be greater than zero",
        ]
    );
    let s = ok("version: 1\nserver: { port: 1, timeout: 2m, plugin_timeout: 500ms, header_read_timeout: 5s }\n").server;
    assert_eq!(s.timeout, Duration::from_secs(120));
    assert_eq!(s.plugin_timeout, Duration::from_millis(500));
    assert_eq!(s.header_read_timeout, Duration::from_secs(5));
}

#[test]
fn body_size_limits_are_sizes() {
    for (value, message) in [
        ("lots", "not a size (examples: 4.5mb, 512kb, 1048576)"),
        (
            "4.5 parsecs",
            "not a size (examples: 4.5mb, 512kb, 1048576)",
        ),
        ("0", "must be a positive number of bytes"),
        ("-5", "must be a positive number of bytes"),
        ("[1]", "must be a size such as 4.5mb"),
        ("true", "must be a size such as 4.5mb"),
    ] {
        let text = format!("version: 1\nserver: {{ body_size_limit: {value} }}\n");
        assert_eq!(
            issues(&text),
            [format!("server.body_size_limit: {message}")],
            "{value}"
        );
    }
    for (value, bytes) in [
        ("4.5mb", 4_718_592),
        ("512kb", 524_288),
        ("1MiB", 1_048_576),
        ("100b", 100),
        ("1048576", 1_048_576),
        ("\"2048\"", 2048),
    ] {
        let text = format!("version: 1\nserver: {{ port: 1, body_size_limit: {value} }}\n");
        assert_eq!(ok(&text).server.body_limit, bytes, "{value}");
    }
}

#[test]
fn token_size_and_in_flight_limits_have_bounds() {
    assert_eq!(
        issues("version: 1\nserver: { max_token_bytes: 10, plugin_max_in_flight: 0 }\n"),
        [
            "server.max_token_bytes: must be between 512 and 1048576",
            "server.plugin_max_in_flight: must be between 1 and 65536",
        ]
    );
    assert_eq!(
        issues("version: 1\nserver: { max_token_bytes: 1048577, plugin_max_in_flight: 65537 }\n"),
        [
            "server.max_token_bytes: must be between 512 and 1048576",
            "server.plugin_max_in_flight: must be between 1 and 65536",
        ]
    );
    for (bytes, in_flight) in [(512, 1), (1_048_576, 65_536)] {
        let s = ok(&format!("version: 1\nserver: {{ port: 1, max_token_bytes: {bytes}, plugin_max_in_flight: {in_flight} }}\n")).server;
        assert_eq!(
            (s.max_token_bytes, s.plugin_max_in_flight),
            (bytes, in_flight)
        );
    }
}

#[test]
fn cors_credentials_cannot_go_with_any_origin() {
    assert_eq!(
        issues("version: 1\nserver: { cors: { origin: \"*\", credentials: true } }\n"),
        ["server.cors.credentials: credentials cannot be combined with origin `*`; list the allowed origins"]
    );
    // The default origin is `*` too.
    assert_eq!(
        issues("version: 1\nserver: { cors: { credentials: true } }\n"),
        ["server.cors.credentials: credentials cannot be combined with origin `*`; list the allowed origins"]
    );
    let c = ok("version: 1\nserver: { port: 1, cors: { origin: \"https://app.test\", credentials: true, allow_headers: [X-A, authorization] } }\n")
        .server
        .cors
        .unwrap();
    assert_eq!(c.origins, ["https://app.test"]);
    assert_eq!(c.allow_headers, ["Content-Type", "Authorization", "X-A"]);
    assert!(ok("version: 1\nserver: { port: 1, cors: false }\n")
        .server
        .cors
        .is_none());
}

#[test]
fn cors_that_is_neither_a_flag_nor_options_is_refused() {
    assert_eq!(
        at("version: 1\nserver: { cors: maybe }\n", "server.cors"),
        "expected true, false or a mapping of options"
    );
}

/// A misspelt CORS key is reported like any other (it was ignored in silence while `server.cors`
/// was read through an untagged enum, which serde reads from a buffered copy).
#[test]
fn an_unknown_key_under_server_cors_is_reported() {
    assert_eq!(
        issues("version: 1\nserver: { cors: { origin: [a], allowed_methods: [GET] } }\n"),
        ["server.cors.allowed_methods: unknown key"]
    );
}

/// An unknown key inside an optional section has a plain key path (serde_ignored's `?` segment
/// for the `Some` is not a key).
#[test]
fn an_unknown_key_under_server_https_has_a_plain_key_path() {
    assert_eq!(
        issues("version: 1\nserver: { https: { key: k.pem, cert: c.pem, ca: x } }\n"),
        ["server.https.ca: unknown key"]
    );
}

#[test]
fn https_files_are_found_from_the_configs_folder() {
    let h = ok("version: 1\nserver: { port: 1, https: { key: tls/k.pem, cert: /abs/c.pem } }\n")
        .server
        .https
        .unwrap();
    assert_eq!(h.key, Path::new("/etc/portcullis/tls/k.pem"));
    assert_eq!(h.cert, Path::new("/abs/c.pem"));
}

#[test]
fn metrics_is_a_flag_a_listener_or_protected() {
    const EXPECTED: &str = "must be true, false, {listen: \"127.0.0.1:9464\"} or {protected: true}";
    for (value, path, message) in [
        ("public", "server.metrics", EXPECTED),
        ("[1]", "server.metrics", EXPECTED),
        ("{ listen: nowhere }", "server.metrics.listen", "not an IP address and port (example: 127.0.0.1:9464)"),
        ("{ listen: \"localhost:9464\" }", "server.metrics.listen", "not an IP address and port (example: 127.0.0.1:9464)"),
        ("{ listen: 9464 }", "server.metrics.listen", "must be an IP address and port such as \"127.0.0.1:9464\""),
        ("{ protected: yes }", "server.metrics.protected", "must be true or false"),
        ("{ lisen: \"127.0.0.1:9464\" }", "server.metrics.lisen", "unknown key (expected listen or protected)"),
        ("{ 5: true }", "server.metrics", "unknown key (expected listen or protected)"),
        (
            "{ listen: \"127.0.0.1:9464\", protected: true }",
            "server.metrics",
            "listen and protected cannot be combined: the separate listener has no gate; keep it on a private address",
        ),
    ] {
        let text = format!("version: 1\nserver: {{ metrics: {value} }}\n");
        assert_eq!(issues(&text), [format!("{path}: {message}")], "{value}");
    }
    for (value, expected) in [
        ("true", MetricsConfig::Public),
        ("~", MetricsConfig::Public),
        ("false", MetricsConfig::Off),
        ("{ protected: true }", MetricsConfig::Protected),
        ("{ protected: false }", MetricsConfig::Public),
        (
            "{ listen: \"127.0.0.1:9464\" }",
            MetricsConfig::Listen("127.0.0.1:9464".parse().unwrap()),
        ),
    ] {
        let text = format!("version: 1\nserver: {{ port: 1, metrics: {value} }}\n");
        assert_eq!(ok(&text).server.metrics, expected, "{value}");
    }
}

#[test]
fn protected_metrics_cannot_also_be_public() {
    assert_eq!(
        issues("version: 1\nserver: { metrics: { protected: true } }\nauth: { public: [/health, /metrics] }\n"),
        ["server.metrics.protected: auth.public[1] makes /metrics public; take it out of auth.public or set server.metrics to true"]
    );
    // A public pattern for another method still makes it public for that method.
    assert_eq!(
        issues("version: 1\nserver: { metrics: { protected: true } }\nauth: { public: [[/metrics, POST]] }\n"),
        ["server.metrics.protected: auth.public[0] makes /metrics public; take it out of auth.public or set server.metrics to true"]
    );
    // Protected, it is one more protected pattern after the file's own.
    let c = ok("version: 1\nserver: { port: 1, metrics: { protected: true } }\n");
    assert_eq!(c.auth.protected_src, ["/api/*", "/metrics"]);
}

#[test]
fn server_defaults() {
    let s = ok("version: 1\nserver: { port: 9000 }\n").server;
    assert_eq!(s.port, 9000);
    assert_eq!(s.host, "localhost");
    assert_eq!(s.timeout, Duration::from_secs(180));
    assert_eq!(s.body_limit, DEFAULT_BODY_LIMIT);
    assert_eq!(s.plugin_timeout, Duration::from_secs(10));
    assert_eq!(s.max_token_bytes, 16 * 1024);
    assert_eq!(s.plugin_max_in_flight, 256);
    assert_eq!(s.header_read_timeout, Duration::from_secs(30));
    assert_eq!(s.metrics, MetricsConfig::Public);
    assert_eq!(s.cors.unwrap().origins, ["*"]);
    assert!(!s.swagger_ui && !s.openapi_docs && s.https.is_none());
    // Swagger UI needs the document it shows.
    let s = ok("version: 1\nserver: { port: 1, build: { swagger_ui: true } }\n").server;
    assert!(s.swagger_ui && s.openapi_docs);
}

// ---- plugins ---------------------------------------------------------------------------------

#[test]
fn plugin_hashes_must_be_hex_sha256() {
    let good = "0".repeat(64);
    assert_eq!(
        issues(&format!(
            "version: 1\nplugins: {{ dirr: x, allow: [nothex, \"{good}\", \"{}\"] }}\n",
            "g".repeat(64)
        )),
        [
            "plugins.dirr: unknown key",
            "plugins.allow[0]: not a hex SHA-256 (64 characters)",
            "plugins.allow[2]: not a hex SHA-256 (64 characters)",
        ]
    );
    let p = ok(&format!(
        "version: 1\nserver: {{ port: 1 }}\nplugins: {{ dir: lib, allow: [\"{good}\"] }}\n"
    ))
    .plugins;
    assert_eq!(p.dir, Path::new("/etc/portcullis/lib"));
    assert_eq!(p.allow, Some(vec![good]));
    assert_eq!(
        ok("version: 1\nserver: { port: 1 }\n").plugins.dir,
        Path::new("/etc/portcullis/plugins")
    );
}

// ---- providers -------------------------------------------------------------------------------

#[test]
fn providers_must_be_a_list() {
    assert_eq!(
        issues("version: 1\nproviders: { main: jwt }\n"),
        ["providers: must be a list of provider instances"]
    );
}

#[test]
fn provider_names_and_plugin_names_are_checked_and_names_unique() {
    let long = "a".repeat(65);
    let text = format!(
        "version: 1\nproviders:\n  - {{ name: Main Provider, plugin: JWT! }}\n  - {{ name: a, plugin: jwt }}\n  - {{ name: a, plugin: jwt }}\n  - {{ name: \"\", plugin: \"\" }}\n  - {{ name: {long}, plugin: {long} }}\n  - {{ name: ok-1_2, plugin: my-plugin_2 }}\n"
    );
    assert_eq!(
        issues(&text),
        [
            "providers[0].name: use lower-case letters, digits, `-` and `_` (1-64)",
            "providers[0].plugin: not a plugin name",
            "providers[2].name: duplicate provider name `a`",
            "providers[3].name: use lower-case letters, digits, `-` and `_` (1-64)",
            "providers[3].plugin: not a plugin name",
            "providers[4].name: use lower-case letters, digits, `-` and `_` (1-64)",
            "providers[4].plugin: not a plugin name",
        ]
    );
}

#[test]
fn provider_entries_are_typed_and_unknown_keys_named() {
    let text = "version: 1\nproviders:\n  - { name: a, plugin: jwt, colour: red }\n  - { name: b }\n  - { name: c, plugin: jwt, dangerous: { allow_https: true } }\n  - just-a-name\n";
    assert_eq!(
        issues(text),
        [
            "providers[0].colour: unknown key",
            "providers[1]: missing field `plugin`",
            "providers[2].dangerous.allow_https: unknown key",
            "providers[3]: invalid type: string \"just-a-name\", expected struct RawProvider",
        ]
    );
}

#[test]
fn a_provider_config_is_a_mapping_with_string_keys() {
    let text = "version: 1\nproviders:\n  - { name: a, plugin: jwt, config: [1] }\n  - { name: b, plugin: jwt, config: { ? [a] : b } }\n  - { name: c, plugin: jwt, config: { nested: { 1.5: x } } }\n  - { name: d, plugin: jwt, config: { !tag k: v } }\n";
    assert_eq!(
        issues(text),
        [
            "providers[0].config: must be a mapping",
            "providers[1].config: non-string key",
            "providers[2].config.nested: non-string key",
            // A tagged key reads as a key, but JSON has no place for it.
            "providers[3].config: cannot be represented as JSON (non-string keys?)",
        ]
    );
    let c = ok("version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: jwt, config: { n: 1, list: [x], dangerous_looking: true } }\n  - { name: b, plugin: jwt }\n");
    assert_eq!(
        c.providers[0].config,
        serde_json::json!({"n": 1, "list": ["x"], "dangerous_looking": true})
    );
    assert_eq!(c.providers[1].config, serde_json::json!({}));
}

#[test]
fn a_provider_authorize_is_compiled_cel() {
    let text = "version: 1\nproviders:\n  - { name: a, plugin: jwt, authorize: \"user.sub ==\" }\n  - { name: b, plugin: jwt, authorize: \"claims.sub == 'x'\" }\n";
    let found = issues(text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with(&format!("providers[0].authorize: {CEL_SYNTAX}")),
        "{found:?}"
    );
    assert_eq!(
        found[1],
        "providers[1].authorize: unknown variable(s) `claims` in CEL expression; available: user, method, path, provider, iss, host"
    );
    let c = ok(&with(
        "  - { name: b, plugin: jwt, authorize: \"user.org == 'acme'\" }\n",
    ));
    assert_eq!(
        c.providers[1].authorize.as_ref().unwrap().source(),
        "user.org == 'acme'"
    );
}

#[test]
fn provider_caches_take_bounded_durations_or_zero() {
    let text = "version: 1\nproviders:\n  - { name: e, plugin: jwt, authorization_cache: soon, authentication_cache: 500ms }\n  - { name: f, plugin: jwt, authorization_cache: 2h, authentication_cache: 61m }\n  - { name: g, plugin: jwt, authorization_cache: [1], authentication_cache: true }\n";
    assert_eq!(
        issues(text),
        [
            "providers[0].authorization_cache: not a duration (examples: 30s, 2m; 0 turns the cache off)",
            "providers[0].authentication_cache: at least 1s (or 0 to turn the cache off)",
            "providers[1].authorization_cache: at most 1h: cached answers outlive membership changes",
            "providers[1].authentication_cache: at most 1h: an accepted token is reused no longer than that (and never past its exp)",
            "providers[2].authorization_cache: must be a duration such as 30s, or 0 to turn the cache off",
            "providers[2].authentication_cache: must be a duration such as 30s, or 0 to turn the cache off",
        ]
    );
    let c = ok("version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: jwt }\n  - { name: b, plugin: jwt, authorization_cache: 0, authentication_cache: false }\n  - { name: c, plugin: jwt, authorization_cache: \"0\", authentication_cache: 0s }\n  - { name: d, plugin: jwt, authorization_cache: 500ms, authentication_cache: 1h }\n");
    let caches: Vec<(CacheSetting, CacheSetting)> = c
        .providers
        .iter()
        .map(|p| (p.authorization_cache, p.authentication_cache))
        .collect();
    assert_eq!(
        caches,
        [
            (CacheSetting::Default, CacheSetting::Default),
            (CacheSetting::Off, CacheSetting::Off),
            (CacheSetting::Off, CacheSetting::Off),
            (
                CacheSetting::Ttl(Duration::from_millis(500)),
                CacheSetting::Ttl(Duration::from_secs(3600))
            ),
        ]
    );
}

#[test]
fn dangerous_allow_http_is_per_instance() {
    let c = ok(&with(
        "  - { name: b, plugin: jwt, dangerous: { allow_http: true } }\n",
    ));
    assert!(!c.providers[0].allow_http);
    assert!(c.providers[1].allow_http);
}

// ---- auth ------------------------------------------------------------------------------------

#[test]
fn auth_sections_have_their_types() {
    assert_eq!(
        issues(&with("auth: [1]\n")),
        ["auth: invalid type: sequence, expected struct RawAuth"]
    );
    assert_eq!(
        issues(&with("auth:\n  rules: {}\n")),
        ["auth.rules: invalid type: map, expected a sequence"]
    );
    assert_eq!(
        issues(&with("auth:\n  protected: \"/api/*\"\n")),
        ["auth.protected: invalid type: string \"/api/*\", expected a sequence"]
    );
}

#[test]
fn rule_errors_are_each_at_their_rules_key_path() {
    let text = with(
        "auth:
  rules:
    - path: /api/*
    - { path: /a, condition: \"user.role ==\", allow: true }
    - { path: /a, condition: \"request.x == 1\", allow: true }
    - { path: /a, methods: [GET, fetch], allow: true }
    - { path: /a, providers: [nobody, main, other], allow: true }
    - { path: /a, providers: [], allow: true }
    - { path: [/a, 5], allow: true }
    - { path: { regexx: x }, allow: true }
    - { path: /a, allow: yes }
    - { path: /a, colour: red, allow: true }
    - { path: 5, allow: true }
",
    );
    let found = issues(&text);
    assert_eq!(found.len(), 13, "{found:#?}");
    assert_eq!(found[0], "auth.rules[0]: missing field `allow`");
    assert!(
        found[1].starts_with(&format!("auth.rules[1].condition: {CEL_SYNTAX}")),
        "{found:#?}"
    );
    assert_eq!(
        found[2..],
        [
            "auth.rules[2].condition: unknown variable(s) `request` in CEL expression; available: user, method, path, provider, iss, host",
            "auth.rules[3].methods: unknown HTTP method `fetch`",
            "auth.rules[4].providers[0]: no provider instance is named `nobody`",
            "auth.rules[4].providers[2]: no provider instance is named `other`",
            "auth.rules[5].providers: an empty list names nobody; leave it out to mean every provider",
            "auth.rules[6].path[1]: invalid type: integer `5`, expected struct RawRegexPattern",
            "auth.rules[7].path.regexx: unknown key",
            "auth.rules[7].path: missing field `regex`",
            "auth.rules[8].allow: invalid type: string \"yes\", expected a boolean",
            "auth.rules[9].colour: unknown key",
            "auth.rules[10].path: invalid type: integer `5`, expected struct RawRegexPattern",
        ]
    );
}

#[test]
fn rule_path_patterns_that_do_not_compile_are_at_their_rules_path() {
    let text = with(
        "auth:
  rules:
    - { path: api/*, allow: true }
    - { path: [/ok, { regex: \"(\" }], allow: true }
    - { path: \"/a*\", methods: GET, allow: true }
    - { path: /a, methods: [], allow: true }
    - { path: { regex: \"^/x\" }, condition: \"user.admin\", allow: true }
",
    );
    let found = issues(&text);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert_eq!(
        found[0],
        "auth.rules[0].path: path pattern must start with '/'"
    );
    assert!(
        found[1].starts_with("auth.rules[1].path: invalid regex: regex parse error:"),
        "{found:#?}"
    );
    assert_eq!(
        found[2..],
        [
            "auth.rules[2].path: '*' and ':' must be a whole segment ('*' or ':name'); found inside segment \"a*\"",
            "auth.rules[3].path: empty method list (omit the methods to allow any method)",
        ]
    );
}

/// A pattern error names the rule's place in the file, even after an earlier rule was refused
/// (the kept rules are numbered apart).
#[test]
fn a_rule_path_error_after_a_refused_rule_names_its_own_rule() {
    assert_eq!(
        issues(&with(
            "auth:\n  rules:\n    - { path: /ok, allow: maybe }\n    - { path: nope, allow: true }\n"
        )),
        [
            "auth.rules[0].allow: invalid type: string \"maybe\", expected a boolean",
            "auth.rules[1].path: path pattern must start with '/'",
        ]
    );
}

#[test]
fn protected_and_public_pattern_errors_are_at_their_entry() {
    let text = with(
        "auth:
  protected: [\"/api/*x\", \"api\", \"/a/../b\", \"\"]
  public:
    - { regex: \"(\" }
    - [/x, FETCH]
    - [/x]
    - [5, GET]
    - 5
    - { regex: \"^/y\", methods: [FETCH] }
    - [{ regexx: x }, GET]
    - { regex: \"^/z\", colour: 1 }
    - [/w, [GET, 5]]
    - [/v, []]
    - [/u, \"BAD METHOD\"]
    - \"/users/:id?\"
",
    );
    let found = issues(&text);
    assert_eq!(found.len(), 14, "{found:#?}");
    assert_eq!(
        found[..4],
        [
            "auth.protected[0]: '*' and ':' must be a whole segment ('*' or ':name'); found inside segment \"*x\"",
            "auth.protected[1]: path pattern must start with '/'",
            "auth.protected[2]: path pattern has a '.' or '..' segment",
            "auth.protected[3]: path pattern is empty",
        ]
    );
    assert_eq!(
        found[4..14],
        [
            "auth.public[1]: unknown HTTP method `FETCH`",
            "auth.public[2]: a pattern pair is [path, method or [methods]]",
            "auth.public[3][0]: must be a path pattern or {regex: ...}",
            "auth.public[4]: must be a path pattern, [path, methods] or {regex: ...}",
            "auth.public[5]: unknown HTTP method `FETCH`",
            "auth.public[6][0].regexx: unknown key",
            "auth.public[6][0]: missing field `regex`",
            "auth.public[7].colour: unknown key",
            "auth.public[8][1]: data did not match any variant of untagged enum StringOrList",
            "auth.public[10]: unknown HTTP method `BAD METHOD`",
        ]
    );
    // The set is compiled only once every entry could be read: these come from a second
    // config whose entries all parse.
    let text = with(
        "auth:\n  public:\n    - { regex: \"(\" }\n    - [/v, []]\n    - [/u, \"BAD METHOD\"]\n    - \"/users/:id?\"\n",
    );
    let found = issues(&text);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(
        found[1].starts_with("auth.public[0]: invalid regex: regex parse error:"),
        "{found:#?}"
    );
    assert_eq!(
        [&found[0], &found[2], &found[3], &found[4]],
        [
            "auth.public[2]: unknown HTTP method `BAD METHOD`",
            "auth.public[1]: empty method list (omit the methods to allow any method)",
            "auth.public[2]: invalid HTTP method name \"BAD METHOD\"",
            "auth.public[3]: invalid parameter segment \":id?\" (expected ':' followed by letters, digits or '_')",
        ]
    );
}

#[test]
fn the_authorize_fallback_and_the_token_sources_are_checked() {
    let text = with(
        "auth:\n  authorize: \"user.\"\n  protectd: []\n  token: { headr: X, header: \"X Bad\" }\n",
    );
    let found = issues(&text);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert_eq!(
        found[..3],
        [
            "auth.protectd: unknown key",
            "auth.token.headr: unknown key",
            "auth.token.header: not a header name",
        ]
    );
    assert!(
        found[3].starts_with(&format!("auth.authorize: {CEL_SYNTAX}")),
        "{found:#?}"
    );
    assert_eq!(
        at(
            &with("auth:\n  token: { header: \"\" }\n"),
            "auth.token.header"
        ),
        "not a header name"
    );
}

#[test]
fn token_sources_default_to_the_authorization_header_only() {
    let t = ok(BASE).auth.token;
    assert_eq!(t.header, "Authorization");
    assert_eq!(t.header_name, poem::http::header::AUTHORIZATION);
    assert_eq!((t.query, t.cookie), (None, None));
    let t = ok(&with(
        "auth:\n  token: { header: X-Token, query: access_token, cookie: session }\n",
    ))
    .auth
    .token;
    assert_eq!(t.header_name.as_str(), "x-token");
    assert_eq!(t.query.as_deref(), Some("access_token"));
    assert_eq!(t.cookie.as_deref(), Some("session"));
}

#[test]
fn patterns_and_rules_compile_as_written() {
    let a = ok(&with(
        "auth:\n  protected: [/api/*, [/admin, [get, post]]]\n  public: [/health, { regex: \"^/docs/\", methods: GET }]\n  rules:\n    - { path: [/api/a, /api/b], methods: [put], condition: \"user.admin\", allow: false }\n    - { providers: [main], allow: true }\n",
    ))
    .auth;
    assert_eq!(a.protected_src, ["/api/*", "/admin [GET, POST]"]);
    assert_eq!(a.public_src, ["/health", "regex:^/docs/ [GET]"]);
    // One pattern per path of a rule, each naming its rule; a rule with no path is about all.
    assert_eq!(a.rule_of_spec, [0, 0, 1]);
    assert_eq!(a.rules.len(), 2);
    assert!(!a.rules[0].allow && a.rules[1].allow);
    assert_eq!(a.rules[1].providers, Some(vec!["main".to_string()]));
    assert_eq!(a.rule_paths.first_match("PUT", "/api/b"), Some(1));
    assert_eq!(a.rule_paths.first_match("GET", "/api/b"), Some(2));
    assert_eq!(a.protected.first_match("POST", "/ADMIN"), Some(1));
    assert_eq!(a.public.first_match("GET", "/docs/x"), Some(1));
    assert_eq!(a.public.first_match("POST", "/docs/x"), None);
}

// ---- gateway ---------------------------------------------------------------------------------

#[test]
fn forward_auth_names_a_known_proxy() {
    for (value, path, message) in [
        (
            "true",
            "gateway.forward_auth",
            format!("`true` no longer says which headers to trust; {NAMES}"),
        ),
        ("5", "gateway.forward_auth", NAMES.to_string()),
        ("[nginx]", "gateway.forward_auth", NAMES.to_string()),
        (
            "squid",
            "gateway.forward_auth.proxy",
            format!("unknown proxy `squid`; {NAMES}"),
        ),
        (
            "{ proxy: Nginx }",
            "gateway.forward_auth.proxy",
            format!("unknown proxy `Nginx`; {NAMES}"),
        ),
        (
            "{ proxy: nginx, headers: { method: a, uri: b, host: c } }",
            "gateway.forward_auth.headers",
            "header names are given with `proxy: custom`, and only then".to_string(),
        ),
        (
            "{ proxy: custom }",
            "gateway.forward_auth.headers",
            "header names are given with `proxy: custom`, and only then".to_string(),
        ),
        (
            "{ proxy: custom, headers: { method: X-M } }",
            "gateway.forward_auth.headers",
            "missing field `uri`".to_string(),
        ),
        (
            "{ proxy: custom, headers: { method: X-M, uri: X-U, host: X-H, port: X-P } }",
            "gateway.forward_auth.headers.port",
            "unknown field `port`, expected one of `method`, `uri`, `host`".to_string(),
        ),
        (
            "{ proxy: nginx, extra: 1 }",
            "gateway.forward_auth.extra",
            "unknown field `extra`, expected `proxy` or `headers`".to_string(),
        ),
        (
            "{}",
            "gateway.forward_auth",
            "missing field `proxy`".to_string(),
        ),
    ] {
        let text = with(&format!("gateway:\n  forward_auth: {value}\n"));
        assert_eq!(issues(&text), [format!("{path}: {message}")], "{value}");
    }
    assert_eq!(
        issues(&with(
            "gateway:\n  forward_auth: { proxy: custom, headers: { method: \"bad name\", uri: X-U, host: \"h\u{e9}\" } }\n"
        )),
        [
            "gateway.forward_auth.headers.method: not a header name",
            "gateway.forward_auth.headers.host: not a header name",
        ]
    );
}

#[test]
fn each_forward_auth_proxy_reads_its_own_headers() {
    let proxy = |value: &str| {
        ok(&with(&format!("gateway:\n  forward_auth: {value}\n")))
            .gateway
            .forward_auth
    };
    let names = |p: ForwardProxy| {
        (
            p.kind,
            p.method.map(|h| h.as_str().to_string()),
            p.uri.map(|h| h.as_str().to_string()),
            p.host.as_str().to_string(),
        )
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        names(proxy("nginx").unwrap()),
        (
            ProxyKind::Nginx,
            s("x-original-method"),
            s("x-original-uri"),
            "x-forwarded-host".into()
        )
    );
    for (value, kind) in [
        ("traefik", ProxyKind::Traefik),
        ("{ proxy: caddy }", ProxyKind::Caddy),
    ] {
        assert_eq!(
            names(proxy(value).unwrap()),
            (
                kind,
                s("x-forwarded-method"),
                s("x-forwarded-uri"),
                "x-forwarded-host".into()
            )
        );
    }
    assert_eq!(
        names(proxy("envoy").unwrap()),
        (ProxyKind::Envoy, None, None, "host".into())
    );
    assert_eq!(
        names(
            proxy("{ proxy: custom, headers: { method: X-Edge-Method, uri: X-Edge-Uri, host: X-Edge-Host } }")
                .unwrap()
        ),
        (ProxyKind::Custom, s("x-edge-method"), s("x-edge-uri"), "x-edge-host".into())
    );
    assert_eq!(proxy("false"), None);
    assert_eq!(proxy("~"), None);
    assert_eq!(ok(BASE).gateway.forward_auth, None);
}

#[test]
fn identity_headers_are_headers_the_proxy_does_not_manage() {
    let text = with(
        "gateway:
  identity_headers: { sub: Authorization, email: X_User, name: \"bad header\", org: X-Org, team: X-Org, role: [a], ip: X-Real-IP, fw: X-Forwarded-User, px: Proxy-Thing, host: Host }
  provider_header: X-Org
  method_override: allow
  underscore_headers: yes
  colour: 1
",
    );
    assert_eq!(
        issues(&text),
        [
            "gateway.colour: unknown key",
            "gateway.identity_headers.sub: `Authorization` is managed by the proxy; pick another header",
            "gateway.identity_headers.email: use `-` rather than `_` in an identity header's name",
            "gateway.identity_headers.name: not a header name",
            "gateway.identity_headers.team: `X-Org` is used by another claim",
            "gateway.identity_headers: each entry is `claim: Header-Name`",
            "gateway.identity_headers.ip: `X-Real-IP` is managed by the proxy; pick another header",
            "gateway.identity_headers.fw: `X-Forwarded-User` is managed by the proxy; pick another header",
            "gateway.identity_headers.px: `Proxy-Thing` is managed by the proxy; pick another header",
            "gateway.identity_headers.host: `Host` is managed by the proxy; pick another header",
            "gateway.provider_header: `X-Org` is already an identity header",
            "gateway.method_override: one of `drop` or `refuse`",
            "gateway.underscore_headers: one of `keep` or `drop`",
        ]
    );
    // An empty claim name: its key path ends at the mapping.
    let found = issues(&with("gateway:\n  identity_headers: { \"\": X-A }\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("gateway.identity_headers")
            && found[0].ends_with(": the claim name is empty"),
        "{found:?}"
    );
    assert_eq!(
        issues(&with("gateway:\n  provider_header: Cookie\n")),
        ["gateway.provider_header: `Cookie` is managed by the proxy; pick another header"]
    );
    assert_eq!(
        issues(&with("gateway: [1]\n")),
        ["gateway: invalid type: sequence, expected struct RawGateway"]
    );
}

#[test]
fn gateway_settings_compile() {
    let g = ok(BASE).gateway;
    assert_eq!(g.identity_headers.len(), 1);
    assert_eq!(g.identity_headers[0].0, "sub");
    assert_eq!(g.identity_headers[0].1.as_str(), "x-user-id");
    assert_eq!(g.method_override, MethodOverride::Drop);
    assert!(!g.drop_underscore_headers && g.provider_header.is_none());
    let g = ok(&with(
        "gateway:\n  identity_headers: { sub: X-Sub, email: X-Email }\n  provider_header: X-Provider\n  method_override: refuse\n  underscore_headers: drop\n",
    ))
    .gateway;
    let ids: Vec<(&str, &str)> = g
        .identity_headers
        .iter()
        .map(|(c, h)| (c.as_str(), h.as_str()))
        .collect();
    assert_eq!(ids, [("sub", "x-sub"), ("email", "x-email")]);
    assert!(g.is_identity_header("x-provider") && g.is_identity_header("x-email"));
    assert_eq!(g.method_override, MethodOverride::Refuse);
    assert!(g.drop_underscore_headers);
}

// ---- routes ----------------------------------------------------------------------------------

#[test]
fn routes_must_be_a_list() {
    assert_eq!(
        issues(&with("routes: {}\n")),
        ["routes: must be a list of routes"]
    );
}

#[test]
fn route_errors_are_each_at_their_routes_key_path() {
    let text = with(
        "routes:
  - { path: /metrics, upstream: \"http://up\" }
  - { path: /y, upstream: \"ftp://x\" }
  - { path: \"/a*\", upstream: \"http://up\" }
  - { path: /q, upstream: \"http://up/?a=1\" }
  - { path: /c, upstream: \"http://u:p@up\" }
  - { path: /f, upstream: \"http://up/#f\" }
  - { path: /n, upstream: \"http://\" }
  - { path: /m, methods: [GET, FETCH], providers: [nobody], upstream: \"http://up\" }
  - { path: /p, providers: [], upstream: \"http://up\" }
  - { path: /t, timeout: soon, connect_timeout: 0s, upstream: \"http://up\" }
  - { path: /u }
  - { path: /v, upstream: \"http://up\", colour: red }
  - { path: /forward-auth/x, upstream: \"http://up\" }
  - { path: /health/, upstream: \"http://up\" }
  - { path: /e, methods: [], upstream: \"http://up\" }
  - { path: /r, upstream: \"relative/path\" }
",
    );
    assert_eq!(
        issues(&text),
        [
            "routes[0].path: the server answers this path itself; a route cannot take it over".to_string(),
            format!("routes[1].upstream: {UPSTREAM}"),
            format!("routes[3].upstream: {UPSTREAM}"),
            format!("routes[4].upstream: {UPSTREAM}"),
            format!("routes[5].upstream: {UPSTREAM}"),
            format!("routes[6].upstream: {UPSTREAM}"),
            "routes[7].methods: unknown HTTP method `FETCH`".into(),
            "routes[7].providers[0]: no provider instance is named `nobody`".into(),
            "routes[8].providers: an empty list names nobody; leave it out to mean every provider".into(),
            "routes[9].timeout: not a duration (examples: 500ms, 30s, 3m)".into(),
            "routes[9].connect_timeout: must be greater than zero".into(),
            "routes[10]: missing field `upstream`".into(),
            "routes[11].colour: unknown key".into(),
            "routes[12].path: the server answers this path itself; a route cannot take it over".into(),
            "routes[13].path: the server answers this path itself; a route cannot take it over".into(),
            format!("routes[15].upstream: {UPSTREAM}"),
            // Patterns are compiled once every route was read; the index is the route's own even
            // when earlier routes were refused.
            "routes[2].path: '*' and ':' must be a whole segment ('*' or ':name'); found inside segment \"a*\"".into(),
            "routes[14].path: empty method list (omit the methods to allow any method)".into(),
        ]
    );
}

#[test]
fn routes_compile_with_their_defaults() {
    let r = ok("version: 1
server: { port: 1, timeout: 20s }
providers:
  - { name: main, plugin: jwt }
routes:
  - { path: /orders/*, upstream: \"https://up.test/base\" }
  - { path: /hooks/*, methods: [post], requires_auth: false, providers: [main], forward_authorization: true, timeout: 3s, connect_timeout: 1s, upstream: \"http://10.0.0.1:8080\" }
")
    .routes;
    let [a, b] = &r.list[..] else {
        panic!("{:?}", r.list)
    };
    assert_eq!(
        (
            a.requires_auth,
            a.forward_authorization,
            a.methods.clone(),
            a.providers.clone()
        ),
        (true, false, None, None)
    );
    assert_eq!(
        (a.timeout, a.connect_timeout),
        (Duration::from_secs(20), Duration::from_secs(5))
    );
    assert_eq!(a.upstream.as_str(), "https://up.test/base");
    assert_eq!(b.methods, Some(vec!["POST".to_string()]));
    assert!(!b.requires_auth && b.forward_authorization);
    assert_eq!(b.providers, Some(vec!["main".to_string()]));
    assert_eq!(
        (b.timeout, b.connect_timeout),
        (Duration::from_secs(3), Duration::from_secs(1))
    );
    // A route that needs a user matches in any case; one that does not, exactly.
    assert_eq!(r.find("GET", "/ORDERS/1"), Some(0));
    assert_eq!(r.find("POST", "/hooks/gh"), Some(1));
    assert_eq!(r.find("POST", "/Hooks/gh"), None);
    assert_eq!(r.find("GET", "/hooks/gh"), None);
}

// ---- telemetry -------------------------------------------------------------------------------

#[test]
fn telemetry_needs_an_http_endpoint() {
    assert_eq!(
        issues(&with(
            "telemetry: { otlp_endpoint: \"not a url\", colour: 1 }\n"
        )),
        [
            "telemetry.colour: unknown key",
            "telemetry.otlp_endpoint: not an http(s) URL (example: http://otel-collector:4318)",
        ]
    );
    assert_eq!(
        issues(&with("telemetry: { otlp_endpoint: \"ftp://x\" }\n")),
        ["telemetry.otlp_endpoint: not an http(s) URL (example: http://otel-collector:4318)"]
    );
    let t = ok(&with(
        "telemetry: { otlp_endpoint: \"http://collector:4318\", service_name: edge }\n",
    ))
    .telemetry;
    assert_eq!(t.otlp_endpoint.as_deref(), Some("http://collector:4318"));
    assert_eq!(t.service_name.as_deref(), Some("edge"));
    assert_eq!(
        ok(&with(
            "telemetry: { otlp_endpoint: \"\", service_name: \"\" }\n"
        ))
        .telemetry,
        TelemetryConfig::default()
    );
}

// ---- ${VAR} ----------------------------------------------------------------------------------

#[test]
fn variables_are_expanded_and_unset_ones_named_at_their_key() {
    const VARS: Vars = Vars(&[("HOST", "0.0.0.0"), ("EMPTY", "")]);
    let c = compile_with(
        "version: 1\nserver: { port: 1, host: \"${HOST}\", timeout: \"${UNSET:-${EMPTY:-7s}}\" }\n",
        &VARS,
    )
    .unwrap();
    assert_eq!(c.server.host, "0.0.0.0");
    assert_eq!(c.server.timeout, Duration::from_secs(7));
    assert_eq!(
        issues_with(
            "version: 1\nserver: { host: \"${UNSET_VAR}\", port: 1 }\nproviders:\n  - { name: a, plugin: jwt, config: { secret: \"${EMPTY}\" } }\n",
            &VARS
        ),
        [
            "server.host: environment variable `UNSET_VAR` is not set",
            "providers[0].config.secret: environment variable `EMPTY` is not set",
        ]
    );
    for (value, message) in [
        ("${BAD NAME}", "invalid variable name in `${...}`"),
        ("${}", "invalid variable name in `${...}`"),
        ("${UNCLOSED", "unclosed `${` in value"),
        ("${file:}", "`${file:...}` needs a path"),
        (
            "${A:-${B:-${C:-${D:-${E:-${F:-x}}}}}}",
            "`${...}` fallbacks nest too deeply",
        ),
        (
            "${file:missing.txt}",
            "file `missing.txt` cannot be read or is empty",
        ),
    ] {
        let text = format!("version: 1\nserver: {{ host: \"{value}\", port: 1 }}\n");
        assert_eq!(
            issues(&text),
            [format!("server.host: {message}")],
            "{value}"
        );
    }
}

#[test]
fn the_development_secret_says_why_it_cannot_be_used() {
    let text = "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: jwt, config: { secret: \"${portcullis.dev_secret}\" } }\n";
    let refused = EnvVars {
        dev_secret: &|| Err("/state/dev-secret is group- and world-writable (mode 0622)".into()),
    };
    assert_eq!(
        issues_with(text, &refused),
        ["providers[0].config.secret: /state/dev-secret is group- and world-writable (mode 0622)"]
    );
    let given = EnvVars {
        dev_secret: &|| Ok("generated-dev-secret".into()),
    };
    let c = compile_with(text, &given).unwrap();
    assert_eq!(c.providers[0].config["secret"], "generated-dev-secret");
}

#[test]
fn a_file_variable_is_read_from_the_configs_folder_and_watched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt-secret"), "from-a-file\n").unwrap();
    let file = dir.path().join("c.yaml");
    let text = "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: jwt, config: { secret: \"${file:jwt-secret}\" } }\n";
    let c = compile_str(text, &file, &NO_VARS).unwrap();
    assert_eq!(c.providers[0].config["secret"], "from-a-file");
    assert_eq!(c.var_files, [dir.path().join("jwt-secret")]);
}

#[test]
fn variables_in_cel_and_patterns_are_refused_and_the_escape_is_literal() {
    const VARS: Vars = Vars(&[("ORG", "x' || true || '"), ("ZONE", "zone")]);
    let text = "version: 1
auth:
  protected: [/api/*, \"/${ZONE}/*\"]
  public: [[\"/${ZONE}\", GET]]
  authorize: \"user.org == '${ORG}'\"
  rules:
    - { path: { regex: \"^/${ZONE}\" }, condition: \"user.org == '${ORG}'\", allow: true }
providers:
  - { name: a, plugin: jwt, authorize: \"user.org == '${ORG}'\" }
routes:
  - { path: \"/${ZONE}/up\", upstream: \"http://127.0.0.1:9\" }
";
    let found = issues_with(text, &VARS);
    for key in [
        "auth.protected[1]",
        "auth.public[0][0]",
        "auth.authorize",
        "auth.rules[0].path.regex",
        "auth.rules[0].condition",
        "providers[0].authorize",
        "routes[0].path",
    ] {
        assert!(
            found.contains(&format!("{key}: {LITERAL}")),
            "no error at {key}: {found:#?}"
        );
    }
    assert!(found.iter().all(|i| !i.contains("|| true")), "{found:#?}");
    let c = ok(&with(
        "auth:\n  rules:\n    - { path: \"/cost/$${x}\", condition: \"user.note != '$${x}'\", allow: true }\n",
    ));
    assert_eq!(
        c.auth.rules[0].condition.as_ref().unwrap().source(),
        "user.note != '${x}'"
    );
    assert!(
        matches!(&c.auth.rule_specs[0].kind, crate::matching::PatternKind::Path(p) if p == "/cost/${x}"),
        "{:?}",
        c.auth.rule_specs
    );
}

/// Regression: a value that came from `${VAR}` was quoted back by serde and by the compiler's
/// own messages (`duplicate provider name`, `unknown proxy`, `unknown HTTP method`).
#[test]
fn a_var_value_never_appears_in_a_message_even_as_serde_escapes_it() {
    const VARS: Vars = Vars(&[
        ("LEAKY", "sk_live_\"QUOTED\\SECRET_42"),
        ("PLAIN", "plain-secret-value"),
        ("M", "FETCHSECRET"),
    ]);
    let text = "version: 1
server: { port: \"${LEAKY}\" }
providers:
  - { name: \"${PLAIN}\", plugin: jwt }
  - { name: \"${PLAIN}\", plugin: jwt }
auth:
  token: { header: \"${LEAKY}!\" }
gateway:
  forward_auth: \"${PLAIN}\"
routes:
  - { path: /m, methods: [\"${M}\"], upstream: \"http://up\" }
";
    const R: &str = "<redacted ${VAR} value>";
    assert_eq!(
        issues_with(text, &VARS),
        [
            format!("server.port: invalid type: string \"{R}\", expected u16"),
            format!("providers[1].name: duplicate provider name `{R}`"),
            "auth.token.header: not a header name".into(),
            format!("gateway.forward_auth.proxy: unknown proxy `{R}`; {NAMES}"),
            format!("routes[0].methods: unknown HTTP method `{R}`"),
        ]
    );
    let e = compile_with(text, &VARS).unwrap_err().to_string();
    for secret in ["QUOTED", "SECRET_42", "plain-secret-value", "FETCHSECRET"] {
        assert!(!e.contains(secret), "{secret} leaked: {e}");
    }
}

// ---- one pass --------------------------------------------------------------------------------

#[test]
fn every_error_of_a_file_is_reported_in_one_pass() {
    let text = "version: 2
colour: red
server: { prot: 1, timeout: soon }
plugins: { allow: [nothex] }
providers:
  - { name: Bad Name, plugin: jwt, authorization_cache: 2h }
auth:
  rules:
    - { path: /a/*, condition: \"x ==\", allow: true }
    - { path: /b/*, allow: maybe }
gateway:
  forward_auth: squid
routes:
  - { path: /x, upstream: \"ftp://x\" }
telemetry: { otlp_endpoint: nowhere }
";
    let found = issues(text);
    let paths: Vec<&str> = found
        .iter()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "colour",
            "version",
            "server.prot",
            "server.timeout",
            "plugins.allow[0]",
            "providers[0].name",
            "providers[0].authorization_cache",
            "auth.rules[0].condition",
            "auth.rules[1].allow",
            "gateway.forward_auth.proxy",
            "routes[0].upstream",
            "telemetry.otlp_endpoint",
        ],
        "{found:#?}"
    );
}

#[test]
fn a_refused_config_keeps_what_the_plugin_checks_need() {
    const VARS: Vars = Vars(&[("KEY", "sk_live_for_the_plugin")]);
    let text = "version: 1
server: { timeout: soon, plugin_timeout: 3s }
plugins: { dir: lib }
providers:
  - { name: a, plugin: jwt, config: { secret: \"${KEY}\" }, dangerous: { allow_http: true } }
  - { name: b, plugin: Not A Plugin }
  - { name: c, plugin: oidc, config: [1] }
  - { name: d, plugin: oidc }
";
    let refused = compile_checked(text, Path::new(FILE), &VARS).unwrap_err();
    assert_eq!(
        refused
            .error
            .issues()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "server.timeout: not a duration (examples: 500ms, 30s, 3m)",
            "providers[1].plugin: not a plugin name",
            "providers[2].config: must be a mapping",
        ]
    );
    let checks = refused.plugins.unwrap();
    assert_eq!(checks.dir, Path::new("/etc/portcullis/lib"));
    assert_eq!(checks.timeout, Duration::from_secs(3));
    let instances: Vec<(usize, &str, &str, bool)> = checks
        .instances
        .iter()
        .map(|i| (i.index, i.name.as_str(), i.plugin.as_str(), i.allow_http))
        .collect();
    assert_eq!(instances, [(0, "a", "jwt", true), (3, "d", "oidc", false)]);
    assert_eq!(
        checks.instances[0].config["secret"],
        "sk_live_for_the_plugin"
    );
    // What a plugin says about the instance is cleaned of the config's `${VAR}` values.
    assert_eq!(
        checks.redact("secret `sk_live_for_the_plugin` is too short"),
        "secret `<redacted ${VAR} value>` is too short"
    );
    // A file that cannot be parsed has nothing to check.
    let refused = compile_checked("version: [", Path::new(FILE), &NO_VARS).unwrap_err();
    assert!(refused.plugins.is_none());
}

// ---- warnings (lint.rs) ----------------------------------------------------------------------

#[test]
fn warnings_leave_the_config_usable_and_name_the_file_once() {
    let c = ok(&with(
        "auth:\n  public: [/api/admin/status, /docs/*, /docs/intro]\n  rules:\n    - { path: /a/*, allow: true }\n    - { path: [/b, /a/c], allow: false }\nroutes:\n  - { path: /api/auth/x, upstream: \"http://up\" }\n  - { path: /orders/*, upstream: \"http://up\" }\n  - { path: /orders/:id, upstream: \"http://up\" }\n",
    ));
    assert_eq!(
        c.warning_lines(),
        [
            format!("{FILE}: auth.public[0]: never applies: `/api/admin/*` is a built-in route that always needs a user; take it out"),
            format!("{FILE}: auth.public[2]: never applies: auth.public[1] (`/docs/*`) already matches every request it does; take it out"),
            format!("{FILE}: auth.rules[1].path[1]: never decides for this path: auth.rules[0] (`/a/*`) comes first, has no condition and matches every request this path does; take it out of the list, or move the rule above"),
            format!("{FILE}: routes[0]: never serves a request: `/api/auth/*` is a built-in route, answered by the server itself; move the route elsewhere"),
            format!("{FILE}: routes[2]: never serves a request: routes[1] (`/orders/*`) comes first and matches every request this route does; move this route above it, or take it out"),
        ]
    );
}

#[test]
fn a_rule_shadowed_by_one_naming_its_providers_says_so() {
    let c = ok(&with(
        "  - { name: b, plugin: jwt }\nauth:\n  rules:\n    - { path: /api/*, providers: [main, b], allow: true }\n    - { path: /api/x, providers: [b], allow: false }\n",
    ));
    assert_eq!(
        c.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["auth.rules[1]: never decides: auth.rules[0] (`/api/*`) comes first, has no condition, names every provider this rule does and matches every request it does; move this rule above, or take it out"]
    );
}

#[test]
fn a_refused_config_has_no_warnings_to_show() {
    // Warnings are only worked out for a config that compiles: the dead pattern here is not
    // reported next to the error.
    assert_eq!(
        issues(&with(
            "auth:\n  public: [/api/admin/x]\n  authorize: \"user.\"\n"
        ))
        .iter()
        .filter(|l| l.contains("never"))
        .count(),
        0
    );
}

#[test]
fn a_routes_openapi_document_is_a_url_under_the_routes_scheme_policy_or_a_file() {
    let route = |upstream: &str, openapi: &str| {
        with(&format!(
            "routes:\n  - {{ path: /svc/*, upstream: \"{upstream}\", openapi: \"{openapi}\" }}\n"
        ))
    };
    let c = ok(&route("http://svc:8080", "http://svc:8080/openapi.json"));
    assert_eq!(
        c.routes.list[0].openapi,
        Some(crate::config::OpenApiSource::Url(
            "http://svc:8080/openapi.json".parse().unwrap()
        ))
    );
    let c = ok(&route("https://svc", "https://docs.svc/openapi.json"));
    assert!(matches!(
        c.routes.list[0].openapi,
        Some(crate::config::OpenApiSource::Url(_))
    ));
    // A file, relative to the config's folder.
    let c = ok(&route("http://svc:8080", "docs/svc.yaml"));
    let base = Path::new(FILE).parent().unwrap();
    assert_eq!(
        c.routes.list[0].openapi,
        Some(crate::config::OpenApiSource::File(
            base.join("docs/svc.yaml")
        ))
    );
    // Plain http for a route whose requests go over https: refused.
    let e = at(
        &route("https://svc", "http://svc/openapi.json"),
        "routes[0].openapi",
    );
    assert!(e.contains("plain http is refused"), "{e}");
    for bad in [
        "ftp://svc/openapi.json",
        "https://user:pw@svc/openapi.json",
        "",
    ] {
        at(&route("https://svc", bad), "routes[0].openapi");
    }
}
