//! The ChatKit wire shapes (`openai-chatkit` 1.6.5, see `docs/chatkit-protocol.md`). Optional
//! fields are omitted rather than sent as `null`, as the official server does; requests
//! accept unknown fields and explicit `null`s.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---- requests -------------------------------------------------------------------------

/// `{type, params, metadata?}`: the envelope of every request.
#[derive(Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    /// Required even when every parameter is optional (as in the SDK).
    pub params: Option<Value>,
}

/// `input` of `threads.create` and `threads.add_user_message`.
#[derive(Deserialize)]
pub struct UserInput {
    pub content: Vec<Value>,
    /// Ids of attachments made with `attachments.create` (or the direct upload route).
    pub attachments: Vec<String>,
    #[serde(default)]
    pub quoted_text: Option<String>,
    #[serde(default)]
    pub inference_options: Option<Value>,
}

/// `attachments.create`: what the widget knows of a file before it uploads it.
#[derive(Deserialize)]
pub struct AttachmentCreateParams {
    pub name: String,
    /// Bytes; a negative size is not a number of bytes (400).
    pub size: u64,
    pub mime_type: String,
}

/// `attachments.delete`.
#[derive(Deserialize)]
pub struct AttachmentDeleteParams {
    pub attachment_id: String,
}

/// `input.transcribe`: the composer's dictation.
#[derive(Deserialize)]
pub struct TranscribeParams {
    pub audio_base64: String,
    /// As the browser recorded it, e.g. `audio/webm;codecs=opus`.
    pub mime_type: String,
}

#[derive(Deserialize)]
pub struct CreateParams {
    pub input: UserInput,
}

#[derive(Deserialize)]
pub struct AddMessageParams {
    pub thread_id: String,
    pub input: UserInput,
}

#[derive(Deserialize)]
pub struct RetryParams {
    pub thread_id: String,
    pub item_id: String,
}

#[derive(Deserialize)]
pub struct ThreadParams {
    pub thread_id: String,
}

#[derive(Deserialize)]
pub struct UpdateParams {
    pub thread_id: String,
    pub title: String,
}

#[derive(Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Deserialize)]
pub struct ItemsListParams {
    pub thread_id: String,
    #[serde(flatten)]
    pub page: ListParams,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackKind {
    Positive,
    Negative,
}

impl FeedbackKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Negative => "negative",
        }
    }
}

#[derive(Deserialize)]
pub struct FeedbackParams {
    pub thread_id: String,
    pub item_ids: Vec<String>,
    pub kind: FeedbackKind,
}

/// `threads.add_client_tool_output`: the output of the pending client tool call.
#[derive(Deserialize)]
pub struct ToolOutputParams {
    pub thread_id: String,
    pub result: Value,
}

/// `threads.add_structured_input`: the user's answers to a pending `structured_input`.
#[derive(Deserialize)]
pub struct StructuredInputParams {
    pub thread_id: String,
    pub item_id: String,
    pub input: StructuredAnswer,
}

/// `{status, answers: {<input id>: {values, skipped}}}`.
#[derive(Deserialize)]
pub struct StructuredAnswer {
    #[serde(default = "answered")]
    pub status: String,
    #[serde(default)]
    pub answers: Map<String, Value>,
}

fn answered() -> String {
    "answered".to_owned()
}

/// `threads.custom_action` and `threads.sync_custom_action`.
#[derive(Deserialize)]
pub struct ActionParams {
    pub thread_id: String,
    #[serde(default)]
    pub item_id: Option<String>,
    pub action: Action,
}

/// A widget's action as the client sends it back: the configured type and payload, plus
/// any form values the client merged into the payload.
#[derive(Deserialize)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Option<Value>,
}

// ---- responses and events -------------------------------------------------------------

#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl<T> Page<T> {
    #[must_use]
    pub fn empty() -> Self {
        Self {
            data: Vec::new(),
            has_more: false,
            after: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ThreadStatus {
    Active,
}

#[derive(Clone, Debug, Serialize)]
pub struct Thread<I = Item> {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub created_at: String,
    pub status: ThreadStatus,
    /// Server-private in ChatKit: always `{}` on the wire, as the SDK sends it.
    pub metadata: Map<String, Value>,
    pub items: Page<I>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    pub annotations: Vec<Value>,
}

impl OutputText {
    #[must_use]
    pub fn new(text: String) -> Self {
        Self {
            kind: "output_text",
            text,
            annotations: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Task {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub icon: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub status_indicator: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub title: String,
    pub icon: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Workflow {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tasks: Vec<Task>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    pub expanded: bool,
}

/// The items a client is shown (hidden and unsupported kinds never reach the wire).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type")]
pub enum Item {
    #[serde(rename = "user_message")]
    UserMessage {
        id: String,
        thread_id: String,
        created_at: String,
        content: Vec<Value>,
        attachments: Vec<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        quoted_text: Option<String>,
        inference_options: Value,
    },
    #[serde(rename = "assistant_message")]
    AssistantMessage {
        id: String,
        thread_id: String,
        created_at: String,
        content: Vec<OutputText>,
    },
    #[serde(rename = "workflow")]
    Workflow {
        id: String,
        thread_id: String,
        created_at: String,
        workflow: Workflow,
    },
    #[serde(rename = "widget")]
    Widget {
        id: String,
        thread_id: String,
        created_at: String,
        widget: super::widgets::WidgetRoot,
        copy_text: String,
    },
    #[serde(rename = "client_tool_call")]
    ClientToolCall {
        id: String,
        thread_id: String,
        created_at: String,
        status: &'static str,
        call_id: String,
        name: String,
        arguments: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
    #[serde(rename = "structured_input")]
    StructuredInput {
        id: String,
        thread_id: String,
        created_at: String,
        status: String,
        inputs: Value,
    },
}

impl Item {
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::UserMessage { id, .. }
            | Self::AssistantMessage { id, .. }
            | Self::Workflow { id, .. }
            | Self::Widget { id, .. }
            | Self::ClientToolCall { id, .. }
            | Self::StructuredInput { id, .. } => id,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type")]
pub enum ItemUpdate {
    #[serde(rename = "assistant_message.content_part.added")]
    PartAdded {
        content_index: usize,
        content: OutputText,
    },
    #[serde(rename = "assistant_message.content_part.text_delta")]
    TextDelta { content_index: usize, delta: String },
    #[serde(rename = "assistant_message.content_part.done")]
    PartDone {
        content_index: usize,
        content: OutputText,
    },
    #[serde(rename = "workflow.task.added")]
    TaskAdded { task_index: usize, task: Task },
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamOptions {
    pub allow_cancel: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "thread.created")]
    ThreadCreated { thread: Thread },
    #[serde(rename = "thread.updated")]
    ThreadUpdated { thread: Thread },
    #[serde(rename = "thread.item.added")]
    ItemAdded { item: Item },
    #[serde(rename = "thread.item.updated")]
    ItemUpdated { item_id: String, update: ItemUpdate },
    #[serde(rename = "thread.item.done")]
    ItemDone { item: Item },
    #[serde(rename = "thread.item.removed")]
    ItemRemoved { item_id: String },
    #[serde(rename = "thread.item.replaced")]
    ItemReplaced { item: Item },
    #[serde(rename = "stream_options")]
    StreamOptions { stream_options: StreamOptions },
    #[serde(rename = "client_effect")]
    ClientEffect { name: String, data: Value },
    /// A transient status line while a tool runs (not stored).
    #[serde(rename = "progress_update")]
    ProgressUpdate {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        icon: Option<&'static str>,
    },
    #[serde(rename = "error")]
    Error {
        code: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        allow_retry: bool,
    },
}

impl Event {
    /// One SSE frame: exactly `data: <one-line JSON>\n\n` (serde_json escapes newlines
    /// inside strings, so the JSON is always one line).
    #[must_use]
    pub fn frame(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!("data: {json}\n\n")
    }
}
