#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Routes (the seed's `apiRoutes` with `requiresAuth`) forwarded to a real local upstream, forward
//! auth with Traefik's headers, decision explain and metrics — the real binary over real HTTP.

use portcullis_tests::{echo::Echo, *};
use serde_json::{json, Value};

const SECOND: &str = "second-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// Mastra §5.2's setup: protected `/api/*`, public `/api/health` and `/webhooks/*`, a user token
/// and an admin token, and rules that keep the admin area for admins. (Mastra's second rule is a
/// "not admin" regex; Rust's regex has no look-ahead, and first-match-decides rules say it
/// directly: admin → allow, admin area → deny, anything else → allow.)
fn config(up: &str, extra_routes: &str) -> String {
    let auth = "auth:\n  protected: [\"/api/*\"]\n  public: [\"/api/health\", \"/webhooks/*\"]\n  token: { query: access_token, cookie: session }\n  rules:\n    - path: [/api/admin/*, /admin-area/*]\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: [/api/admin/*, /admin-area/*]\n      allow: false\n    - allow: true\n";
    let second = format!("  - name: second\n    plugin: jwt\n    config:\n      secret: \"{SECOND}\"\n      issuer: [\"https://second.test\"]\n      audience: [\"api\"]\n");
    let routes = format!(
        "gateway:\n  forward_auth: traefik\n  identity_headers: {{ sub: X-User-Id, email: X-User-Email }}\nroutes:\n\
  - {{ path: /webhooks/github, methods: [POST], requires_auth: false, upstream: \"{up}\" }}\n\
  - {{ path: /public/status, methods: [GET], requires_auth: false, upstream: \"{up}\" }}\n\
  - {{ path: /secure/*, requires_auth: true, upstream: \"{up}\" }}\n\
  - {{ path: /default/*, upstream: \"{up}/base\" }}\n\
  - {{ path: /api/users, upstream: \"{up}\" }}\n\
  - {{ path: /api/open, requires_auth: false, upstream: \"{up}\" }}\n\
  - {{ path: /admin-area/*, upstream: \"{up}\" }}\n\
  - {{ path: /mixed, methods: [GET], requires_auth: false, upstream: \"{up}\" }}\n\
  - {{ path: /mixed, methods: [POST], requires_auth: true, upstream: \"{up}\" }}\n\
  - {{ path: /mixed, methods: [PUT], upstream: \"{up}\" }}\n\
  - {{ path: /second-only/*, providers: [second], upstream: \"{up}\" }}\n\
  - {{ path: /with-auth/*, forward_authorization: true, upstream: \"{up}\" }}\n\
  - {{ path: /webhooks/private, upstream: \"{up}\" }}\n\
{extra_routes}"
    );
    jwt_config(auth).replace("auth:\n", &format!("{second}auth:\n")) + &routes
}

struct Env {
    s: Server,
    up: Echo,
    user: String,
    admin: String,
}

async fn env(extra_routes: &str) -> Env {
    let up = Echo::start().await;
    let s = Server::start(&config(&up.url(), extra_routes), &[jwt_plugin()]);
    let user = hs256(
        SECRET,
        good_claims(
            "valid-user",
            json!({"role": "user", "email": "u@example.test"}),
        ),
    );
    let admin = hs256(SECRET, good_claims("admin-user", json!({"role": "admin"})));
    Env { s, up, user, admin }
}

async fn send(
    s: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = client().request(method.parse().unwrap(), s.url(path));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn custom_routes_follow_requires_auth_as_mastra_5_2() {
    let e = env("").await;
    let (s, user, admin) = (&e.s, bearer(&e.user), bearer(&e.admin));
    // requiresAuth:false routes answer without a token, and reach the upstream.
    let (code, body, h) = send(s, "POST", "/webhooks/github", None).await;
    assert_eq!(code, 200);
    assert_eq!(body["path"], "/webhooks/github");
    assert_eq!(h["x-upstream"], "echo");
    assert_eq!(send(s, "GET", "/public/status", None).await.0, 200);
    // Pattern-public path without a route: the gate lets it through (404 from the server, not 401).
    assert_eq!(send(s, "GET", "/api/health", None).await.0, 404);
    // requires_auth true: no token 401, valid 200 (GET and POST), invalid 401, another scheme 401.
    for m in ["GET", "POST"] {
        let (code, body, h) = send(s, m, "/secure/thing", None).await;
        assert_eq!(code, 401, "{m}");
        assert_eq!(body, json!({"error": "Authentication required"}));
        assert!(h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let (code, body, _) = send(s, m, "/secure/thing", Some(&user)).await;
        assert_eq!(code, 200, "{m}");
        assert_eq!(body["method"], m);
    }
    let (code, body, _) = send(s, "GET", "/secure/thing", Some("Bearer invalid-token")).await;
    assert_eq!(code, 401);
    assert_eq!(body, json!({"error": "Invalid or expired token"}));
    assert_eq!(
        send(s, "GET", "/secure/thing", Some("NotBearer token"))
            .await
            .0,
        401
    );
    // Default requires_auth is true.
    for m in ["GET", "POST"] {
        assert_eq!(send(s, m, "/default/x", None).await.0, 401, "{m}");
        assert_eq!(send(s, m, "/default/x", Some(&user)).await.0, 200, "{m}");
    }
    // Routes under a protected pattern; and requires_auth:false overrides the pattern.
    assert_eq!(send(s, "GET", "/api/users", None).await.0, 401);
    assert_eq!(send(s, "GET", "/api/users", Some(&user)).await.0, 200);
    assert_eq!(send(s, "GET", "/api/open", None).await.0, 200);
    // A route's requires_auth (true by default) disables the public-pattern bypass: /webhooks/* is
    // public, /webhooks/private is a route that needs a user.
    assert_eq!(send(s, "GET", "/webhooks/private", None).await.0, 401);
    assert_eq!(
        send(s, "GET", "/webhooks/private", Some(&user)).await.0,
        200
    );
    // The GET of /webhooks/github is not the POST route: the public pattern lets it through to
    // nothing (404).
    assert_eq!(send(s, "GET", "/webhooks/github", None).await.0, 404);
    // Role rules: a user is 403 on the admin area, an admin 200.
    let (code, body, _) = send(s, "GET", "/admin-area/panel", Some(&user)).await;
    assert_eq!(code, 403);
    assert_eq!(body, json!({"error": "Access denied"}));
    assert_eq!(
        send(s, "GET", "/admin-area/panel", Some(&admin)).await.0,
        200
    );
    // Same path, different methods: GET public; POST protected; PUT default (protected).
    assert_eq!(send(s, "GET", "/mixed", None).await.0, 200);
    assert_eq!(send(s, "POST", "/mixed", None).await.0, 401);
    assert_eq!(send(s, "POST", "/mixed", Some(&user)).await.0, 200);
    assert_eq!(send(s, "PUT", "/mixed", None).await.0, 401);
    assert_eq!(send(s, "PUT", "/mixed", Some(&user)).await.0, 200);
    // A method no route declares is not proxied.
    assert_eq!(send(s, "DELETE", "/mixed", Some(&user)).await.0, 404);
    // Routing is case-sensitive: /SECURE is no route; nothing protected is reached.
    assert_ne!(send(s, "GET", "/SECURE/thing", None).await.0, 200);
    // Built-in routes are never taken over.
    assert_eq!(
        send(s, "GET", "/health", None).await.1,
        json!({"success": true})
    );
}

#[tokio::test]
async fn the_upstream_gets_the_canonical_path_the_identity_and_no_client_spoofs() {
    let e = env("").await;
    let s = &e.s;
    // Canonical path (dot segments, doubled slash, %7E) appended to the upstream's base path.
    let code = raw_status(
        s.addr,
        "/default/a/..//b/%7Euser?x=1",
        &[("authorization", &bearer(&e.user))],
    )
    .await;
    assert_eq!(code, 200);
    let r = client()
        .get(s.url("/default/b/%7Euser?x=1&access_token=zzz&y=2"))
        .header("authorization", bearer(&e.user))
        .header("x-user-id", "mallory")
        .header("X-User-Email", "mallory@evil.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-host", "evil.test")
        .header("connection", "x-private-hop")
        .header("x-private-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic bWFsbG9yeQ==")
        .header("cookie", "theme=dark; session=cookie-token; lang=en")
        .header("x-other", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let host = r.headers()["x-upstream"].to_str().unwrap().to_string();
    assert_eq!(host, "echo");
    let b: Value = r.json().await.unwrap();
    let h = &b["headers"];
    assert_eq!(b["path"], "/base/default/b/~user", "{b}");
    assert_eq!(b["query"], "x=1&y=2", "the query token is removed: {b}");
    assert_eq!(h["x-user-id"], "valid-user", "identity replaces the spoof");
    assert_eq!(h["x-user-email"], "u@example.test");
    assert!(
        h.get("authorization").is_none(),
        "the token is not forwarded by default"
    );
    assert_eq!(h["cookie"], "theme=dark; lang=en");
    // The client's own X-Forwarded-For is its word, not a fact: only the address seen is sent.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], s.addr.to_string());
    for hop in [
        "x-private-hop",
        "keep-alive",
        "proxy-authorization",
        "transfer-encoding",
    ] {
        assert!(h.get(hop).is_none(), "{hop} reached the upstream: {h}");
    }
    assert_eq!(h["x-other"], "kept");

    // Public route: identity headers from the client are still stripped, none are added.
    let r = client()
        .get(s.url("/public/status"))
        .header("x-user-id", "root")
        .header("x-user-email", "root@evil.test")
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert!(b["headers"].get("x-user-id").is_none(), "{b}");
    assert!(b["headers"].get("x-user-email").is_none(), "{b}");

    // forward_authorization: true keeps the token header.
    let (code, b, _) = send(s, "GET", "/with-auth/x", Some(&bearer(&e.user))).await;
    assert_eq!(code, 200);
    assert_eq!(b["headers"]["authorization"], bearer(&e.user));

    // A query-parameter token works and does not travel on.
    let r = client()
        .get(s.url(&format!("/secure/q?access_token={}&keep=1", e.user)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["query"], "keep=1");
    // A cookie token works and does not travel on.
    let r = client()
        .get(s.url("/secure/c"))
        .header("cookie", format!("session={}", e.user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert!(b["headers"].get("cookie").is_none(), "{b}");
}

#[tokio::test]
async fn bodies_stream_both_ways_and_chunked_uploads_arrive_whole() {
    let e = env("").await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = echo::sha256_hex(&body);
    // A declared length.
    let r = client()
        .post(e.s.url("/secure/upload"))
        .header("authorization", bearer(&e.user))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["body_len"], body.len());
    assert_eq!(b["body_sha256"], expected);
    // Chunked (no length).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(65536).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::stream::iter(chunks);
    let r = client()
        .post(e.s.url("/secure/upload"))
        .header("authorization", bearer(&e.user))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["body_sha256"], expected);
    assert!(b["headers"]
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked"));
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_with_the_json_error_body() {
    // A port nothing listens on.
    let refused = mock::refused_port();
    let closed = refused.addr;
    let up = Echo::start().await;
    let extra = format!(
        "- {{ path: /down, requires_auth: false, upstream: \"http://{closed}\" }}\n- {{ path: /slow, requires_auth: false, upstream: \"{}\", timeout: 300ms }}\n",
        up.url()
    );
    let s = Server::start(&config(&up.url(), &extra), &[jwt_plugin()]);
    let (code, body, _) = send(&s, "GET", "/down", None).await;
    assert_eq!(code, 502);
    assert_eq!(body, json!({"error": "Bad Gateway"}));
    let (code, body, _) = send(&s, "GET", "/slow", None).await;
    assert_eq!(code, 504);
    assert_eq!(body, json!({"error": "Gateway Timeout"}));
    // The server keeps serving.
    assert_eq!(send(&s, "GET", "/public/status", None).await.0, 200);
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_a_closed_one_is_replaced() {
    let t = env("").await;
    // The connections the upstream was reached on, in order, each once.
    let connections = |t: &Env| -> Vec<String> {
        let mut used: Vec<String> =
            t.up.seen()
                .iter()
                .map(|e| e["peer"].as_str().unwrap_or_default().to_string())
                .collect();
        used.dedup();
        used
    };
    let answered_whole = |s: &Server, n: usize| {
        let s = s.url("");
        async move {
            for _ in 0..n {
                let r = client().get(format!("{s}/api/open")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(body["path"].as_str(), Some("/api/open"));
            }
        }
    };
    answered_whole(&t.s, 20).await;
    let used = connections(&t);
    assert_eq!(
        used.len(),
        1,
        "one connection for 20 requests in turn: {used:?}"
    );
    // The upstream closes the connection after its answer: the next requests go out on a new
    // one, and none fails.
    let closed = client()
        .get(t.s.url("/api/open"))
        .header("x-echo-close", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    answered_whole(&t.s, 5).await;
    let used = connections(&t);
    assert_eq!(
        used.len(),
        2,
        "a new connection after the upstream closed one: {used:?}"
    );
    // An answer left unread by the client: the next requests are answered whole.
    let unread = client().get(t.s.url("/api/open")).send().await.unwrap();
    drop(unread);
    answered_whole(&t.s, 5).await;
}

#[tokio::test]
async fn a_route_provider_list_limits_who_may_vouch() {
    let e = env("").await;
    let mut c = good_claims("sam", json!({}));
    c["iss"] = "https://second.test".into();
    let second = bearer(&hs256(SECOND, c));
    assert_eq!(
        send(&e.s, "GET", "/second-only/x", Some(&second)).await.0,
        200
    );
    // A valid token from the other provider is refused on this route, accepted elsewhere.
    let (code, body, _) = send(&e.s, "GET", "/second-only/x", Some(&bearer(&e.user))).await;
    assert_eq!(code, 401);
    assert_eq!(body, json!({"error": "Invalid or expired token"}));
    assert_eq!(send(&e.s, "GET", "/secure/x", Some(&second)).await.0, 200);
}

#[tokio::test]
async fn routes_reload_live_with_the_rest_of_the_config() {
    let e = env("").await;
    assert_eq!(send(&e.s, "GET", "/public/status", None).await.0, 200);
    let edited = config(&e.up.url(), "").replace(
        "path: /public/status, methods: [GET], requires_auth: false,",
        "path: /public/status, methods: [GET],",
    );
    std::fs::write(e.s.config_path(), edited).unwrap();
    let r: Value = client()
        .post(e.s.url("/api/admin/reload"))
        .bearer_auth(&e.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The file watch may have applied it first; either way generation 2 is served.
    assert!(
        r["result"] == "applied" || r["result"] == "unchanged",
        "{r}"
    );
    assert_eq!(r["generation"], 2, "{r}");
    assert_eq!(send(&e.s, "GET", "/public/status", None).await.0, 401);
    // A route naming a provider that does not exist is refused with its key path.
    let broken = config(
        &e.up.url(),
        "- { path: /x, providers: [nobody], upstream: \"http://127.0.0.1:1\" }\n",
    );
    std::fs::write(e.s.config_path(), broken).unwrap();
    let (status, r) = admin_reload(&e.s, &e.admin).await;
    assert_eq!((status, &r["result"]), (422, &json!("failed")), "{r}");
    assert!(
        r["errors"].to_string().contains("routes[13].providers[0]"),
        "{r}"
    );
    assert_eq!(send(&e.s, "GET", "/public/status", None).await.0, 401);
}

#[tokio::test]
async fn bad_routes_are_refused_with_their_key_paths() {
    let bad = config(
        "http://127.0.0.1:9",
        "- { path: /metrics, upstream: \"http://127.0.0.1:9\" }\n- { path: /y, upstream: \"ftp://x\" }\n- { path: \"/a*\", upstream: \"http://127.0.0.1:9\" }\n",
    );
    let err = Server::try_start(&bad, &[jwt_plugin()], &[])
        .err()
        .expect("refused");
    for p in ["routes[13].path", "routes[14].upstream", "routes[15].path"] {
        assert!(err.contains(p), "{p} not in {err}");
    }
}

#[tokio::test]
async fn forward_auth_answers_traefik_headers() {
    let e = env("").await;
    let ask = |method: &str, uri: &str, token: Option<&str>| {
        let mut r = client()
            .get(e.s.url("/forward-auth"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-host", "app.example.test")
            .header("x-forwarded-proto", "https");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = ask("GET", "/api/things?a=1", Some(&e.user)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-user-id"], "valid-user");
    assert_eq!(r.headers()["x-user-email"], "u@example.test");
    let r = ask("GET", "/api/things", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        ask("GET", "/admin-area/x", Some(&e.user))
            .await
            .unwrap()
            .status(),
        403
    );
    // Route semantics apply: the GET of /mixed is public, its POST is not.
    assert_eq!(ask("GET", "/mixed", None).await.unwrap().status(), 200);
    assert_eq!(ask("POST", "/mixed", None).await.unwrap().status(), 401);
    // The proxy forwards the raw path: only a canonical one is judged; anything else, and an
    // ambiguous encoding, is refused.
    for raw in [
        "/public/../api/x",
        "/api/./x",
        "//api/x",
        "/api/%7euser",
        "/api%2Fx",
    ] {
        assert_eq!(ask("GET", raw, None).await.unwrap().status(), 400, "{raw}");
    }
    // Without the original method and URI there is nothing to decide.
    let r = client().get(e.s.url("/forward-auth")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn forward_auth_is_off_unless_enabled() {
    let up = Echo::start().await;
    let cfg = config(&up.url(), "").replace("  forward_auth: traefik\n", "");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let r = client()
        .get(s.url("/forward-auth"))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/api/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn explain_says_why_and_never_echoes_a_secret() {
    let e = env("").await;
    let explain = |body: Value| {
        client()
            .post(e.s.url("/api/admin/explain"))
            .bearer_auth(&e.admin)
            .json(&body)
            .send()
    };
    // A denied user on the admin area: the rule that decided, the provider, the route.
    let r: Value =
        explain(json!({"method": "get", "path": "/admin-area/./x/../panel", "token": e.user}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(r["canonical_path"], "/admin-area/panel", "{r}");
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["status"], 403);
    assert_eq!(r["provider"], "main");
    assert_eq!(r["rule"], 1);
    assert_eq!(r["route"]["index"], 6);
    assert_eq!(r["route"]["path"], "/admin-area/*");
    assert_eq!(r["token_source"], "header");
    assert!(
        r["reason"].as_str().unwrap().contains("auth.rules[1]"),
        "{r}"
    );
    let text = r.to_string();
    assert!(!text.contains(&e.user), "the token came back: {text}");
    // Allowed: the subject, the rule, the protected pattern.
    let r: Value = explain(json!({"method": "GET", "path": "/api/users", "token": e.user}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["status"], 200);
    assert_eq!(r["subject"], "valid-user");
    assert_eq!(r["rule"], 2);
    assert_eq!(r["protected_pattern"]["pattern"], "/api/*");
    // A refused token: why, and still not the token.
    let mut expired = good_claims("old", json!({}));
    expired["exp"] = (now() - 3600).into();
    let old = hs256(SECRET, expired);
    let r: Value = explain(json!({"method": "GET", "path": "/api/users", "token": old}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], 401);
    assert!(!r["reason"].as_str().unwrap().is_empty());
    assert!(!r.to_string().contains(&old));
    // Public pattern, cookie token source, bad path.
    let r: Value = explain(json!({"method": "GET", "path": "/api/health"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["public_pattern"]["pattern"], "/api/health");
    assert_eq!(r["requires_auth"], false);
    let r: Value = explain(json!({"method": "GET", "path": "/secure/x", "headers": {"cookie": format!("session={}", e.user)}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["token_source"], "cookie");
    assert_eq!(r["decision"], "allow");
    assert!(!r.to_string().contains(&e.user));
    let r: Value = explain(json!({"method": "GET", "path": "/api%2Fx"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], 400);
    // Only admins may ask.
    let r = client()
        .post(e.s.url("/api/admin/explain"))
        .bearer_auth(&e.user)
        .json(&json!({"method": "GET", "path": "/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_decisions_reloads_and_plugins_with_bounded_labels() {
    let e = env("").await;
    send(&e.s, "GET", "/secure/a", Some(&bearer(&e.user))).await;
    send(&e.s, "GET", "/secure/a", None).await;
    send(&e.s, "GET", "/admin-area/x", Some(&bearer(&e.user))).await;
    send(&e.s, "GET", "/secure/a", Some("Bearer nope")).await;
    send(&e.s, "GET", "/public/status", None).await;
    let r: Value = client()
        .post(e.s.url("/api/admin/reload"))
        .bearer_auth(&e.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], "unchanged");
    let r = client().get(e.s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "/metrics is public by default");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let m = r.text().await.unwrap();
    let d = "portcullis_decisions_total{";
    assert!(
        metric(
            &m,
            &format!("{d}provider=\"main\",result=\"allow\",reason=\"authenticated\"}}")
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("{d}provider=\"none\",result=\"deny\",reason=\"no_token\"}}")
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("{d}provider=\"main\",result=\"deny\",reason=\"forbidden\"}}")
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("{d}provider=\"none\",result=\"deny\",reason=\"invalid_token\"}}")
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("{d}provider=\"none\",result=\"allow\",reason=\"route_open\"}}")
        ),
        1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "portcullis_decision_duration_seconds_count{provider=\"main\",result=\"allow\"}"
        ) >= 2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "portcullis_http_responses_total{code=\"401\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "portcullis_http_responses_total{code=\"403\"}"),
        1.0,
        "{m}"
    );
    // Upstream latency by route pattern: only the routes that answered have a series.
    for route in ["/secure/*", "/public/status"] {
        assert_eq!(
            metric(
                &m,
                &format!("portcullis_upstream_duration_seconds_count{{route=\"{route}\"}}")
            ),
            1.0,
            "{m}"
        );
    }
    assert!(!m.contains("route=\"/admin-area/*\""), "{m}");
    assert_eq!(
        metric(&m, "portcullis_reloads_total{result=\"applied\"}"),
        1.0,
        "{m}"
    );
    // The admin's, and any the file watch asked for.
    assert!(
        metric(&m, "portcullis_reloads_total{result=\"unchanged\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "portcullis_config_generation"), 1.0, "{m}");
    assert_eq!(
        metric(&m, "portcullis_plugin_loads_total{result=\"mapped\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "portcullis_plugin_libraries_mapped"), 1.0, "{m}");
    assert!(m.contains("portcullis_key_fetches_total"), "{m}");
    assert!(m.contains("portcullis_key_fetch_failures_total"), "{m}");
    assert!(
        metric(
            &m,
            "portcullis_upstream_responses_total{result=\"response\"}"
        ) >= 2.0,
        "{m}"
    );
    // No path, user or token in any label.
    for secret in ["/secure/a", "valid-user", "/admin-area", &e.user] {
        assert!(!m.contains(secret), "{secret} in metrics");
    }
    assert!(m.ends_with("# EOF\n"));
}

#[tokio::test]
async fn metrics_can_be_protected_or_turned_off() {
    let up = Echo::start().await;
    let cfg = config(&up.url(), "").replace(
        "protected: [\"/api/*\"]",
        "protected: [\"/api/*\", \"/metrics\"]",
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    assert_eq!(send(&s, "GET", "/metrics", None).await.0, 401);
    let t = hs256(SECRET, good_claims("prom", json!({})));
    let r = client()
        .get(s.url("/metrics"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cfg = config(&up.url(), "").replace("  port: 0\n", "  port: 0\n  metrics: false\n");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    assert_eq!(send(&s, "GET", "/metrics", None).await.0, 404);
}

#[tokio::test]
async fn openapi_documents_forward_auth_and_explain() {
    let e = env("").await;
    let spec: Value = client()
        .get(e.s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fa = &spec["paths"]["/forward-auth"]["get"];
    assert!(fa.is_object(), "{}", spec["paths"]);
    let params = fa["parameters"].to_string();
    for h in [
        "X-Original-URI",
        "X-Original-Method",
        "X-Forwarded-Uri",
        "X-Forwarded-Method",
    ] {
        assert!(params.contains(h), "{h}");
    }
    for code in ["200", "400", "401", "403"] {
        assert!(fa["responses"][code].is_object(), "{code}");
    }
    let ex = &spec["paths"]["/api/admin/explain"]["post"];
    assert!(ex["security"].to_string().contains("bearerAuth"));
    assert!(spec["components"]["schemas"]["Explanation"].is_object());
}
