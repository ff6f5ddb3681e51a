//! The accept loop: serves each connection with hyper's HTTP/1 or HTTP/2 server, in place
//! of poem's `Server`, for what a connection holds while it streams.
//!
//! poem's `Server` goes through hyper-util's version-sniffing builder, which reads the first
//! 24 bytes apart and hands hyper a stream that returns them alone; hyper's first read
//! then gets a partial head and grows its read buffer from 8 to 16 KB for the second, for
//! every connection. It also spawns a second task per connection for the idle timeout and
//! wakes it on every read and write, a task wake-up per streamed delta. Here the version is
//! told by peeking at the socket (nothing consumed, so hyper reads the head into one 8 KB
//! buffer), and the idle timeout is a stamp the connection's own task checks when its
//! timer fires.
//!
//! What poem's `Server` did and this keeps: the endpoint gets poem `Request`s with their
//! local and remote addresses; HTTP/2 by prior knowledge (h2c) is served; on shutdown the
//! listener closes, every connection is asked to finish (in-flight requests run on,
//! idle keep-alive connections close), and after the grace period the rest are closed.
//! (The `/metrics` listener stays on poem's `Server`: few connections, short requests.)

use std::{convert::Infallible, future::Future, io, pin::Pin, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
    Endpoint, EndpointExt, IntoEndpoint,
};
use tokio::{net::TcpStream, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{activity::Activity, connections::GuardedIo};

/// The most an HTTP/1.1 connection reads ahead of its handler: a request's head must fit.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What the loop needs besides the acceptor and the application.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// A connection with no byte read or written for this long is closed (once its
    /// in-flight request, if any, has finished).
    pub idle_timeout: Duration,
    /// How long shutdown waits for open connections before closing them.
    pub grace: Duration,
}

/// Serves `ep` on the connections `acceptor` yields until `shutdown` resolves, then drains.
pub async fn serve<A, E>(
    mut acceptor: A,
    ep: E,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> io::Result<()>
where
    A: Acceptor<Io = GuardedIo<TcpStream>>,
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let ep = Arc::new(ep.into_endpoint().map_to_response());
    // `finish` asks connections to end after their current request; `close` ends them.
    let finish = CancellationToken::new();
    let close = CancellationToken::new();
    // Every connection task holds a sender: once all are dropped, `recv` returns `None`.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<Infallible>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = acceptor.accept() => match accepted {
                Ok((io, local, remote, scheme)) => {
                    let peer = Peer { local, remote, scheme };
                    let open = open.clone();
                    let connection = serve_connection(
                        io,
                        peer,
                        ep.clone(),
                        options.idle_timeout,
                        finish.clone(),
                        close.clone(),
                    );
                    tokio::spawn(async move {
                        connection.await;
                        drop(open);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: the kernel keeps the backlog,
                    // and a pause keeps this loop from spinning on the same error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(acceptor);
    drop(open);
    tracing::info!(
        grace_secs = options.grace.as_secs_f32(),
        "shutting down: waiting for open connections"
    );
    finish.cancel();
    if tokio::time::timeout(options.grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: closing the connections still open");
        close.cancel();
        all_closed.recv().await;
    }
    Ok(())
}

/// The application as hyper calls it, once per request.
struct App<E> {
    ep: Arc<E>,
    peer: Peer,
}

impl<E: Endpoint<Output = poem::Response> + 'static>
    hyper::service::Service<hyper::Request<Incoming>> for App<E>
{
    type Response = Answer;
    type Error = Infallible;
    // Boxed: hyper keeps a connection's in-flight request future in an allocation of that
    // future's size for the connection's whole life, and the application's future (every
    // middleware and route) is ~17 KB. Boxed, it is allocated per request and freed once
    // the response head is ready, as under poem's `Server`.
    type Future = BoxFuture<'static, Result<Answer, Infallible>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let ep = self.ep.clone();
        let peer = self.peer.clone();
        Box::pin(async move {
            let req = poem::Request::from((req, peer.local, peer.remote, peer.scheme));
            Ok(hyper::Response::from(ep.get_response(req).await))
        })
    }
}

/// A response as hyper takes it from poem.
type Answer = hyper::Response<BoxBody<hyper::body::Bytes, io::Error>>;

/// The addresses every request on a connection carries.
#[derive(Clone)]
struct Peer {
    local: LocalAddr,
    remote: RemoteAddr,
    scheme: Scheme,
}

async fn serve_connection<E: Endpoint<Output = poem::Response> + 'static>(
    io: GuardedIo<TcpStream>,
    peer: Peer,
    ep: Arc<E>,
    idle_timeout: Duration,
    finish: CancellationToken,
    close: CancellationToken,
) {
    let http2 = tokio::select! {
        sniffed = io.starts_with_h2_preface() => match sniffed {
            Ok(http2) => http2,
            // Nothing (or too little, too slowly) was sent: there is no request to answer.
            Err(_) => return,
        },
        // No request yet (browsers open connections ahead of need): nothing to wait for.
        () = finish.cancelled() => return,
    };
    let activity = io.activity();
    let service = App { ep, peer };
    let io = TokioIo::new(io);
    if http2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service);
        // Boxed: the task's future is as large as its largest branch, and HTTP/2's
        // connection state is the larger one while most clients speak HTTP/1.1.
        let graceful = hyper::server::conn::http2::Connection::graceful_shutdown;
        Box::pin(drive(conn, graceful, activity, idle_timeout, finish, close)).await;
    } else {
        // hyper grows a connection's read buffer up to 400 KiB while a large body streams
        // in; capped, 50 uploads at once hold 3 MiB of it instead of 20 (requests' heads
        // still get 64 KiB).
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(READ_BUFFER_BYTES)
            .serve_connection(io, service);
        let graceful = hyper::server::conn::http1::Connection::graceful_shutdown;
        drive(conn, graceful, activity, idle_timeout, finish, close).await;
    }
}

/// Runs `conn` to its end: asked to finish (`graceful_shutdown`, hyper's method for either
/// version) on shutdown or after `idle_timeout` without a byte either way, closed outright
/// when `close` fires.
async fn drive<C: Future>(
    conn: C,
    graceful_shutdown: fn(Pin<&mut C>),
    activity: Activity,
    idle_timeout: Duration,
    finish: CancellationToken,
    close: CancellationToken,
) {
    let mut conn = std::pin::pin!(conn);
    let idle = tokio::time::sleep(idle_timeout);
    let mut idle = std::pin::pin!(idle);
    let mut finishing = false;
    loop {
        tokio::select! {
            // Errors are the client's going away or sending garbage; hyper has answered
            // what can be answered.
            _ = conn.as_mut() => return,
            () = close.cancelled() => return,
            () = finish.cancelled(), if !finishing => {
                finishing = true;
                graceful_shutdown(conn.as_mut());
            }
            () = idle.as_mut(), if !finishing => {
                // The timer is re-armed from the last activity instead of on every byte.
                let due = activity.last() + idle_timeout;
                if due <= Instant::now() {
                    tracing::debug!("closing an idle connection");
                    finishing = true;
                    graceful_shutdown(conn.as_mut());
                } else {
                    idle.as_mut().reset(due);
                }
            }
        }
    }
}
