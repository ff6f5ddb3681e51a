//! Server-sent events for `POST /messages` with `Accept: text/event-stream`: an encoder
//! over the turn's [`TurnEvent`]s (the turn itself runs in [`crate::chat`]).
//!
//! Events (each `event: <name>` + one line of JSON `data`):
//! - `message.recorded` `{thread_id, message_id}`: the user's message is durable
//! - `delta` `{text}`: assistant text as it is written (deltas add up to the answer)
//! - `tool_call` `{tool, args, result}`: a task tool the agent ran
//! - `done`: the recorded turn, the same object the JSON response carries
//! - `error` `{code, message}`: the agent failed; the user's message stays recorded
//!
//! plus a `: keep-alive` comment whenever nothing else was sent for `stream.keep_alive_secs`
//! while the agent works. If the client goes away, the turn
//! still runs to the end and is recorded (it runs on its own task): reconnecting clients
//! find the whole answer in the thread, and nothing partial is ever recorded.

use std::time::Duration;

use futures_channel::mpsc;
use futures_util::StreamExt;
use poem::Response;
use serde_json::json;

use super::{sse::SseChunks, types::SendMessageResponse};
use crate::{
    api::error::ApiError,
    chat::{ChatService, Recorded, TurnEvent},
    domain::UserId,
};

fn frame(event: &str, data: &impl serde::Serialize) -> String {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    format!("event: {event}\ndata: {data}\n\n")
}

#[derive(serde::Serialize)]
struct Delta<'a> {
    text: &'a str,
}

/// The frame for one turn event; `None` for events this format does not carry (the
/// ChatKit item bookkeeping).
fn encode(event: TurnEvent) -> Option<String> {
    Some(match event {
        // The most frequent frame: written straight, without a map in between.
        TurnEvent::TextDelta(text) => frame("delta", &Delta { text: &text }),
        TurnEvent::ToolCall { call, .. } => frame("tool_call", &json!(call)),
        TurnEvent::WorkflowReplaced { calls, .. } => {
            // A tool that ran after the answer's text began: still one `tool_call` each.
            let last = calls.last()?;
            frame("tool_call", &json!(last))
        }
        TurnEvent::Completed(done) => {
            use poem_openapi::types::ToJSON;
            frame(
                "done",
                &SendMessageResponse::from(*done)
                    .to_json()
                    .unwrap_or_default(),
            )
        }
        TurnEvent::Failed(e) => {
            let e = ApiError::from(*e);
            frame(
                "error",
                &json!({"code": e.code(), "message": e.to_string()}),
            )
        }
        TurnEvent::WorkflowStarted { .. }
        | TurnEvent::ToolStarted { .. }
        | TurnEvent::ThreadUpdated(_)
        | TurnEvent::WorkflowDone { .. }
        | TurnEvent::MessageStarted { .. } => return None,
    })
}

/// A streamed turn as its body reads it: the first frame, then the turn's events, encoded
/// as they arrive, with a keep-alive comment after each silence of `keep_alive`. The body
/// polls the turn's channel itself (no task and no second channel in between); the turn
/// runs on its own task whether or not anyone reads.
struct TurnSse {
    first: Option<String>,
    events: mpsc::UnboundedReceiver<TurnEvent>,
    keep_alive: Duration,
}

impl SseChunks for TurnSse {
    async fn next_chunk(&mut self) -> Option<String> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            let event = match tokio::time::timeout(self.keep_alive, self.events.next()).await {
                Err(_) => return Some(": keep-alive\n\n".to_owned()),
                Ok(None) => return None,
                Ok(Some(event)) => event,
            };
            let Some(mut chunk) = encode(event) else {
                continue;
            };
            // Events already queued go out in the same write.
            while let Ok(event) = self.events.try_recv() {
                if let Some(text) = encode(event) {
                    chunk.push_str(&text);
                }
            }
            return Some(chunk);
        }
    }
}

/// Streams the answer to a recorded turn.
pub fn turn_events(
    chat: &ChatService,
    user: &UserId,
    recorded: Recorded,
    keep_alive: Duration,
) -> Response {
    let turn = recorded.turn();
    let first = frame(
        "message.recorded",
        &json!({"thread_id": turn.thread_id, "message_id": turn.id}),
    );
    super::sse::response(TurnSse {
        first: Some(first),
        events: chat.stream(user, recorded),
        keep_alive: keep_alive.max(Duration::from_millis(100)),
    })
}
