#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Request middleware under live change: middleware plugins (the `ratelimit` plugin and the
//! `mw-probe` test fixture, real `.so` files) swapped, edited, deleted, distrusted and hung while
//! clients keep calling the real binary. Every answer must come from the state before or after a
//! change, kept instances must keep their state, and a broken change must leave the last good
//! state serving.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use portcullis_tests::{echo::Echo, *};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// How long any one change may take to show (generous: a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it holds, up to [`WAIT`].
async fn until<F, Fut>(check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(WAIT, check).await
}

/// `GET path` with an optional bearer token: status, headers, JSON body (`Null` if none).
/// A transport failure is status 0.
async fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, HeaderMap, Value) {
    let mut r = client().get(s.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    match r.send().await {
        Err(_) => (0, HeaderMap::new(), Value::Null),
        Ok(r) => {
            let code = r.status().as_u16();
            let headers = r.headers().clone();
            (code, headers, r.json().await.unwrap_or(Value::Null))
        }
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn admin_status(s: &Server, token: &str) -> Value {
    client()
        .get(s.url("/api/admin/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn generation(s: &Server, token: &str) -> u64 {
    admin_status(s, token).await["generation"].as_u64().unwrap()
}

/// Waits until a snapshot newer than `before` is served; its generation.
async fn next_generation(s: &Server, token: &str, before: u64) -> u64 {
    assert!(
        until(|| async { generation(s, token).await > before }).await,
        "no reload after generation {before}; status {}\nlog:\n{}",
        admin_status(s, token).await,
        s.log()
    );
    generation(s, token).await
}

/// The status entry of middleware instance `name`.
fn mw_status<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["middleware"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no middleware `{name}` in status: {st}"))
}

fn token(sub: &str) -> String {
    hs256(SECRET, good_claims(sub, json!({})))
}

/// [`jwt_config`] allowing every signed-in user, with `server` settings added, then `tail`
/// (top-level `middleware:` / `routes:` blocks) appended.
fn config(server: &str, rules: &str, tail: &str) -> String {
    jwt_config(&format!("auth:\n  rules:\n{rules}    - allow: true\n"))
        .replace("  port: 0\n", &format!("  port: 0\n{server}"))
        + tail
}

/// A second build of a plugin: the same library with bytes appended past its end, which the
/// dynamic loader never reads. Same code and behaviour, another file hash: to the host a
/// different build, whose instances are built anew (the ratelimit plugin has no flavor marker to
/// rewrite, as the faulty fixture has; a rebuilt limiter shows in its emptied buckets).
fn second_build(lib: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin(lib)).unwrap();
    bytes.extend_from_slice(b"\0portcullis-tests: second build of the same plugin\0");
    bytes
}

const PROBE: &str = "portcullis_test_mw_probe";
const RATELIMIT: &str = "portcullis_plugin_ratelimit";

fn probe_so(s: &Server) -> std::path::PathBuf {
    s.plugins_dir().join(format!("lib{PROBE}.so"))
}

// ---------------------------------------------------------------------------------------------
// 1. Swaps under load.

/// The response header mw-probe's tag mode adds, as the built library spells it.
const RAN: &[u8] = b"x-mw-ran";
/// The same header in the second probe build (see [`probe_build_b`]).
const RAN_B: &[u8] = b"x-mw-ra2";

/// A second build of mw-probe that says so in every answer: the library's one copy of the
/// response header name `x-mw-ran` rewritten to `x-mw-ra2` (same length, still a valid header
/// name; nothing else changes). mw-probe has no flavor marker like the faulty fixture's, and a
/// trailer (see [`second_build`]) would change the hash but not the behaviour, so a host that
/// loaded the new file but kept running the old library's instance would go unnoticed.
fn probe_build_b() -> Vec<u8> {
    let mut bytes = std::fs::read(plugin(PROBE)).unwrap();
    let at: Vec<usize> = bytes
        .windows(RAN.len())
        .enumerate()
        .filter(|(_, w)| *w == RAN)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "mw-probe's library holds its response header name exactly once; the test must be adapted"
    );
    bytes[at[0]..at[0] + RAN.len()].copy_from_slice(RAN_B);
    bytes
}

/// Which build and which config tag answered: `("A" | "B", tag)`, from a 200 answer's headers.
fn build_and_tag(h: &HeaderMap) -> Option<(&'static str, String)> {
    let a = header(h, std::str::from_utf8(RAN).unwrap());
    let b = header(h, std::str::from_utf8(RAN_B).unwrap());
    match (a, b) {
        (Some(t), None) => Some(("A", t.to_string())),
        (None, Some(t)) => Some(("B", t.to_string())),
        _ => None,
    }
}

type Seen = std::collections::BTreeMap<(&'static str, String), u64>;

/// Clients calling `GET /up/...` until stopped. Every answer must be 200 from build A or B of
/// the probe with tag `v1` or `v2`, the tag the upstream received agreeing with the tag answered
/// (one instance ran the whole request).
struct Load {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    seen: Arc<Mutex<Seen>>,
    bad: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(s: &Server, clients: usize, token: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Seen::new()));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|i| {
                let (stop, total, seen, bad) =
                    (stop.clone(), total.clone(), seen.clone(), bad.clone());
                let (base, token) = (s.url(&format!("/up/client{i}/")), token.to_string());
                let c = client();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let verdict = match c
                            .get(format!("{base}{n}"))
                            .bearer_auth(&token)
                            .send()
                            .await
                        {
                            Err(e) => Err(format!("request failed: {e}")),
                            Ok(r) => {
                                let code = r.status().as_u16();
                                let ran = build_and_tag(r.headers());
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                let order = body["headers"]["x-mw-order"].as_str();
                                match ran {
                                    Some((build, tag))
                                        if code == 200
                                            && (tag == "v1" || tag == "v2")
                                            && order == Some(tag.as_str())
                                            && body["headers"]["x-mw-user"] == "load" =>
                                    {
                                        Ok((build, tag))
                                    }
                                    _ => Err(format!(
                                        "unexpected answer {code}, build and tag {ran:?}, body {body}"
                                    )),
                                }
                            }
                        };
                        total.fetch_add(1, Ordering::Relaxed);
                        match verdict {
                            Ok(v) => *seen.lock().unwrap().entry(v).or_default() += 1,
                            Err(e) => bad.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            total,
            seen,
            bad,
            tasks,
        }
    }

    /// Stops the clients; returns (requests, answers per build and tag, bad answers).
    async fn finish(self) -> (u64, Seen, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        let bad = self.bad.lock().unwrap().clone();
        (self.total.load(Ordering::Relaxed), seen, bad)
    }
}

fn swap_config(up: &str, tag: &str) -> String {
    config(
        "",
        "",
        &format!(
            "middleware:\n  - name: probe\n    plugin: mw-probe\n    config: {{ tag: {tag} }}\nroutes:\n  - {{ path: /up/*, upstream: \"{up}\", middleware: [probe] }}\n"
        ),
    )
}

/// Which build and tag a fresh request on the probed route runs with (`None` unless 200).
async fn served(s: &Server, token: &str) -> Option<(&'static str, String)> {
    let (code, h, _) = get(s, "/up/probe", Some(token)).await;
    if code != 200 {
        return None;
    }
    build_and_tag(&h)
}

/// Twenty swaps of a middleware instance under load: in turn the plugin file alone (build A ⇄
/// build B, config unchanged), the instance config alone (tag `v1` ⇄ `v2`), and both at once.
/// Each answer names its build (see [`probe_build_b`]) and its config tag, so every swap is
/// seen to take effect in the requests themselves, not only in status. Library files are
/// written in place, by rename, or half-written first (a load failure that must change nothing)
/// and then completed, as `reload.rs` swaps provider plugins; the config by rename or in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_middleware_swaps_under_load_lose_no_request() {
    let up = Echo::start().await;
    let s = Server::start(
        &swap_config(&up.url(), "v1"),
        &[jwt_plugin(), plugin(PROBE)],
    );
    let admin = token("admin");
    let load_token = token("load");
    let so = probe_so(&s);
    let build_a = std::fs::read(plugin(PROBE)).unwrap();
    let build_b = probe_build_b();
    let hash_of = |build: &str| {
        portcullis::plugin::sha256_hex(if build == "A" { &build_a } else { &build_b })
    };
    let (mut build, mut tag) = ("A", "v1");
    assert_eq!(
        served(&s, &load_token).await,
        Some((build, tag.to_string()))
    );
    assert_eq!(
        mw_status(&admin_status(&s, &admin).await, "probe")["plugin_hash"],
        hash_of(build).as_str()
    );
    let first_generation = generation(&s, &admin).await;

    let load = Load::start(&s, 8, &load_token);
    let mut file_writes = 0;
    for i in 0..20 {
        let (old_build, old_tag) = (build, tag);
        let (new_file, new_config) = match i % 3 {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        if new_file {
            build = if build == "A" { "B" } else { "A" };
        }
        if new_config {
            tag = if tag == "v1" { "v2" } else { "v1" };
        }
        let bytes = if build == "A" { &build_a } else { &build_b };
        if new_file {
            file_writes += 1;
            match file_writes % 3 {
                // Copied over the old file in place.
                0 => std::fs::write(&so, bytes).unwrap(),
                // Written elsewhere and renamed over it.
                1 => write_by_rename(&so, bytes),
                // Half written: refused, the old instance keeps serving; then completed.
                _ => {
                    let before = generation(&s, &admin).await;
                    std::fs::write(&so, &bytes[..bytes.len() / 2]).unwrap();
                    assert!(
                        until(|| async {
                            let st = admin_status(&s, &admin).await;
                            st["last_attempt"]["result"] == "failed"
                                && st["last_attempt"]["errors"]
                                    .to_string()
                                    .contains(&format!("lib{PROBE}.so"))
                        })
                        .await,
                        "swap {i}: a half-written middleware library was not refused; status {}\nlog:\n{}",
                        admin_status(&s, &admin).await,
                        s.log()
                    );
                    let st = admin_status(&s, &admin).await;
                    assert_eq!(st["generation"], before, "swap {i}: nothing applied: {st}");
                    assert_eq!(
                        mw_status(&st, "probe")["plugin_hash"],
                        hash_of(old_build).as_str(),
                        "swap {i}: {st}"
                    );
                    assert_eq!(
                        served(&s, &load_token).await,
                        Some((old_build, old_tag.to_string())),
                        "swap {i}: the last good instance serves"
                    );
                    std::fs::write(&so, bytes).unwrap();
                }
            }
        }
        if new_config {
            let cfg = swap_config(&up.url(), tag);
            if i % 2 == 0 {
                write_by_rename(&s.config_path(), cfg.as_bytes());
            } else {
                std::fs::write(s.config_path(), &cfg).unwrap();
            }
        }
        let want = Some((build, tag.to_string()));
        let hash = hash_of(build);
        assert!(
            until(|| async {
                mw_status(&admin_status(&s, &admin).await, "probe")["plugin_hash"] == hash.as_str()
                    && served(&s, &load_token).await == want
            })
            .await,
            "swap {i} to build {build}, tag {tag} was not applied; status {}\nlog:\n{}",
            admin_status(&s, &admin).await,
            s.log()
        );
    }
    let (total, seen, bad) = load.finish().await;
    assert!(
        bad.is_empty(),
        "{} of {total} answers were wrong: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(total >= 200, "the load ran ({total} requests)");
    for (b, t) in [("A", "v1"), ("B", "v1"), ("B", "v2")] {
        assert!(
            seen.get(&(b, t.to_string())).is_some_and(|n| *n > 0),
            "the load saw build {b} with tag {t}, a state the swaps rested in: {seen:?}"
        );
    }
    eprintln!("middleware swaps under load: {total} requests, per (build, tag) {seen:?}, 0 failed");
    // 13 file swaps and 13 config swaps in all: the last state is build B with tag v2.
    assert_eq!((build, tag), ("B", "v2"));
    assert_eq!(served(&s, &load_token).await, Some(("B", "v2".to_string())));
    let st = admin_status(&s, &admin).await;
    let probe = mw_status(&st, "probe");
    assert_eq!(probe["plugin_hash"], hash_of("B").as_str(), "{st}");
    assert!(probe["retired"].is_null(), "{st}");
    assert!(
        st["generation"].as_u64().unwrap() >= first_generation + 20,
        "every swap was a reload: {st}"
    );
    // Two contents, each mapped once: swapping back reuses the copy already mapped.
    assert_eq!(st["mapped_libraries"], 3, "jwt + two probe builds: {st}");
}

// ---------------------------------------------------------------------------------------------
// 2. State kept across reloads of unchanged instances.

/// A rate limiter on `/rl/*` (its own `path`), proxied to `up`, with `limiter` as its config,
/// `rules` (extra `auth.rules` entries), `server` settings and `extra` middleware entries.
fn limiter_config(up: &str, limiter: &str, server: &str, rules: &str, extra: &str) -> String {
    config(
        server,
        rules,
        &format!(
            "middleware:\n  - name: limit\n    plugin: ratelimit\n    path: /rl/*\n    config: {limiter}\n{extra}routes:\n  - {{ path: /rl/*, upstream: \"{up}\" }}\n  - {{ path: /other/*, upstream: \"{up}\" }}\n"
        ),
    )
}

/// `GET /rl/<sub>` as `sub`: status and `ratelimit-remaining`.
async fn limited(s: &Server, sub: &str) -> (u16, Option<String>) {
    let (code, h, _) = get(s, &format!("/rl/{sub}"), Some(&token(sub))).await;
    (code, header(&h, "ratelimit-remaining").map(String::from))
}

async fn assert_limited_as(s: &Server, sub: &str, want: &[(u16, Option<&str>)], when: &str) {
    for (k, (code, remaining)) in want.iter().enumerate() {
        let got = limited(s, sub).await;
        assert_eq!(
            (got.0, got.1.as_deref()),
            (*code, *remaining),
            "{when}: request {} of {sub}; log:\n{}",
            k + 1,
            s.log()
        );
    }
}

#[tokio::test]
async fn rate_limit_state_is_kept_across_reloads_that_leave_the_limiter_unchanged() {
    let up = Echo::start().await;
    let limiter = "{ rate: 0.001, burst: 2 }";
    let probe = "  - name: unrelated\n    plugin: mw-probe\n    path: /other/*\n    config: { tag: other }\n";
    let s = Server::start(
        &limiter_config(&up.url(), limiter, "", "", ""),
        &[jwt_plugin(), plugin(RATELIMIT), plugin(PROBE)],
    );
    let admin = token("admin");
    let mut g = generation(&s, &admin).await;
    let drained = [(429, Some("0"))];
    assert_limited_as(
        &s,
        "alice",
        &[(200, Some("1")), (200, Some("0")), (429, Some("0"))],
        "at start",
    )
    .await;
    let hash = mw_status(&admin_status(&s, &admin).await, "limit")["plugin_hash"].clone();

    // Three edits elsewhere, each applied as a reload: the limiter is kept with its buckets.
    let edits = [
        (
            "an unrelated auth rule",
            limiter_config(
                &up.url(),
                limiter,
                "",
                "    - path: /nowhere/*\n      allow: false\n",
                "",
            ),
        ),
        (
            "a second, unrelated middleware instance",
            limiter_config(
                &up.url(),
                limiter,
                "",
                "    - path: /nowhere/*\n      allow: false\n",
                probe,
            ),
        ),
        (
            "a new server.plugin_max_in_flight (same plugin object, new in-flight limit)",
            limiter_config(
                &up.url(),
                limiter,
                "  plugin_max_in_flight: 100\n",
                "    - path: /nowhere/*\n      allow: false\n",
                probe,
            ),
        ),
    ];
    for (what, cfg) in &edits {
        write_by_rename(&s.config_path(), cfg.as_bytes());
        g = next_generation(&s, &admin, g).await;
        let st = admin_status(&s, &admin).await;
        assert_eq!(st["last_attempt"]["result"], "applied", "{what}: {st}");
        assert_eq!(mw_status(&st, "limit")["plugin_hash"], hash, "{what}: {st}");
        assert_limited_as(&s, "alice", &drained, what).await;
        // The limiter still runs, for others too: a new user has a full bucket.
        let fresh = format!("fresh{g}");
        assert_limited_as(&s, &fresh, &[(200, Some("1"))], what).await;
    }
    // The edits applied: the unrelated probe runs on its path.
    let (code, h, _) = get(&s, "/other/x", Some(&admin)).await;
    assert_eq!((code, header(&h, "x-mw-ran")), (200, Some("other")));

    // The limiter's own config changes: a new instance, with new (full) buckets.
    let burst3 = "{ rate: 0.001, burst: 3 }";
    let cfg = limiter_config(
        &up.url(),
        burst3,
        "  plugin_max_in_flight: 100\n",
        "    - path: /nowhere/*\n      allow: false\n",
        probe,
    );
    write_by_rename(&s.config_path(), cfg.as_bytes());
    g = next_generation(&s, &admin, g).await;
    assert_limited_as(
        &s,
        "alice",
        &[
            (200, Some("2")),
            (200, Some("1")),
            (200, Some("0")),
            (429, Some("0")),
        ],
        "after burst: 3",
    )
    .await;

    // Another build of the limiter's plugin, config unchanged: rebuilt too.
    let so = s.plugins_dir().join(format!("lib{RATELIMIT}.so"));
    let build_b = second_build(RATELIMIT);
    write_by_rename(&so, &build_b);
    next_generation(&s, &admin, g).await;
    let st = admin_status(&s, &admin).await;
    assert_eq!(
        mw_status(&st, "limit")["plugin_hash"],
        portcullis::plugin::sha256_hex(&build_b).as_str(),
        "{st}"
    );
    assert_limited_as(
        &s,
        "alice",
        &[
            (200, Some("2")),
            (200, Some("1")),
            (200, Some("0")),
            (429, Some("0")),
        ],
        "after a new build of the plugin",
    )
    .await;
    // What reached the upstream: alice's allowed requests only (2 + 3 + 3), never a 429's.
    let alice = up
        .seen()
        .iter()
        .filter(|e| e["path"] == "/rl/alice")
        .count();
    assert_eq!(alice, 8, "only allowed requests are forwarded");
}

// ---------------------------------------------------------------------------------------------
// 3. Correctness under concurrent clients.

/// `tasks` tasks, each sending `per_task` requests one after another as `sub`, all at the same
/// time: (allowed, refused, the `ratelimit-remaining` of each allowed answer).
async fn burst_of(s: &Server, sub: &str, tasks: usize, per_task: usize) -> (u64, u64, Vec<u64>) {
    let url = s.url(&format!("/rl/{sub}"));
    let t = token(sub);
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (url, t, barrier) = (url.clone(), t.clone(), barrier.clone());
            tokio::spawn(async move {
                let c = client();
                let mut out = Vec::new();
                barrier.wait().await;
                for _ in 0..per_task {
                    let r = c.get(&url).bearer_auth(&t).send().await.unwrap();
                    let code = r.status().as_u16();
                    let remaining = header(r.headers(), "ratelimit-remaining")
                        .and_then(|v| v.parse::<u64>().ok());
                    let retry_after =
                        header(r.headers(), "retry-after").and_then(|v| v.parse::<u64>().ok());
                    out.push((code, remaining, retry_after));
                }
                out
            })
        })
        .collect();
    let (mut allowed, mut refused, mut remaining) = (0, 0, Vec::new());
    for h in handles {
        for (code, rem, retry_after) in h.await.unwrap() {
            match code {
                200 => {
                    allowed += 1;
                    remaining.push(rem.expect("an allowed answer says what remains"));
                }
                429 => {
                    refused += 1;
                    assert!(
                        retry_after.is_some_and(|r| r >= 1),
                        "a 429 says when to retry"
                    );
                }
                other => panic!("{sub}: unexpected status {other}"),
            }
        }
    }
    remaining.sort_unstable();
    (allowed, refused, remaining)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_lets_exactly_burst_through_under_concurrent_clients() {
    const BURST: u64 = 20;
    let up = Echo::start().await;
    // One token in 1000 s: nothing refills while the test runs.
    let cfg = config(
        "",
        "",
        &format!(
            "middleware:\n  - name: limit\n    plugin: ratelimit\n    config: {{ rate: 0.001, burst: {BURST} }}\nroutes:\n  - {{ path: /rl/*, upstream: \"{}\", middleware: [limit] }}\n",
            up.url()
        ),
    );
    let s = Server::start(&cfg, &[jwt_plugin(), plugin(RATELIMIT)]);
    // Every token taken exactly once: the remaining counts are BURST-1 down to 0.
    let each_once: Vec<u64> = (0..BURST).collect();

    // One user, 100 requests from 10 clients at once.
    let (allowed, refused, remaining) = burst_of(&s, "solo", 10, 10).await;
    eprintln!("one user: {allowed} allowed, {refused} refused of 100");
    assert_eq!(
        (allowed, refused),
        (BURST, 100 - BURST),
        "allowed, refused: a fresh bucket lets exactly `burst` through"
    );
    assert_eq!(
        remaining, each_once,
        "ratelimit-remaining of the allowed answers: each token is taken once, in turn (a count \
         repeated or skipped means a take saw the bucket out of order)"
    );

    // Two users at once, 100 requests each: each has a bucket of its own.
    let (a, b) = tokio::join!(burst_of(&s, "left", 10, 10), burst_of(&s, "right", 10, 10));
    eprintln!(
        "two users: {} + {} allowed, {} + {} refused of 200",
        a.0, b.0, a.1, b.1
    );
    assert_eq!((a.0, a.1), (BURST, 100 - BURST), "left");
    assert_eq!((b.0, b.1), (BURST, 100 - BURST), "right");
    assert_eq!(a.2, each_once, "left");
    assert_eq!(b.2, each_once, "right");
    // The first user's bucket is still empty.
    assert_eq!(limited(&s, "solo").await.0, 429);
    // The upstream saw exactly the allowed requests.
    let seen = up.seen();
    for sub in ["solo", "left", "right"] {
        let n = seen
            .iter()
            .filter(|e| e["path"] == format!("/rl/{sub}"))
            .count() as u64;
        assert_eq!(n, BURST, "{sub}: forwarded requests");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Retired on delete or distrust.

fn guard_config(up: &str, plugins: &str) -> String {
    config(
        "",
        "",
        &format!(
            "middleware:\n  - name: guard\n    plugin: mw-probe\n    config: {{ tag: guard }}\nroutes:\n  - {{ path: /guarded/*, upstream: \"{up}\", middleware: [guard] }}\n  - {{ path: /free/*, upstream: \"{up}\" }}\n"
        ),
    )
    .replace("plugins:\n  dir: plugins\n", plugins)
}

fn forwarded(up: &Echo, prefix: &str) -> usize {
    up.seen()
        .iter()
        .filter(|e| e["path"].as_str().unwrap_or("").starts_with(prefix))
        .count()
}

/// While the instance is retired: its requests are 503 and never forwarded, others are served,
/// `/ready` is 503 naming it, and status shows it retired with a reason containing `reason`.
async fn assert_retired(s: &Server, up: &Echo, admin: &str, reason: &str) -> String {
    let before = forwarded(up, "/guarded/");
    for k in 0..5 {
        let (code, h, body) = get(s, &format!("/guarded/r{k}"), Some(admin)).await;
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["error"], "Service Unavailable", "{body}");
        assert!(header(&h, "x-mw-ran").is_none());
    }
    assert_eq!(
        forwarded(up, "/guarded/"),
        before,
        "fail closed: never forwarded"
    );
    let (code, _, _) = get(s, "/free/x", Some(admin)).await;
    assert_eq!(
        code, 200,
        "requests the instance does not run for are served"
    );
    let st = admin_status(s, admin).await;
    let guard = mw_status(&st, "guard");
    let why = guard["retired"].as_str().unwrap_or_default().to_string();
    assert!(why.contains(reason), "retired because {reason}: {st}");
    assert!(guard["plugin_hash"].is_null(), "{st}");
    let (code, _, ready) = get(s, "/ready", None).await;
    assert_eq!(code, 503, "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    assert!(
        ready["problems"]
            .to_string()
            .contains("middleware guard is retired"),
        "{ready}"
    );
    why
}

async fn assert_guard_serves(s: &Server, admin: &str) {
    let (code, h, body) = get(s, "/guarded/ok", Some(admin)).await;
    assert_eq!(
        (code, header(&h, "x-mw-ran")),
        (200, Some("guard")),
        "{body}"
    );
    assert_eq!(body["headers"]["x-mw-order"], "guard", "{body}");
    let st = admin_status(s, admin).await;
    assert!(mw_status(&st, "guard")["retired"].is_null(), "{st}");
    let (code, _, ready) = get(s, "/ready", None).await;
    assert_eq!(code, 200, "{ready}");
}

#[tokio::test]
async fn a_deleted_middleware_plugin_retires_its_instance_and_comes_back() {
    let up = Echo::start().await;
    let s = Server::start(
        &guard_config(&up.url(), "plugins:\n  dir: plugins\n"),
        &[jwt_plugin(), plugin(PROBE)],
    );
    let admin = token("admin");
    assert_guard_serves(&s, &admin).await;
    let so = probe_so(&s);
    let bytes = std::fs::read(&so).unwrap();
    let g = generation(&s, &admin).await;
    std::fs::remove_file(&so).unwrap();
    let g = next_generation(&s, &admin, g).await;
    assert_eq!(
        admin_status(&s, &admin).await["last_attempt"]["result"],
        "applied",
        "a deleted middleware plugin retires its instance, it does not fail the reload"
    );
    let why = assert_retired(&s, &up, &admin, "was removed").await;
    assert!(why.contains(&format!("lib{PROBE}.so")), "{why}");
    // Back: a fresh instance serves.
    std::fs::write(&so, &bytes).unwrap();
    next_generation(&s, &admin, g).await;
    assert!(
        until(|| async { get(&s, "/guarded/back", Some(&admin)).await.0 == 200 }).await,
        "log:\n{}",
        s.log()
    );
    assert_guard_serves(&s, &admin).await;
}

#[tokio::test]
async fn a_middleware_plugin_taken_out_of_the_allow_list_is_retired_until_trusted_again() {
    let up = Echo::start().await;
    let jwt = portcullis::plugin::sha256_file(&jwt_plugin()).unwrap();
    let probe = portcullis::plugin::sha256_file(&plugin(PROBE)).unwrap();
    let allow = |hashes: &[&str], comment: &str| {
        format!(
            "plugins:\n  dir: plugins\n  allow: [{}] # {comment}\n",
            hashes
                .iter()
                .map(|h| format!("\"{h}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let s = Server::start(
        &guard_config(&up.url(), &allow(&[&jwt, &probe], "both")),
        &[jwt_plugin(), plugin(PROBE)],
    );
    let admin = token("admin");
    assert_guard_serves(&s, &admin).await;
    let g = generation(&s, &admin).await;
    write_by_rename(
        &s.config_path(),
        guard_config(&up.url(), &allow(&[&jwt], "probe distrusted")).as_bytes(),
    );
    let g = next_generation(&s, &admin, g).await;
    let why = assert_retired(&s, &up, &admin, "no longer in plugins.allow").await;
    assert!(why.contains(&probe), "the reason names the hash: {why}");
    // An unrelated reload keeps it retired, for the same reason.
    write_by_rename(
        &s.config_path(),
        guard_config(&up.url(), &allow(&[&jwt], "still distrusted")).as_bytes(),
    );
    let g = next_generation(&s, &admin, g).await;
    assert_eq!(assert_retired(&s, &up, &admin, &probe).await, why);
    // Trusted again: a fresh instance serves.
    write_by_rename(
        &s.config_path(),
        guard_config(&up.url(), &allow(&[&jwt, &probe], "trusted again")).as_bytes(),
    );
    next_generation(&s, &admin, g).await;
    assert_guard_serves(&s, &admin).await;
}

// ---------------------------------------------------------------------------------------------
// 5. A broken middleware config keeps the last good state.

#[tokio::test]
async fn a_broken_middleware_config_is_refused_and_the_last_good_limiter_keeps_its_state() {
    let up = Echo::start().await;
    let good = "{ rate: 0.001, burst: 2 }";
    let s = Server::start(
        &limiter_config(&up.url(), good, "", "", ""),
        &[jwt_plugin(), plugin(RATELIMIT)],
    );
    let admin = token("admin");
    let g = generation(&s, &admin).await;
    assert_limited_as(
        &s,
        "alice",
        &[(200, Some("1")), (200, Some("0")), (429, Some("0"))],
        "at start",
    )
    .await;
    let broken = [
        ("rate: 0", "{ rate: 0, burst: 2 }", "rate"),
        (
            "an unknown setting",
            "{ rate: 0.001, burst: 2, burts: 3 }",
            "burts",
        ),
    ];
    for (j, (what, limiter, needle)) in broken.into_iter().enumerate() {
        write_by_rename(
            &s.config_path(),
            limiter_config(&up.url(), limiter, "", "", "").as_bytes(),
        );
        assert!(
            until(|| async {
                let st = admin_status(&s, &admin).await;
                let errors = st["last_attempt"]["errors"].to_string();
                st["last_attempt"]["result"] == "failed"
                    && errors.contains("middleware[0]")
                    && errors.contains(needle)
            })
            .await,
            "{what}: no refused reload naming middleware[0] and {needle}; status {}\nlog:\n{}",
            admin_status(&s, &admin).await,
            s.log()
        );
        assert_eq!(generation(&s, &admin).await, g, "{what}: nothing applied");
        // The old instance serves, with its state and its config (burst 2).
        assert_limited_as(&s, "alice", &[(429, Some("0"))], what).await;
        let other = format!("bob{j}");
        let (code, h, _) = get(&s, &format!("/rl/{other}"), Some(&token(&other))).await;
        assert_eq!(code, 200, "{what}");
        assert_eq!(header(&h, "ratelimit-limit"), Some("2"), "{what}");
    }
    // A good config again (with an unrelated change, so that it is a reload): the instance the
    // server kept serving is kept, with its buckets.
    write_by_rename(
        &s.config_path(),
        limiter_config(
            &up.url(),
            good,
            "",
            "    - path: /nowhere/*\n      allow: false\n",
            "",
        )
        .as_bytes(),
    );
    next_generation(&s, &admin, g).await;
    assert_eq!(
        admin_status(&s, &admin).await["last_attempt"]["result"],
        "applied"
    );
    assert_limited_as(&s, "alice", &[(429, Some("0"))], "after the fix").await;
    assert_limited_as(
        &s,
        "bob0",
        &[(200, Some("0")), (429, Some("0"))],
        "after the fix",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. A hanging middleware.

/// 5 waves of 16 concurrent requests to a middleware that never answers, with
/// `plugin_timeout: 2s` and `plugin_max_in_flight: 64`: every one is 503 once its call times
/// out (not before), and since the timed-out calls give their in-flight slots back, all 80 time
/// out rather than being turned away at the limit. Meanwhile clients on another path (another
/// instance) are answered 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_middleware_costs_its_requests_not_the_server() {
    const WAVES: usize = 5;
    const PER_WAVE: usize = 16;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let up = Echo::start().await;
    let cfg = config(
        "  plugin_timeout: 2s\n  plugin_max_in_flight: 64\n",
        "",
        &format!(
            "middleware:\n  - name: stuck\n    plugin: mw-probe\n    config: {{ tag: stuck, mode: hang }}\n  - name: fine\n    plugin: mw-probe\n    config: {{ tag: fine }}\nroutes:\n  - {{ path: /stuck/*, upstream: \"{up}\", middleware: [stuck] }}\n  - {{ path: /fine/*, upstream: \"{up}\", middleware: [fine] }}\n",
            up = up.url()
        ),
    );
    let s = Server::start(&cfg, &[jwt_plugin(), plugin(PROBE)]);
    let user = token("user");
    let (code, h, _) = get(&s, "/fine/x", Some(&user)).await;
    assert_eq!((code, header(&h, "x-mw-ran")), (200, Some("fine")));

    // Clients on the other path, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let fine_ok = Arc::new(AtomicU64::new(0));
    let fine_bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let fine_tasks: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, bad) = (stop.clone(), fine_ok.clone(), fine_bad.clone());
            let (url, t) = (s.url(&format!("/fine/c{i}")), user.clone());
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    match c.get(&url).bearer_auth(&t).send().await {
                        Ok(r)
                            if r.status() == 200
                                && header(r.headers(), "x-mw-ran") == Some("fine") =>
                        {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => bad.lock().unwrap().push(format!("status {}", r.status())),
                        Err(e) => bad.lock().unwrap().push(format!("request failed: {e}")),
                    }
                }
            })
        })
        .collect();

    let mut served_during_waves = 0u64;
    for wave in 0..WAVES {
        let hung: Vec<_> = (0..PER_WAVE)
            .map(|k| {
                let (url, t) = (s.url(&format!("/stuck/w{wave}/{k}")), user.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let r = client().get(&url).bearer_auth(&t).send().await.unwrap();
                    let code = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (code, body, started.elapsed())
                })
            })
            .collect();
        // While the wave hangs, the other path answers.
        let at_start = fine_ok.load(Ordering::Relaxed);
        while hung.iter().all(|h| !h.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served_during_waves += fine_ok.load(Ordering::Relaxed) - at_start;
        for h in hung {
            let (code, body, took) = h.await.unwrap();
            assert_eq!(code, 503, "wave {wave}: {body}");
            assert_eq!(body["error"], "Service Unavailable", "{body}");
            assert!(
                took >= TIMEOUT - Duration::from_millis(100),
                "wave {wave}: answered after {took:?}, before the time limit: not a timeout"
            );
            assert!(
                took < Duration::from_secs(15),
                "wave {wave}: a hung middleware held a request for {took:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in fine_tasks {
        t.await.unwrap();
    }
    let bad = fine_bad.lock().unwrap().clone();
    let ok = fine_ok.load(Ordering::Relaxed);
    eprintln!(
        "hanging middleware: {} requests timed out; other path: {ok} answered 200 ({served_during_waves} while a wave hung), {} bad",
        WAVES * PER_WAVE,
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "the other path failed: {:?}",
        &bad[..bad.len().min(5)]
    );
    assert!(
        served_during_waves >= WAVES as u64,
        "the other path was answered while requests hung ({served_during_waves})"
    );
    // Nothing reached the upstream behind the hung middleware.
    assert_eq!(forwarded(&up, "/stuck/"), 0);
    // Every hung call timed out (none was turned away at the in-flight limit: the slots of the
    // dropped calls came back).
    let want = WAVES * PER_WAVE;
    assert!(
        until(|| async {
            s.log()
                .matches("middleware failed: plugin call did not finish within 2s")
                .count()
                >= want
        })
        .await,
        "log:\n{}",
        s.log()
    );
    let log = s.log();
    assert_eq!(
        log.matches("middleware failed: plugin call did not finish within 2s")
            .count(),
        want,
        "log:\n{log}"
    );
    assert!(
        !log.contains("too many plugin calls in flight"),
        "log:\n{log}"
    );
    // And the server is still fine.
    let (code, h, _) = get(&s, "/fine/after", Some(&user)).await;
    assert_eq!((code, header(&h, "x-mw-ran")), (200, Some("fine")));
}
