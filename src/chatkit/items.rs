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
    store::{tool_calls_of, ItemStatus, ItemType},
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
pub fn thread(t: &thread::Model, items: Page<Item>) -> Thread {
    Thread {
        id: t.id.clone(),
        title: Some(t.title.clone()),
        created_at: timestamp(&t.created_at),
        status: ThreadStatus::Active,
        metadata: Map::new(),
        items,
    }
}

/// The attachments a set of items shows, by id, as ChatKit JSON (links minted now).
pub type ShownAttachments = std::collections::HashMap<String, Value>;

/// The attachment ids the user messages among `rows` were sent with (to fetch them all
/// at once, then render with [`item_with`]).
pub fn attachment_ids<'a>(rows: impl IntoIterator<Item = &'a thread_item::Model>) -> Vec<String> {
    rows.into_iter()
        .filter(|r| r.item_type == ItemType::UserMessage)
        .flat_map(|r| ids_in_payload(r.payload.as_ref()))
        .collect()
}

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
    let (id, thread_id, created_at) = (
        row.id.clone(),
        row.thread_id.clone(),
        timestamp(&row.created_at),
    );
    match row.item_type {
        ItemType::UserMessage => {
            let payload = row.payload.as_ref();
            let content = payload
                .and_then(|p| p.get("content"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![json!({"type": "input_text", "text": row.content})]);
            Some(Item::UserMessage {
                id,
                thread_id,
                created_at,
                content,
                attachments: ids_in_payload(payload)
                    .iter()
                    .filter_map(|id| shown.get(id).cloned())
                    .collect(),
                quoted_text: payload
                    .and_then(|p| p.get("quoted_text"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                inference_options: payload
                    .and_then(|p| p.get("inference_options"))
                    .filter(|o| o.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            })
        }
        // No word said (stopped at once, or handed over to the page): nothing to show,
        // as the SDK keeps no empty message either.
        ItemType::AssistantMessage if row.content.is_empty() => None,
        ItemType::AssistantMessage => Some(Item::AssistantMessage {
            id,
            thread_id,
            created_at,
            content: vec![OutputText::new(row.content.clone())],
        }),
        ItemType::Workflow => Some(workflow_item(
            id,
            thread_id,
            &row.created_at,
            &tool_calls_of(row),
        )),
        // Answers from before workflows: their calls are not shown as items.
        ItemType::ToolCall => None,
        ItemType::Widget => {
            let list: TaskList = serde_json::from_value(row.payload.clone()?).ok()?;
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
        ItemType::ClientToolCall | ItemType::StructuredInput
            if row.status == ItemStatus::Cancelled =>
        {
            None
        }
        ItemType::ClientToolCall => {
            let p = row.payload.as_ref()?;
            Some(Item::ClientToolCall {
                id,
                thread_id,
                created_at,
                status: if row.status == ItemStatus::Pending {
                    "pending"
                } else {
                    "completed"
                },
                call_id: p["call_id"].as_str()?.to_owned(),
                name: p["name"].as_str()?.to_owned(),
                arguments: p.get("arguments").filter(|a| a.is_object()).cloned()?,
                output: p.get("output").cloned(),
            })
        }
        ItemType::StructuredInput => {
            let p = row.payload.as_ref()?;
            // `context` is the agent's own note of what the answer is for: not shown.
            Some(Item::StructuredInput {
                id,
                thread_id,
                created_at,
                status: p["status"].as_str().unwrap_or("pending").to_owned(),
                inputs: p.get("inputs").filter(|i| i.is_array()).cloned()?,
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
pub fn workflow_item(
    id: String,
    thread_id: String,
    at: &DateTime<Utc>,
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
        created_at: timestamp(at),
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
