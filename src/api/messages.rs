use poem::{web::Data, IntoResponse, Request, Response};
use poem_openapi::{
    param::Header,
    payload::Json,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry},
    types::Type,
    ApiResponse, OpenApi,
};

use super::{
    stream::turn_events,
    types::{IdempotencyKeyParam, SendMessageRequest, SendMessageResponse},
    ApiTags, ClientSecret,
};
use crate::{
    api::error::{described, route_errors, ApiError},
    api::AppState,
    chat::SendMessage,
    domain::{IdempotencyKey, MessageText, MessageTextError, ThreadId},
};

pub struct MessagesApi;

route_errors! {
    SendMessageError {
        400 => described::MALFORMED_BODY,
        401 => described::UNAUTHORIZED,
        404 => described::THREAD_NOT_FOUND,
        409 => "A request with this Idempotency-Key is still being answered \
            (`idempotency.in_progress`)",
        413 => described::TOO_LARGE,
        415 => described::UNSUPPORTED_MEDIA_TYPE,
        422 => "The message is blank (`message.empty`) or too long (`message.too_long`), \
            a string field is sent as another JSON type, it contains NUL or the Idempotency-Key is not 1 to 255 visible ASCII characters \
            or is sent twice (`request.invalid`), or the Idempotency-Key was used for a \
            different request (`idempotency.mismatch`)",
        429 => described::RATE_LIMITED,
        502 => "The agent failed; the message stays recorded, retry with the same \
            Idempotency-Key (`agent.unavailable`)",
        503 => described::UNAVAILABLE_WRITE,
    }
}

/// The answer as one JSON object, or as server-sent events.
pub enum JsonOrEvents {
    Json(SendMessageResponse),
    Events(Response),
}

impl IntoResponse for JsonOrEvents {
    fn into_response(self) -> Response {
        match self {
            Self::Json(body) => Json(body).into_response(),
            Self::Events(resp) => resp,
        }
    }
}

impl ApiResponse for JsonOrEvents {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The recorded turn: JSON, or with `Accept: text/event-stream` the events \
                    `message.recorded` {thread_id, message_id}, `delta` {text}, `tool_call` \
                    {tool, args, result}, then `done` (this JSON object) or `error` {code, message}, \
                    with `: keep-alive` comments in between.",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: "application/json",
                        schema: SendMessageResponse::schema_ref(),
                    },
                    MetaMediaType {
                        content_type: "text/event-stream",
                        schema: event_stream_schema(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        SendMessageResponse::register(registry);
    }
}

/// The event stream as text, with an example of one turn that called a tool, so the event
/// names and their data read as they arrive.
fn event_stream_schema() -> MetaSchemaRef {
    const EXAMPLE: &str = "event: message.recorded\n\
        data: {\"thread_id\":\"thr_0193522c4e1d7c3a9f2b6e8d0a4c1f57\",\"message_id\":\"msg_0193522c4e2f7b18a6c04d9e3b5f7a21\"}\n\n\
        event: tool_call\n\
        data: {\"tool\":\"add_task\",\"args\":{\"title\":\"Buy milk\"},\"result\":{\"task\":{\"task_id\":3,\"title\":\"Buy milk\",\"description\":null,\"completed\":false,\"created_at\":\"2026-11-22T08:03:39.870Z\"}}}\n\n\
        event: delta\n\
        data: {\"text\":\"Added \\\"Buy milk\\\" as task 3.\"}\n\n\
        : keep-alive\n\n\
        event: done\n\
        data: {\"message_id\":\"msg_0193522c4e2f7b18a6c04d9e3b5f7a21\",\"response_id\":\"msg_0193522c9b0e7a41b3d95c7e2f816a0d\",\"response\":\"Added \\\"Buy milk\\\" as task 3.\",\"thread_id\":\"thr_0193522c4e1d7c3a9f2b6e8d0a4c1f57\",\"tool_calls\":[{\"tool\":\"add_task\",\"args\":{\"title\":\"Buy milk\"},\"result\":{\"task\":{\"task_id\":3,\"title\":\"Buy milk\",\"description\":null,\"completed\":false,\"created_at\":\"2026-11-22T08:03:39.870Z\"}}}]}\n\n";
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        example: Some(serde_json::Value::from(EXAMPLE)),
        ..MetaSchema::new("string")
    }))
}

/// The `Idempotency-Key`, read from the raw header: the typed parameter drops a value that
/// is not visible ASCII, which would silently turn a retry into a second turn.
fn idempotency_key(req: &Request) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::Invalid(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    IdempotencyKey::from_bytes(value.as_bytes())
        .map(Some)
        .map_err(ApiError::Invalid)
}

fn wants_events(req: &Request) -> bool {
    req.headers()
        .get(poem::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

#[OpenApi(tag = "ApiTags::Messages", prefix_path = &super::prefix::current())]
impl MessagesApi {
    /// Send a message and get the assistant's answer (JSON, or streamed as SSE).
    ///
    /// The message is recorded before the agent runs. `thread_id: null` starts a new thread.
    /// If the agent fails (502 `agent.unavailable`, or an `error` event when streaming) the
    /// message stays recorded; retry with the same `Idempotency-Key` to have it answered
    /// without recording it twice. A retry after success returns the stored answer.
    /// Errors found before the agent runs (auth, validation, unknown thread) are JSON 4xx
    /// even when streaming was asked for.
    #[oai(path = "/messages", method = "post", operation_id = "sendMessage")]
    async fn send(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        req: &Request,
        body: Json<SendMessageRequest>,
        /// Makes retries safe: 1 to 255 visible ASCII characters, unique per request.
        #[oai(name = "Idempotency-Key")]
        _documented_key: Header<Option<IdempotencyKeyParam>>,
    ) -> Result<JsonOrEvents, SendMessageError> {
        let max = state.settings.messages.max_chars;
        let message = MessageText::parse(&body.0.message, max).map_err(|e| match e {
            MessageTextError::Empty => ApiError::MessageEmpty,
            MessageTextError::Nul => {
                ApiError::Invalid("the message must not contain NUL characters".into())
            }
            MessageTextError::TooLong { max, got } => ApiError::MessageTooLong { max, got },
        })?;
        let key = idempotency_key(req)?;
        let request = SendMessage {
            // A thread id of a shape we never mint names no thread: 404, like an unknown one.
            thread_id: body
                .0
                .thread_id
                .map(|id| ThreadId::parse(&id.into_inner()).ok_or(ApiError::ThreadNotFound))
                .transpose()?,
            message,
            key,
            payload: None,
        };
        let user = auth.0.user;
        state.limits.turn(&user).await?;
        if wants_events(req) {
            let recorded = state.chat.record(&user, &request).await?;
            let keep_alive = std::time::Duration::from_secs(state.settings.stream.keep_alive_secs);
            return Ok(JsonOrEvents::Events(turn_events(
                &state.chat,
                &user,
                recorded,
                keep_alive,
            )));
        }
        let result = state.chat.send(&user, request).await?;
        Ok(JsonOrEvents::Json(result.into()))
    }
}
