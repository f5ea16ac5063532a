//! The upstream OpenAPI documents that `routes:` entries name (`openapi:`), read when a snapshot
//! is built and turned into what `/openapi.json` shows of each route: the operations the route
//! really serves, at the paths a client calls, with prefixed operation ids, tags and component
//! names. The security requirements are set when the document is merged (`api`), from the gate's
//! own schemes.
//!
//! A document that cannot be read or used never fails the build: the route serves all the same,
//! and the problem is one warning line of the reload.
//!
//! The document is hostile input: it is read up to [`MAX_DOCUMENT_BYTES`] within
//! [`FETCH_TIMEOUT`], parsed with the JSON (or YAML) reader's nesting limit, never resolved
//! (a `$ref` is only renamed, so loops cost nothing), and none of its operations may sit on a path
//! Portcullis answers itself or that another route serves.

use std::{
    collections::{HashMap, HashSet},
    io::Read as _,
    path::Path,
    time::Duration,
};

use serde_json::{Map, Value};

use crate::{
    auth::is_builtin_route,
    config::{is_reserved, Config, OpenApiSource, RouteConfig, RoutesConfig},
    keys::HttpClient,
    matching::canonicalize,
};

/// How long fetching one document may take (all are fetched at the same time).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document read, fetched or from a file (what a key set may be).
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Most operations listed by name in one warning line.
const LISTED: usize = 5;

/// The operation keys of a path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The component kinds carried over (renamed); `securitySchemes` is not: the gate's schemes
/// replace the upstream's.
const COMPONENT_KINDS: [&str; 8] = [
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "links",
    "callbacks",
];

/// Every route document of a snapshot, in route order.
#[derive(Debug, Default)]
pub struct RouteDocuments {
    /// One per route with `openapi:`.
    pub routes: Vec<RouteDocument>,
}

/// One route's document.
#[derive(Debug)]
pub struct RouteDocument {
    /// Index in `config.routes.list`.
    pub route: usize,
    /// The route's path pattern.
    pub path: String,
    /// Where the document was read (a URL without its query).
    pub source: String,
    /// What the route's operation ids, tags and component names start with (then a `.`).
    pub prefix: String,
    /// Its operations, or why there are none.
    pub outcome: Result<Operations, String>,
}

/// What a route's document adds to `/openapi.json`.
#[derive(Debug, Default)]
pub struct Operations {
    /// Whether the gate needs a user on the route (`requires_auth`).
    pub requires_auth: bool,
    /// The provider instances the route accepts users of (`providers`); `None`: any.
    pub providers: Option<Vec<String>>,
    /// Path items by the path a client calls, the operations already renamed.
    pub paths: Map<String, Value>,
    /// Components by kind, renamed, their `$ref`s rewritten.
    pub components: Map<String, Value>,
    /// Tag objects, renamed.
    pub tags: Vec<Value>,
    /// Operations of the document the route does not serve: `METHOD path (why)`.
    pub left_out: Vec<String>,
}

impl Operations {
    /// How many operations are carried over.
    pub fn count(&self) -> usize {
        self.paths
            .values()
            .filter_map(Value::as_object)
            .map(|item| {
                item.keys()
                    .filter(|k| METHODS.contains(&k.as_str()))
                    .count()
            })
            .sum()
    }
}

impl RouteDocuments {
    /// Whether no route names a document.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// One line per document that could not be used, and per document with operations the route
    /// does not serve: the reload's warnings.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.routes {
            let at = format!("routes[{}].openapi ({})", d.route, d.source);
            match &d.outcome {
                Err(e) => out.push(format!(
                    "{at}: {e}; the route serves, its operations are left out of /openapi.json"
                )),
                Ok(ops) if !ops.left_out.is_empty() => {
                    let mut listed = ops.left_out[..ops.left_out.len().min(LISTED)].join(", ");
                    if ops.left_out.len() > LISTED {
                        listed.push_str(&format!(", and {} more", ops.left_out.len() - LISTED));
                    }
                    out.push(format!(
                        "{at}: {} operation(s) of the document are not served by this route and are left out of /openapi.json: {listed}",
                        ops.left_out.len()
                    ));
                }
                Ok(_) => {}
            }
        }
        out
    }
}

/// Reads the document of every route that names one (at the same time, each within
/// [`FETCH_TIMEOUT`]) and keeps what the route serves of it. Nothing is read while the server
/// serves neither `/openapi.json` nor Swagger UI (`server.build`).
pub async fn load(config: &Config, http: &HttpClient) -> RouteDocuments {
    if !config.server.openapi_docs && !config.server.swagger_ui {
        return RouteDocuments::default();
    }
    let routes = &config.routes;
    let mut taken = HashSet::new();
    let mut wanted = Vec::new();
    for (i, route) in routes.list.iter().enumerate() {
        if let Some(source) = &route.openapi {
            let prefix = unique_prefix(&route.path, i, &mut taken);
            wanted.push((i, route, source, prefix));
        }
    }
    if wanted.is_empty() {
        return RouteDocuments::default();
    }
    let reads = wanted.iter().map(|(_, _, source, _)| read(source, http));
    let texts = futures_util::future::join_all(reads).await;
    let docs = wanted
        .into_iter()
        .zip(texts)
        .map(|((i, route, source, prefix), text)| {
            let outcome = text
                .and_then(|bytes| parse(&bytes))
                .and_then(|doc| operations(i, route, routes, &prefix, doc));
            RouteDocument {
                route: i,
                path: route.path.clone(),
                source: shown_source(source),
                prefix,
                outcome,
            }
        })
        .collect();
    RouteDocuments { routes: docs }
}

/// A URL without its query (which may carry a key), or the file's path.
fn shown_source(source: &OpenApiSource) -> String {
    match source {
        OpenApiSource::Url(u) => {
            let mut u = u.clone();
            u.set_query(None);
            u.to_string()
        }
        OpenApiSource::File(p) => p.display().to_string(),
    }
}

async fn read(source: &OpenApiSource, http: &HttpClient) -> Result<Vec<u8>, String> {
    match source {
        OpenApiSource::Url(url) => {
            let accept = [("accept", "application/json, application/yaml;q=0.9")];
            let r = http
                .get_capped(url.as_str(), &accept, FETCH_TIMEOUT, MAX_DOCUMENT_BYTES)
                .await?;
            if !(200..300).contains(&r.status) {
                return Err(format!("the upstream answered {}", r.status));
            }
            Ok(r.body)
        }
        OpenApiSource::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_file(&path))
                .await
                .unwrap_or_else(|_| Err("reading the file failed".into()))
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut out = Vec::new();
    // One byte past the limit tells a file over it from one exactly at it.
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if out.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// JSON, or YAML when the text does not start with `{`. Both readers limit nesting (128 levels).
fn parse(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the document is not UTF-8 text")?;
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let e = e.to_string();
            format!(
                "neither JSON nor valid YAML: {}",
                shown(e.lines().next().unwrap_or("syntax error"))
            )
        })
    }
}

/// An upstream's text in a message: one line, at most 80 characters.
fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// The route's literal leading segments joined with `_` (`/svc/v1/*` → `svc_v1`), or
/// `route<i>`; made unique among the routes.
fn unique_prefix(path: &str, index: usize, taken: &mut HashSet<String>) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .take_while(|s| *s != "*" && !s.starts_with(':'))
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    let base = if words.is_empty() {
        format!("route{index}")
    } else {
        words.join("_")
    };
    let mut prefix = base.clone();
    let mut n = index;
    while !taken.insert(prefix.clone()) {
        prefix = format!("{base}_{n}");
        n += 1;
    }
    prefix
}

/// The path part of the first server's URL (`https://host/v1/` or `/v1` → `/v1`), without a
/// trailing `/`; `None` when there are no servers.
fn servers_path(servers: Option<&Value>) -> Option<String> {
    let url = servers?.as_array()?.first()?.get("url")?.as_str()?;
    let path = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            after.find('/').map_or("", |j| &after[j..])
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    Some(path.trim_end_matches('/').to_string())
}

/// The path a client sends for the upstream path `full`: the proxy appends the client's path to
/// the upstream URL's path, so this is `full` without that path.
fn client_path(full: &str, upstream_base: &str) -> Option<String> {
    let rest = full.strip_prefix(upstream_base)?;
    if rest.is_empty() {
        Some("/".into())
    } else if rest.starts_with('/') {
        Some(rest.to_string())
    } else {
        None
    }
}

/// `path` with each `{parameter}` replaced by a segment of one letter, as a request would have it;
/// `None` for unbalanced braces.
fn sample_path(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match (c, in_param) {
            ('{', false) => in_param = true,
            ('}', true) => {
                in_param = false;
                out.push('x');
            }
            ('{' | '}', _) => return None,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    (!in_param).then_some(out)
}

/// Why the route does not serve `method` on the client path `path`, if it does not.
fn not_served(index: usize, routes: &RoutesConfig, method: &str, path: &str) -> Option<String> {
    let Some(sample) = sample_path(path) else {
        return Some("unbalanced braces in the path".into());
    };
    if canonicalize(&sample).ok().as_deref() != Some(sample.as_str()) {
        return Some("not a canonical path".into());
    }
    if is_builtin_route(method, &sample) || is_reserved(&sample) {
        return Some("Portcullis answers this path itself".into());
    }
    match routes.find(method, &sample) {
        Some(i) if i == index => None,
        Some(i) => Some(format!("routes[{i}] serves it")),
        None => Some("outside the route's path or methods".into()),
    }
}

/// What `route` (the `index`-th) serves of `doc`, renamed with `prefix`.
fn operations(
    index: usize,
    route: &RouteConfig,
    routes: &RoutesConfig,
    prefix: &str,
    doc: Value,
) -> Result<Operations, String> {
    let Value::Object(mut doc) = doc else {
        return Err("not an OpenAPI document (an object)".into());
    };
    match doc.get("openapi") {
        Some(Value::String(v)) if v.starts_with("3.0.") => {}
        Some(Value::String(v)) => {
            return Err(format!(
                "OpenAPI `{}` is not merged: Portcullis serves an OpenAPI 3.0 document; give a 3.0.x document",
                shown(v)
            ))
        }
        _ if doc.contains_key("swagger") => {
            return Err("a Swagger 2.0 document; give an OpenAPI 3.0.x document".into())
        }
        _ => return Err("no `openapi: 3.0.x` field: not an OpenAPI 3.0 document".into()),
    }
    let Some(Value::Object(paths)) = doc.remove("paths") else {
        return Err("the document has no `paths`".into());
    };

    // Components, renamed; their old references.
    let mut renames: HashMap<String, String> = HashMap::new();
    let mut components = Map::new();
    if let Some(Value::Object(mut all)) = doc.remove("components") {
        for kind in COMPONENT_KINDS {
            let Some(Value::Object(items)) = all.remove(kind) else {
                continue;
            };
            let mut renamed = Map::new();
            for (name, value) in items {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                {
                    return Err(format!(
                        "`{}` is not a component name (letters, digits, `.`, `-`, `_`)",
                        shown(&name)
                    ));
                }
                let new = format!("{prefix}.{name}");
                renames.insert(
                    format!("#/components/{kind}/{name}"),
                    format!("#/components/{kind}/{new}"),
                );
                renamed.insert(new, value);
            }
            components.insert(kind.to_string(), Value::Object(renamed));
        }
    }
    let schema_names: HashMap<String, String> = renames
        .iter()
        .filter_map(|(old, new)| {
            let old = old.strip_prefix("#/components/schemas/")?;
            let new = new.strip_prefix("#/components/schemas/")?;
            Some((old.to_string(), new.to_string()))
        })
        .collect();

    let doc_base = servers_path(doc.get("servers")).unwrap_or_default();
    let upstream_base = route.upstream.path().trim_end_matches('/');
    let mut out = Operations {
        requires_auth: route.requires_auth,
        providers: route.providers.clone(),
        ..Operations::default()
    };
    let mut used_tags: Vec<String> = Vec::new();
    for (key, item) in paths {
        let Value::Object(mut item) = item else {
            continue;
        };
        if !key.starts_with('/') {
            out.left_out.push(format!("{} (not a path)", shown(&key)));
            continue;
        }
        if item.contains_key("$ref") {
            out.left_out
                .push(format!("{} (a path item given by $ref)", shown(&key)));
            continue;
        }
        let item_base = servers_path(item.get("servers")).unwrap_or_else(|| doc_base.clone());
        // What the path item says of all its operations.
        let shared: Map<String, Value> = item
            .iter()
            .filter(|(k, _)| {
                matches!(k.as_str(), "summary" | "description" | "parameters")
                    || k.starts_with("x-")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for method in METHODS {
            let Some(Value::Object(mut op)) = item.remove(method) else {
                continue;
            };
            let upper = method.to_ascii_uppercase();
            let base = servers_path(op.get("servers")).unwrap_or_else(|| item_base.clone());
            let full = format!("{base}{key}");
            let Some(path) = client_path(&full, upstream_base) else {
                out.left_out.push(format!(
                    "{upper} {} (not below the upstream's path `{upstream_base}`)",
                    shown(&full)
                ));
                continue;
            };
            if let Some(why) = not_served(index, routes, &upper, &path) {
                out.left_out
                    .push(format!("{upper} {} ({why})", shown(&path)));
                continue;
            }
            op.remove("security");
            op.remove("servers");
            let id = match op.get("operationId") {
                Some(Value::String(id)) if !id.is_empty() => id.clone(),
                _ => operation_id(method, &path),
            };
            op.insert("operationId".into(), format!("{prefix}.{id}").into());
            let tags: Vec<String> = match op.get("tags") {
                Some(Value::Array(tags)) if !tags.is_empty() => tags
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|t| format!("{prefix}.{t}"))
                    .collect(),
                _ => vec![prefix.to_string()],
            };
            for t in &tags {
                if !used_tags.contains(t) {
                    used_tags.push(t.clone());
                }
            }
            op.insert("tags".into(), tags.into());
            let entry = out
                .paths
                .entry(path)
                .or_insert_with(|| Value::Object(shared.clone()));
            if let Value::Object(target) = entry {
                target.entry(method).or_insert(Value::Object(op));
            }
        }
    }

    // Tag objects: the document's own (renamed), then one for each name it did not describe.
    if let Some(Value::Array(tags)) = doc.remove("tags") {
        for t in tags {
            let Value::Object(mut t) = t else { continue };
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            let name = format!("{prefix}.{name}");
            if !used_tags.contains(&name) || out.tags.iter().any(|o| o["name"] == *name) {
                continue;
            }
            t.insert("name".into(), name.into());
            out.tags.push(Value::Object(t));
        }
    }
    for name in used_tags {
        if !out.tags.iter().any(|o| o["name"] == *name) {
            out.tags.push(serde_json::json!({
                "name": name,
                "description": format!("Served by the route `{}`.", route.path),
            }));
        }
    }

    let mut paths = Value::Object(std::mem::take(&mut out.paths));
    let mut components = Value::Object(components);
    rewrite_refs(&mut paths, &renames, &schema_names)?;
    rewrite_refs(&mut components, &renames, &schema_names)?;
    if let (Value::Object(p), Value::Object(c)) = (paths, components) {
        out.paths = p;
        out.components = c;
    }
    Ok(out)
}

/// `get` + `/items/{id}` → `getItemsId`: the id of an operation that has none (Portcullis's own
/// operations are named the same way).
pub fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for word in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

/// Renames every `$ref` (and discriminator mapping) to a component of the document; any other
/// reference (another file, a URL, a part of the document that is not a component, a component
/// it does not have) refuses the document: nothing is fetched or resolved.
fn rewrite_refs(
    value: &mut Value,
    renames: &HashMap<String, String>,
    schema_names: &HashMap<String, String>,
) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match (k.as_str(), &mut *v) {
                    ("$ref", Value::String(r)) => {
                        *r = renamed_ref(r, renames)?;
                    }
                    ("discriminator", Value::Object(d)) => {
                        if let Some(Value::Object(mapping)) = d.get_mut("mapping") {
                            for target in mapping.values_mut() {
                                if let Value::String(t) = target {
                                    *t = match schema_names.get(t.as_str()) {
                                        Some(new) => new.clone(),
                                        None => renamed_ref(t, renames)?,
                                    };
                                }
                            }
                        }
                    }
                    _ => rewrite_refs(v, renames, schema_names)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| rewrite_refs(v, renames, schema_names)),
        _ => Ok(()),
    }
}

/// `#/components/<kind>/<name>[/...]` with the new name.
fn renamed_ref(r: &str, renames: &HashMap<String, String>) -> Result<String, String> {
    let unsupported = || {
        format!(
            "the reference `{}` is not to one of the document's components; only those are carried over",
            shown(r)
        )
    };
    let rest = r.strip_prefix("#/components/").ok_or_else(unsupported)?;
    let mut parts = rest.splitn(3, '/');
    let (Some(kind), Some(name)) = (parts.next(), parts.next()) else {
        return Err(unsupported());
    };
    let new = renames
        .get(&format!("#/components/{kind}/{name}"))
        .ok_or_else(unsupported)?;
    Ok(match parts.next() {
        Some(tail) => format!("{new}/{tail}"),
        None => new.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use serde_json::json;

    use super::*;

    fn config(routes: &str) -> Config {
        let text = format!(
            "version: 1\nproviders:\n  - name: jwt\n    plugin: jwt\n    config: {{ secret: \"0123456789abcdef0123456789abcdef\" }}\nroutes:\n{routes}"
        );
        crate::config::compile_str(
            &text,
            Path::new("/cfg/portcullis.yaml"),
            &crate::config::EnvVars {
                dev_secret: &|| Ok("x".repeat(32)),
            },
        )
        .unwrap()
    }

    fn ops_of(config: &Config, index: usize, doc: Value) -> Result<Operations, String> {
        let route = &config.routes.list[index];
        operations(index, route, &config.routes, "svc", doc)
    }

    fn doc(paths: Value) -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "svc", "version": "1"},
            "paths": paths,
            "components": {
                "schemas": {
                    "Item": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Item"}}},
                },
                "securitySchemes": {"upstreamKey": {"type": "apiKey", "in": "header", "name": "k"}},
            },
        })
    }

    fn get(id: &str) -> Value {
        json!({
            "operationId": id,
            "security": [{"upstreamKey": []}],
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}}},
        })
    }

    #[test]
    fn operations_keep_the_route_path_and_names_get_the_prefix() {
        let c = config(
            "  - { path: \"/svc/*\", upstream: \"http://127.0.0.1:9/\", openapi: ./svc.json }\n",
        );
        assert_eq!(
            c.routes.list[0].openapi,
            Some(OpenApiSource::File("/cfg/./svc.json".into()))
        );
        let ops = ops_of(
            &c,
            0,
            doc(json!({"/svc/items/{id}": {"get": get("getItem")}})),
        )
        .unwrap();
        let op = &ops.paths["/svc/items/{id}"]["get"];
        assert_eq!(op["operationId"], "svc.getItem");
        assert_eq!(op["tags"], json!(["svc"]));
        assert!(
            op.get("security").is_none(),
            "the upstream's own security is dropped"
        );
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/svc.Item"
        );
        let item = &ops.components["schemas"]["svc.Item"];
        assert_eq!(
            item["properties"]["next"]["$ref"],
            "#/components/schemas/svc.Item"
        );
        assert!(ops.components.get("securitySchemes").is_none());
        assert_eq!(ops.count(), 1);
        assert!(ops.requires_auth);
    }

    #[test]
    fn the_upstream_path_and_servers_are_taken_off_as_the_proxy_puts_them_on() {
        // The proxy sends `/svc/x` to `/base/svc/x`: the upstream documents `/svc/x` under the
        // server `/base`, or `/base/svc/x` with no server.
        let c = config("  - { path: \"/svc/*\", upstream: \"http://127.0.0.1:9/base\", openapi: \"http://127.0.0.1:9/openapi.json\" }\n");
        let mut d = doc(json!({"/svc/a": {"get": get("a")}}));
        d["servers"] = json!([{"url": "http://127.0.0.1:9/base/"}]);
        let ops = ops_of(&c, 0, d).unwrap();
        assert!(ops.paths["/svc/a"]["get"].is_object());
        let ops = ops_of(
            &c,
            0,
            doc(json!({"/base/svc/b": {"get": get("b")}, "/other/c": {"get": get("c")}})),
        )
        .unwrap();
        assert!(ops.paths["/svc/b"]["get"].is_object());
        assert_eq!(ops.paths.len(), 1);
        assert!(ops.left_out[0].contains("/other/c"), "{:?}", ops.left_out);
    }

    #[test]
    fn operations_on_portcullis_paths_or_another_routes_are_left_out() {
        let c = config(concat!(
            "  - { path: \"/svc/admin/*\", upstream: \"http://127.0.0.1:9/\" }\n",
            "  - { path: \"/*\", upstream: \"http://127.0.0.1:9/\", methods: [GET], openapi: ./svc.json }\n",
        ));
        let ops = ops_of(
            &c,
            1,
            doc(json!({
                "/api/admin/status": {"get": get("steal")},
                "/API/Auth/me": {"get": get("steal2")},
                "/health": {"get": get("steal3")},
                "/openapi.json": {"get": get("steal4")},
                "/svc/admin/x": {"get": get("other")},
                "/svc/ok": {"get": get("ok"), "post": get("post")},
                "/svc/../api/admin/reload": {"get": get("dots")},
            })),
        )
        .unwrap();
        let kept: Vec<&String> = ops.paths.keys().collect();
        assert_eq!(kept, ["/svc/ok"]);
        assert!(ops.paths["/svc/ok"].get("post").is_none());
        assert_eq!(ops.left_out.len(), 7, "{:?}", ops.left_out);
        assert!(ops
            .left_out
            .iter()
            .any(|l| l.contains("routes[0] serves it")));
    }

    #[test]
    fn references_outside_the_documents_components_refuse_it() {
        let c = config(
            "  - { path: \"/svc/*\", upstream: \"http://127.0.0.1:9/\", openapi: ./svc.json }\n",
        );
        for r in [
            "https://example.invalid/schema.json",
            "other.yaml#/components/schemas/Item",
            "#/components/schemas/Missing",
            "#/paths/~1svc~1a",
        ] {
            let mut op = get("a");
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] = r.into();
            let e = ops_of(&c, 0, doc(json!({"/svc/a": {"get": op}}))).unwrap_err();
            assert!(e.contains("not to one of the document's components"), "{e}");
        }
        // Loops are only renamed.
        let mut d = doc(json!({"/svc/a": {"get": get("a")}}));
        d["components"]["schemas"]["A"] = json!({"$ref": "#/components/schemas/B"});
        d["components"]["schemas"]["B"] = json!({"$ref": "#/components/schemas/A"});
        let ops = ops_of(&c, 0, d).unwrap();
        assert_eq!(
            ops.components["schemas"]["svc.A"]["$ref"],
            "#/components/schemas/svc.B"
        );
    }

    #[test]
    fn documents_that_are_not_openapi_3_0_are_refused() {
        let c = config(
            "  - { path: \"/svc/*\", upstream: \"http://127.0.0.1:9/\", openapi: ./svc.json }\n",
        );
        for (d, want) in [
            (json!({"swagger": "2.0", "paths": {}}), "Swagger 2.0"),
            (json!({"openapi": "3.1.0", "paths": {}}), "3.1.0"),
            (json!({"openapi": "3.0.0"}), "no `paths`"),
            (json!([1, 2]), "an object"),
        ] {
            let e = ops_of(&c, 0, d).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(parse(b"{\"openapi\": ")
            .unwrap_err()
            .contains("not valid JSON"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(format!("{{\"a\": {deep}}}").as_bytes()).is_err());
        assert!(parse(deep.as_bytes()).is_err());
        // Aliases that would expand to billions of nodes are refused, not expanded.
        let mut laughs =
            String::from("a: &a [\"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\"]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i", "j"])
        {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        assert!(parse(laughs.as_bytes()).is_err());
        // YAML, with the numeric response codes YAML documents usually have.
        let y = parse(b"openapi: 3.0.3\npaths:\n  /svc/a:\n    get:\n      responses:\n        200:\n          description: ok\n").unwrap();
        assert!(y["paths"]["/svc/a"]["get"]["responses"]["200"].is_object());
    }

    #[tokio::test]
    async fn nothing_is_read_unless_a_document_is_served() {
        let http = HttpClient::new().unwrap();
        let route = "  - { path: \"/svc/*\", upstream: \"http://127.0.0.1:9/\", openapi: ./missing.json }\n";
        assert!(load(&config(route), &http).await.is_empty());
        let on = format!("{route}server:\n  build: {{ openapi_docs: true }}\n");
        let docs = load(&config(&on), &http).await;
        assert_eq!(docs.routes.len(), 1);
        let e = docs.routes[0].outcome.as_ref().unwrap_err();
        assert!(e.contains("cannot read the file"), "{e}");
        assert!(docs.warnings()[0]
            .starts_with("routes[0].openapi (/cfg/./missing.json): cannot read the file"));
    }

    #[test]
    fn prefixes_come_from_the_route_path_and_are_unique() {
        let mut taken = HashSet::new();
        assert_eq!(unique_prefix("/svc/v1.2/*", 0, &mut taken), "svc_v1_2");
        assert_eq!(unique_prefix("/svc/v1.2/:id", 1, &mut taken), "svc_v1_2_1");
        assert_eq!(unique_prefix("/*", 2, &mut taken), "route2");
        assert_eq!(unique_prefix("/:x/*", 3, &mut taken), "route3");
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_DOCUMENT_BYTES + 1]).unwrap();
        assert!(read_file(&big).unwrap_err().contains("larger than"));
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, vec![b' '; MAX_DOCUMENT_BYTES]).unwrap();
        assert_eq!(read_file(&ok).unwrap().len(), MAX_DOCUMENT_BYTES);
    }
}
