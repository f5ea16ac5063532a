#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! SECURITY.md "Paths", and many more spellings, sent raw over TCP (no client normalizes them)
//! against protected routes: never a 2xx without a valid token, never a 2xx on an admin route for
//! a non-admin, ambiguous encodings refused with 400 whoever asks, and the server keeps serving.

use portcullis_tests::{echo::Echo, *};
use serde_json::json;

const RULES: &str = "auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n";

/// Sends `request` bytes as they are and returns the status (0: no answer).
async fn raw_bytes(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Spellings of `/api/admin/status` and `/api/auth/me` that must never be served without the
/// right token. Each either fails auth (401/403), is not found after auth, or is refused (400).
fn spellings() -> Vec<String> {
    let mut v: Vec<String> = [
        // SECURITY.md's corpus.
        "/api/x/../admin/status",
        "/api/%2e%2e/api/admin/status",
        "/api%2Fadmin/status",
        "//api/admin/status",
        "/API/admin/status",
        "/api/admin/status/",
        "/api/admin/status;x",
        "/public/..%2F..%2Fapi/admin/status",
        "/api/admin/status?x=/health",
        // Dots, encoded or not, any case.
        "/api/./admin/status",
        "/api/%2e/admin/status",
        "/api/%2E/admin/status",
        "/api/x/%2e%2e/admin/status",
        "/api/x/%2E%2E/admin/status",
        "/api/x/.%2e/admin/status",
        "/api/x/%2e./admin/status",
        "/health/../api/admin/status",
        "/health/%2e%2e/api/admin/status",
        "/../api/admin/status",
        "/../../../../api/admin/status",
        "/api/admin/./status",
        "/api/admin/status/.",
        "/api/admin/status/..",
        "/api/admin/x/../status",
        "/api/admin/status..",
        "/api/admin/status.",
        "/api/admin./status",
        "/api/admin/status%2e",
        // Double encoding: `%25` is never decoded, so these stay literal (and unknown).
        "/api/%252e%252e/admin/status",
        "/health/%252e%252e/api/admin/status",
        "/api%252Fadmin/status",
        "/health%252F..%252Fapi/admin/status",
        // Slashes.
        "///api///admin///status",
        "/api//admin/status",
        "/api/admin//status",
        "/./api/admin/status",
        "/api/admin/status//",
        // Case.
        "/Api/Admin/Status",
        "/API/ADMIN/STATUS",
        "/api/ADMIN/status",
        "/api/admin/STATUS",
        "/aPi/auth/ME",
        "/API/AUTH/ME",
        // Matrix parameters and odd characters.
        "/api;x/admin/status",
        "/api/admin;x/status",
        "/api/admin/status;",
        "/api/admin/status;/../../health",
        "/api/admin/status%3Bx",
        "/api/admin/status%3F",
        "/api/admin/status%23",
        "/api/admin/status%20",
        "/api/admin/status~",
        "/api/%61dmin/status",
        "/%61pi/admin/status",
        "/api/admin/status?/health",
        "/api/admin/status#/health",
        "/api/auth/me?x=/health&y=../health",
        // Public prefixes around protected ones.
        "/health/../api/auth/me",
        "/health//../api/auth/me",
        "/health%2f../api/auth/me",
        "/health/..;/api/auth/me",
        "/health;/../api/auth/me",
        "/public/../api/auth/me",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(ambiguous().into_iter().map(|(s, _)| s));
    v
}

/// Ambiguous encodings: 400 `Bad request path` for everyone, token or not.
fn ambiguous() -> Vec<(String, &'static str)> {
    [
        ("/api%2Fadmin/status", "encoded slash"),
        ("/api%2fadmin/status", "encoded slash, lower case"),
        ("/api/admin%2Fstatus", "encoded slash, inner"),
        (
            "/health%2F..%2Fapi/admin/status",
            "encoded slashes around dots",
        ),
        ("/health%2f%2e%2e%2fapi/admin/status", "all encoded"),
        ("/api\\admin\\status", "backslashes"),
        ("/health\\..\\api\\admin\\status", "backslash traversal"),
        ("/api%5Cadmin/status", "encoded backslash"),
        ("/api%5cadmin/status", "encoded backslash, lower case"),
        (
            "/health/..%5C..%5Capi/admin/status",
            "encoded backslash traversal",
        ),
        ("/api/admin/status%00", "encoded NUL"),
        ("/api/admin/status%00.json", "encoded NUL before a suffix"),
        (
            "/health%00/../api/admin/status",
            "encoded NUL in a public prefix",
        ),
        ("/api/admin/status%0a", "encoded newline"),
        ("/api/admin/status%0D%0AX-Injected:%201", "encoded CRLF"),
        ("/api/admin/status%7f", "encoded DEL"),
        ("/api/%c0%ae%c0%ae/admin/status", "overlong UTF-8 dots"),
        ("/api/%c0%afadmin/status", "overlong UTF-8 slash"),
        ("/api/%e0%80%ae/admin/status", "3-byte overlong dot"),
        ("/api/%ff/admin/status", "invalid UTF-8"),
        ("/api/%ed%a0%80/admin/status", "UTF-16 surrogate"),
        ("/api/%zz/admin/status", "bad escape"),
        ("/api/%2/admin/status", "short escape"),
        ("/api/admin/status%", "trailing percent"),
        ("/api/%%32%65/admin/status", "escape of an escape"),
    ]
    .into_iter()
    .map(|(p, w)| (p.to_string(), w))
    .collect()
}

#[tokio::test]
async fn no_spelling_reaches_a_protected_route_without_the_right_token() {
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    let user = format!(
        "Bearer {}",
        hs256(SECRET, good_claims("u", json!({"role": "user"})))
    );
    let admin = format!(
        "Bearer {}",
        hs256(SECRET, good_claims("a", json!({"role": "admin"})))
    );
    let mut failures = Vec::new();
    for target in spellings() {
        let anon = raw_status(s.addr, &target, &[]).await;
        if (200..300).contains(&anon) || anon == 0 {
            failures.push(format!("{target}: {anon} without a token"));
        }
        if target.to_ascii_lowercase().contains("admin") {
            let u = raw_status(s.addr, &target, &[("authorization", &user)]).await;
            if (200..300).contains(&u) || u == 0 {
                failures.push(format!("{target}: {u} for a non-admin"));
            }
        }
    }
    for (target, what) in ambiguous() {
        for auth in [None, Some(&admin)] {
            let h: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let code = raw_status(s.addr, &target, &h).await;
            if code != 400 {
                failures.push(format!("{target} ({what}): {code}, want 400"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Control: the canonical spellings of the route are served to the admin.
    for target in [
        "/api/admin/status",
        "/api/x/../admin/status",
        "//api//admin/status",
        "/api/%61dmin/status",
    ] {
        assert_eq!(
            raw_status(s.addr, target, &[("authorization", &admin)]).await,
            200,
            "{target}"
        );
    }
    assert_eq!(raw_status(s.addr, "/health", &[]).await, 200);
}

#[tokio::test]
async fn raw_bytes_nul_and_overlong_paths_never_pass() {
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    let mut targets: Vec<Vec<u8>> = vec![
        b"/api/admin/status\x00".to_vec(),
        b"/health\x00/../api/admin/status".to_vec(),
        b"/api/\xc0\xae\xc0\xae/admin/status".to_vec(),
        b"/api/\xff/admin/status".to_vec(),
        b"/api/admin/status\t".to_vec(),
        b"/api/admin\x7f/status".to_vec(),
        b"/health/\xe2\x80\xae/../api/admin/status".to_vec(),
        b"api/admin/status".to_vec(),
        b"*".to_vec(),
        b"http://test/api/admin/status".to_vec(),
        b"http://test/health/../api/admin/status".to_vec(),
        b"http://test/api%2Fadmin/status".to_vec(),
    ];
    targets.push(format!("/api/{}", "a".repeat(9000)).into_bytes());
    targets.push(format!("/health/{}/../../api/admin/status", "x/".repeat(3000)).into_bytes());
    targets.push(format!("/api/admin/{}", "../".repeat(3000)).into_bytes());
    targets.push(format!("/health/{}", "%2e%2e/".repeat(2000)).into_bytes());
    for t in &targets {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(t);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let code = raw_bytes(s.addr, &req).await;
        assert!(
            !(200..300).contains(&code),
            "{} answered {code}",
            String::from_utf8_lossy(t)
        );
    }
    // The server still serves.
    let admin = format!(
        "Bearer {}",
        hs256(SECRET, good_claims("a", json!({"role": "admin"})))
    );
    assert_eq!(
        raw_status(s.addr, "/api/admin/status", &[("authorization", &admin)]).await,
        200
    );
}

/// Sends a raw GET for `target` and returns the status and the body.
async fn raw_answer(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The same corpus against routes forwarded to an upstream: `/open/*` is public and
/// `/open/vault/*` needs a user, as `/api/*` and `/api/admin/*` do above. Whatever the spelling,
/// the upstream never receives a `/open/vault` path from a caller without a token, and it only
/// ever sees canonical paths.
#[tokio::test]
async fn no_spelling_reaches_a_proxied_route_without_a_token() {
    let up = Echo::start().await;
    let cfg = jwt_config("auth:\n  protected: [\"/api/*\"]\n")
        + &format!(
            "routes:\n  - {{ path: /open/vault/*, upstream: \"{u}\" }}\n  - {{ path: /open/*, requires_auth: false, upstream: \"{u}\" }}\n",
            u = up.url()
        );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let user = format!(
        "Bearer {}",
        hs256(SECRET, good_claims("u", json!({"role": "user"})))
    );
    let moved = |t: &str| {
        t.replace("api", "open")
            .replace("API", "OPEN")
            .replace("admin", "vault")
            .replace("ADMIN", "VAULT")
    };
    let mut failures = Vec::new();
    let mut reached_upstream = 0;
    for target in spellings().iter().map(|t| moved(t)) {
        let (code, body) = raw_answer(s.addr, &target).await;
        if code == 0 {
            failures.push(format!("{target}: no answer"));
        }
        if (200..300).contains(&code) {
            reached_upstream += 1;
            let echo: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let path = echo["path"].as_str().unwrap_or("");
            if path.starts_with("/open/vault") || path.to_ascii_lowercase().contains("vault") {
                failures.push(format!("{target}: upstream got {path} without a token"));
            }
            if !path.starts_with('/')
                || path.contains("/./")
                || path.contains("/../")
                || path.contains("//")
            {
                failures.push(format!(
                    "{target}: upstream got a non-canonical path {path}"
                ));
            }
        }
    }
    for (target, what) in ambiguous() {
        let target = moved(&target);
        let code = raw_status(s.addr, &target, &[]).await;
        if code != 400 {
            failures.push(format!("{target} ({what}): {code}, want 400"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Controls: the public route is served without a token, the protected one only with it, and
    // the upstream sees the canonical path.
    assert!(
        reached_upstream > 0,
        "some spellings are public paths and were forwarded"
    );
    assert_eq!(raw_status(s.addr, "/open/x", &[]).await, 200);
    assert_eq!(raw_status(s.addr, "/open/vault/status", &[]).await, 401);
    assert_eq!(
        raw_status(s.addr, "/open/x/../vault/status", &[]).await,
        401
    );
    let r = client()
        .get(s.url("/open/x/../vault/status"))
        .bearer_auth(user.trim_start_matches("Bearer "))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/open/vault/status");
}
