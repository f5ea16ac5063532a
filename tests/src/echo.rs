//! A local upstream for route and forward-auth tests: answers every request with a JSON echo of
//! what reached it (method, path, query, headers, body length and SHA-256, and the connection it
//! came on). `/slow*` never answers (for timeout tests); a request with `x-echo-close` is answered
//! with `Connection: close`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use poem::{http::StatusCode, Body, Request, Response};

use crate::mock::MockServer;

/// A running echo upstream.
pub struct Echo {
    /// Its address.
    pub addr: SocketAddr,
    _server: MockServer,
    seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Echo {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Echo {
        let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let record = seen.clone();
        let app = poem::endpoint::make(move |mut req: Request| {
            let record = record.clone();
            async move {
                if req.uri().path().starts_with("/slow") {
                    std::future::pending::<()>().await;
                }
                let body = req.take_body().into_vec().await.unwrap_or_default();
                let mut headers = serde_json::Map::new();
                for (k, v) in req.headers() {
                    let v = String::from_utf8_lossy(v.as_bytes()).to_string();
                    match headers.get_mut(k.as_str()) {
                        Some(serde_json::Value::String(prev)) => {
                            prev.push_str(" | ");
                            prev.push_str(&v);
                        }
                        _ => {
                            headers.insert(k.as_str().to_string(), v.into());
                        }
                    }
                }
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
                let echo = serde_json::json!({
                    "method": req.method().as_str(),
                    "path": req.uri().path(),
                    "query": req.uri().query(),
                    "headers": headers,
                    "body_len": body.len(),
                    "body_sha256": hex(digest.as_ref()),
                    // The connection it came on (the proxy's end of it).
                    "peer": req.remote_addr().to_string(),
                });
                record
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(echo.clone());
                let mut resp = Response::builder()
                    .status(StatusCode::OK)
                    .content_type("application/json")
                    .header("x-upstream", "echo");
                // `x-echo-close`: the upstream closes the connection after this answer.
                if req.headers().contains_key("x-echo-close") {
                    resp = resp.header("connection", "close");
                }
                resp.body(Body::from(echo.to_string()))
            }
        });
        let server = MockServer::serve(app).await;
        Echo {
            addr: server.addr,
            _server: server,
            seen,
        }
    }

    /// Every request that reached this upstream so far (the echo of each), oldest first.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of `b` in hex.
pub fn sha256_hex(b: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}
