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
    sync::{
        atomic::{AtomicU64, Ordering},
        LazyLock,
    },
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
        // Every answer's time is after the origin of the memos' clock.
        LazyLock::force(&MEMO_ORIGIN);
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
    #[cfg(test)]
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
        self.get_or_check_kept(sub, check, wait, now, None).await
    }

    /// [`AuthzCache::get_or_check`], also keeping the answer, with the time it was given, in
    /// `memo` (the token's own copy: see [`AuthzMemo`]).
    pub async fn get_or_check_kept<F>(
        &self,
        sub: &str,
        check: F,
        wait: Duration,
        now: Instant,
        memo: Option<&AuthzMemo>,
    ) -> Result<bool, PluginError>
    where
        F: Future<Output = Result<bool, PluginError>>,
    {
        let keep = |answer: bool, at: Instant| {
            if let Some(m) = memo {
                m.set(answer, at);
            }
            answer
        };
        if let Some(kept) = self.answers.get(sub) {
            if let Some(answer) = self.fresh(kept, now) {
                return Ok(keep(answer, kept.1));
            }
            // Only this stale answer: another request may have just put a fresh one in its place.
            self.answers.remove_if(sub, |v| *v == kept);
        }
        // The first miss holds a placeholder and asks; the others wait for its answer. If it
        // fails (or its request goes away), the placeholder passes to a waiter, which asks in turn.
        match tokio::time::timeout(wait, self.answers.get_value_or_guard_async(sub)).await {
            // Another request's answer, given while this one waited: the clock has moved on.
            Ok(Ok(kept)) => match self.fresh(kept, Instant::now()) {
                Some(answer) => Ok(keep(answer, kept.1)),
                None => check.await,
            },
            Ok(Err(placeholder)) => {
                let result = check.await;
                if let Ok(answer) = result {
                    let at = Instant::now();
                    let _ = placeholder.insert((answer, at));
                    keep(answer, at);
                }
                result
            }
            // Waited as long as one call may take: ask now, without waiting any longer.
            Err(_) => check.await,
        }
    }
}

/// The origin of [`AuthzMemo`]'s clock (set before any answer is given).
static MEMO_ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One accepted token's copy of its user's authorization answer, kept with the token in the
/// instance's authentication cache: a request that brings the same token again reads it without
/// a lookup by subject. It holds the answer the instance's [`AuthzCache`] gave and the time that
/// answer was given, and is used under the same rule (fresh for the cache's TTL from then), so an
/// answer is never used longer than the cache would use it.
#[derive(Debug, Default)]
pub struct AuthzMemo(
    /// 0: none; else one more than the time the answer was given (nanoseconds after
    /// [`MEMO_ORIGIN`]), shifted left by one, with the answer in the low bit.
    AtomicU64,
);

impl AuthzMemo {
    /// The kept answer, when it is fresh at `now` for `ttl`.
    pub fn get(&self, now: Instant, ttl: Duration) -> Option<bool> {
        let v = self.0.load(Ordering::Relaxed);
        if v == 0 {
            return None;
        }
        let at = *MEMO_ORIGIN + Duration::from_nanos((v >> 1) - 1);
        (now.saturating_duration_since(at) < ttl).then_some(v & 1 == 1)
    }

    /// Keeps `answer`, given at `at`.
    fn set(&self, answer: bool, at: Instant) {
        let since = at.saturating_duration_since(*MEMO_ORIGIN).as_nanos();
        // 2^62 ns is 146 years: past it, nothing is kept (the cache still answers).
        if let Ok(n) = u64::try_from(since) {
            if n < 1 << 62 {
                self.0
                    .store(((n + 1) << 1) | u64::from(answer), Ordering::Relaxed);
            }
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
    async fn a_tokens_memo_holds_the_caches_answer_with_the_time_it_was_given() {
        let ttl = Duration::from_millis(100);
        let cache = AuthzCache::new(ttl, 100);
        let given = Instant::now();
        // Asked through the cache without a memo: the answer is kept in the cache only.
        assert!(!cache
            .get_or_check("a", async { Ok(false) }, W, given)
            .await
            .unwrap());
        // A token's first request afterwards: the cache's answer, copied with its own time.
        let memo = AuthzMemo::default();
        assert_eq!(memo.get(Instant::now(), ttl), None);
        let later = given + Duration::from_millis(60);
        let answer = cache
            .get_or_check_kept("a", async { Ok(true) }, W, later, Some(&memo))
            .await
            .unwrap();
        assert!(!answer, "the cached deny, not a new call");
        assert_eq!(memo.get(later, ttl), Some(false));
        // Stale when the cache's answer is: the TTL runs from when it was given, not copied.
        let kept_at = cache.answers.get("a").unwrap().1;
        assert_eq!(
            memo.get(kept_at + Duration::from_millis(99), ttl),
            Some(false)
        );
        assert_eq!(memo.get(kept_at + ttl, ttl), None);
        // A new answer the cache asked for is copied too.
        let past = kept_at + Duration::from_millis(150);
        assert!(cache
            .get_or_check_kept("a", async { Ok(true) }, W, past, Some(&memo))
            .await
            .unwrap());
        assert_eq!(memo.get(Instant::now(), ttl), Some(true));
        // An error leaves the memo as it was.
        let other = AuthzMemo::default();
        let e = cache
            .get_or_check_kept(
                "b",
                async { Err(PluginError::unavailable("down")) },
                W,
                Instant::now(),
                Some(&other),
            )
            .await;
        assert!(e.is_err());
        assert_eq!(other.get(Instant::now(), ttl), None);
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
