//! A thread's entries as the REST API shows them: the user's and the assistant's messages,
//! and on request (`include=all`) every other item a ChatKit client is shown, each with its
//! data as a typed field of [`Message`]. Hidden context is never read.

use entity::thread_item::{self, ItemStatus, ItemType};
use poem_openapi::{types::ParseFromJSON, Object, Union};
use serde_json::Value;

use super::{
    error::ApiError,
    types::{
        ChangeField, Declared, FeedbackField, InputStatusField, JsonObject, KindField, Message,
        Timestamp, ToolCall,
    },
};
use crate::{
    attachments::{ids_in_payload, Attachment, Attachments},
    chatkit::{items::task, task_widget::task_widget},
    domain::task_list::TaskList as StoredTaskList,
    domain::UserId,
    store::tool_calls_of,
};

/// The entries `include=messages` (the default) shows: what `message_count` counts.
pub const MESSAGE_TYPES: [ItemType; 2] = [ItemType::UserMessage, ItemType::AssistantMessage];

/// The entries `include=all` shows: every item a ChatKit client can be shown. Not
/// `hidden_context` (the model's alone) nor the per-call `tool_call` rows of answers
/// recorded before workflows, which ChatKit does not show either.
pub const ALL_TYPES: [ItemType; 6] = [
    ItemType::UserMessage,
    ItemType::AssistantMessage,
    ItemType::Workflow,
    ItemType::Widget,
    ItemType::ClientToolCall,
    ItemType::StructuredInput,
];

/// The item types an `include` value selects (absent: the messages).
pub fn types_for(include: Option<&str>) -> Result<&'static [ItemType], ApiError> {
    match include {
        None | Some("messages") => Ok(&MESSAGE_TYPES),
        Some("all") => Ok(&ALL_TYPES),
        Some(other) => Err(ApiError::Invalid(format!(
            "`include` must be `messages` or `all`, not {:?}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// The tasks a widget shows and what happened to them (`type: widget`).
#[derive(Object, serde::Serialize)]
pub struct TaskList {
    /// What the turn or click did to these tasks: `added`, `listed`, `completed`,
    /// `reopened`, `updated` or `deleted`.
    pub change: ChangeField,
    /// The tasks, as the tool calls left them (at most 50).
    pub tasks: Vec<TaskRow>,
}

/// One task of a widget.
#[derive(Object, serde::Serialize)]
pub struct TaskRow {
    /// The task's number, as the tools and the user name it.
    pub task_id: i64,
    pub title: String,
    pub completed: bool,
    /// Deleted since: shown struck through, without controls.
    pub deleted: bool,
}

/// A tool the client runs (`type: client_tool_call`): the entry's `status` is `pending`
/// until the client sends the output, then `completed`.
#[derive(Object, serde::Serialize)]
pub struct ClientToolCall {
    pub call_id: String,
    /// The tool the client is asked to run.
    pub name: String,
    /// A JSON object.
    pub arguments: JsonObject,
    /// What the client sent back (any JSON value); absent while pending.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// Questions put to the user (`type: structured_input`): the entry's `status` is
/// `pending` until the user answers or skips them, then `completed`.
#[derive(Object, serde::Serialize)]
pub struct StructuredInput {
    /// `pending`, `answered` or `skipped`.
    pub status: InputStatusField,
    pub inputs: Vec<StructuredInputField>,
}

/// One question, by `type`.
#[derive(Union, serde::Serialize)]
#[oai(discriminator_name = "type", one_of)]
#[serde(tag = "type")]
pub enum StructuredInputField {
    /// Answered by choosing one option, or several when `multiple`.
    #[oai(mapping = "multiple_choice")]
    #[serde(rename = "multiple_choice")]
    MultipleChoice(MultipleChoiceInput),
    /// Answered with free text.
    #[oai(mapping = "freeform")]
    #[serde(rename = "freeform")]
    Freeform(FreeformInput),
}

#[derive(Object, serde::Serialize)]
pub struct MultipleChoiceInput {
    /// Stable within the item; answers are keyed by it.
    pub id: String,
    pub question: String,
    pub options: Vec<ChoiceOption>,
    /// Whether more than one option may be chosen (default false).
    #[oai(default)]
    pub multiple: bool,
    /// Present once answered.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<StructuredInputAnswer>,
}

#[derive(Object, serde::Serialize)]
pub struct ChoiceOption {
    /// The text submitted when this option is chosen.
    pub value: String,
}

#[derive(Object, serde::Serialize)]
pub struct FreeformInput {
    /// Stable within the item; answers are keyed by it.
    pub id: String,
    pub question: String,
    /// Supporting text shown with the question.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Present once answered.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<StructuredInputAnswer>,
}

#[derive(Object, serde::Serialize)]
pub struct StructuredInputAnswer {
    /// The values given (default none).
    #[oai(default)]
    pub values: Vec<String>,
    /// Whether this question was skipped (default false).
    #[oai(default)]
    pub skipped: bool,
}

/// The statuses a structured input's payload may say.
const INPUT_STATUSES: [&str; 3] = ["pending", "answered", "skipped"];

fn client_tool_call(payload: &Value) -> Option<ClientToolCall> {
    let arguments = payload.get("arguments").filter(|a| a.is_object())?;
    Some(ClientToolCall {
        call_id: payload.get("call_id")?.as_str()?.to_owned(),
        name: payload.get("name")?.as_str()?.to_owned(),
        arguments: Declared::new(arguments.clone()),
        output: payload.get("output").filter(|o| !o.is_null()).cloned(),
    })
}

fn structured_input(payload: &Value) -> Option<StructuredInput> {
    // Questions are stored pending: the status is written once they are answered.
    let status = payload
        .get("status")
        .map_or(Some("pending"), Value::as_str)?;
    if !INPUT_STATUSES.contains(&status) {
        return None;
    }
    let inputs = payload
        .get("inputs")?
        .as_array()?
        .iter()
        .map(|i| StructuredInputField::parse_from_json(Some(i.clone())).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(StructuredInput {
        status: Declared::new(status.to_owned()),
        inputs,
    })
}

fn question(input: &StructuredInputField) -> &str {
    match input {
        StructuredInputField::MultipleChoice(i) => &i.question,
        StructuredInputField::Freeform(i) => &i.question,
    }
}

/// An entry's own fields: its text, and its data by type.
struct Shown {
    content: String,
    tool_calls: Option<Vec<ToolCall>>,
    tasks: Option<TaskList>,
    client_tool_call: Option<ClientToolCall>,
    structured_input: Option<StructuredInput>,
}

impl Shown {
    fn text(content: String) -> Self {
        Self {
            content,
            tool_calls: None,
            tasks: None,
            client_tool_call: None,
            structured_input: None,
        }
    }
}

/// What `row` shows, or `None` for a row REST never shows or cannot read.
fn shown(row: thread_item::Model) -> Option<Shown> {
    let payload = row.payload.as_ref();
    Some(match row.item_type {
        ItemType::UserMessage | ItemType::AssistantMessage => Shown::text(row.content),
        ItemType::Workflow => {
            let calls = tool_calls_of(&row);
            // The lines ChatKit titles the workflow's tasks with.
            let lines: Vec<String> = calls.iter().map(|c| task(c).title).collect();
            Shown {
                tool_calls: Some(calls.into_iter().map(ToolCall::from).collect()),
                ..Shown::text(lines.join("\n"))
            }
        }
        ItemType::Widget => {
            let list: StoredTaskList = serde_json::from_value(payload?.clone()).ok()?;
            // The text ChatKit copies from the widget.
            let (_, copy_text) = task_widget(&list.tasks, list.change);
            Shown {
                tasks: Some(TaskList {
                    change: Declared::new(list.change.as_str().to_owned()),
                    tasks: list
                        .tasks
                        .into_iter()
                        .map(|t| TaskRow {
                            task_id: t.id,
                            title: t.title,
                            completed: t.completed,
                            deleted: t.deleted,
                        })
                        .collect(),
                }),
                ..Shown::text(copy_text)
            }
        }
        // Closed unanswered when a newer one came: gone, as ChatKit shows it.
        ItemType::ClientToolCall | ItemType::StructuredInput
            if row.status == ItemStatus::Cancelled =>
        {
            return None
        }
        ItemType::ClientToolCall => {
            let call = client_tool_call(payload?)?;
            Shown {
                content: call.name.clone(),
                client_tool_call: Some(call),
                ..Shown::text(String::new())
            }
        }
        ItemType::StructuredInput => {
            let input = structured_input(payload?)?;
            let questions: Vec<&str> = input.inputs.iter().map(question).collect();
            Shown {
                content: questions.join("\n"),
                structured_input: Some(input),
                ..Shown::text(String::new())
            }
        }
        ItemType::HiddenContext | ItemType::ToolCall => return None,
    })
}

impl Message {
    /// A stored row as clients see it; `None` for a row they are never shown, or one whose
    /// data cannot be read (logged). A user turn without an Idempotency-Key that is still
    /// pending after `stale_before` had its runner vanish (a crash, a restart): no retry can
    /// reclaim it, so it reads as `failed` rather than pending forever. Keyed turns stay
    /// pending: a retry with their key reclaims them.
    pub fn read(
        m: thread_item::Model,
        stale_before: chrono::DateTime<chrono::Utc>,
    ) -> Option<Self> {
        let abandoned = m.item_type == ItemType::UserMessage
            && m.status == ItemStatus::Pending
            && m.client_key.is_none()
            && m.updated_at < stale_before;
        let status = if abandoned {
            ItemStatus::Failed
        } else {
            m.status
        };
        let (id, kind, created_at, feedback) = (
            m.id.clone(),
            m.item_type,
            Timestamp::at(&m.created_at),
            m.feedback.clone(),
        );
        let closed = status == ItemStatus::Cancelled
            && matches!(kind, ItemType::ClientToolCall | ItemType::StructuredInput);
        let Some(shown) = shown(m) else {
            if !closed && !matches!(kind, ItemType::HiddenContext | ItemType::ToolCall) {
                tracing::warn!(item_id = %id, kind = kind.as_str(), "an item's data cannot be read; not shown");
            }
            return None;
        };
        Some(Self {
            id,
            kind: KindField::new(kind.as_str().to_owned()),
            // The user's messages are the user's; everything else the assistant's side adds.
            role: Declared::new(
                if kind == ItemType::UserMessage {
                    "user"
                } else {
                    "assistant"
                }
                .to_owned(),
            ),
            content: shown.content,
            created_at,
            status: Declared::new(status.as_str().to_owned()),
            feedback: feedback.map(FeedbackField::new),
            tool_calls: shown.tool_calls,
            tasks: shown.tasks,
            client_tool_call: shown.client_tool_call,
            structured_input: shown.structured_input,
            attachments: None,
        })
    }

    /// [`Message::read`] for each row, user messages with the attachments they were sent
    /// with (looked up at once, their preview links minted now).
    pub async fn read_all(
        rows: Vec<thread_item::Model>,
        stale_before: chrono::DateTime<chrono::Utc>,
        user: &UserId,
        attachments: &Attachments,
    ) -> Result<Vec<Self>, ApiError> {
        let found = attachments.shown(user, &rows).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let ids = ids_in_payload(row.payload.as_ref());
                let mut message = Self::read(row, stale_before)?;
                if message.kind.as_str() == "user_message" && !ids.is_empty() {
                    message.attachments = Some(
                        ids.iter()
                            .filter_map(|id| found.get(id))
                            .map(|a| MessageAttachment::of(a, attachments))
                            .collect(),
                    );
                }
                Some(message)
            })
            .collect())
    }
}

/// A file or image sent with a user message. Its owner downloads it with the
/// client_secret at `GET {api_prefix}/attachments/{id}`.
#[derive(Object, serde::Serialize)]
pub struct MessageAttachment {
    /// `atc_…`.
    pub id: String,
    /// `image` (with `preview_url`) or `file`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: AttachmentKindField,
    /// The name it was uploaded with (no path).
    pub name: String,
    pub mime_type: String,
    /// Bytes.
    pub size: u64,
    /// Images only: a signed link that shows the image without a bearer (for an `<img>`),
    /// valid for `attachments.preview_url_ttl_secs` from this read.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
}

impl MessageAttachment {
    fn of(a: &Attachment, attachments: &Attachments) -> Self {
        Self {
            id: a.id.clone(),
            kind: Declared::new(a.kind().to_owned()),
            name: a.name.clone(),
            mime_type: a.mime_type.clone(),
            size: a.stored_size,
            preview_url: attachments.preview_url(a),
        }
    }
}

/// `file` or `image`.
pub struct AttachmentKindSchema;
impl super::types::DeclaredSchema for AttachmentKindSchema {
    fn schema() -> poem_openapi::registry::MetaSchema {
        poem_openapi::registry::MetaSchema {
            enum_items: vec![Value::from("file"), Value::from("image")],
            ..poem_openapi::registry::MetaSchema::new("string")
        }
    }
}

pub type AttachmentKindField = Declared<String, AttachmentKindSchema>;

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::{domain::UserId, store::new_item_row};

    fn row(kind: ItemType, content: &str, payload: Option<Value>) -> thread_item::Model {
        let user = UserId::parse("alice").unwrap();
        let mut row = new_item_row("thr_1", &user, kind, content.into(), Utc::now());
        row.id = "msg_1".into();
        row.payload = payload;
        row
    }

    fn shown_json(row: thread_item::Model) -> Option<Value> {
        use poem_openapi::types::ToJSON;
        Message::read(row, Utc::now()).and_then(|m| m.to_json())
    }

    #[test]
    fn every_item_chatkit_shows_is_shown_and_hidden_context_never() {
        for kind in crate::chatkit::items::VISIBLE_TYPES {
            assert!(
                ALL_TYPES.contains(&kind),
                "{kind:?} is shown by ChatKit, not REST"
            );
        }
        assert!(!ALL_TYPES.contains(&ItemType::HiddenContext));
        assert!(MESSAGE_TYPES.iter().all(|t| ALL_TYPES.contains(t)));
        let hidden = row(ItemType::HiddenContext, "the user clicked", Some(json!({})));
        assert!(Message::read(hidden, Utc::now()).is_none());
    }

    #[test]
    fn each_kind_has_its_typed_field_and_only_that() {
        let widget = shown_json(row(
            ItemType::Widget,
            "",
            Some(json!({"change": "added", "tasks": [
                {"task_id": 1, "title": "buy milk", "completed": false, "deleted": false}]})),
        ))
        .unwrap();
        assert_eq!(widget["type"], "widget");
        assert_eq!(widget["role"], "assistant");
        assert_eq!(widget["tasks"]["change"], "added");
        assert_eq!(widget["tasks"]["tasks"][0]["task_id"], 1);
        assert_eq!(widget["content"], "Task added\n[ ] 1. buy milk");
        for absent in ["tool_calls", "client_tool_call", "structured_input"] {
            assert!(widget.get(absent).is_none(), "{absent}");
        }
        assert!(widget["feedback"].is_null());

        let call = json!({"call_id": "c1", "name": "get_location", "arguments": {"precise": true}});
        let mut pending = row(ItemType::ClientToolCall, "", Some(call));
        pending.status = ItemStatus::Pending;
        // Long pending is still pending: only user turns are ever read as abandoned.
        pending.updated_at -= chrono::Duration::days(1);
        let pending = shown_json(pending).unwrap();
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["client_tool_call"]["name"], "get_location");
        assert!(pending["client_tool_call"].get("output").is_none());

        let questions = json!({"status": "answered", "inputs": [
            {"type": "multiple_choice", "id": "q1", "question": "Which list?",
             "options": [{"value": "home"}, {"value": "work"}],
             "answer": {"values": ["home"], "skipped": false}},
            {"type": "freeform", "id": "q2", "question": "Anything else?"}]});
        let input = shown_json(row(ItemType::StructuredInput, "", Some(questions))).unwrap();
        assert_eq!(input["structured_input"]["status"], "answered");
        assert_eq!(
            input["structured_input"]["inputs"][0]["type"],
            "multiple_choice"
        );
        assert_eq!(input["structured_input"]["inputs"][0]["multiple"], false);
        assert_eq!(input["structured_input"]["inputs"][1]["type"], "freeform");
        assert_eq!(input["content"], "Which list?\nAnything else?");

        let workflow = shown_json(row(
            ItemType::Workflow,
            "",
            Some(
                json!({"tool_calls": [{"tool": "add_task", "args": {"title": "buy milk"},
                "result": {"task": {"task_id": 1, "title": "buy milk", "completed": false}}}]}),
            ),
        ))
        .unwrap();
        assert_eq!(workflow["tool_calls"][0]["tool"], "add_task");
        assert_eq!(workflow["content"], "Added task 1: buy milk");

        let mut stopped = row(ItemType::AssistantMessage, "Let me", None);
        stopped.status = ItemStatus::Cancelled;
        let stopped = shown_json(stopped).unwrap();
        assert_eq!(
            (&stopped["type"], &stopped["status"]),
            (&json!("assistant_message"), &json!("cancelled"))
        );
    }

    #[test]
    fn questions_and_calls_closed_unanswered_are_not_shown() {
        let call = json!({"call_id": "c1", "name": "x", "arguments": {}});
        let questions = json!({"inputs": [], "context": {}});
        for (kind, payload) in [
            (ItemType::ClientToolCall, call),
            (ItemType::StructuredInput, questions),
        ] {
            let mut pending = row(kind, "", Some(payload));
            pending.status = ItemStatus::Pending;
            // As stored: a question's status is written when it is answered.
            assert_eq!(shown_json(pending.clone()).unwrap()["status"], "pending");
            pending.status = ItemStatus::Cancelled;
            assert!(shown_json(pending).is_none(), "{kind:?}");
        }
    }

    #[test]
    fn unreadable_data_is_not_shown() {
        for (kind, payload) in [
            (ItemType::Widget, None),
            (
                ItemType::Widget,
                Some(json!({"change": "exploded", "tasks": []})),
            ),
            (
                ItemType::ClientToolCall,
                Some(json!({"call_id": "c1", "name": "x", "arguments": []})),
            ),
            (
                ItemType::StructuredInput,
                Some(json!({"status": "maybe", "inputs": []})),
            ),
            (
                ItemType::StructuredInput,
                Some(json!({"status": "pending", "inputs": [{"type": "slider"}]})),
            ),
        ] {
            assert!(
                shown_json(row(kind, "", payload.clone())).is_none(),
                "{kind:?} {payload:?}"
            );
        }
    }

    #[test]
    fn include_selects_the_messages_or_everything_shown() {
        assert_eq!(types_for(None).unwrap(), MESSAGE_TYPES);
        assert_eq!(types_for(Some("messages")).unwrap(), MESSAGE_TYPES);
        assert_eq!(types_for(Some("all")).unwrap(), ALL_TYPES);
        assert!(types_for(Some("everything")).is_err());
    }
}
