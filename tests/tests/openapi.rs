#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The API matches its own spec: 405 with `Allow`, an id on every operation, every answer and
//! header the gate can give declared, no `null` where the spec says string, and the large
//! documents compressed on request. (`scripts/api-contract.sh` checks the same with a
//! property-based tester.)

use std::io::Read as _;

use portcullis_tests::*;
use serde_json::{json, Value};

const RULES: &str = "auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - path: /api/*\n      allow: true\n";

fn admin() -> String {
    hs256(SECRET, good_claims("root", json!({"role": "admin"})))
}

async fn get_spec(s: &Server) -> Value {
    client()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn undeclared_methods_get_405_with_the_allow_header() {
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    let t = admin();
    for (method, path, allow) in [
        ("TRACE", "/health", "GET, HEAD"),
        ("DELETE", "/health", "GET, HEAD"),
        ("PUT", "/api/admin/reload", "POST"),
        ("GET", "/api/admin/explain", "POST"),
        ("POST", "/api/admin/status", "GET, HEAD"),
        ("PATCH", "/openapi.json", "GET, HEAD"),
        ("POST", "/swagger-ui", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(
            r.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
        assert!(r.headers().contains_key("x-request-id"));
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "Method Not Allowed"})
        );
    }
    // A path nobody serves is 404, not 405.
    let r = client()
        .request("TRACE".parse().unwrap(), s.url("/api/nothing-here"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.headers().contains_key("allow"));
}

#[tokio::test]
async fn every_operation_has_a_unique_operation_id_and_every_route_is_documented() {
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    let spec = get_spec(&s).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut count = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            count += 1;
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_string()), "{id} is used twice");
        }
    }
    assert!(count >= 12, "{count} operations");
    assert_eq!(
        spec["paths"]["/api/admin/status"]["get"]["operationId"],
        "getApiAdminStatus"
    );
    for path in [
        "/metrics",
        "/openapi.json",
        "/swagger-ui",
        "/api/admin/explain",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is not documented");
    }
    // The page embeds the same document (ids included).
    let ui = client()
        .get(s.url("/swagger-ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ui.contains("\"operationId\": \"getApiAdminStatus\""));
}

#[tokio::test]
async fn the_spec_declares_the_token_schemes_headers_and_gate_answers() {
    let auth = RULES.replace(
        "auth:\n",
        "auth:\n  token: { query: access_token, cookie: session }\n",
    );
    let s = Server::start(&jwt_config(&auth), &[jwt_plugin()]);
    let spec = get_spec(&s).await;
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["queryToken"]["type"], "apiKey");
    assert_eq!(schemes["queryToken"]["in"], "query");
    assert_eq!(schemes["queryToken"]["name"], "access_token");
    assert_eq!(schemes["cookieToken"]["in"], "cookie");
    assert_eq!(schemes["cookieToken"]["name"], "session");
    let me = &spec["paths"]["/api/auth/me"]["get"];
    for scheme in ["bearerAuth", "queryToken", "cookieToken"] {
        assert!(
            me["security"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.get(scheme).is_some()),
            "{scheme} not on /api/auth/me"
        );
    }
    let header = |resp: &Value, name: &str| {
        resp["headers"]
            .as_object()
            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case(name)))
    };
    assert!(header(&me["responses"]["401"], "www-authenticate"));
    assert!(header(
        &spec["paths"]["/api/admin/explain"]["post"]["responses"]["401"],
        "www-authenticate"
    ));
    assert!(spec["paths"]["/api/admin/explain"]["post"]["responses"]["415"].is_object());
    // A refused reload is a 422 with the same body as a 200, so `curl -f` notices it.
    let reload = &spec["paths"]["/api/admin/reload"]["post"]["responses"];
    assert_eq!(
        reload["422"]["content"]["application/json; charset=utf-8"]["schema"],
        reload["200"]["content"]["application/json; charset=utf-8"]["schema"],
        "{reload}"
    );
    assert!(reload["422"]["content"].is_object(), "{reload}");
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for code in ["400", "413", "504"] {
                assert!(
                    op["responses"][code].is_object(),
                    "{method} {path} does not declare {code}"
                );
            }
            for (code, resp) in op["responses"].as_object().unwrap() {
                assert!(
                    header(resp, "x-request-id"),
                    "{method} {path} {code} does not declare x-request-id"
                );
            }
        }
    }

    // Without the opt-in, the spec does not offer those schemes.
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    let spec = get_spec(&s).await;
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(
        schemes.keys().collect::<Vec<_>>(),
        vec!["bearerAuth"],
        "{schemes:?}"
    );
    assert_eq!(
        spec["paths"]["/api/auth/me"]["get"]["security"],
        json!([{"bearerAuth": []}])
    );
}

#[tokio::test]
async fn plugin_error_is_absent_or_a_string_never_null() {
    let s = Server::start(
        &jwt_config(RULES),
        &[jwt_plugin(), plugin("portcullis_test_not_a_plugin")],
    );
    let t = admin();
    let get = |path: &'static str| {
        let r = client().get(s.url(path)).bearer_auth(&t).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let listed = get("/api/admin/plugins").await;
    let status = get("/api/admin/status").await;
    for list in [&listed, &status["plugins"]] {
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        for p in list {
            let p = p.as_object().unwrap();
            assert!(
                p.values().all(|v| !v.is_null()),
                "a null where the spec says otherwise: {p:?}"
            );
            match p.get("name").and_then(Value::as_str) {
                Some("jwt") => assert!(!p.contains_key("error"), "{p:?}"),
                _ => assert!(p["error"].is_string(), "{p:?}"),
            }
        }
    }
    // No null anywhere in the status (the spec marks nothing nullable).
    fn no_null(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Array(a) => a.iter().all(no_null),
            Value::Object(o) => o.values().all(no_null),
            _ => true,
        }
    }
    assert!(no_null(&status), "{status}");
}

#[tokio::test]
async fn swagger_ui_and_spec_are_gzip_compressed_when_asked_and_still_correct() {
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    for path in ["/swagger-ui", "/openapi.json"] {
        let plain = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(plain.status(), 200);
        assert!(!plain.headers().contains_key("content-encoding"));
        assert_eq!(plain.headers()["vary"], "accept-encoding");
        let plain = plain.bytes().await.unwrap();

        let gz = client()
            .get(s.url(path))
            .header("accept-encoding", "br;q=1.0, gzip;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(gz.status(), 200);
        assert_eq!(gz.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(gz.headers()["vary"], "accept-encoding");
        let packed = gz.bytes().await.unwrap();
        assert!(
            packed.len() * 2 < plain.len(),
            "{path}: {} of {} bytes",
            packed.len(),
            plain.len()
        );
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(
            unpacked, plain,
            "{path}: the compressed body is the same page"
        );

        // gzip refused by weight 0, or not offered: the plain page.
        for accept in ["gzip;q=0, br", "identity", "*;q=0"] {
            let r = client()
                .get(s.url(path))
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert!(!r.headers().contains_key("content-encoding"), "{accept}");
            assert_eq!(r.bytes().await.unwrap(), plain);
        }
    }
    let html = String::from_utf8(
        client()
            .get(s.url("/swagger-ui"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("SwaggerUIBundle") && html.contains("/api/auth/me"));
}

#[tokio::test]
async fn explain_names_the_provider_its_reason_names_and_answers_what_the_schema_allows() {
    let s = Server::start(&jwt_config(RULES), &[jwt_plugin()]);
    let t = admin();
    let explain = |body: Value| {
        let r = client()
            .post(s.url("/api/admin/explain"))
            .bearer_auth(&t)
            .json(&body)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // A token the provider refuses: the reason names `main`, and so does `provider`.
    let forged = hs256(
        "another-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        good_claims("eve", json!({})),
    );
    let (code, e) =
        explain(json!({"method": "GET", "path": "/api/auth/me", "token": forged})).await;
    assert_eq!(code, 200);
    assert_eq!(e["status"], 401);
    assert!(e["reason"].as_str().unwrap().contains("main"), "{e}");
    assert_eq!(e["provider"], "main", "{e}");
    assert!(!e.as_object().unwrap().values().any(Value::is_null), "{e}");

    // Schema-valid but unsendable: explained as the 400 it would get.
    let (code, e) = explain(json!({"method": "", "path": ""})).await;
    assert_eq!(code, 200);
    assert_eq!(e["status"], 400);
    assert_eq!(e["decision"], "deny");
    let (code, e) =
        explain(json!({"method": "GET", "path": "/", "headers": {"bad name": "x"}})).await;
    assert_eq!((code, e["status"].clone()), (200, json!(400)));

    // Not what the schema says: refused.
    for body in [
        json!({"method": "GET", "path": "/", "token": null}),
        json!({"method": "GET", "path": "/", "token": 5}),
        json!({"method": 1, "path": "/"}),
        json!({"method": "GET", "path": "/", "headers": null}),
    ] {
        assert_eq!(explain(body.clone()).await.0, 400, "{body}");
    }
    let r = client()
        .post(s.url("/api/admin/explain"))
        .bearer_auth(&t)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}
