//! The limiter driven with an injected clock (`decide`), and through the SDK (`on_request`).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread,
};

use portcullis_plugin_api::{
    conformance::{block_on, test_host},
    example_config, User,
};
use serde_json::json;

use super::*;

fn config(value: serde_json::Value) -> Config {
    serde_json::from_value(value).expect("config parses")
}

fn limiter(value: serde_json::Value) -> RateLimit {
    RateLimitPlugin::build(config(value), test_host()).expect("config builds")
}

fn user(claims: serde_json::Value) -> User {
    User::from_claims(claims.as_object().cloned().expect("claims are an object"))
}

fn subject(s: &str) -> Key {
    Key::Subject("jwt".into(), s.into())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn allow(remaining: u64) -> Decision {
    Decision::Allow { remaining }
}

fn deny(retry_after: u64) -> Decision {
    Decision::Deny { retry_after }
}

fn take(rl: &RateLimit, key: &str, now: Instant) -> Decision {
    rl.decide(subject(key), now, false).expect("decides")
}

fn header<'a>(
    mut headers: impl Iterator<Item = (&'a str, &'a str)>,
    name: &str,
) -> Option<&'a str> {
    headers.find(|(k, _)| *k == name).map(|(_, v)| v)
}

// ------------------------------------------------------------------------------------------------
// Config.

#[test]
fn the_example_config_builds_with_the_defaults() {
    let example = example_config(Config::KEYS).expect("examples are JSON");
    let config = config(example.into());
    assert_eq!(config.key, KeyBy::Subject);
    assert_eq!(config.max_keys, DEFAULT_MAX_KEYS);
    assert!(RateLimitPlugin::validate(&config, &test_host()).is_ok());
    let required: Vec<_> = Config::KEYS
        .iter()
        .filter(|k| k.is_required())
        .map(|k| k.name())
        .collect();
    assert_eq!(required, ["rate", "burst"]);
}

#[test]
fn validation_names_the_key() {
    let cases = [
        (json!({"rate": 0, "burst": 1}), "rate:"),
        (json!({"rate": -1.5, "burst": 1}), "rate:"),
        (json!({"rate": 1e10, "burst": 1}), "rate:"),
        (json!({"rate": 1e-12, "burst": 1}), "rate:"),
        (json!({"rate": 1, "burst": 0}), "burst:"),
        (json!({"rate": 1, "burst": 1, "max_keys": 0}), "max_keys:"),
    ];
    for (value, prefix) in cases {
        let c = config(value.clone());
        let err = RateLimitPlugin::validate(&c, &test_host()).expect_err("refused");
        assert!(err.message().starts_with(prefix), "{value}: {err}");
        assert!(RateLimitPlugin::build(c, test_host()).is_err(), "{value}");
    }
    // Not from JSON, but a config built in code can carry them.
    for rate in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let c = Config {
            rate,
            burst: 1,
            key: KeyBy::Subject,
            max_keys: 1,
        };
        let err = RateLimitPlugin::validate(&c, &test_host()).expect_err("refused");
        assert!(err.message().starts_with("rate:"), "{rate}: {err}");
    }
    // The extremes that are allowed build.
    for (rate, burst) in [(MIN_RATE, u32::MAX), (MAX_RATE, 1), (0.5, 3)] {
        let c = Config {
            rate,
            burst,
            key: KeyBy::Client,
            max_keys: 1,
        };
        assert!(
            RateLimitPlugin::validate(&c, &test_host()).is_ok(),
            "{rate}"
        );
    }
}

#[test]
fn serde_refuses_unknown_keys_and_key_kinds() {
    for value in [
        json!({"rate": 1, "burst": 1, "burts": 2}),
        json!({"rate": 1, "burst": 1, "key": "ip"}),
        json!({"rate": 1}),
        json!({"rate": 1, "burst": -1}),
    ] {
        assert!(
            serde_json::from_value::<Config>(value.clone()).is_err(),
            "{value}"
        );
    }
    assert_eq!(
        config(json!({"rate": 1, "burst": 1, "key": "client"})).key,
        KeyBy::Client
    );
}

// ------------------------------------------------------------------------------------------------
// Arithmetic, with an injected clock.

#[test]
fn a_full_bucket_allows_burst_then_refuses() {
    let rl = limiter(json!({"rate": 1, "burst": 3}));
    let t0 = Instant::now();
    assert_eq!(take(&rl, "a", t0), allow(2));
    assert_eq!(take(&rl, "a", t0), allow(1));
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(take(&rl, "a", t0), deny(1));
    assert_eq!(take(&rl, "a", t0), deny(1), "a refusal takes nothing");
    // Another key has its own bucket.
    assert_eq!(take(&rl, "b", t0), allow(2));
}

#[test]
fn tokens_refill_at_rate_up_to_burst() {
    let rl = limiter(json!({"rate": 2, "burst": 4}));
    let t0 = Instant::now();
    for left in (0..4).rev() {
        assert_eq!(take(&rl, "a", t0), allow(left));
    }
    // One token every 500 ms, not a nanosecond sooner.
    assert_eq!(take(&rl, "a", t0 + ms(499)), deny(1));
    assert_eq!(take(&rl, "a", t0 + ms(500)), allow(0));
    assert_eq!(take(&rl, "a", t0 + ms(500)), deny(1));
    // 1.5 s later: three tokens back.
    assert_eq!(take(&rl, "a", t0 + ms(2000)), allow(2));
    // Long idle: the bucket holds `burst`, never more.
    assert_eq!(take(&rl, "a", t0 + ms(3_600_000)), allow(3));
    assert_eq!(take(&rl, "a", t0 + ms(3_600_000)), allow(2));
}

#[test]
fn fractional_rates_refill_exactly() {
    // 1/3 s per token is not a whole number of nanoseconds: a second still brings three back.
    let rl = limiter(json!({"rate": 3, "burst": 3}));
    let t0 = Instant::now();
    for left in (0..3).rev() {
        assert_eq!(take(&rl, "a", t0), allow(left));
    }
    assert_eq!(take(&rl, "a", t0 + ms(1000)), allow(2));
    assert_eq!(take(&rl, "a", t0 + ms(1000)), allow(1));
    assert_eq!(take(&rl, "a", t0 + ms(1000)), allow(0));
    // Half a token a second.
    let rl = limiter(json!({"rate": 0.5, "burst": 1}));
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(take(&rl, "a", t0 + ms(1999)), deny(1));
    assert_eq!(take(&rl, "a", t0 + ms(2000)), allow(0));
}

#[test]
fn retry_after_is_whole_seconds_until_a_token_at_least_one() {
    // One token every 4 s.
    let rl = limiter(json!({"rate": 0.25, "burst": 2}));
    let t0 = Instant::now();
    assert_eq!(take(&rl, "a", t0), allow(1));
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(take(&rl, "a", t0), deny(4));
    assert_eq!(take(&rl, "a", t0 + ms(1)), deny(4), "rounded up");
    assert_eq!(take(&rl, "a", t0 + ms(1500)), deny(3));
    assert_eq!(take(&rl, "a", t0 + ms(3999)), deny(1));
    assert_eq!(take(&rl, "a", t0 + ms(4000)), allow(0));
    // A fast rate still says at least one second.
    let rl = limiter(json!({"rate": 100, "burst": 1}));
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(take(&rl, "a", t0), deny(1));
}

#[test]
fn a_clock_that_goes_back_takes_nothing_extra() {
    let rl = limiter(json!({"rate": 1, "burst": 1}));
    let t0 = Instant::now() + ms(10_000);
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(take(&rl, "a", t0 - ms(5000)), deny(6));
}

// ------------------------------------------------------------------------------------------------
// Through the SDK.

#[test]
fn answers_carry_the_ratelimit_headers() {
    let rl = limiter(json!({"rate": 1, "burst": 2}));
    let call = || Call::new("GET", "/api/x", &[]).with_user("jwt", user(json!({"sub": "alice"})));
    for left in ["1", "0"] {
        let flow = block_on(rl.on_request(call())).expect("answers");
        assert_eq!(flow.answer_status(), None);
        let added: Vec<_> = flow.response_headers_added().collect();
        assert_eq!(
            added,
            [("ratelimit-limit", "2"), ("ratelimit-remaining", left)]
        );
    }
    let flow = block_on(rl.on_request(call())).expect("answers");
    assert_eq!(flow.answer_status(), Some(429));
    assert_eq!(header(flow.answer_headers(), "retry-after"), Some("1"));
    assert_eq!(header(flow.answer_headers(), "ratelimit-limit"), Some("2"));
    assert_eq!(
        header(flow.answer_headers(), "ratelimit-remaining"),
        Some("0")
    );
    assert_eq!(
        header(flow.answer_headers(), "content-type"),
        Some("application/json")
    );
    let body = flow
        .into_abi()
        .answer
        .into_option()
        .expect("an answer")
        .body;
    assert_eq!(body.as_slice(), br#"{"error":"Too Many Requests"}"#);
}

#[test]
fn a_dry_run_answers_the_same_and_takes_nothing() {
    let rl = limiter(json!({"rate": 1e-9, "burst": 2}));
    let call = || Call::new("GET", "/x", &[]).with_user("jwt", user(json!({"sub": "alice"})));
    for _ in 0..5 {
        let flow = block_on(rl.on_request(call().as_dry_run())).expect("answers");
        assert_eq!(
            header(flow.response_headers_added(), "ratelimit-remaining"),
            Some("1")
        );
    }
    assert!(rl.lock().full_at.is_empty(), "a dry run creates no bucket");
    for _ in 0..2 {
        let flow = block_on(rl.on_request(call())).expect("answers");
        assert_eq!(flow.answer_status(), None);
    }
    let dry = block_on(rl.on_request(call().as_dry_run())).expect("answers");
    assert_eq!(dry.answer_status(), Some(429), "as a real request would be");
    let real = block_on(rl.on_request(call())).expect("answers");
    assert_eq!(real.answer_status(), Some(429));
}

#[test]
fn a_dry_run_on_a_partly_used_bucket_takes_nothing() {
    let rl = limiter(json!({"rate": 1, "burst": 3}));
    let t0 = Instant::now();
    assert_eq!(take(&rl, "a", t0), allow(2));
    for _ in 0..3 {
        assert_eq!(
            rl.decide(subject("a"), t0, true).expect("decides"),
            allow(1)
        );
    }
    assert_eq!(take(&rl, "a", t0), allow(1));
}

#[test]
fn subjects_and_client_addresses_are_kept_apart() {
    let rl = limiter(json!({"rate": 1e-9, "burst": 1}));
    let ip = "10.0.0.1";
    let as_user = |sub: serde_json::Value| {
        Call::new("GET", "/x", &[])
            .with_client(ip)
            .with_user("jwt", user(json!({ "sub": sub })))
    };
    let status = |call: Call<'static>| {
        block_on(rl.on_request(call))
            .expect("answers")
            .answer_status()
    };
    // A `sub` equal to the client's address has its own bucket.
    assert_eq!(status(as_user(json!(ip))), None);
    assert_eq!(status(Call::new("GET", "/x", &[]).with_client(ip)), None);
    assert_eq!(status(as_user(json!(ip))), Some(429));
    assert_eq!(
        status(Call::new("GET", "/x", &[]).with_client(ip)),
        Some(429)
    );
    // Another user from the same address is counted apart from it.
    assert_eq!(status(as_user(json!("bob"))), None);
    // A user without a string `sub` falls back to the (now empty) client bucket.
    assert_eq!(status(as_user(json!(42))), Some(429));
    assert_eq!(status(as_user(json!(""))), Some(429));
    let no_sub = Call::new("GET", "/x", &[])
        .with_client(ip)
        .with_user("jwt", user(json!({"email": "a@example.com"})));
    assert_eq!(status(no_sub), Some(429));
    // Another client address: its own bucket.
    assert_eq!(
        status(Call::new("GET", "/x", &[]).with_client("10.0.0.2")),
        None
    );
}

#[test]
fn key_client_counts_the_address_whoever_the_user() {
    let rl = limiter(json!({"rate": 1e-9, "burst": 2, "key": "client"}));
    let as_user = |sub: &str, client: &str| {
        Call::new("GET", "/x", &[])
            .with_client(client)
            .with_user("jwt", user(json!({ "sub": sub })))
    };
    let status = |call: Call<'static>| {
        block_on(rl.on_request(call))
            .expect("answers")
            .answer_status()
    };
    assert_eq!(status(as_user("alice", "10.0.0.1")), None);
    assert_eq!(status(as_user("bob", "10.0.0.1")), None);
    assert_eq!(
        status(Call::new("GET", "/x", &[]).with_client("10.0.0.1")),
        Some(429)
    );
    assert_eq!(status(as_user("alice", "10.0.0.2")), None);
}

// ------------------------------------------------------------------------------------------------
// The bound on keys.

#[test]
fn a_full_map_drops_refilled_buckets_else_answers_503() {
    let rl = limiter(json!({"rate": 1, "burst": 2, "max_keys": 2}));
    let t0 = Instant::now();
    assert_eq!(take(&rl, "a", t0), allow(1));
    assert_eq!(take(&rl, "b", t0 + ms(500)), allow(1));
    // No bucket has refilled: a new key is refused, known keys are still served.
    assert_eq!(
        take(&rl, "c", t0),
        Decision::Full { retry_after: 1 },
        "fails closed"
    );
    assert_eq!(take(&rl, "b", t0 + ms(500)), allow(0));
    assert_eq!(rl.lock().full_at.len(), 2);
    // `a` is full again at t0 + 1 s, `b` at t0 + 1.5 s: from then on `a` makes room.
    assert_eq!(
        take(&rl, "c", t0 + ms(999)),
        Decision::Full { retry_after: 1 }
    );
    assert_eq!(take(&rl, "c", t0 + ms(1000)), allow(1));
    {
        let buckets = rl.lock();
        assert_eq!(buckets.full_at.len(), 2);
        assert!(buckets.full_at.contains_key(&subject("b")));
        assert!(!buckets.full_at.contains_key(&subject("a")));
    }
    // `a` comes back as a new, full bucket: forgetting it cost it nothing.
    assert_eq!(take(&rl, "a", t0 + ms(2000)), allow(1));
}

#[test]
fn the_503_says_when_a_bucket_refills() {
    let rl = limiter(json!({"rate": 0.1, "burst": 1, "max_keys": 1}));
    let t0 = Instant::now();
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(take(&rl, "b", t0), Decision::Full { retry_after: 10 });
    assert_eq!(
        take(&rl, "b", t0 + ms(7500)),
        Decision::Full { retry_after: 3 }
    );
    // A dry run in between sees the same and changes nothing.
    assert_eq!(
        rl.decide(subject("b"), t0 + ms(10_000), true)
            .expect("decides"),
        allow(0)
    );
    assert!(rl.lock().full_at.contains_key(&subject("a")));
    assert_eq!(take(&rl, "b", t0 + ms(10_000)), allow(0));
    let flow = rl.flow(Decision::Full { retry_after: 3 });
    assert_eq!(flow.answer_status(), Some(503));
    assert_eq!(header(flow.answer_headers(), "retry-after"), Some("3"));
}

#[test]
fn a_dry_run_on_a_full_map_answers_as_a_real_request() {
    let rl = limiter(json!({"rate": 1, "burst": 1, "max_keys": 1}));
    let t0 = Instant::now();
    assert_eq!(take(&rl, "a", t0), allow(0));
    assert_eq!(
        rl.decide(subject("b"), t0, true).expect("decides"),
        Decision::Full { retry_after: 1 }
    );
    assert_eq!(take(&rl, "b", t0), Decision::Full { retry_after: 1 });
}

// ------------------------------------------------------------------------------------------------
// Concurrency.

#[test]
fn concurrent_callers_on_one_key_get_exactly_burst() {
    const BURST: u64 = 64;
    // The clock is fixed: nothing refills, so exactly `burst` may pass.
    let rl = Arc::new(limiter(json!({"rate": 1, "burst": BURST})));
    let now = Instant::now();
    let allowed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (rl, allowed) = (rl.clone(), allowed.clone());
            thread::spawn(move || {
                for _ in 0..100 {
                    if let Decision::Allow { .. } = take(&rl, "shared", now) {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread panicked");
    }
    assert_eq!(allowed.load(Ordering::Relaxed), BURST);
}

#[test]
fn concurrent_requests_through_the_sdk_never_pass_more_than_burst() {
    // The real clock: with one token in ~32 years nothing refills during the test.
    let rl = Arc::new(limiter(json!({"rate": 1e-9, "burst": 25})));
    let allowed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (rl, allowed) = (rl.clone(), allowed.clone());
            thread::spawn(move || {
                for _ in 0..50 {
                    let call = Call::new("GET", "/x", &[])
                        .with_client("10.1.1.1")
                        .with_user("jwt", user(json!({"sub": "alice"})));
                    let flow = block_on(rl.on_request(call)).expect("answers");
                    if flow.answer_status().is_none() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread panicked");
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 25);
}

#[test]
fn a_sub_counts_per_provider_and_an_ipv6_client_per_64() {
    let rl = limiter(json!({"rate": 1e-9, "burst": 1}));
    let status = |call: Call<'static>| {
        block_on(rl.on_request(call))
            .expect("answers")
            .answer_status()
    };
    let by = |provider: &str| {
        Call::new("GET", "/x", &[]).with_user(provider, user(json!({ "sub": "user_1" })))
    };
    // The same `sub` from two providers is two users.
    assert_eq!(status(by("corp")), None);
    assert_eq!(status(by("signup")), None);
    assert_eq!(status(by("corp")), Some(429));
    // Two addresses of one /64 share a bucket; another /64 has its own; an IPv4-mapped address
    // is its IPv4 one.
    let from = |ip: &str| Call::new("GET", "/x", &[]).with_client(ip);
    assert_eq!(status(from("2001:db8:1:2::1")), None);
    assert_eq!(status(from("2001:db8:1:2:ffff::9")), Some(429));
    assert_eq!(status(from("2001:db8:1:3::1")), None);
    assert_eq!(status(from("192.0.2.9")), None);
    assert_eq!(status(from("::ffff:192.0.2.9")), Some(429));
}
