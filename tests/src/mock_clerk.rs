//! A local Clerk: the Frontend API's `GET /.well-known/jwks.json` and the Backend API's
//! `GET /v1/users/{user_id}/organization_memberships`, in the wire format of
//! `provider-wire-formats.md` §2 (`data` + `total_count`, `limit`/`offset`, `ClerkErrors` bodies,
//! `Authorization: Bearer <secret key>` enforced). One server plays both hosts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use crate::mock::{jwks, Fault, Hits, MockRequest, MockServer, Reply};

/// The secret key the mock accepts.
pub const SECRET_KEY: &str = "sk_test_clerk_0123456789abcdef";
/// A publishable key.
pub const PUBLISHABLE_KEY: &str = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k";

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    /// user id → organization memberships (count).
    orgs: Mutex<HashMap<String, usize>>,
    jwks_fault: Mutex<Option<Fault>>,
    api_fault: Mutex<Option<Fault>>,
    hits: Hits,
    /// Raw paths the memberships endpoint was asked for.
    paths: Mutex<Vec<String>>,
}

/// The running mock.
pub struct MockClerk {
    server: MockServer,
    state: Arc<State>,
}

fn clerk_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"errors": [{"code": code, "message": message, "long_message": message}],
                "clerk_trace_id": "trace_mock"}),
    )
}

fn handle(state: &State, req: &MockRequest) -> Reply {
    if req.path == "/.well-known/jwks.json" {
        state.hits.add("jwks");
        if let Some(f) = *state.jwks_fault.lock().expect("fault") {
            return f.reply(jwks(&[]));
        }
        return Reply::json(200, &jwks(&state.keys.lock().expect("keys")));
    }
    if let Some(rest) = req.path.strip_prefix("/v1/users/") {
        state.hits.add("memberships");
        state.paths.lock().expect("paths").push(req.path.clone());
        let Some(user) = rest.strip_suffix("/organization_memberships") else {
            return clerk_error(404, "resource_not_found", "not found");
        };
        if let Some(f) = *state.api_fault.lock().expect("fault") {
            return f.reply(json!({"data": [], "total_count": 0}));
        }
        if req.header("authorization") != Some(&format!("Bearer {SECRET_KEY}")) {
            return clerk_error(
                401,
                "clerk_key_invalid",
                "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
            );
        }
        let limit: usize = match req.param("limit").map(str::parse) {
            None => 10,
            Some(Ok(n)) if (1..=500).contains(&n) => n,
            Some(_) => return clerk_error(422, "form_param_value_invalid", "limit is invalid"),
        };
        let offset: usize = req
            .param("offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        let user = crate::mock::decode(user);
        let total = state
            .orgs
            .lock()
            .expect("orgs")
            .get(&user)
            .copied()
            .unwrap_or(0);
        let data: Vec<Value> = (0..total)
            .skip(offset)
            .take(limit)
            .map(|i| {
                json!({
                    "object": "organization_membership",
                    "id": format!("orgmem_{i}"),
                    "role": "org:member",
                    "role_name": "Member",
                    "permissions": [],
                    "public_metadata": {},
                    "private_metadata": {},
                    "created_at": 1706722393158u64,
                    "updated_at": 1706722393158u64,
                    "organization": {"object": "organization", "id": format!("org_{i}"), "name": "Acme Inc",
                                     "slug": "acme-inc", "public_metadata": {},
                                     "created_at": 1706722393000u64, "updated_at": 1706722393000u64},
                    "public_user_data": {"user_id": user, "identifier": "sarah@example.com"}
                })
            })
            .collect();
        return Reply::json(200, &json!({"data": data, "total_count": total}));
    }
    clerk_error(404, "resource_not_found", "not found")
}

impl MockClerk {
    /// Starts serving `keys`.
    pub async fn start(keys: Vec<Value>) -> MockClerk {
        let state = Arc::new(State::default());
        *state.keys.lock().expect("keys") = keys;
        let s2 = state.clone();
        let server = MockServer::start(move |req| handle(&s2, req)).await;
        MockClerk { server, state }
    }

    /// Base URL of both APIs.
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// The JWKS URL (`CLERK_JWKS_URI`).
    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.server.base)
    }

    /// Session-token claims for `sub` (60 s, `nbf` 10 s back, as Clerk mints them).
    pub fn claims(&self, sub: &str, azp: Option<&str>) -> Value {
        let now = crate::now();
        let mut c = json!({
            "iss": self.server.base,
            "sub": sub,
            "sid": "sess_2mUXze8O59IUAUJoLqPd5HMOvDv",
            "iat": now,
            "nbf": now - 10,
            "exp": now + 60,
            "v": 2,
            "sts": "active"
        });
        if let Some(azp) = azp {
            c["azp"] = azp.into();
        }
        c
    }

    /// Replaces the key set.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("keys") = keys;
    }

    /// Gives `user` `n` organization memberships.
    pub fn set_memberships(&self, user: &str, n: usize) {
        self.state.orgs.lock().expect("orgs").insert(user.into(), n);
    }

    /// Makes the JWKS endpoint misbehave.
    pub fn jwks_fault(&self, fault: Option<Fault>) {
        *self.state.jwks_fault.lock().expect("fault") = fault;
    }

    /// Makes the memberships endpoint misbehave.
    pub fn api_fault(&self, fault: Option<Fault>) {
        *self.state.api_fault.lock().expect("fault") = fault;
    }

    /// Requests to `jwks` or `memberships` so far.
    pub fn hits(&self, endpoint: &str) -> u64 {
        self.state.hits.get(endpoint)
    }

    /// Raw paths the memberships endpoint saw.
    pub fn membership_paths(&self) -> Vec<String> {
        self.state.paths.lock().expect("paths").clone()
    }
}
