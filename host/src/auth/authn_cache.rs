//! Tokens a provider instance accepted, kept so that the same token sent again is answered without
//! calling the plugin at all (no boundary crossing, no verification, no claims parsing).
//!
//! Only instances whose plugin declares `reusable_authentication` (its `authenticate` depends on the
//! token, the keys the host verified it with and the clock alone) get one by default; the operator
//! can turn it off or size it with `authentication_cache:`. An entry is used only:
//!
//! * for the very same token (the whole token is the key, compared in full);
//! * before the token's `exp` and the user's `exp` (no leeway: `nbf` and `iat` were checked against
//!   an earlier clock, and time only moves them further into the past), and at most the configured
//!   age after it was accepted;
//! * while every key set the instance verifies with is the one it held when the plugin was asked,
//!   and still fresh. A refreshed set (a key may have been withdrawn) or a stale one sends the next
//!   request to the plugin, which refreshes and verifies again.
//!
//! The cache belongs to one instance: a rebuilt instance (new plugin file, changed config) starts
//! empty, so no answer outlives the configuration it was given under. Failures are never kept.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::plugin::UserJson;

use super::AuthUser;
use crate::{
    jose::{self, PeekedExp},
    keys::{InstanceKeySets, KeyStamp},
};

/// The default longest time an accepted token is reused.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// The longest `authentication_cache` the config accepts.
pub const MAX_MAX_AGE: Duration = crate::config::MAX_AUTHENTICATION_CACHE_AGE;
/// Bytes of tokens and users kept per instance (estimated; see [`ByBytes`]). A bounded cache: a
/// flood of distinct tokens evicts, it cannot grow, whatever the tokens' size.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// The number of entries the cache is laid out for (a typical token and user take about 1 KiB).
const EXPECTED_ENTRIES: usize = 4096;
/// Weighs an entry by what it holds: the token, the user's text and its parsed form (estimated as
/// large again), and a fixed overhead.
#[derive(Clone)]
pub struct ByBytes;

impl quick_cache::Weighter<Box<[u8]>, Arc<Accepted>> for ByBytes {
    fn weight(&self, token: &Box<[u8]>, accepted: &Arc<Accepted>) -> u64 {
        (token.len() + 2 * accepted.user_json.len() + 256) as u64
    }
}

/// One accepted token.
pub struct Accepted {
    /// The user the plugin returned, parsed.
    pub user: Arc<AuthUser>,
    /// The user's JSON text as the plugin wrote it (handed back to its `authorize`).
    pub user_json: UserJson,
    /// Unix seconds: used while `now < until` (the earliest of the token's `exp`, the user's
    /// `exp` and the cache's longest age). The wall clock, like `exp`: a monotonic clock stands
    /// still while the machine is suspended or the VM paused, and an entry would outlive `exp`.
    until: u64,
    /// The instance's key sets when the plugin was asked.
    keys: KeyStamp,
    /// The user's authorization answer, as the instance's authorization cache last gave it for
    /// a request with this token.
    pub authorized: super::authz_cache::AuthzMemo,
}

/// One provider instance's accepted tokens.
pub struct AuthnCache {
    max_age: Duration,
    /// Keyed by the whole token, hashed and compared in full: a plugin's tokens may share any
    /// part, so no part of them is enough to spread the entries. Entries past their time are
    /// never used and go when evicted or replaced.
    entries: quick_cache::sync::Cache<Box<[u8]>, Arc<Accepted>, ByBytes>,
}

impl std::fmt::Debug for AuthnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthnCache")
            .field("max_age", &self.max_age)
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AuthnCache {
    /// An empty cache reusing an accepted token for at most `max_age`, holding at most about
    /// `max_bytes`.
    pub fn new(max_age: Duration, max_bytes: u64) -> AuthnCache {
        AuthnCache {
            max_age,
            entries: quick_cache::sync::Cache::with_weighter(EXPECTED_ENTRIES, max_bytes, ByBytes),
        }
    }

    /// The longest an accepted token is reused.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The answer kept for `token`, if it still stands: before its time, and with the instance's
    /// key sets `keys` unchanged and fresh at `now`. The token is looked up as the request
    /// brought it, before any check of its characters: only tokens that passed every check are
    /// kept, so a hit is one of them.
    pub fn get(&self, token: &[u8], keys: &InstanceKeySets, now: Instant) -> Option<Arc<Accepted>> {
        let hit = self.entries.get(token)?;
        if unix_now() < hit.until && keys.unchanged_since(&hit.keys, now) {
            Some(hit)
        } else {
            // Only this entry: another request may have just put a fresh one in its place.
            self.entries.remove_if(token, |e| Arc::ptr_eq(e, &hit));
            None
        }
    }

    /// Keeps `user`, accepted for `token` while the instance's key sets were `keys` (taken before
    /// the plugin was asked). `token_exp` is the token's own `exp` when it is a JWT. Nothing is
    /// kept when an `exp` is not a plain number or is already past.
    pub fn insert(
        &self,
        token: &str,
        token_exp: PeekedExp,
        user: Arc<AuthUser>,
        user_json: UserJson,
        keys: KeyStamp,
    ) {
        let now = unix_now();
        let mut until = now.saturating_add(self.max_age.as_secs());
        for exp in [token_exp, jose::exp_member(user.claims.get("exp"))] {
            match exp {
                PeekedExp::At(exp) => until = until.min(exp),
                PeekedExp::Absent | PeekedExp::NotAJwt => {}
                PeekedExp::Unusable => return,
            }
        }
        if until <= now {
            return;
        }
        self.entries.insert(
            token.as_bytes().into(),
            Arc::new(Accepted {
                user,
                user_json,
                until,
                keys,
                authorized: Default::default(),
            }),
        );
    }

    /// Tokens held (some may be past their time, not yet evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::Value;

    fn user(claims: Value) -> Arc<AuthUser> {
        Arc::new(AuthUser::new("p".into(), claims))
    }

    /// Keeps a user with `claims` for `token` under the current key sets.
    fn put(c: &AuthnCache, keys: &InstanceKeySets, token: &str, exp: PeekedExp, claims: Value) {
        c.insert(
            token,
            exp,
            user(claims),
            String::from("{}").into(),
            keys.stamp().unwrap(),
        );
    }

    #[test]
    fn same_token_hits_other_tokens_miss() {
        let keys = InstanceKeySets::default();
        let c = AuthnCache::new(DEFAULT_MAX_AGE, 1 << 20);
        let exp = unix_now() + 60;
        put(
            &c,
            &keys,
            "tok-a",
            PeekedExp::NotAJwt,
            serde_json::json!({"sub": "a", "exp": exp}),
        );
        let hit = c.get("tok-a".as_bytes(), &keys, Instant::now()).unwrap();
        assert_eq!(hit.user.claims["sub"], "a");
        assert!(c.get("tok-b".as_bytes(), &keys, Instant::now()).is_none());
        assert!(c.get("tok-a ".as_bytes(), &keys, Instant::now()).is_none());
        assert!(c.get("tok-".as_bytes(), &keys, Instant::now()).is_none());
    }

    #[test]
    fn past_or_malformed_exp_is_never_kept() {
        let keys = InstanceKeySets::default();
        let c = AuthnCache::new(DEFAULT_MAX_AGE, 1 << 20);
        let past = unix_now() - 1;
        put(
            &c,
            &keys,
            "old",
            PeekedExp::NotAJwt,
            serde_json::json!({"exp": past}),
        );
        assert!(c.get("old".as_bytes(), &keys, Instant::now()).is_none());
        put(
            &c,
            &keys,
            "str",
            PeekedExp::NotAJwt,
            serde_json::json!({"exp": "soon"}),
        );
        assert!(c.get("str".as_bytes(), &keys, Instant::now()).is_none());
        // The token's own exp counts even when the user the plugin returned has none.
        put(
            &c,
            &keys,
            "tok",
            PeekedExp::At(past),
            serde_json::json!({"sub": "x"}),
        );
        assert!(c.get("tok".as_bytes(), &keys, Instant::now()).is_none());
        put(
            &c,
            &keys,
            "dup",
            PeekedExp::Unusable,
            serde_json::json!({"sub": "x"}),
        );
        assert!(c.get("dup".as_bytes(), &keys, Instant::now()).is_none());
    }

    #[test]
    fn entries_end_at_exp() {
        let keys = InstanceKeySets::default();
        let c = AuthnCache::new(DEFAULT_MAX_AGE, 1 << 20);
        // An exp one second ahead: the entry is gone once the clock reaches it.
        let exp = unix_now() + 1;
        put(
            &c,
            &keys,
            "t",
            PeekedExp::NotAJwt,
            serde_json::json!({"exp": exp}),
        );
        while unix_now() < exp {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(c.get("t".as_bytes(), &keys, Instant::now()).is_none());
    }

    #[test]
    fn zero_max_age_keeps_nothing() {
        let keys = InstanceKeySets::default();
        let c = AuthnCache::new(Duration::ZERO, 1 << 20);
        put(
            &c,
            &keys,
            "t",
            PeekedExp::NotAJwt,
            serde_json::json!({"sub": "a"}),
        );
        assert!(c.get("t".as_bytes(), &keys, Instant::now()).is_none());
    }
}
