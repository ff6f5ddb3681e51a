//! Slow and numerous clients. The accept loop ([`super::server`]) has the idle timeout;
//! the rest lives here:
//! - [`LimitedAcceptor`] caps the connections served at once (a semaphore permit per
//!   connection; at the cap, new connections wait in the kernel's listen backlog) and wraps
//!   each one in [`GuardedIo`], which gives every HTTP/1 request head a deadline;
//! - [`body_deadline`] gives every request body a deadline, answered 408 `request.timeout`.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use poem::{
    http::{header, HeaderValue, StatusCode},
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
    Body, Endpoint, IntoResponse, Request, Response,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

use super::activity::Activity;
use crate::api::error::error_response;

/// The code of both timeouts' answers.
const TIMEOUT_CODE: &str = "request.timeout";

/// Accepts at most `max_connections` connections at a time and puts a head deadline on each.
pub struct LimitedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
    /// When the cap was last reported, so a storm logs once in a while, not per connection.
    warned_at: Option<Instant>,
}

impl<A> LimitedAcceptor<A> {
    #[must_use]
    pub fn new(inner: A, max_connections: usize, header_timeout: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            header_timeout,
            warned_at: None,
        }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    // Cancel-safe, as poem's accept loop needs: a permit dropped before `accept` returns
    // loses no connection (tokio's accept is cancel-safe itself).
    async fn accept(
        &mut self,
    ) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let quiet = self
                    .warned_at
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                if !quiet {
                    self.warned_at = Some(Instant::now());
                    tracing::warn!(
                        "connection cap (server.max_connections) reached; new connections \
                         wait until one closes"
                    );
                }
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| io::Error::other("connection semaphore closed"))?
            }
        };
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((
            GuardedIo::new(io, permit, self.header_timeout),
            local,
            remote,
            scheme,
        ))
    }
}

/// Where a connection is in its current request, as far as the bytes show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading a request head; `blank` is how far into an empty line the bytes are.
    Head { blank: Blank },
    /// The head is in; the body and the response follow. `responded` turns true on the
    /// first byte of a final response, after which the next byte read starts a new head.
    Request { responded: bool },
    /// HTTP/2 (prior knowledge): framed, not ours to parse; the idle timeout still applies.
    Untracked,
}

/// Progress towards the empty line that ends a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blank {
    No,
    /// A line has just ended (`\n`).
    LineEnd,
    /// ... and the next one starts with `\r`.
    Cr,
}

/// A connection's stream: holds its permit of the cap until dropped, and closes the
/// connection when a request head takes longer than the header timeout.
///
/// The head ends at its first empty line: `\r\n\r\n`, or `\n\n` as hyper also accepts (were
/// the two to disagree, the deadline could fall in the middle of the answer). A later
/// request's head is timed from its first byte, so an idle keep-alive connection is left to
/// the idle timeout. The first head is timed from the accept, which also bounds connections
/// that never send anything.
pub struct GuardedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    header_timeout: Duration,
    phase: Phase,
    /// The head deadline; armed only while `phase` is `Head` and a deadline runs.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the client has sent anything: one that has not gets no 408, just a close.
    received_any: bool,
    /// Whether the server has written anything: a 408 of our own is then unsafe, since it
    /// could land inside a response hyper is still writing.
    written_any: bool,
    /// Stamped on every byte either way, for the idle timeout ([`super::server`]).
    activity: Activity,
}

impl<T> GuardedIo<T> {
    fn new(inner: T, permit: OwnedSemaphorePermit, header_timeout: Duration) -> Self {
        Self {
            inner,
            _permit: permit,
            header_timeout,
            phase: Phase::Head { blank: Blank::No },
            deadline: Some(Box::pin(tokio::time::sleep(header_timeout))),
            received_any: false,
            written_any: false,
            activity: Activity::new(),
        }
    }

    /// The stamp of this connection's last read or write.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Follows the request framing over `bytes`, just read.
    fn observe_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.activity.touch();
        if !self.received_any {
            self.received_any = true;
            if bytes.starts_with(b"PRI ") {
                self.phase = Phase::Untracked;
                self.deadline = None;
                return;
            }
        }
        if self.phase == (Phase::Request { responded: true }) {
            self.phase = Phase::Head { blank: Blank::No };
            self.deadline = Some(Box::pin(tokio::time::sleep(self.header_timeout)));
        }
        let Phase::Head { mut blank } = self.phase else {
            return;
        };
        for &b in bytes {
            blank = match (b, blank) {
                (b'\n', Blank::LineEnd | Blank::Cr) => {
                    // Bytes after the head are the body or a pipelined request; either way
                    // the body deadline or the next response's turn takes over.
                    self.phase = Phase::Request { responded: false };
                    self.deadline = None;
                    return;
                }
                (b'\n', Blank::No) => Blank::LineEnd,
                (b'\r', Blank::LineEnd) => Blank::Cr,
                _ => Blank::No,
            };
        }
        self.phase = Phase::Head { blank };
    }

    /// Notes the start of the server's answer (`bytes` begins a write).
    fn observe_write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.activity.touch();
        self.written_any = true;
        // `HTTP/1.1 100 Continue` precedes the body it asks for; it is no answer.
        let interim = bytes.starts_with(b"HTTP/1.1 1") || bytes.starts_with(b"HTTP/1.0 1");
        if let Phase::Request { responded: false } = self.phase {
            if !interim {
                self.phase = Phase::Request { responded: true };
            }
        }
    }
}

impl GuardedIo<TcpStream> {
    /// Whether the connection opens with HTTP/2's preface (h2c by prior knowledge), told by
    /// peeking: nothing is consumed, so hyper reads the first head whole. Errors when the
    /// client closes or sends too little to tell within the header timeout.
    pub async fn starts_with_h2_preface(&self) -> io::Result<bool> {
        const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let until = Instant::now() + self.header_timeout;
        let mut buf = [0u8; 24];
        loop {
            let n = tokio::time::timeout_at(until, self.inner.peek(&mut buf))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if buf[..n] != PREFACE[..n] {
                return Ok(false);
            }
            // No HTTP/1 method is `PRI`: three bytes tell (hyper's HTTP/2 server checks the
            // rest of the preface).
            if n >= 3 {
                return Ok(true);
            }
            // "P" or "PR" could still be POST or PROPFIND. A peek returns at once while
            // those bytes wait, so pause before looking again.
            if Instant::now() >= until {
                return Err(io::ErrorKind::TimedOut.into());
            }
            tokio::time::sleep_until(until.min(Instant::now() + Duration::from_millis(5))).await;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> GuardedIo<T> {
    /// The head took too long: answer 408 if that cannot corrupt a response, then close.
    fn poll_head_expired(&mut self, cx: &mut Context<'_>) -> io::Error {
        tracing::info!("closing a connection whose request head was too slow");
        if self.received_any && !self.written_any {
            let body = format!(
                r#"{{"error":{{"code":"{TIMEOUT_CODE}","message":"the request head was not received within {} seconds"}}}}"#,
                self.header_timeout.as_secs()
            );
            let answer = format!(
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
                 connection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            // Best effort: the send buffer is empty (nothing was written), so a small
            // answer goes out whole or not at all, and the client is gone if it does not.
            let _ = Pin::new(&mut self.inner).poll_write(cx, answer.as_bytes());
            let _ = Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        self.deadline = None;
        io::Error::new(io::ErrorKind::TimedOut, "request head read timeout")
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = matches!(this.phase, Phase::Head { .. })
                    && this
                        .deadline
                        .as_mut()
                        .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(this.poll_head_expired(cx)))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.observe_write(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            this.observe_write(&first[..n.min(first.len())]);
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Middleware: the request body must arrive whole within `timeout` of the head, or the
/// request is answered 408 `request.timeout` (and the connection closed, since the rest of
/// the body is never read). A trickle of a byte a second otherwise held a handler for as
/// long as the client liked.
pub async fn body_deadline<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    timeout: Duration,
) -> poem::Result<Response> {
    let declared_empty = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    let has_body = !declared_empty
        && (req.headers().contains_key(header::CONTENT_LENGTH)
            || req.headers().contains_key(header::TRANSFER_ENCODING));
    if !has_body {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let expired = Arc::new(AtomicBool::new(false));
    let body = req.take_body().into_bytes_stream();
    req.set_body(Body::from_bytes_stream(ReadDeadline {
        inner: Box::pin(body),
        deadline: Box::pin(tokio::time::sleep(timeout)),
        expired: expired.clone(),
        done: false,
    }));
    let result = ep.call(req).await.map(IntoResponse::into_response);
    // Whatever the handler made of the failed read (a 400, a 413), the cause was the clock.
    if expired.load(Ordering::Acquire) {
        let mut resp = error_response(
            StatusCode::REQUEST_TIMEOUT,
            TIMEOUT_CODE,
            &format!(
                "the request body was not received within {} seconds",
                timeout.as_secs()
            ),
        );
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    }
    result
}

/// A body stream that fails with `TimedOut` once its deadline passes.
struct ReadDeadline<S> {
    inner: Pin<Box<S>>,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
    done: bool,
}

impl<S, T> Stream for ReadDeadline<S>
where
    S: Stream<Item = io::Result<T>>,
{
    type Item = io::Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(item) => {
                this.done = item.is_none();
                Poll::Ready(item)
            }
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                this.done = true;
                this.expired.store(true, Ordering::Release);
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request body read timeout",
                ))))
            }
        }
    }
}

/// Accepted connections get TCP_NODELAY. A streamed answer is many small writes; with
/// Nagle's algorithm each one after the first waits for the client's delayed ACK, which
/// measured as a flat ~40 ms added to every streamed ChatKit turn.
pub struct NoDelay<A>(pub A);

impl<A: Acceptor<Io = tokio::net::TcpStream>> Acceptor for NoDelay<A> {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<poem::web::LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(
        Self::Io,
        poem::web::LocalAddr,
        poem::web::RemoteAddr,
        poem::http::uri::Scheme,
    )> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        // Best effort: a socket that refuses the option still serves, only slower.
        let _ = io.set_nodelay(true);
        Ok((io, local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> GuardedIo<()> {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        GuardedIo::new((), permit, Duration::from_secs(10))
    }

    #[tokio::test]
    async fn a_head_ends_at_its_empty_line_however_the_bytes_are_split() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n\n",
        ] {
            for split in 1..head.len() {
                let mut io = io();
                io.observe_read(&head[..split]);
                assert!(matches!(io.phase, Phase::Head { .. }), "{split}");
                io.observe_read(&head[split..]);
                assert_eq!(io.phase, Phase::Request { responded: false }, "{split}");
                assert!(io.deadline.is_none());
            }
        }
        let mut io = io();
        io.observe_read(b"GET / HTTP/1.1\r\nHost: a\r\n\r");
        assert!(matches!(io.phase, Phase::Head { .. }));
    }

    #[tokio::test]
    async fn the_next_head_is_timed_from_its_first_byte_after_a_final_answer() {
        let mut io = io();
        io.observe_read(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        io.observe_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        io.observe_read(b"body bytes, not a head");
        assert_eq!(io.phase, Phase::Request { responded: false });
        io.observe_write(b"HTTP/1.1 200 OK\r\n");
        assert!(io.deadline.is_none());
        io.observe_read(b"GET / HT");
        assert!(matches!(io.phase, Phase::Head { .. }));
        assert!(io.deadline.is_some());
    }

    #[tokio::test]
    async fn http2_prior_knowledge_is_left_alone() {
        let mut io = io();
        io.observe_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(io.phase, Phase::Untracked);
        assert!(io.deadline.is_none());
    }
}
