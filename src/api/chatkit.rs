//! `POST /chatkit` (path configurable): the ChatKit protocol endpoint. Thin: authenticate
//! (before the body is read, so before any byte of a stream), parse the request once,
//! count a turn against the rate limit, hand the request to [`ChatKitService`], frame the
//! answer.
//!
//! A poem-openapi operation so the document and Swagger UI describe it, with extractors of
//! its own: the widget's body is one tagged union that need not be sent as
//! `application/json` (poem-openapi's payloads would refuse it), so the body is taken raw
//! and parsed by [`ChatKitRequest::parse`]; the types the document shows for it are in
//! `chatkit_doc.rs`.

use poem::{web::Data, Body, IntoResponse, Request, RequestBody, Response};
use poem_openapi::{
    registry::{
        MetaMediaType, MetaRequest, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef,
        Registry,
    },
    types::Type,
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, OpenApi,
};
use serde_json::json;

use super::{
    chatkit_doc::{ChatKitJsonAnswer, ChatKitRequest},
    error::{described, route_errors, ApiError},
    ApiTags, AppState, ClientSecret,
};
use crate::{
    auth::Principal,
    chatkit::{ChatKitService, Outcome, Request as ChatKitRequestParsed},
};

pub struct ChatKitApi;

route_errors! {
    ChatKitRouteError {
        400 => "Not a request this server answers: a body that is not JSON, not \
            `{\"type\", \"params\"}` or whose `params` do not fit its type, an unknown type, \
            a content part that is neither `input_text` nor `input_tag`, an \
            `inference_options.tool_choice.id` that is not a tool name, an `order` other \
            than `asc`/`desc`, an `after` that names no element of the list, several \
            `Authorization` headers (`request.malformed`); an \
            `inference_options.model` this server does not offer (`model.not_allowed`); a \
            widget action of a type this server does not carry out (`action.unknown`), or \
            whose payload or widget does not fit it (`action.invalid`); dictation that is \
            not base64 or is empty (`transcription.audio_invalid`)",
        401 => described::UNAUTHORIZED,
        404 => "The thread does not exist or is another user's (`thread.not_found`); an item \
            the request names is not in the thread, not a user message for a retry or not a \
            question for `threads.add_structured_input` (`item.not_found`); the task a \
            widget action names does not exist (`task.not_found`); an attachment the request \
            names does not exist or is another user's (`attachment.not_found`)",
        409 => "A turn of the thread is still being answered (`turn.in_progress`, \
            `threads.retry_after_item`); the newest item of the thread is not the pending \
            client tool call or question the output or answers are for \
            (`item.not_pending`); the task tool refused a widget action (`action.failed`); \
            an attachment of the message has not been uploaded (`attachment.not_uploaded`) \
            or was sent in another thread (`attachment.in_use`); `attachments.create` over \
            the user's quota (`attachment.quota_exceeded`)",
        413 => "The body is over `server.body_limit_bytes` (`request.too_large`; an \
            `input.transcribe` may be as large as the base64 of \
            `agent.openai.max_audio_bytes` plus 64 KiB); `attachments.create` of more than \
            `attachments.max_bytes` (`attachment.too_large`); dictation of more than \
            `agent.openai.max_audio_bytes` (`transcription.too_large`)",
        415 => "`attachments.create` of a type not in `attachments.allowed_mime_types` \
            (`attachment.type_not_allowed`); dictation whose `mime_type` is not `audio/*` \
            (`transcription.type_not_allowed`)",
        422 => "A blank or over-long title in `threads.update`, a NUL character in a message, \
            more than 10 attachments in one message, a client tool's output over 64 KiB of \
            JSON, answers that do not fit the question (an unknown input id, a value that \
            is not one of the options, several values where one is taken, a `status` other \
            than `answered` or `skipped`) (`request.invalid`); `attachments.create` with a \
            name that is a path or holds control characters (`attachment.name_invalid`) or \
            a size of 0 (`attachment.empty`)",
        429 => "Over the user's `turns` rate limit (`rate_limited`; turns only: \
            `threads.create`, `threads.add_user_message`, `threads.retry_after_item`, \
            `threads.add_client_tool_output`, `threads.add_structured_input`, and \
            `input.transcribe`); retry after `Retry-After` seconds",
        501 => "`input.transcribe` with an agent that cannot transcribe, the local one \
            (`transcription.unavailable`)",
        502 => "The tools a widget action runs through could not be reached, or the \
            provider failed to transcribe (`transcription.failed`)",
        503 => "The database is unreachable (`service.unavailable`), read-only \
            (`service.read_only`) or full (`service.storage_full`), or the attachment \
            storage is unreachable (`attachment.storage_unavailable`); retry after \
            `Retry-After` seconds",
    }
}

/// The caller, by the client_secret in `Authorization`: the same check as every REST
/// route (`ClientSecret` in the document), made before the body is read.
pub struct Caller(Principal);

impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <ClientSecret as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <ClientSecret as ApiExtractor>::security_schemes()
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(super::security::client_secret(req).await?))
    }
}

/// The body, taken unread: the handler reads it, within the body limit, once the caller
/// is known. Documented as [`ChatKitRequest`], whatever `Content-Type` it comes with.
pub struct ChatKitBody(Body);

/// What Swagger UI's "Try it out" starts from: a request answered as JSON.
fn example_request() -> serde_json::Value {
    json!({"type": "threads.list", "params": {}})
}

impl<'a> ApiExtractor<'a> for ChatKitBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        ChatKitRequest::register(registry);
        // On the union itself: a schema wrapping it to carry the example reads, to client
        // generators, as one that extends it.
        if let Some(schema) = registry.schemas.get_mut(&*ChatKitRequest::name()) {
            schema.example = Some(example_request());
        }
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "A ChatKit request, read as JSON whatever its `Content-Type` (the widget may \
                 send none).",
            ),
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: ChatKitRequest::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        _req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(body.take()?))
    }
}

/// The answer: one JSON value (serialized), or a stream of events.
pub enum ChatKitAnswer {
    Json(Vec<u8>),
    Events(Response),
}

impl IntoResponse for ChatKitAnswer {
    fn into_response(self) -> Response {
        match self {
            Self::Json(body) => Response::builder()
                .content_type("application/json")
                .body(body),
            Self::Events(resp) => resp,
        }
    }
}

impl ApiResponse for ChatKitAnswer {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Decided by the request type alone. JSON (`threads.get_by_id`, \
                    `threads.list`, `items.list`, `threads.update`, `threads.delete`, \
                    `items.feedback`, `threads.sync_custom_action`, `attachments.create`, \
                    `attachments.delete`, `input.transcribe`): one value. A stream \
                    (`threads.create`, `threads.add_user_message`, \
                    `threads.add_client_tool_output`, `threads.add_structured_input`, \
                    `threads.retry_after_item`, `threads.custom_action`): \
                    `text/event-stream` with `Cache-Control: no-cache`, one event per frame, \
                    `data: <JSON on one line>` and a blank line (the events are listed with \
                    the frame's schema); no keep-alive comments; the stream ends when the \
                    response does. A turn's stream is the \
                    user's message (`thread.item.done`, after `thread.created` for \
                    `threads.create`), `stream_options`, then the answer's items as they \
                    form. Errors found before the stream are JSON errors (the statuses \
                    below); a turn that fails later ends its stream with an `error` event.",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: "application/json",
                        schema: ChatKitJsonAnswer::schema_ref(),
                    },
                    MetaMediaType {
                        content_type: "text/event-stream",
                        schema: frame_schema(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        ChatKitJsonAnswer::register(registry);
    }
}

/// The events, in words: OpenAPI 3.0 cannot say that a frame's `data` is a string holding
/// JSON of a given schema, and a stream's schema describes each frame (`{data, event?}`,
/// as Schemathesis reads it), so the event union cannot be a schema of its own.
const EVENTS: &str = "One frame of the stream: `data: <one event as one line of JSON>` and \
    a blank line, with no `event:`, `id:`, `retry:` or comment lines; the stream ends when \
    the response does. Each event is an object tagged by `type`:\n\n\
    - `thread.created` {thread: ChatKitThread}: first event of `threads.create`; the thread \
    and the user's message are recorded\n\
    - `thread.updated` {thread: ChatKitThread}\n\
    - `thread.item.added` {item: ChatKitItem}: an item begins (a workflow without tasks, an \
    answer without content)\n\
    - `thread.item.updated` {item_id, update}: an open item changes; `update` by `type`: \
    `assistant_message.content_part.added` {content_index, content: ChatKitOutputText} \
    (empty text), `assistant_message.content_part.text_delta` {content_index, delta} (text \
    to append), `assistant_message.content_part.done` {content_index, content: \
    ChatKitOutputText} (the whole text), `workflow.task.added` {task_index, task: \
    ChatKitWorkflowTask}\n\
    - `thread.item.done` {item: ChatKitItem}: an item in its final form\n\
    - `thread.item.removed` {item_id}: an item the stream announced is taken back (a failed \
    turn)\n\
    - `thread.item.replaced` {item: ChatKitItem}: an item shown before, whole, as it now \
    stands (a widget after a click)\n\
    - `stream_options` {stream_options: {allow_cancel}}: once per turn, before the answer\n\
    - `client_effect` {name, data}: raised on the page as a `chatkit.effect` DOM event \
    (`tasks.changed` {task_ids, change} when a tool or a click changed the user's tasks)\n\
    - `progress_update` {text, icon?}: a status line while a tool runs; not stored\n\
    - `error` {code, message?, allow_retry}: shown inline: a message the gateway refuses \
    (`custom`; nothing is recorded) or a failed turn (`stream.error`)";

/// A frame of the event stream: its `data`, one event as JSON (see [`EVENTS`]).
fn frame_schema() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(EVENTS),
        required: vec!["data"],
        properties: vec![(
            "data",
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                description: Some("One event, as one line of JSON"),
                ..MetaSchema::new("string")
            })),
        )],
        example: Some(json!({
            "data": json!({
                "type": "thread.item.updated",
                "item_id": "msg_0193522c9b0e7a41b3d95c7e2f816a0d",
                "update": {
                    "type": "assistant_message.content_part.text_delta",
                    "content_index": 0,
                    "delta": "Added task 1",
                },
            })
            .to_string()
        })),
        ..MetaSchema::new("object")
    }))
}

/// The largest body of an `input.transcribe`: `agent.openai.max_audio_bytes` of audio as
/// base64 (4 characters per 3 bytes), plus room for the envelope and the MIME type.
#[must_use]
pub fn transcribe_body_limit(max_audio_bytes: u64, body_limit_bytes: usize) -> usize {
    let encoded = max_audio_bytes.div_ceil(3).saturating_mul(4) + 64 * 1024;
    usize::try_from(encoded)
        .unwrap_or(usize::MAX)
        .max(body_limit_bytes)
}

/// The request's body, within `server.body_limit_bytes`, except for dictation: a body of
/// type `input.transcribe` may be as large as [`transcribe_body_limit`]. The route is
/// mounted outside the server-wide body limit for this (app.rs); everything else is held
/// to it here, and a body's size alone is refused before it is read.
async fn read_body(state: &AppState, req: &Request, body: Body) -> Result<bytes::Bytes, ApiError> {
    let limit = state.settings.server.body_limit_bytes;
    let most = transcribe_body_limit(state.settings.agent.openai.max_audio_bytes, limit);
    let too_large = |limit: usize| {
        ApiError::TooLarge(format!(
            "the request body is too large (at most {limit} bytes; an input.transcribe at \
             most {most})"
        ))
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > most) {
        return Err(too_large(limit));
    }
    let bytes = body.into_bytes_limit(most).await.map_err(|e| match e {
        poem::error::ReadBodyError::PayloadTooLarge => too_large(limit),
        other => ApiError::Malformed(format!("the body could not be read: {other}")),
    })?;
    if bytes.len() > limit && !ChatKitRequestParsed::is_transcribe(&bytes) {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

#[OpenApi(tag = "ApiTags::ChatKit", prefix_path = &super::prefix::chatkit())]
impl ChatKitApi {
    /// The ChatKit protocol: one request, by `type`, answered as JSON or as a stream.
    ///
    /// What the ChatKit widget sends in its custom-backend mode (`api.url`), over the same
    /// threads, agent and tools as the REST API (docs/chatkit-protocol.md). Every problem
    /// the gateway can see in a request is answered before the first byte of a stream.
    /// Turns (the five types that run the agent) count against the user's `turns` rate
    /// limit; the other types are not limited.
    #[oai(path = "/", method = "post", operation_id = "chatkit")]
    async fn chatkit(
        &self,
        state: Data<&AppState>,
        caller: Caller,
        req: &Request,
        body: ChatKitBody,
    ) -> Result<ChatKitAnswer, ChatKitRouteError> {
        let principal = caller.0;
        let body = read_body(&state, req, body.0).await?;
        let request = ChatKitRequestParsed::parse(&body).map_err(ApiError::from)?;
        if request.runs_turn() {
            // Boxed, as the service boxes turns: a shared limit's Redis round trip keeps
            // its state out of the reads' future.
            Box::pin(state.limits.turn(&principal.user)).await?;
        }
        let service: &ChatKitService = &state.chatkit;
        match service
            .handle(&principal.user, request)
            .await
            .map_err(ApiError::from)?
        {
            Outcome::Json(value) => Ok(ChatKitAnswer::Json(value)),
            // No keep-alive comments here, unlike REST streams: the official server sends
            // none and the widget's tolerance of them is untested (docs/chatkit-protocol.md).
            // A proxy in front needs an idle timeout above the longest silence of a turn
            // (the agent's `total_timeout_ms` bounds it).
            Outcome::Stream(events) => Ok(ChatKitAnswer::Events(super::sse::response(events))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transcribe_body_limit;

    #[test]
    fn dictation_bodies_fit_the_base64_of_the_largest_recording() {
        // 25 MiB of audio is 34.95 MB of base64.
        let limit = transcribe_body_limit(25 << 20, 256 << 10);
        assert_eq!(limit, (25 << 20) / 3 * 4 + 4 + 64 * 1024);
        // Never below the server's own limit.
        assert_eq!(transcribe_body_limit(10, 1 << 20), 1 << 20);
    }
}
