//! Listening: the main listener (plain or TLS, guarded against slow clients) and the optional
//! metrics listener.

use std::{net::SocketAddr, sync::Arc};

use poem::{
    http::{Method, StatusCode},
    listener::{Acceptor, Listener, TcpListener},
    Endpoint, Request, Response,
};

use crate::{app::App, http::answer::error_response};

/// Streams a client may open at once on one HTTP/2 connection (poem's default is unbounded).
pub const HTTP2_MAX_STREAMS: u32 = 128;

/// A listener that is bound and about to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The main listener, and whether it is TLS.
    Main {
        /// The address bound (port 0 picks a free port).
        addr: SocketAddr,
        /// Whether it serves https.
        tls: bool,
    },
    /// The separate metrics listener (`server.metrics.listen`), plain HTTP.
    Metrics(SocketAddr),
}

/// Binds the configured address (TLS when `server.https` is set) and, when
/// `server.metrics.listen` is set, the metrics address first; calls `on_bound` for each with the
/// address actually bound (port 0 picks a free port), then serves until `shutdown` completes,
/// draining in-flight requests for up to 30 s.
pub async fn serve<E>(
    app: Arc<App>,
    endpoint: E,
    mut on_bound: impl FnMut(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    E: Endpoint + 'static,
{
    let rt = app.snapshot();
    let s = &rt.config.server;
    let drain = Some(std::time::Duration::from_secs(30));
    // The metrics listener stops once the main one has (for whatever reason).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = match s.metrics.listen() {
        Some(addr) => {
            let acceptor = crate::http::listen::conn_guard::GuardedAcceptor::new(
                TcpListener::bind(addr.to_string()).into_acceptor().await?,
                app.clone(),
            );
            on_bound(Bound::Metrics(first_addr(&acceptor)?));
            let mut stop = stop_rx;
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let ep = MetricsOnly { app: app.clone() };
            Some(tokio::spawn(
                poem::Server::new_with_acceptor(acceptor)
                    .run_with_graceful_shutdown(ep, stopped, drain),
            ))
        }
        None => None,
    };
    let tcp = TcpListener::bind(format!("{}:{}", s.host, s.port));
    let served = match &s.https {
        None => {
            let acceptor = crate::http::listen::conn_guard::GuardedAcceptor::new(
                tcp.into_acceptor().await?,
                app.clone(),
            );
            on_bound(Bound::Main {
                addr: first_addr(&acceptor)?,
                tls: false,
            });
            poem::Server::new_with_acceptor(acceptor)
                .http2_max_concurrent_streams(HTTP2_MAX_STREAMS)
                .run_with_graceful_shutdown(endpoint, shutdown, drain)
                .await
        }
        Some(_) => {
            if app.snapshot().tls.is_none() {
                return Err(std::io::Error::other(
                    "server.https is set but no TLS was loaded",
                ));
            }
            let acceptor = crate::http::listen::tls::ReloadingTlsAcceptor::new(
                tcp.into_acceptor().await?,
                app.clone(),
            );
            // Above TLS, so the guard sees plain HTTP (and a stalled handshake is cut off too).
            let acceptor =
                crate::http::listen::conn_guard::GuardedAcceptor::new(acceptor, app.clone());
            on_bound(Bound::Main {
                addr: first_addr(&acceptor)?,
                tls: true,
            });
            poem::Server::new_with_acceptor(acceptor)
                .http2_max_concurrent_streams(HTTP2_MAX_STREAMS)
                .run_with_graceful_shutdown(endpoint, shutdown, drain)
                .await
        }
    };
    let _ = stop_tx.send(true);
    if let Some(task) = metrics {
        match task.await {
            Ok(r) => r?,
            Err(e) => return Err(std::io::Error::other(format!("metrics listener: {e}"))),
        }
    }
    served
}

/// The separate metrics listener's only route: `GET /metrics` (and `HEAD`); everything else 404.
/// No gate: it is meant for a private address that only the scraper can reach.
struct MetricsOnly {
    app: Arc<App>,
}

impl Endpoint for MetricsOnly {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path() != "/metrics" {
            return Ok(error_response(StatusCode::NOT_FOUND, "Not Found"));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
            ));
        }
        Ok(Response::builder()
            .content_type(crate::observe::metrics::CONTENT_TYPE)
            .body(self.app.metrics().render()))
    }
}

fn first_addr(a: &impl Acceptor) -> std::io::Result<SocketAddr> {
    a.local_addr()
        .into_iter()
        .find_map(|addr| addr.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("listener has no socket address"))
}
