//! A local Clerk: the Frontend API's `GET /.well-known/jwks.json` and the Backend API's
//! `GET /v1/users/{user_id}/organization_memberships`, in the wire format of
//! `provider-wire-formats.md` §2 (`data` + `total_count`, `limit` 1–500 / `offset` ≥ 0 paging,
//! newest first, each membership with its `organization`, `ClerkErrors` bodies,
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
/// The organization the default session-token claims name (`o.id`).
pub const ORG_ID: &str = "org_2d3ZzZSCiLwREahIEidARvR9W24";

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    /// user id → the organizations of its memberships, oldest first.
    orgs: Mutex<HashMap<String, Vec<String>>>,
    jwks_fault: Mutex<Option<Fault>>,
    api_fault: Mutex<Option<Fault>>,
    hits: Hits,
    /// Raw paths the memberships endpoint was asked for.
    paths: Mutex<Vec<String>>,
    /// Their decoded query parameters.
    queries: Mutex<Vec<Vec<(String, String)>>>,
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
        state
            .queries
            .lock()
            .expect("queries")
            .push(req.query.clone());
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
        let offset: usize = match req.param("offset").map(str::parse) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                return clerk_error(422, "form_param_value_invalid", "offset is invalid")
            }
        };
        let user = crate::mock::decode(user);
        let orgs = state
            .orgs
            .lock()
            .expect("orgs")
            .get(&user)
            .cloned()
            .unwrap_or_default();
        let total = orgs.len();
        // Newest first.
        let data: Vec<Value> = orgs
            .iter()
            .enumerate()
            .rev()
            .skip(offset)
            .take(limit)
            .map(|(i, org)| {
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
                    "organization": {"object": "organization", "id": org, "name": "Acme Inc",
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

    /// Session-token claims for `sub` (60 s, `nbf` 10 s back, as Clerk mints them), version 2
    /// with [`ORG_ID`] the active organization (`o.id`).
    pub fn claims(&self, sub: &str, azp: Option<&str>) -> Value {
        self.claims_v2(sub, azp, Some(ORG_ID))
    }

    /// Version-2 claims: the active organization, if any, is `o: {id, slg, rol}`.
    pub fn claims_v2(&self, sub: &str, azp: Option<&str>, org: Option<&str>) -> Value {
        let mut c = self.base_claims(sub, azp);
        c["v"] = 2.into();
        if let Some(org) = org {
            c["o"] = json!({"id": org, "slg": "acme", "rol": "member"});
        }
        c
    }

    /// Version-1 claims: the active organization, if any, is `org_id`, `org_slug`, `org_role`
    /// and `org_permissions`; there is no `v` and no `o`.
    pub fn claims_v1(&self, sub: &str, azp: Option<&str>, org: Option<&str>) -> Value {
        let mut c = self.base_claims(sub, azp);
        if let Some(org) = org {
            c["org_id"] = org.into();
            c["org_slug"] = "acme".into();
            c["org_role"] = "org:member".into();
            c["org_permissions"] = json!([]);
        }
        c
    }

    fn base_claims(&self, sub: &str, azp: Option<&str>) -> Value {
        let now = crate::now();
        let mut c = json!({
            "iss": self.server.base,
            "sub": sub,
            "sid": "sess_2mUXze8O59IUAUJoLqPd5HMOvDv",
            "iat": now,
            "nbf": now - 10,
            "exp": now + 60,
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

    /// Gives `user` `n` organization memberships: the oldest in [`ORG_ID`] (the organization
    /// [`MockClerk::claims`] names), the others in organizations `org_other_{i}`.
    pub fn set_memberships(&self, user: &str, n: usize) {
        let orgs = (0..n)
            .map(|i| {
                if i == 0 {
                    ORG_ID.to_string()
                } else {
                    format!("org_other_{i}")
                }
            })
            .collect();
        self.state
            .orgs
            .lock()
            .expect("orgs")
            .insert(user.into(), orgs);
    }

    /// Gives `user` memberships in exactly `orgs`, oldest first.
    pub fn set_orgs(&self, user: &str, orgs: &[&str]) {
        self.state
            .orgs
            .lock()
            .expect("orgs")
            .insert(user.into(), orgs.iter().map(|o| o.to_string()).collect());
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

    /// Decoded query parameters of every memberships request so far.
    pub fn membership_queries(&self) -> Vec<Vec<(String, String)>> {
        self.state.queries.lock().expect("queries").clone()
    }
}
