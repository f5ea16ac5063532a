//! A local Auth0 tenant: `GET /.well-known/jwks.json` and the discovery document, in the wire
//! format of `provider-wire-formats.md` §5; the issuer is `{base}/` with its trailing slash.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::mock::{jwks, Fault, Hits, MockRequest, MockServer, Reply};

/// The API identifier tokens are minted for.
pub const AUDIENCE: &str = "https://api.example.com";

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    fault: Mutex<Option<Fault>>,
    hits: Hits,
}

/// The running mock.
pub struct MockAuth0 {
    server: MockServer,
    state: Arc<State>,
}

fn handle(state: &State, base: &str, req: &MockRequest) -> Reply {
    match req.path.as_str() {
        "/.well-known/jwks.json" => {
            state.hits.add("jwks");
            if let Some(f) = *state.fault.lock().expect("fault") {
                return f.reply(jwks(&[]));
            }
            Reply::json(200, &jwks(&state.keys.lock().expect("keys")))
        }
        "/.well-known/openid-configuration" => Reply::json(
            200,
            &json!({
                "issuer": format!("{base}/"),
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/oauth/token"),
                "userinfo_endpoint": format!("{base}/userinfo"),
                "jwks_uri": format!("{base}/.well-known/jwks.json"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]
            }),
        ),
        _ => Reply::json(404, &json!({"error": "not_found"})),
    }
}

impl MockAuth0 {
    /// Starts serving `keys`.
    pub async fn start(keys: Vec<Value>) -> MockAuth0 {
        let state = Arc::new(State::default());
        *state.keys.lock().expect("keys") = keys;
        let s2 = state.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let b2 = base.clone();
        let server =
            MockServer::start(move |req| handle(&s2, &b2.lock().expect("base"), req)).await;
        *base.lock().expect("base") = server.base.clone();
        MockAuth0 { server, state }
    }

    /// Where the tenant is served (`base_url`).
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// The issuer, with its trailing slash.
    pub fn issuer(&self) -> String {
        format!("{}/", self.server.base)
    }

    /// Access-token claims for `sub` (`aud` as an array, as with `openid`).
    pub fn claims(&self, sub: &str) -> Value {
        let now = crate::now();
        json!({
            "iss": self.issuer(),
            "sub": sub,
            "aud": [AUDIENCE, format!("{}userinfo", self.issuer())],
            "azp": "my_client_id",
            "iat": now,
            "exp": now + 3600,
            "scope": "openid profile read:patients"
        })
    }

    /// Replaces the key set.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("keys") = keys;
    }

    /// Makes the JWKS endpoint misbehave.
    pub fn fault(&self, fault: Option<Fault>) {
        *self.state.fault.lock().expect("fault") = fault;
    }

    /// Key-set fetches so far.
    pub fn jwks_hits(&self) -> u64 {
        self.state.hits.get("jwks")
    }
}
