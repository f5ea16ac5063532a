#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The library inside a program (issue #20): the example notes service of `examples/embedded-app`,
//! its real binary on 127.0.0.1:0 with real plugin files, driven over HTTP. The YAML decides 401,
//! 403 and 200 on the service's own operations; its handlers receive the user the gate let
//! through; a config edit and a plugin swap apply while it runs; `/openapi.json` documents its
//! operations beside Portcullis's own, with `bearerAuth`.

use std::time::Duration;

use portcullis_tests::{
    claims, client, embedded_app, flavored_plugin, good_claims, hs256, jwt_plugin, plugin,
    poll_until, write_by_rename, Server, SECRET,
};
use serde_json::{json, Value};

/// The `auth:` rules of the example's own config: `/api/*` for any user, `/api/admin/*` for
/// `admin_condition`, `/api/public/*` for anyone.
fn auth_block(admin_condition: &str, public: &str) -> String {
    format!(
        "auth:\n  protected: [\"/api/*\"]\n  public: [\"/health\", \"/api/public/*\"{public}]\n  rules:\n    - path: /api/admin/*\n      condition: \"{admin_condition}\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n"
    )
}

/// The example's config for a test: one `jwt` instance (`main`), on 127.0.0.1:0, the documents on.
fn config(admin_condition: &str, public: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  build: {{ swagger_ui: true, openapi_docs: true }}\nplugins:\n  dir: plugins\nproviders:\n  - name: main\n    plugin: jwt\n    config:\n      secret: \"{SECRET}\"\n      issuer: [\"https://issuer.test\"]\n      audience: [\"api\"]\n{}",
        auth_block(admin_condition, public)
    )
}

fn start(cfg: &str) -> Server {
    Server::start_program(&embedded_app(), cfg, &[jwt_plugin()], &[])
}

fn token(sub: &str, extra: Value) -> String {
    hs256(SECRET, good_claims(sub, extra))
}

/// `(status, headers, body as JSON or Null)`.
async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().request(method.parse().unwrap(), s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_service_answers_as_its_yaml_says() {
    let s = start(&config("user.role == 'admin'", ""));
    let alice = token("alice", json!({}));
    let bob = token("bob", json!({}));
    let admin = token("root", json!({ "role": "admin" }));

    // No token, a forged one: the gate's answers, bodies and headers.
    let (status, headers, body) = call(&s, "GET", "/api/notes", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({ "error": "Authentication required" }));
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"portcullis\"");
    assert_eq!(headers["x-request-id"].len(), 24);
    let forged = hs256(
        "another-secret-0123456789abcdefghijklmnop",
        good_claims("alice", json!({})),
    );
    let (status, headers, body) = call(&s, "GET", "/api/notes", Some(&forged), None).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({ "error": "Invalid or expired token" }));
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    // A user writes notes and reads their own; the operations see who they are.
    let (status, _, note) = call(
        &s,
        "POST",
        "/api/notes",
        Some(&alice),
        Some(json!({ "text": "buy milk", "public": true })),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["owner"], "alice");
    assert_eq!(note["text"], "buy milk");
    let (status, _, private) = call(
        &s,
        "POST",
        "/api/notes",
        Some(&alice),
        Some(json!({ "text": "pin 1234" })),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, mine) = call(&s, "GET", "/api/notes", Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");
    let (status, _, theirs) = call(&s, "GET", "/api/notes", Some(&bob), None).await;
    assert_eq!(status, 200);
    assert_eq!(theirs, json!([]), "another user sees none of alice's notes");
    // The operation's own validation still runs behind the gate.
    let (status, _, _) = call(
        &s,
        "POST",
        "/api/notes",
        Some(&alice),
        Some(json!({ "text": "" })),
    )
    .await;
    assert_eq!(status, 400);

    // The public path needs no token, and shows only the public note.
    let (status, _, public) = call(&s, "GET", "/api/public/notes", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(public.as_array().unwrap().len(), 1, "{public}");
    assert_eq!(public[0]["id"], note["id"]);

    // The admin operation: 403 for a user without the role, 200 for an admin.
    let (status, _, body) = call(&s, "GET", "/api/admin/notes", Some(&alice), None).await;
    assert_eq!(status, 403);
    assert_eq!(body, json!({ "error": "Access denied" }));
    let (status, _, all) = call(&s, "GET", "/api/admin/notes", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (status, _, _) = call(&s, "DELETE", "/api/admin/notes/1", Some(&bob), None).await;
    assert_eq!(status, 403);

    // Deleting: only the owner's own notes.
    let id = private["id"].as_u64().unwrap();
    let (status, _, _) = call(&s, "DELETE", &format!("/api/notes/{id}"), Some(&bob), None).await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        &s,
        "DELETE",
        &format!("/api/notes/{id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, _, mine) = call(&s, "GET", "/api/notes", Some(&alice), None).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);

    // The same canonical path as the server: a dot segment cannot walk around a rule.
    let (status, _, _) = call(&s, "GET", "/api/notes/../admin/notes", Some(&alice), None).await;
    assert_eq!(status, 403);
    // A method the path does not have: 405 with the methods it has.
    let (status, headers, _) = call(&s, "PUT", "/api/notes", Some(&alice), None).await;
    assert_eq!(status, 405);
    let allow = headers["allow"].to_str().unwrap().to_string();
    for m in ["GET", "HEAD", "POST"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }

    // Portcullis's own endpoints are served beside the service's.
    let (status, _, body) = call(&s, "GET", "/health", None, None).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    let (status, _, me) = call(&s, "GET", "/api/auth/me", Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["provider"], "main");
    let (status, _, _) = call(&s, "GET", "/api/admin/status", Some(&alice), None).await;
    assert_eq!(status, 403);
    let (status, _, st) = call(&s, "GET", "/api/admin/status", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(st["generation"], 1);
}

#[tokio::test]
async fn the_plain_handler_receives_the_user_the_gate_let_through() {
    let s = start(&config("user.role == 'admin'", ""));
    let t = token(
        "carol",
        json!({ "role": "editor", "email": "carol@example.test" }),
    );
    let (status, _, who) = call(&s, "GET", "/api/whoami", Some(&t), None).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["provider"], "main");
    assert_eq!(who["subject"], "carol");
    assert_eq!(who["claims"]["role"], "editor");
    assert_eq!(who["claims"]["email"], "carol@example.test");
    assert_eq!(who["claims"]["iss"], "https://issuer.test");
    let (status, _, body) = call(&s, "GET", "/api/whoami", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({ "error": "Authentication required" }));
}

#[tokio::test]
async fn a_handler_that_needs_a_user_on_a_public_path_fails_closed() {
    // The config leaves the service's user-only paths public: the handlers are not reached.
    let s = start(&config(
        "user.role == 'admin'",
        ", \"/api/whoami\", \"/api/notes\"",
    ));
    let (status, _, body) = call(&s, "GET", "/api/whoami", None, None).await;
    assert_eq!(status, 500);
    assert_eq!(body, json!({ "error": "Internal Server Error" }));
    let (status, _, body) = call(&s, "GET", "/api/notes", None, None).await;
    assert_eq!(status, 500);
    assert_eq!(body, json!({ "error": "Internal Server Error" }));
    // Nothing was written through an operation that had no user.
    let (status, _, _) = call(
        &s,
        "POST",
        "/api/notes",
        None,
        Some(json!({ "text": "anonymous", "public": true })),
    )
    .await;
    assert_eq!(status, 500);
    let (_, _, public) = call(&s, "GET", "/api/public/notes", None, None).await;
    assert_eq!(public, json!([]));
    assert!(
        poll_until(Duration::from_secs(5), || async {
            s.log().contains("the handler needs a user")
        })
        .await,
        "the log says what to fix:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn a_config_edit_applies_inside_the_running_service() {
    let s = start(&config("user.role == 'admin'", ""));
    let editor = token("erin", json!({ "role": "editor" }));
    let (status, _, _) = call(&s, "GET", "/api/admin/notes", Some(&editor), None).await;
    assert_eq!(status, 403);
    let (status, _, _) = call(&s, "GET", "/api/notes", None, None).await;
    assert_eq!(status, 401);

    // Editors become admins of the notes; nothing else changes.
    write_by_rename(
        &s.config_path(),
        config("user.role in ['admin', 'editor']", "").as_bytes(),
    );
    assert!(
        poll_until(Duration::from_secs(10), || async {
            call(&s, "GET", "/api/admin/notes", Some(&editor), None)
                .await
                .0
                == 200
        })
        .await,
        "the edit was not applied; log:\n{}",
        s.log()
    );
    let (status, _, _) = call(&s, "GET", "/api/notes", None, None).await;
    assert_eq!(status, 401);
    let viewer = token("vic", json!({ "role": "viewer" }));
    let (status, _, _) = call(&s, "GET", "/api/admin/notes", Some(&viewer), None).await;
    assert_eq!(status, 403);

    // A broken edit is refused and the last good config keeps serving.
    write_by_rename(&s.config_path(), b"version: 1\nauth: [not, a, mapping]\n");
    assert!(
        poll_until(Duration::from_secs(10), || async {
            s.log().contains("reload rejected")
        })
        .await,
        "the broken edit was not refused; log:\n{}",
        s.log()
    );
    let (status, _, _) = call(&s, "GET", "/api/admin/notes", Some(&editor), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&s, "GET", "/api/notes", None, None).await;
    assert_eq!(status, 401);
}

/// The example's config with the test plugin `faulty` as its only provider (`f`): tokens are
/// `good-<sub>`, and the user carries the library's flavor in the `flavor` claim.
fn faulty_config() -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: f\n    plugin: faulty\n    config: {{ mode: ok }}\n{}",
        auth_block("user.role == 'admin'", "")
    )
}

async fn flavor(s: &Server) -> String {
    let (_, _, who) = call(s, "GET", "/api/whoami", Some("good-probe"), None).await;
    who["claims"]["flavor"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_plugin_swap_applies_inside_the_running_service() {
    let s = Server::start_program(
        &embedded_app(),
        &faulty_config(),
        &[plugin("portcullis_test_faulty")],
        &[],
    );
    assert_eq!(flavor(&s).await, "AAAAA");
    let (status, _, note) = call(
        &s,
        "POST",
        "/api/notes",
        Some("good-dana"),
        Some(json!({ "text": "before the swap" })),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["owner"], "dana");

    // A new version of the plugin, renamed over the old file in the service's plugins folder.
    let so = s.plugins_dir().join("libportcullis_test_faulty.so");
    write_by_rename(&so, &flavored_plugin("BBBBB"));
    assert!(
        poll_until(Duration::from_secs(10), || async {
            flavor(&s).await == "BBBBB"
        })
        .await,
        "the swap was not applied; log:\n{}",
        s.log()
    );
    // The service's own state lived through it, and its operations see the new plugin's users.
    let (status, _, mine) = call(&s, "GET", "/api/notes", Some("good-dana"), None).await;
    assert_eq!(status, 200);
    assert_eq!(mine[0]["text"], "before the swap");
    let (_, _, who) = call(&s, "GET", "/api/whoami", Some("good-dana"), None).await;
    assert_eq!(who["provider"], "f");
    assert_eq!(who["claims"]["flavor"], "BBBBB");

    // The plugin removed: its instance is retired and requests that need it fail closed.
    std::fs::remove_file(&so).unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || async {
            call(&s, "GET", "/api/notes", Some("good-dana"), None)
                .await
                .0
                == 503
        })
        .await,
        "a removed plugin still serves; log:\n{}",
        s.log()
    );
    let (status, _, _) = call(&s, "GET", "/api/public/notes", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_document_lists_the_services_operations_with_bearer_auth() {
    let s = start(&config("user.role == 'admin'", ""));
    let r = client().get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let spec: Value = r.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "Notes");
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    // Off in this config: not declared, and no operation names them.
    assert!(spec["components"]["securitySchemes"]
        .get("queryToken")
        .is_none());
    let paths = spec["paths"].as_object().unwrap();
    let bearer = json!([{ "bearerAuth": [] }]);
    for (path, method) in [
        ("/api/notes", "get"),
        ("/api/notes", "post"),
        ("/api/notes/{id}", "delete"),
        ("/api/admin/notes", "get"),
        ("/api/admin/notes/{id}", "delete"),
        // Portcullis's own, in the same document.
        ("/api/auth/me", "get"),
        ("/api/admin/status", "get"),
    ] {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"))[method];
        assert_eq!(op["security"], bearer, "{method} {path}: {op}");
        assert!(op["operationId"].is_string(), "{method} {path}: {op}");
    }
    let public = &paths["/api/public/notes"]["get"];
    assert!(public.get("security").is_none(), "{public}");
    assert!(paths.contains_key("/health"));
    assert!(paths.contains_key("/openapi.json"));
    assert!(spec.to_string().contains("NewNote"));

    // The Swagger UI page carries the same document.
    let r = client().get(s.url("/swagger-ui")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("/api/admin/notes") && page.contains("bearerAuth"));
}

#[tokio::test]
async fn the_examples_own_config_serves_as_its_readme_says() {
    // The file as shipped, on a free port; its plugins folder and secret from the environment it
    // reads them from.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/embedded-app/portcullis.yaml"),
    )
    .unwrap();
    assert!(shipped.contains("  port: 4112 "), "{shipped}");
    let cfg = shipped.replacen("  port: 4112 ", "  port: 0 ", 1);
    let s = Server::start_program(
        &embedded_app(),
        &cfg,
        &[jwt_plugin()],
        &[
            ("PORTCULLIS_HOST", "127.0.0.1"),
            ("JWT_AUTH_SECRET", SECRET),
            ("PORTCULLIS_PLUGINS_DIR", "plugins"),
        ],
    );
    let alice = hs256(SECRET, claims("alice", json!({})));
    let admin = hs256(SECRET, claims("root", json!({ "role": "admin" })));
    assert_eq!(call(&s, "GET", "/api/notes", None, None).await.0, 401);
    let (status, _, note) = call(
        &s,
        "POST",
        "/api/notes",
        Some(&alice),
        Some(json!({ "text": "buy milk", "public": true })),
    )
    .await;
    assert_eq!((status, &note["owner"]), (201, &json!("alice")));
    assert_eq!(
        call(&s, "GET", "/api/public/notes", None, None).await.0,
        200
    );
    assert_eq!(
        call(&s, "GET", "/api/admin/notes", Some(&alice), None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&s, "GET", "/api/admin/notes", Some(&admin), None)
            .await
            .0,
        200
    );
    let (status, _, who) = call(&s, "GET", "/api/whoami", Some(&alice), None).await;
    assert_eq!((status, &who["provider"]), (200, &json!("dev")));
    assert_eq!(call(&s, "GET", "/swagger-ui", None, None).await.0, 200);
}
