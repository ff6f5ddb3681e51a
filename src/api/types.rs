//! Wire shapes. Field names follow what existing frontends already use.

use entity::thread;
use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::Example,
    types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type},
    ApiResponse, Object,
};
use serde_json::{json, Value};

use chrono::{DateTime, Utc};

use crate::{
    auth::MintedSession,
    chat::TurnResult,
    domain::{format_time, ToolCallRecord},
};

/// A body field that must be a JSON string. poem-openapi's `String` also takes a number or
/// a boolean and stores its text (`5` became `"5"`); a wrong type must be refused instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrictString(String);

impl StrictString {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::ops::Deref for StrictString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl poem_openapi::types::Type for StrictString {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

/// The words every "not a JSON string" refusal carries; the error envelope answers those
/// 422 `request.invalid` (a wrong value), not 400 (an unreadable body).
pub const NOT_A_JSON_STRING: &str = "expected a JSON string";

impl poem_openapi::types::ParseFromJSON for StrictString {
    fn parse_from_json(value: Option<Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(Self(s)),
            // Absent: a missing field, an unreadable body (400), not a wrong value.
            None => Err(poem_openapi::types::ParseError::custom(
                "a required string field is missing",
            )),
            other => Err(poem_openapi::types::ParseError::custom(format!(
                "{NOT_A_JSON_STRING}, got {}",
                match other.unwrap_or_default() {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    Value::Array(_) => "an array",
                    Value::Object(_) => "an object",
                }
            ))),
        }
    }
}

impl poem_openapi::types::ToJSON for StrictString {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

#[derive(Object)]
#[oai(example)]
pub struct SessionResponse {
    /// Send as `Authorization: Bearer <client_secret>`.
    pub client_secret: String,
    pub user_id: String,
    /// RFC 3339 UTC.
    pub expires_at: Timestamp,
    /// Seconds until `expires_at`.
    pub expires_in: u64,
}

impl From<MintedSession> for SessionResponse {
    fn from(m: MintedSession) -> Self {
        Self {
            client_secret: m.client_secret,
            user_id: m.user.as_str().to_owned(),
            expires_at: Timestamp::at(&m.expires_at),
            expires_in: m.expires_in,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct RefreshRequest {
    /// The current client_secret (it may have expired, within the grace period).
    pub token: StrictString,
}

#[derive(Object, serde::Serialize)]
#[oai(example)]
pub struct Thread {
    pub id: String,
    pub title: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// User and assistant messages in the thread.
    pub message_count: i32,
    pub metadata: Value,
}

impl From<thread::Model> for Thread {
    fn from(t: thread::Model) -> Self {
        Self {
            id: t.id,
            title: t.title,
            created_at: Timestamp::at(&t.created_at),
            updated_at: Timestamp::at(&t.updated_at),
            message_count: t.message_count,
            metadata: t.metadata,
        }
    }
}

#[derive(Object, serde::Serialize)]
pub struct ThreadList {
    /// Most recent activity first.
    pub threads: Vec<Thread>,
    pub has_more: bool,
    /// Pass as `after` for the next page; null on the last page.
    #[oai(nullable)]
    pub after: Option<String>,
}

#[derive(Object)]
#[oai(example)]
pub struct ThreadInput {
    /// 1 to 200 characters, not only white space. Defaults to "New chat" on create.
    #[oai(nullable)]
    pub title: Option<TitleField>,
    /// A JSON object of at most 16 KiB, stored as given.
    #[oai(nullable)]
    pub metadata: Option<Metadata>,
}

/// An entry of a thread. By default (`include=messages`) only the user's and the
/// assistant's messages; with `include=all`, every item a ChatKit client is shown, each
/// with its data in the field named after its `type`. Fields present on every entry keep
/// their meaning whatever the type.
#[derive(Object, serde::Serialize)]
#[oai(example)]
pub struct Message {
    pub id: String,
    /// What the entry is: `user_message`, `assistant_message`, or with `include=all` also
    /// `workflow` (the tool calls made for an answer, in `tool_calls`), `widget` (a task
    /// list, in `tasks`), `client_tool_call` (in `client_tool_call`) and
    /// `structured_input` (questions, in `structured_input`).
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: KindField,
    /// `user` for the user's messages; `assistant` for everything else (the answers and what
    /// the assistant adds to them).
    pub role: RoleField,
    /// Plain text. A message's text; for a workflow one line per tool call ("Added task 1:
    /// buy milk"), for a widget its text version (a heading, then one line per task), for a
    /// client tool call the tool's name, for structured input its questions, one per line.
    pub content: String,
    pub created_at: Timestamp,
    /// User messages: `pending` (being answered), `completed` or `failed` (the agent did
    /// not answer it). Assistant messages: `completed`, or `cancelled` when the user stopped
    /// the answer (`content` is what was said before the stop, maybe nothing). Client tool
    /// calls and structured input: `pending` until the client answers, then `completed`.
    /// Workflows and widgets: `completed`.
    pub status: StatusField,
    /// The user's rating (`positive` or `negative`), given through ChatKit's feedback.
    #[oai(nullable)]
    pub feedback: Option<FeedbackField>,
    /// `type: workflow` only: the tool calls, in the order they ran (the same shape as
    /// `tool_calls` of `POST /messages`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// `type: widget` only: the tasks it shows.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<super::items::TaskList>,
    /// `type: client_tool_call` only.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tool_call: Option<super::items::ClientToolCall>,
    /// `type: structured_input` only.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structured_input: Option<super::items::StructuredInput>,
    /// `type: user_message` sent with attachments (through ChatKit): the files, in the
    /// order attached; one deleted since is left out.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<super::items::MessageAttachment>>,
}

#[derive(Object, serde::Serialize)]
pub struct ThreadDetail {
    #[oai(flatten)]
    #[serde(flatten)]
    pub thread: Thread,
    /// The latest entries (messages, or with `include=all` every item shown), oldest first.
    pub messages: Vec<Message>,
    /// Older entries exist; page them with GET /threads/{id}/messages?order=desc&after=...
    /// (and the same `include`).
    pub has_more: bool,
    #[oai(nullable)]
    pub after: Option<String>,
}

#[derive(Object, serde::Serialize)]
pub struct MessagePage {
    pub data: Vec<Message>,
    pub has_more: bool,
    #[oai(nullable)]
    pub after: Option<String>,
}

#[derive(Object)]
#[oai(example)]
pub struct SendMessageRequest {
    /// The thread to post to; null starts a new thread titled after the message.
    #[oai(nullable)]
    pub thread_id: Option<StrictString>,
    /// Not only white space; at most 8000 characters with the default configuration (the
    /// limit is configurable, `GATEWAY__MESSAGES__MAX_CHARS`): longer is 422
    /// `message.too_long`, blank is 422 `message.empty`.
    pub message: MessageField,
}

#[derive(Object, serde::Serialize)]
#[oai(example)]
pub struct ToolCall {
    pub tool: String,
    pub args: Value,
    pub result: Value,
}

impl From<ToolCallRecord> for ToolCall {
    fn from(c: ToolCallRecord) -> Self {
        Self {
            tool: c.tool,
            args: c.args,
            result: c.result,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct SendMessageResponse {
    /// The recorded user message.
    pub message_id: String,
    /// The recorded assistant message.
    pub response_id: String,
    pub response: String,
    pub thread_id: String,
    pub tool_calls: Vec<ToolCall>,
}

impl From<TurnResult> for SendMessageResponse {
    fn from(r: TurnResult) -> Self {
        Self {
            message_id: r.message_id,
            response_id: r.response_id,
            response: r.response,
            thread_id: r.thread_id,
            tool_calls: r.tool_calls.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
pub enum ThreadCreated {
    /// The new thread.
    #[oai(status = 201)]
    Created(poem_openapi::payload::Json<Thread>),
}

/// A value whose schema states bounds the handler checks itself. poem-openapi's validators
/// would refuse an out-of-bounds value as malformed (400); this API answers 422
/// (`request.invalid`, `message.empty`, `message.too_long`): the request is well formed,
/// a value is not acceptable. So the document declares the bounds ([`DeclaredSchema`])
/// and the handlers enforce them, parsing here only checks the JSON or parameter type.
pub struct Declared<T, S>(T, std::marker::PhantomData<fn() -> S>);

/// The schema a [`Declared`] value is documented with.
pub trait DeclaredSchema {
    fn schema() -> MetaSchema;
}

impl<T, S> Declared<T, S> {
    pub fn new(value: T) -> Self {
        Self(value, std::marker::PhantomData)
    }

    #[must_use]
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T, S> std::ops::Deref for Declared<T, S> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type, S: DeclaredSchema> Type for Declared<T, S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> std::borrow::Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(S::schema()))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_raw_value()
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        self.0.raw_element_iter()
    }
}

impl<T: ParseFromJSON, S: DeclaredSchema> ParseFromJSON for Declared<T, S> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        T::parse_from_json(value)
            .map(|v| Self(v, std::marker::PhantomData))
            .map_err(ParseError::propagate)
    }
}

impl<T: ParseFromParameter, S: DeclaredSchema> ParseFromParameter for Declared<T, S> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        T::parse_from_parameter(value)
            .map(|v| Self(v, std::marker::PhantomData))
            .map_err(ParseError::propagate)
    }
}

impl<T: serde::Serialize, S> serde::Serialize for Declared<T, S> {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        self.0.serialize(serializer)
    }
}

impl<T: ToJSON, S: DeclaredSchema> ToJSON for Declared<T, S> {
    fn to_json(&self) -> Option<Value> {
        self.0.to_json()
    }
}

/// Some character that is not Unicode white space (what `str::trim` removes): a title or
/// message made only of white space is refused as empty. Spelled out rather than `\s`,
/// whose meaning differs between regex dialects.
const NOT_ONLY_WHITE_SPACE: &str = "[^\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

fn string_schema(min: usize, max: usize, pattern: &str) -> MetaSchema {
    MetaSchema {
        min_length: Some(min),
        max_length: Some(max),
        pattern: Some(pattern.to_owned()),
        ..MetaSchema::new("string")
    }
}

/// `limit`: 1 to 100, 20 when absent (see [`crate::domain::page_limit`]).
pub struct PageLimitSchema;
impl DeclaredSchema for PageLimitSchema {
    fn schema() -> MetaSchema {
        MetaSchema {
            minimum: Some(1.0),
            maximum: Some(100.0),
            default: Some(Value::from(20)),
            ..MetaSchema::new_with_format("integer", "int64")
        }
    }
}
pub type PageLimit = Declared<i64, PageLimitSchema>;

/// `order`: `desc` (the default) or `asc` (see [`crate::domain::Order`]).
pub struct OrderSchema;
impl DeclaredSchema for OrderSchema {
    fn schema() -> MetaSchema {
        MetaSchema {
            enum_items: vec![Value::from("desc"), Value::from("asc")],
            default: Some(Value::from("desc")),
            ..MetaSchema::new("string")
        }
    }
}
pub type OrderParam = Declared<String, OrderSchema>;

/// `all` on sign-out: true or false, or 1 or 0, in any case.
pub struct SignOutAllSchema;
impl DeclaredSchema for SignOutAllSchema {
    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some("^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$".to_owned()),
            default: Some(Value::from("false")),
            ..MetaSchema::new("string")
        }
    }
}
pub type SignOutAll = Declared<String, SignOutAllSchema>;

/// A thread title (see [`crate::domain::Title`]).
pub struct TitleSchema;
impl DeclaredSchema for TitleSchema {
    fn schema() -> MetaSchema {
        string_schema(1, crate::domain::Title::MAX_CHARS, NOT_ONLY_WHITE_SPACE)
    }
}
pub type TitleField = Declared<StrictString, TitleSchema>;

/// `messages.max_chars` in config/default.toml (a test holds them equal).
pub const DEFAULT_MESSAGE_MAX_CHARS: usize = 8000;

/// The message of a turn: at most `messages.max_chars` characters. The document is the
/// same for every configuration, so it states the default and says that it is configurable.
pub struct MessageSchema;
impl DeclaredSchema for MessageSchema {
    fn schema() -> MetaSchema {
        string_schema(1, DEFAULT_MESSAGE_MAX_CHARS, NOT_ONLY_WHITE_SPACE)
    }
}
pub type MessageField = Declared<StrictString, MessageSchema>;

/// Thread metadata: a JSON object (its 16 KiB bound is checked, not declared).
pub struct MetadataSchema;
impl DeclaredSchema for MetadataSchema {
    fn schema() -> MetaSchema {
        MetaSchema::new("object")
    }
}
pub type Metadata = Declared<Value, MetadataSchema>;

/// `Idempotency-Key`: 1 to 255 visible ASCII characters (see
/// [`crate::domain::IdempotencyKey`]; the handler reads the raw header).
pub struct IdempotencyKeySchema;
impl DeclaredSchema for IdempotencyKeySchema {
    fn schema() -> MetaSchema {
        string_schema(1, 255, "^[\\u0021-\\u007e]+$")
    }
}
pub type IdempotencyKeyParam = Declared<String, IdempotencyKeySchema>;

/// A UTC instant as RFC 3339 with milliseconds (see [`crate::domain::format_time`]); kept
/// as the formatted string so the wire form does not depend on poem-openapi's rendering.
pub struct DateTimeSchema;
impl DeclaredSchema for DateTimeSchema {
    fn schema() -> MetaSchema {
        MetaSchema::new_with_format("string", "date-time")
    }
}
pub type Timestamp = Declared<String, DateTimeSchema>;

impl Timestamp {
    pub fn at(t: &DateTime<Utc>) -> Self {
        Self::new(format_time(t))
    }
}

fn string_enum(items: &[&str]) -> MetaSchema {
    MetaSchema {
        enum_items: items.iter().map(|&i| Value::from(i)).collect(),
        ..MetaSchema::new("string")
    }
}

/// What a thread entry is (see `entity::thread_item::ItemType`; never `hidden_context`).
pub struct KindSchema;
impl DeclaredSchema for KindSchema {
    fn schema() -> MetaSchema {
        string_enum(&[
            "user_message",
            "assistant_message",
            "workflow",
            "widget",
            "client_tool_call",
            "structured_input",
        ])
    }
}
pub type KindField = Declared<String, KindSchema>;

/// What a task widget's tool calls or click did (see
/// [`crate::domain::task_list::TaskChange`]).
pub struct ChangeSchema;
impl DeclaredSchema for ChangeSchema {
    fn schema() -> MetaSchema {
        string_enum(&[
            "added",
            "listed",
            "completed",
            "reopened",
            "updated",
            "deleted",
        ])
    }
}
pub type ChangeField = Declared<String, ChangeSchema>;

/// Where a structured input stands, as its questions say.
pub struct InputStatusSchema;
impl DeclaredSchema for InputStatusSchema {
    fn schema() -> MetaSchema {
        string_enum(&["pending", "answered", "skipped"])
    }
}
pub type InputStatusField = Declared<String, InputStatusSchema>;

/// `include` on the thread reads: `messages` (the default) or `all`.
pub struct IncludeSchema;
impl DeclaredSchema for IncludeSchema {
    fn schema() -> MetaSchema {
        MetaSchema {
            enum_items: vec![Value::from("messages"), Value::from("all")],
            default: Some(Value::from("messages")),
            ..MetaSchema::new("string")
        }
    }
}
pub type IncludeParam = Declared<String, IncludeSchema>;

/// Any JSON object.
pub struct ObjectSchema;
impl DeclaredSchema for ObjectSchema {
    fn schema() -> MetaSchema {
        MetaSchema::new("object")
    }
}
pub type JsonObject = Declared<Value, ObjectSchema>;

/// Who wrote a message (see `entity::thread_item::Role`).
pub struct RoleSchema;
impl DeclaredSchema for RoleSchema {
    fn schema() -> MetaSchema {
        string_enum(&["user", "assistant"])
    }
}
pub type RoleField = Declared<String, RoleSchema>;

/// Where a thread entry stands (see `entity::thread_item::ItemStatus`).
pub struct StatusSchema;
impl DeclaredSchema for StatusSchema {
    fn schema() -> MetaSchema {
        string_enum(&["pending", "completed", "failed", "cancelled"])
    }
}
pub type StatusField = Declared<String, StatusSchema>;

/// A user's rating of an answer.
pub struct FeedbackSchema;
impl DeclaredSchema for FeedbackSchema {
    fn schema() -> MetaSchema {
        string_enum(&["positive", "negative"])
    }
}
pub type FeedbackField = Declared<String, FeedbackSchema>;

// Examples: what Swagger UI and generated clients show instead of `"string"`. The values
// are shaped like real ones (ids, RFC 3339 times, a call of the built-in `add_task` tool).

const EXAMPLE_THREAD_ID: &str = "thr_0193522c4e1d7c3a9f2b6e8d0a4c1f57";
const EXAMPLE_USER_ID: &str = "user_8f3a2c";
const EXAMPLE_SECRET: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyXzhmM2EyYyJ9.c2lnbmF0dXJl";

fn ts(s: &str) -> Timestamp {
    Timestamp::new(s.to_owned())
}

impl Example for SessionResponse {
    fn example() -> Self {
        Self {
            client_secret: EXAMPLE_SECRET.to_owned(),
            user_id: EXAMPLE_USER_ID.to_owned(),
            expires_at: ts("2026-11-22T09:15:00.000Z"),
            expires_in: 900,
        }
    }
}

impl Example for RefreshRequest {
    fn example() -> Self {
        Self {
            token: StrictString(EXAMPLE_SECRET.to_owned()),
        }
    }
}

impl Example for Thread {
    fn example() -> Self {
        Self {
            id: EXAMPLE_THREAD_ID.to_owned(),
            title: "Groceries".to_owned(),
            created_at: ts("2026-11-22T08:01:12.345Z"),
            updated_at: ts("2026-11-22T08:03:40.120Z"),
            message_count: 2,
            metadata: json!({"color": "green"}),
        }
    }
}

impl Example for ThreadInput {
    fn example() -> Self {
        Self {
            title: Some(Declared::new(StrictString("Groceries".to_owned()))),
            metadata: Some(Declared::new(json!({"color": "green"}))),
        }
    }
}

impl Example for Message {
    fn example() -> Self {
        Self {
            id: "msg_0193522c9b0e7a41b3d95c7e2f816a0d".to_owned(),
            kind: Declared::new("assistant_message".to_owned()),
            role: Declared::new("assistant".to_owned()),
            content: "Added \"Buy milk\" as task 3.".to_owned(),
            created_at: ts("2026-11-22T08:03:40.120Z"),
            status: Declared::new("completed".to_owned()),
            feedback: Some(Declared::new("positive".to_owned())),
            tool_calls: None,
            tasks: None,
            client_tool_call: None,
            structured_input: None,
            attachments: None,
        }
    }
}

impl Example for SendMessageRequest {
    fn example() -> Self {
        Self {
            thread_id: Some(StrictString(EXAMPLE_THREAD_ID.to_owned())),
            message: Declared::new(StrictString("Remind me to buy milk".to_owned())),
        }
    }
}

impl Example for ToolCall {
    fn example() -> Self {
        Self {
            tool: "add_task".to_owned(),
            args: json!({"title": "Buy milk"}),
            result: json!({"task": {
                "task_id": 3,
                "title": "Buy milk",
                "description": null,
                "completed": false,
                "created_at": "2026-11-22T08:03:39.870Z",
            }}),
        }
    }
}

impl Example for SendMessageResponse {
    fn example() -> Self {
        Self {
            message_id: "msg_0193522c4e2f7b18a6c04d9e3b5f7a21".to_owned(),
            response_id: "msg_0193522c9b0e7a41b3d95c7e2f816a0d".to_owned(),
            response: "Added \"Buy milk\" as task 3.".to_owned(),
            thread_id: EXAMPLE_THREAD_ID.to_owned(),
            tool_calls: vec![ToolCall::example()],
        }
    }
}

/// A JSON answer written by serde straight into its body, documented as poem-openapi's
/// `Json<T>` documents it. poem-openapi's own builds a `serde_json::Value` tree of the
/// whole answer first (`ToJSON`), a map per object: for the read answers, a page of
/// messages, that tree cost more than writing the bytes. The wire types derive both, and
/// a test holds the two renderings equal.
pub struct JsonBody<T>(pub T);

/// poem's own JSON answers say the same.
const JSON_UTF8: &str = "application/json; charset=utf-8";

impl<T: Type> poem_openapi::payload::Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = JSON_UTF8;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }
}

impl<T: serde::Serialize + Send> poem::IntoResponse for JsonBody<T> {
    fn into_response(self) -> poem::Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => poem::Response::builder().content_type(JSON_UTF8).body(body),
            // Plain structs, strings and maps with string keys: not reached.
            Err(e) => {
                poem::Error::new(e, poem::http::StatusCode::INTERNAL_SERVER_ERROR).into_response()
            }
        }
    }
}

impl<T: Type + serde::Serialize + Send> ApiResponse for JsonBody<T> {
    fn meta() -> poem_openapi::registry::MetaResponses {
        use poem_openapi::{
            payload::Payload,
            registry::{MetaMediaType, MetaResponse, MetaResponses},
        };
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: Self::CONTENT_TYPE,
                    schema: Self::schema_ref(),
                }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::items::{
        ChoiceOption, ClientToolCall, FreeformInput, MessageAttachment, MultipleChoiceInput,
        StructuredInput, StructuredInputAnswer, StructuredInputField, TaskList, TaskRow,
    };

    /// serde's rendering, as the answers are written, against poem-openapi's.
    fn same<T: ToJSON + serde::Serialize>(value: &T) -> Value {
        let written = serde_json::to_value(value).unwrap();
        assert_eq!(Some(written.clone()), value.to_json());
        written
    }

    fn thread() -> Thread {
        Thread {
            id: "thr_1".into(),
            title: "Groceries".into(),
            created_at: Timestamp::new("2026-12-05T10:00:00.000Z".into()),
            updated_at: Timestamp::new("2026-12-05T10:01:00.000Z".into()),
            message_count: 2,
            metadata: json!({"n": 1.5, "list": [true, null, "x"], "nested": {"a": {}}}),
        }
    }

    fn message(kind: &str) -> Message {
        Message {
            id: format!("msg_{kind}"),
            kind: Declared::new(kind.into()),
            role: Declared::new("assistant".into()),
            content: "text".into(),
            created_at: Timestamp::new("2026-12-05T10:00:00.000Z".into()),
            status: Declared::new("completed".into()),
            feedback: None,
            tool_calls: None,
            tasks: None,
            client_tool_call: None,
            structured_input: None,
            attachments: None,
        }
    }

    fn answer() -> Option<StructuredInputAnswer> {
        Some(StructuredInputAnswer {
            values: vec!["yes".into()],
            skipped: false,
        })
    }

    /// Every kind of entry with every optional field set and unset: a field renamed,
    /// skipped or flattened on one side only would differ here.
    fn messages() -> Vec<Message> {
        let mut user = message("user_message");
        user.role = Declared::new("user".into());
        user.feedback = Some(Declared::new("positive".into()));
        user.attachments = Some(vec![
            MessageAttachment {
                id: "atc_1".into(),
                kind: Declared::new("image".into()),
                name: "cat.png".into(),
                mime_type: "image/png".into(),
                size: 3,
                preview_url: Some("https://gw/preview".into()),
            },
            MessageAttachment {
                id: "atc_2".into(),
                kind: Declared::new("file".into()),
                name: "notes.txt".into(),
                mime_type: "text/plain".into(),
                size: 4,
                preview_url: None,
            },
        ]);
        let mut workflow = message("workflow");
        workflow.tool_calls = Some(vec![ToolCall {
            tool: "add_task".into(),
            args: json!({"title": "milk"}),
            result: json!({"task": {"task_id": 1, "title": "milk"}}),
        }]);
        let mut widget = message("widget");
        widget.tasks = Some(TaskList {
            change: Declared::new("added".into()),
            tasks: vec![TaskRow {
                task_id: 1,
                title: "milk".into(),
                completed: false,
                deleted: true,
            }],
        });
        let mut pending = message("client_tool_call");
        pending.status = Declared::new("pending".into());
        pending.client_tool_call = Some(ClientToolCall {
            call_id: "call_1".into(),
            name: "get_location".into(),
            arguments: Declared::new(json!({"precise": true})),
            output: None,
        });
        let mut done = message("client_tool_call");
        done.client_tool_call = Some(ClientToolCall {
            call_id: "call_2".into(),
            name: "get_location".into(),
            arguments: Declared::new(json!({})),
            output: Some(json!(["anything", 1])),
        });
        let mut questions = message("structured_input");
        questions.structured_input = Some(StructuredInput {
            status: Declared::new("answered".into()),
            inputs: vec![
                StructuredInputField::MultipleChoice(MultipleChoiceInput {
                    id: "q1".into(),
                    question: "Which?".into(),
                    options: vec![ChoiceOption {
                        value: "yes".into(),
                    }],
                    multiple: true,
                    answer: answer(),
                }),
                StructuredInputField::MultipleChoice(MultipleChoiceInput {
                    id: "q2".into(),
                    question: "Which?".into(),
                    options: vec![],
                    multiple: false,
                    answer: None,
                }),
                StructuredInputField::Freeform(FreeformInput {
                    id: "q3".into(),
                    question: "Why?".into(),
                    description: Some("say".into()),
                    answer: answer(),
                }),
                StructuredInputField::Freeform(FreeformInput {
                    id: "q4".into(),
                    question: "Why?".into(),
                    description: None,
                    answer: None,
                }),
            ],
        });
        vec![
            user,
            message("assistant_message"),
            workflow,
            widget,
            pending,
            done,
            questions,
        ]
    }

    #[test]
    fn read_answers_are_written_as_poem_openapi_renders_them() {
        same(&ThreadList {
            threads: vec![thread(), thread()],
            has_more: true,
            after: Some("cursor".into()),
        });
        same(&ThreadList {
            threads: vec![],
            has_more: false,
            after: None,
        });
        let detail = same(&ThreadDetail {
            thread: thread(),
            messages: messages(),
            has_more: false,
            after: None,
        });
        assert_eq!(
            detail["title"], "Groceries",
            "the thread's fields are flattened"
        );
        assert_eq!(
            detail["messages"][6]["structured_input"]["inputs"][2]["type"],
            "freeform"
        );
        same(&MessagePage {
            data: messages(),
            has_more: true,
            after: Some("cursor".into()),
        });
    }
}
