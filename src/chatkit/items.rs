//! Stored rows as ChatKit items. REST and ChatKit read the same rows: a turn posted
//! through either API shows in both.

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{thread, thread_item};
use serde_json::{json, Map, Value};

use super::{
    task_widget::task_widget,
    wire::{Item, OutputText, Page, Summary, Task, Thread, ThreadStatus, Workflow},
};
use crate::{
    attachments::ids_in_payload,
    domain::{task_list::TaskList, ToolCallRecord},
    store::{tool_calls_in, ItemStatus, ItemType, ListedThread},
};

/// Item types ChatKit shows, in the store's vocabulary.
pub const VISIBLE_TYPES: [ItemType; 6] = [
    ItemType::UserMessage,
    ItemType::AssistantMessage,
    ItemType::Workflow,
    ItemType::Widget,
    ItemType::ClientToolCall,
    ItemType::StructuredInput,
];

/// ChatKit timestamps: RFC 3339 UTC with microseconds (the storage precision).
#[must_use]
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A stored thread as ChatKit's Thread, with `items` as given.
#[must_use]
pub fn thread<I>(t: &thread::Model, items: Page<I>) -> Thread<I> {
    Thread {
        id: t.id.clone(),
        title: Some(t.title.clone()),
        created_at: timestamp(&t.created_at),
        status: ThreadStatus::Active,
        metadata: Map::new(),
        items,
    }
}

/// A listed thread as `threads.list` shows it: no items.
#[must_use]
pub fn listed_thread(t: ListedThread) -> Thread<Item> {
    Thread {
        id: t.id,
        title: Some(t.title),
        created_at: timestamp(&t.created_at),
        status: ThreadStatus::Active,
        metadata: Map::new(),
        items: Page::empty(),
    }
}

/// The attachments a set of items shows, by id, as ChatKit JSON (links minted now).
pub type ShownAttachments = std::collections::HashMap<String, Value>;

/// A stored row as the item a client is shown; `None` for rows ChatKit does not show.
/// A user message shows no attachments this way: see [`item_with`].
#[must_use]
pub fn item(row: &thread_item::Model) -> Option<Item> {
    item_with(row, &ShownAttachments::new())
}

/// [`item`], a user message showing its attachments as found in `shown` (one deleted
/// since is left out).
#[must_use]
pub fn item_with(row: &thread_item::Model, shown: &ShownAttachments) -> Option<Item> {
    into_item(row.clone(), shown)
}

/// [`item_with`], taking the row: its strings and payload parts move into the item
/// instead of being copied (what the listings do, for every row of a page).
#[must_use]
pub fn into_item(row: thread_item::Model, shown: &ShownAttachments) -> Option<Item> {
    let created_at = timestamp(&row.created_at);
    let thread_item::Model {
        id,
        thread_id,
        item_type,
        content: text,
        payload,
        status,
        ..
    } = row;
    match item_type {
        ItemType::UserMessage => {
            let attachments = ids_in_payload(payload.as_ref())
                .iter()
                .filter_map(|id| shown.get(id).cloned())
                .collect();
            let mut payload = match payload {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let content = match payload.remove("content") {
                Some(Value::Array(parts)) => parts,
                _ => vec![json!({"type": "input_text", "text": text})],
            };
            Some(Item::UserMessage {
                id,
                thread_id,
                created_at,
                content,
                attachments,
                quoted_text: match payload.remove("quoted_text") {
                    Some(Value::String(quote)) => Some(quote),
                    _ => None,
                },
                inference_options: payload
                    .remove("inference_options")
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({})),
            })
        }
        // No word said (stopped at once, or handed over to the page): nothing to show,
        // as the SDK keeps no empty message either.
        ItemType::AssistantMessage if text.is_empty() => None,
        ItemType::AssistantMessage => Some(Item::AssistantMessage {
            id,
            thread_id,
            created_at,
            content: vec![OutputText::new(text)],
        }),
        ItemType::Workflow | ItemType::ToolCall => {
            // Answers from before workflows: their calls are not shown as items.
            if item_type == ItemType::ToolCall {
                return None;
            }
            let calls = tool_calls_in(item_type, payload);
            let at = created_at;
            Some(workflow_item_at(id, thread_id, at, &calls))
        }
        ItemType::Widget => {
            let list: TaskList = serde_json::from_value(payload?).ok()?;
            let (widget, copy_text) = task_widget(&list.tasks, list.change);
            Some(Item::Widget {
                id,
                thread_id,
                created_at,
                widget,
                copy_text,
            })
        }
        // The model's alone: never sent to a client.
        ItemType::HiddenContext => None,
        // Closed unanswered by a newer one: gone, as the SDK deletes them.
        ItemType::ClientToolCall | ItemType::StructuredInput if status == ItemStatus::Cancelled => {
            None
        }
        ItemType::ClientToolCall => {
            let Value::Object(mut p) = payload? else {
                return None;
            };
            let Some(Value::String(call_id)) = p.remove("call_id") else {
                return None;
            };
            let Some(Value::String(name)) = p.remove("name") else {
                return None;
            };
            Some(Item::ClientToolCall {
                id,
                thread_id,
                created_at,
                status: if status == ItemStatus::Pending {
                    "pending"
                } else {
                    "completed"
                },
                call_id,
                name,
                arguments: p.remove("arguments").filter(Value::is_object)?,
                output: p.remove("output"),
            })
        }
        ItemType::StructuredInput => {
            let Value::Object(mut p) = payload? else {
                return None;
            };
            // `context` is the agent's own note of what the answer is for: not shown.
            Some(Item::StructuredInput {
                id,
                thread_id,
                created_at,
                status: match p.remove("status") {
                    Some(Value::String(status)) => status,
                    _ => "pending".to_owned(),
                },
                inputs: p.remove("inputs").filter(Value::is_array)?,
            })
        }
    }
}

/// An assistant message item with `text` (no content part yet when empty).
#[must_use]
pub fn assistant_item(id: &str, thread_id: &str, at: &DateTime<Utc>, text: &str) -> Item {
    Item::AssistantMessage {
        id: id.to_owned(),
        thread_id: thread_id.to_owned(),
        created_at: timestamp(at),
        content: if text.is_empty() {
            Vec::new()
        } else {
            vec![OutputText::new(text.to_owned())]
        },
    }
}

/// The workflow item listing `calls` as tasks.
#[must_use]
pub fn workflow_item(
    id: String,
    thread_id: String,
    at: &DateTime<Utc>,
    calls: &[ToolCallRecord],
) -> Item {
    workflow_item_at(id, thread_id, timestamp(at), calls)
}

/// [`workflow_item`], its instant already on the wire's clock.
fn workflow_item_at(
    id: String,
    thread_id: String,
    created_at: String,
    calls: &[ToolCallRecord],
) -> Item {
    let tasks: Vec<Task> = calls.iter().map(task).collect();
    let summary = match tasks.as_slice() {
        [] => None,
        [one] => Some(one.title.clone()),
        many => Some(format!("{} task actions", many.len())),
    }
    .map(|title| Summary {
        title,
        icon: "check-circle",
    });
    Item::Workflow {
        id,
        thread_id,
        created_at,
        workflow: Workflow {
            kind: "custom",
            tasks,
            summary,
            expanded: false,
        },
    }
}

fn task_ref(call: &ToolCallRecord) -> Option<(i64, String)> {
    let task = call
        .result
        .get("task")
        .or_else(|| call.result.get("deleted"))?;
    Some((
        task.get("task_id")?.as_i64()?,
        task.get("title")?.as_str()?.to_owned(),
    ))
}

/// A readable line for one tool call, e.g. "Added task 3: buy milk".
pub fn task(call: &ToolCallRecord) -> Task {
    let failed = call.result.get("error").and_then(Value::as_str);
    let (title, icon) = match (call.tool.as_str(), failed, task_ref(call)) {
        (tool, Some(error), _) => (format!("{tool} failed: {error}"), "info"),
        ("add_task", None, Some((n, t))) => (format!("Added task {n}: {t}"), "plus"),
        ("complete_task", None, Some((n, t))) => (format!("Completed task {n}: {t}"), "check"),
        ("update_task", None, Some((n, t))) => (format!("Updated task {n}: {t}"), "write"),
        ("delete_task", None, Some((n, t))) => (format!("Deleted task {n}: {t}"), "empty-circle"),
        ("list_tasks", None, _) => {
            let n = call
                .result
                .get("tasks")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let noun = if n == 1 { "task" } else { "tasks" };
            (format!("Listed {n} {noun}"), "search")
        }
        (tool, None, _) => (format!("Ran {tool}"), "bolt"),
    };
    Task {
        kind: "custom",
        title,
        icon,
        content: None,
        status_indicator: "complete",
    }
}
