//! The conformance kit: checks a plugin author runs in their own tests.
//!
//! It drives the plugin through the same boundary the server uses (its root module, with the SDK's
//! panic guards), with a fake [`crate::HostServices`] whose HTTP answers are canned, and checks what
//! every provider must get right whatever it talks to:
//!
//! * the manifest is sane (name, version, description, API version, documented config keys);
//! * the given valid config is accepted and builds a provider;
//! * garbage configs (not an object, unknown keys, wrong types, huge values) are refused as
//!   configuration errors, without a panic and without echoing a secret value;
//! * `authenticate` on garbage tokens (empty, huge, malformed, `alg: none`, not a JWT) returns "no
//!   user" or an error, never a user, never panics, never hangs, never quotes the token — with the
//!   identity provider answering as canned, down, or answering nonsense (HTML, 500, empty, huge);
//! * `authorize` on odd users (no `sub`, empty, numeric, `../`, query and fragment injection, very
//!   long) never panics or hangs, never lets a `sub` change a request path, and never allows when a
//!   remote check it started failed;
//! * no secret appears in an error message, a log line or a request URL.
//!
//! A middleware plugin ([`crate::MiddlewarePlugin`]) gets the checks that apply to it
//! ([`Conformance::assert_middleware`]): the manifest, the garbage configs, the valid config, and
//! `on_request` (and `on_response`, when it asks for it) on odd requests — no user, odd users,
//! odd methods, huge and many headers, a dry run — which must never panic or hang, never fail
//! with an internal error, answer only final statuses (200–599), set only valid headers (never the
//! [`crate::FRAMING_HEADERS`]), and give a dry run the same answer however often it is asked
//! (a dry run changes no state).
//!
//! ```
//! use portcullis_plugin_api::conformance::{Canned, Conformance};
//! # use portcullis_plugin_api::{export_provider, AuthProvider, Host, Plugin, PluginConfig, PluginError, Request, User};
//! # struct P; struct Prov;
//! # #[derive(serde::Deserialize, PluginConfig)] #[serde(deny_unknown_fields)]
//! # struct Cfg {
//! #     /// The key.
//! #     #[config(secret, example = "k-0123456789abcdef")]
//! #     key: String,
//! # }
//! # impl AuthProvider for Prov {
//! #     async fn authenticate(&self, _t: String, _r: Request) -> Result<Option<User>, PluginError> { Ok(None) }
//! # }
//! # impl Plugin for P {
//! #     type Provider = Prov; type Config = Cfg;
//! #     const NAME: &'static str = "example"; const VERSION: &'static str = "1.0.0";
//! #     const DESCRIPTION: &'static str = "an example";
//! #     fn build(_c: Cfg, _h: Host) -> Result<Prov, PluginError> { Ok(Prov) }
//! # }
//! // In the plugin's tests (`tests/conformance.rs`), with the plugin's own example config:
//! Conformance::example::<P>().assert::<P>();
//!
//! // Or with a config of the test's own, and what the identity provider answers:
//! Conformance::new(serde_json::json!({ "key": "k-0123456789abcdef" }))
//!     .secret("k-0123456789abcdef")
//!     .respond("https://idp.example/", Canned::json(200, r#"{"ok":true}"#))
//!     .assert::<P>();
//! ```

use std::{
    collections::HashMap,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Mutex},
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, RVec, Tuple2},
};
use async_ffi::{FfiFuture, FutureExt as _};

use crate::{
    abi::{
        HostServices, HttpRequest, HttpResponse, JwtVerifier, JwtVerifierBox, JwtVerifier_TO,
        LogLevel, Manifest, MiddlewareBox, PluginModuleRef, ProviderBox, RequestInfo,
        RequestOutcome, ResponseEdit,
    },
    error::{ErrorKind, PluginError},
    host::JwtVerifierSpec,
    middleware::{Call, MiddlewarePlugin, ResponseView, FRAMING_HEADERS},
    request::User,
    sdk::{host_box, middleware_root_module, root_module, Plugin},
};

/// Which of a library's plugins a run checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Provider,
    Middleware,
}

/// A canned HTTP answer of the fake identity provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canned {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Canned {
    /// A JSON answer.
    pub fn json(status: u16, body: &str) -> Canned {
        Canned::with_type(status, "application/json", body.as_bytes().to_vec())
    }

    /// An answer with any content type.
    pub fn with_type(status: u16, content_type: &str, body: Vec<u8>) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    fn response(&self) -> HttpResponse {
        HttpResponse {
            status: self.status,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| Tuple2(RString::from(k.as_str()), RString::from(v.as_str())))
                .collect::<RVec<_>>(),
            body: self.body.clone().into(),
        }
    }
}

/// How the fake identity provider behaves during a check.
#[derive(Clone, Debug)]
enum Mode {
    /// The answers given to [`Conformance::respond`].
    Canned,
    /// Every request fails as if the host could not connect.
    Down,
    /// Every request gets this answer.
    Always(Canned),
}

impl Mode {
    fn name(&self) -> String {
        match self {
            Mode::Canned => "canned answers".into(),
            Mode::Down => "identity provider down".into(),
            Mode::Always(c) => format!(
                "identity provider answering {} {}",
                c.status,
                c.headers
                    .first()
                    .map(|h| h.1.as_str())
                    .unwrap_or("no content type")
            ),
        }
    }

    fn fails(&self) -> bool {
        !matches!(self, Mode::Canned)
    }
}

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which check.
    pub check: &'static str,
    /// What went wrong (never contains a secret: secrets are replaced by `<secret>`).
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The plugin's name, from its manifest.
    pub plugin: String,
    /// Checks run.
    pub checks: usize,
    /// Checks that failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "plugin `{}`: {} checks, {} failed",
            self.plugin,
            self.checks,
            self.failures.len()
        )?;
        for failure in &self.failures {
            writeln!(f, "  - {failure}")?;
        }
        Ok(())
    }
}

/// A conformance run: a valid config, the secrets in it, and the identity provider's canned
/// answers.
#[derive(Clone, Debug)]
pub struct Conformance {
    config: serde_json::Value,
    secrets: Vec<String>,
    env: Vec<(String, String)>,
    routes: Vec<(String, Canned)>,
    fallback: Canned,
    timeout: Duration,
    allow_http: bool,
}

impl Conformance {
    /// A run with `config`, a configuration the plugin must accept (the `config:` mapping of an
    /// instance, as JSON).
    pub fn new(config: serde_json::Value) -> Conformance {
        Conformance {
            config,
            secrets: Vec::new(),
            env: Vec::new(),
            routes: Vec::new(),
            fallback: Canned::json(404, r#"{"error":"not_found"}"#),
            timeout: Duration::from_secs(5),
            allow_http: false,
        }
    }

    /// A run with the plugin's own example config (its keys' `#[config(example = …)]` values), the
    /// examples of its secret keys as the secrets to watch for. What `portcullis plugin test`
    /// runs on a built library. `Err` when the manifest cannot be read.
    pub fn from_example(module: PluginModuleRef) -> Result<Conformance, String> {
        Conformance::from_manifest(catch_unwind(|| (module.manifest())()))
    }

    /// [`Conformance::from_example`] for the library's middleware plugin (its middleware
    /// manifest's example config).
    pub fn from_middleware_example(module: PluginModuleRef) -> Result<Conformance, String> {
        let Some(read) = module.middleware_manifest() else {
            return Err("the library exports no middleware (plugin ABI before 1.2)".into());
        };
        Conformance::from_manifest(catch_unwind(|| read()))
    }

    fn from_manifest(
        read: std::thread::Result<RResult<Manifest, PluginError>>,
    ) -> Result<Conformance, String> {
        let manifest = read
            .map_err(|_| "manifest() panicked through the boundary".to_string())?
            .into_result()
            .map_err(|e| format!("manifest() failed: {e}"))?;
        let config: serde_json::Value = serde_json::from_str(manifest.example_config.as_str())
            .map_err(|_| "the manifest's example config is not JSON".to_string())?;
        let mut kit = Conformance::new(config.clone());
        for key in manifest.config_keys.iter().filter(|k| k.secret) {
            if let Some(serde_json::Value::String(v)) = config.get(key.name.as_str()) {
                kit = kit.secret(v);
            }
        }
        Ok(kit)
    }

    /// [`Conformance::from_middleware_example`] for middleware plugin type `M`.
    pub fn middleware_example<M: MiddlewarePlugin>() -> Conformance {
        match Conformance::from_middleware_example(middleware_root_module::<M>()) {
            Ok(kit) => kit,
            Err(e) => panic!("conformance: {e}"),
        }
    }

    /// [`Conformance::from_example`] for plugin type `P`.
    pub fn example<P: Plugin>() -> Conformance {
        match Conformance::from_example(root_module::<P>()) {
            Ok(kit) => kit,
            Err(e) => panic!("conformance: {e}"),
        }
    }

    /// A secret value (API key, client secret) that must never appear in an error, a log line or a
    /// request URL.
    pub fn secret(mut self, value: &str) -> Conformance {
        self.secrets.push(value.to_string());
        self
    }

    /// Lets the fake host call plain `http://` URLs, as an instance with
    /// `dangerous: { allow_http: true }` would (default: `https://` only).
    pub fn allow_http(mut self) -> Conformance {
        self.allow_http = true;
        self
    }

    /// An environment variable the fake host reports.
    pub fn env(mut self, name: &str, value: &str) -> Conformance {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Answers requests whose URL starts with `url_prefix` (first match wins). Other requests get
    /// `404 {"error":"not_found"}`. These answers stand for what the identity provider says about
    /// the kit's garbage tokens and odd users.
    pub fn respond(mut self, url_prefix: &str, answer: Canned) -> Conformance {
        self.routes.push((url_prefix.into(), answer));
        self
    }

    /// The longest one plugin call may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Conformance {
        self.timeout = timeout;
        self
    }

    /// Runs every check against plugin type `P`.
    pub fn run<P: Plugin>(&self) -> Report {
        self.run_module(root_module::<P>())
    }

    /// Runs every check against `P` and panics with the report if any failed.
    pub fn assert<P: Plugin>(&self) {
        let report = self.run::<P>();
        assert!(report.passed(), "conformance failed\n{report}");
    }

    /// Runs every middleware check against middleware plugin type `M`.
    pub fn run_middleware<M: MiddlewarePlugin>(&self) -> Report {
        self.run_middleware_module(middleware_root_module::<M>())
    }

    /// Runs every middleware check against `M` and panics with the report if any failed.
    pub fn assert_middleware<M: MiddlewarePlugin>(&self) {
        let report = self.run_middleware::<M>();
        assert!(report.passed(), "conformance failed\n{report}");
    }

    /// Runs every check against a root module (for example one loaded from a library file).
    pub fn run_module(&self, module: PluginModuleRef) -> Report {
        self.run_kind(module, Kind::Provider)
    }

    /// Runs every middleware check against a root module's middleware plugin.
    pub fn run_middleware_module(&self, module: PluginModuleRef) -> Report {
        self.run_kind(module, Kind::Middleware)
    }

    fn run_kind(&self, module: PluginModuleRef, kind: Kind) -> Report {
        let mut run = Run {
            kit: self,
            module,
            kind,
            report: Report::default(),
            seen: Vec::new(),
        };
        run.all();
        let mut report = run.report;
        // Last line of defence: the report itself never shows a secret.
        for f in &mut report.failures {
            f.detail = self.scrub(&f.detail);
        }
        report
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(s.as_str(), "<secret>");
        }
        out
    }
}

/// Runs a future of a plugin's own unit tests to completion on this thread (a plugin has no
/// runtime; the futures of [`test_host`] are ready at once). Panics when it does not finish
/// within 30 seconds.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    match run_until(fut, Duration::from_secs(30)) {
        Outcome::Done(v) => v,
        Outcome::Panicked => panic!("the future panicked"),
        Outcome::TimedOut => panic!("the future did not finish within 30 s"),
    }
}

/// A [`crate::Host`] for a plugin's own unit tests (a middleware's `build`, for one): the kit's
/// fake host, with an empty environment, the real clock, log lines kept and dropped, `https://`
/// URLs only, and no identity provider (every HTTP request gets an empty answer, status 0).
pub fn test_host() -> crate::Host {
    crate::Host::from_abi(host_box(FakeHost(Arc::new(FakeState::default()))))
}

// ------------------------------------------------------------------------------------------------
// The fake host.

#[derive(Default)]
struct FakeState {
    env: HashMap<String, String>,
    routes: Vec<(String, Canned)>,
    fallback: Option<Canned>,
    mode: Mutex<Option<Mode>>,
    requests: Mutex<Vec<String>>,
    logs: Mutex<Vec<String>>,
    specs: Mutex<Vec<JwtVerifierSpec>>,
    allow_http: bool,
}

#[derive(Clone)]
struct FakeHost(Arc<FakeState>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeHost {
    fn set_mode(&self, mode: Mode) {
        *lock(&self.0.mode) = Some(mode);
    }
    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.0.requests))
    }
    fn take_logs(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.0.logs))
    }
}

impl HostServices for FakeHost {
    fn log(&self, _level: LogLevel, message: RStr<'_>) {
        lock(&self.0.logs).push(message.to_string());
    }

    fn now_unix_millis(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn env_var(&self, name: RStr<'_>) -> ROption<RString> {
        self.0
            .env
            .get(name.as_str())
            .map(|v| RString::from(v.as_str()))
            .into()
    }

    fn http(&self, request: HttpRequest) -> FfiFuture<RResult<HttpResponse, PluginError>> {
        let url = request.url.to_string();
        lock(&self.0.requests).push(url.clone());
        let mode = lock(&self.0.mode).clone().unwrap_or(Mode::Canned);
        let answer = match mode {
            Mode::Down => Err(PluginError::unavailable(
                "http request failed: connection refused",
            )),
            Mode::Always(c) => Ok(c.response()),
            Mode::Canned => Ok(self
                .0
                .routes
                .iter()
                .find(|(prefix, _)| url.starts_with(prefix.as_str()))
                .map(|(_, c)| c.response())
                .or_else(|| self.0.fallback.as_ref().map(Canned::response))
                .unwrap_or_default()),
        };
        async move { RResult::from(answer) }.into_ffi()
    }

    fn check_url(&self, url: RStr<'_>) -> RResult<(), PluginError> {
        let url = url.as_str();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://").filter(|_| self.0.allow_http));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => RResult::ROk(()),
            _ if url.starts_with("http://") => RResult::RErr(PluginError::config(
                "plain http:// needs `dangerous: { allow_http: true }`",
            )),
            _ => RResult::RErr(PluginError::config("not an absolute https:// URL")),
        }
    }

    fn jwt_verifier(&self, spec_json: RStr<'_>) -> RResult<JwtVerifierBox, PluginError> {
        match serde_json::from_str::<JwtVerifierSpec>(spec_json.as_str()) {
            Ok(spec) => {
                lock(&self.0.specs).push(spec);
                RResult::ROk(JwtVerifier_TO::from_value(RejectAll, TD_Opaque))
            }
            Err(_) => RResult::RErr(PluginError::config("jwt verifier spec is not valid")),
        }
    }

    fn sign_jwt_rs256(
        &self,
        claims_json: RStr<'_>,
        _kid: ROption<RStr<'_>>,
        private_key_pem: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        // The kit holds no crypto: it checks the inputs the host would refuse and hands back a
        // token-shaped string that no real endpoint would accept.
        if !private_key_pem.as_str().contains("PRIVATE KEY-----") {
            return RResult::RErr(PluginError::config("private key is not a usable PEM"));
        }
        match serde_json::from_str::<serde_json::Value>(claims_json.as_str()) {
            Ok(serde_json::Value::Object(_)) => {
                RResult::ROk(RString::from("conformance-kit.unsigned.assertion"))
            }
            _ => RResult::RErr(PluginError::internal("claims must be a JSON object")),
        }
    }
}

/// The fake host's verifier: the kit only sends tokens nobody signed.
struct RejectAll;

impl JwtVerifier for RejectAll {
    fn verify(&self, _token: RStr<'_>) -> FfiFuture<RResult<RString, PluginError>> {
        async { RResult::RErr(PluginError::invalid_token("signature does not verify")) }.into_ffi()
    }
}

// ------------------------------------------------------------------------------------------------
// Driving futures without a runtime: the fake host's futures are all ready at once.

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

enum Outcome<T> {
    Done(T),
    Panicked,
    TimedOut,
}

fn run_until<F: Future>(fut: F, timeout: Duration) -> Outcome<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + timeout;
    loop {
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Err(_) => return Outcome::Panicked,
            Ok(Poll::Ready(v)) => return Outcome::Done(v),
            Ok(Poll::Pending) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Outcome::TimedOut;
        }
        std::thread::park_timeout(deadline - now);
    }
}

// ------------------------------------------------------------------------------------------------
// The checks.

struct Run<'a> {
    kit: &'a Conformance,
    module: PluginModuleRef,
    kind: Kind,
    report: Report,
    /// Error messages and log lines seen, checked for secrets at the end.
    seen: Vec<(&'static str, String)>,
}

const GARBAGE_TOKENS: &[&str] = &[
    "",
    " ",
    "a",
    "null",
    "{}",
    "a.b",
    "a.b.c",
    "..",
    "...",
    "a..c",
    "Bearer abc",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl",
    "eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLy4uL2Rldi9udWxsIn0.eyJzdWIiOiJhZG1pbiJ9.AAAA",
    "eyJhbGciOiJSUzI1NiJ9.!!!.@@@",
    "not a jwt at all",
    "\u{0}\u{1}\u{7f}",
    "ü\u{1F600}.ü.ü",
    "%2e%2e%2f",
    "a.b.c.d.e",
];

const ODD_SUBS: &[&str] = &[
    "",
    ".",
    "..",
    "../../admin?inject=1#frag",
    "a/b",
    "user?limit=0&inject=1",
    "%2e%2e",
    "with space",
    "ü\u{1F600}",
    "\u{0}",
];

impl Run<'_> {
    fn fail(&mut self, check: &'static str, detail: impl Into<String>) {
        self.report.failures.push(Failure {
            check,
            detail: detail.into(),
        });
    }

    fn all(&mut self) {
        let manifest_ok = self.manifest();
        if !manifest_ok {
            return;
        }
        self.garbage_configs();
        if self.kind == Kind::Middleware {
            if let Some((middleware, host)) = self.valid_middleware_config() {
                self.odd_requests(&middleware, &host);
                self.secrets_never_leak(&host);
            }
            return;
        }
        let Some((provider, host)) = self.valid_config() else {
            return;
        };
        self.verifier_specs(&host);
        self.issuers(&provider);
        self.garbage_tokens(&provider, &host);
        self.odd_users(&provider, &host);
        self.secrets_never_leak(&host);
    }

    fn fake_host(&self) -> FakeHost {
        FakeHost(Arc::new(FakeState {
            env: self.kit.env.iter().cloned().collect(),
            routes: self.kit.routes.clone(),
            fallback: Some(self.kit.fallback.clone()),
            allow_http: self.kit.allow_http,
            ..FakeState::default()
        }))
    }

    fn manifest(&mut self) -> bool {
        self.report.checks += 1;
        let read = match self.kind {
            Kind::Provider => Some(self.module.manifest()),
            Kind::Middleware => self.module.middleware_manifest(),
        };
        let Some(read) = read else {
            self.fail(
                "manifest",
                "the library exports no middleware (plugin ABI before 1.2)",
            );
            return false;
        };
        let manifest = match catch_unwind(|| read()) {
            Err(_) => {
                self.fail("manifest", "manifest() panicked through the boundary");
                return false;
            }
            Ok(RResult::RErr(e)) => {
                self.fail("manifest", format!("manifest() failed: {e}"));
                return false;
            }
            Ok(RResult::ROk(m)) => m,
        };
        self.report.plugin = manifest.name.to_string();
        let name = manifest.name.as_str();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            self.fail(
                "manifest",
                format!("name `{name}` is not 1-64 of [a-z0-9_-]"),
            );
        }
        if manifest.version.trim().is_empty() {
            self.fail("manifest", "version is empty");
        }
        if manifest.description.trim().is_empty() {
            self.fail("manifest", "description is empty");
        }
        if serde_json::from_str::<serde_json::Value>(manifest.example_config.as_str())
            .map_or(true, |v| !v.is_object())
        {
            self.fail("manifest", "the example config is not a JSON object");
        }
        let mut names: Vec<&str> = Vec::new();
        for key in manifest.config_keys.iter() {
            if key.name.is_empty() || key.description.trim().is_empty() {
                self.fail("manifest", "a config key has no name or no description");
            }
            if names.contains(&key.name.as_str()) {
                self.fail(
                    "manifest",
                    format!("config key `{}` is listed twice", key.name),
                );
            }
            names.push(key.name.as_str());
        }
        if let Some(obj) = self.kit.config.as_object() {
            for k in obj.keys() {
                if !names.contains(&k.as_str()) {
                    self.fail(
                        "manifest",
                        format!("config key `{k}` is accepted but not listed in config_keys"),
                    );
                }
            }
        }
        true
    }

    fn validate(&mut self, json: &str) -> Result<(), PluginError> {
        let boxed = host_box(self.fake_host());
        let check = match self.kind {
            Kind::Provider => Some(self.module.validate_config()),
            Kind::Middleware => self.module.validate_middleware_config(),
        };
        let Some(check) = check else {
            return Err(PluginError::internal("the library exports no middleware"));
        };
        match catch_unwind(AssertUnwindSafe(|| check(RStr::from_str(json), boxed))) {
            Ok(r) => r.into_result(),
            Err(_) => Err(PluginError::internal("validate_config panicked")),
        }
    }

    fn build_middleware(
        &mut self,
        json: &str,
        host: &FakeHost,
    ) -> Result<MiddlewareBox, PluginError> {
        let Some(build) = self.module.new_middleware() else {
            return Err(PluginError::internal("the library exports no middleware"));
        };
        let boxed = host_box(host.clone());
        match catch_unwind(AssertUnwindSafe(|| build(RStr::from_str(json), boxed))) {
            Ok(r) => r.into_result(),
            Err(_) => Err(PluginError::internal("new_middleware panicked")),
        }
    }

    /// Builds an instance of either kind (for the config checks).
    fn build_any(&mut self, json: &str, host: &FakeHost) -> Result<(), PluginError> {
        match self.kind {
            Kind::Provider => self.build(json, host).map(|_| ()),
            Kind::Middleware => self.build_middleware(json, host).map(|_| ()),
        }
    }

    fn valid_middleware_config(&mut self) -> Option<(MiddlewareBox, FakeHost)> {
        self.report.checks += 1;
        let json = self.kit.config.to_string();
        if let Err(e) = self.validate(&json) {
            self.fail(
                "valid config",
                format!("validate_middleware_config refused it: {}", e.message()),
            );
            return None;
        }
        let host = self.fake_host();
        match self.build_middleware(&json, &host) {
            Ok(m) => Some((m, host)),
            Err(e) => {
                self.fail(
                    "valid config",
                    format!("new_middleware refused it: {}", e.message()),
                );
                None
            }
        }
    }

    fn build(&mut self, json: &str, host: &FakeHost) -> Result<ProviderBox, PluginError> {
        let boxed = host_box(host.clone());
        match catch_unwind(AssertUnwindSafe(|| {
            (self.module.new_provider())(RStr::from_str(json), boxed)
        })) {
            Ok(r) => r.into_result(),
            Err(_) => Err(PluginError::internal("new_provider panicked")),
        }
    }

    fn valid_config(&mut self) -> Option<(ProviderBox, FakeHost)> {
        self.report.checks += 1;
        let json = self.kit.config.to_string();
        if let Err(e) = self.validate(&json) {
            self.fail(
                "valid config",
                format!("validate_config refused it: {}", e.message()),
            );
            return None;
        }
        let host = self.fake_host();
        match self.build(&json, &host) {
            Ok(p) => Some((p, host)),
            Err(e) => {
                self.fail(
                    "valid config",
                    format!("new_provider refused it: {}", e.message()),
                );
                None
            }
        }
    }

    /// A garbage config must be refused (`must_refuse`) or at least not panic.
    fn config_case(&mut self, label: &str, json: &str, must_refuse: bool) {
        self.report.checks += 1;
        let host = self.fake_host();
        let validated = self.validate(json);
        let built = match &validated {
            Ok(()) => self.build_any(json, &host),
            Err(e) => Err(e.clone()),
        };
        for line in host.take_logs() {
            self.seen.push(("log line", line));
        }
        match built {
            Ok(()) if must_refuse => {
                self.fail("garbage config", format!("{label}: accepted"));
            }
            Ok(()) => {}
            Err(e) => {
                self.seen.push(("config error", e.message().to_string()));
                if e.kind() != ErrorKind::CONFIG {
                    self.fail(
                        "garbage config",
                        format!(
                            "{label}: refused as `{}` ({}), expected a config error",
                            e.kind().name(),
                            e.message()
                        ),
                    );
                }
            }
        }
    }

    fn garbage_configs(&mut self) {
        for (label, json) in [
            ("empty text", ""),
            ("null", "null"),
            ("a list", "[]"),
            ("a number", "42"),
            ("a string", "\"text\""),
            ("truncated JSON", "{"),
        ] {
            self.config_case(label, json, true);
        }
        self.config_case("empty object", "{}", false);
        let Some(valid) = self.kit.config.as_object().cloned() else {
            return;
        };
        let mut unknown = valid.clone();
        unknown.insert("portcullis_conformance_typo".into(), 1.into());
        self.config_case(
            "an unknown key (typos must be reported)",
            &serde_json::Value::Object(unknown).to_string(),
            true,
        );
        let mut replacements: Vec<(String, serde_json::Value)> = vec![
            ("null".into(), serde_json::Value::Null),
            ("a number".into(), 12345.into()),
            ("a negative number".into(), (-1).into()),
            ("a list".into(), serde_json::json!([1, [2], {"x": 3}])),
            (
                "an object".into(),
                serde_json::json!({"nested": {"deep": []}}),
            ),
            ("a huge string".into(), "x".repeat(100_000).into()),
            ("an empty string".into(), "".into()),
            ("a control string".into(), "\u{0}\n\u{7f}".into()),
        ];
        for (i, s) in self.kit.secrets.iter().enumerate() {
            replacements.push((format!("secret #{i}"), s.as_str().into()));
            replacements.push((format!("secret #{i} in a list"), serde_json::json!([s])));
            replacements.push((format!("secret #{i} as a key"), serde_json::json!({ s: 1 })));
        }
        for key in valid.keys() {
            for (what, value) in &replacements {
                let mut cfg = valid.clone();
                cfg.insert(key.clone(), value.clone());
                self.config_case(
                    &format!("`{key}` set to {what}"),
                    &serde_json::Value::Object(cfg).to_string(),
                    false,
                );
            }
        }
    }

    fn verifier_specs(&mut self, host: &FakeHost) {
        self.report.checks += 1;
        let specs = lock(&host.0.specs).clone();
        for spec in specs {
            for alg in &spec.algorithms {
                if alg.eq_ignore_ascii_case("none") {
                    self.fail("jwt verifier", "algorithms include `none`");
                }
            }
            if spec.jwks_url.is_some() && spec.algorithms.iter().any(|a| a.starts_with("HS")) {
                self.fail(
                    "jwt verifier",
                    "an HMAC algorithm is allowed with public keys (algorithm confusion)",
                );
            }
            if spec.require_exp == Some(false) {
                self.fail("jwt verifier", "tokens without `exp` are accepted");
            }
        }
    }

    fn issuers(&mut self, provider: &ProviderBox) {
        self.report.checks += 1;
        match catch_unwind(AssertUnwindSafe(|| provider.issuers())) {
            Err(_) => self.fail("issuers", "issuers() panicked through the boundary"),
            Ok(list) => {
                if list.iter().any(|i| i.trim().is_empty()) {
                    self.fail("issuers", "an issuer is empty");
                }
            }
        }
    }

    fn modes(&self) -> Vec<Mode> {
        let html = b"<!doctype html><html><body>502 Bad Gateway</body></html>".to_vec();
        let mut huge = b"{\"data\":[".to_vec();
        huge.extend(std::iter::repeat_n(b'[', 2000));
        vec![
            Mode::Canned,
            Mode::Down,
            Mode::Always(Canned::with_type(200, "text/html", html.clone())),
            Mode::Always(Canned::with_type(502, "text/html", html)),
            Mode::Always(Canned::json(500, r#"{"message":"internal error"}"#)),
            Mode::Always(Canned::json(429, r#"{"message":"rate limited"}"#)),
            Mode::Always(Canned::json(200, "")),
            Mode::Always(Canned::json(200, "null")),
            Mode::Always(Canned::json(200, "[]")),
            Mode::Always(Canned::json(200, "{}")),
            Mode::Always(Canned::with_type(
                200,
                "application/json",
                vec![0xff, 0xfe, 0],
            )),
            Mode::Always(Canned::with_type(200, "application/json", huge)),
        ]
    }

    fn request(&self) -> RequestInfo {
        RequestInfo {
            method: "GET".into(),
            path: "/api/conformance".into(),
            headers: RVec::new(),
        }
    }

    fn garbage_tokens(&mut self, provider: &ProviderBox, host: &FakeHost) {
        let huge = format!(
            "{}.{}.{}",
            "A".repeat(40_000),
            "B".repeat(40_000),
            "C".repeat(100)
        );
        let mut tokens: Vec<String> = GARBAGE_TOKENS.iter().map(|s| s.to_string()).collect();
        tokens.push(huge);
        for mode in self.modes() {
            host.set_mode(mode.clone());
            for token in &tokens {
                self.report.checks += 1;
                let shown = shorten(token);
                let fut = provider.authenticate(RString::from(token.as_str()), self.request());
                let outcome = run_until(fut, self.kit.timeout);
                host.take_requests();
                for line in host.take_logs() {
                    self.check_not_quoted(&line, token, "log line", &shown, &mode);
                    self.seen.push(("log line", line));
                }
                match outcome {
                    Outcome::TimedOut => self.fail(
                        "authenticate",
                        format!(
                            "{} with {shown}: did not finish within {:?}",
                            mode.name(),
                            self.kit.timeout
                        ),
                    ),
                    Outcome::Panicked => self.fail(
                        "authenticate",
                        format!(
                            "{} with {shown}: panicked through the boundary",
                            mode.name()
                        ),
                    ),
                    Outcome::Done(RResult::ROk(ROption::RSome(_))) => self.fail(
                        "authenticate",
                        format!("{} with {shown}: returned a user", mode.name()),
                    ),
                    Outcome::Done(RResult::ROk(ROption::RNone)) => {}
                    Outcome::Done(RResult::RErr(e)) => {
                        if e.kind() != ErrorKind::INVALID_TOKEN
                            && e.kind() != ErrorKind::UNAVAILABLE
                        {
                            self.fail(
                                "authenticate",
                                format!(
                                    "{} with {shown}: error of kind `{}` ({}); expected invalid_token or unavailable",
                                    mode.name(),
                                    e.kind().name(),
                                    e.message()
                                ),
                            );
                        }
                        self.check_not_quoted(e.message(), token, "error", &shown, &mode);
                        self.seen
                            .push(("authenticate error", e.message().to_string()));
                    }
                }
            }
        }
        host.set_mode(Mode::Canned);
    }

    fn check_not_quoted(&mut self, text: &str, token: &str, what: &str, shown: &str, mode: &Mode) {
        if token.len() >= 12 && text.contains(token) {
            self.fail(
                "authenticate",
                format!("{} with {shown}: the {what} quotes the token", mode.name()),
            );
        }
    }

    fn odd_users(&mut self, provider: &ProviderBox, host: &FakeHost) {
        let mut users: Vec<(String, String)> = vec![
            ("no claims".into(), "{}".into()),
            ("`sub: null`".into(), r#"{"sub":null}"#.into()),
            ("a numeric `sub`".into(), r#"{"sub":123}"#.into()),
            ("a list `sub`".into(), r#"{"sub":["a"]}"#.into()),
            ("an `id` but no `sub`".into(), r#"{"id":"user_1"}"#.into()),
        ];
        for sub in ODD_SUBS {
            users.push((
                format!("`sub` {}", shorten(sub)),
                serde_json::json!({ "sub": sub, "id": sub }).to_string(),
            ));
        }
        users.push((
            "a 10 kB `sub`".into(),
            serde_json::json!({ "sub": "u".repeat(10_000) }).to_string(),
        ));
        for mode in self.modes() {
            host.set_mode(mode.clone());
            for (label, user) in &users {
                self.report.checks += 1;
                let fut = provider.authorize(RString::from(user.as_str()), self.request());
                let outcome = run_until(fut, self.kit.timeout);
                let requests = host.take_requests();
                for line in host.take_logs() {
                    self.seen.push(("log line", line));
                }
                for url in &requests {
                    self.seen.push(("request url", url.clone()));
                    let path = url.split(['?', '#']).next().unwrap_or_default();
                    let path = path.split("://").nth(1).unwrap_or(path);
                    if path.contains("/../")
                        || path.ends_with("/..")
                        || path.contains("/./")
                        || path.ends_with("/.")
                        || path.contains("//")
                        || url.contains("inject=1")
                        || url.contains('#')
                        || url.contains('\u{0}')
                        || url.contains(' ')
                    {
                        self.fail(
                            "authorize",
                            format!(
                                "user with {label}: the subject changed the request URL ({})",
                                shorten(url)
                            ),
                        );
                    }
                }
                match outcome {
                    Outcome::TimedOut => self.fail(
                        "authorize",
                        format!("{} with {label}: did not finish within {:?}", mode.name(), self.kit.timeout),
                    ),
                    Outcome::Panicked => self.fail(
                        "authorize",
                        format!("{} with {label}: panicked through the boundary", mode.name()),
                    ),
                    Outcome::Done(RResult::ROk(true)) if mode.fails() && !requests.is_empty() => {
                        self.fail(
                            "authorize",
                            format!(
                                "{} with {label}: allowed although its remote check failed (fail closed)",
                                mode.name()
                            ),
                        )
                    }
                    Outcome::Done(RResult::ROk(_)) => {}
                    Outcome::Done(RResult::RErr(e)) => {
                        if e.kind() == ErrorKind::INTERNAL {
                            self.fail(
                                "authorize",
                                format!("{} with {label}: internal error ({})", mode.name(), e.message()),
                            );
                        }
                        self.seen.push(("authorize error", e.message().to_string()));
                    }
                }
            }
        }
        host.set_mode(Mode::Canned);
    }

    /// The requests a middleware is run on: a plain one, each without and with odd users, odd
    /// methods, paths, queries, clients and headers.
    fn odd_middleware_requests(&self) -> Vec<(String, Call<'static>)> {
        let with_headers = |method: &str, path: &str, extra: &[(String, String)]| {
            let mut headers = vec![("host", "app.example"), ("user-agent", "conformance")];
            headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            Call::new(method, path, &headers).with_client("192.0.2.7")
        };
        let base = |method: &str, path: &str| with_headers(method, path, &[]);
        let with_user = |r: Call<'static>, json: &str| {
            r.with_user("conformance", User::from_verified(json.into()))
        };
        let mut out: Vec<(String, Call<'static>)> = vec![
            (
                "a plain request, no user".into(),
                base("GET", "/api/conformance"),
            ),
            (
                "a user".into(),
                with_user(
                    base("POST", "/api/conformance"),
                    r#"{"sub":"user_1","org_id":"org_1","role":"admin"}"#,
                ),
            ),
            (
                "a user with no claims".into(),
                with_user(base("GET", "/"), "{}"),
            ),
            (
                "a numeric `sub`".into(),
                with_user(base("GET", "/api/x"), r#"{"sub":123}"#),
            ),
            (
                "a list `sub`".into(),
                with_user(base("GET", "/api/x"), r#"{"sub":["a"],"org_id":{"x":1}}"#),
            ),
            ("an odd method".into(), base("PROPFIND", "/api/x")),
            (
                "an empty client".into(),
                base("GET", "/api/x").with_client(""),
            ),
            (
                "an IPv6 client".into(),
                base("GET", "/api/x").with_client("2001:db8::1"),
            ),
            (
                "a query".into(),
                base("GET", "/api/x").with_query("a=1&_method=DELETE&a=%00"),
            ),
            (
                "a 16 kB header".into(),
                with_headers(
                    "GET",
                    "/api/x",
                    &[("x-big".to_string(), "b".repeat(16 * 1024))],
                ),
            ),
            (
                "200 headers".into(),
                with_headers(
                    "GET",
                    "/api/x",
                    &(0..200)
                        .map(|i| (format!("x-h{i}"), "v".to_string()))
                        .collect::<Vec<_>>(),
                ),
            ),
            (
                "repeated headers".into(),
                with_headers(
                    "GET",
                    "/api/x",
                    &["1", "2", "3"].map(|v| ("x-tenant".to_string(), v.to_string())),
                ),
            ),
        ];
        for sub in ODD_SUBS {
            out.push((
                format!("`sub` {}", shorten(sub)),
                with_user(
                    base("GET", "/api/x"),
                    &serde_json::json!({ "sub": sub, "org_id": sub }).to_string(),
                ),
            ));
        }
        out.push((
            "a 10 kB `sub`".into(),
            with_user(
                base("GET", "/api/x"),
                &serde_json::json!({ "sub": "u".repeat(10_000) }).to_string(),
            ),
        ));
        out
    }

    /// A header a middleware wants set is valid HTTP, and not one that frames the message.
    fn check_header(
        &mut self,
        hook: &'static str,
        label: &str,
        what: &str,
        name: &str,
        value: Option<&str>,
    ) {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            self.fail(
                hook,
                format!("{label}: {what} `{}` is not a header name", shorten(name)),
            );
        } else if FRAMING_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            self.fail(
                hook,
                format!("{label}: {what} `{name}` frames the message and may not be changed"),
            );
        }
        if let Some(v) = value {
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                self.fail(
                    hook,
                    format!("{label}: {what} `{name}` has a value with CR, LF or NUL"),
                );
            }
        }
    }

    fn check_outcome(&mut self, label: &str, o: &RequestOutcome) {
        if let ROption::RSome(a) = &o.answer {
            if !(200..600).contains(&a.status) {
                self.fail(
                    "on_request",
                    format!("{label}: answered status {}", a.status),
                );
            }
            for h in a.headers.iter() {
                self.check_header("on_request", label, "answer header", &h.0, Some(&h.1));
            }
        }
        for h in o.set_headers.iter() {
            self.check_header("on_request", label, "request header", &h.0, Some(&h.1));
        }
        for h in o.remove_headers.iter() {
            self.check_header("on_request", label, "removed header", h, None);
        }
        for h in o.response_headers.iter() {
            self.check_header("on_request", label, "response header", &h.0, Some(&h.1));
        }
    }

    /// Runs `on_request` on one request; `None` when it failed a check.
    fn one_request(
        &mut self,
        middleware: &MiddlewareBox,
        host: &FakeHost,
        label: &str,
        request: &Call<'_>,
    ) -> Option<RequestOutcome> {
        self.report.checks += 1;
        let timeout = self.kit.timeout;
        // As the server does: the synchronous form first, the future only when it declines.
        let started = Instant::now();
        let now =
            request.with_abi(|r| catch_unwind(AssertUnwindSafe(|| middleware.on_request_now(r))));
        let blocked = started.elapsed();
        if blocked > timeout {
            self.fail(
                "on_request_now",
                format!(
                    "{label}: took {blocked:?}; it must not block (wait in on_request instead)"
                ),
            );
        }
        let outcome = match now {
            Err(_) => Outcome::Panicked,
            Ok(ROption::RSome(r)) => Outcome::Done(r),
            Ok(ROption::RNone) => {
                request.with_abi(|r| run_until(middleware.on_request(r), timeout))
            }
        };
        for line in host.take_logs() {
            self.seen.push(("log line", line));
        }
        for url in host.take_requests() {
            self.seen.push(("request url", url));
        }
        match outcome {
            Outcome::TimedOut => {
                self.fail(
                    "on_request",
                    format!("{label}: did not finish within {:?}", self.kit.timeout),
                );
                None
            }
            Outcome::Panicked => {
                self.fail(
                    "on_request",
                    format!("{label}: panicked through the boundary"),
                );
                None
            }
            Outcome::Done(RResult::RErr(e)) => {
                self.seen
                    .push(("on_request error", e.message().to_string()));
                if e.kind() == ErrorKind::INTERNAL {
                    self.fail(
                        "on_request",
                        format!(
                            "{label}: internal error ({}); answer the request instead (Flow::error)",
                            e.message()
                        ),
                    );
                }
                None
            }
            Outcome::Done(RResult::ROk(o)) => {
                self.check_outcome(label, &o);
                Some(o)
            }
        }
    }

    fn odd_requests(&mut self, middleware: &MiddlewareBox, host: &FakeHost) {
        let wants_response = match catch_unwind(AssertUnwindSafe(|| middleware.wants_response())) {
            Ok(w) => w,
            Err(_) => {
                self.fail(
                    "wants_response",
                    "wants_response() panicked through the boundary",
                );
                false
            }
        };
        for mode in self.modes() {
            host.set_mode(mode.clone());
            for (label, request) in self.odd_middleware_requests() {
                let label = format!("{} with {label}", mode.name());
                let Some(_) = self.one_request(middleware, host, &label, &request) else {
                    continue;
                };
                if wants_response {
                    self.odd_responses(middleware, host, &label, &request);
                }
            }
        }
        host.set_mode(Mode::Canned);
        // A dry run changes no state: asked again and again, it answers the same.
        let request = self.odd_middleware_requests().swap_remove(1).1.as_dry_run();
        let first = self.one_request(middleware, host, "a dry run", &request);
        for _ in 0..50 {
            let again = self.one_request(middleware, host, "a dry run, again", &request);
            if again.is_some() && first.is_some() && again != first {
                self.fail(
                    "dry run",
                    "the same dry run got another answer: a dry run must change no state",
                );
                break;
            }
        }
    }

    fn odd_responses(
        &mut self,
        middleware: &MiddlewareBox,
        host: &FakeHost,
        label: &str,
        request: &Call<'_>,
    ) {
        for status in [200u16, 204, 304, 401, 429, 500, 503] {
            self.report.checks += 1;
            let head = ResponseView::new(
                status,
                &[("content-type", "application/json"), ("x-upstream", "1")],
            );
            let timeout = self.kit.timeout;
            let outcome = request
                .with_abi(|r| head.with_abi(|h| run_until(middleware.on_response(r, h), timeout)));
            for line in host.take_logs() {
                self.seen.push(("log line", line));
            }
            match outcome {
                Outcome::TimedOut => self.fail(
                    "on_response",
                    format!(
                        "{label}, response {status}: did not finish within {:?}",
                        self.kit.timeout
                    ),
                ),
                Outcome::Panicked => self.fail(
                    "on_response",
                    format!("{label}, response {status}: panicked through the boundary"),
                ),
                Outcome::Done(RResult::RErr(e)) => {
                    self.seen
                        .push(("on_response error", e.message().to_string()));
                    self.fail(
                        "on_response",
                        format!("{label}, response {status}: failed ({}); the response is then replaced by a 500", e.message()),
                    );
                }
                Outcome::Done(RResult::ROk(ResponseEdit {
                    set_headers,
                    remove_headers,
                })) => {
                    let label = format!("{label}, response {status}");
                    for h in set_headers.iter() {
                        self.check_header(
                            "on_response",
                            &label,
                            "response header",
                            &h.0,
                            Some(&h.1),
                        );
                    }
                    for h in remove_headers.iter() {
                        self.check_header("on_response", &label, "removed header", h, None);
                    }
                }
            }
        }
    }

    fn secrets_never_leak(&mut self, host: &FakeHost) {
        self.report.checks += 1;
        for line in host.take_logs() {
            self.seen.push(("log line", line));
        }
        let secrets: Vec<String> = self
            .kit
            .secrets
            .iter()
            .filter(|s| s.len() >= 6)
            .cloned()
            .collect();
        let mut leaks = Vec::new();
        for (what, text) in &self.seen {
            if secrets.iter().any(|s| text.contains(s.as_str())) {
                leaks.push(format!("a {what} contains a secret: {}", shorten(text)));
            }
        }
        leaks.sort();
        leaks.dedup();
        for l in leaks {
            self.fail("secrets", l);
        }
    }
}

fn shorten(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() > 48 {
        let head: String = escaped.chars().take(40).collect();
        format!("\"{head}…\" ({} bytes)", s.len())
    } else {
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthProvider, Host, Request, User};

    /// A provider with the classic mistakes: it panics on an empty token, echoes its key, builds a
    /// path from the raw `sub` and allows whenever the remote side answers at all.
    struct Sloppy {
        host: Host,
        key: String,
    }

    #[derive(serde::Deserialize, crate::PluginConfig)]
    struct SloppyConfig {
        /// The key.
        #[config(example = "super-secret-key")]
        key: String,
    }

    impl AuthProvider for Sloppy {
        async fn authenticate(
            &self,
            token: String,
            _r: Request,
        ) -> Result<Option<User>, PluginError> {
            assert!(!token.is_empty(), "empty token");
            Err(PluginError::invalid_token(format!(
                "bad token {token} for key {}",
                self.key
            )))
        }

        async fn authorize(&self, user: User, _r: Request) -> Result<bool, PluginError> {
            let sub = user.subject().unwrap_or_default();
            let url = format!("https://idp.example/users/{sub}");
            Ok(self.host.get(&url, &[]).await.is_ok())
        }
    }

    struct SloppyPlugin;

    impl Plugin for SloppyPlugin {
        type Provider = Sloppy;
        type Config = SloppyConfig;
        const NAME: &'static str = "sloppy";
        const VERSION: &'static str = "0.0.1";
        const DESCRIPTION: &'static str = "every mistake the kit looks for";

        fn validate(config: &SloppyConfig, _host: &Host) -> Result<(), PluginError> {
            if config.key.len() < 8 {
                return Err(PluginError::config(format!(
                    "key {} is too short",
                    config.key
                )));
            }
            Ok(())
        }

        fn build(config: SloppyConfig, host: Host) -> Result<Sloppy, PluginError> {
            Ok(Sloppy {
                host,
                key: config.key,
            })
        }
    }

    /// A middleware with the classic mistakes: it panics without a user, counts dry runs, sets a
    /// framing header, answers a status that is not one and fails with internal errors.
    struct SloppyMiddleware {
        seen: std::sync::atomic::AtomicU32,
        every: u32,
    }

    #[derive(serde::Deserialize, crate::PluginConfig)]
    #[serde(deny_unknown_fields)]
    struct SloppyMiddlewareConfig {
        /// How many requests pass.
        #[config(example = "3")]
        limit: u32,
    }

    impl crate::RequestMiddleware for SloppyMiddleware {
        async fn on_request(&self, call: crate::Call<'_>) -> Result<crate::Flow, PluginError> {
            let user = call.user().expect("a user");
            if user.subject().is_none() {
                return Err(PluginError::internal("no subject"));
            }
            let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n % self.every == self.every - 1 {
                return Ok(crate::Flow::respond(700));
            }
            Ok(crate::Flow::proceed().set_request_header("content-length", "0"))
        }
    }

    struct SloppyMiddlewarePlugin;

    impl MiddlewarePlugin for SloppyMiddlewarePlugin {
        type Middleware = SloppyMiddleware;
        type Config = SloppyMiddlewareConfig;
        const NAME: &'static str = "sloppy-mw";
        const VERSION: &'static str = "0.0.1";
        const DESCRIPTION: &'static str = "every middleware mistake the kit looks for";

        fn build(
            config: SloppyMiddlewareConfig,
            _host: Host,
        ) -> Result<SloppyMiddleware, PluginError> {
            Ok(SloppyMiddleware {
                seen: Default::default(),
                every: config.limit.max(2),
            })
        }
    }

    #[test]
    fn the_kit_finds_the_classic_middleware_mistakes() {
        let report = Conformance::middleware_example::<SloppyMiddlewarePlugin>()
            .run_middleware::<SloppyMiddlewarePlugin>();
        let text = report.to_string();
        assert!(!report.passed());
        for expected in [
            "a plain request, no user: internal error (plugin panicked: a user)",
            "internal error (no subject)",
            "request header `content-length` frames the message",
            "answered status 700",
            "a dry run must change no state",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in\n{text}");
        }
        // The provider kit does not take a middleware-only library.
        let report = Conformance::new(serde_json::json!({ "limit": 3 }))
            .run_module(crate::sdk::middleware_root_module::<SloppyMiddlewarePlugin>());
        assert!(!report.passed());
    }

    #[test]
    fn the_kit_finds_the_classic_mistakes() {
        let report = Conformance::new(serde_json::json!({ "key": "super-secret-key" }))
            .secret("super-secret-key")
            .run::<SloppyPlugin>();
        let text = report.to_string();
        assert!(!report.passed());
        assert!(
            !text.contains("super-secret-key"),
            "the report leaks: {text}"
        );
        for expected in [
            "an unknown key (typos must be reported): accepted",
            "with \"\": error of kind `internal`",
            "the error quotes the token",
            "the subject changed the request URL",
            "allowed although its remote check failed",
            "contains a secret",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in\n{text}");
        }
    }
}
