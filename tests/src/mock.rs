//! The common part of the identity-provider mocks: a small HTTP/1.1 server on `127.0.0.1:0` that
//! answers one request per connection (`Connection: close`, so no pooled connection outlives a
//! change of behaviour), counts requests per endpoint, and can misbehave on demand.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Ways an identity provider misbehaves (SECURITY.md, "The identity provider misbehaving").
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

type Handler = Arc<dyn Fn(&MockRequest) -> Reply + Send + Sync>;

/// A running mock server.
pub struct MockServer {
    /// `http://127.0.0.1:port`.
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockServer {
    /// Serves `handler` on a fresh port.
    pub async fn start(handler: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, handler).await;
                });
            }
        });
        MockServer {
            base: format!("http://{addr}"),
            task,
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

async fn serve(mut stream: tokio::net::TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let req = MockRequest {
        method,
        path: path.to_string(),
        query,
        headers,
    };
    let mut reply = handler(&req);
    loop {
        match reply {
            Reply::Close => return Ok(()),
            Reply::Delay(d, next) => {
                tokio::time::sleep(d).await;
                reply = *next;
            }
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&body).await?;
                stream.shutdown().await?;
                return Ok(());
            }
        }
    }
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
