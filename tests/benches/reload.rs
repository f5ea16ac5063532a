#![allow(clippy::unwrap_used)]
//! Reload benchmark (not a test): how long from a config file being written to the first request
//! answered under the new config, over 100 changes, and how the server's resident memory grows
//! across 50 plugin swaps (each a new plugin content, so each is a new library mapping: the
//! worst case). Run by `bench/reload.sh`, which builds the release binaries first.

use std::time::{Duration, Instant};

use portcullis_tests::*;
use serde_json::json;

fn config(k: usize) -> String {
    let rule = if k % 2 == 1 {
        "    - path: /api/auth/me\n      allow: false\n"
    } else {
        ""
    };
    format!(
        "# change {k}\nversion: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: main\n    plugin: jwt\n    config:\n      secret: \"{SECRET}\"\n      issuer: [\"https://issuer.test\"]\n      audience: [\"api\"]\n  - name: f\n    plugin: faulty\n    config: {{ mode: ok }}\nauth:\n  protected: [\"/api/*\"]\n  rules:\n{rule}    - path: /api/*\n      allow: true\n"
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn status(c: &reqwest::Client, url: &str, token: &str) -> u16 {
    c.get(url)
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let changes: usize = std::env::var("CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let swaps: usize = std::env::var("SWAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let s = Server::start(
        &config(0),
        &[jwt_plugin(), plugin("portcullis_test_faulty")],
    );
    let c = client();
    let me = s.url("/api/auth/me");
    let token = hs256(SECRET, good_claims("bench", json!({})));

    let mut latencies = Vec::with_capacity(changes);
    for k in 1..=changes {
        let want = if k % 2 == 1 { 403 } else { 200 };
        std::fs::write(s.config_path(), config(k)).unwrap();
        let t0 = Instant::now();
        while status(&c, &me, &token).await != want {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "change {k} not applied"
            );
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "reload latency over {changes} changes (file written -> first answer under the new config): median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );

    let so = s.plugins_dir().join("libportcullis_test_faulty.so");
    let rss_before = rss_kib(s.pid());
    for i in 0..swaps {
        let flavor = format!("S{i:04}");
        std::fs::write(&so, flavored_plugin(&flavor)).unwrap();
        let t0 = Instant::now();
        loop {
            let r = c.get(&me).bearer_auth("good-bench").send().await;
            if let Ok(r) = r {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v["user"]["flavor"] == flavor.as_str() {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "swap {i} not applied"
            );
        }
    }
    let rss_after = rss_kib(s.pid());
    let growth = rss_after.saturating_sub(rss_before);
    println!(
        "RSS across {swaps} plugin swaps (each a new library mapping): {rss_before} KiB -> {rss_after} KiB, {:.0} KiB per swap",
        growth as f64 / swaps as f64
    );
}
