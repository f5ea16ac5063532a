//! The host services object lent to each provider instance.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use portcullis_plugin_api::{
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{ROption, RResult, RStr, RString, RVec, Tuple2},
    },
    async_ffi::{FfiFuture, FutureExt as _},
    HostServices, HttpRequest, HttpResponse, JwtVerifier, JwtVerifierBox, JwtVerifierSpec,
    JwtVerifier_TO, LogLevel, PluginError,
};

use crate::{
    http::{check_scheme, HttpClient},
    jose::{self, Algorithm, JwsError, Key, KeyFamily, Validation},
    keys::{KeyCache, KeyFormat, KeySet},
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
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn env_var(&self, name: RStr<'_>) -> ROption<RString> {
        std::env::var(name.as_str()).ok().map(RString::from).into()
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
    Ok(HostVerifier(Arc::new(VerifierInner {
        keys,
        cache: services.shared.keys.clone(),
        validation,
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

fn reject(e: JwsError) -> PluginError {
    PluginError::invalid_token(e.to_string())
}

impl HostVerifier {
    async fn verify_token(&self, token: String) -> Result<RString, PluginError> {
        let now = now_secs();
        let this = &*self.0;
        let verified = match &this.keys {
            KeySource::Static(keys) => {
                jose::verify(&token, keys, &this.validation, now).map_err(reject)?
            }
            KeySource::Jwks(set) => {
                let keys = this
                    .cache
                    .keys(set)
                    .await
                    .map_err(|e| PluginError::unavailable(e.to_string()))?;
                match jose::verify(&token, &keys, &this.validation, now) {
                    Err(JwsError::UnknownKid) => {
                        match this.cache.refresh_for_unknown_kid(set).await {
                            Some(Ok(fresh)) => jose::verify(&token, &fresh, &this.validation, now)
                                .map_err(reject)?,
                            Some(Err(e)) => return Err(PluginError::unavailable(e.to_string())),
                            None => return Err(reject(JwsError::UnknownKid)),
                        }
                    }
                    other => other.map_err(reject)?,
                }
            }
        };
        Ok(RString::from(verified.claims_json))
    }
}

impl JwtVerifier for HostVerifier {
    fn verify(&self, token: RStr<'_>) -> FfiFuture<RResult<RString, PluginError>> {
        let this = self.clone();
        let token = token.to_string();
        async move { this.verify_token(token).await.into() }.into_ffi()
    }
}
