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
//! plus `: keep-alive` comments while the agent works. If the client goes away, the turn
//! still runs to the end and is recorded (it runs on its own task): reconnecting clients
//! find the whole answer in the thread, and nothing partial is ever recorded.

use std::time::Duration;

use futures_util::stream;
use poem::{Body, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::types::SendMessageResponse;
use crate::{
    api::error::ApiError,
    chat::{ChatService, Recorded, TurnEvent},
    domain::UserId,
};

fn frame(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// The frame for one turn event; `None` for events this format does not carry (the
/// ChatKit item bookkeeping).
fn encode(event: TurnEvent) -> Option<String> {
    Some(match event {
        TurnEvent::TextDelta(text) => frame("delta", &json!({ "text": text })),
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
                &SendMessageResponse::from(done)
                    .to_json()
                    .unwrap_or_default(),
            )
        }
        TurnEvent::Failed(e) => {
            let e = ApiError::from(e);
            frame(
                "error",
                &json!({"code": e.code(), "message": e.to_string()}),
            )
        }
        TurnEvent::WorkflowStarted { .. }
        | TurnEvent::WorkflowDone { .. }
        | TurnEvent::MessageStarted { .. } => return None,
    })
}

/// Streams the answer to a recorded turn.
pub fn turn_events(
    chat: &ChatService,
    user: &UserId,
    recorded: Recorded,
    keep_alive: Duration,
) -> Response {
    let turn = recorded.turn().clone();
    let mut events = chat.stream(user, recorded);
    let (tx, rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let first = frame(
            "message.recorded",
            &json!({"thread_id": turn.thread_id, "message_id": turn.id}),
        );
        // A send fails only when the client has gone; the turn goes on regardless.
        if tx.send(first).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(keep_alive.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            let text = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => match encode(event) {
                        Some(text) => text,
                        None => continue,
                    },
                    None => break,
                },
                _ = tick.tick() => ": keep-alive\n\n".to_owned(),
            };
            if tx.send(text).await.is_err() {
                break;
            }
        }
    });
    // The guard lives in the body stream: the gauge counts until the client has it all or
    // goes away.
    let open = (rx, crate::metrics::StreamGuard::new());
    let body = stream::unfold(open, |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, std::io::Error>(frame), (rx, guard)))
    });
    Response::builder()
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(body))
}
