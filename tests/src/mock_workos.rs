//! A local WorkOS: `GET /sso/jwks/{client_id}` and
//! `GET /user_management/organization_memberships` in the wire format of
//! `provider-wire-formats.md` §1 (list envelope, `list_metadata` cursors, `limit` 1–100, the
//! `user_id` / `organization_id` filters (one of them required), `statuses` (default: active
//! only), `order` (default newest first), error bodies with `message`/`code`,
//! `Authorization: Bearer <api key>` enforced).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::mock::{jwks, Fault, Hits, MockRequest, MockServer, Reply};

/// The API key the mock accepts.
pub const API_KEY: &str = "sk_test_workos_0123456789abcdef";
/// The client id the mock serves keys for.
pub const CLIENT_ID: &str = "client_01HXYZ123456789ABCDEFGHIJ";

/// The organization the default access-token claims name (`org_id`).
pub const ORG_ID: &str = "org_01HRDMC6CM357W30QMHMQ96Q0S";

/// One organization membership as the mock stores it.
struct Stored {
    id: String,
    user: String,
    org: String,
    /// Role slugs: the first is the primary `role`, all are listed in `roles`.
    roles: Vec<String>,
    status: String,
}

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    /// Every membership, oldest first.
    memberships: Mutex<Vec<Stored>>,
    /// Ids handed out so far (ids are never reused, so cursors stay stable).
    next_id: Mutex<usize>,
    jwks_fault: Mutex<Option<Fault>>,
    api_fault: Mutex<Option<Fault>>,
    hits: Hits,
    /// Decoded query parameters of every memberships request.
    queries: Mutex<Vec<Vec<(String, String)>>>,
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

fn invalid(field: &str, code: &str) -> Reply {
    Reply::json(
        422,
        &json!({"code": "invalid_request_parameters", "message": "Validation failed",
                "errors": [{"field": field, "code": code}]}),
    )
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
        state
            .queries
            .lock()
            .expect("queries")
            .push(req.query.clone());
        if let Some(f) = *state.api_fault.lock().expect("fault") {
            return f.reply(json!({"object": "list", "data": [], "list_metadata": {}}));
        }
        if req.header("authorization") != Some(&format!("Bearer {API_KEY}")) {
            return Reply::json(401, &json!({"message": "Unauthorized"}));
        }
        // A parameter given twice is refused, so a `sub` or an `org_id` that smuggles
        // `&user_id=` into the query shows up as a failed check instead of passing unnoticed.
        let mut names: Vec<&str> = req.query.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return invalid("query", "duplicate parameter");
        }
        let user = req.param("user_id");
        let org = req.param("organization_id");
        if user.is_none() && org.is_none() {
            return invalid("user_id", "user_id or organization_id is required");
        }
        // "By default only active memberships are returned."
        let statuses: Vec<&str> = match req.param("statuses") {
            None => vec!["active"],
            Some(s) => s.split(',').collect(),
        };
        if statuses
            .iter()
            .any(|s| !["active", "inactive", "pending"].contains(s))
        {
            return invalid("statuses", "statuses must be active, inactive or pending");
        }
        let limit: usize = match req.param("limit").map(str::parse) {
            None => 10,
            Some(Ok(n)) if (1..=100).contains(&n) => n,
            Some(_) => return invalid("limit", "limit must be between 1 and 100"),
        };
        let newest_first = match req.param("order") {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return invalid("order", "order must be asc or desc"),
        };
        let stored = state.memberships.lock().expect("memberships");
        let mut all: Vec<Value> = stored
            .iter()
            .filter(|m| user.is_none_or(|u| m.user == u))
            .filter(|m| org.is_none_or(|o| m.org == o))
            .filter(|m| statuses.contains(&m.status.as_str()))
            .map(|m| {
                json!({
                    "object": "organization_membership",
                    "id": m.id,
                    "user_id": m.user,
                    "organization_id": m.org,
                    "organization_name": "Example Organization",
                    "status": m.status,
                    "role": {"slug": m.roles.first()},
                    "roles": m.roles.iter().map(|r| json!({"slug": r})).collect::<Vec<_>>(),
                    "directory_managed": false,
                    "custom_attributes": {},
                    "created_at": "2023-07-18T02:07:19.911Z",
                    "updated_at": "2023-07-18T02:07:19.911Z"
                })
            })
            .collect();
        if newest_first {
            all.reverse();
        }
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

    /// Access-token claims for `sub` with `org_id` set to `org`, or with no organization at all
    /// (`None`: the session has none selected, so `org_id`, `role` and `roles` are absent).
    pub fn claims_in(&self, sub: &str, org: Option<&str>) -> Value {
        let mut c = self.claims(sub);
        match (org, c.as_object_mut()) {
            (Some(org), _) => c["org_id"] = org.into(),
            (None, Some(map)) => {
                for k in ["org_id", "role", "roles"] {
                    map.remove(k);
                }
            }
            (None, None) => {}
        }
        c
    }

    /// Replaces every membership of `user` with one active membership in [`ORG_ID`] (the
    /// organization [`MockWorkos::claims`] names) holding `roles` (the first is the primary role).
    pub fn set_roles(&self, user: &str, roles: &[&str]) {
        self.state
            .memberships
            .lock()
            .expect("memberships")
            .retain(|m| m.user != user);
        self.add_membership(user, ORG_ID, roles, "active");
    }

    /// Adds a membership of `user` in `org` with `roles` and `status` (`active`, `inactive` or
    /// `pending`); it is the newest.
    pub fn add_membership(&self, user: &str, org: &str, roles: &[&str], status: &str) {
        let mut next = self.state.next_id.lock().expect("next id");
        let id = format!("om_{:05}", *next);
        *next += 1;
        self.state
            .memberships
            .lock()
            .expect("memberships")
            .push(Stored {
                id,
                user: user.into(),
                org: org.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                status: status.into(),
            });
    }

    /// The decoded query parameters of every memberships request so far.
    pub fn queries(&self) -> Vec<Vec<(String, String)>> {
        self.state.queries.lock().expect("queries").clone()
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
