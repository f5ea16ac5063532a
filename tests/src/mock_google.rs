//! Google's side of Firebase, served locally in its real wire formats: the `securetoken`
//! certificate map (kid → PEM X.509 certificate, `Cache-Control: public, max-age=N,
//! must-revalidate, no-transform`), the OAuth2 token endpoint (RFC 7523 JWT-bearer grant, the
//! assertion's signature and claims checked), Firestore REST documents with Google's error model,
//! and the Auth emulator's `accounts:lookup`. Every endpoint counts its requests and can be told
//! to misbehave.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use poem::{handler, http::StatusCode, web::Data, Body, EndpointExt, Request, Response, Route};
use serde_json::{json, Value};

use crate::{
    b64,
    mock::{Fault, MockServer},
    now, pem_block, self_signed_pem,
};

/// An RSA key with a self-signed X.509 certificate, as Google publishes them.
pub struct GoogleKey {
    /// Key id (40 hex characters, like Google's).
    pub kid: String,
    /// PKCS#8 private key PEM.
    pub private_pem: String,
    /// SPKI public key PEM.
    pub public_pem: String,
    /// Self-signed certificate PEM.
    pub cert_pem: String,
    encoding: jsonwebtoken::EncodingKey,
}

impl GoogleKey {
    /// A fresh key and certificate.
    pub fn generate(kid: &str) -> GoogleKey {
        use rcgen::PublicKeyData as _;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa keygen");
        let private_pem = pem_block("PRIVATE KEY", &pair.serialize_der());
        let public_pem = pem_block("PUBLIC KEY", &pair.subject_public_key_info());
        let cert_pem = self_signed_pem(&pair, "securetoken.system.gserviceaccount.com", &[]);
        let encoding =
            jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("pem key");
        GoogleKey {
            kid: kid.into(),
            private_pem,
            public_pem,
            cert_pem,
            encoding,
        }
    }

    /// Signs `claims` with RS256 under this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(Some(&self.kid), claims)
    }

    /// Signs with any `kid` (or none).
    pub fn sign_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }
}

/// An unsigned emulator-style token: `{"alg":"none","typ":"JWT"}`, empty signature.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// Firebase ID token claims for `project` and `uid`, valid for an hour.
pub fn id_token_claims(project: &str, uid: &str) -> Value {
    let t = now();
    json!({
        "iss": format!("https://securetoken.google.com/{project}"),
        "aud": project,
        "auth_time": t - 60,
        "user_id": uid,
        "sub": uid,
        "iat": t - 10,
        "exp": t + 3600,
        "email": format!("{uid}@example.com"),
        "email_verified": true,
        "firebase": {"identities": {"email": [format!("{uid}@example.com")]}, "sign_in_provider": "password"}
    })
}

struct State {
    project: String,
    client_email: String,
    sa_public_pem: String,
    certs: Mutex<Vec<(String, String)>>,
    allowed: Mutex<HashSet<String>>,
    issued: Mutex<HashSet<String>>,
    emulator_users: Mutex<Vec<Value>>,
    certs_fault: Mutex<Option<Fault>>,
    token_fault: Mutex<Option<Fault>>,
    firestore_fault: Mutex<Option<Fault>>,
    certs_hits: AtomicU64,
    token_hits: AtomicU64,
    firestore_hits: AtomicU64,
    lookup_hits: AtomicU64,
    base: Mutex<String>,
}

/// The local Google.
pub struct MockGoogle {
    /// `http://127.0.0.1:port`.
    pub base: String,
    state: Arc<State>,
    /// The service account's key (signs the grant assertions).
    pub service_key: GoogleKey,
    _server: MockServer,
}

const SA_EMAIL: &str = "firebase-adminsdk-x1y2z@demo-project.iam.gserviceaccount.com";

fn google_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=UTF-8")
        .body(
            json!({"error": {"code": status.as_u16(), "message": message, "status": code}})
                .to_string(),
        )
}

/// The answer of an endpoint told to misbehave, if it is: `fault`'s, with Google's own error body
/// for a server error.
async fn misbehave(fault: Option<Fault>) -> Option<Response> {
    let reply = match fault? {
        Fault::ServerError => {
            return Some(google_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
            ))
        }
        fault => fault.reply(json!({})),
    };
    Some(reply.respond().await)
}

fn form_value<'a>(form: &'a str, name: &str) -> Option<&'a str> {
    form.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

impl State {
    fn fault(f: &Mutex<Option<Fault>>) -> Option<Fault> {
        *f.lock().expect("lock")
    }

    async fn certs(&self) -> Response {
        self.certs_hits.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = misbehave(Self::fault(&self.certs_fault)).await {
            return r;
        }
        let map: serde_json::Map<String, Value> = self
            .certs
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Response::builder()
            .content_type("application/json; charset=UTF-8")
            .header(
                "cache-control",
                "public, max-age=19302, must-revalidate, no-transform",
            )
            .body(Value::Object(map).to_string())
    }

    /// RFC 7523: checks the grant type, the assertion's RS256 signature with the service
    /// account's public key, and its claims, as Google's token endpoint does.
    async fn token(&self, req: &Request, body: Vec<u8>) -> Response {
        self.token_hits.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = misbehave(Self::fault(&self.token_fault)).await {
            return r;
        }
        let oauth_error = |code: &str, desc: &str| {
            Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .content_type("application/json")
                .body(json!({"error": code, "error_description": desc}).to_string())
        };
        let ct = req.header("content-type").unwrap_or_default();
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return oauth_error("invalid_request", "Bad content type");
        }
        let form = String::from_utf8(body).unwrap_or_default();
        if form_value(&form, "grant_type")
            != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        {
            return oauth_error("unsupported_grant_type", "Invalid grant_type");
        }
        let Some(assertion) = form_value(&form, "assertion") else {
            return oauth_error("invalid_request", "Missing assertion");
        };
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(self.sa_public_pem.as_bytes())
            .expect("sa public key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        let base = self.base.lock().expect("lock").clone();
        v.set_audience(&[
            format!("{base}/token"),
            "https://oauth2.googleapis.com/token".to_string(),
        ]);
        v.set_issuer(&[self.client_email.as_str()]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        let Ok(data) = jsonwebtoken::decode::<Value>(assertion, &key, &v) else {
            return oauth_error("invalid_grant", "Invalid JWT Signature.");
        };
        let c = data.claims;
        let (iat, exp) = (
            c["iat"].as_u64().unwrap_or(0),
            c["exp"].as_u64().unwrap_or(0),
        );
        if exp <= iat || exp - iat > 3600 || iat > now() + 60 {
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.");
        }
        let scope = c["scope"].as_str().unwrap_or_default();
        if !scope.split(' ').any(|s| {
            s == "https://www.googleapis.com/auth/datastore"
                || s == "https://www.googleapis.com/auth/cloud-platform"
        }) {
            return oauth_error("invalid_scope", "Empty or missing scope not allowed.");
        }
        let token = format!(
            "ya29.c.test-{}",
            self.token_hits.load(Ordering::SeqCst) * 7919
        );
        self.issued.lock().expect("lock").insert(token.clone());
        Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(
                json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
                    .to_string(),
            )
    }

    async fn document(&self, req: &Request, path: &str) -> Response {
        self.firestore_hits.fetch_add(1, Ordering::SeqCst);
        if let Some(r) = misbehave(Self::fault(&self.firestore_fault)).await {
            return r;
        }
        let bearer = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        if !self.issued.lock().expect("lock").contains(&bearer) {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", "Bearer realm=\"https://accounts.google.com/\"")
                .content_type("application/json; charset=UTF-8")
                .body(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}}).to_string());
        }
        let prefix = format!("/v1/projects/{}/databases/", self.project);
        let Some(rest) = path.strip_prefix(&prefix) else {
            return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found");
        };
        let Some((db, doc)) = rest.split_once("/documents/user_access/") else {
            return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not found");
        };
        let db = db.replace("%28", "(").replace("%29", ")");
        if db != "(default)" && db != "users-db" {
            return google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!(
                    "The database {db} does not exist for project {}",
                    self.project
                ),
            );
        }
        // One path segment: an encoded `/` stays inside the id.
        let uid = percent_decode(doc);
        let name = format!(
            "projects/{}/databases/{db}/documents/user_access/{uid}",
            self.project
        );
        if self.allowed.lock().expect("lock").contains(&uid) {
            Response::builder()
                .content_type("application/json; charset=UTF-8")
                .body(json!({
                    "name": name,
                    "fields": {"role": {"stringValue": "admin"}, "level": {"integerValue": "3"}},
                    "createTime": "2025-11-20T09:30:00.123456Z",
                    "updateTime": "2025-11-21T14:02:11.654321Z"
                }).to_string())
        } else {
            google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Document \"{name}\" not found."),
            )
        }
    }

    async fn lookup(&self, req: &Request, body: Vec<u8>) -> Response {
        self.lookup_hits.fetch_add(1, Ordering::SeqCst);
        if req.header("authorization") != Some("Bearer owner") {
            return google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "owner only");
        }
        let asked: Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = asked["localId"][0].as_str().unwrap_or_default().to_string();
        let users: Vec<Value> = self
            .emulator_users
            .lock()
            .expect("lock")
            .iter()
            .filter(|u| u["localId"] == id.as_str())
            .cloned()
            .collect();
        let mut out = json!({"kind": "identitytoolkit#GetAccountInfoResponse"});
        if !users.is_empty() {
            out["users"] = Value::Array(users);
        }
        Response::builder()
            .content_type("application/json")
            .body(out.to_string())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[handler]
async fn route(req: &Request, body: Body, Data(state): Data<&Arc<State>>) -> Response {
    let path = req.uri().path().to_string();
    let body = body.into_vec().await.unwrap_or_default();
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/certs") => state.certs().await,
        ("POST", "/token") => state.token(req, body).await,
        ("POST", p) if p.ends_with("/accounts:lookup") => state.lookup(req, body).await,
        ("GET", p) if p.starts_with("/v1/projects/") => state.document(req, p).await,
        _ => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown endpoint"),
    }
}

impl MockGoogle {
    /// Starts the mock for `project`, publishing `keys` as securetoken certificates.
    pub async fn start(project: &str, keys: &[&GoogleKey]) -> MockGoogle {
        let service_key = GoogleKey::generate("3f1c0a9b7e2d4c6a8b0e1f2d3c4b5a6978877665");
        let state = Arc::new(State {
            project: project.into(),
            client_email: SA_EMAIL.into(),
            sa_public_pem: service_key.public_pem.clone(),
            certs: Mutex::new(
                keys.iter()
                    .map(|k| (k.kid.clone(), k.cert_pem.clone()))
                    .collect(),
            ),
            allowed: Mutex::new(HashSet::new()),
            issued: Mutex::new(HashSet::new()),
            emulator_users: Mutex::new(Vec::new()),
            certs_fault: Mutex::new(None),
            token_fault: Mutex::new(None),
            firestore_fault: Mutex::new(None),
            certs_hits: AtomicU64::new(0),
            token_hits: AtomicU64::new(0),
            firestore_hits: AtomicU64::new(0),
            lookup_hits: AtomicU64::new(0),
            base: Mutex::new(String::new()),
        });
        let app = Route::new().at("/*path", route).data(state.clone());
        // Nobody knows the address before `serve` returns, so no request comes before this is set.
        let server = MockServer::serve(app).await;
        let base = server.base.clone();
        *state.base.lock().expect("lock") = base.clone();
        MockGoogle {
            base,
            state,
            service_key,
            _server: server,
        }
    }

    /// `host:port`, for the emulator environment variables.
    pub fn host_port(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// The certificate map URL.
    pub fn certs_url(&self) -> String {
        format!("{}/certs", self.base)
    }

    /// The service-account key file's JSON, with `token_uri` pointing here.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": self.state.project,
            "private_key_id": self.service_key.kid,
            "private_key": self.service_key.private_pem,
            "client_email": SA_EMAIL,
            "client_id": "104857600000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}/token", self.base),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/firebase-adminsdk-x1y2z%40demo-project.iam.gserviceaccount.com",
            "universe_domain": "googleapis.com"
        })
        .to_string()
    }

    /// Replaces the published certificates.
    pub fn set_keys(&self, keys: &[&GoogleKey]) {
        *self.state.certs.lock().expect("lock") = keys
            .iter()
            .map(|k| (k.kid.clone(), k.cert_pem.clone()))
            .collect();
    }

    /// Creates `user_access/{uid}`.
    pub fn allow(&self, uid: &str) {
        self.state
            .allowed
            .lock()
            .expect("lock")
            .insert(uid.to_string());
    }

    /// Adds a user to the Auth emulator.
    pub fn add_emulator_user(&self, user: Value) {
        self.state.emulator_users.lock().expect("lock").push(user);
    }

    /// Revokes every access token issued so far (Firestore then answers 401 to them).
    pub fn revoke_access_tokens(&self) {
        self.state.issued.lock().expect("lock").clear();
    }

    /// Lets the emulator's `owner` token through Firestore.
    pub fn accept_owner(&self) {
        self.state
            .issued
            .lock()
            .expect("lock")
            .insert("owner".into());
    }

    /// Makes the certificate endpoint misbehave (`None` = behave).
    pub fn certs_fault(&self, fault: Option<Fault>) {
        *self.state.certs_fault.lock().expect("lock") = fault;
    }
    /// Makes the token endpoint misbehave (`None` = behave).
    pub fn token_fault(&self, fault: Option<Fault>) {
        *self.state.token_fault.lock().expect("lock") = fault;
    }
    /// Makes Firestore misbehave (`None` = behave).
    pub fn firestore_fault(&self, fault: Option<Fault>) {
        *self.state.firestore_fault.lock().expect("lock") = fault;
    }

    /// Certificate fetches so far.
    pub fn certs_hits(&self) -> u64 {
        self.state.certs_hits.load(Ordering::SeqCst)
    }
    /// Token grants asked so far.
    pub fn token_hits(&self) -> u64 {
        self.state.token_hits.load(Ordering::SeqCst)
    }
    /// Firestore reads so far.
    pub fn firestore_hits(&self) -> u64 {
        self.state.firestore_hits.load(Ordering::SeqCst)
    }
    /// Auth emulator lookups so far.
    pub fn lookup_hits(&self) -> u64 {
        self.state.lookup_hits.load(Ordering::SeqCst)
    }
}
