//! The decision, in process: a compiled config, and provider instances whose plugin object is an
//! in-process [`AuthProvider`] behind the same [`ProviderHandle`] a loaded plugin gets (time limit,
//! in-flight limit, panics caught). What needs a real server (statuses and bodies on the wire,
//! real plugins, reloads) stays in `tests/tests`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use poem::http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_plugin_api::{abi::provider_box, AuthProvider, PluginError, Request, User};
use serde_json::{json, Map, Value};

use super::{
    authz_cache, decide, AuthUser, AuthzCache, Decision, Denial, Policy, ProviderInstance,
    RequestParts, RetiredInstance,
};
use crate::{
    config::{compile_str, Config, VarSource},
    plugin::{LoadedPlugin, PluginManifest, ProviderHandle},
};

// ---- an in-process identity provider ---------------------------------------------------------

/// What an [`Idp`] was asked.
#[derive(Default)]
struct Calls {
    authenticate: AtomicUsize,
    authorize: AtomicUsize,
    /// Header names of the last request `authenticate` was told about.
    headers: Mutex<Vec<String>>,
}

impl Calls {
    fn authenticated(&self) -> usize {
        self.authenticate.load(Ordering::SeqCst)
    }
    fn authorized(&self) -> usize {
        self.authorize.load(Ordering::SeqCst)
    }
}

/// A provider whose tokens are unsigned JWTs: the claims are the user, and say what to answer
/// (`fail` for `authenticate`, `authorize` for `authorize`).
struct Idp {
    issuers: Vec<String>,
    /// Answers "not mine" to every token.
    rejects_all: bool,
    /// Takes this long to answer `authenticate`.
    delay: Option<Duration>,
    /// The manifest's `authorize_by_subject` (its answers are cached by default).
    by_subject: bool,
    /// The handle's in-flight limit.
    in_flight: usize,
    calls: Arc<Calls>,
}

fn idp() -> Idp {
    Idp {
        issuers: Vec::new(),
        rejects_all: false,
        delay: None,
        by_subject: false,
        in_flight: 16,
        calls: Arc::default(),
    }
}

impl Idp {
    fn issuer(mut self, iss: &str) -> Idp {
        self.issuers.push(iss.into());
        self
    }
    fn rejecting(mut self) -> Idp {
        self.rejects_all = true;
        self
    }
}

fn claims_of(token: &str) -> Option<Map<String, Value>> {
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice(&payload).ok()
}

impl AuthProvider for Idp {
    async fn authenticate(
        &self,
        token: String,
        request: Request,
    ) -> Result<Option<User>, PluginError> {
        self.calls.authenticate.fetch_add(1, Ordering::SeqCst);
        *self.calls.headers.lock().unwrap() = request.headers().map(|(k, _)| k.into()).collect();
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let Some(claims) = claims_of(&token).filter(|_| !self.rejects_all) else {
            return Ok(None);
        };
        match claims.get("fail").and_then(Value::as_str) {
            Some("invalid") => Err(PluginError::invalid_token("signature mismatch")),
            Some("unavailable") => Err(PluginError::unavailable("identity provider down")),
            Some("config") => Err(PluginError::config("jwks_url is refused")),
            Some("internal") => Err(PluginError::internal("bug in the plugin")),
            Some("panic") => panic!("boom"),
            _ => Ok(Some(User::from_claims(claims))),
        }
    }

    async fn authorize(&self, user: User, _request: Request) -> Result<bool, PluginError> {
        self.calls.authorize.fetch_add(1, Ordering::SeqCst);
        match user.claim("authorize").as_ref().and_then(Value::as_str) {
            Some("deny") => Ok(false),
            Some("invalid") => Err(PluginError::invalid_token("membership revoked")),
            Some("unavailable") => Err(PluginError::unavailable("membership API down")),
            Some("internal") => Err(PluginError::internal("bug in the plugin")),
            _ => Ok(true),
        }
    }

    fn issuers(&self) -> Vec<String> {
        self.issuers.clone()
    }
}

/// An unsigned JWT carrying `claims` (the decision peeks at its `iss` to route it).
fn jwt(claims: Value) -> String {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"signature")
    )
}

// ---- a snapshot to decide under --------------------------------------------------------------

struct NoVars;
impl VarSource for NoVars {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

/// What `decide` reads: a compiled config and the instances built for it.
struct Env {
    config: Config,
    providers: Vec<Arc<ProviderInstance>>,
    retired: Vec<RetiredInstance>,
}

/// Compiles `yaml` and builds one instance per `providers:` entry from `idps`, in order, as the
/// reload does (its `authorize` override, its authorization cache).
fn env(yaml: &str, idps: Vec<Idp>) -> Env {
    let config = compile_str(yaml, Path::new("/test/c.yaml"), &NoVars)
        .unwrap_or_else(|e| panic!("{e}\n---\n{yaml}"));
    assert_eq!(config.providers.len(), idps.len(), "one Idp per provider");
    let providers = config
        .providers
        .iter()
        .zip(idps)
        .map(|(pc, idp)| {
            let plugin = Arc::new(LoadedPlugin::in_process(PluginManifest {
                name: pc.plugin.clone(),
                version: "0.0.0".into(),
                description: "an in-process test provider".into(),
                abi_version: "1.1".into(),
                sdk_version: "test".into(),
                config_keys: Vec::new(),
                example_config: json!({}),
                authorize_by_subject: idp.by_subject,
            }));
            let limit = idp.in_flight;
            let provider = ProviderHandle::new(provider_box(idp), limit);
            let authz_cache = pc
                .authorization_cache
                .ttl(
                    plugin.manifest.authorize_by_subject,
                    authz_cache::DEFAULT_TTL,
                )
                .map(|ttl| Arc::new(AuthzCache::new(ttl, authz_cache::MAX_ENTRIES)));
            Arc::new(ProviderInstance {
                name: pc.name.clone(),
                issuers: provider.issuers(),
                plugin,
                provider,
                authorize: pc.authorize.clone(),
                authz_cache,
                authn_cache: None,
                key_sets: Arc::default(),
                verifiers_remember: Arc::new(AtomicBool::new(true)),
                build_key: String::new(),
            })
        })
        .collect();
    Env {
        config,
        providers,
        retired: Vec::new(),
    }
}

/// One provider instance `main` of plugin `test`, then `rest`.
fn one(rest: &str) -> String {
    format!(
        "version: 1\nserver: {{ port: 1 }}\nproviders:\n  - {{ name: main, plugin: test }}\n{rest}"
    )
}

/// A request: method, canonical path, headers, query and host.
struct Req {
    method: &'static str,
    path: &'static str,
    headers: HeaderMap,
    query: Option<String>,
    host: Option<String>,
}

fn req(method: &'static str, path: &'static str) -> Req {
    Req {
        method,
        path,
        headers: HeaderMap::new(),
        query: None,
        host: None,
    }
}

fn get(path: &'static str) -> Req {
    req("GET", path)
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }
    fn bearer(self, token: &str) -> Req {
        self.header("authorization", &format!("Bearer {token}"))
    }
    fn query(mut self, q: &str) -> Req {
        self.query = Some(q.into());
        self
    }
    fn host(mut self, h: &str) -> Req {
        self.host = Some(h.into());
        self
    }
}

impl Env {
    async fn ask(&self, r: &Req) -> Decision {
        let policy = Policy {
            config: &self.config,
            providers: &self.providers,
            retired: &self.retired,
        };
        let parts = RequestParts {
            method: r.method,
            path: r.path,
            headers: &r.headers,
            query: r.query.as_deref(),
            host: r.host.as_deref(),
            now: Instant::now(),
        };
        decide(&policy, &parts).await
    }

    /// The user of an allowed request that needed one.
    async fn user(&self, r: &Req) -> Arc<AuthUser> {
        match self.ask(r).await.result {
            Ok(Some(u)) => u,
            other => panic!("{} {}: expected a user, got {other:?}", r.method, r.path),
        }
    }

    async fn denial(&self, r: &Req) -> Denial {
        match self.ask(r).await.result {
            Err(d) => d,
            other => panic!("{} {}: expected a denial, got {other:?}", r.method, r.path),
        }
    }
}

fn forbidden(why: &str) -> Denial {
    Denial::Forbidden(why.into())
}
fn invalid(why: &str) -> Denial {
    Denial::InvalidToken(why.into())
}
fn unavailable(why: &str) -> Denial {
    Denial::Unavailable(why.into())
}

// ---- tokens: none, bad, malformed ------------------------------------------------------------

#[tokio::test]
async fn no_token_on_a_protected_path_is_authentication_required() {
    let main = idp();
    let calls = main.calls.clone();
    let e = env(&one(""), vec![main]);
    let d = e.ask(&get("/api/x")).await;
    assert_eq!(d.result.unwrap_err(), Denial::NoToken);
    assert!(d.trace.requires_auth);
    assert_eq!(d.trace.protected_pattern, Some(0));
    assert_eq!(d.trace.reason, "no token");
    // Another scheme, or `Bearer` with nothing after it, is no bearer token either.
    for value in ["Basic dXNlcjpwdw==", "Bearer", "Bearer    "] {
        let r = get("/api/x").header("authorization", value);
        assert_eq!(e.denial(&r).await, Denial::NoToken, "{value}");
    }
    assert_eq!(calls.authenticated(), 0);
}

#[tokio::test]
async fn a_token_the_provider_refuses_is_invalid_with_its_reason() {
    let main = idp();
    let calls = main.calls.clone();
    let e = env(&one(""), vec![main]);
    let d = e.ask(&get("/api/x").bearer("not-a-jwt")).await;
    assert_eq!(
        d.result.unwrap_err(),
        invalid("provider main rejected the token")
    );
    assert_eq!(d.trace.provider.as_deref(), Some("main"));
    assert_eq!(d.trace.reason, "provider main rejected the token");
    assert_eq!(
        e.denial(&get("/api/x").bearer(&jwt(json!({"sub": "amy", "fail": "invalid"}))))
            .await,
        invalid("provider main: signature mismatch")
    );
    assert_eq!(calls.authenticated(), 2);
}

#[tokio::test]
async fn a_malformed_or_oversized_token_never_reaches_the_provider() {
    let main = idp();
    let calls = main.calls.clone();
    let e = env(
        &one("").replace(
            "server: { port: 1 }",
            "server: { port: 1, max_token_bytes: 512 }",
        ),
        vec![main],
    );
    let malformed = invalid("malformed authorization header");
    let good = jwt(json!({"sub": "amy"}));
    let twice = get("/api/x").bearer(&good).bearer(&good);
    assert_eq!(e.denial(&twice).await, malformed);
    assert_eq!(e.denial(&get("/api/x").bearer("a,b")).await, malformed);
    assert_eq!(
        e.denial(&get("/api/x").bearer(&"a".repeat(600))).await,
        invalid("token is larger than the configured limit")
    );
    // Too long and not even well formed: malformed first.
    assert_eq!(
        e.denial(&get("/api/x").bearer(&"a,".repeat(300))).await,
        malformed
    );
    assert_eq!(calls.authenticated(), 0);
    assert_eq!(
        e.user(&get("/api/x").bearer(&good)).await.subject(),
        Some("amy")
    );
}

// ---- provider failures: 503 when the check could not be made, 500 when the plugin failed -------

#[tokio::test]
async fn provider_errors_are_unavailable_or_internal_by_who_is_at_fault() {
    let e = env(&one(""), vec![idp()]);
    let ask = |fail: &str| get("/api/x").bearer(&jwt(json!({"sub": "amy", "fail": fail})));
    assert_eq!(
        e.denial(&ask("unavailable")).await,
        unavailable("provider main: identity provider down")
    );
    assert_eq!(
        e.denial(&ask("config")).await,
        unavailable("provider main: jwks_url is refused")
    );
    let d = e.ask(&ask("internal")).await;
    assert_eq!(
        d.result.unwrap_err(),
        Denial::Internal("provider main: bug in the plugin".into())
    );
    assert_eq!(d.trace.provider.as_deref(), Some("main"));
    assert_eq!(
        e.denial(&ask("panic")).await,
        Denial::Internal("provider main: plugin panicked: boom".into())
    );
}

#[tokio::test]
async fn a_provider_past_its_time_limit_is_unavailable() {
    let mut slow = idp();
    slow.delay = Some(Duration::from_secs(30));
    let e = env(
        &one("").replace(
            "server: { port: 1 }",
            "server: { port: 1, plugin_timeout: 50ms }",
        ),
        vec![slow],
    );
    let started = Instant::now();
    assert_eq!(
        e.denial(&get("/api/x").bearer(&jwt(json!({"sub": "amy"}))))
            .await,
        unavailable("provider main: plugin call did not finish within 50ms")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_provider_with_no_call_left_in_flight_is_unavailable_at_once() {
    let mut busy = idp();
    busy.in_flight = 0;
    let calls = busy.calls.clone();
    let e = env(&one(""), vec![busy]);
    assert_eq!(
        e.denial(&get("/api/x").bearer(&jwt(json!({"sub": "amy"})))).await,
        unavailable("provider main: too many plugin calls in flight on this instance (server.plugin_max_in_flight)")
    );
    assert_eq!(calls.authenticated(), 0);
}

#[tokio::test]
async fn the_plugins_authorize_refusal_and_errors_map_to_who_is_at_fault() {
    let e = env(&one(""), vec![idp()]);
    let ask = |answer: &str| get("/api/x").bearer(&jwt(json!({"sub": "amy", "authorize": answer})));
    for (answer, denial) in [
        (
            "deny",
            forbidden("provider main did not authorize the user"),
        ),
        ("invalid", forbidden("provider main: membership revoked")),
        (
            "unavailable",
            unavailable("provider main: membership API down"),
        ),
        (
            "internal",
            Denial::Internal("provider main: bug in the plugin".into()),
        ),
    ] {
        assert_eq!(e.denial(&ask(answer)).await, denial, "{answer}");
    }
    assert_eq!(e.user(&ask("allow")).await.provider, "main");
}

// ---- public and protected paths --------------------------------------------------------------

#[tokio::test]
async fn public_and_unprotected_paths_need_no_user() {
    let main = idp();
    let calls = main.calls.clone();
    let e = env(
        &one("auth:\n  protected: [/api/*, /admin/*]\n  public: [/health, /api/health, [/api/docs, GET]]\n"),
        vec![main],
    );
    for (r, public, reason) in [
        (get("/health"), Some(0), "public path"),
        (get("/api/health"), Some(1), "public path"),
        (get("/api/docs"), Some(2), "public path"),
        (get("/elsewhere"), None, "path not protected"),
    ] {
        let d = e.ask(&r).await;
        assert!(matches!(d.result, Ok(None)), "{}: {:?}", r.path, d.result);
        assert!(!d.trace.requires_auth);
        assert_eq!(d.trace.public_pattern, public, "{}", r.path);
        assert_eq!(d.trace.reason, reason, "{}", r.path);
    }
    // Public for GET only; protected paths ignore case, public ones do not.
    assert_eq!(e.denial(&req("POST", "/api/docs")).await, Denial::NoToken);
    assert_eq!(e.denial(&get("/API/Health")).await, Denial::NoToken);
    assert_eq!(e.denial(&get("/ADMIN/x")).await, Denial::NoToken);
    assert_eq!(calls.authenticated(), 0);
}

#[tokio::test]
async fn the_built_in_routes_always_need_a_user() {
    let e = env(
        &one("auth:\n  protected: []\n  public: [/api/auth/*, /api/admin/*]\n"),
        vec![idp()],
    );
    for path in ["/api/auth/me", "/api/admin/status", "/API/Auth/me"] {
        let d = e.ask(&get(path)).await;
        assert_eq!(d.result.unwrap_err(), Denial::NoToken, "{path}");
        assert!(d.trace.builtin_route && d.trace.requires_auth, "{path}");
    }
}

#[tokio::test]
async fn a_routes_requires_auth_decides_alone() {
    let e = env(
        &one("auth:\n  public: [/vault/open]\nroutes:\n  - { path: /hooks/*, requires_auth: false, upstream: \"http://up\" }\n  - { path: /vault/*, upstream: \"http://up\" }\n  - { path: /api/open/*, requires_auth: false, upstream: \"http://up\" }\n"),
        vec![idp()],
    );
    let d = e.ask(&get("/api/open/x")).await;
    assert!(matches!(d.result, Ok(None)));
    assert_eq!(d.trace.route, Some(2));
    assert_eq!(d.trace.reason, "route does not require auth");
    assert!(matches!(e.ask(&get("/hooks/gh")).await.result, Ok(None)));
    // The route needs a user, whatever auth.public says.
    let d = e.ask(&get("/vault/open")).await;
    assert_eq!(d.result.unwrap_err(), Denial::NoToken);
    assert_eq!((d.trace.route, d.trace.public_pattern), (Some(1), Some(0)));
}

// ---- rules -----------------------------------------------------------------------------------

const RULES: &str = "auth:
  rules:
    - { path: /api/admin/*, condition: \"user.role == 'admin'\", allow: true }
    - { path: /api/admin/*, allow: false }
    - { path: /api/reports/*, methods: [POST], allow: false }
    - { path: /api/banned/*, condition: \"user.banned\", allow: false }
    - { allow: true }
";

#[tokio::test]
async fn the_first_rule_that_applies_decides() {
    let e = env(&one(RULES), vec![idp()]);
    let admin = jwt(json!({"sub": "amy", "role": "admin"}));
    let user = jwt(json!({"sub": "bob", "role": "user"}));
    let d = e.ask(&get("/api/admin/x").bearer(&admin)).await;
    assert!(matches!(d.result, Ok(Some(_))));
    assert_eq!(d.trace.rule, Some(0));
    let d = e.ask(&get("/api/admin/x").bearer(&user)).await;
    assert_eq!(d.result.unwrap_err(), forbidden("denied by auth.rules[1]"));
    assert_eq!(d.trace.rule, Some(1));
    assert_eq!(d.trace.reason, "denied by auth.rules[1]");
    assert_eq!(
        e.denial(&req("POST", "/api/reports/q").bearer(&user)).await,
        forbidden("denied by auth.rules[2]")
    );
    let d = e.ask(&get("/api/reports/q").bearer(&user)).await;
    assert_eq!(d.trace.rule, Some(4));
    assert!(d.result.is_ok());
}

#[tokio::test]
async fn a_condition_that_cannot_be_evaluated_fails_closed() {
    let e = env(&one(RULES), vec![idp()]);
    // No `role` claim: the allow rule does not apply, the deny rule after it does.
    let no_role = jwt(json!({"sub": "amy"}));
    assert_eq!(
        e.denial(&get("/api/admin/x").bearer(&no_role)).await,
        forbidden("denied by auth.rules[1]")
    );
    // No `banned` claim: the deny rule applies.
    assert_eq!(
        e.denial(&get("/api/banned/x").bearer(&no_role)).await,
        forbidden("denied by auth.rules[3]")
    );
    let cleared = jwt(json!({"sub": "amy", "banned": false}));
    assert!(e
        .ask(&get("/api/banned/x").bearer(&cleared))
        .await
        .result
        .is_ok());
}

#[tokio::test]
async fn with_no_rule_that_applies_the_fallbacks_decide() {
    let amy = jwt(json!({"sub": "amy", "role": "staff"}));
    let bob = jwt(json!({"sub": "bob", "role": "guest"}));
    // Rules, none of which applies: refused.
    let e = env(
        &one("auth:\n  rules:\n    - { path: /api/a, allow: true }\n"),
        vec![idp()],
    );
    let d = e.ask(&get("/api/b").bearer(&amy)).await;
    assert_eq!(
        d.result.unwrap_err(),
        forbidden("no rule allowed the request")
    );
    assert_eq!(d.trace.rule, None);
    // No rules at all: any authenticated user.
    let e = env(&one(""), vec![idp()]);
    assert!(e.ask(&get("/api/b").bearer(&bob)).await.result.is_ok());
    // `auth.authorize` when no rule applies.
    let e = env(
        &one("auth:\n  authorize: \"user.role == 'staff'\"\n  rules:\n    - { path: /api/open, allow: true }\n"),
        vec![idp()],
    );
    assert!(e.ask(&get("/api/b").bearer(&amy)).await.result.is_ok());
    assert_eq!(
        e.denial(&get("/api/b").bearer(&bob)).await,
        forbidden("denied by auth.authorize")
    );
    assert!(e.ask(&get("/api/open").bearer(&bob)).await.result.is_ok());
}

#[tokio::test]
async fn conditions_see_user_method_path_provider_iss_and_host() {
    let e = env(
        &one("auth:\n  rules:\n    - condition: \"user.sub == 'amy' && method == 'PUT' && path == '/api/read/x' && provider == 'main' && iss == 'https://a.test' && host == 'app.test'\"\n      allow: true\n"),
        vec![idp()],
    );
    let amy = jwt(json!({"sub": "amy", "iss": "https://a.test"}));
    let ok = |token: &str| req("PUT", "/API/Read/x").bearer(token).host("App.Test:443");
    // The path as the condition sees it is in lower case, and the host has no port.
    assert!(e.ask(&ok(&amy)).await.result.is_ok());
    let no = forbidden("no rule allowed the request");
    let bob = jwt(json!({"sub": "bob", "iss": "https://a.test"}));
    assert_eq!(e.denial(&ok(&bob)).await, no);
    let other_iss = jwt(json!({"sub": "amy", "iss": "https://b.test"}));
    assert_eq!(e.denial(&ok(&other_iss)).await, no);
    assert_eq!(
        e.denial(&req("GET", "/api/read/x").bearer(&amy).host("app.test"))
            .await,
        no
    );
    assert_eq!(
        e.denial(&req("PUT", "/api/read/y").bearer(&amy).host("app.test"))
            .await,
        no
    );
    assert_eq!(e.denial(&req("PUT", "/api/read/x").bearer(&amy)).await, no);
}

#[tokio::test]
async fn a_rule_naming_providers_is_about_their_users_only() {
    let e = env(
        "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: staff, plugin: test }\n  - { name: public, plugin: test }\nauth:\n  rules:\n    - { path: /api/internal/*, providers: [public], allow: false }\n    - { condition: \"provider == 'public' && path.startsWith('/api/staff/')\", allow: false }\n    - { allow: true }\n",
        vec![idp().issuer("https://staff.test"), idp().issuer("https://public.test")],
    );
    let staff = jwt(json!({"sub": "amy", "iss": "https://staff.test"}));
    let public = jwt(json!({"sub": "bob", "iss": "https://public.test"}));
    assert!(e
        .ask(&get("/api/internal/x").bearer(&staff))
        .await
        .result
        .is_ok());
    assert_eq!(
        e.denial(&get("/api/internal/x").bearer(&public)).await,
        forbidden("denied by auth.rules[0]")
    );
    assert_eq!(
        e.denial(&get("/api/staff/x").bearer(&public)).await,
        forbidden("denied by auth.rules[1]")
    );
    assert!(e
        .ask(&get("/api/staff/x").bearer(&staff))
        .await
        .result
        .is_ok());
}

// ---- the admin API ---------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_api_is_closed_unless_a_rule_opens_it() {
    let admin = jwt(json!({"sub": "amy", "role": "admin"}));
    let closed = forbidden("the admin API is open only to users an auth.rules entry allows");
    // No rules: every other path is open to any user, the admin API to none.
    let e = env(&one(""), vec![idp()]);
    assert!(e.ask(&get("/api/x").bearer(&admin)).await.result.is_ok());
    let d = e.ask(&get("/api/admin/status").bearer(&admin)).await;
    assert_eq!(d.result.unwrap_err(), closed);
    assert_eq!(d.trace.rule, None);
    assert_eq!(
        e.denial(&get("/API/Admin/status").bearer(&admin)).await,
        closed
    );
    // `auth.authorize` does not open it either.
    let e = env(&one("auth:\n  authorize: \"true\"\n"), vec![idp()]);
    assert_eq!(
        e.denial(&get("/api/admin/status").bearer(&admin)).await,
        closed
    );
    // A rule that allows does; for the users it allows.
    let e = env(
        &one("auth:\n  rules:\n    - { path: /api/admin/*, condition: \"user.role == 'admin'\", allow: true }\n"),
        vec![idp()],
    );
    let d = e.ask(&get("/api/admin/status").bearer(&admin)).await;
    assert!(d.result.is_ok());
    assert_eq!(d.trace.rule, Some(0));
    let user = jwt(json!({"sub": "bob", "role": "user"}));
    assert_eq!(
        e.denial(&get("/api/admin/status").bearer(&user)).await,
        closed
    );
}

// ---- several instances: issuers, retired instances -------------------------------------------

#[tokio::test]
async fn tokens_go_to_the_instance_of_their_issuer_else_to_those_naming_none() {
    let (a, b, c, d) = (
        idp().issuer("https://a.test"),
        idp().issuer("https://b.test"),
        idp().rejecting(),
        idp(),
    );
    let calls = [&a, &b, &c, &d].map(|i| i.calls.clone());
    let counts = || calls.each_ref().map(|c| c.authenticated());
    let e = env(
        "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: test }\n  - { name: b, plugin: test }\n  - { name: c, plugin: test }\n  - { name: d, plugin: test }\n",
        vec![a, b, c, d],
    );
    let to_b = jwt(json!({"sub": "amy", "iss": "https://b.test"}));
    let u = e.user(&get("/api/x").bearer(&to_b)).await;
    assert_eq!(u.provider, "b");
    assert_eq!(u.issuer(), Some("https://b.test"));
    assert_eq!(counts(), [0, 1, 0, 0]);
    // An issuer nobody names, or none: the instances naming no issuer, in order.
    for token in [
        jwt(json!({"sub": "amy", "iss": "https://elsewhere.test"})),
        jwt(json!({"sub": "amy"})),
    ] {
        let d = e.ask(&get("/api/x").bearer(&token)).await;
        assert_eq!(d.result.unwrap().unwrap().provider, "d");
        assert_eq!(d.trace.provider.as_deref(), Some("d"));
    }
    assert_eq!(counts(), [0, 1, 2, 2]);
}

#[tokio::test]
async fn an_idp_that_cannot_be_asked_outweighs_one_that_said_no() {
    let e = env(
        "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: c, plugin: test }\n  - { name: d, plugin: test }\n",
        vec![idp(), idp().rejecting()],
    );
    let d = e
        .ask(&get("/api/x").bearer(&jwt(json!({"sub": "amy", "fail": "unavailable"}))))
        .await;
    assert_eq!(
        d.result.unwrap_err(),
        unavailable("provider c: identity provider down")
    );
    assert_eq!(d.trace.provider.as_deref(), Some("c"));
    // Both said no: the last one's reason.
    let d = e.ask(&get("/api/x").bearer("not-a-jwt")).await;
    assert_eq!(
        d.result.unwrap_err(),
        invalid("provider d rejected the token")
    );
    assert_eq!(d.trace.provider.as_deref(), Some("d"));
}

#[tokio::test]
async fn a_token_of_an_issuer_no_instance_names_is_invalid() {
    let e = env(
        "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: test }\n  - { name: b, plugin: test }\n",
        vec![idp().issuer("https://a.test"), idp().issuer("https://b.test")],
    );
    for token in [
        jwt(json!({"sub": "amy", "iss": "https://elsewhere.test"})),
        "not-a-jwt".to_string(),
    ] {
        assert_eq!(
            e.denial(&get("/api/x").bearer(&token)).await,
            invalid("no provider accepts this token's issuer")
        );
    }
}

#[tokio::test]
async fn an_instance_cannot_vouch_for_an_issuer_it_did_not_declare() {
    // Alone, the instance is asked about every token; the user it returns names another issuer.
    let e = env(&one(""), vec![idp().issuer("https://a.test")]);
    let other = jwt(json!({"sub": "amy", "iss": "https://other.test"}));
    assert_eq!(
        e.denial(&get("/api/x").bearer(&other)).await,
        invalid("provider main vouched for an issuer it does not declare")
    );
    let none = jwt(json!({"sub": "amy"}));
    assert!(e.ask(&get("/api/x").bearer(&none)).await.result.is_ok());
}

#[tokio::test]
async fn a_route_naming_providers_refuses_the_others_tokens() {
    let (a, b) = (
        idp().issuer("https://a.test"),
        idp().issuer("https://b.test"),
    );
    let a_calls = a.calls.clone();
    let e = env(
        "version: 1\nserver: { port: 1 }\nproviders:\n  - { name: a, plugin: test }\n  - { name: b, plugin: test }\nroutes:\n  - { path: /orders/*, providers: [b], upstream: \"http://up\" }\n",
        vec![a, b],
    );
    let to_a = jwt(json!({"sub": "amy", "iss": "https://a.test"}));
    assert_eq!(
        e.denial(&get("/orders/1").bearer(&to_a)).await,
        invalid("this route does not accept tokens from that provider")
    );
    assert_eq!(a_calls.authenticated(), 0);
    let to_b = jwt(json!({"sub": "amy", "iss": "https://b.test"}));
    assert_eq!(e.user(&get("/orders/1").bearer(&to_b)).await.provider, "b");
}

fn retired(name: &str, issuers: &[&str]) -> RetiredInstance {
    RetiredInstance {
        name: name.into(),
        plugin: "gone".into(),
        issuers: issuers.iter().map(|s| (*s).to_string()).collect(),
        reason: format!("plugin `gone` of provider {name} was deleted"),
        distrusted: None,
    }
}

#[tokio::test]
async fn a_token_for_a_retired_instance_is_unavailable() {
    // Only a retired instance: every token is its.
    let mut e = env("version: 1\nserver: { port: 1 }\n", vec![]);
    e.retired.push(retired("old", &[]));
    let d = e.ask(&get("/api/x").bearer("any-token")).await;
    assert_eq!(
        d.result.unwrap_err(),
        unavailable("plugin `gone` of provider old was deleted")
    );
    assert_eq!(d.trace.provider.as_deref(), Some("old"));
    // Nothing at all: our side's fault too.
    let e = env("version: 1\nserver: { port: 1 }\n", vec![]);
    assert_eq!(
        e.denial(&get("/api/x").bearer("any-token")).await,
        unavailable("no identity provider is configured")
    );
    // Beside a live instance: a token of the retired one's issuer is unavailable, the live
    // instance's tokens still pass.
    let mut e = env(&one(""), vec![idp().issuer("https://a.test")]);
    e.retired.push(retired("old", &["https://b.test"]));
    assert_eq!(
        e.denial(&get("/api/x").bearer(&jwt(json!({"sub": "amy", "iss": "https://b.test"}))))
            .await,
        unavailable("plugin `gone` of provider old was deleted")
    );
    let to_a = jwt(json!({"sub": "amy", "iss": "https://a.test"}));
    assert_eq!(e.user(&get("/api/x").bearer(&to_a)).await.provider, "main");
}

#[tokio::test]
async fn a_retired_instance_answers_for_a_token_the_live_ones_refused() {
    // The live instance names no issuer, so it is asked; when it says no, the retired instance
    // that named the token's issuer could have vouched: unavailable, not invalid.
    let mut e = env(&one(""), vec![idp().rejecting()]);
    e.retired.push(retired("old", &["https://b.test"]));
    let d = e
        .ask(&get("/api/x").bearer(&jwt(json!({"sub": "amy", "iss": "https://b.test"}))))
        .await;
    assert_eq!(
        d.result.unwrap_err(),
        unavailable("plugin `gone` of provider old was deleted")
    );
    assert_eq!(d.trace.provider.as_deref(), Some("old"));
}

// ---- authorize: the YAML override, the cache -------------------------------------------------

#[tokio::test]
async fn a_yaml_authorize_replaces_the_plugins() {
    let main = idp();
    let calls = main.calls.clone();
    let e = env(
        &one("").replace(
            "{ name: main, plugin: test }",
            "{ name: main, plugin: test, authorize: \"user.role == 'admin'\" }",
        ),
        vec![main],
    );
    // The plugin would refuse; the override allows.
    let admin = jwt(json!({"sub": "amy", "role": "admin", "authorize": "deny"}));
    assert!(e.ask(&get("/api/x").bearer(&admin)).await.result.is_ok());
    let refused = forbidden("provider main did not authorize the user");
    let user = jwt(json!({"sub": "bob", "role": "user"}));
    assert_eq!(e.denial(&get("/api/x").bearer(&user)).await, refused);
    // An expression that cannot be evaluated refuses.
    let no_role = jwt(json!({"sub": "carl"}));
    assert_eq!(e.denial(&get("/api/x").bearer(&no_role)).await, refused);
    assert_eq!(calls.authorized(), 0);
}

#[tokio::test]
async fn the_plugins_answers_are_cached_per_subject_and_organization() {
    let mut main = idp();
    main.by_subject = true;
    let calls = main.calls.clone();
    let e = env(&one(""), vec![main]);
    let ask = |claims: Value| get("/api/x").bearer(&jwt(claims));
    for (claims, asked) in [
        (json!({"sub": "amy"}), 1),
        (json!({"sub": "amy"}), 1),
        (json!({"sub": "amy", "org_id": "org_a"}), 2),
        (json!({"sub": "amy", "org_id": "org_a"}), 2),
        (json!({"sub": "amy", "org_id": "org_b"}), 3),
        // Clerk's `o.id` names the same organization as `org_id`.
        (json!({"sub": "amy", "o": {"id": "org_a"}}), 3),
        (json!({"sub": "bob"}), 4),
        // No subject: asked every time.
        (json!({"name": "anon"}), 5),
        (json!({"name": "anon"}), 6),
    ] {
        assert!(e.ask(&ask(claims.clone())).await.result.is_ok(), "{claims}");
        assert_eq!(calls.authorized(), asked, "{claims}");
    }
    // A refusal is an answer and is kept; an error is not.
    let carl = json!({"sub": "carl", "authorize": "deny"});
    for _ in 0..2 {
        assert_eq!(
            e.denial(&ask(carl.clone())).await,
            forbidden("provider main did not authorize the user")
        );
    }
    assert_eq!(calls.authorized(), 7);
    let dan = json!({"sub": "dan", "authorize": "unavailable"});
    for _ in 0..2 {
        assert!(matches!(
            e.denial(&ask(dan.clone())).await,
            Denial::Unavailable(_)
        ));
    }
    assert_eq!(calls.authorized(), 9);
}

#[tokio::test]
async fn the_authorization_cache_follows_the_config() {
    let amy = || get("/api/x").bearer(&jwt(json!({"sub": "amy"})));
    // A plugin that does not declare subject-only answers: asked every time by default...
    let main = idp();
    let calls = main.calls.clone();
    let e = env(&one(""), vec![main]);
    e.ask(&amy()).await;
    e.ask(&amy()).await;
    assert_eq!(calls.authorized(), 2);
    // ...unless the operator sets a time.
    let main = idp();
    let calls = main.calls.clone();
    let e = env(
        &one("").replace("plugin: test }", "plugin: test, authorization_cache: 10s }"),
        vec![main],
    );
    e.ask(&amy()).await;
    e.ask(&amy()).await;
    assert_eq!(calls.authorized(), 1);
    // `0` turns it off for one that does declare them.
    let mut main = idp();
    main.by_subject = true;
    let calls = main.calls.clone();
    let e = env(
        &one("").replace("plugin: test }", "plugin: test, authorization_cache: 0 }"),
        vec![main],
    );
    e.ask(&amy()).await;
    e.ask(&amy()).await;
    assert_eq!(calls.authorized(), 2);
}

// ---- where the token comes from --------------------------------------------------------------

#[tokio::test]
async fn the_token_is_read_from_the_configured_header_query_or_cookie() {
    let main = idp();
    let calls = main.calls.clone();
    let e = env(
        &one("auth:\n  token: { header: X-Token, query: access_token, cookie: session }\n"),
        vec![main],
    );
    let t = jwt(json!({"sub": "amy"}));
    for r in [
        get("/api/x").header("x-token", &format!("Bearer {t}")),
        get("/api/x").header("x-token", &format!("bearer {t}")),
        get("/api/x").query(&format!("a=1&access_token={t}")),
        get("/api/x").header("cookie", &format!("theme=dark; session={t}")),
    ] {
        assert_eq!(e.user(&r).await.subject(), Some("amy"));
    }
    // Not the default header once another is configured.
    assert_eq!(e.denial(&get("/api/x").bearer(&t)).await, Denial::NoToken);
    // The header comes first.
    assert_eq!(
        e.denial(
            &get("/api/x")
                .header("x-token", "Bearer not-a-jwt")
                .query(&format!("access_token={t}"))
        )
        .await,
        invalid("provider main rejected the token")
    );
    // The plugin gets the token as an argument, never the headers that carry one.
    let r = get("/api/x")
        .header("cookie", &format!("session={t}"))
        .header("x-request-id", "r1");
    e.user(&r).await;
    assert_eq!(*calls.headers.lock().unwrap(), ["x-request-id"]);
}

#[tokio::test]
async fn query_and_cookie_tokens_are_read_only_when_configured() {
    let e = env(&one(""), vec![idp()]);
    let t = jwt(json!({"sub": "amy"}));
    for r in [
        get("/api/x").query(&format!("access_token={t}")),
        get("/api/x").header("cookie", &format!("session={t}")),
    ] {
        assert_eq!(e.denial(&r).await, Denial::NoToken);
    }
    assert_eq!(
        e.user(&get("/api/x").bearer(&t)).await.subject(),
        Some("amy")
    );
}
