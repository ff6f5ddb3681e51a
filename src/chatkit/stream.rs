//! ChatKit's encoder over a turn's [`TurnEvent`]s: items announced, updated and done with
//! the ids they are recorded under; on failure every announced item is removed again, so
//! the widget shows what a reload will show.

use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::{
    items::{assistant_item, changes_tasks, task, workflow_item},
    wire::{Event, ItemUpdate, OutputText},
};
use crate::{
    chat::{ChatError, TurnEvent},
    domain::ToolCallRecord,
    store::StoreError,
};

fn tasks_changed(call: &ToolCallRecord) -> Option<Event> {
    changes_tasks(call).then(|| Event::ClientEffect {
        name: "tasks.changed".to_owned(),
        data: json!({
            "tool": call.tool,
            "task_id": call.result.get("task").or_else(|| call.result.get("deleted"))
                .and_then(|t| t.get("task_id")).cloned(),
        }),
    })
}

/// Forwards one turn as ChatKit events until it completes or fails. Sends fail only when
/// the client has gone; the turn itself runs on regardless.
pub async fn encode_turn(
    thread_id: String,
    mut events: UnboundedReceiver<TurnEvent>,
    out: UnboundedSender<Event>,
) {
    let send = |event: Event| {
        let _ = out.send(event);
    };
    // Items shown but not yet known to be recorded (removed again if the turn fails).
    let mut shown: Vec<String> = Vec::new();
    let mut workflow_id: Option<String> = None;
    let mut text = String::new();
    let mut message_started = false;
    while let Some(event) = events.recv().await {
        match event {
            TurnEvent::WorkflowStarted { id, at } => {
                send(Event::ItemAdded {
                    item: workflow_item(id.clone(), thread_id.clone(), &at, &[]),
                });
                shown.push(id.clone());
                workflow_id = Some(id);
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
                if let Some(effect) = tasks_changed(&call) {
                    send(effect);
                }
            }
            TurnEvent::WorkflowDone { id, at, calls } => {
                if workflow_id.is_none() {
                    // The provider did not report its calls as they ran: show them now.
                    calls.iter().filter_map(tasks_changed).for_each(send);
                    shown.push(id.clone());
                    workflow_id = Some(id.clone());
                }
                send(Event::ItemDone {
                    item: workflow_item(id, thread_id.clone(), &at, &calls),
                });
            }
            TurnEvent::WorkflowReplaced { id, at, calls } => {
                if let Some(effect) = calls.last().and_then(tasks_changed) {
                    send(effect);
                }
                send(Event::ItemReplaced {
                    item: workflow_item(id, thread_id.clone(), &at, &calls),
                });
            }
            TurnEvent::MessageStarted { id, at } => {
                send(Event::ItemAdded {
                    item: assistant_item(&id, &thread_id, &at, ""),
                });
                send(Event::ItemUpdated {
                    item_id: id.clone(),
                    update: ItemUpdate::PartAdded {
                        content_index: 0,
                        content: OutputText::new(String::new()),
                    },
                });
                shown.push(id);
                message_started = true;
            }
            TurnEvent::TextDelta(delta) => {
                if let Some(id) = shown.last() {
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
                if !message_started {
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
                } else {
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
                send(Event::ItemDone {
                    item: assistant_item(
                        &done.response_id,
                        &thread_id,
                        &done.response_at,
                        &done.response,
                    ),
                });
                return;
            }
            TurnEvent::Failed(error) => {
                for id in shown.iter().rev() {
                    send(Event::ItemRemoved {
                        item_id: id.clone(),
                    });
                }
                tracing::warn!(error = %error, "chatkit turn failed");
                let (message, allow_retry) = match &error {
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
                return;
            }
        }
    }
}
