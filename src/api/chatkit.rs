//! `POST /chatkit` (path configurable): the ChatKit protocol endpoint. Thin: authenticate
//! (before any byte of a stream), hand the body to [`ChatKitService`], frame the answer.
//! Plain poem rather than poem-openapi, because the widget's body is one tagged union and
//! need not be sent as `application/json`.

use futures_util::stream;
use poem::{handler, http::header, web::Data, Body, IntoResponse, Request, Response};

use crate::{
    api::error::ApiError,
    api::AppState,
    chatkit::{ChatKitService, Outcome},
};

/// The client_secret of the request. (Two `Authorization` headers never get here: the
/// server wiring refuses them for every route.)
fn bearer(req: &Request) -> Result<&str, ApiError> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .ok_or_else(|| crate::auth::AuthError::MissingToken.into())
}

#[handler]
pub async fn endpoint(
    req: &Request,
    state: Data<&AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = state.auth.authenticate(bearer(req)?).await?;
    tracing::Span::current().record("user_id", tracing::field::display(&principal.user));
    let limit = state.settings.server.body_limit_bytes;
    let body = body.into_bytes_limit(limit).await.map_err(|_| {
        ApiError::Malformed(format!("the body could not be read (limit {limit} bytes)"))
    })?;
    state.limits.chatkit_request(&principal.user, &body).await?;
    let service: &ChatKitService = &state.chatkit;
    match service.handle(&principal.user, &body).await? {
        Outcome::Json(value) => Ok(Response::builder()
            .content_type("application/json")
            .body(value.to_string())),
        Outcome::Stream(events) => {
            // Everything already queued goes out as one write: a turn's events come in
            // bursts, and one chunk per frame cost a write (and a TCP segment) each.
            // The guard lives in the body stream: the gauge counts until the client has it all
            // or goes away.
            // No keep-alive comments here, unlike REST streams: the official server sends
            // none and the widget's tolerance of them is untested (chatkit-protocol.md,
            // pitfall 14). A proxy in front needs an idle timeout above the longest silence
            // of a turn (the agent's `total_timeout_ms` bounds it).
            let open = (events, crate::metrics::StreamGuard::new());
            let frames = stream::unfold(open, |(mut events, guard)| async move {
                let chunk = events.next_chunk().await?;
                Some((Ok::<_, std::io::Error>(chunk), (events, guard)))
            });
            Ok(Response::builder()
                .content_type("text/event-stream")
                .header("cache-control", "no-cache")
                .header("x-accel-buffering", "no")
                .body(Body::from_bytes_stream(frames))
                .into_response())
        }
    }
}
