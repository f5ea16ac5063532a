//! A provider instance's plugin object as the rest of the server uses it: every call bounded by a
//! time limit and by the instance's in-flight limit, a panic caught, and no `abi_stable` type
//! beyond this module. The bench-only direct verifier (feature `bench-direct`) is one more kind of
//! handle.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt as _;
use poem::http::HeaderMap;
use portcullis_plugin_api::{
    abi::{
        abi_stable::std_types::{ROption, RResult, RStr, RString, RVec, Tuple2},
        async_ffi::FfiFuture,
        ProviderBox, RequestInfo,
    },
    PluginError,
};
use tokio::sync::Semaphore;

use super::{CheckServices, InstanceServices, LoadedPlugin};

/// The request as plugins are told about it: built once per request, and only when a plugin is
/// asked. The `authorization`, `cookie` and `proxy-authorization` headers are withheld (the token
/// reaches the plugin as an argument).
#[derive(Clone, Debug)]
pub struct PluginRequest(RequestInfo);

impl PluginRequest {
    /// The request with this method, canonical path and headers.
    pub fn new(method: &str, path: &str, headers: &HeaderMap) -> PluginRequest {
        let headers = headers
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "authorization" | "cookie" | "proxy-authorization"
                )
            })
            .filter_map(|(k, v)| {
                Some(Tuple2(
                    RString::from(k.as_str()),
                    RString::from(v.to_str().ok()?),
                ))
            })
            .collect::<RVec<_>>();
        PluginRequest(RequestInfo {
            method: method.into(),
            path: path.into(),
            headers,
        })
    }
}

/// A user as a plugin vouched for it: a JSON object's text, passed back to the plugin's
/// `authorize` as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserJson(RString);

impl UserJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether it is empty (never, for a user a plugin returned).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for UserJson {
    fn from(s: String) -> UserJson {
        UserJson(s.into())
    }
}

/// One instance's plugin object and its in-flight limit; cheap to clone (clones share both).
#[derive(Clone)]
pub struct ProviderHandle {
    provider: Arc<ProviderBox>,
    in_flight: Arc<Semaphore>,
    limit: usize,
    #[cfg(feature = "bench-direct")]
    direct: Option<super::HostVerifier>,
}

impl ProviderHandle {
    /// A plugin object, with at most `limit` calls in flight.
    pub fn new(provider: ProviderBox, limit: usize) -> ProviderHandle {
        ProviderHandle {
            provider: Arc::new(provider),
            in_flight: Arc::new(Semaphore::new(limit)),
            limit,
            #[cfg(feature = "bench-direct")]
            direct: None,
        }
    }

    /// The same plugin object under `limit`: the calls in flight keep counting when the limit is
    /// the same.
    pub fn with_limit(&self, limit: usize) -> ProviderHandle {
        let mut h = self.clone();
        if limit != self.limit {
            h.in_flight = Arc::new(Semaphore::new(limit));
            h.limit = limit;
        }
        h
    }

    /// Whether both hold the same plugin object (an instance kept across a reload).
    pub fn same_object(&self, other: &ProviderHandle) -> bool {
        Arc::ptr_eq(&self.provider, &other.provider)
    }

    /// Bench-only: answer `authenticate` with this host verifier instead of the plugin.
    #[cfg(feature = "bench-direct")]
    pub fn set_direct(&mut self, direct: Option<super::HostVerifier>) {
        self.direct = direct;
    }

    /// The `iss` values the instance accepts (asked once, when it is built).
    pub fn issuers(&self) -> Vec<String> {
        self.provider
            .issuers()
            .into_iter()
            .map(RString::into_string)
            .collect()
    }

    /// Whether the instance's answer for a token may be kept (asked once, when it is built).
    pub fn reusable_authentication(&self) -> bool {
        self.provider.reusable_authentication()
    }

    /// Asks about `token`: `Ok(None)` when the plugin does not accept it.
    pub async fn authenticate(
        &self,
        token: &str,
        request: &PluginRequest,
        timeout: Duration,
    ) -> Result<Option<UserJson>, PluginError> {
        #[cfg(feature = "bench-direct")]
        if let Some(v) = &self.direct {
            return v.verify_token(token).await.map(|u| Some(UserJson(u)));
        }
        let answer = self
            .call(
                self.provider
                    .authenticate(RString::from(token), request.0.clone()),
                timeout,
            )
            .await?;
        Ok(match answer {
            ROption::RSome(json) => Some(UserJson(json)),
            ROption::RNone => None,
        })
    }

    /// Asks whether `user` may proceed with `request`.
    pub async fn authorize(
        &self,
        user: &UserJson,
        request: &PluginRequest,
        timeout: Duration,
    ) -> Result<bool, PluginError> {
        self.call(
            self.provider.authorize(user.0.clone(), request.0.clone()),
            timeout,
        )
        .await
    }

    /// Lets a new instance prepare itself (ABI 1.1; a 1.0 plugin answers at once).
    pub async fn warm_up(&self, timeout: Duration) -> Result<(), PluginError> {
        self.call(self.provider.warm_up(), timeout).await
    }

    /// One call: an in-flight permit held for it (none free: unavailable at once), bounded by
    /// `timeout`, a panic caught and turned into an error.
    async fn call<T>(
        &self,
        fut: FfiFuture<RResult<T, PluginError>>,
        timeout: Duration,
    ) -> Result<T, PluginError> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(PluginError::unavailable(
                "too many plugin calls in flight on this instance (server.plugin_max_in_flight)",
            ));
        };
        match tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind()).await {
            Err(_) => Err(PluginError::unavailable(format!(
                "plugin call did not finish within {timeout:?}"
            ))),
            Ok(Err(_)) => Err(PluginError::internal("plugin panicked")),
            Ok(Ok(r)) => r.into_result(),
        }
    }
}

/// Asks the plugin whether it accepts an instance config, without building the instance.
pub async fn validate(
    plugin: &Arc<LoadedPlugin>,
    config_json: String,
    services: CheckServices,
    timeout: Duration,
) -> Result<(), String> {
    let module = plugin.module;
    let file = plugin.file.display().to_string();
    let task = tokio::task::spawn_blocking(move || {
        let host = portcullis_plugin_api::abi::host_box(services);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (module.validate_config())(RStr::from_str(&config_json), host)
        }))
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(format!(
            "validate_config of plugin {file} did not return within {timeout:?}"
        )),
        Ok(Err(_)) | Ok(Ok(Err(_))) => Err(format!("validate_config of plugin {file} panicked")),
        Ok(Ok(Ok(result))) => result
            .into_result()
            .map_err(|e| format!("config rejected by plugin {file}: {}", e.message())),
    }
}

/// Calls the plugin's `new_provider` on a blocking thread, bounded by `timeout`. A constructor that
/// hangs costs one blocked thread and a reported error, never the server.
pub async fn construct(
    plugin: &Arc<LoadedPlugin>,
    config_json: String,
    services: InstanceServices,
    timeout: Duration,
    in_flight_limit: usize,
) -> Result<ProviderHandle, String> {
    let module = plugin.module;
    let file = plugin.file.display().to_string();
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        let _in_span = span.enter();
        let host = portcullis_plugin_api::abi::host_box(services);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (module.new_provider())(RStr::from_str(&config_json), host)
        }))
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(format!(
            "constructor of plugin {file} did not return within {timeout:?}"
        )),
        Ok(Err(_)) | Ok(Ok(Err(_))) => Err(format!("constructor of plugin {file} panicked")),
        Ok(Ok(Ok(result))) => result
            .into_result()
            .map(|p| ProviderHandle::new(p, in_flight_limit))
            .map_err(|e| format!("config rejected by plugin {file}: {}", e.message())),
    }
}
