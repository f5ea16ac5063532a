#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Security at the edges (docs/security.md, "Gateway edges"): forward auth behind a real nginx and
//! a real Caddy, and routes forwarded by Portcullis itself, attacked as a client would. A
//! recording upstream stands behind each: a test fails if a spoofed header, an unjudged method or
//! path, or an unauthenticated preflight reaches it.

use portcullis_tests::{echo::Echo, proxies::Proxy, *};
use serde_json::{json, Value};

const SECOND: &str = "second-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// Two providers (`main`, `second` with its own issuer), protected `/api/*` and `/admin/*`,
/// admin area for admins of `main` on host `admin.test`, `GET` of reports denied.
fn edge_config(gateway: &str) -> String {
    let second = format!("  - name: second\n    plugin: jwt\n    config:\n      secret: \"{SECOND}\"\n      issuer: [\"https://second.test\"]\n      audience: [\"api\"]\n");
    let auth = "auth:\n  protected: [\"/api/*\", \"/admin/*\"]\n  rules:\n    - path: /api/reports/*\n      methods: [GET]\n      allow: false\n    - path: /admin/*\n      providers: [main]\n      condition: \"user.role == 'admin' && host == 'admin.test'\"\n      allow: true\n    - path: /admin/*\n      allow: false\n    - allow: true\n";
    jwt_config(auth).replace("auth:\n", &format!("{second}auth:\n")) + gateway
}

struct Tokens {
    user: String,
    admin: String,
    second_admin: String,
}

fn tokens() -> Tokens {
    Tokens {
        user: hs256(SECRET, good_claims("nina", json!({"role": "user"}))),
        admin: hs256(SECRET, good_claims("ada", json!({"role": "admin"}))),
        second_admin: {
            let mut c = good_claims("sam", json!({"role": "admin"}));
            c["iss"] = "https://second.test".into();
            hs256(SECOND, c)
        },
    }
}

/// A request through `proxy` with extra headers; the status.
async fn status(
    proxy: &Proxy,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> u16 {
    let mut r = client().request(method.parse().unwrap(), proxy.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap().status().as_u16()
}

/// Every class of the forward-auth edge, through `proxy`; `foreign` is the other proxies'
/// original-request headers a client could add.
async fn forward_auth_holds(proxy: &Proxy, up: &Echo, foreign: [(&str, &str); 2]) {
    let t = tokens();
    let name = proxy.name;
    // Allowed: the upstream gets the verdict's identity and provider.
    assert_eq!(
        status(proxy, "GET", "/api/orders", Some(&t.user), &[]).await,
        200,
        "{name}"
    );
    let last = up.seen().last().cloned().unwrap();
    assert_eq!(last["headers"]["x-user-id"], "nina", "{name}: {last}");
    assert_eq!(last["headers"]["x-auth-provider"], "main", "{name}: {last}");
    let before = up.seen().len();
    let unchanged = |why: &str| {
        let seen = up.seen();
        assert_eq!(
            seen.len(),
            before,
            "{name}: {why} reached the upstream: {:?}",
            seen.last()
        );
    };

    // 1. A client naming another request with another proxy's headers.
    let code = status(proxy, "DELETE", "/api/admin/users/1", None, &foreign).await;
    assert!(
        !(200..300).contains(&code),
        "{name}: spoofed target: {code}"
    );
    // ... or with this proxy's own headers (the proxy must replace them).
    let own: [(&str, &str); 2] = if name == "nginx" {
        [("x-original-uri", "/health"), ("x-original-method", "GET")]
    } else {
        [
            ("x-forwarded-uri", "/health"),
            ("x-forwarded-method", "GET"),
        ]
    };
    let code = status(proxy, "DELETE", "/api/admin/users/1", None, &own).await;
    assert!(!(200..300).contains(&code), "{name}: own headers: {code}");
    unchanged("a spoofed original request");

    // 2. A path the upstream would see raw, judged in another form.
    for raw in [
        "/pub/../api/orders",
        "/pub/%2e%2e/api/orders",
        "//api/orders",
    ] {
        let code = raw_status(proxy.addr(), raw, &[]).await;
        assert!(
            !(200..300).contains(&code),
            "{name}: {raw}: {code}: {:?}",
            up.seen().last()
        );
    }
    unchanged("a non-canonical path");

    // 3. A CORS preflight is no free pass to a protected upstream.
    let pre = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "DELETE"),
    ];
    let code = status(proxy, "OPTIONS", "/api/orders", None, &pre).await;
    assert!(!(200..300).contains(&code), "{name}: preflight: {code}");
    unchanged("an unauthenticated preflight");

    // 4. Identity and forwarding headers in the client's spelling, with `_` or not.
    for spoof in [
        ("x-user-id", "mallory"),
        ("x_user_id", "mallory"),
        ("X_Auth_Provider", "mallory"),
        ("x_forwarded_for", "mallory"),
        ("x_real_ip", "mallory"),
    ] {
        let _ = status(proxy, "GET", "/pub/page", Some(&t.user), &[spoof]).await;
        let _ = status(proxy, "GET", "/pub/page", None, &[spoof]).await;
    }
    for b in up.seen() {
        let text = b["headers"].to_string();
        assert!(!text.contains("mallory"), "{name}: a spoof reached it: {b}");
    }

    // 5. Method overrides: a public POST must not become a DELETE upstream.
    let before = up.seen().len();
    for h in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "X_HTTP_Method_Override",
    ] {
        let _ = status(proxy, "POST", "/pub/form", None, &[(h, "DELETE")]).await;
    }
    let _ = status(proxy, "POST", "/pub/form?_method=DELETE", None, &[]).await;
    for b in &up.seen()[before..] {
        let text = b.to_string().to_ascii_lowercase();
        assert!(
            !text.contains("delete"),
            "{name}: an override reached it: {b}"
        );
    }

    // HEAD follows GET: a rule denying GET denies HEAD.
    let before = up.seen().len();
    let unchanged = |why: &str| {
        assert_eq!(
            up.seen().len(),
            before,
            "{name}: {why} reached the upstream"
        );
    };
    assert_eq!(
        status(proxy, "GET", "/api/reports/q3", Some(&t.user), &[]).await,
        403,
        "{name}"
    );
    assert_eq!(
        status(proxy, "HEAD", "/api/reports/q3", Some(&t.user), &[]).await,
        403,
        "{name}"
    );
    unchanged("a HEAD of a denied GET");

    // 7. Rules see the host and the provider: the admin area is for main's admins on
    // admin.test only.
    let admin_host = [("host", "admin.test")];
    assert_eq!(
        status(proxy, "GET", "/admin/panel", Some(&t.admin), &admin_host).await,
        200,
        "{name}"
    );
    assert_eq!(
        status(
            proxy,
            "GET",
            "/admin/panel",
            Some(&t.admin),
            &[("host", "www.test")]
        )
        .await,
        403,
        "{name}"
    );
    assert_eq!(
        status(
            proxy,
            "GET",
            "/admin/panel",
            Some(&t.second_admin),
            &admin_host
        )
        .await,
        403,
        "{name}: another provider's admin"
    );
}

#[tokio::test]
async fn forward_auth_behind_nginx_judges_only_what_the_upstream_will_see() {
    let up = Echo::start().await;
    let cfg = edge_config("gateway:\n  forward_auth: nginx\n  provider_header: X-Auth-Provider\n");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let nginx = Proxy::nginx(&format!("http://{}", s.addr), &up.url()).await;
    forward_auth_holds(
        &nginx,
        &up,
        [
            ("x-forwarded-uri", "/health"),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await;
}

#[tokio::test]
async fn forward_auth_behind_caddy_judges_only_what_the_upstream_will_see() {
    let up = Echo::start().await;
    let cfg = edge_config("gateway:\n  forward_auth: caddy\n  provider_header: X-Auth-Provider\n");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let caddy = Proxy::caddy(&s.addr.to_string(), &up.addr.to_string()).await;
    forward_auth_holds(
        &caddy,
        &up,
        [("x-original-uri", "/health"), ("x-original-method", "GET")],
    )
    .await;
}

/// Asks `/forward-auth` directly, as a proxy would.
async fn ask(s: &Server, headers: &[(&str, &str)], token: Option<&str>) -> u16 {
    let mut r = client().get(s.url("/forward-auth"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn forward_auth_reads_only_the_configured_proxys_headers() {
    let t = tokens();
    let traefik = [
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-uri", "/api/admin/users/1"),
        ("x-forwarded-host", "app.test"),
    ];
    let s = Server::start(
        &edge_config("gateway:\n  forward_auth: traefik\n"),
        &[jwt_plugin()],
    );
    assert_eq!(ask(&s, &traefik, None).await, 401);
    // The exact request: nginx's headers added by the client → 400, not 200.
    let mut spoofed = traefik.to_vec();
    spoofed.extend([("x-original-uri", "/health"), ("x-original-method", "GET")]);
    assert_eq!(ask(&s, &spoofed, None).await, 400);
    for extra in [
        ("x-original-url", "/health"),
        ("x-rewrite-url", "/health"),
        ("x-envoy-original-path", "/health"),
    ] {
        let mut h = traefik.to_vec();
        h.push(extra);
        assert_eq!(ask(&s, &h, None).await, 400, "{extra:?}");
    }
    // Missing host, repeated URI: 400.
    assert_eq!(ask(&s, &traefik[..2], None).await, 400);
    let mut twice = traefik.to_vec();
    twice.push(("x-forwarded-uri", "/pub/x"));
    assert_eq!(ask(&s, &twice, None).await, 400);
    // nginx's headers are not read by a server told it sits behind Traefik.
    let nginx_style = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/pub/x"),
        ("x-forwarded-host", "app.test"),
    ];
    assert_eq!(ask(&s, &nginx_style, Some(&t.user)).await, 400);
    drop(s);

    // `true` no longer says which proxy; a custom one names its headers.
    let err = Server::try_start(
        &edge_config("gateway:\n  forward_auth: true\n"),
        &[jwt_plugin()],
        &[],
    )
    .err()
    .expect("refused");
    assert!(err.contains("gateway.forward_auth"), "{err}");
    let custom = "gateway:\n  forward_auth: { proxy: custom, headers: { method: X-Edge-Method, uri: X-Edge-Uri, host: X-Edge-Host } }\n";
    let s = Server::start(&edge_config(custom), &[jwt_plugin()]);
    let h = [
        ("x-edge-method", "GET"),
        ("x-edge-uri", "/api/orders"),
        ("x-edge-host", "app.test"),
    ];
    assert_eq!(ask(&s, &h, Some(&t.user)).await, 200);
    assert_eq!(ask(&s, &h, None).await, 401);
    assert_eq!(ask(&s, &traefik, Some(&t.user)).await, 400);
}

#[tokio::test]
async fn forward_auth_for_envoy_judges_the_path_below_it_with_its_method() {
    let t = tokens();
    let s = Server::start(
        &edge_config("gateway:\n  forward_auth: envoy\n"),
        &[jwt_plugin()],
    );
    let check = |method: &str, path: &str, token: Option<&str>| {
        let mut r = client()
            .request(
                method.parse().unwrap(),
                s.url(&format!("/forward-auth{path}")),
            )
            .header("host", "admin.test");
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        r.send()
    };
    assert_eq!(
        check("GET", "/api/orders", Some(&t.user))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        check("DELETE", "/api/orders", None).await.unwrap().status(),
        401
    );
    assert_eq!(
        check("GET", "/admin/panel", Some(&t.admin))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        check("GET", "/admin/panel", Some(&t.user))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(check("GET", "/pub/x", None).await.unwrap().status(), 200);
    // Raw spellings the upstream would see differently.
    let code = raw_status(s.addr, "/forward-auth/pub/../api/orders", &[]).await;
    assert_eq!(code, 400);
    let code = raw_status(
        s.addr,
        "/forward-auth/pub/x",
        &[("x-original-uri", "/health")],
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn a_preflight_is_answered_only_where_cors_is_on_and_an_origin_is_sent() {
    let up = Echo::start().await;
    let route = format!(
        "routes:\n  - {{ path: /svc/*, upstream: \"{}\" }}\n",
        up.url()
    );
    let pre = |s: &Server, origin: bool| {
        let mut r = client()
            .request(reqwest::Method::OPTIONS, s.url("/svc/items"))
            .header("access-control-request-method", "DELETE");
        if origin {
            r = r.header("origin", "https://app.test");
        }
        r.send()
    };
    // CORS off: an OPTIONS with Access-Control-Request-Method is a request like any other.
    let cfg = edge_config(&route).replace("  port: 0\n", "  port: 0\n  cors: false\n");
    let s = Server::start(&cfg, &[jwt_plugin()]);
    for origin in [false, true] {
        assert_eq!(pre(&s, origin).await.unwrap().status(), 401);
    }
    drop(s);
    // CORS on: answered by the gate itself with an Origin (never forwarded), judged without.
    let s = Server::start(&edge_config(&route), &[jwt_plugin()]);
    assert_eq!(pre(&s, true).await.unwrap().status(), 204);
    assert_eq!(pre(&s, false).await.unwrap().status(), 401);
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

#[tokio::test]
async fn a_proxied_route_forwards_nothing_the_gate_did_not_judge() {
    let up = Echo::start().await;
    let t = tokens();
    let route = format!(
        "gateway:\n  provider_header: X-Auth-Provider\nroutes:\n  - {{ path: /svc/*, upstream: \"{}\" }}\n  - {{ path: /pub/*, requires_auth: false, upstream: \"{}\" }}\n",
        up.url(),
        up.url()
    );
    let s = Server::start(&edge_config(&route), &[jwt_plugin()]);
    let spoofs = [
        ("x-user-id", "mallory"),
        ("X_User_Id", "mallory"),
        ("x-auth-provider", "mallory"),
        ("X_Auth_Provider", "mallory"),
        ("forwarded", "for=mallory"),
        ("x-real-ip", "mallory"),
        ("x_real_ip", "mallory"),
        ("x-forwarded-for", "mallory"),
        ("X_Forwarded_For", "mallory"),
        ("x-forwarded-host", "mallory"),
        ("x_forwarded_proto", "mallory"),
        ("x-http-method-override", "DELETE"),
        ("X_HTTP_Method_Override", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-original-url", "/mallory"),
        ("X_Rewrite_URL", "/mallory"),
        ("x-original-uri", "/mallory"),
        ("x_custom_thing", "kept"),
    ];
    for (path, token) in [
        ("/svc/items?_method=DELETE&a=1", Some(&t.user)),
        ("/pub/form?_method=DELETE&a=1", None),
    ] {
        let mut r = client().post(s.url(path));
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        for (k, v) in spoofs {
            r = r.header(k, v);
        }
        let b: Value = r.send().await.unwrap().json().await.unwrap();
        let text = b["headers"].to_string();
        assert!(!text.contains("mallory"), "{path}: {b}");
        assert!(!text.to_ascii_lowercase().contains("delete"), "{path}: {b}");
        assert_eq!(b["query"], "a=1", "{path}: {b}");
        assert_eq!(b["headers"]["x-forwarded-for"], "127.0.0.1", "{b}");
        assert_eq!(b["headers"]["x_custom_thing"], "kept", "{b}");
        if token.is_some() {
            assert_eq!(b["headers"]["x-user-id"], "nina", "{b}");
            assert_eq!(b["headers"]["x-auth-provider"], "main", "{b}");
        } else {
            assert!(b["headers"].get("x-user-id").is_none(), "{b}");
        }
    }
    // HEAD follows GET on routes too.
    let r = client()
        .head(s.url("/api/reports/q3"))
        .bearer_auth(&t.user)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(s);

    // `method_override: refuse` refuses instead; `underscore_headers: drop` drops every `_` name.
    let strict = route.replace(
        "gateway:\n",
        "gateway:\n  method_override: refuse\n  underscore_headers: drop\n",
    );
    let s = Server::start(&edge_config(&strict), &[jwt_plugin()]);
    let before = up.seen().len();
    for (k, v) in [
        ("x-http-method-override", "DELETE"),
        ("X_Method_Override", "DELETE"),
    ] {
        let r = client()
            .post(s.url("/pub/form"))
            .header(k, v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{k}");
    }
    let r = client()
        .post(s.url("/pub/form?_method=DELETE"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        up.seen().len(),
        before,
        "a refused override reached the upstream"
    );
    let b: Value = client()
        .get(s.url("/pub/x"))
        .header("x_custom_thing", "dropped")
        .header("x-custom-thing", "kept")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(b["headers"].get("x_custom_thing").is_none(), "{b}");
    assert_eq!(b["headers"]["x-custom-thing"], "kept", "{b}");
}

#[tokio::test]
async fn the_admin_api_is_closed_unless_a_rule_opens_it() {
    let t = tokens();
    let get = |s: &Server, path: &str, tok: &str| {
        let url = s.url(path);
        let tok = tok.to_string();
        async move {
            client()
                .get(url)
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // No rules: any user reaches the rest of /api, but not the admin API.
    let s = Server::start(
        &jwt_config("auth:\n  protected: [\"/api/*\"]\n"),
        &[jwt_plugin()],
    );
    assert_eq!(get(&s, "/api/auth/me", &t.user).await, 200);
    for p in [
        "/api/admin/status",
        "/api/admin/plugins",
        "/api/admin/providers",
    ] {
        assert_eq!(get(&s, p, &t.admin).await, 403, "{p}");
    }
    let r = client()
        .post(s.url("/api/admin/reload"))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .post(s.url("/api/admin/explain"))
        .bearer_auth(&t.admin)
        .json(&json!({"method": "GET", "path": "/api/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(s);
    // `auth.authorize` alone does not open it either.
    let s = Server::start(
        &jwt_config("auth:\n  protected: [\"/api/*\"]\n  authorize: \"true\"\n"),
        &[jwt_plugin()],
    );
    assert_eq!(get(&s, "/api/auth/me", &t.user).await, 200);
    assert_eq!(get(&s, "/api/admin/status", &t.admin).await, 403);
    drop(s);
    // The default config's kind of rule opens it to admins only.
    let admin_rule = jwt_config("auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n");
    let s = Server::start(&admin_rule, &[jwt_plugin()]);
    assert_eq!(get(&s, "/api/admin/status", &t.admin).await, 200);
    assert_eq!(get(&s, "/api/admin/status", &t.user).await, 403);
}

#[tokio::test]
async fn rules_see_the_provider_and_a_lower_case_path() {
    let t = tokens();
    let second = format!("  - name: second\n    plugin: jwt\n    config:\n      secret: \"{SECOND}\"\n      issuer: [\"https://second.test\"]\n      audience: [\"api\"]\n");
    let auth = "auth:\n  protected: [\"/api/*\"]\n  rules:\n    - condition: \"path.startsWith('/api/internal')\"\n      allow: false\n    - path: /api/admin/*\n      providers: [second]\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/corp/*\n      condition: \"provider == 'main' && iss == 'https://issuer.test'\"\n      allow: true\n    - path: /api/corp/*\n      allow: false\n    - allow: true\n";
    let cfg = jwt_config(auth).replace("auth:\n", &format!("{second}auth:\n"));
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let get = |path: &str, tok: &str| {
        client()
            .get(s.url(path))
            .bearer_auth(tok.to_string())
            .send()
    };
    // `providers:` on a rule about a built-in route: second's admin in, main's admin out.
    assert_eq!(
        get("/api/admin/status", &t.second_admin)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/admin/status", &t.admin).await.unwrap().status(),
        403
    );
    // CEL's provider and iss.
    assert_eq!(get("/api/corp/x", &t.user).await.unwrap().status(), 404);
    assert_eq!(
        get("/api/corp/x", &t.second_admin).await.unwrap().status(),
        403
    );
    // The path a condition sees ignores case like the patterns do.
    for p in ["/api/internal/x", "/API/internal/x", "/api/INTERNAL/x"] {
        assert_eq!(get(p, &t.user).await.unwrap().status(), 403, "{p}");
    }
    // A rule naming an unknown provider is a config error with its key path.
    let bad = jwt_config("auth:\n  rules:\n    - providers: [nobody]\n      allow: true\n");
    let err = Server::try_start(&bad, &[jwt_plugin()], &[])
        .err()
        .expect("refused");
    assert!(err.contains("auth.rules[0].providers[0]"), "{err}");
}

#[tokio::test]
async fn a_plugin_cannot_vouch_for_an_issuer_it_did_not_declare() {
    let faulty = plugin("portcullis_test_faulty");
    let cfg = |user_issuer: &str| {
        format!(
            "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: f\n    plugin: faulty\n    config: {{ mode: ok, issuers: [\"https://f.test\"], user_issuer: \"{user_issuer}\" }}\nauth:\n  protected: [\"/api/*\"]\n"
        )
    };
    let me = |s: &Server| {
        client()
            .get(s.url("/api/auth/me"))
            .bearer_auth("good-amy")
            .send()
    };
    let s = Server::start(&cfg("https://f.test"), std::slice::from_ref(&faulty));
    assert_eq!(me(&s).await.unwrap().status(), 200);
    drop(s);
    let s = Server::start(&cfg("https://elsewhere.test"), &[faulty]);
    let r = me(&s).await.unwrap();
    assert_eq!(r.status(), 401);
}
