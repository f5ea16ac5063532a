#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Slow and large clients: a Slowloris client (headers a byte at a time) and idle connections
//! are cut off after `server.header_read_timeout`, a body over the limit is 413, and meanwhile
//! everyone else is answered.

use std::time::{Duration, Instant};

use portcullis_tests::*;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn start() -> Server {
    let cfg = jwt_config("").replace(
        "  port: 0\n",
        "  port: 0\n  header_read_timeout: 1s\n  body_size_limit: 1kb\n",
    );
    Server::start(&cfg, &[jwt_plugin()])
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer (e.g. 408) before the close is fine
        }
    }
}

#[tokio::test]
async fn slowloris_is_cut_off_and_others_are_served_meanwhile() {
    let s = start();
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let drip = async {
        // The request line and then one header byte every 100 ms, for as long as it is accepted.
        if slow.write_all(b"GET /health HTTP/1.1\r\n").await.is_err() {
            return Instant::now();
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for b in b"X-Slow: ".iter().chain(std::iter::repeat(&b'a')).take(600) {
            tick.tick().await;
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            let mut probe = [0u8; 1];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::ZERO, slow.peek(&mut probe)).await {
                break;
            }
        }
        Instant::now()
    };
    let others = async {
        let c = client();
        for _ in 0..10 {
            let r = c.get(s.url("/health")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let (cut_at, ()) = tokio::join!(drip, others);
    let held = cut_at.duration_since(started);
    assert!(
        held < Duration::from_secs(10),
        "a slow client held its connection for {held:?} (limit 1 s)"
    );
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn many_idle_connections_do_not_stop_others_and_are_closed() {
    let s = start();
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        if i % 2 == 0 {
            // Half send a partial request and stop.
            c.write_all(b"GET /api/auth/me HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(c);
    }
    let c = client();
    let t = hs256(SECRET, good_claims("ann", json!({})));
    for _ in 0..20 {
        assert_eq!(
            c.get(s.url("/api/auth/me"))
                .bearer_auth(&t)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Each idle connection is closed by the server (header read timeout: 1 s).
    for (i, conn) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(15)).await,
            "idle connection {i} still open"
        );
    }
    // A keep-alive connection that went quiet after its answer is closed the same way.
    let mut ka = TcpStream::connect(s.addr).await.unwrap();
    ka.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut ka, Duration::from_secs(15)).await);
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_not_and_the_server_keeps_serving() {
    let s = start();
    let t = hs256(SECRET, good_claims("ann", json!({})));
    // Declared length over the limit: refused before the body is read.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        format!("POST /api/admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 50000000\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("Request body too large"));
    // A header block bigger than any sane one is refused too, and does not hang.
    let big = format!("/health?{}", "a".repeat(200_000));
    let code = raw_status(s.addr, &big, &[]).await;
    assert!(
        code == 414 || code == 431 || code == 400 || code == 0,
        "{code}"
    );
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
