//! The host's outgoing HTTP client: time limits, response size caps, no redirects to other hosts,
//! plain `http://` only when the caller allows it.

use std::time::Duration;

use futures_util::StreamExt as _;

/// A response read in full (up to a cap).
#[derive(Debug, Clone)]
pub struct CappedResponse {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl CappedResponse {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The shared client.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client that follows at most 5 redirects, and only within the same host and scheme.
    pub fn new() -> Result<HttpClient, String> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt.previous().first().is_some_and(|first| {
                first.host_str() == attempt.url().host_str()
                    && first.port_or_known_default() == attempt.url().port_or_known_default()
                    && first.scheme() == attempt.url().scheme()
            });
            if attempt.previous().len() >= 5 || !same {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(HttpClient { client })
    }

    /// GET with a time limit and a body cap.
    pub async fn get_capped(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<CappedResponse, String> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send("GET", url, &headers, Vec::new(), timeout, max_bytes)
            .await
    }

    /// Sends a request and reads the answer, all within `timeout`; bodies over `max_bytes` are an
    /// error (never truncated silently).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<CappedResponse, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| "invalid http method".to_string())?;
        let mut req = self.client.request(method, url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        let work = async {
            let resp = req.send().await.map_err(describe)?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
                return Err(format!("response body is larger than {max_bytes} bytes"));
            }
            let mut stream = resp.bytes_stream();
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(describe)?;
                if out.len() + chunk.len() > max_bytes {
                    return Err(format!("response body is larger than {max_bytes} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(CappedResponse {
                status,
                headers,
                body: out,
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

/// One line, without the URL's query (which may carry keys).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else if e.is_body() || e.is_decode() {
        "body could not be read"
    } else {
        "request failed"
    };
    kind.to_string()
}

/// Whether `url` may be requested: `https://` always, `http://` only when allowed.
pub fn check_scheme(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a valid absolute URL".to_string())?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err(
            "plain http is refused; use https (or set the provider's dangerous.allow_http)".into(),
        ),
        _ => Err("only https URLs are allowed".into()),
    }
}
