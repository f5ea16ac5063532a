//! TLS that follows the certificate files: the server config is built before the listener
//! accepts its first connection (no window where handshakes fail), and a reload that finds new
//! key or certificate content swaps it for the connections accepted after, while established
//! connections keep theirs.

use std::{
    io,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use rustls_pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{rustls, server::TlsStream, Accept, TlsAcceptor};

use crate::config::HttpsConfig;

/// The key and certificate files, read and checked.
pub struct TlsMaterial {
    acceptor: TlsAcceptor,
    /// SHA-256 over the key and certificate files, to skip unchanged content.
    pub hash: String,
}

impl TlsMaterial {
    /// Reads `server.https` and builds a server config. Errors name the key and the file and
    /// never include key material.
    pub fn load(h: &HttpsConfig) -> Result<TlsMaterial, String> {
        let read = |what: &str, p: &Path| {
            std::fs::read(p).map_err(|e| format!("server.https.{what}: {}: {e}", p.display()))
        };
        let key_pem = read("key", &h.key)?;
        let cert_pem = read("cert", &h.cert)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                format!(
                    "server.https.cert: {}: not a PEM certificate chain ({e})",
                    h.cert.display()
                )
            })?;
        if certs.is_empty() {
            return Err(format!(
                "server.https.cert: {}: no certificate in the file",
                h.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            format!(
                "server.https.key: {}: no PEM private key in the file",
                h.key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("server.https: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "server.https: {} and {} do not make a usable key and certificate: {e}",
                    h.key.display(),
                    h.cert.display()
                )
            })?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut both = key_pem;
        both.extend_from_slice(&cert_pem);
        Ok(TlsMaterial {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            hash: crate::plugin::sha256_hex(&both),
        })
    }
}

/// Where the TLS material of the moment comes from (the snapshot being served: a reload that
/// replaces the key or certificate publishes it with everything else).
pub trait TlsSource: Send + Sync {
    /// The material new connections are accepted with; `None` when not serving https.
    fn current(&self) -> Option<Arc<TlsMaterial>>;
}

/// A listener's acceptor that wraps every accepted connection in TLS with the current material.
/// The handshake runs lazily on the connection's own task, so a slow client cannot hold up the
/// accept loop.
pub struct ReloadingTlsAcceptor<A> {
    inner: A,
    source: Arc<dyn TlsSource>,
}

impl<A> ReloadingTlsAcceptor<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, source: Arc<dyn TlsSource>) -> Self {
        ReloadingTlsAcceptor { inner, source }
    }
}

impl<A: Acceptor> Acceptor for ReloadingTlsAcceptor<A> {
    type Io = LazyTls<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, _) = self.inner.accept().await?;
        let acceptor = match self.source.current() {
            Some(m) => m.acceptor.clone(),
            // A reload cannot switch TLS off while serving; refuse rather than serve plain.
            None => return Err(io::Error::other("no TLS material to accept with")),
        };
        Ok((
            LazyTls::Handshaking(Box::new(acceptor.accept(io))),
            local,
            remote,
            Scheme::HTTPS,
        ))
    }
}

/// A TLS connection whose handshake completes on first use.
pub enum LazyTls<IO> {
    /// The handshake is in progress.
    Handshaking(Box<Accept<IO>>),
    /// Established.
    Ready(Box<TlsStream<IO>>),
    /// The handshake failed; every further call fails.
    Failed,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> LazyTls<IO> {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TlsStream<IO>>> {
        if let LazyTls::Handshaking(accept) = self {
            match Pin::new(accept.as_mut()).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(stream)) => *self = LazyTls::Ready(Box::new(stream)),
                Poll::Ready(Err(e)) => {
                    *self = LazyTls::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match self {
            LazyTls::Ready(s) => Poll::Ready(Ok(s)),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "tls handshake failed",
            ))),
        }
    }
}

use std::future::Future as _;

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for LazyTls<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().poll_ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_read(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LazyTls<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().poll_ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().poll_ready(cx) {
            Poll::Ready(Ok(s)) => Pin::new(s).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LazyTls::Ready(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}
