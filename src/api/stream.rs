//! Server-sent events for `POST /messages` with `Accept: text/event-stream`.
//!
//! Events (each `event: <name>` + one line of JSON `data`):
//! - `message.recorded` `{thread_id, message_id}`: the user's message is durable
//! - `delta` `{text}`: assistant text as it is written (deltas add up to the reply)
//! - `tool_call` `{tool, args, result}`: a task tool the agent ran
//! - `done`: the recorded reply, the same object the JSON response carries
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
    agent::{AgentEvent, EventSink},
    chat::{ChatService, Recorded},
    domain::UserId,
    error::ApiError,
};

fn frame(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn event_frame(event: AgentEvent) -> String {
    match event {
        AgentEvent::TextDelta(text) => frame("delta", &json!({ "text": text })),
        AgentEvent::ToolCall(call) => frame("tool_call", &json!(call)),
    }
}

/// Streams the answer to a recorded turn.
pub fn turn_events(
    chat: ChatService,
    user: UserId,
    recorded: Recorded,
    keep_alive: Duration,
) -> Response {
    let (tx, rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        // A send fails only when the client has gone; the turn goes on regardless.
        let send = |text: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(text).await;
            }
        };
        let turn = match &recorded {
            Recorded::NeedsAnswer(t) | Recorded::Answered(t) => t.clone(),
        };
        send(frame(
            "message.recorded",
            &json!({"thread_id": turn.thread_id, "message_id": turn.id}),
        ))
        .await;
        let result = match recorded {
            Recorded::Answered(turn) => chat.load_completed(&user, &turn).await,
            Recorded::NeedsAnswer(turn) => {
                let (events_tx, mut events) = mpsc::unbounded_channel();
                let answer = chat.answer(&user, turn, EventSink::new(events_tx));
                tokio::pin!(answer);
                let mut tick = tokio::time::interval(keep_alive.max(Duration::from_millis(100)));
                tick.tick().await;
                loop {
                    tokio::select! {
                        result = &mut answer => {
                            while let Ok(event) = events.try_recv() {
                                send(event_frame(event)).await;
                            }
                            break result;
                        }
                        Some(event) = events.recv() => send(event_frame(event)).await,
                        _ = tick.tick() => send(": keep-alive\n\n".to_owned()).await,
                    }
                }
            }
        };
        let last = match result {
            Ok(done) => {
                use poem_openapi::types::ToJSON;
                frame(
                    "done",
                    &SendMessageResponse::from(done)
                        .to_json()
                        .unwrap_or_default(),
                )
            }
            Err(e) => {
                let e = ApiError::from(e);
                frame(
                    "error",
                    &json!({"code": e.code(), "message": e.to_string()}),
                )
            }
        };
        send(last).await;
    });
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, std::io::Error>(frame), rx))
    });
    Response::builder()
        .content_type("text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_bytes_stream(body))
}
