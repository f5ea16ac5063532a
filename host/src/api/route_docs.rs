//! The routes' upstream documents (`reload::route_docs`) merged into the served `/openapi.json`
//! and Swagger UI: each operation with the security requirement the gate applies to its route,
//! and nothing that would take a place of the document it joins (a method and path, an operation
//! id, a component name or a tag it already has).

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::reload::route_docs::RouteDocuments;

/// The operation keys of a path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The gate's token schemes, in the order the built-in operations list them.
const TOKEN_SCHEMES: [&str; 3] = ["bearerAuth", "queryToken", "cookieToken"];

/// A built-in operation that needs a user: its 401 and 403 answers are the gate's, and so are a
/// protected route's.
const GATE_ANSWERS_FROM: &str = "/api/auth/me";

/// `base` (the finished built-in document) with every route document's operations, components
/// and tags. What is left out for a clash is logged.
pub fn merge(base: &Value, docs: &RouteDocuments) -> Value {
    let mut doc = base.clone();
    let schemes: Vec<&str> = TOKEN_SCHEMES
        .into_iter()
        .filter(|s| doc["components"]["securitySchemes"].get(*s).is_some())
        .collect();
    let protected_security: Vec<Value> = schemes.iter().map(|s| json!({ *s: [] })).collect();
    let gate_answers: Vec<(String, Value)> = ["401", "403"]
        .into_iter()
        .map(|code| {
            let answer = doc["paths"][GATE_ANSWERS_FROM]["get"]["responses"][code].clone();
            let answer = if answer.is_object() {
                answer
            } else {
                json!({ "description": "The gate's answer." })
            };
            (code.to_string(), answer)
        })
        .collect();
    let mut ids: HashSet<String> = HashSet::new();
    let mut shapes: HashSet<String> = HashSet::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            shapes.insert(shape(path));
            for op in item.as_object().into_iter().flat_map(|i| i.values()) {
                if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                    ids.insert(id.to_string());
                }
            }
        }
    }

    for d in &docs.routes {
        let Ok(ops) = &d.outcome else { continue };
        let clash = ops.components.iter().find_map(|(kind, items)| {
            let items = items.as_object()?;
            let have = doc["components"][kind.as_str()].as_object()?;
            items.keys().find(|n| have.contains_key(*n)).cloned()
        });
        if let Some(name) = clash {
            tracing::warn!(route = d.route, "routes[{}].openapi: the component `{name}` is already in the document; the route's operations are left out of it", d.route);
            continue;
        }
        let mut added: Map<String, Value> = Map::new();
        for (path, item) in &ops.paths {
            let Value::Object(item) = item else { continue };
            let s = shape(path);
            if shapes.contains(&s) {
                tracing::warn!(
                    route = d.route,
                    "routes[{}].openapi: {path} is already in the document; left out",
                    d.route
                );
                continue;
            }
            let mut item = item.clone();
            for method in METHODS {
                let Some(Value::Object(op)) = item.get_mut(method) else {
                    continue;
                };
                let id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .unwrap_or(method)
                    .to_string();
                let mut unique = id.clone();
                let mut n = 2;
                while !ids.insert(unique.clone()) {
                    unique = format!("{id}.{n}");
                    n += 1;
                }
                op.insert("operationId".into(), unique.into());
                if ops.requires_auth {
                    op.insert("security".into(), Value::Array(protected_security.clone()));
                    if let Some(Value::Object(responses)) = op.get_mut("responses") {
                        for (code, answer) in &gate_answers {
                            responses
                                .entry(code.clone())
                                .or_insert_with(|| answer.clone());
                        }
                    }
                    if let Some(providers) = &ops.providers {
                        op.insert("x-portcullis-providers".into(), json!(providers));
                        let line = format!("Only users vouched for by: {}.", providers.join(", "));
                        let text = match op.get("description").and_then(Value::as_str) {
                            Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                            _ => line,
                        };
                        op.insert("description".into(), text.into());
                    }
                } else {
                    op.insert("security".into(), json!([]));
                }
            }
            shapes.insert(s);
            added.insert(path.clone(), Value::Object(item));
        }
        if let Some(paths) = doc["paths"].as_object_mut() {
            paths.extend(added);
        }
        let components = object_at(&mut doc, "components");
        for (kind, items) in &ops.components {
            if let (Value::Object(target), Some(items)) =
                (object_at(components, kind), items.as_object())
            {
                target.extend(items.clone());
            }
        }
        if !ops.tags.is_empty() {
            if !doc["tags"].is_array() {
                doc["tags"] = json!([]);
            }
            if let Some(tags) = doc["tags"].as_array_mut() {
                for t in &ops.tags {
                    if !tags.iter().any(|o| o["name"] == t["name"]) {
                        tags.push(t.clone());
                    }
                }
            }
        }
    }
    doc
}

/// `value[key]`, made an object when it is not one.
fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Value {
    if !value[key].is_object() {
        value[key] = json!({});
    }
    &mut value[key]
}

/// A path with its parameter names taken out: `/a/{id}` and `/a/{name}` are one path.
fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// JSON text that may stand inside an HTML `<script>` element: `<`, `>` and `&` only occur in
/// JSON strings, where their `\u` escapes mean the same, so an upstream's `</script>` cannot end
/// the element.
pub fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use serde_json::json;

    use super::*;
    use crate::reload::route_docs::{Operations, RouteDocument};

    fn base() -> Value {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Portcullis", "version": "1"},
            "paths": {
                "/api/auth/me": {"get": {
                    "operationId": "getApiAuthMe",
                    "responses": {"401": {"description": "gate 401"}, "403": {"description": "gate 403"}},
                    "security": [{"bearerAuth": []}],
                }},
                "/api/notes/{id}": {"get": {"operationId": "getNote", "responses": {}}},
            },
            "components": {
                "schemas": {"ErrorBody": {"type": "object"}},
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            },
            "tags": [{"name": "Admin"}],
        })
    }

    fn route(i: usize, requires_auth: bool, paths: Value) -> RouteDocument {
        RouteDocument {
            route: i,
            path: "/svc/*".into(),
            source: "svc.json".into(),
            prefix: "svc".into(),
            outcome: Ok(Operations {
                requires_auth,
                providers: requires_auth.then(|| vec!["jwt".to_string()]),
                paths: paths.as_object().unwrap().clone(),
                components: json!({"schemas": {"svc.Item": {"type": "object"}}})
                    .as_object()
                    .unwrap()
                    .clone(),
                tags: vec![json!({"name": "svc"})],
                left_out: vec![],
            }),
        }
    }

    #[test]
    fn operations_get_the_gates_security_and_unique_ids() {
        let docs = RouteDocuments {
            routes: vec![
                route(
                    0,
                    true,
                    json!({"/svc/a": {"get": {"operationId": "getApiAuthMe", "responses": {"200": {"description": "ok"}}}}}),
                ),
                route(
                    1,
                    false,
                    json!({"/pub/b": {"post": {"operationId": "x", "responses": {}}}}),
                ),
            ],
        };
        // The second route's component has the first's name: it is left out whole.
        let merged = merge(&base(), &docs);
        let a = &merged["paths"]["/svc/a"]["get"];
        assert_eq!(a["security"], json!([{"bearerAuth": []}]));
        assert_eq!(a["operationId"], "getApiAuthMe.2");
        assert_eq!(a["responses"]["401"]["description"], "gate 401");
        assert_eq!(a["x-portcullis-providers"], json!(["jwt"]));
        assert!(merged["paths"].get("/pub/b").is_none());
        assert_eq!(
            merged["components"]["schemas"]["svc.Item"]["type"],
            "object"
        );
        assert_eq!(merged["tags"], json!([{"name": "Admin"}, {"name": "svc"}]));

        let docs = RouteDocuments {
            routes: vec![route(
                1,
                false,
                json!({"/pub/b": {"post": {"responses": {}}}}),
            )],
        };
        let merged = merge(&base(), &docs);
        assert_eq!(merged["paths"]["/pub/b"]["post"]["security"], json!([]));
    }

    #[test]
    fn a_path_the_document_has_is_not_taken() {
        let docs = RouteDocuments {
            routes: vec![route(
                0,
                true,
                json!({"/api/notes/{noteId}": {"delete": {"responses": {}}}, "/api/auth/me": {"post": {"responses": {}}}}),
            )],
        };
        let merged = merge(&base(), &docs);
        assert_eq!(merged["paths"], base()["paths"]);
    }

    #[test]
    fn script_safe_text_is_the_same_json() {
        let text = r#"{"d":"</script><script>alert(1)</script> & \u2028"}"#;
        let safe = script_safe(text);
        assert!(!safe.contains('<') && !safe.contains('>'));
        let a: Value = serde_json::from_str(text).unwrap();
        let b: Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(a, b);
    }
}
