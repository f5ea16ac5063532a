//! Test-only middleware plugin that shows where it ran, or misbehaves on demand, so the host's
//! middleware chain (order, request and response edits, fault handling, time limits) can be
//! proven with a real library.
//!
//! `mode` picks what `on_request` does:
//!
//! * `tag` (default): lets the request through, appends its `tag` to the request header
//!   `x-mw-order` (`a,b,…` in the order the chain ran), sets `x-mw-user` to the user's `sub`
//!   (`-` without a user) and `x-mw-provider` to the provider instance (`-` without one),
//!   `x-mw-seen-headers` to the names of the headers it was told and `x-mw-seen-query` to the
//!   query it was told, and adds
//!   the response header `x-mw-ran: <tag>`;
//! * `deny`: answers `status` (default 418) with `{"error":"denied by <tag>"}` and the answer
//!   header `x-mw-denied-by: <tag>`;
//! * `panic`, `hang` (a future that never completes), `error` (an `unavailable` error);
//! * `slow`: waits `delay_ms` (default 50) without blocking the runtime's thread, then does what
//!   `tag` does.
//!
//! With `now: true` the instance answers `tag`, `deny`, `panic` and `error` at once, from
//! `on_request_now` (the synchronous path: no future); `hang` and `slow` still wait in
//! `on_request`.
//!
//! With `on_response: true` the instance asks for the response hook, which appends its tag to the
//! response header `x-mw-response` (`a,b,…`, in the order the hooks ran).
//!
//! Nothing is validated beyond the types (an out-of-range `status`, an odd `tag`), so the host's
//! handling of what a plugin hands back can be tested too.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use portcullis_plugin_api::{
    export_middleware, Call, Flow, Host, MiddlewarePlugin, PluginConfig, PluginError,
    RequestMiddleware, ResponseChanges, ResponseView,
};
use serde::Deserialize;

/// The config.
#[derive(Deserialize, PluginConfig, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name this instance writes into the headers it touches.
    #[config(example = "a")]
    pub tag: String,
    /// `tag` (default), `deny`, `panic`, `hang`, `error` or `slow`.
    #[serde(default)]
    pub mode: Mode,
    /// The status `deny` answers (default 418; not checked).
    #[serde(default = "default_status")]
    pub status: u16,
    /// How long `slow` waits, in milliseconds (default 50).
    #[serde(default = "default_delay_ms")]
    pub delay_ms: u64,
    /// Whether the instance asks for the response hook (default false).
    #[serde(default)]
    pub on_response: bool,
    /// Whether the instance answers from `on_request_now` when its mode can (default false).
    #[serde(default)]
    pub now: bool,
}

fn default_status() -> u16 {
    418
}

fn default_delay_ms() -> u64 {
    50
}

/// What `on_request` does.
#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Let through, tagging the request and response.
    #[default]
    Tag,
    /// Answer `status`.
    Deny,
    /// Panic.
    Panic,
    /// Never complete.
    Hang,
    /// Fail with an `unavailable` error.
    Error,
    /// Wait `delay_ms`, then tag.
    Slow,
}

/// A configured instance.
pub struct Probe {
    config: Config,
}

impl Probe {
    fn tag(&self, call: &Call<'_>) -> Flow {
        let tag = self.config.tag.as_str();
        let order = match call.header("x-mw-order") {
            Some(before) if !before.is_empty() => format!("{before},{tag}"),
            _ => tag.to_string(),
        };
        let user = call.user().and_then(|u| u.subject());
        // What the middleware was told, for tests of what it must not be told (the token).
        let seen: Vec<&str> = call.headers().map(|(name, _)| name).collect();
        Flow::proceed()
            .set_request_header("x-mw-seen-headers", &seen.join(","))
            .set_request_header("x-mw-seen-query", call.query())
            .set_request_header("x-mw-order", &order)
            .set_request_header("x-mw-user", user.as_deref().unwrap_or("-"))
            .set_request_header("x-mw-provider", call.provider().unwrap_or("-"))
            .add_response_header("x-mw-ran", tag)
    }
}

impl Probe {
    /// What the modes that need no waiting answer; `None` for `hang` and `slow`.
    fn at_once(&self, call: &Call<'_>, hook: &str) -> Option<Result<Flow, PluginError>> {
        let tag = self.config.tag.as_str();
        match self.config.mode {
            Mode::Tag => Some(Ok(self.tag(call))),
            Mode::Deny => Some(Ok(Flow::error(
                self.config.status,
                &format!("denied by {tag}"),
            )
            .with_answer_header("x-mw-denied-by", tag))),
            Mode::Panic => panic!("mw-probe {tag}: {hook} exploded"),
            Mode::Error => Some(Err(PluginError::unavailable(format!(
                "mw-probe {tag}: upstream is down"
            )))),
            Mode::Hang | Mode::Slow => None,
        }
    }
}

impl RequestMiddleware for Probe {
    fn on_request_now(&self, call: &Call<'_>) -> Option<Result<Flow, PluginError>> {
        if self.config.now {
            self.at_once(call, "on_request_now")
        } else {
            None
        }
    }

    async fn on_request(&self, call: Call<'_>) -> Result<Flow, PluginError> {
        match self.config.mode {
            Mode::Hang => std::future::pending().await,
            Mode::Slow => {
                Sleep::new(Duration::from_millis(self.config.delay_ms)).await;
                Ok(self.tag(&call))
            }
            _ => self
                .at_once(&call, "on_request")
                .unwrap_or_else(|| Ok(self.tag(&call))),
        }
    }

    async fn on_response(
        &self,
        _call: Call<'_>,
        response: ResponseView<'_>,
    ) -> Result<ResponseChanges, PluginError> {
        let tag = self.config.tag.as_str();
        let value = match response.header("x-mw-response") {
            Some(before) if !before.is_empty() => format!("{before},{tag}"),
            _ => tag.to_string(),
        };
        Ok(ResponseChanges::none().set_header("x-mw-response", &value))
    }

    fn wants_response(&self) -> bool {
        self.config.on_response
    }
}

/// A timer that needs no runtime: the first poll starts a thread that sleeps until the deadline
/// and wakes the task; the runtime's thread is never blocked.
struct Sleep {
    deadline: Instant,
    /// The waker of the latest poll, shared with the thread; `None` until it is started.
    waker: Option<Arc<Mutex<Waker>>>,
}

impl Sleep {
    fn new(delay: Duration) -> Sleep {
        Sleep {
            deadline: Instant::now() + delay,
            waker: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        match &self.waker {
            Some(shared) => {
                // Polled again early (or by another task): the thread wakes whoever polled last.
                let mut w = shared.lock().unwrap_or_else(|p| p.into_inner());
                if !w.will_wake(cx.waker()) {
                    w.clone_from(cx.waker());
                }
            }
            None => {
                let shared = Arc::new(Mutex::new(cx.waker().clone()));
                let deadline = self.deadline;
                let for_thread = shared.clone();
                std::thread::spawn(move || {
                    // `sleep` may wake early; loop until the deadline has passed.
                    loop {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        std::thread::sleep(deadline - now);
                    }
                    for_thread
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .wake_by_ref();
                });
                self.waker = Some(shared);
            }
        }
        Poll::Pending
    }
}

/// The plugin.
pub struct ProbePlugin;

impl MiddlewarePlugin for ProbePlugin {
    type Middleware = Probe;
    type Config = Config;
    const NAME: &'static str = "mw-probe";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "test middleware that tags requests or fails on demand";

    fn build(config: Config, _host: Host) -> Result<Probe, PluginError> {
        Ok(Probe { config })
    }
}

export_middleware!(ProbePlugin);

#[cfg(test)]
mod tests;
