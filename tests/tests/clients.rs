#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Slow and large clients: a Slowloris client (headers a byte at a time, after blank lines or
//! not) and idle connections, HTTP/1 or HTTP/2, are cut off after `server.header_read_timeout`, a
//! body over the limit is 413 (or cut off, declared or not, HTTP/2 included), and meanwhile
//! everyone else is answered.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use portcullis_tests::{echo::Echo, *};
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

/// Writes `first`, then a header one byte every 100 ms, for as long as the server keeps the
/// connection; returns when it stopped accepting them.
async fn drip(slow: &mut TcpStream, first: &[u8]) -> Instant {
    if slow.write_all(first).await.is_err() {
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
}

/// Ten `/health` requests from an ordinary client, each answered.
async fn others_are_served(s: &Server) {
    let c = client();
    for _ in 0..10 {
        assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn leading_blank_lines_do_not_disarm_the_header_deadline() {
    let s = start();
    // Blank lines first (which a server may skip), then a request a byte at a time.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    let (cut_at, ()) = tokio::join!(
        drip(&mut slow, b"\r\n\r\nGET /health HTTP/1.1\r\n"),
        others_are_served(&s)
    );
    let held = cut_at.duration_since(started);
    assert!(
        held < Duration::from_secs(10),
        "a slow client after blank lines held its connection for {held:?} (limit 1 s)"
    );
    // The same on a keep-alive connection: blank lines after an answer, then a slow request.
    let mut ka = TcpStream::connect(s.addr).await.unwrap();
    ka.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), ka.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let (cut_at, ()) = tokio::join!(
        drip(&mut ka, b"\r\n\r\n\r\nGET /health HTTP/1.1\r\n"),
        others_are_served(&s)
    );
    let held = cut_at.duration_since(started);
    assert!(
        held < Duration::from_secs(10),
        "blank lines after an answer let a slow request hold its connection for {held:?}"
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

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn an_http2_preface_then_silence_is_closed() {
    let s = start();
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(H2_PREFACE).await.unwrap();
    assert!(
        closed_within(&mut c, Duration::from_secs(10)).await,
        "an HTTP/2 preface and then nothing held its connection (limit 1 s)"
    );
    others_are_served(&s).await;
}

/// An HTTP/2 connection (prior knowledge, as over TLS with ALPN `h2`): the handle to send
/// requests, and the connection's task, which ends with the time the connection ended.
async fn h2_connect(
    addr: SocketAddr,
    ping_every: Option<Duration>,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Instant>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, mut conn) = h2::client::handshake(tcp).await.unwrap();
    let pinger = ping_every.and_then(|every| {
        let mut pp = conn.ping_pong()?;
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if pp.ping(h2::Ping::opaque()).await.is_err() {
                    break;
                }
            }
        }))
    });
    let done = tokio::spawn(async move {
        let _ = conn.await;
        if let Some(p) = pinger {
            p.abort();
        }
        Instant::now()
    });
    (send, done)
}

#[tokio::test]
async fn an_http2_client_that_opens_no_stream_is_closed_even_while_it_pings() {
    let s = start();
    for ping in [None, Some(Duration::from_millis(200))] {
        let started = Instant::now();
        // `send` is held: a client that drops it closes the connection itself.
        let (send, done) = h2_connect(s.addr, ping).await;
        let ended = tokio::time::timeout(Duration::from_secs(10), done).await;
        assert!(
            ended.is_ok(),
            "an HTTP/2 connection without a stream was held (pinging: {})",
            ping.is_some()
        );
        drop(send);
        assert!(started.elapsed() >= Duration::from_millis(500));
    }
    others_are_served(&s).await;
}

/// An upstream that counts what reaches it: the most body bytes any request delivered (counted as
/// they arrive, so a request cut off midway counts too); it answers with the count.
struct Recorder {
    addr: SocketAddr,
    most: Arc<AtomicUsize>,
    _server: mock::MockServer,
}

impl Recorder {
    async fn start() -> Recorder {
        use futures_util::StreamExt as _;
        let most = Arc::new(AtomicUsize::new(0));
        let seen = most.clone();
        let app = poem::endpoint::make(move |mut req: poem::Request| {
            let seen = seen.clone();
            async move {
                let mut body = req.take_body().into_bytes_stream();
                let mut n = 0;
                while let Some(Ok(chunk)) = body.next().await {
                    n += chunk.len();
                    seen.fetch_max(n, Ordering::SeqCst);
                }
                poem::Response::builder().body(n.to_string())
            }
        });
        let server = mock::MockServer::serve(app).await;
        Recorder {
            addr: server.addr,
            most,
            _server: server,
        }
    }
}

/// The server of [`start`] with two routes: `/slow` to an upstream that never answers (given up
/// after 3 s, three times the header-read timeout) and `/upload` to a [`Recorder`].
async fn start_with_routes() -> (Server, Echo, Recorder) {
    let echo = Echo::start().await;
    let rec = Recorder::start().await;
    let cfg = jwt_config("").replace(
        "  port: 0\n",
        "  port: 0\n  header_read_timeout: 1s\n  body_size_limit: 1kb\n",
    ) + &format!(
        "routes:\n  - {{ path: /slow, requires_auth: false, upstream: \"{}\", timeout: 3s }}\n  - {{ path: /upload, requires_auth: false, upstream: \"http://{}\" }}\n",
        echo.url(),
        rec.addr
    );
    (Server::start(&cfg, &[jwt_plugin()]), echo, rec)
}

/// Sends an HTTP/2 request (no `content-length`; `body` in DATA frames of 256 bytes) and returns
/// the answer's status and body, or the stream's error.
async fn h2_send(
    send: &h2::client::SendRequest<bytes::Bytes>,
    method: &str,
    url: &str,
    body: usize,
) -> Result<(u16, Vec<u8>), h2::Error> {
    let req = poem::http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .unwrap();
    let (resp, mut out) = send.clone().ready().await?.send_request(req, body == 0)?;
    let mut left = body;
    while left > 0 {
        let k = left.min(256);
        left -= k;
        // A stream the server has reset refuses more data; the answer says why.
        if out
            .send_data(bytes::Bytes::from(vec![b'x'; k]), left == 0)
            .is_err()
        {
            break;
        }
    }
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut rb = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = rb.data().await {
        let chunk = chunk?;
        let _ = rb.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((status, data))
}

#[tokio::test]
async fn an_http2_request_slow_to_answer_is_not_cut_and_the_idle_connection_is_closed_after() {
    let (s, _echo, _rec) = start_with_routes().await;
    let (send, done) = h2_connect(s.addr, None).await;
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(20),
        h2_send(&send, "GET", &s.url("/slow"), 0),
    )
    .await
    .unwrap()
    .unwrap();
    // The route's own timeout answered, after three times the header-read timeout.
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(started.elapsed() >= Duration::from_millis(2900));
    // With its only stream over, the connection is idle and closed like any other.
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), done).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection was held");
    assert!(ended.unwrap().unwrap().duration_since(idle_from) >= Duration::from_millis(500));
    drop(send);
}

#[tokio::test]
async fn an_http2_body_without_a_length_obeys_the_body_limit() {
    let (s, _echo, rec) = start_with_routes().await;
    let (send, _done) = h2_connect(s.addr, None).await;
    // 8 KiB without `content-length`, limit 1 KiB: refused or cut off, and the upstream never
    // gets more than the limit.
    let over = tokio::time::timeout(
        Duration::from_secs(20),
        h2_send(&send, "POST", &s.url("/upload"), 8192),
    )
    .await
    .unwrap();
    match &over {
        Ok((status, _)) => assert_eq!(*status, 413, "a body over the limit"),
        Err(e) => assert!(e.is_reset() || e.is_io(), "{e}"),
    }
    assert!(
        rec.most.load(Ordering::SeqCst) <= 1024,
        "the upstream received {} bytes (limit 1024)",
        rec.most.load(Ordering::SeqCst)
    );
    // Under the limit: forwarded whole.
    let (send, _done) = h2_connect(s.addr, None).await;
    let (status, body) = h2_send(&send, "POST", &s.url("/upload"), 600)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"600");
}
