#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Forward auth behind a real nginx (Debian's package; `.ci/run` installs it): nginx's
//! `auth_request` asks Portcullis about every request and passes the identity header to a local
//! upstream. The test starts nginx itself (`daemon off`, its own prefix, the current user) and
//! fails — never skips — when nginx is missing.

use portcullis_tests::{echo::Echo, proxies::Proxy, *};
use serde_json::{json, Value};

#[tokio::test]
async fn nginx_auth_request_lets_in_refuses_and_passes_the_identity() {
    let up = Echo::start().await;
    let auth = "auth:\n  protected: [\"/api/*\", \"/admin/*\"]\n  rules:\n    - path: /admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /admin/*\n      allow: false\n    - allow: true\n";
    let cfg = jwt_config(auth) + "gateway:\n  forward_auth: nginx\n";
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let nginx = Proxy::nginx(&format!("http://{}", s.addr), &up.url()).await;
    let user = hs256(SECRET, good_claims("nina", json!({"role": "user"})));
    let admin = hs256(SECRET, good_claims("ada", json!({"role": "admin"})));
    let get = |path: &str, token: Option<&str>, spoof: bool| {
        let mut r = client().get(nginx.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if spoof {
            r = r.header("x-user-id", "mallory");
        }
        r.send()
    };

    // Allowed: the upstream sees the identity nginx took from Portcullis's answer.
    let r = get("/api/orders?page=2", Some(&user), false).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["path"], "/api/orders");
    assert_eq!(b["headers"]["x-user-id"], "nina", "{b}");
    // Unauthenticated: 401 from nginx, nothing reaches the upstream.
    let r = get("/api/orders", None, false).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = get("/api/orders", Some("not-a-token"), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Denied by a rule: 403.
    let r = get("/admin/panel", Some(&user), false).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = get("/admin/panel", Some(&admin), false).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["headers"]["x-user-id"], "ada");
    // Public: no token needed.
    let r = get("/health-of-upstream", None, false).await.unwrap();
    assert_eq!(r.status(), 200);
    // A client's own identity header is refused, with a token or without: only Portcullis says
    // who the user is.
    for token in [None, Some(user.as_str())] {
        let r = get("/health-of-upstream", token, true).await.unwrap();
        assert!(!r.status().is_success(), "{}", r.status());
    }
    assert!(
        up.seen()
            .iter()
            .all(|b| b["headers"]["x-user-id"] != "mallory"),
        "{:?}",
        up.seen()
    );
    // nginx forwards the raw target: a dot-segment walk into /admin is not judged in another
    // form than the upstream sees; it is refused (nginx answers 500 for the 400), and never
    // reaches the upstream.
    let before = up.seen().len();
    let code = raw_status(
        nginx.addr(),
        "/public/../admin/panel",
        &[("authorization", &format!("Bearer {admin}"))],
    )
    .await;
    assert!(!(200..300).contains(&code), "{code}");
    assert_eq!(up.seen().len(), before);
}
