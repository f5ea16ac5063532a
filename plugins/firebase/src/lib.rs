//! The `firebase` provider: Firebase Auth ID tokens, checked the way the Firebase Admin SDK's
//! `verifyIdToken()` documents it, and authorized by the existence of the Firestore document
//! `user_access/{uid}` (the seed's `MastraAuthFirebase`).
//!
//! * **Tokens**: RS256 only, keys from Google's `securetoken` certificate map (kid → PEM X.509
//!   certificate), fetched and cached by the host (`Cache-Control: max-age`, one shared refetch on
//!   an unknown `kid`); `iss = https://securetoken.google.com/{project}`, `aud = {project}`, a
//!   `kid` header, `sub` a non-empty string of at most 128 characters, `auth_time` and `iat` in the
//!   past, `exp` in the future. The user handed on is the token's claims plus `uid` (= `sub`), as
//!   the Admin SDK's `DecodedIdToken`.
//! * **Authorization**: `GET {firestore}/v1/projects/{project}/databases/{database}/documents/user_access/{uid}`
//!   with an OAuth2 access token from the service account's signed-JWT bearer grant (RFC 7523),
//!   cached until shortly before it expires and refreshed once for all concurrent callers.
//!   200 = allowed, 404 = not allowed (403), anything else = the check could not be made (503).
//! * **Emulators**: `FIREBASE_AUTH_EMULATOR_HOST` and `FIRESTORE_EMULATOR_HOST` are honoured the way
//!   the Admin SDK honours them (unsigned `alg: none` tokens plus an `accounts:lookup` against the
//!   Auth emulator; `Bearer owner` against the Firestore emulator), but **only** when the instance
//!   also sets `dangerous_emulator: true`; otherwise they are ignored with a warning, so a stray
//!   environment variable can never turn signature checks off in production.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use base64::Engine as _;
use futures_util::lock::Mutex as AsyncMutex;
use portcullis_plugin_api::{
    export_provider, AuthProvider, Host, HttpResponse, JwtVerifierSpec, Plugin, PluginConfig,
    PluginError, Request, User, Verifier,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Google's certificate map for Firebase ID tokens.
pub const GOOGLE_CERTS_URL: &str =
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com";
/// Google's OAuth2 token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Firestore's REST base.
pub const FIRESTORE_URL: &str = "https://firestore.googleapis.com";
/// The scope the access token asks for.
pub const DATASTORE_SCOPE: &str = "https://www.googleapis.com/auth/datastore";
/// The issuer prefix of Firebase ID tokens.
pub const ISSUER_PREFIX: &str = "https://securetoken.google.com/";

/// The error when no service account is configured.
pub const MISSING_SERVICE_ACCOUNT: &str = "Firebase service account is required: set \
     `service_account` (the service-account JSON, or a path to it) or the environment variable \
     FIREBASE_SERVICE_ACCOUNT";

/// The error when no project id can be found (the Admin SDK's wording).
pub const MISSING_PROJECT: &str = "Firebase project id is required: set `service_account`, \
     `project_id` or the environment variable GOOGLE_CLOUD_PROJECT";

const MAX_SERVICE_ACCOUNT_BYTES: u64 = 64 * 1024;
const MAX_UID_CHARS: usize = 128;
const JWT_BEARER: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// The instance's `config:` mapping.
#[derive(Deserialize, PluginConfig, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// service-account JSON or a path to it (env FIREBASE_SERVICE_ACCOUNT)
    ///
    /// The seed's error `Firebase service account is required` when it is missing from both
    /// (unless the Firestore emulator is used).
    #[config(
        secret,
        env = "FIREBASE_SERVICE_ACCOUNT",
        example = r#"{"type":"service_account","project_id":"my-project","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7example\n-----END PRIVATE KEY-----\n","client_email":"portcullis@my-project.iam.gserviceaccount.com"}"#
    )]
    pub service_account: Option<String>,
    /// Firestore database (env FIRESTORE_DATABASE_ID, FIREBASE_DATABASE_ID; default `(default)`)
    ///
    /// The SDK fills in `FIRESTORE_DATABASE_ID`; `FIREBASE_DATABASE_ID` is the plugin's own
    /// second fallback.
    #[config(env = "FIRESTORE_DATABASE_ID")]
    pub database_id: Option<String>,
    /// overrides the service account's project_id
    ///
    /// Without either, `GOOGLE_CLOUD_PROJECT`, then `GCLOUD_PROJECT`.
    pub project_id: Option<String>,
    /// securetoken certificate map URL (default Google's)
    #[config(url)]
    pub certs_url: Option<String>,
    /// OAuth2 token endpoint (default the key's token_uri)
    ///
    /// Else Google's.
    #[config(url)]
    pub token_url: Option<String>,
    /// Firestore REST base (default https://firestore.googleapis.com)
    #[config(url)]
    pub firestore_url: Option<String>,
    /// clock leeway in seconds (default 30)
    ///
    /// For `exp`, `iat` and `auth_time`; at most 300.
    pub leeway_secs: Option<u64>,
    /// honour FIREBASE_AUTH_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST (unsigned tokens; never in production)
    pub dangerous_emulator: bool,
}

#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key: String,
    client_email: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

enum TokenCheck {
    /// Production: the host verifies signatures against Google's certificates.
    Signed(Verifier),
    /// The Auth emulator: unsigned tokens, then `accounts:lookup` at `http://{host}`.
    Emulator { host: String },
}

enum Bearer {
    /// An access token from the service account.
    ServiceAccount(Arc<TokenSource>),
    /// The Firestore emulator's admin token.
    Owner,
}

/// A configured instance.
pub struct FirebaseProvider {
    host: Host,
    project: String,
    issuer: String,
    leeway: u64,
    check: TokenCheck,
    /// `{base}/v1/projects/{project}/databases/{database}/documents/user_access/`.
    documents: String,
    bearer: Bearer,
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn bad(message: &str) -> PluginError {
    PluginError::invalid_token(format!("firebase id token: {message}"))
}

fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64))
}

/// Percent-encodes `s` as one URL path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `error.status` / `error.message` of a Google-style error body.
fn google_error(resp: &HttpResponse) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    let e = v.get("error")?;
    Some((
        e.get("status")?.as_str()?.to_string(),
        e.get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    ))
}

impl FirebaseProvider {
    fn now_secs(&self) -> i64 {
        (self.host.now_unix_millis() / 1000) as i64
    }

    /// The checks the Admin SDK documents, beyond what the host verifier did (or all of them for
    /// emulator tokens, which have no signature).
    fn check_claims(&self, claims: &Map<String, Value>, full: bool) -> Result<(), PluginError> {
        let now = self.now_secs();
        let leeway = self.leeway as i64;
        if full {
            if claims.get("aud").and_then(Value::as_str) != Some(self.project.as_str()) {
                return Err(bad("incorrect \"aud\" (audience) claim"));
            }
            if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                return Err(bad("incorrect \"iss\" (issuer) claim"));
            }
            match seconds(claims, "exp") {
                Some(exp) if exp > now - leeway => {}
                Some(_) => return Err(bad("has expired")),
                None => return Err(bad("has no \"exp\" claim")),
            }
            if seconds(claims, "nbf").is_some_and(|nbf| nbf > now + leeway) {
                return Err(bad("is not valid yet"));
            }
        }
        match claims.get("sub") {
            Some(Value::String(s)) if s.is_empty() => {
                return Err(bad("has an empty \"sub\" (subject) claim"))
            }
            Some(Value::String(s)) if s.chars().count() > MAX_UID_CHARS => {
                return Err(bad(
                    "has a \"sub\" (subject) claim longer than 128 characters",
                ))
            }
            Some(Value::String(_)) => {}
            _ => return Err(bad("has no \"sub\" (subject) claim")),
        }
        match seconds(claims, "iat") {
            Some(iat) if iat <= now + leeway => {}
            Some(_) => return Err(bad("\"iat\" is in the future")),
            None => return Err(bad("has no \"iat\" claim")),
        }
        match seconds(claims, "auth_time") {
            Some(t) if t <= now + leeway => {}
            Some(_) => return Err(bad("\"auth_time\" is in the future")),
            None => return Err(bad("has no \"auth_time\" claim")),
        }
        Ok(())
    }

    async fn authenticate_signed(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Result<Map<String, Value>, PluginError> {
        // The Admin SDK refuses a token without `kid` before looking at keys.
        let header = token
            .split('.')
            .next()
            .and_then(b64_json)
            .ok_or_else(|| bad("is not a jwt"))?;
        match header.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => {}
            _ => return Err(bad("has no \"kid\" header")),
        }
        let user = verifier.verify(token).await?;
        let claims = user.claims()?;
        self.check_claims(&claims, false)?;
        Ok(claims)
    }

    async fn authenticate_emulated(
        &self,
        emulator: &str,
        token: &str,
    ) -> Result<Map<String, Value>, PluginError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is not a jwt"));
        };
        let header = b64_json(h).ok_or_else(|| bad("is not a jwt"))?;
        // The emulator signs nothing: exactly `alg: none` and an empty signature, as the Admin
        // SDK's emulator verifier demands. A signed token is refused here.
        if header.get("alg").and_then(Value::as_str) != Some("none") || !sig.is_empty() {
            return Err(bad("emulator mode accepts only unsigned emulator tokens"));
        }
        let claims = b64_json(p).ok_or_else(|| bad("is not a jwt"))?;
        self.check_claims(&claims, true)?;
        let uid = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // The Admin SDK forces a revocation check in emulator mode.
        let url = format!(
            "http://{emulator}/identitytoolkit.googleapis.com/v1/projects/{}/accounts:lookup",
            encode_segment(&self.project)
        );
        let body = serde_json::json!({ "localId": [uid] }).to_string();
        let resp = self
            .host
            .post(
                &url,
                &[
                    ("authorization", "Bearer owner"),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await?;
        if resp.status != 200 {
            return Err(PluginError::unavailable(format!(
                "auth emulator accounts:lookup answered http {}",
                resp.status
            )));
        }
        let v: Value = serde_json::from_slice(&resp.body).map_err(|_| {
            PluginError::unavailable("auth emulator accounts:lookup answered non-json")
        })?;
        let Some(user) = v
            .get("users")
            .and_then(Value::as_array)
            .and_then(|u| u.first())
        else {
            return Err(bad("user not found"));
        };
        if user.get("disabled").and_then(Value::as_bool) == Some(true) {
            return Err(bad("user is disabled"));
        }
        let valid_since = user.get("validSince").and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or(v.as_i64())
        });
        if let (Some(since), Some(auth_time)) = (valid_since, seconds(&claims, "auth_time")) {
            if auth_time < since {
                return Err(bad("has been revoked"));
            }
        }
        Ok(claims)
    }

    async fn bearer(&self) -> Result<String, PluginError> {
        match &self.bearer {
            Bearer::Owner => Ok("owner".to_string()),
            Bearer::ServiceAccount(source) => source.token().await,
        }
    }

    async fn user_access_exists(&self, uid: &str) -> Result<bool, PluginError> {
        let url = format!("{}{}", self.documents, encode_segment(uid));
        let mut retried = false;
        loop {
            let token = self.bearer().await?;
            let auth = format!("Bearer {token}");
            let resp = self
                .host
                .get(
                    &url,
                    &[("authorization", &auth), ("accept", "application/json")],
                )
                .await?;
            match resp.status {
                200 => {
                    // Only a Firestore document counts: a 200 from anything else (a proxy's HTML
                    // page) must not let anyone in.
                    let doc: Value = serde_json::from_slice(&resp.body).map_err(|_| {
                        PluginError::unavailable("firestore answered 200 with a non-json body")
                    })?;
                    let suffix = format!("/documents/user_access/{uid}");
                    return match doc.get("name").and_then(Value::as_str) {
                        Some(name) if name.ends_with(&suffix) => Ok(true),
                        _ => Err(PluginError::unavailable(
                            "firestore answered 200 without the requested document",
                        )),
                    };
                }
                404 => {
                    // A missing document is "not allowed"; a missing database ("The database
                    // (…) does not exist for project …") is a broken setup, not a verdict.
                    return match google_error(&resp) {
                        Some((status, message))
                            if status == "NOT_FOUND" && !message.contains("does not exist") =>
                        {
                            Ok(false)
                        }
                        Some((_, message)) => Err(PluginError::unavailable(format!(
                            "firestore: {}",
                            message.chars().take(200).collect::<String>()
                        ))),
                        None => Err(PluginError::unavailable(
                            "firestore answered 404 without a google error body",
                        )),
                    };
                }
                401 if !retried => {
                    // The access token was refused (revoked or expired early): get a new one once.
                    if let Bearer::ServiceAccount(source) = &self.bearer {
                        source.invalidate(&token).await;
                    }
                    retried = true;
                }
                status => {
                    return Err(PluginError::unavailable(format!(
                        "firestore answered http {status}"
                    )))
                }
            }
        }
    }
}

impl AuthProvider for FirebaseProvider {
    async fn authenticate(
        &self,
        token: String,
        _request: Request,
    ) -> Result<Option<User>, PluginError> {
        let mut claims = match &self.check {
            TokenCheck::Signed(v) => self.authenticate_signed(v, &token).await?,
            TokenCheck::Emulator { host } => self.authenticate_emulated(host, &token).await?,
        };
        if let Some(sub) = claims.get("sub").cloned() {
            claims.insert("uid".into(), sub);
        }
        Ok(Some(User::from_claims(claims)))
    }

    async fn authorize(&self, user: User, _request: Request) -> Result<bool, PluginError> {
        let Some(uid) = user.subject() else {
            return Ok(false);
        };
        // A Firestore document id cannot contain `/` nor be `.` or `..` (URL parsers would also
        // resolve those), so no such user can have a `user_access` document.
        if uid.contains('/') || uid == "." || uid == ".." || uid.chars().count() > MAX_UID_CHARS {
            return Ok(false);
        }
        self.user_access_exists(&uid).await
    }

    fn issuers(&self) -> Vec<String> {
        vec![self.issuer.clone()]
    }

    /// A signed ID token is decided by its signature, claims and the clock alone; the emulator
    /// mode asks the emulator about revocation on every request, so it is not reusable.
    fn reusable_authentication(&self) -> bool {
        matches!(self.check, TokenCheck::Signed(_))
    }
}

/// Access tokens from the signed-JWT bearer grant, cached until shortly before they expire.
pub struct TokenSource {
    host: Host,
    account: ServiceAccount,
    token_url: String,
    /// The cached token and when it must no longer be used (Unix ms).
    state: AsyncMutex<Option<(String, u64)>>,
    /// Grants attempted; a caller that waited while an attempt failed reuses that failure
    /// instead of queueing another request behind a failing endpoint.
    attempts: AtomicU64,
    last_error: std::sync::Mutex<Option<(u64, PluginError)>>,
    /// Grants that returned a token (for status and tests).
    pub granted: AtomicU64,
}

impl TokenSource {
    async fn token(&self) -> Result<String, PluginError> {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        let now = self.host.now_unix_millis();
        if let Some((token, until)) = &*state {
            if now < *until {
                return Ok(token.clone());
            }
        }
        {
            let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((attempt, err)) = &*last {
                if *attempt > seen {
                    return Err(err.clone());
                }
            }
        }
        let attempt = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        match self.grant().await {
            Ok((token, expires_in)) => {
                // Refresh a minute early (or halfway, for short-lived tokens).
                let margin = 60.min(expires_in / 2);
                let until = now + (expires_in - margin) * 1000;
                *state = Some((token.clone(), until));
                self.granted.fetch_add(1, Ordering::Relaxed);
                Ok(token)
            }
            Err(e) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((attempt, e.clone()));
                Err(e)
            }
        }
    }

    async fn invalidate(&self, token: &str) {
        let mut state = self.state.lock().await;
        if state.as_ref().is_some_and(|(t, _)| t == token) {
            *state = None;
        }
    }

    /// One RFC 7523 grant: returns the access token and its lifetime in seconds.
    async fn grant(&self) -> Result<(String, u64), PluginError> {
        let now = self.host.now_unix_millis() / 1000;
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": DATASTORE_SCOPE,
            "aud": self.token_url,
            "iat": now,
            "exp": now + 3600,
        });
        let assertion = self.host.sign_jwt_rs256(
            &claims,
            self.account.private_key_id.as_deref(),
            &self.account.private_key,
        )?;
        let body = format!("grant_type={JWT_BEARER}&assertion={assertion}");
        let resp = self
            .host
            .post(
                &self.token_url,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("accept", "application/json"),
                ],
                body,
            )
            .await?;
        let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
        if resp.status != 200 {
            let code = v
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map(|c| c.chars().take(64).collect::<String>())
                .unwrap_or_else(|| "no oauth2 error code".into());
            return Err(PluginError::unavailable(format!(
                "token endpoint answered http {} ({code})",
                resp.status
            )));
        }
        let v = v.ok_or_else(|| PluginError::unavailable("token endpoint answered non-json"))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PluginError::unavailable("token endpoint answered no access_token"))?;
        let expires_in = v
            .get("expires_in")
            .and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok()))
            .unwrap_or(3600)
            .clamp(1, 24 * 3600);
        Ok((token.to_string(), expires_in))
    }
}

/// The plugin.
pub struct FirebasePlugin;

fn load_service_account(text: &str) -> Result<ServiceAccount, PluginError> {
    let json = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        let path = std::path::Path::new(text.trim());
        let too_big = std::fs::metadata(path)
            .map(|m| m.len() > MAX_SERVICE_ACCOUNT_BYTES)
            .map_err(|_| {
                PluginError::config(
                    "service_account: neither service-account JSON nor a readable file",
                )
            })?;
        if too_big {
            return Err(PluginError::config(
                "service_account: the file is larger than 64 KiB",
            ));
        }
        std::fs::read_to_string(path).map_err(|_| {
            PluginError::config("service_account: the file could not be read as text")
        })?
    };
    let account: ServiceAccount = serde_json::from_str(&json).map_err(|_| {
        PluginError::config(
            "service_account: not a service-account key (needs project_id, private_key and \
             client_email)",
        )
    })?;
    if account.project_id.is_empty() || account.client_email.is_empty() {
        return Err(PluginError::config(
            "service_account: project_id and client_email must not be empty",
        ));
    }
    Ok(account)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'(' | b')'))
}

fn trim_base(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl Plugin for FirebasePlugin {
    type Provider = FirebaseProvider;
    type Config = Config;
    const NAME: &'static str = "firebase";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Firebase Auth ID tokens; access iff Firestore user_access/{uid} exists";
    // The answer depends on the subject alone (a lookup by `sub`): the host may cache it.
    const AUTHORIZE_BY_SUBJECT: bool = true;

    fn validate(config: &Config, _host: &Host) -> Result<(), PluginError> {
        if let Some(db) = &config.database_id {
            if !valid_id(db) {
                return Err(PluginError::config(
                    "database_id: use letters, digits, `-`, `_` (or `(default)`)",
                ));
            }
        }
        if let Some(p) = &config.project_id {
            if !valid_id(p) {
                return Err(PluginError::config(
                    "project_id: use letters, digits, `-` and `_`",
                ));
            }
        }
        if config.leeway_secs.is_some_and(|l| l > 300) {
            return Err(PluginError::config("leeway_secs: at most 300"));
        }
        Ok(())
    }

    fn build(config: Config, host: Host) -> Result<FirebaseProvider, PluginError> {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let env = |name: &str| nonempty(host.env(name));

        let auth_emulator = env("FIREBASE_AUTH_EMULATOR_HOST");
        let firestore_emulator = env("FIRESTORE_EMULATOR_HOST");
        let (auth_emulator, firestore_emulator) = if config.dangerous_emulator {
            if auth_emulator.is_none() && firestore_emulator.is_none() {
                return Err(PluginError::config(
                    "dangerous_emulator is set, but neither FIREBASE_AUTH_EMULATOR_HOST nor \
                     FIRESTORE_EMULATOR_HOST is",
                ));
            }
            host.warn(
                "dangerous_emulator: talking to the Firebase emulators; emulator ID tokens are \
                 UNSIGNED. Never use this in production",
            );
            (auth_emulator, firestore_emulator)
        } else {
            if auth_emulator.is_some() || firestore_emulator.is_some() {
                host.warn(
                    "FIREBASE_AUTH_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST are set but ignored: \
                     set `dangerous_emulator: true` on this instance to use the emulators",
                );
            }
            (None, None)
        };

        // `FIREBASE_SERVICE_ACCOUNT` is filled in by the SDK when `service_account` is absent.
        let account_text = nonempty(config.service_account.clone());
        let account = match account_text {
            Some(text) => Some(load_service_account(&text)?),
            // Only a fully emulated setup can do without credentials.
            None if firestore_emulator.is_some() => None,
            None => return Err(PluginError::config(MISSING_SERVICE_ACCOUNT)),
        };
        let project = nonempty(config.project_id.clone())
            .or_else(|| account.as_ref().map(|a| a.project_id.clone()))
            .or_else(|| env("GOOGLE_CLOUD_PROJECT"))
            .or_else(|| env("GCLOUD_PROJECT"))
            .ok_or_else(|| PluginError::config(MISSING_PROJECT))?;
        if !valid_id(&project) {
            return Err(PluginError::config(
                "project_id: use letters, digits, `-` and `_`",
            ));
        }
        // `FIRESTORE_DATABASE_ID` is filled in by the SDK when `database_id` is absent.
        let database = nonempty(config.database_id.clone())
            .or_else(|| env("FIREBASE_DATABASE_ID"))
            .unwrap_or_else(|| "(default)".to_string());
        if !valid_id(&database) {
            return Err(PluginError::config(
                "database_id: use letters, digits, `-`, `_` (or `(default)`)",
            ));
        }
        let leeway = config.leeway_secs.unwrap_or(30).min(300);
        let issuer = format!("{ISSUER_PREFIX}{project}");

        let check = match auth_emulator {
            Some(h) => TokenCheck::Emulator { host: h },
            None => {
                let spec = JwtVerifierSpec {
                    algorithms: vec!["RS256".into()],
                    x509_url: Some(
                        config
                            .certs_url
                            .clone()
                            .unwrap_or_else(|| GOOGLE_CERTS_URL.into()),
                    ),
                    issuer: vec![issuer.clone()],
                    audience: vec![project.clone()],
                    leeway_secs: Some(leeway),
                    required_claims: vec!["sub".into(), "iat".into(), "auth_time".into()],
                    require_exp: Some(true),
                    ..JwtVerifierSpec::default()
                };
                TokenCheck::Signed(host.jwt_verifier(&spec)?)
            }
        };

        let (base, bearer) = match (firestore_emulator, account) {
            (Some(h), _) => (format!("http://{}", trim_base(&h)), Bearer::Owner),
            (None, Some(account)) => {
                // Fail at load, not at the first request, when the key cannot sign.
                host.sign_jwt_rs256(&serde_json::json!({}), None, &account.private_key)
                    .map_err(|_| {
                        PluginError::config(
                            "service_account: private_key is not a usable RSA private key",
                        )
                    })?;
                let token_url = match nonempty(config.token_url.clone()) {
                    // Checked by the SDK (`#[config(url)]`).
                    Some(url) => url,
                    None => {
                        let url = nonempty(account.token_uri.clone())
                            .unwrap_or_else(|| GOOGLE_TOKEN_URL.into());
                        // The key's own endpoint: every grant would be refused if the host
                        // would not call it.
                        host.check_url(&url)
                            .map_err(|e| e.context("service_account: token_uri"))?;
                        url
                    }
                };
                let base =
                    trim_base(config.firestore_url.as_deref().unwrap_or(FIRESTORE_URL)).to_string();
                let source = TokenSource {
                    host: host.clone(),
                    account,
                    token_url,
                    state: AsyncMutex::new(None),
                    attempts: AtomicU64::new(0),
                    last_error: std::sync::Mutex::new(None),
                    granted: AtomicU64::new(0),
                };
                (base, Bearer::ServiceAccount(Arc::new(source)))
            }
            (None, None) => return Err(PluginError::config(MISSING_SERVICE_ACCOUNT)),
        };
        let documents = format!(
            "{base}/v1/projects/{}/databases/{}/documents/user_access/",
            encode_segment(&project),
            database
        );
        Ok(FirebaseProvider {
            host,
            project,
            issuer,
            leeway,
            check,
            documents,
            bearer,
        })
    }
}

export_provider!(FirebasePlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_one_encoded_segment() {
        assert_eq!(encode_segment("kXa2x9dV0bTq"), "kXa2x9dV0bTq");
        assert_eq!(encode_segment("a/b/c"), "a%2Fb%2Fc");
        assert_eq!(encode_segment("a b?#%"), "a%20b%3F%23%25");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn service_account_errors_never_echo_the_value() {
        let secret = "{\"private_key\": \"-----BEGIN PRIVATE KEY-----SECRET\"}";
        let err = load_service_account(secret)
            .err()
            .map(|e| e.message().to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("service_account"), "{err}");
        assert!(!err.contains("SECRET"));
        let err = load_service_account("/nonexistent/sa.json")
            .err()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        assert!(err.contains("readable file"), "{err}");
    }

    #[test]
    fn ids_are_restricted() {
        assert!(valid_id("(default)"));
        assert!(valid_id("my-project_1"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
        assert!(!valid_id("x?y"));
    }
}
