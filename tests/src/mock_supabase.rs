//! A local Supabase project: GoTrue's `GET /auth/v1/user` and PostgREST's
//! `GET /rest/v1/{table}`, in the wire format of `provider-wire-formats.md` §6 (the API gateway's
//! `apikey` check, `401 no_authorization`, `403 bad_jwt`, the user object, `406 PGRST116`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use crate::mock::{Fault, Hits, MockRequest, MockServer, Reply};

/// The anon key the gateway accepts.
pub const ANON_KEY: &str = "sb_publishable_anon_0123456789abcdef";

#[derive(Default)]
struct State {
    /// access token → user id.
    sessions: Mutex<HashMap<String, String>>,
    /// user id → isAdmin.
    admins: Mutex<HashMap<String, bool>>,
    fault: Mutex<Option<Fault>>,
    hits: Hits,
}

/// The running mock.
pub struct MockSupabase {
    server: MockServer,
    state: Arc<State>,
}

fn gotrue_error(status: u16, code: &str, msg: &str) -> Reply {
    Reply::json(
        status,
        &json!({"code": status, "error_code": code, "msg": msg}),
    )
    .with_header("x-sb-error-code", code)
}

fn user(id: &str) -> Value {
    json!({
        "id": id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": "ada@example.com",
        "email_confirmed_at": "2025-11-01T10:00:00.000000Z",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"full_name": "Ada Lovelace"},
        "identities": [],
        "created_at": "2025-11-01T10:00:00.000000Z",
        "updated_at": "2025-11-26T08:15:02.123456Z",
        "is_anonymous": false
    })
}

fn handle(state: &State, req: &MockRequest) -> Reply {
    let endpoint = if req.path == "/auth/v1/user" {
        "user"
    } else if req.path.starts_with("/rest/v1/") {
        "rest"
    } else {
        return Reply::json(
            404,
            &json!({"message": "no Route matched with those values"}),
        );
    };
    state.hits.add(endpoint);
    if let Some(f) = *state.fault.lock().expect("fault") {
        return f.reply(json!({}));
    }
    match req.header("apikey") {
        None => {
            return Reply::json(
                401,
                &json!({"message": "No API key found in request", "hint": "No `apikey` request header or url param was found."}),
            )
        }
        Some(k) if k != ANON_KEY => {
            return Reply::json(
                401,
                &json!({"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}),
            )
        }
        Some(_) => {}
    }
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string);
    if endpoint == "user" {
        let Some(token) = bearer else {
            return gotrue_error(
                401,
                "no_authorization",
                "This endpoint requires a valid Bearer token",
            );
        };
        return match state.sessions.lock().expect("sessions").get(&token) {
            Some(id) => Reply::json(200, &user(id)),
            None => gotrue_error(
                403,
                "bad_jwt",
                "invalid JWT: unable to parse or verify signature, token is malformed",
            ),
        };
    }
    // PostgREST: /rest/v1/users?select=isAdmin&id=eq.<id>, single object requested.
    if req.path != "/rest/v1/users" {
        return Reply::json(
            404,
            &json!({"code": "PGRST205", "details": null, "hint": null,
                    "message": "Could not find the table in the schema cache"}),
        );
    }
    let id = req
        .param("id")
        .and_then(|v| v.strip_prefix("eq."))
        .unwrap_or_default();
    match state.admins.lock().expect("admins").get(id) {
        Some(is_admin) => Reply::json(200, &json!({"isAdmin": is_admin})),
        None => Reply::json(
            406,
            &json!({"code": "PGRST116", "details": "The result contains 0 rows", "hint": null,
                    "message": "JSON object requested, multiple (or no) rows returned"}),
        ),
    }
}

impl MockSupabase {
    /// Starts an empty project.
    pub async fn start() -> MockSupabase {
        let state = Arc::new(State::default());
        let s2 = state.clone();
        let server = MockServer::start(move |req| handle(&s2, req)).await;
        MockSupabase { server, state }
    }

    /// `SUPABASE_URL`.
    pub fn url(&self) -> &str {
        &self.server.base
    }

    /// Signs `user_id` in: returns an access token GoTrue accepts.
    pub fn sign_in(&self, user_id: &str) -> String {
        let token = format!("sbat.{user_id}.{}", crate::now());
        self.state
            .sessions
            .lock()
            .expect("sessions")
            .insert(token.clone(), user_id.into());
        token
    }

    /// Sets a row of `public.users`.
    pub fn set_admin(&self, user_id: &str, is_admin: bool) {
        self.state
            .admins
            .lock()
            .expect("admins")
            .insert(user_id.into(), is_admin);
    }

    /// Makes every endpoint misbehave.
    pub fn fault(&self, fault: Option<Fault>) {
        *self.state.fault.lock().expect("fault") = fault;
    }

    /// Requests to `user` or `rest` so far.
    pub fn hits(&self, endpoint: &str) -> u64 {
        self.state.hits.get(endpoint)
    }
}
