//! Slow-client guard: a request's headers must arrive within `server.header_read_timeout`, and a
//! connection with nothing in progress is closed after that time.
//!
//! poem's server has an idle timeout but no header-read timeout (hyper's needs a timer poem does
//! not give it), so a client sending its headers a byte at a time (Slowloris) would hold a
//! connection, and its task, forever. [`HeaderDeadline`] wraps every accepted connection (above
//! TLS, so it sees plain HTTP). What it sees first decides how it watches the connection:
//!
//! * **HTTP/1**: a deadline is armed when the connection opens and again after each response is
//!   written, and cleared when a request's header block has been read: a `\r\n\r\n` after the
//!   request line has started. Empty lines before a request line (which RFC 9112 lets a server
//!   skip, and hyper does) do not count, so `\r\n\r\n` and then a request a byte at a time is cut
//!   off like any other slow head. An idle keep-alive connection is closed after the same time.
//! * **HTTP/2** (recognized by its preface, as hyper recognizes it): the frame headers going
//!   both ways are followed, to count the client's open streams. A stream is open once its
//!   request headers are complete (HEADERS, and CONTINUATION up to END_HEADERS, on a new stream
//!   id) until the server ends it (END_STREAM on HEADERS or DATA) or either side resets it
//!   (RST_STREAM). While no stream is open, the deadline runs: from the connection's start until
//!   the first request, and from the moment the last stream ended. PING, SETTINGS and
//!   WINDOW_UPDATE do not hold a connection open; an open stream (a request waiting on a slow
//!   upstream) is never cut by the guard (`server.timeout` bounds it).
//!
//! Past the deadline, reads fail and the connection is closed.
//!
//! Why not a server setting: poem's `Server::idle_timeout` counts any byte as activity (a client
//! that answers PINGs, or sends a PING now and then, stays forever), would cut a request waiting
//! quietly on its upstream, and spawns a task per connection; hyper's HTTP/2 keep-alive needs a
//! timer poem does not give it, and only checks that the peer is alive, not that it is busy.

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

/// Where the time limit for a connection's request head comes from (the config being served).
pub trait HeaderTimeout: Send + Sync {
    /// `server.header_read_timeout` now.
    fn header_read_timeout(&self) -> Duration;
}

/// An acceptor whose connections carry a [`HeaderDeadline`]; the time limit is read from the
/// current config when each connection is accepted, so a reload applies to new connections.
pub struct GuardedAcceptor<A> {
    inner: A,
    limit: Arc<dyn HeaderTimeout>,
}

impl<A> GuardedAcceptor<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, limit: Arc<dyn HeaderTimeout>) -> Self {
        GuardedAcceptor { inner, limit }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = HeaderDeadline<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let limit = self.limit.header_read_timeout();
        Ok((HeaderDeadline::new(io, limit), local, remote, scheme))
    }
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the connection has shown itself to be.
enum Proto {
    /// Every byte read so far (this many) matches the start of the HTTP/2 preface: not decided yet.
    Sniff(u8),
    /// HTTP/1.
    Http1,
    /// HTTP/2 (boxed: an HTTP/1 connection pays nothing for it).
    Http2(Box<H2>),
}

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
    /// A header block is awaited (HTTP/1), or no stream is open (HTTP/2).
    armed: bool,
    /// HTTP/1: a request line has begun since the deadline was armed (empty lines before it are
    /// skipped, and do not end a head).
    started: bool,
    /// HTTP/1: the last bytes of the started head, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
    proto: Proto,
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
            started: false,
            tail: [0; 3],
            proto: Proto::Sniff(0),
            reader: None,
        }
    }

    fn rearm(&mut self) {
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + self.limit);
        self.armed = true;
        self.started = false;
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

    /// Bytes read from the client.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.proto {
            Proto::Http1 => self.http1(bytes),
            Proto::Http2(h2) => {
                h2.read(bytes);
                let idle = h2.open.is_empty();
                self.settle(idle);
            }
            Proto::Sniff(n) => {
                let have = usize::from(*n);
                let want = &H2_PREFACE[have..];
                let k = want.len().min(bytes.len());
                if bytes[..k] != want[..k] {
                    // HTTP/1 (as hyper decides it too): the bytes that matched so far are the
                    // start of its first request.
                    self.proto = Proto::Http1;
                    self.http1(&H2_PREFACE[..have]);
                    self.http1(bytes);
                } else if k < want.len() {
                    // `have + k < 24`.
                    *n = (have + k) as u8;
                } else {
                    // The deadline armed at the start keeps running: it is the first request's.
                    let mut h2 = Box::<H2>::default();
                    h2.read(&bytes[k..]);
                    let idle = h2.open.is_empty();
                    self.proto = Proto::Http2(h2);
                    self.settle(idle);
                }
            }
        }
    }

    /// HTTP/2: the deadline runs while no stream is open, from the moment the last one ended.
    fn settle(&mut self, idle: bool) {
        if !idle {
            self.armed = false;
        } else if !self.armed {
            self.rearm();
        }
    }

    /// HTTP/1 bytes read.
    fn http1(&mut self, mut bytes: &[u8]) {
        if !self.armed || bytes.is_empty() {
            return;
        }
        if !self.started {
            // Empty lines before the request line are skipped; the head starts at the first
            // other byte (usually the first byte of the read).
            match bytes.iter().position(|&b| b != b'\r' && b != b'\n') {
                None => return,
                Some(i) => {
                    self.started = true;
                    self.tail = [0; 3];
                    bytes = &bytes[i..];
                }
            }
        }
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
            return;
        }
        let n = bytes.len();
        if n >= 3 {
            self.tail.copy_from_slice(&bytes[n - 3..]);
        } else {
            self.tail.rotate_left(n);
            self.tail[3 - n..].copy_from_slice(bytes);
        }
    }

    /// `n` bytes of `bufs` were written to the client.
    fn wrote<'a>(&mut self, bufs: impl IntoIterator<Item = &'a [u8]>, n: usize) {
        if n == 0 {
            return;
        }
        match &mut self.proto {
            Proto::Http2(h2) => {
                let mut left = n;
                for b in bufs {
                    let k = b.len().min(left);
                    h2.wrote(&b[..k]);
                    left -= k;
                    if left == 0 {
                        break;
                    }
                }
                let idle = h2.open.is_empty();
                self.settle(idle);
            }
            // A response went out: the next request's headers are awaited from now.
            _ => self.rearm(),
        }
    }
}

/// HTTP/2 frame types and flags the guard reads (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame's header: type, flags, stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// Follows the frames of one direction of an HTTP/2 connection: collects each 9-byte frame
/// header (across reads) and skips the payload it announces.
#[derive(Default)]
struct Frames {
    head: [u8; 9],
    /// Bytes of `head` collected.
    have: u8,
    /// Payload bytes still to skip.
    skip: u32,
}

impl Frames {
    fn feed(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(Frame)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = bytes.len().min(self.skip as usize);
                // `k <= skip`, a u32.
                self.skip -= k as u32;
                bytes = &bytes[k..];
                continue;
            }
            let have = usize::from(self.have);
            let k = (9 - have).min(bytes.len());
            self.head[have..have + k].copy_from_slice(&bytes[..k]);
            bytes = &bytes[k..];
            if have + k < 9 {
                // `< 9`.
                self.have = (have + k) as u8;
                continue;
            }
            self.have = 0;
            let h = self.head;
            self.skip = u32::from_be_bytes([0, h[0], h[1], h[2]]);
            on_frame(Frame {
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            });
        }
    }
}

/// What the guard knows of an HTTP/2 connection.
#[derive(Default)]
struct H2 {
    /// Client to server.
    read: Frames,
    /// Server to client.
    write: Frames,
    /// Open client streams, ascending (a client opens streams in increasing order). It holds no
    /// more than the streams the server has accepted and not yet ended: a stream the server
    /// refuses is reset (RST_STREAM), which closes it here.
    open: Vec<u32>,
    /// The highest stream id the client has sent HEADERS on: a HEADERS frame with a higher one
    /// opens a stream, one with a lower one is trailers.
    last: u32,
    /// A new stream whose HEADERS came without END_HEADERS (0: none): it opens with the
    /// CONTINUATION that ends its headers.
    continued: u32,
}

impl H2 {
    fn read(&mut self, bytes: &[u8]) {
        let H2 {
            read,
            open,
            last,
            continued,
            ..
        } = self;
        read.feed(bytes, |f| match f.kind {
            HEADERS if f.stream > *last => {
                *last = f.stream;
                if f.flags & END_HEADERS != 0 {
                    open.push(f.stream);
                } else {
                    *continued = f.stream;
                }
            }
            CONTINUATION
                if f.stream != 0 && f.stream == *continued && f.flags & END_HEADERS != 0 =>
            {
                *continued = 0;
                open.push(f.stream);
            }
            RST_STREAM => close(open, continued, f.stream),
            _ => {}
        });
    }

    fn wrote(&mut self, bytes: &[u8]) {
        let H2 {
            write,
            open,
            continued,
            ..
        } = self;
        write.feed(bytes, |f| match f.kind {
            DATA | HEADERS if f.flags & END_STREAM != 0 => close(open, continued, f.stream),
            RST_STREAM => close(open, continued, f.stream),
            _ => {}
        });
    }
}

fn close(open: &mut Vec<u32>, continued: &mut u32, stream: u32) {
    if let Ok(i) = open.binary_search(&stream) {
        open.remove(i);
    }
    if *continued == stream {
        *continued = 0;
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
            this.wrote([buf], *n);
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
            this.wrote(bufs.iter().map(|b| &**b), *n);
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

    fn guard() -> HeaderDeadline<()> {
        HeaderDeadline::new((), Duration::from_secs(1))
    }

    /// A frame header (9 bytes) and `len` bytes of payload.
    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let l = (len as u32).to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.resize(9 + len, 0xab);
        f
    }

    fn open(g: &HeaderDeadline<()>) -> Vec<u32> {
        match &g.proto {
            Proto::Http2(h2) => h2.open.clone(),
            _ => panic!("not HTTP/2"),
        }
    }

    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const ACK: u8 = 0x1;

    #[tokio::test]
    async fn the_deadline_clears_at_the_end_of_the_headers_even_split_across_reads() {
        let mut g = guard();
        g.saw(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(g.armed);
        g.saw(b"\n\r");
        assert!(g.armed);
        g.saw(b"\n");
        assert!(!g.armed);
        assert!(matches!(g.proto, Proto::Http1));
    }

    #[tokio::test]
    async fn leading_blank_lines_do_not_end_a_head() {
        let mut g = guard();
        g.saw(b"\r\n\r\n");
        assert!(g.armed && !g.started);
        g.saw(b"\n\r\n\r");
        assert!(g.armed && !g.started);
        g.saw(b"\nG");
        assert!(g.armed && g.started);
        g.saw(b"ET / HTTP/1.1\r\n");
        assert!(g.armed);
        g.saw(b"\r\n");
        assert!(!g.armed);
        // In one read, blank lines then a whole head.
        let mut g = guard();
        g.saw(b"\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert!(!g.armed);
        // Blank lines then a request a byte at a time: armed until the head's own end.
        let mut g = guard();
        g.saw(b"\r\n\r\n");
        for b in b"GET / HTTP/1.1\r\nX: y\r\n\r" {
            g.saw(&[*b]);
            assert!(g.armed);
        }
        g.saw(b"\n");
        assert!(!g.armed);
    }

    #[tokio::test]
    async fn blank_lines_after_a_response_do_not_end_the_next_head() {
        let mut g = guard();
        g.saw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!g.armed);
        g.wrote([&b"HTTP/1.1 200 OK\r\n\r\n"[..]], 19);
        assert!(g.armed);
        // The previous head's end (`\n\r\n` last seen) and a blank line make no `\r\n\r\n`.
        g.saw(b"\r\n");
        assert!(g.armed);
        g.saw(b"\r\n\r\n");
        assert!(g.armed);
        g.saw(b"GET / HTTP/1.1\r\n\r\n");
        assert!(!g.armed);
    }

    #[tokio::test]
    async fn a_partial_preface_keeps_the_deadline_and_a_wrong_one_is_http1() {
        // The preface's first 18 bytes hold a `\r\n\r\n`: while it may still be HTTP/2, that
        // does not end a head.
        let mut g = guard();
        g.saw(&H2_PREFACE[..18]);
        assert!(g.armed);
        assert!(matches!(g.proto, Proto::Sniff(18)));
        // Not the preface after all: HTTP/1, whose head (`PRI * HTTP/2.0` and an empty line)
        // has ended.
        g.saw(b"XY");
        assert!(matches!(g.proto, Proto::Http1));
        assert!(!g.armed);
        // A mismatch in the first read.
        let mut g = guard();
        g.saw(b"PRX");
        assert!(matches!(g.proto, Proto::Http1) && g.armed && g.started);
    }

    #[tokio::test]
    async fn http2_preface_then_silence_stays_armed() {
        let mut g = guard();
        g.saw(&H2_PREFACE[..5]);
        g.saw(&H2_PREFACE[5..]);
        assert!(g.armed);
        assert!(open(&g).is_empty());
        // SETTINGS, a PING and its answer, both ways: still no stream.
        g.saw(&frame(SETTINGS, 0, 0, 18));
        g.wrote([&frame(SETTINGS, 0, 0, 12)[..]], 21);
        g.saw(&frame(PING, 0, 0, 8));
        g.wrote([&frame(PING, ACK, 0, 8)[..]], 17);
        assert!(g.armed && open(&g).is_empty());
    }

    #[tokio::test]
    async fn http2_streams_open_on_headers_and_close_on_the_servers_end_stream() {
        let mut g = guard();
        // Preface, SETTINGS and a request in one read.
        let mut first = H2_PREFACE.to_vec();
        first.extend(frame(SETTINGS, 0, 0, 6));
        first.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, 20));
        g.saw(&first);
        assert!(!g.armed);
        assert_eq!(open(&g), [1]);
        // The client's END_STREAM leaves it open (half-closed); a second request.
        g.saw(&frame(HEADERS, END_HEADERS, 3, 10));
        g.saw(&frame(DATA, END_STREAM, 3, 100));
        assert_eq!(open(&g), [1, 3]);
        // Trailers on an open stream open nothing.
        g.saw(&frame(HEADERS, END_HEADERS | END_STREAM, 1, 5));
        assert_eq!(open(&g), [1, 3]);
        // The server answers stream 1 (headers, then data ending the stream) and resets 3.
        let before = g.deadline.deadline();
        std::thread::sleep(Duration::from_millis(5));
        g.wrote([&frame(HEADERS, END_HEADERS, 1, 30)[..]], 39);
        g.wrote(
            [&frame(DATA, 0, 1, 10)[..], &frame(DATA, END_STREAM, 1, 0)],
            28,
        );
        assert_eq!(open(&g), [3]);
        assert!(!g.armed);
        g.wrote([&frame(RST_STREAM, 0, 3, 4)[..]], 13);
        assert!(open(&g).is_empty());
        // Idle again: the deadline runs from now.
        assert!(g.armed);
        assert!(g.deadline.deadline() > before);
    }

    #[tokio::test]
    async fn http2_frames_split_anywhere_are_followed() {
        let mut g = guard();
        let mut all = H2_PREFACE.to_vec();
        all.extend(frame(SETTINGS, 0, 0, 12));
        all.extend(frame(DATA, END_STREAM, 1, 0)); // a stray frame on an unopened stream
        all.extend(frame(HEADERS, END_HEADERS, 1, 300));
        all.extend(frame(DATA, 0, 1, 70_000));
        for b in all.chunks(1) {
            g.saw(b);
        }
        assert_eq!(open(&g), [1]);
        // The server's answer, written in pieces of 4 bytes; the PING ACK's flag is not END_STREAM.
        let mut out = frame(PING, ACK, 0, 8);
        out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, 40));
        for c in out.chunks(4) {
            g.wrote([c], c.len());
        }
        assert!(open(&g).is_empty() && g.armed);
        // Only the bytes the write accepted count.
        let mut g = guard();
        let mut first = H2_PREFACE.to_vec();
        first.extend(frame(HEADERS, END_HEADERS, 1, 0));
        g.saw(&first);
        let end = frame(HEADERS, END_HEADERS | END_STREAM, 1, 4);
        g.wrote([&end[..]], 8);
        assert_eq!(open(&g), [1]);
        g.wrote([&end[8..]], 5);
        assert!(open(&g).is_empty());
    }

    #[tokio::test]
    async fn http2_a_stream_opens_only_when_its_headers_are_complete() {
        let mut g = guard();
        g.saw(H2_PREFACE);
        g.saw(&frame(HEADERS, 0, 1, 10));
        assert!(g.armed && open(&g).is_empty());
        g.saw(&frame(CONTINUATION, 0, 1, 10));
        assert!(g.armed && open(&g).is_empty());
        g.saw(&frame(CONTINUATION, END_HEADERS, 1, 10));
        assert!(!g.armed);
        assert_eq!(open(&g), [1]);
        // A client reset closes its stream.
        g.saw(&frame(RST_STREAM, 0, 1, 4));
        assert!(g.armed && open(&g).is_empty());
        // A reset of a stream not open, or a second end, changes nothing.
        g.saw(&frame(RST_STREAM, 0, 7, 4));
        g.wrote([&frame(DATA, END_STREAM, 1, 0)[..]], 9);
        assert!(g.armed && open(&g).is_empty());
    }
}
