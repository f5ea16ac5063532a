//! A local OpenID Connect provider: `{issuer}/.well-known/openid-configuration` (OpenID Connect
//! Discovery 1.0, Keycloak-style issuer with a path) and the JWKS it names, with request counts and
//! switchable failures.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use poem::{handler, http::StatusCode, web::Data, EndpointExt, Request, Response, Route};
use serde_json::{json, Value};

use crate::mock::{jwks, Fault, MockServer};

struct State {
    issuer: Mutex<String>,
    /// What the discovery document claims as `issuer` (normally the real one).
    doc_issuer: Mutex<Option<String>>,
    algs: Mutex<Value>,
    keys: Mutex<Vec<Value>>,
    discovery_fault: Mutex<Option<Fault>>,
    jwks_fault: Mutex<Option<Fault>>,
    discovery_hits: AtomicU64,
    jwks_hits: AtomicU64,
}

/// The local provider.
pub struct MockOidc {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The issuer: `{base}/realms/main`.
    pub issuer: String,
    state: Arc<State>,
    _server: MockServer,
}

/// The answer of an endpoint told to misbehave, if it is (an empty key set for "empty").
async fn misbehave(fault: Option<Fault>) -> Option<Response> {
    Some(fault?.reply(jwks(&[])).respond().await)
}

#[handler]
async fn route(req: &Request, Data(state): Data<&Arc<State>>) -> Response {
    let issuer = state.issuer.lock().expect("lock").clone();
    let path = req.uri().path();
    let issuer_path = issuer.splitn(4, '/').nth(3).unwrap_or_default();
    if path == format!("/{issuer_path}/.well-known/openid-configuration") {
        state.discovery_hits.fetch_add(1, Ordering::SeqCst);
        let fault = *state.discovery_fault.lock().expect("lock");
        if let Some(r) = misbehave(fault).await {
            return r;
        }
        let doc_issuer = state
            .doc_issuer
            .lock()
            .expect("lock")
            .clone()
            .unwrap_or_else(|| issuer.clone());
        let algs = state.algs.lock().expect("lock").clone();
        return Response::builder().content_type("application/json").body(
            json!({
                "issuer": doc_issuer,
                "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
                "token_endpoint": format!("{issuer}/protocol/openid-connect/token"),
                "userinfo_endpoint": format!("{issuer}/protocol/openid-connect/userinfo"),
                "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
                "response_types_supported": ["code", "id_token", "code id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": algs,
            })
            .to_string(),
        );
    }
    if path == format!("/{issuer_path}/protocol/openid-connect/certs") {
        state.jwks_hits.fetch_add(1, Ordering::SeqCst);
        let fault = *state.jwks_fault.lock().expect("lock");
        if let Some(r) = misbehave(fault).await {
            return r;
        }
        let keys = state.keys.lock().expect("lock").clone();
        return Response::builder()
            .content_type("application/json")
            .header("cache-control", "public, max-age=300")
            .body(json!({ "keys": keys }).to_string());
    }
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body("not found")
}

impl MockOidc {
    /// Starts a provider publishing `keys` (JWKs).
    pub async fn start(keys: Vec<Value>) -> MockOidc {
        let state = Arc::new(State {
            issuer: Mutex::new(String::new()),
            doc_issuer: Mutex::new(None),
            algs: Mutex::new(json!(["RS256", "HS256", "none", "PS256"])),
            keys: Mutex::new(keys),
            discovery_fault: Mutex::new(None),
            jwks_fault: Mutex::new(None),
            discovery_hits: AtomicU64::new(0),
            jwks_hits: AtomicU64::new(0),
        });
        let app = Route::new().at("/*path", route).data(state.clone());
        // Nobody knows the address before `serve` returns, so no request comes before this is set.
        let server = MockServer::serve(app).await;
        let base = server.base.clone();
        let issuer = format!("{base}/realms/main");
        *state.issuer.lock().expect("lock") = issuer.clone();
        MockOidc {
            base,
            issuer,
            state,
            _server: server,
        }
    }

    /// Replaces the key set.
    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().expect("lock") = keys;
    }
    /// Makes the discovery document claim another issuer.
    pub fn set_document_issuer(&self, issuer: Option<&str>) {
        *self.state.doc_issuer.lock().expect("lock") = issuer.map(str::to_string);
    }
    /// Sets `id_token_signing_alg_values_supported`.
    pub fn set_algorithms(&self, algs: Value) {
        *self.state.algs.lock().expect("lock") = algs;
    }
    /// Makes discovery misbehave (`None` = behave).
    pub fn discovery_fault(&self, fault: Option<Fault>) {
        *self.state.discovery_fault.lock().expect("lock") = fault;
    }
    /// Makes the JWKS endpoint misbehave (`None` = behave).
    pub fn jwks_fault(&self, fault: Option<Fault>) {
        *self.state.jwks_fault.lock().expect("lock") = fault;
    }
    /// Discovery requests so far.
    pub fn discovery_hits(&self) -> u64 {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }
    /// JWKS requests so far.
    pub fn jwks_hits(&self) -> u64 {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}
