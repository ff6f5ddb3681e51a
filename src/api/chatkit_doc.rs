//! The ChatKit protocol as the OpenAPI document describes it (`openai-chatkit` 1.6.5, see
//! docs/chatkit-protocol.md): every request type with its parameters, the JSON answers and
//! the items and threads that events carry (the events themselves are described in words:
//! see `chatkit.rs`). These types only describe: the endpoint parses the body itself
//! (`chatkit::Request::parse`) and writes the answers from `chatkit::wire`, so nothing here
//! is ever built or read at run time.
//!
//! Where a field is declared, the gateway checks it as declared, so the document neither
//! promises more than is accepted nor refuses what is: fields the gateway reads leniently
//! (a tag's `data`, `inference_options.model`) are described in words, not typed.

use std::collections::BTreeMap;

use poem_openapi::{registry::MetaSchema, Object, Union};
use serde_json::Value;

use super::{
    items::StructuredInputField,
    types::{Declared, DeclaredSchema, FeedbackField, JsonObject, StrictString, TitleField},
};

/// A string that is always `$value`.
macro_rules! const_str {
    ($($name:ident = $value:literal;)+) => {$(
        pub struct $name;
        impl DeclaredSchema for $name {
            fn schema() -> MetaSchema {
                MetaSchema {
                    enum_items: vec![Value::from($value)],
                    ..MetaSchema::new("string")
                }
            }
        }
    )+};
}

const_str! {
    ActiveKind = "active";
    CustomKind = "custom";
    OutputTextKind = "output_text";
    CompleteIndicator = "complete";
}

fn string_enum(items: &[&str]) -> MetaSchema {
    MetaSchema {
        enum_items: items.iter().map(|&i| Value::from(i)).collect(),
        ..MetaSchema::new("string")
    }
}

/// `order` of the ChatKit lists. Its default is said in words: generated clients make a
/// field with a declared default required.
pub struct ChatKitOrderSchema;
impl DeclaredSchema for ChatKitOrderSchema {
    fn schema() -> MetaSchema {
        string_enum(&["desc", "asc"])
    }
}

/// A page size, any integer: absent, null or 0 is 20, the rest is clamped to 1..100.
pub struct ChatKitLimitSchema;
impl DeclaredSchema for ChatKitLimitSchema {
    fn schema() -> MetaSchema {
        MetaSchema::new_with_format("integer", "int64")
    }
}

/// An input's attachments: ids, at most [`crate::attachments::MAX_PER_MESSAGE`].
pub struct AttachmentIdsSchema;
impl DeclaredSchema for AttachmentIdsSchema {
    fn schema() -> MetaSchema {
        MetaSchema {
            items: Some(Box::new(poem_openapi::registry::MetaSchemaRef::Inline(
                Box::new(MetaSchema::new("string")),
            ))),
            max_items: Some(crate::attachments::MAX_PER_MESSAGE),
            ..MetaSchema::new("array")
        }
    }
}

/// An attachment's `type`.
pub struct AttachmentKindSchema;
impl DeclaredSchema for AttachmentKindSchema {
    fn schema() -> MetaSchema {
        string_enum(&["file", "image"])
    }
}

/// An upload's method: the gateway hands out `POST`.
pub struct UploadMethodSchema;
impl DeclaredSchema for UploadMethodSchema {
    fn schema() -> MetaSchema {
        string_enum(&["POST", "PUT"])
    }
}

/// A declared size in bytes.
pub struct SizeSchema;
impl DeclaredSchema for SizeSchema {
    fn schema() -> MetaSchema {
        MetaSchema {
            minimum: Some(0.0),
            ..MetaSchema::new_with_format("integer", "int64")
        }
    }
}

/// Where a client tool call stands.
pub struct ToolCallStatusSchema;
impl DeclaredSchema for ToolCallStatusSchema {
    fn schema() -> MetaSchema {
        string_enum(&["pending", "completed"])
    }
}

/// Where a structured input item stands.
pub struct InputItemStatusSchema;
impl DeclaredSchema for InputItemStatusSchema {
    fn schema() -> MetaSchema {
        string_enum(&["pending", "answered", "skipped"])
    }
}

/// What a structured input submission says overall.
pub struct SubmissionStatusSchema;
impl DeclaredSchema for SubmissionStatusSchema {
    fn schema() -> MetaSchema {
        string_enum(&["answered", "skipped"])
    }
}

/// An RFC 3339 UTC instant with microseconds, `2026-12-04T19:37:42.917247Z`.
pub struct MicrosSchema;
impl DeclaredSchema for MicrosSchema {
    fn schema() -> MetaSchema {
        MetaSchema::new_with_format("string", "date-time")
    }
}

type Micros = Declared<String, MicrosSchema>;
type Limit = Option<Declared<i64, ChatKitLimitSchema>>;
type OrderField = Option<Declared<String, ChatKitOrderSchema>>;

// ---- requests ---------------------------------------------------------------------------

/// A ChatKit request: `{"type", "params", "metadata"?}`, one of the protocol's 16 types.
/// The body is read as JSON whatever its `Content-Type`. Unknown fields are ignored; an
/// explicit `null` counts as absent. `params` is required even when every parameter is
/// optional (`{}`). Answered with a stream: `threads.create`, `threads.add_user_message`,
/// `threads.retry_after_item`, `threads.add_client_tool_output`,
/// `threads.add_structured_input` (turns: rate-limited), `threads.custom_action`. Answered
/// with JSON: the others (`input.transcribe` is rate-limited like a turn).
#[derive(Union)]
#[oai(discriminator_name = "type", one_of)]
pub enum ChatKitRequest {
    #[oai(mapping = "threads.create")]
    ThreadsCreate(ThreadsCreateRequest),
    #[oai(mapping = "threads.add_user_message")]
    ThreadsAddUserMessage(ThreadsAddUserMessageRequest),
    #[oai(mapping = "threads.add_client_tool_output")]
    ThreadsAddClientToolOutput(ThreadsAddClientToolOutputRequest),
    #[oai(mapping = "threads.add_structured_input")]
    ThreadsAddStructuredInput(ThreadsAddStructuredInputRequest),
    #[oai(mapping = "threads.retry_after_item")]
    ThreadsRetryAfterItem(ThreadsRetryAfterItemRequest),
    #[oai(mapping = "threads.custom_action")]
    ThreadsCustomAction(ThreadsCustomActionRequest),
    #[oai(mapping = "threads.sync_custom_action")]
    ThreadsSyncCustomAction(ThreadsSyncCustomActionRequest),
    #[oai(mapping = "threads.get_by_id")]
    ThreadsGetById(ThreadsGetByIdRequest),
    #[oai(mapping = "threads.list")]
    ThreadsList(ThreadsListRequest),
    #[oai(mapping = "items.list")]
    ItemsList(ItemsListRequest),
    #[oai(mapping = "threads.update")]
    ThreadsUpdate(ThreadsUpdateRequest),
    #[oai(mapping = "threads.delete")]
    ThreadsDelete(ThreadsDeleteRequest),
    #[oai(mapping = "items.feedback")]
    ItemsFeedback(ItemsFeedbackRequest),
    #[oai(mapping = "attachments.create")]
    AttachmentsCreate(AttachmentsCreateRequest),
    #[oai(mapping = "attachments.delete")]
    AttachmentsDelete(AttachmentsDeleteRequest),
    #[oai(mapping = "input.transcribe")]
    InputTranscribe(InputTranscribeRequest),
}

/// One request type's envelope: its parameters and the unused `metadata`.
macro_rules! request {
    ($($(#[doc = $doc:literal])* $name:ident($params:ty);)+) => {$(
        $(#[doc = $doc])*
        #[derive(Object)]
        pub struct $name {
            pub params: $params,
            /// Any value; accepted and not used.
            pub metadata: Option<Value>,
        }
    )+};
}

request! {
    /// `threads.create`: starts a thread with a user message and answers it. A turn: a
    /// stream, `thread.created` first.
    ThreadsCreateRequest(ThreadsCreateParams);
    /// `threads.add_user_message`: adds a user message to a thread and answers it. A turn: a
    /// stream.
    ThreadsAddUserMessageRequest(ThreadsAddUserMessageParams);
    /// `threads.add_client_tool_output`: the output of the thread's pending client tool
    /// call (its newest item; else 409 `item.not_pending`); the answer goes on. A turn: a
    /// stream, the call replaced with its output first.
    ThreadsAddClientToolOutputRequest(ThreadsAddClientToolOutputParams);
    /// `threads.add_structured_input`: answers to the thread's pending structured input
    /// item (its newest; else 409 `item.not_pending`), checked against its questions (422
    /// `request.invalid`); the answer goes on. A turn: a stream, the item replaced with its
    /// answers first.
    ThreadsAddStructuredInputRequest(ThreadsAddStructuredInputParams);
    /// `threads.retry_after_item`: answers a user message again; every item after it goes.
    /// A turn: a stream, without `thread.created` or the message's echo. 409
    /// `turn.in_progress` while a turn of the thread runs.
    ThreadsRetryAfterItemRequest(ThreadsRetryAfterItemParams);
    /// `threads.custom_action`: a click on a widget (a task widget's complete, reopen or
    /// delete). A stream: the click's workflow, the widget replaced, a `client_effect`.
    ThreadsCustomActionRequest(ThreadsCustomActionParams);
    /// `threads.sync_custom_action`: the same click, answered as JSON
    /// `{"updated_item": <the widget>}`.
    ThreadsSyncCustomActionRequest(ThreadsCustomActionParams);
    /// `threads.get_by_id`: JSON, the thread with its oldest 20 items, ascending (`has_more`
    /// and `after` for the rest).
    ThreadsGetByIdRequest(ThreadIdParams);
    /// `threads.list`: JSON, a page of the user's threads by creation time, each with an
    /// empty items page.
    ThreadsListRequest(ThreadsListParams);
    /// `items.list`: JSON, a page of a thread's items.
    ItemsListRequest(ItemsListParams);
    /// `threads.update`: renames a thread. JSON: the thread, with an empty items page.
    ThreadsUpdateRequest(ThreadsUpdateParams);
    /// `threads.delete`: deletes a thread and all its items. JSON: `{}`.
    ThreadsDeleteRequest(ThreadIdParams);
    /// `items.feedback`: rates items of a thread; shown as `feedback` on the REST messages.
    /// JSON: `{}`.
    ItemsFeedbackRequest(ItemsFeedbackParams);
    /// `attachments.create`: registers a file the widget is about to upload (its
    /// two-phase strategy). JSON: the attachment, with an `upload_descriptor` whose signed
    /// URL takes the bytes (multipart POST with a `file` part, or the raw bytes with PUT)
    /// for `attachments.upload_url_ttl_secs`, exactly `size` of them, once. Refused: a name
    /// that is a path or holds control characters (422 `attachment.name_invalid`), a size
    /// of 0 (422 `attachment.empty`) or over `attachments.max_bytes` (413
    /// `attachment.too_large`), a type not allowed (415 `attachment.type_not_allowed`), a
    /// user over a quota (409 `attachment.quota_exceeded`).
    AttachmentsCreateRequest(AttachmentsCreateParams);
    /// `attachments.delete`: deletes one of the user's attachments and its bytes (another
    /// user's, or none: 404 `attachment.not_found`). JSON: `{}`.
    AttachmentsDeleteRequest(AttachmentsDeleteParams);
    /// `input.transcribe`: dictation. JSON: `{"text"}`, the words spoken, from the agent's
    /// provider (`{base_url}/audio/transcriptions`). Refused: audio that is not base64 or
    /// is empty (400 `transcription.audio_invalid`), a type that is not `audio/*` (415
    /// `transcription.type_not_allowed`), more than `agent.openai.max_audio_bytes` decoded
    /// (413 `transcription.too_large`), an agent that cannot transcribe (the local one:
    /// 501 `transcription.unavailable`), a provider that fails (502 `agent.unavailable`).
    /// Its body may exceed `server.body_limit_bytes`, up to the base64 of
    /// `max_audio_bytes` plus 64 KiB.
    InputTranscribeRequest(InputTranscribeParams);
}

/// A user message as the widget sends it. The texts of `content`, concatenated, are the
/// message the agent answers: blank or over `messages.max_chars` (8000) characters is not
/// an HTTP error but a stream of one inline `error` event, and nothing is recorded.
#[derive(Object)]
pub struct UserInput {
    /// The parts, stored as sent and shown again on the item.
    pub content: Vec<ChatKitUserContent>,
    /// Ids of the user's attachments (`attachments.create` and uploaded, or the direct
    /// upload route), at most 10. Each is checked before anything is recorded: another
    /// user's or none is 404 `attachment.not_found`, one not uploaded 409
    /// `attachment.not_uploaded`, one sent in another thread 409 `attachment.in_use`. They
    /// then belong to the thread (deleted with it) and the agent gets their contents. With
    /// attachments the text may be blank: the message is recorded as "(attached: <names>)".
    pub attachments: Declared<Vec<String>, AttachmentIdsSchema>,
    /// Stored and shown again on the item; not sent to the agent.
    #[oai(nullable)]
    pub quoted_text: Option<StrictString>,
    /// An object; of its fields the gateway reads two, stored and shown again on the item.
    /// `model`: one of the models the server offers (`agent.openai.models`, the configured
    /// model always among them; another is 400 `model.not_allowed`), which answers this
    /// turn. `tool_choice.id`: a tool name (1 to 64 of `[A-Za-z0-9_-]`, else 400
    /// `request.malformed`) the model's first call must call, when the tool is offered.
    #[oai(nullable)]
    pub inference_options: Option<JsonObject>,
}

/// A part of a user message, by `type`: `input_text` {text}, or an @-mention `input_tag`
/// {id, text, data?, group?, interactive?}; any other part is 400 `request.malformed`.
#[derive(Union)]
#[oai(discriminator_name = "type", one_of)]
pub enum ChatKitUserContent {
    #[oai(mapping = "input_text")]
    InputText(InputText),
    #[oai(mapping = "input_tag")]
    InputTag(InputTag),
}

#[derive(Object)]
pub struct InputText {
    pub text: StrictString,
}

/// An @-mention. `data` (an object), `group` (a string) and `interactive` (a boolean) are
/// kept when they have those types.
#[derive(Object)]
pub struct InputTag {
    pub id: StrictString,
    /// Part of the message's text.
    pub text: StrictString,
}

#[derive(Object)]
pub struct ThreadsCreateParams {
    pub input: UserInput,
}

#[derive(Object)]
pub struct ThreadsAddUserMessageParams {
    pub thread_id: StrictString,
    pub input: UserInput,
}

#[derive(Object)]
pub struct ThreadsAddClientToolOutputParams {
    /// The thread whose pending client tool call this answers.
    pub thread_id: StrictString,
    /// What the tool returned: any JSON value, at most 64 KiB of it.
    pub result: Value,
}

#[derive(Object)]
pub struct ThreadsAddStructuredInputParams {
    pub thread_id: StrictString,
    /// The pending `structured_input` item answered.
    pub item_id: StrictString,
    pub input: StructuredInputSubmission,
}

#[derive(Object)]
pub struct StructuredInputSubmission {
    /// `answered` (the default) or `skipped`.
    pub status: Option<Declared<String, SubmissionStatusSchema>>,
    /// Answers keyed by the id of each input (default none).
    pub answers: Option<BTreeMap<String, StructuredInputAnswerSubmission>>,
}

#[derive(Object)]
pub struct StructuredInputAnswerSubmission {
    /// The values chosen or typed (default none).
    pub values: Option<Vec<String>>,
    /// Whether the question was skipped (default false).
    pub skipped: Option<bool>,
}

#[derive(Object)]
pub struct ThreadsRetryAfterItemParams {
    pub thread_id: StrictString,
    /// A user message of the thread (anything else is 404 `item.not_found`).
    pub item_id: StrictString,
}

#[derive(Object)]
pub struct ThreadsCustomActionParams {
    pub thread_id: StrictString,
    /// The widget the action came from; a task action needs it (400 `action.invalid`).
    #[oai(nullable)]
    pub item_id: Option<StrictString>,
    pub action: WidgetAction,
}

/// A widget's action as configured on the control, with any form values merged into the
/// payload. This server carries out `task.complete`, `task.reopen` and `task.delete`, each
/// with the payload `{"task_id": <int>}` (at most 2 KiB); any other type is 400
/// `action.unknown`, a payload that does not fit 400 `action.invalid`.
#[derive(Object)]
pub struct WidgetAction {
    #[oai(rename = "type")]
    pub kind: StrictString,
    /// Any value (see above).
    pub payload: Option<Value>,
}

#[derive(Object)]
pub struct ThreadIdParams {
    pub thread_id: StrictString,
}

#[derive(Object)]
pub struct ThreadsListParams {
    /// Absent, null or 0: 20; otherwise clamped to 1..100.
    #[oai(nullable)]
    pub limit: Limit,
    /// `desc` (newest first, the default) or `asc`, by creation time.
    #[oai(nullable)]
    pub order: OrderField,
    /// The id of the last thread of the previous page; one that names no thread of the list
    /// is 400 `request.malformed`.
    #[oai(nullable)]
    pub after: Option<StrictString>,
}

#[derive(Object)]
pub struct ItemsListParams {
    pub thread_id: StrictString,
    /// Absent, null or 0: 20; otherwise clamped to 1..100.
    #[oai(nullable)]
    pub limit: Limit,
    /// `desc` (newest first, the default) or `asc`, by creation time.
    #[oai(nullable)]
    pub order: OrderField,
    /// The id of the last item of the previous page; one that names no item of the list is
    /// 400 `request.malformed`.
    #[oai(nullable)]
    pub after: Option<StrictString>,
}

#[derive(Object)]
pub struct ThreadsUpdateParams {
    pub thread_id: StrictString,
    /// 1 to 200 characters, not only white space (else 422 `request.invalid`).
    pub title: TitleField,
}

#[derive(Object)]
pub struct ItemsFeedbackParams {
    pub thread_id: StrictString,
    /// Items of that thread (any other is 404 `item.not_found`).
    pub item_ids: Vec<StrictString>,
    /// `positive` or `negative`.
    pub kind: FeedbackField,
}

#[derive(Object)]
pub struct AttachmentsCreateParams {
    /// The file's name: no path, no control characters, at most 255 bytes.
    pub name: StrictString,
    /// Bytes; the upload must bring exactly this many.
    pub size: Declared<i64, SizeSchema>,
    /// One of `attachments.allowed_mime_types`; an image type is checked against the
    /// bytes' signature when they arrive.
    pub mime_type: StrictString,
}

#[derive(Object)]
pub struct AttachmentsDeleteParams {
    pub attachment_id: StrictString,
}

#[derive(Object)]
pub struct InputTranscribeParams {
    /// Base64-encoded audio (standard alphabet, padding optional).
    pub audio_base64: StrictString,
    /// An `audio/*` type as recorded, e.g. `audio/webm;codecs=opus`.
    pub mime_type: StrictString,
}

// ---- JSON answers -------------------------------------------------------------------------

/// A JSON answer, by request type: `threads.get_by_id` and `threads.update` a thread,
/// `threads.list` a page of threads, `items.list` a page of items, `threads.delete`,
/// `items.feedback` and `attachments.delete` `{}`, `threads.sync_custom_action`
/// `{"updated_item"}`, `attachments.create` an attachment, `input.transcribe` `{"text"}`.
#[derive(Union)]
pub enum ChatKitJsonAnswer {
    Thread(ChatKitThread),
    ThreadPage(ChatKitThreadPage),
    ItemPage(ChatKitItemPage),
    Done(ChatKitDone),
    Attachment(ChatKitAttachment),
    Transcription(ChatKitTranscription),
}

/// A file or image attached to a message (`FileAttachment` / `ImageAttachment`).
#[derive(Object)]
pub struct ChatKitAttachment {
    /// `image` (shown inline, with `preview_url`) or `file`.
    #[oai(rename = "type")]
    pub kind: Declared<String, AttachmentKindSchema>,
    /// `atc_…`.
    pub id: String,
    pub name: String,
    pub mime_type: String,
    /// Until its bytes have arrived: where to send them.
    #[oai(skip_serializing_if_is_none)]
    pub upload_descriptor: Option<ChatKitUploadDescriptor>,
    /// Images only: a signed link to the image, valid for
    /// `attachments.preview_url_ttl_secs` and minted afresh on every read (an `<img>`
    /// sends no Authorization header). Served with `X-Content-Type-Options: nosniff` and a
    /// sandboxing `Content-Security-Policy`; tampered or expired: 403
    /// `attachment.link_invalid`.
    #[oai(skip_serializing_if_is_none)]
    pub preview_url: Option<String>,
    /// The thread of the message that used it.
    #[oai(skip_serializing_if_is_none)]
    pub thread_id: Option<String>,
}

/// Where the widget sends an attachment's bytes (two-phase upload).
#[derive(Object)]
pub struct ChatKitUploadDescriptor {
    /// A signed link on the gateway, bound to the attachment, its owner and its size; it
    /// starts with `attachments.public_base_url` (empty: a path on this origin).
    pub url: String,
    /// `POST`: multipart/form-data with a `file` part (the raw bytes also go with `PUT`).
    pub method: Declared<String, UploadMethodSchema>,
    /// Always `{}`.
    pub headers: JsonObject,
}

/// What was said in a dictation.
#[derive(Object)]
pub struct ChatKitTranscription {
    pub text: String,
}

/// A thread. `title` is always present; `metadata` is always `{}` (REST metadata stays
/// server-side); `items` is filled by `threads.get_by_id` only (its oldest 20, ascending).
#[derive(Object)]
pub struct ChatKitThread {
    pub id: String,
    pub title: String,
    pub created_at: Micros,
    pub status: ChatKitThreadStatus,
    pub metadata: JsonObject,
    pub items: ChatKitItemPage,
}

/// Always `{"type": "active"}`: the gateway never locks or closes a thread.
#[derive(Object)]
pub struct ChatKitThreadStatus {
    #[oai(rename = "type")]
    pub kind: Declared<String, ActiveKind>,
}

/// A page: `after`, the id of its last element, is present only when `has_more`.
#[derive(Object)]
pub struct ChatKitThreadPage {
    pub data: Vec<ChatKitThread>,
    pub has_more: bool,
    #[oai(skip_serializing_if_is_none)]
    pub after: Option<String>,
}

/// A page: `after`, the id of its last element, is present only when `has_more`.
#[derive(Object)]
pub struct ChatKitItemPage {
    pub data: Vec<ChatKitItem>,
    pub has_more: bool,
    #[oai(skip_serializing_if_is_none)]
    pub after: Option<String>,
}

/// `{}`; for `threads.sync_custom_action`, the widget as the click left it.
#[derive(Object)]
pub struct ChatKitDone {
    #[oai(skip_serializing_if_is_none)]
    pub updated_item: Option<ChatKitItem>,
}

// ---- items --------------------------------------------------------------------------------

/// An item of a thread, by `type`: `user_message`, `assistant_message`, `workflow`,
/// `widget`, `client_tool_call`, `structured_input`; each has `id`, `thread_id` and
/// `created_at`. Hidden context is never sent.
#[derive(Union)]
#[oai(discriminator_name = "type", one_of)]
pub enum ChatKitItem {
    #[oai(mapping = "user_message")]
    UserMessage(ChatKitUserMessage),
    #[oai(mapping = "assistant_message")]
    AssistantMessage(ChatKitAssistantMessage),
    #[oai(mapping = "workflow")]
    Workflow(ChatKitWorkflowItem),
    #[oai(mapping = "widget")]
    Widget(ChatKitWidgetItem),
    #[oai(mapping = "client_tool_call")]
    ClientToolCall(ChatKitClientToolCall),
    #[oai(mapping = "structured_input")]
    StructuredInput(ChatKitStructuredInput),
}

/// The user's message: the parts as sent (a message posted through REST is one
/// `input_text` part).
#[derive(Object)]
pub struct ChatKitUserMessage {
    pub id: String,
    pub thread_id: String,
    pub created_at: Micros,
    pub content: Vec<ChatKitUserContent>,
    /// The attachments it was sent with (one deleted since is left out), with fresh
    /// preview links.
    pub attachments: Vec<ChatKitAttachment>,
    #[oai(skip_serializing_if_is_none)]
    pub quoted_text: Option<String>,
    /// `{}` when none; else `model` and `tool_choice` as sent.
    pub inference_options: JsonObject,
}

/// The assistant's answer: one `output_text` part (Markdown); `[]` while only announced.
#[derive(Object)]
pub struct ChatKitAssistantMessage {
    pub id: String,
    pub thread_id: String,
    pub created_at: Micros,
    pub content: Vec<ChatKitOutputText>,
}

#[derive(Object)]
pub struct ChatKitOutputText {
    #[oai(rename = "type")]
    pub kind: Declared<String, OutputTextKind>,
    pub text: String,
    /// Always `[]`.
    pub annotations: Vec<Value>,
}

/// The tool calls of one answer, as a collapsed list of tasks.
#[derive(Object)]
pub struct ChatKitWorkflowItem {
    pub id: String,
    pub thread_id: String,
    pub created_at: Micros,
    pub workflow: ChatKitWorkflow,
}

#[derive(Object)]
pub struct ChatKitWorkflow {
    #[oai(rename = "type")]
    pub kind: Declared<String, CustomKind>,
    pub tasks: Vec<ChatKitWorkflowTask>,
    /// The single task's title, or "N task actions"; absent without tasks.
    #[oai(skip_serializing_if_is_none)]
    pub summary: Option<ChatKitWorkflowSummary>,
    pub expanded: bool,
}

/// One tool call, with a readable title ("Added task 3: buy milk").
#[derive(Object)]
pub struct ChatKitWorkflowTask {
    #[oai(rename = "type")]
    pub kind: Declared<String, CustomKind>,
    pub title: String,
    pub icon: String,
    #[oai(skip_serializing_if_is_none)]
    pub content: Option<String>,
    pub status_indicator: Declared<String, CompleteIndicator>,
}

#[derive(Object)]
pub struct ChatKitWorkflowSummary {
    pub title: String,
    pub icon: String,
}

/// A task list: a card with one row per task and controls whose actions
/// (`threads.custom_action`) complete, reopen or delete the task.
#[derive(Object)]
pub struct ChatKitWidgetItem {
    pub id: String,
    pub thread_id: String,
    pub created_at: Micros,
    /// The widget tree (`{"type": "Card", "children": [...]}`), as ChatKit's widget
    /// components define it.
    pub widget: JsonObject,
    /// The list as text.
    pub copy_text: String,
}

/// A tool the client runs; answered with `threads.add_client_tool_output`.
#[derive(Object)]
pub struct ChatKitClientToolCall {
    pub id: String,
    pub thread_id: String,
    pub created_at: Micros,
    /// `pending` until the output arrives, then `completed`.
    pub status: Declared<String, ToolCallStatusSchema>,
    pub call_id: String,
    pub name: String,
    pub arguments: JsonObject,
    #[oai(skip_serializing_if_is_none)]
    pub output: Option<Value>,
}

/// Questions put to the user; answered with `threads.add_structured_input`.
#[derive(Object)]
pub struct ChatKitStructuredInput {
    pub id: String,
    pub thread_id: String,
    pub created_at: Micros,
    pub status: Declared<String, InputItemStatusSchema>,
    pub inputs: Vec<StructuredInputField>,
}
