//! The host services object lent to each provider instance.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use portcullis_plugin_api::{
    abi::{
        abi_stable::{
            sabi_trait::TD_Opaque,
            std_types::{ROption, RResult, RStr, RString, RVec, Tuple2},
        },
        async_ffi::{FfiFuture, FutureExt as _},
        HostServices, HttpRequest, HttpResponse, JwtVerifier, JwtVerifierBox, JwtVerifier_TO,
        LogLevel,
    },
    JwtVerifierSpec, PluginError,
};

use crate::{
    jose::{self, Algorithm, JwsError, Key, KeyFamily, Validation},
    keys::{check_scheme, HttpClient},
    keys::{InstanceKeySets, KeyCache, KeyFormat, KeySet},
};

/// What every instance's services share.
pub struct SharedServices {
    /// Outgoing HTTP.
    pub http: HttpClient,
    /// JWKS cache.
    pub keys: Arc<KeyCache>,
    /// Largest HTTP response a plugin may read.
    pub max_response_bytes: usize,
    /// Default time limit of a plugin's HTTP request.
    pub http_timeout: Duration,
}

/// The services of one provider instance.
#[derive(Clone)]
pub struct InstanceServices {
    shared: Arc<SharedServices>,
    instance: Arc<str>,
    allow_http: bool,
    max_token_bytes: usize,
    key_sets: Arc<InstanceKeySets>,
    verifiers_remember: Arc<AtomicBool>,
}

impl InstanceServices {
    /// Services for instance `name`.
    pub fn new(
        shared: Arc<SharedServices>,
        name: &str,
        allow_http: bool,
        max_token_bytes: usize,
    ) -> Self {
        InstanceServices {
            shared,
            instance: name.into(),
            allow_http,
            max_token_bytes,
            key_sets: Arc::default(),
            verifiers_remember: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether this instance's verifiers keep their own memory of accepted tokens (shared with
    /// every clone of these services). The host turns it off while it keeps the instance's
    /// answers itself (the authentication cache): the verifier is then only asked about tokens
    /// the host does not hold, and hashing and storing each of them again would be waste.
    pub fn verifiers_remember(&self) -> &Arc<AtomicBool> {
        &self.verifiers_remember
    }

    /// The key sets this instance's verifiers use (shared with every clone of these services).
    pub fn key_sets(&self) -> &Arc<InstanceKeySets> {
        &self.key_sets
    }

    /// The verifier [`HostServices::jwt_verifier`] builds from `spec_json`, for the host's own use
    /// (benchmarks, the bench-only direct path): no plugin boundary in between.
    pub fn verifier(&self, spec_json: &str) -> Result<HostVerifier, PluginError> {
        build_verifier(self, spec_json)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The server process's environment (the same for every instance; see docs/plugins.md on when
/// it is read).
fn process_env(name: RStr<'_>) -> ROption<RString> {
    std::env::var(name.as_str()).ok().map(RString::from).into()
}

/// Whether the instance's HTTP requests may go to `url`.
fn url_policy(url: RStr<'_>, allow_http: bool) -> RResult<(), PluginError> {
    check_scheme(url.as_str(), allow_http)
        .map_err(PluginError::config)
        .into()
}

impl HostServices for InstanceServices {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let (provider, message) = (&*self.instance, message.as_str());
        match level {
            LogLevel::ERROR => tracing::error!(provider, "{message}"),
            LogLevel::WARN => tracing::warn!(provider, "{message}"),
            LogLevel::DEBUG => tracing::debug!(provider, "{message}"),
            _ => tracing::info!(provider, "{message}"),
        }
    }

    fn now_unix_millis(&self) -> u64 {
        unix_millis()
    }

    fn env_var(&self, name: RStr<'_>) -> ROption<RString> {
        process_env(name)
    }

    fn check_url(&self, url: RStr<'_>) -> RResult<(), PluginError> {
        url_policy(url, self.allow_http)
    }

    fn http(&self, request: HttpRequest) -> FfiFuture<RResult<HttpResponse, PluginError>> {
        let this = self.clone();
        async move {
            let url = request.url.to_string();
            if let Err(e) = check_scheme(&url, this.allow_http) {
                return RResult::RErr(PluginError::config(format!("http request refused: {e}")));
            }
            let timeout = match request.timeout_ms {
                0 => this.shared.http_timeout,
                ms => Duration::from_millis(ms).min(Duration::from_secs(60)),
            };
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|t| (t.0.to_string(), t.1.to_string()))
                .collect();
            let result = this
                .shared
                .http
                .send(
                    &request.method,
                    &url,
                    &headers,
                    request.body.into_vec(),
                    timeout,
                    this.shared.max_response_bytes,
                )
                .await;
            match result {
                Ok(resp) => RResult::ROk(HttpResponse {
                    status: resp.status,
                    headers: resp
                        .headers
                        .into_iter()
                        .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                        .collect::<RVec<_>>(),
                    body: resp.body.into(),
                }),
                Err(e) => RResult::RErr(PluginError::unavailable(format!(
                    "http request failed: {e}"
                ))),
            }
        }
        .into_ffi()
    }

    fn jwt_verifier(&self, spec_json: RStr<'_>) -> RResult<JwtVerifierBox, PluginError> {
        build_verifier(self, spec_json.as_str())
            .map(|v| JwtVerifier_TO::from_value(v, TD_Opaque))
            .into()
    }

    fn sign_jwt_rs256(
        &self,
        claims_json: RStr<'_>,
        kid: ROption<RStr<'_>>,
        private_key_pem: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        let claims: serde_json::Value = match serde_json::from_str(claims_json.as_str()) {
            Ok(v) => v,
            Err(_) => return RResult::RErr(PluginError::internal("claims to sign are not json")),
        };
        let kid = kid.into_option().map(|k| k.as_str());
        jose::sign_rs256(&claims, kid, private_key_pem.as_str())
            .map(RString::from)
            .map_err(|e| PluginError::config(format!("signing failed: {e}")))
            .into()
    }
}

/// The services a plugin's `validate_config` gets: its instance's environment and URL policy, and
/// nothing that reaches the network (a config is checked without fetching anything).
#[derive(Clone)]
pub struct CheckServices {
    instance: Arc<str>,
    allow_http: bool,
}

impl CheckServices {
    /// The services for checking instance `name`'s config.
    pub fn new(name: &str, allow_http: bool) -> Self {
        CheckServices {
            instance: name.into(),
            allow_http,
        }
    }
}

fn not_while_checking(what: &str) -> PluginError {
    PluginError::internal(format!(
        "{what} is not available while a config is checked (validate must not fetch anything)"
    ))
}

impl HostServices for CheckServices {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let (provider, message) = (&*self.instance, message.as_str());
        match level {
            LogLevel::ERROR | LogLevel::WARN => tracing::warn!(provider, "{message}"),
            _ => tracing::debug!(provider, "{message}"),
        }
    }

    fn now_unix_millis(&self) -> u64 {
        unix_millis()
    }

    fn env_var(&self, name: RStr<'_>) -> ROption<RString> {
        process_env(name)
    }

    fn check_url(&self, url: RStr<'_>) -> RResult<(), PluginError> {
        url_policy(url, self.allow_http)
    }

    fn http(&self, _request: HttpRequest) -> FfiFuture<RResult<HttpResponse, PluginError>> {
        let e = not_while_checking("an HTTP request");
        async move { RResult::RErr(e) }.into_ffi()
    }

    fn jwt_verifier(&self, _spec_json: RStr<'_>) -> RResult<JwtVerifierBox, PluginError> {
        RResult::RErr(not_while_checking("a JWT verifier"))
    }

    fn sign_jwt_rs256(
        &self,
        _claims_json: RStr<'_>,
        _kid: ROption<RStr<'_>>,
        _private_key_pem: RStr<'_>,
    ) -> RResult<RString, PluginError> {
        RResult::RErr(not_while_checking("signing"))
    }
}

enum KeySource {
    Static(Arc<[Key]>),
    Jwks(Arc<KeySet>),
}

/// A verifier compiled from a [`JwtVerifierSpec`]; cheap to clone.
#[derive(Clone)]
pub struct HostVerifier(Arc<VerifierInner>);

struct VerifierInner {
    keys: KeySource,
    cache: Arc<KeyCache>,
    validation: Validation,
    /// Tokens this verifier accepted recently. It belongs to this verifier alone: a rebuilt
    /// provider instance builds a new verifier and starts empty.
    accepted: AcceptedTokens,
    /// Whether `accepted` is used (see [`InstanceServices::verifiers_remember`]).
    remember: Arc<AtomicBool>,
}

/// Tokens a verifier kept per instance; the oldest go first.
pub const ACCEPTED_TOKENS_CAPACITY: usize = 4096;
/// The longest a verification is reused, whatever the token's `exp`.
pub const ACCEPTED_TOKENS_MAX_AGE_SECS: u64 = 300;

/// A bounded memory of tokens that passed every check, so that a token sent again is not
/// verified again (the RSA or ECDSA check is most of a request's cost).
///
/// * Keyed by the SHA-256 of the whole token: only the very same token hits.
/// * An entry is used only before the token's `exp` (no leeway) and at most
///   [`ACCEPTED_TOKENS_MAX_AGE_SECS`] after it was verified; `nbf` and `iat` were checked against
///   an earlier clock, and time only moves them further into the past. Past that the token is
///   verified in full again.
/// * Tokens checked against a JWKS remember the key set they were verified with; once the set is
///   refreshed (a key may have been withdrawn) they are verified again.
/// * Failures are never kept.
struct AcceptedTokens {
    inner: std::sync::Mutex<AcceptedInner>,
}

#[derive(Default)]
struct AcceptedInner {
    entries: std::collections::HashMap<[u8; 32], Accepted>,
    /// Insertion order, for eviction; each key of `entries` appears exactly once.
    order: std::collections::VecDeque<[u8; 32]>,
}

struct Accepted {
    claims: RString,
    /// Unix seconds; used while `now < until`.
    until: u64,
    /// The key set the token was verified with (JWKS sources only).
    keys: Option<Arc<[Key]>>,
}

fn token_digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AcceptedTokens {
    fn new() -> Self {
        AcceptedTokens {
            inner: std::sync::Mutex::new(AcceptedInner::default()),
        }
    }

    /// The claims of an accepted token still usable at `now` with key set `keys`.
    fn get(&self, digest: &[u8; 32], now: u64, keys: Option<&Arc<[Key]>>) -> Option<RString> {
        let inner = self.inner.lock().ok()?;
        let hit = inner.entries.get(digest)?;
        let same_keys = match (&hit.keys, keys) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        (now < hit.until && same_keys).then(|| hit.claims.clone())
    }

    fn put(&self, digest: [u8; 32], accepted: Accepted) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(e) = inner.entries.get_mut(&digest) {
            *e = accepted;
            return;
        }
        while inner.entries.len() >= ACCEPTED_TOKENS_CAPACITY {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.entries.remove(&old);
                }
                None => break,
            }
        }
        inner.entries.insert(digest, accepted);
        inner.order.push_back(digest);
    }
}

/// Until when a token verified at `now` may be reused: before its `exp`, and for at most
/// [`ACCEPTED_TOKENS_MAX_AGE_SECS`]. `None` (do not keep) for an `exp` that is not a plain number.
fn reuse_until(claims: &serde_json::Map<String, serde_json::Value>, now: u64) -> Option<u64> {
    let cap = now + ACCEPTED_TOKENS_MAX_AGE_SECS;
    match jose::exp_member(claims.get("exp")) {
        jose::PeekedExp::At(exp) => Some(exp.min(cap)),
        jose::PeekedExp::Unusable => None,
        jose::PeekedExp::Absent | jose::PeekedExp::NotAJwt => Some(cap),
    }
}

fn build_verifier(
    services: &InstanceServices,
    spec_json: &str,
) -> Result<HostVerifier, PluginError> {
    let spec: JwtVerifierSpec = serde_json::from_str(spec_json).map_err(|e| {
        PluginError::config(portcullis_plugin_api::redact_serde_error(&e.to_string()))
    })?;
    let sources = spec.secret.is_some() as u8
        + (!spec.public_keys.is_empty()) as u8
        + spec.jwks_url.is_some() as u8
        + spec.x509_url.is_some() as u8;
    if sources != 1 {
        return Err(PluginError::config(
            "set exactly one of `secret`, `public_keys`, `jwks_url` or `x509_url`",
        ));
    }
    let mut families: Vec<KeyFamily> = Vec::new();
    let keys = if let Some(secret) = &spec.secret {
        let key = Key::hmac(secret.as_bytes())
            .map_err(|e| PluginError::config(format!("secret: {e}")))?;
        families.push(KeyFamily::Hmac);
        KeySource::Static(vec![key].into())
    } else if let Some(url) = &spec.jwks_url {
        check_scheme(url, services.allow_http)
            .map_err(|e| PluginError::config(format!("jwks_url: {e}")))?;
        families.push(KeyFamily::Rsa);
        KeySource::Jwks(services.shared.keys.set(url))
    } else if let Some(url) = &spec.x509_url {
        check_scheme(url, services.allow_http)
            .map_err(|e| PluginError::config(format!("x509_url: {e}")))?;
        families.push(KeyFamily::Rsa);
        KeySource::Jwks(services.shared.keys.set_of(KeyFormat::X509Map, url))
    } else {
        let mut keys = Vec::new();
        for (i, pem) in spec.public_keys.iter().enumerate() {
            let key = Key::from_pem(pem)
                .map_err(|e| PluginError::config(format!("public_keys[{i}]: {e}")))?;
            families.push(key.family());
            keys.push(key);
        }
        KeySource::Static(keys.into())
    };
    let algorithms = if spec.algorithms.is_empty() {
        default_algorithms(&families, &keys)
    } else {
        let mut algs = Vec::new();
        for name in &spec.algorithms {
            let alg = Algorithm::parse(name).ok_or_else(|| {
                PluginError::config(format!("algorithms: `{name}` is not a supported algorithm"))
            })?;
            algs.push(alg);
        }
        algs
    };
    if let (Some(_), true) = (
        &spec.secret,
        algorithms.iter().any(|a| a.family() != KeyFamily::Hmac),
    ) {
        return Err(PluginError::config(
            "algorithms: a `secret` only works with HS256, HS384 or HS512",
        ));
    }
    if !matches!(keys, KeySource::Static(_))
        && algorithms.iter().any(|a| a.family() == KeyFamily::Hmac)
    {
        return Err(PluginError::config(
            "algorithms: HMAC algorithms need a `secret`, not public keys",
        ));
    }
    let validation = Validation {
        algorithms,
        issuer: (!spec.issuer.is_empty()).then(|| spec.issuer.clone()),
        audience: (!spec.audience.is_empty()).then(|| spec.audience.clone()),
        leeway_secs: spec
            .leeway_secs
            .unwrap_or(jose::DEFAULT_LEEWAY_SECS)
            .min(600),
        require_exp: spec.require_exp.unwrap_or(true),
        max_iat_skew_secs: Some(
            spec.leeway_secs
                .unwrap_or(jose::DEFAULT_LEEWAY_SECS)
                .min(600),
        ),
        required_claims: spec.required_claims.clone(),
        typ: (!spec.typ.is_empty()).then(|| spec.typ.clone()),
        max_token_bytes: services.max_token_bytes,
    };
    if let KeySource::Jwks(set) = &keys {
        services.key_sets.register(set);
    }
    Ok(HostVerifier(Arc::new(VerifierInner {
        keys,
        cache: services.shared.keys.clone(),
        validation,
        accepted: AcceptedTokens::new(),
        remember: services.verifiers_remember.clone(),
    })))
}

fn default_algorithms(families: &[KeyFamily], keys: &KeySource) -> Vec<Algorithm> {
    use Algorithm::*;
    let mut out = Vec::new();
    if let KeySource::Static(keys) = keys {
        for key in keys.iter() {
            for alg in [
                HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512,
                EdDSA,
            ] {
                if key.supports(alg) && !out.contains(&alg) {
                    out.push(alg);
                }
            }
        }
    } else if families.contains(&KeyFamily::Rsa) {
        out.push(RS256);
    }
    out
}

/// Bench-only (feature `bench-direct`): the verifier a `jwt` instance configured with `config`
/// would build, for the host to call directly.
#[cfg(feature = "bench-direct")]
pub fn direct_verifier(
    services: &InstanceServices,
    config: &serde_json::Value,
) -> Option<HostVerifier> {
    let spec: JwtVerifierSpec = serde_json::from_value(config.clone()).ok()?;
    services.verifier(&serde_json::to_string(&spec).ok()?).ok()
}

fn reject(e: JwsError) -> PluginError {
    PluginError::invalid_token(e.to_string())
}

impl HostVerifier {
    /// Verifies `token`; on success the claims, as the JSON text of the payload.
    pub async fn verify_token(&self, token: &str) -> Result<RString, PluginError> {
        let now = now_secs();
        let this = &*self.0;
        let digest = this
            .remember
            .load(Ordering::Relaxed)
            .then(|| token_digest(token));
        let remembered = |keys| {
            digest
                .as_ref()
                .and_then(|d| this.accepted.get(d, now, keys))
        };
        let (verified, keys) = match &this.keys {
            KeySource::Static(keys) => {
                if let Some(claims) = remembered(None) {
                    return Ok(claims);
                }
                (
                    jose::verify(token, keys, &this.validation, now).map_err(reject)?,
                    None,
                )
            }
            KeySource::Jwks(set) => {
                let keys = this
                    .cache
                    .keys(set)
                    .await
                    .map_err(|e| PluginError::unavailable(e.to_string()))?;
                if let Some(claims) = remembered(Some(&keys)) {
                    return Ok(claims);
                }
                match jose::verify(token, &keys, &this.validation, now) {
                    Err(JwsError::UnknownKid) => {
                        match this.cache.refresh_for_unknown_kid(set).await {
                            Some(Ok(fresh)) => (
                                jose::verify(token, &fresh, &this.validation, now)
                                    .map_err(reject)?,
                                Some(fresh),
                            ),
                            Some(Err(e)) => return Err(PluginError::unavailable(e.to_string())),
                            None => return Err(reject(JwsError::UnknownKid)),
                        }
                    }
                    other => (other.map_err(reject)?, Some(keys)),
                }
            }
        };
        let claims = RString::from(verified.claims_json);
        if let (Some(digest), Some(until)) = (digest, reuse_until(&verified.claims, now)) {
            this.accepted.put(
                digest,
                Accepted {
                    claims: claims.clone(),
                    until,
                    keys,
                },
            );
        }
        Ok(claims)
    }
}

impl JwtVerifier for HostVerifier {
    fn verify(&self, token: RStr<'_>) -> FfiFuture<RResult<RString, PluginError>> {
        let this = self.clone();
        let token = token.to_string();
        async move { this.verify_token(&token).await.into() }.into_ffi()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reuse_ends_at_exp_and_is_capped() {
        let now = 1_000_000;
        assert_eq!(
            reuse_until(&claims(serde_json::json!({"exp": now + 10})), now),
            Some(now + 10)
        );
        assert_eq!(
            reuse_until(&claims(serde_json::json!({"exp": now + 100_000})), now),
            Some(now + ACCEPTED_TOKENS_MAX_AGE_SECS)
        );
        assert_eq!(
            reuse_until(&claims(serde_json::json!({})), now),
            Some(now + ACCEPTED_TOKENS_MAX_AGE_SECS)
        );
        assert_eq!(
            reuse_until(&claims(serde_json::json!({"exp": "x"})), now),
            None
        );
    }

    #[test]
    fn accepted_tokens_expire_follow_the_key_set_and_stay_bounded() {
        let m = AcceptedTokens::new();
        let d = token_digest("a.b.c");
        m.put(
            d,
            Accepted {
                claims: "{}".into(),
                until: 100,
                keys: None,
            },
        );
        assert!(m.get(&d, 99, None).is_some());
        assert!(m.get(&d, 100, None).is_none(), "used only before exp");
        let other = token_digest("a.b.d");
        assert!(m.get(&other, 1, None).is_none());
        // A JWKS entry is tied to the key set it was verified with.
        let k1: Arc<[Key]> = Arc::from(Vec::new());
        let k2: Arc<[Key]> = Arc::from(Vec::new());
        m.put(
            other,
            Accepted {
                claims: "{}".into(),
                until: 100,
                keys: Some(k1.clone()),
            },
        );
        assert!(m.get(&other, 1, Some(&k1)).is_some());
        assert!(m.get(&other, 1, Some(&k2)).is_none());
        assert!(m.get(&other, 1, None).is_none());
        for i in 0..ACCEPTED_TOKENS_CAPACITY + 10 {
            m.put(
                token_digest(&i.to_string()),
                Accepted {
                    claims: "{}".into(),
                    until: 100,
                    keys: None,
                },
            );
        }
        let inner = m.inner.lock().unwrap();
        assert_eq!(inner.entries.len(), ACCEPTED_TOKENS_CAPACITY);
        assert_eq!(inner.order.len(), ACCEPTED_TOKENS_CAPACITY);
        assert!(!inner.entries.contains_key(&d), "oldest evicted first");
    }

    #[tokio::test]
    async fn a_verifier_keeps_accepted_tokens_only_while_the_host_does_not() {
        let http = crate::keys::HttpClient::new().unwrap();
        let shared = Arc::new(SharedServices {
            http: http.clone(),
            keys: Arc::new(KeyCache::new(
                http,
                crate::keys::KeyCacheSettings::default(),
            )),
            max_response_bytes: 1 << 20,
            http_timeout: Duration::from_secs(5),
        });
        let services = InstanceServices::new(shared, "t", false, 16 * 1024);
        let secret = "0123456789abcdef0123456789abcdef";
        let spec = serde_json::json!({"algorithms": ["HS256"], "secret": secret});
        let verifier = services.verifier(&spec.to_string()).unwrap();
        let token = |sub: &str| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &serde_json::json!({"sub": sub, "exp": now_secs() + 600}),
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let kept = || verifier.0.accepted.inner.lock().unwrap().entries.len();

        verifier.verify_token(&token("a")).await.unwrap();
        assert_eq!(kept(), 1, "kept by default");

        // The host keeps this instance's answers: the verifier still checks, and keeps nothing.
        services
            .verifiers_remember()
            .store(false, Ordering::Relaxed);
        let b = token("b");
        assert!(verifier.verify_token(&b).await.unwrap().contains("\"b\""));
        assert_eq!(kept(), 1);
        // One signature character changed (a middle one: all six of its bits count).
        let at = b.len() - 10;
        let swap = if &b[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{swap}{}", &b[..at], &b[at + 1..]);
        assert!(verifier.verify_token(&forged).await.is_err());

        services.verifiers_remember().store(true, Ordering::Relaxed);
        verifier.verify_token(&b).await.unwrap();
        assert_eq!(kept(), 2);
    }
}
