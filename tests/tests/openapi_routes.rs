#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! One document for proxied routes: a route's `openapi:` (an upstream URL or a file) puts the
//! upstream's operations into `/openapi.json` and Swagger UI, under the paths clients call, with
//! the security the gate applies to the route; the document follows the YAML live; a document
//! that cannot be read is a warning in the status while the route serves. The merged document is
//! checked with an OpenAPI validator (openapi-spec-validator, from PyPI).

use std::{
    collections::HashMap,
    io::Write as _,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use portcullis_tests::{
    mock::{refused_port, MockServer, Reply},
    *,
};
use serde_json::{json, Value};

const RULES: &str = "auth:\n  rules:\n    - path: /api/admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /api/admin/*\n      allow: false\n    - allow: true\n";

/// Checks `doc` with openapi-spec-validator (the OpenAPI 3.0 schema and its reference checks).
fn validate(doc: &Value) {
    const SCRIPT: &str = "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(sys.stdin))\n";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the OpenAPI validator");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'openapi_spec_validator'"),
        "the validator is missing: `python3 -m pip install openapi-spec-validator==0.9.0` (.ci/run installs it)"
    );
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI:\n{err}"
    );
}

/// An upstream: `/openapi.json` and the other documents it is told to serve, and a JSON echo of
/// method and path everywhere else.
struct Upstream {
    server: MockServer,
    documents: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let documents: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let docs = documents.clone();
        let server = MockServer::start(move |req| {
            if let Some(r) = docs.lock().unwrap().get(&req.path) {
                return r.clone();
            }
            Reply::json(
                200,
                &json!({"upstream": true, "method": req.method, "path": req.path}),
            )
        })
        .await;
        let up = Upstream { server, documents };
        up.serve("/openapi.json", Reply::json(200, &upstream_document()));
        up
    }

    fn serve(&self, path: &str, reply: Reply) {
        self.documents.lock().unwrap().insert(path.into(), reply);
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}

/// What the upstream says of itself: operations below `/svc` and `/pub` (the proxy sends a
/// route's path as it is), one that tries to take Portcullis's own paths, names Portcullis uses
/// (`ErrorBody`, `getApiAdminStatus`), its own security scheme, and a description that would end
/// the Swagger UI page's script if it were pasted in as it is.
fn upstream_document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Items", "version": "1.0.0"},
        "servers": [{"url": "http://items.internal/"}],
        "tags": [{"name": "items", "description": "The items. </script><script>window.pwned = 1</script>"}],
        "paths": {
            "/svc/items": {
                "get": {
                    "operationId": "listItems",
                    "tags": ["items"],
                    "security": [{"itemsKey": []}],
                    "responses": {"200": {"description": "The items.", "content": {"application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}}}}}
                },
                "post": {
                    "operationId": "createItem",
                    "tags": ["items"],
                    "requestBody": {"$ref": "#/components/requestBodies/NewItem"},
                    "responses": {
                        "201": {"description": "Created.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}},
                        "400": {"description": "Refused.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
                    }
                }
            },
            "/svc/items/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "get": {"operationId": "getItem", "responses": {"200": {"description": "One item.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}}},
                "delete": {"operationId": "deleteItem", "responses": {"204": {"description": "Deleted."}}}
            },
            "/svc/status": {
                "get": {"operationId": "getApiAdminStatus", "responses": {"200": {"description": "Up."}}}
            },
            "/pub/ping": {
                "get": {"operationId": "ping", "responses": {"200": {"description": "Pong."}}}
            },
            "/api/admin/status": {
                "get": {"operationId": "stealStatus", "responses": {"200": {"description": "Not Portcullis's."}}}
            },
            "/health": {
                "get": {"operationId": "stealHealth", "responses": {"200": {"description": "Not Portcullis's."}}}
            }
        },
        "components": {
            "schemas": {
                "Item": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "string"},
                    "parent": {"$ref": "#/components/schemas/Item"}
                }},
                "ErrorBody": {"type": "object", "properties": {"reason": {"type": "string"}}}
            },
            "requestBodies": {
                "NewItem": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}
            },
            "securitySchemes": {"itemsKey": {"type": "apiKey", "in": "header", "name": "X-Items-Key"}}
        }
    })
}

fn config(routes: &str) -> String {
    format!("{}routes:\n{routes}", jwt_config(RULES))
}

fn admin() -> String {
    hs256(SECRET, good_claims("root", json!({"role": "admin"})))
}

async fn spec(s: &Server) -> Value {
    client()
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn status(s: &Server) -> Value {
    client()
        .get(s.url("/api/admin/status"))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = client().get(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn security_schemes(op: &Value) -> Vec<String> {
    op["security"]
        .as_array()
        .map(|reqs| {
            reqs.iter()
                .filter_map(Value::as_object)
                .flat_map(|r| r.keys().cloned())
                .collect()
        })
        .unwrap_or_default()
}

fn operation_ids(doc: &Value) -> Vec<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op.get("operationId").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

// Multi-threaded: the server reads the upstream's document while `Server::start` blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_operations_are_listed_under_the_route_with_the_gates_security() {
    let up = Upstream::start().await;
    let doc_url = up.url("/openapi.json");
    let s = Server::start(
        &config(&format!(
            "  - {{ path: /svc/*, upstream: \"{u}\", openapi: \"{doc_url}\" }}\n  - {{ path: /pub/*, requires_auth: false, upstream: \"{u}\", openapi: \"{doc_url}\" }}\n",
            u = up.url("")
        )),
        &[jwt_plugin()],
    );
    // The same server without the documents: Portcullis's own document.
    let plain = Server::start(
        &config(&format!(
            "  - {{ path: /svc/*, upstream: \"{u}\" }}\n  - {{ path: /pub/*, requires_auth: false, upstream: \"{u}\" }}\n",
            u = up.url("")
        )),
        &[jwt_plugin()],
    );
    let merged = spec(&s).await;
    let own = spec(&plain).await;
    validate(&own);
    validate(&merged);

    // Protected: the gate's schemes and answers, the prefixed names.
    let list = &merged["paths"]["/svc/items"]["get"];
    assert_eq!(list["operationId"], "svc.listItems");
    assert_eq!(list["tags"], json!(["svc.items"]));
    assert!(
        security_schemes(list).contains(&"bearerAuth".to_string()),
        "{list}"
    );
    assert!(
        !security_schemes(list).contains(&"itemsKey".to_string()),
        "{list}"
    );
    assert!(list["responses"]["401"].is_object(), "{list}");
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/svc.Item"
    );
    let create = &merged["paths"]["/svc/items"]["post"];
    assert_eq!(
        create["requestBody"]["$ref"],
        "#/components/requestBodies/svc.NewItem"
    );
    assert_eq!(
        create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/svc.ErrorBody"
    );
    for method in ["get", "delete"] {
        assert_eq!(
            security_schemes(&merged["paths"]["/svc/items/{id}"][method]),
            security_schemes(&own["paths"]["/api/auth/me"]["get"])
        );
    }
    assert_eq!(
        merged["paths"]["/svc/status"]["get"]["operationId"],
        "svc.getApiAdminStatus"
    );
    // Public: no security.
    let ping = &merged["paths"]["/pub/ping"]["get"];
    assert_eq!(ping["operationId"], "pub.ping");
    assert!(security_schemes(ping).is_empty(), "{ping}");
    // Each route has only what it serves: `/pub/*` does not list `/svc/...`, nor the reverse.
    assert!(merged["paths"].get("/pub/items").is_none());
    let svc_ids: Vec<String> = operation_ids(&merged)
        .into_iter()
        .filter(|id| id.starts_with("svc."))
        .collect();
    assert_eq!(svc_ids.len(), 5, "{svc_ids:?}");

    // Components carried over under the route's prefix; the upstream's scheme is not.
    let schemas = &merged["components"]["schemas"];
    assert_eq!(
        schemas["svc.Item"]["properties"]["parent"]["$ref"],
        "#/components/schemas/svc.Item"
    );
    assert!(schemas["pub.Item"].is_object());
    assert!(merged["components"]["securitySchemes"]
        .get("itemsKey")
        .is_none());

    // Portcullis's own operations, components and schemes are as they were.
    for (path, item) in own["paths"].as_object().unwrap() {
        assert_eq!(&merged["paths"][path], item, "{path} changed");
    }
    for (name, schema) in own["components"]["schemas"].as_object().unwrap() {
        assert_eq!(&schemas[name], schema, "schema {name} changed");
    }
    assert_eq!(
        merged["components"]["securitySchemes"],
        own["components"]["securitySchemes"]
    );
    let ids = operation_ids(&merged);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");

    // The status tells what each route took and left out.
    let st = status(&s).await;
    let docs = st["route_documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2, "{st}");
    assert_eq!(docs[0]["prefix"], "svc");
    assert_eq!(docs[0]["operations"], 5);
    assert_eq!(docs[1]["operations"], 1);
    let left_out = docs[0]["left_out"].to_string();
    assert!(
        left_out.contains("GET /api/admin/status (Portcullis answers this path itself)"),
        "{left_out}"
    );
    assert!(
        left_out.contains("GET /health (Portcullis answers this path itself)"),
        "{left_out}"
    );
    assert!(
        left_out.contains("GET /pub/ping (routes[1] serves it)"),
        "{left_out}"
    );

    // Swagger UI shows the same operations, and the upstream's text cannot end its script.
    let ui = client()
        .get(s.url("/swagger-ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ui.contains("svc.listItems"));
    assert!(
        !ui.contains("<script>window.pwned"),
        "the upstream's markup reached the page"
    );
    assert!(ui.contains("\\u003c/script\\u003e\\u003cscript\\u003ewindow.pwned"));

    // The routes serve as before.
    let (code, body) = get(&s, "/pub/ping", None).await;
    assert_eq!((code, &body["path"]), (200, &json!("/pub/ping")));
    assert_eq!(get(&s, "/svc/items", None).await.0, 401);
    let (code, body) = get(&s, "/svc/items", Some(&admin())).await;
    assert_eq!((code, &body["path"]), (200, &json!("/svc/items")));
}

// Multi-threaded: the server reads the upstream's document while `Server::start` blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_follows_the_route_when_the_yaml_changes() {
    let up = Upstream::start().await;
    let doc_url = up.url("/openapi.json");
    let route = |extra: &str| {
        config(&format!(
            "  - {{ path: /svc/*, upstream: \"{}\"{extra} }}\n",
            up.url("")
        ))
    };
    let s = Server::start(
        &route(&format!(", openapi: \"{doc_url}\"")),
        &[jwt_plugin()],
    );
    let before = spec(&s).await;
    assert!(security_schemes(&before["paths"]["/svc/items"]["get"]).contains(&"bearerAuth".into()));
    assert!(before["paths"]["/svc/status"].is_object());

    // The route becomes public: its operations lose their security.
    write_by_rename(
        &s.config_path(),
        route(&format!(", requires_auth: false, openapi: \"{doc_url}\"")).as_bytes(),
    );
    assert!(
        poll_until(Duration::from_secs(30), || async {
            let d = spec(&s).await;
            d["paths"]["/svc/items"]["get"]["security"] == json!([])
        })
        .await,
        "the document did not follow requires_auth: {}",
        s.log()
    );
    let now = spec(&s).await;
    validate(&now);

    // The route narrows to /svc/items: the rest of the document is left out.
    let narrow = config(&format!(
        "  - {{ path: /svc/items/*, upstream: \"{}\", openapi: \"{doc_url}\" }}\n",
        up.url("")
    ));
    write_by_rename(&s.config_path(), narrow.as_bytes());
    assert!(
        poll_until(Duration::from_secs(30), || async {
            spec(&s).await["paths"].get("/svc/status").is_none()
        })
        .await,
        "the narrower route still lists /svc/status: {}",
        s.log()
    );
    let now = spec(&s).await;
    validate(&now);
    // The names follow the route's path too.
    assert_eq!(
        now["paths"]["/svc/items/{id}"]["get"]["operationId"],
        "svc_items.getItem"
    );
    assert!(now["components"]["schemas"]["svc_items.Item"].is_object());
    assert!(now["components"]["schemas"].get("svc.Item").is_none());
    assert!(now["paths"]["/svc/items"]["get"].is_object());

    // Without `openapi:` the route's operations are gone; the route still serves.
    write_by_rename(&s.config_path(), route("").as_bytes());
    assert!(
        poll_until(Duration::from_secs(30), || async {
            spec(&s).await["paths"].get("/svc/items").is_none()
        })
        .await,
        "the operations stayed after `openapi:` was removed: {}",
        s.log()
    );
    let now = spec(&s).await;
    assert!(operation_ids(&now).iter().all(|id| !id.starts_with("svc.")));
    assert!(now["components"]["schemas"].get("svc.Item").is_none());
    assert_eq!(status(&s).await["route_documents"], json!([]));
    assert_eq!(get(&s, "/svc/items", Some(&admin())).await.0, 200);
}

// Multi-threaded: the server reads the upstream's document while `Server::start` blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_file_is_merged_and_read_again_when_it_changes() {
    let up = Upstream::start().await;
    let s = Server::start(
        &config(&format!(
            "  - {{ path: /svc/*, upstream: \"{}\" }}\n",
            up.url("")
        )),
        &[jwt_plugin()],
    );
    // A YAML document beside the config, named relative to it; it is added live.
    let file = s.dir.path().join("items.yaml");
    let yaml = serde_yaml::to_string(&upstream_document()).unwrap();
    std::fs::write(&file, &yaml).unwrap();
    write_by_rename(
        &s.config_path(),
        config(&format!(
            "  - {{ path: /svc/*, upstream: \"{}\", openapi: items.yaml }}\n",
            up.url("")
        ))
        .as_bytes(),
    );
    assert!(
        poll_until(Duration::from_secs(30), || async {
            spec(&s).await["paths"]["/svc/items"]["get"]["operationId"] == "svc.listItems"
        })
        .await,
        "the file's operations did not appear: {}",
        s.log()
    );
    validate(&spec(&s).await);
    let st = status(&s).await;
    assert_eq!(
        st["route_documents"][0]["source"],
        file.display().to_string()
    );
    assert!(
        st["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == file.display().to_string()),
        "the document is not among the files the snapshot was built from: {st}"
    );

    // The file changes: the next reload reads it again.
    let mut changed = upstream_document();
    changed["paths"]["/svc/extra"] =
        json!({"get": {"operationId": "extra", "responses": {"200": {"description": "More."}}}});
    write_by_rename(&file, serde_yaml::to_string(&changed).unwrap().as_bytes());
    // (The file watch may have read it first: then the admin reload finds nothing new.)
    let (code, body) = admin_reload(&s, &admin()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        spec(&s).await["paths"]["/svc/extra"]["get"]["operationId"],
        "svc.extra"
    );
}

// Multi-threaded: the server reads the upstream's document while `Server::start` blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_cannot_be_used_is_reported_and_the_route_still_serves() {
    let up = Upstream::start().await;
    up.serve(
        "/bad.json",
        Reply::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"openapi\": \"3.0.3\", \"paths\": {".to_vec(),
        },
    );
    // Over the 4 MiB limit, and valid JSON all the same.
    let mut huge = upstream_document();
    huge["info"]["description"] = "x".repeat(5 * 1024 * 1024).into();
    up.serve("/huge.json", Reply::json(200, &huge));
    up.serve(
        "/slow.json",
        Reply::Delay(
            Duration::from_secs(60),
            Box::new(Reply::json(200, &upstream_document())),
        ),
    );
    let down = refused_port();
    let routes = [
        ("/a/*", up.url("/bad.json")),
        ("/b/*", up.url("/missing.json")),
        ("/c/*", format!("http://{}/openapi.json", down.addr)),
        ("/d/*", up.url("/huge.json")),
        ("/e/*", up.url("/slow.json")),
        ("/f/*", "no-such-file.json".to_string()),
    ];
    up.serve(
        "/missing.json",
        Reply::json(404, &json!({"error": "Not Found"})),
    );
    let yaml: String = routes
        .iter()
        .map(|(path, doc)| {
            format!(
                "  - {{ path: \"{path}\", requires_auth: false, upstream: \"{}\", openapi: \"{doc}\" }}\n",
                up.url("")
            )
        })
        .collect();
    // Start is a reload like any other: it succeeds.
    let s = Server::start(&config(&yaml), &[jwt_plugin()]);
    let st = status(&s).await;
    assert_eq!(st["last_success"]["result"], "applied", "{st}");
    let warnings = st["last_success"]["warnings"].to_string();
    let docs = st["route_documents"].as_array().unwrap();
    for (i, want) in [
        "not valid JSON",
        "the upstream answered 404",
        "connection failed",
        "larger than 4194304 bytes",
        "timed out",
        "cannot read the file",
    ]
    .into_iter()
    .enumerate()
    {
        let error = docs[i]["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "routes[{i}]: {error} (want {want})");
        assert!(
            warnings.contains(&format!("routes[{i}].openapi")),
            "routes[{i}] is not among the warnings: {warnings}"
        );
        let (code, body) = get(&s, &format!("{}x", routes[i].0.trim_end_matches('*')), None).await;
        assert_eq!(code, 200, "routes[{i}] does not serve");
        assert_eq!(body["upstream"], true);
    }
    let merged = spec(&s).await;
    validate(&merged);
    assert!(merged["paths"]
        .as_object()
        .unwrap()
        .keys()
        .all(|p| !p.starts_with("/a/")));

    // A reload with the same problems is applied and says so.
    write_by_rename(
        &s.config_path(),
        config(&format!(
            "{yaml}  - {{ path: /g/*, requires_auth: false, upstream: \"{}\" }}\n",
            up.url("")
        ))
        .as_bytes(),
    );
    let (code, body) = admin_reload(&s, &admin()).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["result"] == "applied" || body["result"] == "unchanged",
        "{body}"
    );
    assert!(
        body["warnings"].to_string().contains("routes[2].openapi"),
        "{body}"
    );
    assert_eq!(get(&s, "/g/x", None).await.0, 200);
}
