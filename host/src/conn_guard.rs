//! Slow-client guard: a request's headers must arrive within `server.header_read_timeout`.
//!
//! poem's server has an idle timeout but no header-read timeout (hyper's needs a timer poem does
//! not give it), so a client sending its headers a byte at a time (Slowloris) would hold a
//! connection, and its task, forever. [`HeaderDeadline`] wraps every accepted connection (above
//! TLS, so it sees plain HTTP): a deadline is armed when the connection opens and again after each
//! response is written, and cleared when the end of a header block (`\r\n\r\n`) has been read.
//! Past the deadline, reads fail and the connection is closed. An idle keep-alive connection is
//! therefore closed after the same time. HTTP/2 (recognized by its preface) is left to its own
//! flow control: the guard stands down once the preface has been read.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::app::App;

/// An acceptor whose connections carry a [`HeaderDeadline`]; the time limit is read from the
/// current config when each connection is accepted, so a reload applies to new connections.
pub struct GuardedAcceptor<A> {
    inner: A,
    app: Arc<App>,
}

impl<A> GuardedAcceptor<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, app: Arc<App>) -> Self {
        GuardedAcceptor { inner, app }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = HeaderDeadline<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let limit = self.app.runtime().config.server.header_read_timeout;
        Ok((HeaderDeadline::new(io, limit), local, remote, scheme))
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection whose request headers must arrive in time.
///
/// One timer per connection, reset (not reallocated) after each response: a request pays no
/// allocation and no extra wake-up of the connection's task for the guard. (A deadline that is
/// disarmed is not cancelled: if a request outlasts the limit, it fires once for nothing.)
pub struct HeaderDeadline<T> {
    io: T,
    limit: Duration,
    /// The deadline; it counts only while `armed`.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// A header block is awaited.
    armed: bool,
    /// The last bytes read, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
    /// Bytes read so far on this connection, up to the length of the HTTP/2 preface.
    head: Vec<u8>,
    /// The guard stood down (HTTP/2).
    off: bool,
    /// The task last blocked on a read. A newly armed deadline is registered with it, so that
    /// the deadline wakes that task even if it does not read again before then.
    reader: Option<std::task::Waker>,
}

impl<T> HeaderDeadline<T> {
    /// Wraps `io`; the first deadline starts now.
    pub fn new(io: T, limit: Duration) -> Self {
        HeaderDeadline {
            io,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            armed: true,
            tail: [0; 3],
            head: Vec::new(),
            off: false,
            reader: None,
        }
    }

    fn rearm(&mut self) {
        if self.off {
            return;
        }
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + self.limit);
        self.armed = true;
        if let Some(w) = &self.reader {
            // Register the new deadline with the reading task now, without waking it: a task
            // blocked on a read that never comes is woken by the deadline and sees it passed.
            if self
                .deadline
                .as_mut()
                .poll(&mut Context::from_waker(w))
                .is_ready()
            {
                w.wake_by_ref();
            }
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        if self.off || bytes.is_empty() {
            return;
        }
        if self.head.len() < H2_PREFACE.len() {
            let take = (H2_PREFACE.len() - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if self.head.len() == H2_PREFACE.len() && self.head == H2_PREFACE {
                self.off = true;
                self.armed = false;
                return;
            }
        }
        if self.armed {
            // The end of the head may straddle two reads: look at the seam (the last 3 bytes seen
            // and the first 3 new ones), then in the new bytes alone, without copying them. A
            // request without a body usually comes in one read that ends with the head's end:
            // that is checked first, before a search through the whole read.
            let k = bytes.len().min(3);
            let mut seam = [0u8; 6];
            seam[..3].copy_from_slice(&self.tail);
            seam[3..3 + k].copy_from_slice(&bytes[..k]);
            if bytes.ends_with(b"\r\n\r\n")
                || seam[..3 + k].windows(4).any(|w| w == b"\r\n\r\n")
                || memchr::memmem::find(bytes, b"\r\n\r\n").is_some()
            {
                self.armed = false;
            }
        }
        let n = bytes.len();
        if n >= 3 {
            self.tail.copy_from_slice(&bytes[n - 3..]);
        } else {
            self.tail.rotate_left(n);
            self.tail[3 - n..].copy_from_slice(bytes);
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "request headers not received within server.header_read_timeout",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for HeaderDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.armed && this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(timed_out()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) => this.saw(&buf.filled()[before..]),
            Poll::Pending => match &this.reader {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => this.reader = Some(cx.waker().clone()),
            },
            Poll::Ready(Err(_)) => {}
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeaderDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            // A response went out: the next request's headers are awaited from now.
            if *n > 0 {
                this.rearm();
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            if *n > 0 {
                this.rearm();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_clears_at_the_end_of_the_headers_even_split_across_reads() {
        let mut g = HeaderDeadline::new((), Duration::from_secs(1));
        g.saw(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(g.armed);
        g.saw(b"\n\r");
        assert!(g.armed);
        g.saw(b"\n");
        assert!(!g.armed);
    }

    #[tokio::test]
    async fn http2_turns_the_guard_off() {
        let mut g = HeaderDeadline::new((), Duration::from_secs(1));
        g.saw(&H2_PREFACE[..5]);
        g.saw(&H2_PREFACE[5..]);
        assert!(g.off && !g.armed);
    }
}
