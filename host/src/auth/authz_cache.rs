//! Answers of a provider's own `authorize` hook, cached per subject for a short time.
//!
//! Providers such as WorkOS and Clerk ask a remote API on every `authorize`; the seed calls it on
//! every request. One cache belongs to one provider *instance* (it is created with the instance and
//! dropped with it), and entries are keyed by the user's `sub`, so a reload that builds a new
//! instance, or another provider, can never reuse an answer. Only definite answers (allow or deny)
//! are kept; an error (identity provider down, timeout, panic) is never cached. Concurrent misses
//! for one subject share a single call.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use portcullis_plugin_api::PluginError;

/// The default time an answer is kept.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The longest TTL the config accepts: this is a cache of answers that can change, not a policy.
pub const MAX_TTL: Duration = crate::config::MAX_AUTHORIZATION_CACHE_TTL;
/// Subjects kept per instance; the least recently used go first.
pub const MAX_ENTRIES: usize = 10_000;

/// One provider instance's cache of `authorize` answers.
pub struct AuthzCache {
    ttl: Duration,
    /// Per subject: the answer and when it was given. An answer older than `ttl` is never used.
    answers: quick_cache::sync::Cache<String, (bool, Instant)>,
}

impl std::fmt::Debug for AuthzCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.answers.len())
            .finish()
    }
}

impl AuthzCache {
    /// An empty cache keeping answers for `ttl`, at most `capacity` subjects.
    pub fn new(ttl: Duration, capacity: usize) -> AuthzCache {
        AuthzCache {
            ttl,
            answers: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    fn fresh(&self, (answer, at): (bool, Instant), now: Instant) -> Option<bool> {
        (now.saturating_duration_since(at) < self.ttl).then_some(answer)
    }

    /// How long an answer is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The answer cached for `sub` if it is fresh at `now` (the time of the request's decision),
    /// or the result of `check` (kept only when it is `Ok`).
    /// Concurrent misses for one subject share one call; a request waits for another's call at
    /// most `wait` (the plugin timeout) before asking itself, so a failing or hanging provider
    /// never queues requests behind one another.
    pub async fn get_or_check<F>(
        &self,
        sub: &str,
        check: F,
        wait: Duration,
        now: Instant,
    ) -> Result<bool, PluginError>
    where
        F: Future<Output = Result<bool, PluginError>>,
    {
        if let Some(kept) = self.answers.get(sub) {
            if let Some(answer) = self.fresh(kept, now) {
                return Ok(answer);
            }
            // Only this stale answer: another request may have just put a fresh one in its place.
            self.answers.remove_if(sub, |v| *v == kept);
        }
        // The first miss holds a placeholder and asks; the others wait for its answer. If it
        // fails (or its request goes away), the placeholder passes to a waiter, which asks in turn.
        match tokio::time::timeout(wait, self.answers.get_value_or_guard_async(sub)).await {
            // Another request's answer, given while this one waited: the clock has moved on.
            Ok(Ok(kept)) => match self.fresh(kept, Instant::now()) {
                Some(answer) => Ok(answer),
                None => check.await,
            },
            Ok(Err(placeholder)) => {
                let result = check.await;
                if let Ok(answer) = result {
                    let _ = placeholder.insert((answer, Instant::now()));
                }
                result
            }
            // Waited as long as one call may take: ask now, without waiting any longer.
            Err(_) => check.await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    const W: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn answers_are_cached_errors_are_not() {
        let cache = AuthzCache::new(Duration::from_secs(60), 100);
        let calls = AtomicU32::new(0);
        let check = |answer: Result<bool, PluginError>| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                answer
            }
        };
        assert!(cache
            .get_or_check("a", check(Ok(true)), W, Instant::now())
            .await
            .unwrap());
        assert!(cache
            .get_or_check("a", check(Ok(false)), W, Instant::now())
            .await
            .unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A deny is a definite answer too.
        assert!(!cache
            .get_or_check("b", check(Ok(false)), W, Instant::now())
            .await
            .unwrap());
        assert!(!cache
            .get_or_check("b", check(Ok(true)), W, Instant::now())
            .await
            .unwrap());
        // Errors are passed on and not kept.
        let e = cache
            .get_or_check(
                "c",
                check(Err(PluginError::unavailable("down"))),
                W,
                Instant::now(),
            )
            .await;
        assert_eq!(e.unwrap_err().message(), "down");
        assert!(cache
            .get_or_check("c", check(Ok(true)), W, Instant::now())
            .await
            .unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_answer_older_than_the_ttl_is_asked_again() {
        let cache = AuthzCache::new(Duration::from_millis(100), 100);
        assert!(cache
            .get_or_check("a", async { Ok(true) }, W, Instant::now())
            .await
            .unwrap());
        assert!(cache
            .get_or_check("a", async { Ok(false) }, W, Instant::now())
            .await
            .unwrap());
        // Judged at the time of the request's decision: past the TTL, the answer is stale and the
        // provider is asked again.
        let later = Instant::now() + Duration::from_millis(150);
        assert!(!cache
            .get_or_check("a", async { Ok(false) }, W, later)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn waiters_behind_a_hanging_call_ask_themselves_after_the_wait() {
        let cache = Arc::new(AuthzCache::new(Duration::from_secs(60), 100));
        let wait = Duration::from_millis(200);
        let holder = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_check(
                        "s",
                        std::future::pending::<Result<bool, PluginError>>(),
                        wait,
                        Instant::now(),
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let mut waiters = Vec::new();
        for _ in 0..5 {
            let cache = cache.clone();
            waiters.push(tokio::spawn(async move {
                cache
                    .get_or_check("s", async { Ok(true) }, wait, Instant::now())
                    .await
            }));
        }
        for w in waiters {
            assert!(w.await.unwrap().unwrap());
        }
        // Each waited once, concurrently: about one wait in all, not one per waiter.
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
        holder.abort();
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_call() {
        let cache = Arc::new(AuthzCache::new(Duration::from_secs(60), 100));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_check(
                        "same",
                        async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok(true)
                        },
                        W,
                        Instant::now(),
                    )
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
