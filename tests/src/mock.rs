//! The mock-server toolkit every local HTTP server of the tests is built on.
//!
//! - [`MockServer`] binds `127.0.0.1:0` and serves on that very listener: no port is let go and
//!   taken again, so no other test can take it in between. It serves a poem endpoint
//!   ([`MockServer::serve`]) or a plain handler of [`MockRequest`] → [`Reply`]
//!   ([`MockServer::start`]: one request per connection, `Connection: close`, so no pooled
//!   connection outlives a change of behaviour).
//! - [`Fault`] is the one model of an identity provider misbehaving, for every mock.
//! - [`refused_port`] is an address nothing listens on, held so that nothing can start to.
//! - [`Gate`] is an endpoint whose first call waits until the test releases it.
//!
//! Two servers stay raw TCP (on listeners they keep), because what they test is below HTTP:
//! `forge::Canary` counts connections, and `tests/idp_faults.rs` refuses connections before
//! reading them and streams a 50 MB body.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::{uri::Scheme, StatusCode},
    listener::{Acceptor, TcpAcceptor},
    web::{LocalAddr, RemoteAddr},
    Endpoint, EndpointExt as _, IntoEndpoint, IntoResponse as _, Response,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct MockRequest {
    /// Method.
    pub method: String,
    /// Path, percent-encoded as sent.
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
}

impl MockRequest {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A response.
    Respond {
        /// Status.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Close the connection without answering (as if the provider were down).
    Close,
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// The answer as a [`MockServer`] sends it, after any delay. [`Reply::Close`] is a response
    /// that the server does not send: it drops the connection instead.
    pub async fn respond(mut self) -> Response {
        loop {
            match self {
                Reply::Delay(d, next) => {
                    tokio::time::sleep(d).await;
                    self = *next;
                }
                Reply::Close => return Response::builder().extension(HangUp).finish(),
                Reply::Respond {
                    status,
                    headers,
                    body,
                } => {
                    let mut r = Response::builder()
                        .status(StatusCode::from_u16(status).expect("a valid status code"));
                    for (k, v) in headers {
                        r = r.header(k, v);
                    }
                    return r.body(body);
                }
            }
        }
    }

    /// Adds a header.
    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Respond {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Reply::Respond {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
}

/// Ways an identity provider misbehaves (SECURITY.md, "The identity provider misbehaving"): the
/// one fault model of every mock. A mock keeps an `Option<Fault>` per endpoint; `None` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Connections are dropped without an answer.
    Down,
    /// Answers come after 60 s.
    Slow,
    /// `500` with a JSON error body.
    ServerError,
    /// `200` with an HTML page (a captive portal, a misrouted proxy).
    Html,
    /// A key set with no keys (JWKS endpoints), an empty object elsewhere.
    Empty,
    /// A 5 MB body.
    Huge,
}

/// Every fault, for test matrices.
pub const FAULTS: [Fault; 6] = [
    Fault::Down,
    Fault::Slow,
    Fault::ServerError,
    Fault::Html,
    Fault::Empty,
    Fault::Huge,
];

impl Fault {
    /// The reply for this fault; `empty` is the endpoint's empty document.
    pub fn reply(self, empty: serde_json::Value) -> Reply {
        match self {
            Fault::Down => Reply::Close,
            Fault::Slow => {
                Reply::Delay(Duration::from_secs(60), Box::new(Reply::json(200, &empty)))
            }
            Fault::ServerError => Reply::json(500, &serde_json::json!({"message": "internal"})),
            Fault::Html => Reply::Respond {
                status: 200,
                headers: vec![("content-type".into(), "text/html".into())],
                body: b"<!doctype html><html><body>Sign in to the Wi-Fi</body></html>".to_vec(),
            },
            Fault::Empty => Reply::json(200, &empty),
            Fault::Huge => {
                let mut body = b"{\"keys\":[],\"data\":[\"".to_vec();
                body.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
                body.extend_from_slice(b"\"]}");
                Reply::Respond {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body,
                }
            }
        }
    }
}

/// Counts of requests per endpoint name.
#[derive(Default, Clone)]
pub struct Hits(Arc<Mutex<HashMap<String, u64>>>);

impl Hits {
    /// One more for `endpoint`.
    pub fn add(&self, endpoint: &str) {
        *self
            .0
            .lock()
            .expect("hits")
            .entry(endpoint.into())
            .or_default() += 1;
    }

    /// Requests to `endpoint` so far.
    pub fn get(&self, endpoint: &str) -> u64 {
        self.0
            .lock()
            .expect("hits")
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }
}

/// A running local server on `127.0.0.1`, stopped when dropped.
pub struct MockServer {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    /// Serves `app` on a fresh port of `127.0.0.1`, on the listener that took the port. A response
    /// made by [`Reply::respond`] from [`Reply::Close`] is not sent: its connection is dropped.
    pub async fn serve<E>(app: E) -> MockServer
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a mock server");
        let addr = listener.local_addr().expect("mock server address");
        let hang_ups = HangUps::default();
        let acceptor = HangUpAcceptor {
            inner: TcpAcceptor::from_tokio(listener).expect("mock server acceptor"),
            hang_ups: hang_ups.clone(),
        };
        let app = app.into_endpoint().around(move |ep, req| {
            let hang_ups = hang_ups.clone();
            async move {
                let client = req.remote_addr().as_socket_addr().copied();
                let response = ep.call(req).await?.into_response();
                if let (Some(client), Some(HangUp)) = (client, response.extensions().get()) {
                    hang_ups.0.lock().expect("hang-ups").insert(client);
                }
                Ok(response)
            }
        });
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        MockServer {
            base: format!("http://{addr}"),
            addr,
            task,
        }
    }

    /// Serves `handler`, one request per connection (`Connection: close`).
    pub async fn start(handler: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static) -> Self {
        let handler = Arc::new(handler);
        MockServer::serve(poem::endpoint::make(move |req: poem::Request| {
            let reply = handler(&MockRequest::of(&req));
            async move {
                let mut response = reply.respond().await;
                response
                    .headers_mut()
                    .insert("connection", poem::http::HeaderValue::from_static("close"));
                response
            }
        }))
        .await
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The mark of a response that is not to be sent ([`Reply::Close`]).
#[derive(Clone, Copy)]
struct HangUp;

/// Clients whose connection a [`MockServer`] drops instead of writing its answer.
#[derive(Clone, Default)]
struct HangUps(Arc<Mutex<HashSet<SocketAddr>>>);

/// Accepts TCP connections whose writes fail, with nothing written, once their client is in
/// [`HangUps`]: the server then drops the connection without an answer.
struct HangUpAcceptor {
    inner: TcpAcceptor,
    hang_ups: HangUps,
}

impl Acceptor for HangUpAcceptor {
    type Io = HangUpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(HangUpStream, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let stream = HangUpStream {
            io,
            client: remote.as_socket_addr().copied(),
            hang_ups: self.hang_ups.clone(),
        };
        Ok((stream, local, remote, scheme))
    }
}

/// One accepted connection of a [`HangUpAcceptor`].
struct HangUpStream {
    io: tokio::net::TcpStream,
    client: Option<SocketAddr>,
    hang_ups: HangUps,
}

impl HangUpStream {
    fn hung_up(&self) -> bool {
        self.client
            .is_some_and(|c| self.hang_ups.0.lock().expect("hang-ups").contains(&c))
    }
}

impl Drop for HangUpStream {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            self.hang_ups.0.lock().expect("hang-ups").remove(&client);
        }
    }
}

impl AsyncRead for HangUpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for HangUpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.hung_up() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl MockRequest {
    fn of(req: &poem::Request) -> MockRequest {
        let query = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
                (k.as_str().to_string(), v)
            })
            .collect();
        MockRequest {
            method: req.method().as_str().to_string(),
            path: req.uri().path().to_string(),
            query,
            headers,
        }
    }
}

/// An address on 127.0.0.1 where connections are refused: a socket is bound to the port but
/// never listens. Held, it keeps the port from being taken by anything else (a port merely found
/// free could be, before the test uses it).
pub struct RefusedPort {
    /// The address.
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

/// A fresh [`RefusedPort`].
pub fn refused_port() -> RefusedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind a port nothing listens on");
    RefusedPort {
        addr: socket.local_addr().expect("its address"),
        _socket: socket,
    }
}

/// A local endpoint (`GET {url}`) whose first call waits until released; later calls answer at
/// once. For "a request in flight" tests: a plugin calls it, and the test holds the request there.
pub struct Gate {
    /// The endpoint.
    pub url: String,
    /// Sending on it lets the first call answer.
    pub release: tokio::sync::oneshot::Sender<()>,
    /// Set when the first call has arrived.
    pub entered: Arc<AtomicBool>,
    _server: MockServer,
}

impl Gate {
    /// Starts it; the path is `/slow`.
    pub async fn start() -> Gate {
        type Held = (
            Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
            Arc<AtomicBool>,
        );
        #[poem::handler]
        async fn slow(poem::web::Data(held): poem::web::Data<&Held>) -> &'static str {
            // Taken in a statement of its own: the lock is released before the wait, so later
            // calls answer while the first is held.
            let first = held.0.lock().await.take();
            if let Some(rx) = first {
                held.1.store(true, Ordering::SeqCst);
                let _ = rx.await;
            }
            "ok"
        }
        let (release, rx) = tokio::sync::oneshot::channel();
        let entered = Arc::new(AtomicBool::new(false));
        let held: Held = (Arc::new(tokio::sync::Mutex::new(Some(rx))), entered.clone());
        let app = poem::EndpointExt::data(poem::Route::new().at("/slow", poem::get(slow)), held);
        let server = MockServer::serve(app).await;
        Gate {
            url: server.url("/slow"),
            release,
            entered,
            _server: server,
        }
    }
}

/// Percent-decodes (and reads `+` as a space, as in a query).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JWKS document `{"keys": [...]}`.
pub fn jwks(keys: &[serde_json::Value]) -> serde_json::Value {
    serde_json::json!({ "keys": keys })
}

/// `GET path` on the server with a bearer token: the status and how long the answer took.
pub async fn get_with_token(
    s: &crate::Server,
    path: &str,
    token: &str,
) -> (u16, std::time::Duration) {
    let started = std::time::Instant::now();
    let status = crate::client()
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// `GET path` on the server with a bearer token: the status and the JSON body (`null` when the
/// body is not JSON, status 0 when no answer came).
pub async fn get_json_with_token(
    s: &crate::Server,
    path: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    match crate::client()
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(serde_json::Value::Null))
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// `GET path` with each of `tokens`, all at once: the statuses in the tokens' order (0 when no
/// answer came). For the "concurrent first requests share one fetch" tests.
pub async fn storm(s: &crate::Server, path: &str, tokens: Vec<String>) -> Vec<u16> {
    let url = s.url(path);
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let url = url.clone();
            tokio::spawn(async move {
                crate::client()
                    .get(url)
                    .bearer_auth(t)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or(0));
    }
    out
}

/// The longest a request may take when the identity provider misbehaves: the tests' configs set
/// `server.plugin_timeout: 2s`, and the answer must come within it (plus scheduling slack).
pub const FAIL_CLOSED_WITHIN: Duration = Duration::from_secs(6);

/// An unsigned token (`alg` as given) carrying `claims`.
pub fn unsigned(alg: &str, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.",
        crate::b64(
            serde_json::json!({"alg": alg, "typ": "JWT"})
                .to_string()
                .as_bytes()
        ),
        crate::b64(claims.to_string().as_bytes())
    )
}

/// Every rejection class of SECURITY.md "Tokens" that applies to a JWKS provider gets 401 on
/// `path`, and the next good token still gets `good_status`.
pub async fn assert_token_rejections(
    s: &crate::Server,
    path: &str,
    key: &crate::RsaKey,
    good: &serde_json::Value,
    good_status: u16,
) {
    let now = crate::now();
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = "https://evil.example/".into();
    cases.push(("wrong iss", key.sign(&wrong_iss)));
    let mut expired = good.clone();
    expired["iat"] = (now - 7200).into();
    expired["exp"] = (now - 3600).into();
    cases.push(("expired", key.sign(&expired)));
    let mut no_exp = good.clone();
    if let Some(m) = no_exp.as_object_mut() {
        m.remove("exp");
    }
    cases.push(("no exp", key.sign(&no_exp)));
    let mut not_yet = good.clone();
    not_yet["nbf"] = (now + 3600).into();
    cases.push(("nbf in the future", key.sign(&not_yet)));
    let stranger = crate::RsaKey::generate(&key.kid);
    cases.push(("bad signature (same kid, other key)", stranger.sign(good)));
    let mut tampered: Vec<String> = key.sign(good).split('.').map(str::to_string).collect();
    let mut evil = good.clone();
    evil["sub"] = "someone_else".into();
    tampered[1] = crate::b64(evil.to_string().as_bytes());
    cases.push(("tampered payload", tampered.join(".")));
    for alg in ["none", "None", "NONE", "nOnE"] {
        cases.push(("alg none", unsigned(alg, good)));
    }
    cases.push((
        "HS256 signed with the public key",
        crate::hs256(&key.pem, good.clone()),
    ));
    cases.push((
        "unknown kid",
        key.sign_with_kid("kid-nobody-published", good),
    ));
    cases.push(("garbage", "not.a.jwt".into()));
    for (what, token) in cases {
        let (status, took) = get_with_token(s, path, &token).await;
        assert_eq!(status, 401, "{what}: expected 401");
        assert!(took < FAIL_CLOSED_WITHIN, "{what}: took {took:?}");
    }
    let (status, _) = get_with_token(s, path, &key.sign(good)).await;
    assert_eq!(status, good_status, "the good token after the rejections");
}

/// A new `kid` is picked up without a restart, and a storm of unknown `kid`s costs at most one
/// more key-set fetch.
pub async fn assert_rotation_and_storm(
    s: &crate::Server,
    path: &str,
    k1: &crate::RsaKey,
    claims: impl Fn(&str) -> serde_json::Value,
    set_keys: impl Fn(Vec<serde_json::Value>),
    jwks_hits: impl Fn() -> u64,
) {
    assert_eq!(
        get_with_token(s, path, &k1.sign(&claims("user_a"))).await.0,
        200
    );
    let before = jwks_hits();
    assert_eq!(
        get_with_token(s, path, &k1.sign(&claims("user_a"))).await.0,
        200
    );
    assert_eq!(jwks_hits(), before, "cached keys were fetched again");
    let k2 = crate::RsaKey::generate("kid-rotated");
    set_keys(vec![k1.jwk.clone(), k2.jwk.clone()]);
    assert_eq!(
        get_with_token(s, path, &k2.sign(&claims("user_a"))).await.0,
        200
    );
    assert_eq!(jwks_hits(), before + 1, "rotation: one refetch");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let token = k1.sign_with_kid(&format!("storm-{i}"), &claims("user_a"));
        let url = s.url(path);
        tasks.push(tokio::spawn(async move {
            crate::client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 401);
    }
    assert!(
        jwks_hits() <= before + 2,
        "an unknown-kid storm caused {} fetches",
        jwks_hits() - before - 1
    );
    assert_eq!(
        get_with_token(s, path, &k2.sign(&claims("user_a"))).await.0,
        200
    );
}

/// Sends `token` until `done()` holds (each answer must be `status`), up to `timeout`.
pub async fn until(
    s: &crate::Server,
    path: &str,
    token: &str,
    status: u16,
    timeout: Duration,
    done: impl Fn() -> bool,
) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        assert_eq!(get_with_token(s, path, token).await.0, status);
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// What a raw HTTP/1.1 client receives for one request.
    async fn raw_answer(server: &MockServer) -> String {
        let mut s = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        s.write_all(b"GET /x HTTP/1.1\r\nhost: mock\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the mock kept the connection open");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_closed_connection_carries_no_answer_at_all() {
        let server = MockServer::start(|_| Fault::Down.reply(serde_json::json!({}))).await;
        assert_eq!(raw_answer(&server).await, "");
    }

    #[tokio::test]
    async fn a_reply_closes_its_connection_after_the_answer() {
        let server = MockServer::start(|req| {
            Reply::json(200, &serde_json::json!({"path": req.path})).with_header("x-mock", "1")
        })
        .await;
        let answer = raw_answer(&server).await.to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200 ok\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.contains("x-mock: 1\r\n"), "{answer}");
        assert!(answer.ends_with(r#"{"path":"/x"}"#), "{answer}");
    }

    #[tokio::test]
    async fn a_refused_port_refuses() {
        let port = refused_port();
        assert!(tokio::net::TcpStream::connect(port.addr).await.is_err());
    }
}
