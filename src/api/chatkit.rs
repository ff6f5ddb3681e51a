//! `POST /chatkit` (path configurable): the ChatKit protocol endpoint. Thin: authenticate
//! (before any byte of a stream), parse the request once, count a turn against the rate
//! limit, hand the request to [`ChatKitService`], frame the answer.
//! Plain poem rather than poem-openapi, because the widget's body is one tagged union and
//! need not be sent as `application/json`.

use poem::{handler, web::Data, Body, Request, Response};

use crate::{
    api::error::ApiError,
    api::AppState,
    chatkit::{ChatKitService, Outcome, Request as ChatKitRequest},
};

#[handler]
pub async fn endpoint(
    req: &Request,
    state: Data<&AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = super::security::client_secret(req).await?;
    let limit = state.settings.server.body_limit_bytes;
    let body = body.into_bytes_limit(limit).await.map_err(|_| {
        ApiError::Malformed(format!("the body could not be read (limit {limit} bytes)"))
    })?;
    let request = ChatKitRequest::parse(&body)?;
    if request.runs_turn() {
        state.limits.turn(&principal.user).await?;
    }
    let service: &ChatKitService = &state.chatkit;
    match service.handle(&principal.user, request).await? {
        Outcome::Json(value) => Ok(Response::builder()
            .content_type("application/json")
            .body(value.to_string())),
        // No keep-alive comments here, unlike REST streams: the official server sends none
        // and the widget's tolerance of them is untested (docs/chatkit-protocol.md). A proxy
        // in front needs an idle timeout above the longest silence of a turn (the agent's
        // `total_timeout_ms` bounds it).
        Outcome::Stream(events) => Ok(super::sse::response(events)),
    }
}
