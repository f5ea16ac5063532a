//! A local WorkOS: `GET /sso/jwks/{client_id}` and
//! `GET /user_management/organization_memberships` in the wire format of
//! `provider-wire-formats.md` §1 (list envelope, `list_metadata` cursors, `limit` 1–100, error
//! bodies with `message`/`code`, `Authorization: Bearer <api key>` enforced).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use crate::mock::{jwks, Fault, Hits, MockRequest, MockServer, Reply};

/// The API key the mock accepts.
pub const API_KEY: &str = "sk_test_workos_0123456789abcdef";
/// The client id the mock serves keys for.
pub const CLIENT_ID: &str = "client_01HXYZ123456789ABCDEFGHIJ";

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    /// user id → role slugs, one membership each, oldest first.
    roles: Mutex<HashMap<String, Vec<String>>>,
    jwks_fault: Mutex<Option<Fault>>,
    api_fault: Mutex<Option<Fault>>,
    hits: Hits,
}

/// The running mock.
pub struct MockWorkos {
    server: MockServer,
    state: Arc<State>,
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, &json!({ "message": message, "code": code }))
        .with_header("x-request-id", "req_mock")
}

fn handle(state: &State, req: &MockRequest) -> Reply {
    if req.method != "GET" {
        return error(405, "method_not_allowed", "Method not allowed");
    }
    if let Some(client) = req.path.strip_prefix("/sso/jwks/") {
        state.hits.add("jwks");
        if let Some(f) = *state.jwks_fault.lock().expect("fault") {
            return f.reply(jwks(&[]));
        }
        if client != CLIENT_ID {
            return error(
                404,
                "entity_not_found",
                "Could not find a client with that id",
            );
        }
        return Reply::json(200, &jwks(&state.keys.lock().expect("keys")));
    }
    if req.path == "/user_management/organization_memberships" {
        state.hits.add("memberships");
        if let Some(f) = *state.api_fault.lock().expect("fault") {
            return f.reply(json!({"object": "list", "data": [], "list_metadata": {}}));
        }
        if req.header("authorization") != Some(&format!("Bearer {API_KEY}")) {
            return Reply::json(401, &json!({"message": "Unauthorized"}));
        }
        // A parameter given twice is refused, so a `sub` that smuggles `&user_id=` into the query
        // shows up as a failed check instead of passing unnoticed.
        let mut names: Vec<&str> = req.query.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Reply::json(
                422,
                &json!({"code": "invalid_request_parameters", "message": "Validation failed",
                        "errors": [{"field": "query", "code": "duplicate parameter"}]}),
            );
        }
        let Some(user) = req.param("user_id") else {
            return Reply::json(
                422,
                &json!({"code": "invalid_request_parameters", "message": "Validation failed",
                        "errors": [{"field": "user_id", "code": "user_id or organization_id is required"}]}),
            );
        };
        let limit: usize = match req.param("limit").map(str::parse) {
            None => 10,
            Some(Ok(n)) if (1..=100).contains(&n) => n,
            Some(_) => {
                return Reply::json(
                    422,
                    &json!({"code": "invalid_request_parameters", "message": "Validation failed",
                            "errors": [{"field": "limit", "code": "limit must be between 1 and 100"}]}),
                )
            }
        };
        let roles = state.roles.lock().expect("roles");
        // Newest first, as the API orders by default; ids are stable cursors.
        let empty = Vec::new();
        let all: Vec<Value> = roles
            .get(user)
            .unwrap_or(&empty)
            .iter()
            .enumerate()
            .rev()
            .map(|(i, slug)| {
                json!({
                    "object": "organization_membership",
                    "id": format!("om_{i:05}"),
                    "user_id": user,
                    "organization_id": format!("org_{i:05}"),
                    "organization_name": "Example Organization",
                    "status": "active",
                    "role": {"slug": slug},
                    "roles": [{"slug": slug}],
                    "directory_managed": false,
                    "custom_attributes": {},
                    "created_at": "2023-07-18T02:07:19.911Z",
                    "updated_at": "2023-07-18T02:07:19.911Z"
                })
            })
            .collect();
        let start = match req.param("after") {
            None => 0,
            Some(cursor) => match all.iter().position(|m| m["id"] == cursor) {
                Some(p) => p + 1,
                None => return error(404, "entity_not_found", "Cursor not found"),
            },
        };
        let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
        let after = if start + page.len() < all.len() {
            page.last().map(|m| m["id"].clone()).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let before = page.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
        return Reply::json(
            200,
            &json!({"object": "list", "data": page, "list_metadata": {"before": before, "after": after}}),
        );
    }
    error(404, "not_found", "Not found")
}

impl MockWorkos {
    /// Starts serving `keys`.
    pub async fn start(keys: Vec<Value>) -> MockWorkos {
        let state = Arc::new(State::default());
        *state.keys.lock().expect("keys") = keys;
        let s2 = state.clone();
        let server = MockServer::start(move |req| handle(&s2, req)).await;
        MockWorkos { server, state }
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// The issuer of this client's tokens.
    pub fn issuer(&self) -> String {
        format!("{}/user_management/{CLIENT_ID}", self.server.base)
    }

    /// Access-token claims for `sub`, as AuthKit mints them (5 minutes).
    pub fn claims(&self, sub: &str) -> Value {
        let now = crate::now();
        json!({
            "iss": self.issuer(),
            "sub": sub,
            "sid": "session_01HQSXZGF8FHF7A9ZZFCW4387R",
            "org_id": "org_01HRDMC6CM357W30QMHMQ96Q0S",
            "role": "member",
            "roles": ["member"],
            "jti": "01HQSXZXPPFPKMDD32RKTFY6PV",
            "iat": now,
            "exp": now + 300
        })
    }

    /// Replaces the key set.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("keys") = keys;
    }

    /// Gives `user` one active membership per role slug.
    pub fn set_roles(&self, user: &str, roles: &[&str]) {
        self.state
            .roles
            .lock()
            .expect("roles")
            .insert(user.into(), roles.iter().map(|r| r.to_string()).collect());
    }

    /// Makes the JWKS endpoint misbehave (`None` = behave).
    pub fn jwks_fault(&self, fault: Option<Fault>) {
        *self.state.jwks_fault.lock().expect("fault") = fault;
    }

    /// Makes the memberships endpoint misbehave (`None` = behave).
    pub fn api_fault(&self, fault: Option<Fault>) {
        *self.state.api_fault.lock().expect("fault") = fault;
    }

    /// Requests to `jwks` or `memberships` so far.
    pub fn hits(&self, endpoint: &str) -> u64 {
        self.state.hits.get(endpoint)
    }
}
