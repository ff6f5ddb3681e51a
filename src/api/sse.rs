//! The one server-sent-events response both stream routes answer with: `POST /messages`
//! with `Accept: text/event-stream` ([`super::stream`]) and the ChatKit endpoint
//! ([`super::chatkit`]). Each route's encoder yields chunks; this sets the headers, keeps
//! the open-streams gauge up for the body's life and writes each chunk as it comes.

use std::future::Future;

use futures_util::stream;
use poem::{Body, Response};

/// A source of SSE text, one chunk per write: everything ready at once goes out together
/// (a turn's events come in bursts, and one chunk per frame cost a write, and a TCP
/// segment, each). `None` ends the stream.
pub trait SseChunks: Send + 'static {
    fn next_chunk(&mut self) -> impl Future<Output = Option<String>> + Send;
}

/// A `text/event-stream` answer that reads `source` until it ends or the client goes away.
pub fn response(source: impl SseChunks) -> Response {
    // The guard lives in the body: the gauge counts until the client has it all or goes
    // away.
    let open = (source, crate::metrics::StreamGuard::new());
    let body = stream::unfold(open, |(mut source, guard)| async move {
        let chunk = source.next_chunk().await?;
        Some((Ok::<_, std::io::Error>(chunk), (source, guard)))
    });
    Response::builder()
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        // Proxies such as nginx buffer answers unless told otherwise.
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(body))
}

impl SseChunks for crate::chatkit::TurnStream {
    fn next_chunk(&mut self) -> impl Future<Output = Option<String>> + Send {
        crate::chatkit::TurnStream::next_chunk(self)
    }
}
