//! ChatKit's encoder over a turn's [`TurnEvent`]s: items announced, updated and done with
//! the ids they are recorded under; on failure every announced item is removed again, so
//! the widget shows what a reload will show.

use chrono::{DateTime, Utc};
use futures_channel::mpsc::UnboundedReceiver;
use futures_util::StreamExt;
use serde_json::json;

use super::{
    items::{self, assistant_item, item, task, workflow_item},
    wire::{Event, ItemUpdate, OutputText, Page},
};
use crate::{
    chat::{ChatError, StopOnDrop, TurnEvent},
    domain::task_list::{change_of_tool, task_rows_from, TaskChange},
    store::StoreError,
};

/// The effect a host page refreshes its task views on: which tasks changed and how, one
/// shape for every change (a turn's tool call or a click on a widget). Listings and
/// failed calls change nothing.
pub(super) fn tasks_changed(tool: &str, result: &serde_json::Value) -> Option<Event> {
    let change = change_of_tool(tool).filter(|c| *c != TaskChange::Listed)?;
    if result.get("error").is_some() {
        return None;
    }
    let ids: Vec<i64> = task_rows_from(result).iter().map(|row| row.id).collect();
    (!ids.is_empty()).then(|| tasks_changed_effect(&ids, change))
}

/// `tasks.changed` with its one data shape: `{"task_ids": [...], "change": "..."}`.
pub(super) fn tasks_changed_effect(ids: &[i64], change: TaskChange) -> Event {
    Event::ClientEffect {
        name: "tasks.changed".to_owned(),
        data: json!({"task_ids": ids, "change": change.as_str()}),
    }
}

/// The status line shown while `tool` runs.
fn tool_progress(tool: &str) -> Event {
    let name = tool.rsplit_once("__").map_or(tool, |(_, name)| name);
    let text = match change_of_tool(name) {
        Some(TaskChange::Listed) => "Looking at your tasks…".to_owned(),
        Some(TaskChange::Added) => "Adding a task…".to_owned(),
        Some(TaskChange::Completed) => "Completing a task…".to_owned(),
        Some(TaskChange::Reopened) => "Reopening a task…".to_owned(),
        Some(TaskChange::Updated) => "Updating a task…".to_owned(),
        Some(TaskChange::Deleted) => "Deleting a task…".to_owned(),
        None => format!("Running {name}…"),
    };
    Event::ProgressUpdate {
        text,
        icon: Some("bolt"),
    }
}

/// What a stream body sends: events ready at once (the echo of the user's message,
/// `stream_options`, an inline error), then, for a turn, the turn's events as ChatKit
/// events as they arrive. The body reads the turn's channel itself: no task and no second
/// channel per stream. A client that goes away drops it; the turn runs on regardless.
pub struct TurnStream {
    first: Vec<Event>,
    // Boxed: the encoder's state is most of a stream's size, and a JSON answer has none.
    turn: Option<Box<(UnboundedReceiver<TurnEvent>, TurnEncoder)>>,
    /// Stops the answer if the stream is dropped before the turn is done (the widget's
    /// stop button closes it).
    _stop: Option<StopOnDrop>,
}

impl TurnStream {
    /// Just these events.
    #[must_use]
    pub fn events(first: Vec<Event>) -> Self {
        Self {
            first,
            turn: None,
            _stop: None,
        }
    }

    /// `first`, then the turn of `thread_id` whose events `events` receives.
    #[must_use]
    pub fn turn(
        first: Vec<Event>,
        thread_id: String,
        events: UnboundedReceiver<TurnEvent>,
        stop: StopOnDrop,
    ) -> Self {
        Self {
            first,
            turn: Some(Box::new((events, TurnEncoder::new(thread_id)))),
            _stop: Some(stop),
        }
    }

    /// The next SSE chunk: every frame ready now (one write for a burst of events), waiting
    /// for the turn when nothing is; `None` at the end.
    pub async fn next_chunk(&mut self) -> Option<String> {
        let mut out = std::mem::take(&mut self.first);
        if let Some(turn) = &mut self.turn {
            let (events, encoder) = &mut **turn;
            while out.is_empty() && !encoder.done {
                let event = events.next().await?;
                encoder.encode(event, &mut out);
            }
            while !encoder.done {
                match events.try_recv() {
                    Ok(event) => encoder.encode(event, &mut out),
                    Err(_) => break,
                }
            }
        }
        (!out.is_empty()).then(|| out.iter().map(Event::frame).collect())
    }
}

/// Turns one turn's events into ChatKit events, with the state the protocol needs (what
/// was shown, so a failure can take it back; the text so far).
struct TurnEncoder {
    thread_id: String,
    /// Items shown but not yet known to be recorded (removed again if the turn fails).
    shown: Vec<String>,
    workflow_id: Option<String>,
    text: String,
    message_started: bool,
    /// The turn completed or failed: nothing follows.
    done: bool,
    /// The thread's new title, sent once the answer is done.
    retitled: Option<Event>,
    /// The answer's message: id, instant, and whether it has been shown yet.
    message: Option<(String, DateTime<Utc>, bool)>,
}

/// Announces an assistant message and its first (empty) content part.
fn show_message(send: &mut impl FnMut(Event), thread_id: &str, id: &str, at: &DateTime<Utc>) {
    send(Event::ItemAdded {
        item: assistant_item(id, thread_id, at, ""),
    });
    send(Event::ItemUpdated {
        item_id: id.to_owned(),
        update: ItemUpdate::PartAdded {
            content_index: 0,
            content: OutputText::new(String::new()),
        },
    });
}

impl TurnEncoder {
    fn new(thread_id: String) -> Self {
        Self {
            thread_id,
            shown: Vec::new(),
            workflow_id: None,
            text: String::new(),
            message_started: false,
            done: false,
            retitled: None,
            message: None,
        }
    }

    fn encode(&mut self, event: TurnEvent, out: &mut Vec<Event>) {
        let mut send = |event: Event| out.push(event);
        let Self {
            thread_id,
            shown,
            workflow_id,
            text,
            message_started,
            done: finished,
            retitled,
            message,
        } = self;
        let thread_id = &*thread_id;
        match event {
            TurnEvent::WorkflowStarted { id, at } => {
                send(Event::ItemAdded {
                    item: workflow_item(id.clone(), thread_id.clone(), &at, &[]),
                });
                shown.push(id.clone());
                *workflow_id = Some(id);
            }
            TurnEvent::ToolCall { index, call } => {
                if let Some(id) = &workflow_id {
                    send(Event::ItemUpdated {
                        item_id: id.clone(),
                        update: ItemUpdate::TaskAdded {
                            task_index: index,
                            task: task(&call),
                        },
                    });
                }
                if let Some(effect) = tasks_changed(&call.tool, &call.result) {
                    send(effect);
                }
            }
            TurnEvent::WorkflowDone { id, at, calls } => {
                if workflow_id.is_none() {
                    // The provider did not report its calls as they ran: show them now.
                    calls
                        .iter()
                        .filter_map(|c| tasks_changed(&c.tool, &c.result))
                        .for_each(&mut send);
                    shown.push(id.clone());
                    *workflow_id = Some(id.clone());
                }
                send(Event::ItemDone {
                    item: workflow_item(id, thread_id.clone(), &at, &calls),
                });
            }
            TurnEvent::WorkflowReplaced { id, at, calls } => {
                if let Some(effect) = calls.last().and_then(|c| tasks_changed(&c.tool, &c.result)) {
                    send(effect);
                }
                send(Event::ItemReplaced {
                    item: workflow_item(id, thread_id.clone(), &at, &calls),
                });
            }
            TurnEvent::ToolStarted { tool } => send(tool_progress(&tool)),
            // Sent after the answer's items, as the SDK does: the last event of a turn.
            TurnEvent::ThreadUpdated(thread) => {
                *retitled = Some(Event::ThreadUpdated {
                    thread: items::thread(&thread, Page::empty()),
                });
            }
            // The message is shown with its first text: an answer that only hands over to
            // the page (a client tool call) has none, and no empty message is shown.
            TurnEvent::MessageStarted { id, at } => {
                *message = Some((id, at, false));
                *message_started = true;
            }
            TurnEvent::TextDelta(delta) => {
                if let Some((id, at, shown_yet)) = message.as_mut() {
                    if !*shown_yet {
                        *shown_yet = true;
                        show_message(&mut send, thread_id, id, at);
                        shown.push(id.clone());
                    }
                    text.push_str(&delta);
                    send(Event::ItemUpdated {
                        item_id: id.clone(),
                        update: ItemUpdate::TextDelta {
                            content_index: 0,
                            delta,
                        },
                    });
                }
            }
            TurnEvent::Completed(done) => {
                if !*message_started {
                    // A replayed answer: its items arrive whole.
                    if let Some((id, at)) = &done.workflow {
                        send(Event::ItemDone {
                            item: workflow_item(
                                id.clone(),
                                thread_id.clone(),
                                at,
                                &done.tool_calls,
                            ),
                        });
                    }
                } else if !done.response.is_empty() {
                    if !message.as_ref().is_some_and(|m| m.2) {
                        show_message(&mut send, thread_id, &done.response_id, &done.response_at);
                    }
                    // Deltas must add up to the recorded text, even for a provider that
                    // did not stream all of it.
                    if let Some(rest) = done.response.strip_prefix(text.as_str()) {
                        if !rest.is_empty() {
                            send(Event::ItemUpdated {
                                item_id: done.response_id.clone(),
                                update: ItemUpdate::TextDelta {
                                    content_index: 0,
                                    delta: rest.to_owned(),
                                },
                            });
                        }
                    }
                    send(Event::ItemUpdated {
                        item_id: done.response_id.clone(),
                        update: ItemUpdate::PartDone {
                            content_index: 0,
                            content: OutputText::new(done.response.clone()),
                        },
                    });
                }
                if !done.response.is_empty() {
                    send(Event::ItemDone {
                        item: assistant_item(
                            &done.response_id,
                            thread_id,
                            &done.response_at,
                            &done.response,
                        ),
                    });
                }
                // The answer's other items (the task widget) follow it, as stored.
                done.extras.iter().filter_map(item).for_each(|item| {
                    send(Event::ItemDone { item });
                });
                if let Some(event) = retitled.take() {
                    send(event);
                }
                *finished = true;
            }
            TurnEvent::Failed(error) => {
                for id in shown.iter().rev() {
                    send(Event::ItemRemoved {
                        item_id: id.clone(),
                    });
                }
                tracing::warn!(error = %error, "chatkit turn failed");
                let (message, allow_retry) = match &*error {
                    ChatError::Store(StoreError::ThreadNotFound) => (
                        "This thread was deleted while the answer was written.",
                        false,
                    ),
                    _ => (
                        "The assistant could not answer. Your message is saved; try again.",
                        true,
                    ),
                };
                send(Event::Error {
                    code: "stream.error",
                    message: Some(message.to_owned()),
                    allow_retry,
                });
                *finished = true;
            }
        }
    }
}
