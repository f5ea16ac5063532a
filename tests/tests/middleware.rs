#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Request middleware (plugin ABI 1.2) end to end: the real binary with the real `mw-probe`,
//! `ratelimit` and `header-policy` libraries, over real HTTP to a recording upstream (and behind a
//! real nginx for forward auth). Which instances run and in what order, public requests, denials,
//! header changes the upstream and the client see, failing closed, the rate limiter, forward
//! auth, explain as a dry run, metrics and status, `plugin inspect`, and `check`/reload refusing
//! a broken middleware config with key paths.
//!
//! Reloads under load and swaps of middleware libraries are in `middleware_reload.rs`.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use portcullis_tests::{echo::Echo, proxies::Proxy, *};
use serde_json::{json, Value};

fn probe() -> PathBuf {
    plugin("portcullis_test_mw_probe")
}

fn ratelimit() -> PathBuf {
    plugin("portcullis_plugin_ratelimit")
}

fn header_policy() -> PathBuf {
    plugin("portcullis_plugin_header_policy")
}

/// Rules that open the admin API to `role: admin` only, and every other path to any user.
const RULES: &str = "  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - allow: true\n";

/// [`jwt_config`] whose `auth:` holds `auth` (keys indented two spaces) and [`RULES`], followed
/// by `tail` (top-level `middleware:`, `routes:`, `gateway:` sections).
fn config(auth: &str, tail: &str) -> String {
    jwt_config(&format!("auth:\n{auth}{RULES}")) + tail
}

/// A token for `sub` with `extra` claims, valid for [`jwt_config`].
fn token(sub: &str, extra: Value) -> String {
    hs256(SECRET, good_claims(sub, extra))
}

/// A token the admin API lets in.
fn admin() -> String {
    token("root", json!({"role": "admin"}))
}

/// The line of `out` that names `needle` (a panic showing `out` when none does).
fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}` in:\n{out}"))
}

/// One answer: status, headers and the body as JSON (`null` when it is not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    /// The one value of header `name` (`None` when absent).
    fn header(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} repeated: {all:?}");
        all.into_iter().next()
    }

    /// Every value of header `name`, in order.
    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

/// `method url`, with a bearer `token` and extra `headers`.
async fn send(method: &str, url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let mut r = client().request(method.parse().unwrap(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> Answer {
    send("GET", &s.url(path), token, &[]).await
}

/// The request headers the upstream recorded for its `n`-th request (an object, name → value;
/// repeated headers joined with ` | `).
fn seen_headers(up: &Echo, n: usize) -> Value {
    let seen = up.seen();
    assert!(n < seen.len(), "the upstream saw {} requests", seen.len());
    seen[n]["headers"].clone()
}

// ---------------------------------------------------------------------------------------------
// 1. Which instances run, in what order

#[tokio::test]
async fn path_scoped_instances_run_in_config_order_then_the_routes_once_each_scoped_by_method() {
    let up = Echo::start().await;
    let u = up.url();
    // a and b run on their own on /svc/* (in this order); c only where a route names it; d on
    // /svc/* for POST only; e where a route names it, for POST only. The route names c, then a
    // (which already ran: it must not run twice), then e.
    // a, c and e answer at once (`on_request_now`); b waits a moment (its `on_request` future)
    // and d answers from its future without waiting: the order holds across both ways of
    // answering, before and after one that waits.
    let tail = format!(
        "middleware:\n\
  - {{ name: a, plugin: mw-probe, config: {{ tag: a, now: true }}, path: /svc/* }}\n\
  - {{ name: b, plugin: mw-probe, config: {{ tag: b, mode: slow, delay_ms: 1, now: true }}, path: [/svc/*, /elsewhere/*] }}\n\
  - {{ name: c, plugin: mw-probe, config: {{ tag: c, now: true }} }}\n\
  - {{ name: d, plugin: mw-probe, config: {{ tag: d }}, path: /svc/*, methods: [POST] }}\n\
  - {{ name: e, plugin: mw-probe, config: {{ tag: e, now: true }}, methods: POST }}\n\
routes:\n\
  - {{ path: /svc/*, upstream: \"{u}\", middleware: [c, a, e] }}\n\
  - {{ path: /plain/*, upstream: \"{u}\" }}\n"
    );
    let auth = "  protected: [\"/api/*\", \"/elsewhere/*\"]\n";
    let s = Server::start(&config(auth, &tail), &[jwt_plugin(), probe()]);
    let ann = token("ann", json!({}));

    let r = get(&s, "/svc/orders", Some(&ann)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 0);
    assert_eq!(h["x-mw-order"], "a,b,c", "{h}");
    // What each instance was told: the user and the provider instance that vouched.
    assert_eq!(h["x-mw-user"], "ann", "{h}");
    assert_eq!(h["x-mw-provider"], "main", "{h}");
    // Each instance that ran added its response header, in the order they ran.
    assert_eq!(r.all("x-mw-ran"), ["a", "b", "c"]);
    assert_eq!(r.header("x-upstream").as_deref(), Some("echo"));

    // POST: the POST-only instances join: d with the path-scoped ones, e with the route's.
    let r = send("POST", &s.url("/svc/orders"), Some(&ann), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(seen_headers(&up, 1)["x-mw-order"], "a,b,d,c,e");
    assert_eq!(r.all("x-mw-ran"), ["a", "b", "d", "c", "e"]);

    // A route no instance's path matches and that names none: nothing runs.
    let r = get(&s, "/plain/x", Some(&ann)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 2);
    assert_eq!(up.seen()[2]["path"], "/plain/x");
    for name in ["x-mw-order", "x-mw-user", "x-mw-provider"] {
        assert!(h.get(name).is_none(), "{name} reached the upstream: {h}");
    }
    assert!(r.all("x-mw-ran").is_empty(), "{:?}", r.headers);

    // A protected path only b matches, served by no route (the server's 404): b alone runs.
    let r = get(&s, "/elsewhere/x", Some(&ann)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.all("x-mw-ran"), ["b"]);
    assert_eq!(
        up.seen().len(),
        3,
        "only the three proxied requests reached the upstream"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Requests that need no user

#[tokio::test]
async fn on_requests_without_a_user_only_public_instances_run() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: private, plugin: mw-probe, config: {{ tag: private }}, path: [/hook/*, /api/*] }}\n\
  - {{ name: open, plugin: mw-probe, config: {{ tag: open }}, path: [/hook/*, /api/*], public: true }}\n\
  - {{ name: named, plugin: mw-probe, config: {{ tag: named }} }}\n\
routes:\n\
  - {{ path: /hook/*, requires_auth: false, upstream: \"{u}\", middleware: [named] }}\n\
  - {{ path: /api/orders, upstream: \"{u}\", middleware: [named] }}\n"
    );
    let auth = "  protected: [\"/api/*\"]\n  public: [\"/api/open/*\"]\n";
    let s = Server::start(&config(auth, &tail), &[jwt_plugin(), probe()]);

    // A `requires_auth: false` route: only the public instance runs, and it is told there is no
    // user and no provider. The instance the route names is not public: it does not run.
    let r = get(&s, "/hook/github", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 0);
    assert_eq!(h["x-mw-order"], "open", "{h}");
    assert_eq!(h["x-mw-user"], "-", "{h}");
    assert_eq!(h["x-mw-provider"], "-", "{h}");
    assert_eq!(r.all("x-mw-ran"), ["open"]);

    // An `auth.public` path (no route: the server's 404): the public instance only.
    let r = get(&s, "/api/open/thing", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.all("x-mw-ran"), ["open"]);

    // The same instances on a request with a user: all of them, the route's last.
    let ann = token("ann", json!({}));
    let r = get(&s, "/api/orders", Some(&ann)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 1);
    assert_eq!(h["x-mw-order"], "private,open,named", "{h}");
    assert_eq!(h["x-mw-user"], "ann", "{h}");
    assert_eq!(r.all("x-mw-ran"), ["private", "open", "named"]);
}

// ---------------------------------------------------------------------------------------------
// 3. A middleware that answers instead of the route

#[tokio::test]
async fn a_denying_instance_answers_and_nothing_after_it_runs_or_reaches_the_upstream() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: first, plugin: mw-probe, config: {{ tag: first, on_response: true }}, path: /svc/* }}\n\
  - {{ name: gate, plugin: mw-probe, config: {{ tag: gate, mode: deny, status: 451 }}, path: [/svc/blocked/*, /api/auth/me] }}\n\
  - {{ name: later, plugin: mw-probe, config: {{ tag: later, on_response: true }}, path: /svc/* }}\n\
routes:\n\
  - {{ path: /svc/*, upstream: \"{u}\" }}\n"
    );
    let s = Server::start(&config("", &tail), &[jwt_plugin(), probe()]);
    let ann = token("ann", json!({}));

    // A built-in route: the middleware's status, body and answer header.
    let r = get(&s, "/api/auth/me", Some(&ann)).await;
    assert_eq!(r.status, 451, "{}", r.body);
    assert_eq!(r.header("x-mw-denied-by").as_deref(), Some("gate"));
    assert_eq!(r.body, json!({"error": "denied by gate"}));

    // A proxied route: denied before the upstream; the instance after the denial never ran
    // (neither its request step nor its response hook); the one before did.
    let r = get(&s, "/svc/blocked/x", Some(&ann)).await;
    assert_eq!(r.status, 451, "{}", r.body);
    assert_eq!(r.header("x-mw-denied-by").as_deref(), Some("gate"));
    assert_eq!(r.all("x-mw-ran"), ["first"]);
    assert_eq!(r.header("x-mw-response").as_deref(), Some("first"));
    assert!(up.seen().is_empty(), "{:?}", up.seen());

    // Without a token the decision refuses first: 401, and the middleware never runs.
    let r = get(&s, "/svc/blocked/x", None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("x-mw-denied-by").is_none());
    assert!(r.all("x-mw-ran").is_empty());

    // Control: next to it, the same chain lets a request through, both hooks in reverse order.
    let r = get(&s, "/svc/open", Some(&ann)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.all("x-mw-ran"), ["first", "later"]);
    assert_eq!(r.header("x-mw-response").as_deref(), Some("later,first"));
    assert_eq!(up.seen().len(), 1);
    assert_eq!(seen_headers(&up, 0)["x-mw-order"], "first,later");
}

// ---------------------------------------------------------------------------------------------
// 4. Header changes

#[tokio::test]
async fn header_changes_reach_the_upstream_and_the_client_and_a_client_cannot_supply_them() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        r#"middleware:
  - name: probe
    plugin: mw-probe
    config: {{ tag: p, on_response: true }}
    path: /svc/*
  - name: policy
    plugin: header-policy
    path: /svc/*
    config:
      set: {{ x-tenant: "{{org_id}}", x-plan: "tier-{{plan.tier}}", x-via: "{{provider}}" }}
      remove: [x-debug]
      tenant: {{ claim: org_id, header: x-pool, values: {{ org_1: eu-1 }}, default: shared }}
      response: {{ x-frame-options: DENY }}
routes:
  - {{ path: /svc/*, upstream: "{u}" }}
  - {{ path: /plain/*, upstream: "{u}" }}
"#
    );
    let s = Server::start(
        &config("", &tail),
        &[jwt_plugin(), probe(), header_policy()],
    );
    let ann = token("ann", json!({"org_id": "org_1", "plan": {"tier": "gold"}}));
    let spoof = [
        ("x-tenant", "org_evil"),
        ("x-debug", "1"),
        ("x-pool", "vip"),
    ];

    let r = send("GET", &s.url("/svc/a"), Some(&ann), &spoof).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 0);
    // Set from the claims (a nested one, the provider), replacing the client's own value.
    assert_eq!(h["x-tenant"], "org_1", "{h}");
    assert_eq!(h["x-plan"], "tier-gold", "{h}");
    assert_eq!(h["x-via"], "main", "{h}");
    assert_eq!(h["x-pool"], "eu-1", "{h}");
    assert_eq!(h["x-mw-user"], "ann", "{h}");
    // Removed before the upstream.
    assert!(h.get("x-debug").is_none(), "{h}");
    // Response headers: the policy's fixed one, the probe's, and the probe's response hook.
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(r.header("x-mw-ran").as_deref(), Some("p"));
    assert_eq!(r.header("x-mw-response").as_deref(), Some("p"));

    // Control: a route without middleware passes the client's headers on as they are.
    let r = send("GET", &s.url("/plain/a"), Some(&ann), &spoof).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 1);
    assert_eq!(h["x-tenant"], "org_evil", "{h}");
    assert_eq!(h["x-debug"], "1", "{h}");
    assert!(r.header("x-frame-options").is_none());

    // A tenant not listed gets the default.
    let bob = token("bob", json!({"org_id": "org_9", "plan": {"tier": "free"}}));
    let r = send("GET", &s.url("/svc/b"), Some(&bob), &spoof).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 2);
    assert_eq!(h["x-pool"], "shared", "{h}");
    assert_eq!(h["x-tenant"], "org_9", "{h}");

    // A user without a claim a `set` template names: 403 naming it, nothing reaches the
    // upstream; the policy's response header is on the refusal too.
    let before = up.seen().len();
    let cid = token("cid", json!({"plan": {"tier": "gold"}}));
    let r = send("GET", &s.url("/svc/c"), Some(&cid), &spoof).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("org_id"),
        "{}",
        r.body
    );
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(up.seen().len(), before, "{:?}", up.seen());
}

// ---------------------------------------------------------------------------------------------
// 5. Failing closed

#[tokio::test]
async fn a_panicking_failing_or_hanging_instance_fails_the_request_closed_and_the_server_lives() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: boom, plugin: mw-probe, config: {{ tag: boom, mode: panic }}, path: /fail/panic/* }}\n\
  - {{ name: down, plugin: mw-probe, config: {{ tag: down, mode: error }}, path: /fail/error/* }}\n\
  - {{ name: boom-now, plugin: mw-probe, config: {{ tag: boom-now, mode: panic, now: true }}, path: /fail/panic-now/* }}\n\
  - {{ name: down-now, plugin: mw-probe, config: {{ tag: down-now, mode: error, now: true }}, path: /fail/error-now/* }}\n\
  - {{ name: stuck, plugin: mw-probe, config: {{ tag: stuck, mode: hang }}, path: /fail/hang/* }}\n\
  - {{ name: fine, plugin: mw-probe, config: {{ tag: fine }}, path: /ok/* }}\n\
routes:\n\
  - {{ path: /fail/*, upstream: \"{u}\" }}\n\
  - {{ path: /ok/*, upstream: \"{u}\" }}\n"
    );
    // Long enough for the jwt provider's calls on a loaded machine (the limit is theirs too).
    let cfg = config("", &tail).replace("  port: 0\n", "  port: 0\n  plugin_timeout: 2s\n");
    assert!(cfg.contains("plugin_timeout: 2s"), "{cfg}");
    let mut s = Server::start(&cfg, &[jwt_plugin(), probe()]);
    let ann = token("ann", json!({}));

    let works = |n: usize| {
        let (s, ann, up) = (&s, &ann, &up);
        async move {
            let r = get(s, &format!("/ok/{n}"), Some(ann)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.header("x-mw-ran").as_deref(), Some("fine"));
            assert_eq!(up.seen().last().unwrap()["path"], format!("/ok/{n}"));
        }
    };

    // A panic in the plugin: 500.
    let r = get(&s, "/fail/panic/x", Some(&ann)).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.body, json!({"error": "Internal Server Error"}));
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    works(1).await;

    // An `unavailable` error: 503.
    let r = get(&s, "/fail/error/x", Some(&ann)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body, json!({"error": "Service Unavailable"}));
    assert_eq!(up.seen().len(), 1);
    works(2).await;

    // A call that never ends: 503 once `server.plugin_timeout` (2 s) has passed, not before and
    // not much later.
    let started = Instant::now();
    let r = get(&s, "/fail/hang/x", Some(&ann)).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(took >= Duration::from_millis(1950), "{took:?}");
    assert!(took < Duration::from_secs(17), "{took:?}");
    assert_eq!(up.seen().len(), 2);
    works(3).await;

    // The same faults from the answer given at once (`on_request_now`, no future): a panic is
    // 500 and an `unavailable` error 503 there too.
    let r = get(&s, "/fail/panic-now/x", Some(&ann)).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.body, json!({"error": "Internal Server Error"}));
    let r = get(&s, "/fail/error-now/x", Some(&ann)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(up.seen().len(), 3, "{:?}", up.seen());
    works(4).await;

    // The same instances again: they still fail closed (a panic did not leave one let through).
    assert_eq!(get(&s, "/fail/panic/y", Some(&ann)).await.status, 500);
    assert_eq!(get(&s, "/fail/error/y", Some(&ann)).await.status, 503);
    assert_eq!(get(&s, "/fail/panic-now/y", Some(&ann)).await.status, 500);
    assert_eq!(up.seen().len(), 4, "{:?}", up.seen());
    assert!(s.alive(), "{}", s.log());
    assert!(
        eventually(Duration::from_secs(10), || s
            .log()
            .contains("middleware failed"))
        .await,
        "the refusal is logged: {}",
        s.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The rate limiter

#[tokio::test]
async fn the_rate_limiter_lets_a_burst_through_then_answers_429_per_subject_or_per_client() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: per-user, plugin: ratelimit, config: {{ rate: 0.001, burst: 3 }}, path: /user/* }}\n\
  - {{ name: per-client, plugin: ratelimit, config: {{ rate: 0.001, burst: 2, key: client }}, path: /client/* }}\n\
routes:\n\
  - {{ path: /user/*, upstream: \"{u}\" }}\n\
  - {{ path: /client/*, upstream: \"{u}\" }}\n"
    );
    let s = Server::start(&config("", &tail), &[jwt_plugin(), ratelimit()]);
    let (ann, bob) = (token("ann", json!({})), token("bob", json!({})));

    // Per subject: ann's burst of 3, then 429 with the time until a token is back.
    for left in ["2", "1", "0"] {
        let r = get(&s, "/user/x", Some(&ann)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(r.header("ratelimit-remaining").as_deref(), Some(left));
    }
    let r = get(&s, "/user/x", Some(&ann)).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body, json!({"error": "Too Many Requests"}));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(
        up.seen().len(),
        3,
        "the refused request reached the upstream"
    );
    // Another subject has a bucket of its own.
    let r = get(&s, "/user/x", Some(&bob)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("2"));
    assert_eq!(get(&s, "/user/x", Some(&ann)).await.status, 429);

    // Per client address: ann and bob come from the same address and share one bucket.
    assert_eq!(get(&s, "/client/x", Some(&ann)).await.status, 200);
    assert_eq!(get(&s, "/client/x", Some(&bob)).await.status, 200);
    let r = get(&s, "/client/x", Some(&bob)).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(get(&s, "/client/x", Some(&ann)).await.status, 429);
    assert_eq!(up.seen().len(), 6);
}

// ---------------------------------------------------------------------------------------------
// 7. Forward auth

/// The forward-auth config: `/api/*` protected, a tagging instance on all of it, a denying one
/// (403, a status nginx passes on) on `/api/blocked/*`, and one that answers 200 itself on
/// `/api/answered/*`.
fn forward_auth_config() -> String {
    let tail = "gateway:\n  forward_auth: nginx\n\
middleware:\n\
  - { name: tagger, plugin: mw-probe, config: { tag: fa }, path: /api/* }\n\
  - { name: blocker, plugin: mw-probe, config: { tag: blocker, mode: deny, status: 403 }, path: /api/blocked/* }\n\
  - { name: answerer, plugin: mw-probe, config: { tag: answerer, mode: deny, status: 200 }, path: /api/answered/* }\n";
    config("  protected: [\"/api/*\"]\n", tail)
}

#[tokio::test]
async fn forward_auth_answers_with_the_middlewares_headers_or_its_denial() {
    let s = Server::start(&forward_auth_config(), &[jwt_plugin(), probe()]);
    let nina = token("nina", json!({}));
    let ask = |uri: &str| {
        let url = s.url("/forward-auth");
        let nina = nina.clone();
        let uri = uri.to_string();
        async move {
            send(
                "GET",
                &url,
                Some(&nina),
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", &uri),
                    ("x-forwarded-host", "app.test"),
                ],
            )
            .await
        }
    };
    // Allowed: the 200 carries the request headers the middleware set, with the identity.
    let r = ask("/api/orders?page=2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-mw-order").as_deref(), Some("fa"));
    assert_eq!(r.header("x-mw-user").as_deref(), Some("nina"));
    assert_eq!(r.header("x-mw-provider").as_deref(), Some("main"));
    assert_eq!(r.header("x-user-id").as_deref(), Some("nina"));
    // Denied by the middleware: its status and answer header.
    let r = ask("/api/blocked/x").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.header("x-mw-denied-by").as_deref(), Some("blocker"));
    assert!(r.header("x-user-id").is_none());
    // A middleware's own 200 answer cannot be a verdict (a proxy would read it as "allowed" and
    // send the request on): refused, fail closed.
    let r = ask("/api/answered/x").await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.header("x-user-id").is_none());
    assert!(r.header("x-mw-order").is_none());
    // Not for the middleware: a path none covers gets a 200 without their headers.
    let r = ask("/elsewhere").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("x-mw-order").is_none());
}

#[tokio::test]
async fn behind_nginx_a_middleware_denial_stops_the_request_and_its_headers_are_copied() {
    let up = Echo::start().await;
    let s = Server::start(&forward_auth_config(), &[jwt_plugin(), probe()]);
    let nginx = Proxy::nginx_copying(
        &format!("http://{}", s.addr),
        &up.url(),
        &["x-mw-order", "x-mw-user"],
    )
    .await;
    let nina = token("nina", json!({}));

    let r = send("GET", &nginx.url("/api/orders"), Some(&nina), &[]).await;
    assert_eq!(r.status, 200, "{} {}", r.body, nginx.log());
    assert_eq!(r.body["path"], "/api/orders");
    let h = &r.body["headers"];
    assert_eq!(h["x-user-id"], "nina", "{h}");
    assert_eq!(h["x-mw-order"], "fa", "{h}");
    assert_eq!(h["x-mw-user"], "nina", "{h}");

    let before = up.seen().len();
    let r = send("GET", &nginx.url("/api/blocked/x"), Some(&nina), &[]).await;
    assert_eq!(r.status, 403, "{}", nginx.log());
    assert_eq!(up.seen().len(), before, "{:?}", up.seen());
    // A middleware that answers 200 itself does not let the request through nginx.
    let r = send("GET", &nginx.url("/api/answered/x"), Some(&nina), &[]).await;
    assert_eq!(r.status, 500, "{}", nginx.log());
    assert_eq!(up.seen().len(), before, "{:?}", up.seen());
    // Without a token: the decision's 401, before any middleware.
    let r = send("GET", &nginx.url("/api/blocked/x"), None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.seen().len(), before);
    // Allowed again afterwards.
    let r = send("GET", &nginx.url("/api/other"), Some(&nina), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.seen().len(), before + 1);
}

#[tokio::test]
async fn no_middleware_header_speaks_for_the_user_in_a_forward_auth_verdict() {
    let up = Echo::start().await;
    let u = up.url();
    // A policy that writes identity headers: as request headers onward (one a user without an
    // `email` claim would otherwise not have), and as response headers in two spellings.
    let tail = format!(
        r#"gateway:
  forward_auth: nginx
  identity_headers: {{ sub: X-User-Id, email: X-User-Email }}
middleware:
  - name: forger
    plugin: header-policy
    path: [/api/*, /pub/*]
    public: true
    config:
      set: {{ x-user-email: "{{nick}}", x-team: "team-{{nick}}" }}
      response: {{ x-user-id: mallory, x_user_email: eve@example.test, x-policy: "on" }}
routes:
  - {{ path: /api/svc/*, upstream: "{u}" }}
"#
    );
    let s = Server::start(
        &config("  protected: [\"/api/*\"]\n", &tail),
        &[jwt_plugin(), header_policy()],
    );
    let nina = token("nina", json!({"nick": "n"}));
    let ask = |uri: &str, token: Option<&str>| {
        let url = s.url("/forward-auth");
        let (uri, token) = (uri.to_string(), token.map(str::to_string));
        async move {
            send(
                "GET",
                &url,
                token.as_deref(),
                &[
                    ("x-original-method", "GET"),
                    ("x-original-uri", &uri),
                    ("x-forwarded-host", "app.test"),
                ],
            )
            .await
        }
    };
    let identity = |r: &Answer| {
        let mut names: Vec<String> = r
            .headers
            .keys()
            .map(|k| k.as_str().to_string())
            .filter(|k| k.replace('_', "-").starts_with("x-user-"))
            .collect();
        names.sort();
        names
    };

    // A user: the verdict's identity is Portcullis's alone; the policy's other headers pass.
    let r = ask("/api/orders", Some(&nina)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.all("x-user-id"), ["nina"]);
    assert_eq!(identity(&r), ["x-user-id"], "{:?}", r.headers);
    assert_eq!(r.header("x-team").as_deref(), Some("team-n"));
    assert_eq!(r.header("x-policy").as_deref(), Some("on"));

    // No user (a public path): no identity at all, whatever the middleware wrote.
    let r = ask("/pub/page", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(identity(&r).is_empty(), "{:?}", r.headers);
    assert_eq!(
        r.header("x-policy").as_deref(),
        Some("on"),
        "the policy ran"
    );

    // The same on a proxied route: the upstream gets the identity of the gate only.
    let r = get(&s, "/api/svc/x", Some(&nina)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = seen_headers(&up, 0);
    assert_eq!(h["x-user-id"], "nina", "{h}");
    assert!(h.get("x-user-email").is_none(), "{h}");
    assert_eq!(h["x-team"], "team-n", "{h}");
}

// ---------------------------------------------------------------------------------------------
// 8. Explain

#[tokio::test]
async fn explain_runs_middleware_as_a_dry_run_and_names_the_one_that_would_answer() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: limiter, plugin: ratelimit, config: {{ rate: 0.001, burst: 1 }}, path: /svc/limited/* }}\n\
  - {{ name: tagger, plugin: mw-probe, config: {{ tag: t }}, path: /svc/* }}\n\
  - {{ name: blocker, plugin: mw-probe, config: {{ tag: blocker, mode: deny, status: 451 }}, path: /svc/blocked/* }}\n\
routes:\n\
  - {{ path: /svc/*, upstream: \"{u}\" }}\n"
    );
    let s = Server::start(&config("", &tail), &[jwt_plugin(), probe(), ratelimit()]);
    let (ann, root) = (token("ann", json!({})), admin());
    let explain = |path: &str| {
        let body = json!({"method": "GET", "path": path, "token": ann});
        let (url, root) = (s.url("/api/admin/explain"), root.clone());
        async move {
            let r = client()
                .post(url)
                .bearer_auth(root)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };

    // Twice: the limiter (burst 1) would let it through both times — a dry run takes no token.
    for _ in 0..2 {
        let e = explain("/svc/limited/x").await;
        assert_eq!(e["decision"], "allow", "{e}");
        assert_eq!(e["status"], 200, "{e}");
        assert_eq!(
            e["middleware"],
            json!([
                {"name": "limiter", "outcome": "proceeded"},
                {"name": "tagger", "outcome": "proceeded"}
            ]),
            "{e}"
        );
        assert!(e.get("denied_by_middleware").is_none(), "{e}");
    }
    // Nothing was consumed or sent: the real request gets the one token, the next none.
    assert!(up.seen().is_empty());
    let r = get(&s, "/svc/limited/x", Some(&ann)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&s, "/svc/limited/x", Some(&ann)).await.status, 429);
    // Now explain says the limiter would answer.
    let e = explain("/svc/limited/x").await;
    assert_eq!(e["decision"], "deny", "{e}");
    assert_eq!(e["status"], 429, "{e}");
    assert_eq!(e["denied_by_middleware"], "limiter", "{e}");
    assert_eq!(
        e["middleware"],
        json!([{"name": "limiter", "outcome": "answered", "status": 429}]),
        "{e}"
    );

    // A denying instance: the steps up to it, its status, its name.
    let e = explain("/svc/blocked/x").await;
    assert_eq!(e["decision"], "deny", "{e}");
    assert_eq!(e["status"], 451, "{e}");
    assert_eq!(e["denied_by_middleware"], "blocker", "{e}");
    assert_eq!(
        e["middleware"],
        json!([
            {"name": "tagger", "outcome": "proceeded"},
            {"name": "blocker", "outcome": "answered", "status": 451}
        ]),
        "{e}"
    );
    assert!(e["reason"].as_str().unwrap().contains("blocker"), "{e}");
    // A path no instance covers has no middleware steps.
    let e = explain("/elsewhere").await;
    assert_eq!(e["decision"], "allow", "{e}");
    assert!(e.get("middleware").is_none(), "{e}");
    // Explain sent nothing upstream.
    assert_eq!(up.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. Metrics, status, inspect

/// The value of the one `portcullis_middleware_answers_total` series with these labels (0 when
/// there is none).
fn answers(metrics: &str, middleware: &str, code: u16, result: &str) -> f64 {
    let want = [
        format!("middleware=\"{middleware}\""),
        format!("code=\"{code}\""),
        format!("result=\"{result}\""),
    ];
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("portcullis_middleware_answers_total{"))
        .filter(|l| want.iter().all(|w| l.contains(w.as_str())))
        .collect();
    assert!(lines.len() <= 1, "{lines:?}");
    lines
        .first()
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_answers_and_failures_and_status_and_inspect_describe_the_middleware() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: limiter, plugin: ratelimit, config: {{ rate: 100, burst: 100 }}, path: /svc/* }}\n\
  - {{ name: blocker, plugin: mw-probe, config: {{ tag: b, mode: deny, status: 451 }}, path: /svc/blocked/* }}\n\
  - {{ name: crash, plugin: mw-probe, config: {{ tag: c, mode: error }}, path: /svc/crash/* }}\n\
  - {{ name: tagger, plugin: mw-probe, config: {{ tag: t, on_response: true }}, path: [/svc/*, /other], methods: [GET, POST], public: true }}\n\
  - {{ name: named, plugin: mw-probe, config: {{ tag: n }} }}\n\
routes:\n\
  - {{ path: /svc/*, upstream: \"{u}\", middleware: [named] }}\n"
    );
    let s = Server::start(
        &config("", &tail),
        &[jwt_plugin(), probe(), ratelimit(), header_policy()],
    );
    let ann = token("ann", json!({}));
    for _ in 0..2 {
        assert_eq!(get(&s, "/svc/blocked/x", Some(&ann)).await.status, 451);
    }
    assert_eq!(get(&s, "/svc/crash/x", Some(&ann)).await.status, 503);
    assert_eq!(get(&s, "/svc/fine", Some(&ann)).await.status, 200);

    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answers(&text, "blocker", 451, "answer"), 2.0, "{text}");
    assert_eq!(answers(&text, "crash", 503, "failure"), 1.0, "{text}");
    assert_eq!(answers(&text, "crash", 503, "answer"), 0.0, "{text}");
    // Instances that let everything through answered nothing.
    for quiet in ["limiter", "tagger", "named"] {
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("portcullis_middleware_answers_total{")
                    && l.contains(&format!("middleware=\"{quiet}\""))),
            "{quiet}: {text}"
        );
    }

    // Status: the instances in order, where they run, and each plugin's kinds.
    let st: Value = client()
        .get(s.url("/api/admin/status"))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mw = st["middleware"]
        .as_array()
        .unwrap_or_else(|| panic!("{st}"));
    let names: Vec<&str> = mw.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["limiter", "blocker", "crash", "tagger", "named"]);
    assert_eq!(mw[0]["plugin"], "ratelimit");
    assert_eq!(mw[0]["paths"], json!(["/svc/*"]));
    assert_eq!(mw[0]["public"], false);
    assert_eq!(mw[0]["on_response"], false);
    assert!(mw[0].get("methods").is_none(), "{}", mw[0]);
    assert!(
        mw[0]["plugin_hash"].as_str().unwrap().len() == 64,
        "{}",
        mw[0]
    );
    assert_eq!(mw[3]["plugin"], "mw-probe");
    assert_eq!(mw[3]["paths"], json!(["/svc/*", "/other"]));
    assert_eq!(mw[3]["methods"], json!(["GET", "POST"]));
    assert_eq!(mw[3]["public"], true);
    assert_eq!(mw[3]["on_response"], true);
    assert_eq!(mw[4]["paths"], json!([]), "only where a route names it");
    assert!(mw.iter().all(|m| m.get("retired").is_none()), "{st}");
    let plugins = st["plugins"].as_array().unwrap();
    let kinds = |file: &str| {
        let p = plugins
            .iter()
            .find(|p| p["file"].as_str().unwrap().ends_with(file))
            .unwrap_or_else(|| panic!("{file}: {st}"));
        (p["kinds"].clone(), p["middleware_name"].clone())
    };
    assert_eq!(
        kinds("libportcullis_plugin_ratelimit.so"),
        (json!(["middleware"]), json!("ratelimit"))
    );
    assert_eq!(
        kinds("libportcullis_plugin_header_policy.so"),
        (json!(["middleware"]), json!("header-policy"))
    );
    assert_eq!(
        kinds("libportcullis_test_mw_probe.so"),
        (json!(["middleware"]), json!("mw-probe"))
    );
    assert_eq!(
        kinds("libportcullis_plugin_jwt.so"),
        (json!(["provider"]), Value::Null)
    );

    // `plugin inspect`: the kinds and the middleware manifest with its config keys.
    let out = Command::new(binary())
        .args(["plugin", "inspect"])
        .arg(ratelimit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kinds"], json!(["middleware"]), "{v}");
    let m = &v["middleware_manifest"];
    assert_eq!(m["name"], "ratelimit", "{v}");
    let keys: Vec<&str> = m["config_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["rate", "burst", "key", "max_keys"], "{v}");
    let required = |name: &str| {
        m["config_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap()["required"]
            .clone()
    };
    assert_eq!(required("rate"), true);
    assert_eq!(required("key"), false);
    let out = Command::new(binary())
        .args(["plugin", "inspect"])
        .arg(jwt_plugin())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kinds"], json!(["provider"]), "{v}");
    assert!(v["middleware_manifest"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// 10. Broken middleware configs

/// `portcullis check` on `text` with the jwt and middleware plugins: success, and what it printed.
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for p in [jwt_plugin(), probe(), ratelimit()] {
        std::fs::copy(&p, plugins.join(p.file_name().unwrap())).unwrap();
    }
    let file = dir.path().join("portcullis.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg(&file)
        .env("PORTCULLIS_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A config with the `middleware:` entries `mw` (list items) and a route naming `named`.
fn with_middleware(mw: &str, named: &str) -> String {
    config(
        "",
        &format!(
            "middleware:\n{mw}routes:\n  - {{ path: /svc/*, upstream: \"http://127.0.0.1:9\", middleware: [{named}] }}\n"
        ),
    )
}

const GOOD_LIMITER: &str =
    "  - { name: limiter, plugin: ratelimit, config: { rate: 5, burst: 2 }, path: /svc/* }\n";

#[test]
fn check_names_the_key_path_of_each_broken_middleware_setting() {
    // Control: the good config passes, so each failure below is the one change's.
    let (ok, out) = check(&with_middleware(GOOD_LIMITER, "limiter"));
    assert!(ok, "{out}");

    // A `config:` the plugin refuses.
    let (ok, out) = check(&with_middleware(
        "  - { name: limiter, plugin: ratelimit, config: { rate: 0, burst: 2 }, path: /svc/* }\n",
        "limiter",
    ));
    assert!(!ok, "{out}");
    let line = line_with(&out, "middleware[0] (limiter)");
    assert!(line.contains("rate"), "{out}");

    // A route naming an instance that does not exist.
    let (ok, out) = check(&with_middleware(GOOD_LIMITER, "limitter"));
    assert!(!ok, "{out}");
    let line = line_with(&out, "routes[0].middleware[0]");
    assert!(line.contains("limitter"), "{out}");

    // A provider plugin used as middleware.
    let (ok, out) = check(&with_middleware(
        "  - { name: limiter, plugin: jwt, config: { secret: x }, path: /svc/* }\n",
        "limiter",
    ));
    assert!(!ok, "{out}");
    let line = line_with(&out, "middleware[0]");
    assert!(line.contains("provider plugin"), "{out}");
    assert!(line.contains("jwt"), "{out}");

    // A key a middleware entry does not have (`paths` for `path`).
    let (ok, out) = check(&with_middleware(
        "  - { name: limiter, plugin: ratelimit, config: { rate: 5, burst: 2 }, paths: /svc/* }\n",
        "limiter",
    ));
    assert!(!ok, "{out}");
    let line = line_with(&out, "middleware[0]");
    assert!(line.contains("paths"), "{out}");
}

#[tokio::test]
async fn a_reload_to_a_broken_middleware_config_is_refused_and_the_last_good_one_serves() {
    let up = Echo::start().await;
    let u = up.url();
    // The served config: a limiter and a tagger on /svc/*, a route naming the tagger.
    let cfg = |limiter: &str, named: &str| {
        config(
            "",
            &format!(
                "middleware:\n\
  - {{ name: limiter, {limiter}, path: /svc/* }}\n\
  - {{ name: tagger, plugin: mw-probe, config: {{ tag: t }} }}\n\
routes:\n\
  - {{ path: /svc/*, upstream: \"{u}\", middleware: [{named}] }}\n"
            ),
        )
    };
    let limiter = "plugin: ratelimit, config: { rate: 5, burst: 50 }";
    let s = Server::start_without_watch(
        &cfg(limiter, "tagger"),
        &[jwt_plugin(), probe(), ratelimit()],
    );
    let (ann, root) = (token("ann", json!({})), admin());
    let serves_the_good_config = || async {
        let r = get(&s, "/svc/x", Some(&ann)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("ratelimit-limit").as_deref(), Some("50"));
        assert_eq!(r.header("x-mw-ran").as_deref(), Some("t"));
    };
    serves_the_good_config().await;

    let broken = [
        (
            cfg(
                "plugin: ratelimit, config: { rate: 0, burst: 50 }",
                "tagger",
            ),
            ["middleware[0] (limiter)", "rate"],
        ),
        (cfg(limiter, "taggr"), ["routes[0].middleware[0]", "taggr"]),
        (
            cfg("plugin: jwt, config: { secret: x }", "tagger"),
            ["middleware[0]", "provider plugin"],
        ),
    ];
    for (text, wanted) in broken {
        std::fs::write(s.config_path(), &text).unwrap();
        let (status, body) = admin_reload(&s, &root).await;
        assert_eq!(status, 422, "{body}\n{text}");
        assert_eq!(body["result"], "failed", "{body}");
        let errors = body["errors"].to_string();
        for w in wanted {
            assert!(errors.contains(w), "{w}: {body}");
        }
        // Still served by the last good config: the same instances, the same limits.
        serves_the_good_config().await;
    }
    // A good reload applies (the refusals above were the configs', not the reload's).
    std::fs::write(
        s.config_path(),
        cfg(
            "plugin: ratelimit, config: { rate: 5, burst: 40 }",
            "tagger",
        ),
    )
    .unwrap();
    let (status, body) = admin_reload(&s, &root).await;
    assert_eq!(status, 200, "{body}");
    let r = get(&s, "/svc/x", Some(&ann)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("ratelimit-limit").as_deref(), Some("40"));
}

// ---------------------------------------------------------------------------------------------
// 11. No way around an instance

/// Sends `method target` over TCP exactly as written; the status code (0 if none came back).
async fn raw(addr: std::net::SocketAddr, method: &str, target: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_instance_is_not_sidestepped_by_path_spelling_case_head_or_method_case() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        "middleware:\n\
  - {{ name: no-get, plugin: mw-probe, config: {{ tag: g, mode: deny, status: 451 }}, path: /svc/blocked/*, methods: [GET] }}\n\
  - {{ name: no-post, plugin: mw-probe, config: {{ tag: p, mode: deny, status: 451 }}, path: /svc/post-only/*, methods: [POST] }}\n\
routes:\n\
  - {{ path: /svc/*, upstream: \"{u}\" }}\n"
    );
    let s = Server::start(&config("", &tail), &[jwt_plugin(), probe()]);
    let ann = token("ann", json!({}));

    // Control: the route serves what no instance covers, with any of these methods.
    for (method, target) in [
        ("GET", "/svc/open"),
        ("HEAD", "/svc/open"),
        ("POST", "/svc/blocked/x"),
        ("GET", "/svc/post-only/x"),
    ] {
        assert_eq!(
            raw(s.addr, method, target, &ann).await,
            200,
            "{method} {target}"
        );
    }
    let served = up.seen().len();
    assert_eq!(served, 4);

    // The denied request itself.
    assert_eq!(raw(s.addr, "GET", "/svc/blocked/x", &ann).await, 451);
    // Other spellings of the same path are judged in their canonical form; instance paths
    // ignore case, as `auth.protected` does.
    for target in [
        "/svc//blocked/x",
        "/svc/./blocked/x",
        "/svc/blocked/../blocked/x",
        "/svc/x/../blocked/x",
        "/svc/%62locked/x",
        "/SVC/BLOCKED/x",
        "/svc/blocked/x/",
    ] {
        let code = raw(s.addr, "GET", target, &ann).await;
        assert_eq!(code, 451, "GET {target}");
    }
    // HEAD is GET without the body: an instance for GET runs on it (as `auth.rules` methods do).
    assert_eq!(raw(s.addr, "HEAD", "/svc/blocked/x", &ann).await, 451);
    // A method in lower case is the same method to the gate.
    assert_eq!(raw(s.addr, "post", "/svc/post-only/x", &ann).await, 451);
    assert_eq!(raw(s.addr, "POST", "/svc/post-only/x", &ann).await, 451);
    assert_eq!(up.seen().len(), served, "{:?}", &up.seen()[served..]);
}

#[tokio::test]
async fn an_answer_with_a_status_that_is_not_a_final_one_fails_closed_with_500() {
    let up = Echo::start().await;
    let u = up.url();
    let bad = [99u16, 100, 101, 103, 600, 999];
    let mut tail = String::from("middleware:\n");
    for st in bad.iter().chain(&[204, 299]) {
        tail.push_str(&format!(
            "  - {{ name: s{st}, plugin: mw-probe, config: {{ tag: t{st}, mode: deny, status: {st} }}, path: /s/{st} }}\n"
        ));
    }
    tail.push_str(&format!(
        "routes:\n  - {{ path: /s/*, upstream: \"{u}\" }}\n"
    ));
    let s = Server::start(&config("", &tail), &[jwt_plugin(), probe()]);
    let ann = token("ann", json!({}));

    // Final statuses are answered as they are (no body for a 204).
    let r = get(&s, "/s/204", Some(&ann)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-mw-denied-by").as_deref(), Some("t204"));
    let r = get(&s, "/s/299", Some(&ann)).await;
    assert_eq!(r.status, 299);
    assert_eq!(r.body, json!({"error": "denied by t299"}));
    // Anything else is the middleware's failure: a 500 of the server's own, never a 1xx sent as
    // if it were final (a 101 would claim the connection switched protocols).
    for st in bad {
        let r = get(&s, &format!("/s/{st}"), Some(&ann)).await;
        assert_eq!(r.status, 500, "{st}");
        assert_eq!(r.body, json!({"error": "Internal Server Error"}), "{st}");
        assert!(r.header("x-mw-denied-by").is_none(), "{st}");
        assert!(
            r.header("x-request-id").is_some(),
            "{st}: the gate's answer"
        );
        let logged = format!("it answered status {st}");
        assert!(
            eventually(Duration::from_secs(10), || s.log().contains(&logged)).await,
            "{st}: {}",
            s.log()
        );
    }
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    let metrics = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for st in bad {
        assert_eq!(
            answers(&metrics, &format!("s{st}"), 500, "failure"),
            1.0,
            "{st}: {metrics}"
        );
    }
    assert_eq!(answers(&metrics, "s204", 204, "answer"), 1.0, "{metrics}");
}

// ---------------------------------------------------------------------------------------------
// What a middleware is told: never the token, every header that goes onward.

#[tokio::test]
async fn a_middleware_never_sees_the_token_and_sees_every_header_that_goes_onward() {
    let up = Echo::start().await;
    let u = up.url();
    let tail = format!(
        r#"middleware:
  - name: probe
    plugin: mw-probe
    config: {{ tag: p }}
    path: /svc/*
  - name: policy
    plugin: header-policy
    path: /svc/*
    config:
      set: {{ x-tenant: "{{org_id}}" }}
      deny: [x-internal-token]
routes:
  - {{ path: /svc/*, upstream: "{u}" }}
"#
    );
    let auth = "  protected: [\"/svc/*\", \"/api/*\"]\n  token: { header: x-api-key, query: access_token }\n";
    let s = Server::start(
        &config(auth, &tail),
        &[jwt_plugin(), probe(), header_policy()],
    );
    let tok = token("ann", json!({"org_id": "org_1"}));
    let bearer = format!("Bearer {tok}");

    // The token header is not among the headers the middleware was told.
    let r = send("GET", &s.url("/svc/a?x=1"), None, &[("x-api-key", &bearer)]).await;
    assert_eq!(r.status, 200, "{}", s.log());
    let seen = seen_headers(&up, 0);
    let told = seen["x-mw-seen-headers"].as_str().unwrap().to_string();
    assert!(told.split(',').any(|h| h == "host"), "{told}");
    assert!(
        !told.contains("x-api-key"),
        "the token header reached a middleware: {told}"
    );
    assert_eq!(seen["x-mw-seen-query"], "x=1");

    // Nor is the token's query parameter.
    let url = s.url(&format!("/svc/a?x=1&access_token={tok}&y=2"));
    let r = send("GET", &url, None, &[]).await;
    assert_eq!(r.status, 200, "{}", s.log());
    let seen = seen_headers(&up, 1);
    assert_eq!(seen["x-mw-seen-query"], "x=1&y=2");
    assert!(!seen.to_string().contains(&tok), "{seen}");

    // A header the policy sets is removed in every spelling the client may send it in.
    let r = send(
        "GET",
        &s.url("/svc/a"),
        None,
        &[("x-api-key", &bearer), ("X_Tenant", "org_evil")],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = seen_headers(&up, 2);
    assert_eq!(seen["x-tenant"], "org_1", "{seen}");
    assert!(
        seen.get("x_tenant").is_none(),
        "the client's spelling went on: {seen}"
    );

    // A denied header is found in any spelling, and with a value that is not visible ASCII.
    let before = up.seen().len();
    let r = send(
        "GET",
        &s.url("/svc/a"),
        None,
        &[("x-api-key", &bearer), ("X_Internal_Token", "x")],
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let raw = client()
        .get(s.url("/svc/a"))
        .header("x-api-key", &bearer)
        .header(
            "x-internal-token",
            reqwest::header::HeaderValue::from_bytes(b"\xa0secret").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(
        up.seen().len(),
        before,
        "a denied request reached the upstream"
    );
}
