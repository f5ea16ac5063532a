#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! The identity provider misbehaving on purpose, for the JWKS path of the `jwt` plugin: refused
//! connections, a stall, 500, HTML, truncated JSON, a 50 MB body, an empty key set. With no keys
//! cached the server fails closed (503) within `plugin_timeout`, never lets a token in, and
//! recovers on the first request after the provider does; with keys cached, they keep serving.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use portcullis_tests::{forge::TestKey, *};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A key server whose behaviour is switched at run time.
struct BadIdp {
    url: String,
    mode: Arc<Mutex<&'static str>>,
    _task: tokio::task::JoinHandle<()>,
}

impl BadIdp {
    async fn start(good_body: String) -> BadIdp {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", l.local_addr().unwrap());
        let mode: Arc<Mutex<&'static str>> = Arc::new(Mutex::new("good"));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mode = *m.lock().unwrap();
                let good = good_body.clone();
                tokio::spawn(async move {
                    if mode == "refuse" {
                        drop(s);
                        return;
                    }
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let reply = |status: &str, ctype: &str, body: &str| {
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\ncache-control: max-age=300\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    let out = match mode {
                        "stall" => {
                            // Hold the connection open and say nothing.
                            std::future::pending::<()>().await;
                            return;
                        }
                        "500" => reply(
                            "500 Internal Server Error",
                            "application/json",
                            r#"{"error":"boom"}"#,
                        ),
                        "html" => reply(
                            "200 OK",
                            "text/html",
                            "<!doctype html><html><body>Sign in</body></html>",
                        ),
                        "truncated" => reply("200 OK", "application/json", &good[..good.len() / 2]),
                        "empty" => reply("200 OK", "application/json", r#"{"keys":[]}"#),
                        "huge" => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 52428800\r\n\r\n{\"keys\":[";
                            if s.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let chunk = vec![b' '; 64 * 1024];
                            for _ in 0..800 {
                                if s.write_all(&chunk).await.is_err() {
                                    return;
                                }
                            }
                            return;
                        }
                        _ => reply("200 OK", "application/json", &good),
                    };
                    let _ = s.write_all(out.as_bytes()).await;
                });
            }
        });
        BadIdp {
            url,
            mode,
            _task: task,
        }
    }

    fn set(&self, mode: &'static str) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn config(url: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  plugin_timeout: 8s\nplugins:\n  dir: plugins\nproviders:\n  - name: idp\n    plugin: jwt\n    dangerous: {{ allow_http: true }}\n    config:\n      jwks_url: \"{url}\"\n      issuer: [\"https://idp.test/\"]\n      audience: [\"api\"]\n"
    )
}

fn token(k: &TestKey, sub: &str) -> String {
    let mut c = claims(sub, json!({}));
    c["iss"] = "https://idp.test/".into();
    c["aud"] = "api".into();
    k.sign(json!({}), &c)
}

async fn me(s: &Server, t: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = client()
        .get(s.url("/api/auth/me"))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (
        code,
        r.json().await.unwrap_or(Value::Null),
        started.elapsed(),
    )
}

const FAULTS: [&str; 7] = [
    "refuse",
    "stall",
    "500",
    "html",
    "truncated",
    "huge",
    "empty",
];

#[tokio::test]
async fn with_no_cached_keys_every_fault_fails_closed_in_bounded_time_and_recovers() {
    let k = TestKey::rsa("k1").with_base(json!({"kid": "k1"}));
    let idp = BadIdp::start(json!({"keys": [k.jwk]}).to_string()).await;
    for fault in FAULTS {
        idp.set(fault);
        let s = Server::start(&config(&idp.url), &[jwt_plugin()]);
        // Several at once: they share the fetch and none waits past the plugin timeout.
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (url, t) = (s.url("/api/auth/me"), token(&k, &format!("u{i}")));
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let r = client().get(url).bearer_auth(t).send().await.unwrap();
                let code = r.status().as_u16();
                (code, r.json::<Value>().await.unwrap(), started.elapsed())
            }));
        }
        for t in tasks {
            let (code, body, took) = t.await.unwrap();
            assert_eq!(code, 503, "{fault}: {body}");
            assert_eq!(body, json!({"error": "Authentication service unavailable"}));
            assert!(
                took < Duration::from_secs(12),
                "{fault}: answered after {took:?}"
            );
        }
        // The provider comes back: the next request fetches and is let in.
        idp.set("good");
        let (code, body, _) = me(&s, &token(&k, "ann")).await;
        assert_eq!(code, 200, "{fault}: no recovery: {body}");
        assert_eq!(body["user"]["sub"], "ann");
        let log = s.log();
        assert!(log.contains("key set fetch failed"), "{fault}: {log}");
    }
}

#[tokio::test]
async fn with_cached_keys_a_failing_provider_changes_nothing_for_known_keys() {
    let k = TestKey::rsa("k1").with_base(json!({"kid": "k1"}));
    let idp = BadIdp::start(json!({"keys": [k.jwk]}).to_string()).await;
    let s = Server::start(&config(&idp.url), &[jwt_plugin()]);
    assert_eq!(me(&s, &token(&k, "ann")).await.0, 200);
    let stranger = TestKey::rsa("k2").with_base(json!({"kid": "k2"}));
    for fault in FAULTS {
        idp.set(fault);
        let (code, body, _) = me(&s, &token(&k, "ann")).await;
        assert_eq!(code, 200, "{fault}: cached key stopped serving: {body}");
        // An unknown kid may trigger a refetch, which fails: never a 200, always bounded.
        let (code, _, took) = me(&s, &token(&stranger, "eve")).await;
        assert!(
            code == 401 || code == 503,
            "{fault}: unknown kid got {code}"
        );
        assert!(took < Duration::from_secs(12), "{fault}: {took:?}");
    }
    idp.set("good");
    assert_eq!(me(&s, &token(&k, "ann")).await.0, 200);
}
