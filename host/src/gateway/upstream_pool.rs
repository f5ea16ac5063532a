//! The proxy's connections to its upstreams: HTTP/1.1 over hyper's connection API, kept alive and
//! reused per upstream (scheme and authority), found by the route without hashing.
//!
//! A connection is lent to one exchange at a time. It goes back to the pool when the answer's
//! body has been read to its end (a connection whose answer was abandoned half-read is closed,
//! not reused: what is left of that answer would be read as the next one's). A connection that
//! the upstream closed while idle is noticed when it is taken; a request that had not been sent on
//! it yet is sent again on a fresh one.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use poem::http::{uri::Authority, uri::Scheme, HeaderValue, Request, Response, Uri};
use tower_service::Service as _;

use super::proxy::ProxyBody;

/// How long an idle connection is kept.
const IDLE_FOR: Duration = Duration::from_secs(90);
/// Idle connections kept per upstream.
const MAX_IDLE: usize = 64;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why an exchange failed before an answer came.
#[derive(Debug)]
pub enum SendError {
    /// The connection could not be made (`timed_out`: within the connect timeout).
    Connect {
        /// Whether it was the connect timeout.
        timed_out: bool,
        /// What happened, for the log.
        reason: String,
    },
    /// The exchange failed after the connection was made.
    Exchange(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect { reason, .. } => write!(f, "connecting: {reason}"),
            SendError::Exchange(e) => write!(f, "{e}"),
        }
    }
}

/// Every upstream's pool, per connect timeout. Pools are kept across reloads (their connections
/// are warm); a route finds its pool by a short scan of the upstreams known.
#[derive(Default)]
pub struct Pools {
    pools: RwLock<Vec<Arc<Pool>>>,
    tls: Mutex<Option<rustls::ClientConfig>>,
}

impl Pools {
    /// The pool of `scheme://authority` for connections made within `connect_timeout`.
    pub fn get(
        &self,
        scheme: &Scheme,
        authority: &Authority,
        connect_timeout: Duration,
    ) -> Result<Arc<Pool>, String> {
        let matches = |p: &Arc<Pool>| {
            p.authority == *authority && p.scheme == *scheme && p.connect_timeout == connect_timeout
        };
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|p| matches(p))
        {
            return Ok(p.clone());
        }
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.iter().find(|p| matches(p)) {
            return Ok(p.clone());
        }
        let pool = Arc::new(Pool {
            scheme: scheme.clone(),
            authority: authority.clone(),
            host: HeaderValue::from_str(authority.as_str())
                .map_err(|_| format!("upstream authority `{authority}` is not a Host value"))?,
            connect_timeout,
            connector: self.connector(connect_timeout)?,
            idle: Mutex::new(Vec::new()),
        });
        pools.push(pool.clone());
        Ok(pool)
    }

    fn connector(&self, connect_timeout: Duration) -> Result<Connector, String> {
        use rustls_platform_verifier::ConfigVerifierExt as _;
        let mut tls = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        let config = match &*tls {
            Some(c) => c.clone(),
            None => {
                let c = rustls::ClientConfig::with_platform_verifier()
                    .map_err(|e| format!("upstream client: TLS roots: {e}"))?;
                *tls = Some(c.clone());
                c
            }
        };
        let mut http = HttpConnector::new();
        // `https://` URLs go through the TLS layer, which hands the TCP part to this one.
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        Ok(hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http))
    }
}

/// The connections to one upstream.
pub struct Pool {
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
    connect_timeout: Duration,
    connector: Connector,
    idle: Mutex<Vec<(SendRequest<ProxyBody>, Instant)>>,
}

/// A connection lent to one exchange: give it back with [`Lease::release`] once the answer's body
/// is read to its end; dropped otherwise, which closes it.
pub struct Lease {
    pool: Arc<Pool>,
    sender: SendRequest<ProxyBody>,
}

impl Lease {
    /// The connection is free for the next exchange.
    pub fn release(self) {
        self.pool.put(self.sender);
    }
}

impl Pool {
    /// Sends `req` (its URI in origin form: path and query) and waits for the answer's head.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<hyper::body::Incoming>, Lease), SendError> {
        req.headers_mut()
            .insert(poem::http::header::HOST, self.host.clone());
        // An idle connection first; one the upstream closed meanwhile gives the request back
        // unsent, and it goes out on a fresh connection.
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(sender))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, self.lease(sender))),
            Err(e) => Err(SendError::Exchange(e)),
        }
    }

    fn lease(self: &Arc<Self>, sender: SendRequest<ProxyBody>) -> Lease {
        Lease {
            pool: self.clone(),
            sender,
        }
    }

    /// The most recently used idle connection that is still open and not too old.
    fn take_idle(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_FOR {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: those past their time, or closed by the upstream, go (closed when
        // dropped), and the oldest when the pool is full.
        let stale = idle
            .iter()
            .take_while(|(s, since)| s.is_closed() || since.elapsed() >= IDLE_FOR)
            .count();
        idle.drain(..stale);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((sender, Instant::now()));
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, SendError> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| SendError::Connect {
                timed_out: false,
                reason: e.to_string(),
            })?;
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| SendError::Connect {
                timed_out: timed_out(&*e),
                reason: e.to_string(),
            })?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// Whether `e`, or an error it wraps, is a time-out.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = err.source();
    }
    false
}
