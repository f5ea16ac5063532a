//! Each mode, driven through the SDK.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::atomic::{AtomicUsize, Ordering},
    task::Wake,
};

use portcullis_plugin_api::{conformance::test_host, example_config, ErrorKind, User};
use serde_json::json;

use super::*;

/// Wakes the test's thread, counting wake-ups.
struct Unpark(std::thread::Thread, AtomicUsize);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// Runs a future on this thread until it completes or `limit` passes (`None`).
fn run_for<F: Future>(fut: F, limit: Duration) -> Option<F::Output> {
    let unpark = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
    let waker = Waker::from(unpark);
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = Instant::now() + limit;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    run_for(fut, Duration::from_secs(10)).expect("the future completes")
}

fn probe(value: serde_json::Value) -> Probe {
    let config: Config = serde_json::from_value(value).expect("config parses");
    ProbePlugin::build(config, test_host()).expect("builds")
}

fn user(claims: serde_json::Value) -> User {
    User::from_claims(claims.as_object().cloned().expect("claims are an object"))
}

fn set_headers(flow: &Flow) -> Vec<(&str, &str)> {
    // What the probe says it was told (`x-mw-seen-*`) is for the server's tests.
    flow.request_headers_set()
        .filter(|(name, _)| !name.starts_with("x-mw-seen-"))
        .collect()
}

#[test]
fn the_config_defaults_and_example() {
    let example = example_config(Config::KEYS).expect("examples are JSON");
    let config: Config = serde_json::from_value(example.into()).expect("parses");
    assert_eq!(
        config,
        Config {
            tag: "a".into(),
            mode: Mode::Tag,
            status: 418,
            delay_ms: 50,
            on_response: false,
            now: false,
        }
    );
    for bad in [
        json!({}),
        json!({"tag": "a", "mode": "explode"}),
        json!({"tag": "a", "extra": 1}),
        json!({"tag": "a", "status": 70000}),
    ] {
        assert!(
            serde_json::from_value::<Config>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn tag_appends_to_the_order_and_names_the_user() {
    let p = probe(json!({"tag": "b"}));
    let first = block_on(p.on_request(Call::new("GET", "/x", &[]))).expect("proceeds");
    assert_eq!(first.answer_status(), None);
    assert_eq!(
        set_headers(&first),
        [
            ("x-mw-order", "b"),
            ("x-mw-user", "-"),
            ("x-mw-provider", "-"),
        ]
    );
    assert_eq!(
        first.response_headers_added().collect::<Vec<_>>(),
        [("x-mw-ran", "b")]
    );

    let call = Call::new("GET", "/x", &[("X-MW-Order", "a")])
        .with_user("jwt-main", user(json!({"sub": "alice"})));
    let second = block_on(p.on_request(call)).expect("proceeds");
    assert_eq!(
        set_headers(&second),
        [
            ("x-mw-order", "a,b"),
            ("x-mw-user", "alice"),
            ("x-mw-provider", "jwt-main"),
        ]
    );
}

#[test]
fn deny_answers_its_status() {
    let flow = block_on(probe(json!({"tag": "gate", "mode": "deny"})).on_request(Call::default()))
        .expect("answers");
    assert_eq!(flow.answer_status(), Some(418));
    assert!(flow
        .answer_headers()
        .any(|h| h == ("x-mw-denied-by", "gate")));
    let answer = flow.into_abi().answer.into_option().expect("an answer");
    let body: serde_json::Value =
        serde_json::from_slice(answer.body.as_slice()).expect("JSON body");
    assert_eq!(body, json!({"error": "denied by gate"}));

    let p = probe(json!({"tag": "gate", "mode": "deny", "status": 451}));
    let flow = block_on(p.on_request(Call::default())).expect("answers");
    assert_eq!(flow.answer_status(), Some(451));
}

#[test]
fn error_is_unavailable() {
    let p = probe(json!({"tag": "e", "mode": "error"}));
    let err = block_on(p.on_request(Call::default())).expect_err("fails");
    assert_eq!(err.kind(), ErrorKind::UNAVAILABLE);
    assert!(err.message().contains("mw-probe e"));
}

#[test]
fn panic_panics() {
    let p = probe(json!({"tag": "p", "mode": "panic"}));
    let outcome = catch_unwind(AssertUnwindSafe(|| block_on(p.on_request(Call::default()))));
    assert!(outcome.is_err());
}

#[test]
fn hang_never_completes() {
    let p = probe(json!({"tag": "h", "mode": "hang"}));
    assert!(run_for(p.on_request(Call::default()), Duration::from_millis(100)).is_none());
}

#[test]
fn slow_waits_without_blocking_the_thread() {
    let p = probe(json!({"tag": "s", "mode": "slow", "delay_ms": 120}));
    let fut = p.on_request(Call::default());
    let mut fut = std::pin::pin!(fut);
    let unpark = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let started = Instant::now();
    // The first poll returns at once: the wait happens on a timer thread.
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert!(started.elapsed() < Duration::from_millis(60));
    // An early poll stays pending and the timer is not started twice.
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let flow = loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            break out.expect("proceeds");
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never woken");
        std::thread::park_timeout(Duration::from_secs(1));
    };
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert!(unpark.1.load(Ordering::SeqCst) >= 1, "woken by the timer");
    assert_eq!(set_headers(&flow)[0], ("x-mw-order", "s"));
}

#[test]
fn slow_with_the_default_delay_completes() {
    let p = probe(json!({"tag": "s", "mode": "slow"}));
    let started = Instant::now();
    let flow = block_on(p.on_request(Call::default())).expect("proceeds");
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(flow.answer_status(), None);
}

#[test]
fn the_response_hook_is_asked_for_and_appends() {
    assert!(!probe(json!({"tag": "a"})).wants_response());
    let p = probe(json!({"tag": "b", "on_response": true}));
    assert!(p.wants_response());
    let first =
        block_on(p.on_response(Call::default(), ResponseView::new(200, &[]))).expect("changes");
    assert_eq!(
        first,
        ResponseChanges::none().set_header("x-mw-response", "b")
    );
    let view = ResponseView::new(502, &[("X-MW-Response", "c")]);
    let second = block_on(p.on_response(Call::default(), view)).expect("changes");
    assert_eq!(
        second,
        ResponseChanges::none().set_header("x-mw-response", "c,b")
    );
}

#[test]
fn tag_says_what_it_was_told() {
    let p = probe(json!({"tag": "t"}));
    let call = Call::new("GET", "/x", &[("host", "a.test"), ("x-one", "1")]).with_query("q=1");
    let flow = block_on(p.on_request(call)).expect("proceeds");
    let told: Vec<(&str, &str)> = flow
        .request_headers_set()
        .filter(|(name, _)| name.starts_with("x-mw-seen-"))
        .collect();
    assert_eq!(
        told,
        [
            ("x-mw-seen-headers", "host,x-one"),
            ("x-mw-seen-query", "q=1")
        ]
    );
}
