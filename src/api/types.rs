//! Wire shapes. Field names follow what existing frontends already use.

use entity::{thread, thread_item};
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

use chrono::{DateTime, Utc};

use crate::{
    auth::MintedSession,
    chat::TurnResult,
    domain::format_time,
    store::{ToolCallRecord, STATUS_FAILED, STATUS_PENDING},
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

impl poem_openapi::types::ParseFromJSON for StrictString {
    fn parse_from_json(value: Option<Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(Self(s)),
            other => Err(poem_openapi::types::ParseError::custom(format!(
                "expected a JSON string, got {}",
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
pub struct SessionResponse {
    /// Send as `Authorization: Bearer <client_secret>`.
    pub client_secret: String,
    pub user_id: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// Seconds until `expires_at`.
    pub expires_in: u64,
}

impl From<MintedSession> for SessionResponse {
    fn from(m: MintedSession) -> Self {
        Self {
            client_secret: m.client_secret,
            user_id: m.user.as_str().to_owned(),
            expires_at: format_time(&m.expires_at),
            expires_in: m.expires_in,
        }
    }
}

#[derive(Object)]
pub struct RefreshRequest {
    /// The current client_secret (it may have expired, within the grace period).
    pub token: StrictString,
}

#[derive(Object)]
pub struct Thread {
    pub id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
    /// User and assistant messages in the thread.
    pub message_count: i32,
    pub metadata: Value,
}

impl From<thread::Model> for Thread {
    fn from(t: thread::Model) -> Self {
        Self {
            id: t.id,
            title: t.title,
            created_at: format_time(&t.created_at),
            updated_at: format_time(&t.updated_at),
            message_count: t.message_count,
            metadata: t.metadata,
        }
    }
}

#[derive(Object)]
pub struct ThreadList {
    /// Most recent activity first.
    pub threads: Vec<Thread>,
    pub has_more: bool,
    /// Pass as `after` for the next page; null on the last page.
    #[oai(nullable)]
    pub after: Option<String>,
}

#[derive(Object)]
pub struct ThreadInput {
    /// 1 to 200 characters. Defaults to "New chat" on create.
    #[oai(nullable)]
    pub title: Option<StrictString>,
    /// A JSON object of at most 16 KiB, stored as given.
    #[oai(nullable)]
    pub metadata: Option<Value>,
}

#[derive(Object)]
pub struct Message {
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub created_at: String,
    /// User messages: `pending`, `completed` or `failed` (the agent did not answer it).
    pub status: String,
    /// The user's rating (`positive` or `negative`), given through ChatKit's feedback.
    #[oai(nullable)]
    pub feedback: Option<String>,
}

impl Message {
    /// A stored message as clients see it. A user turn without an Idempotency-Key that is
    /// still pending after `stale_before` had its runner vanish (a crash, a restart): no
    /// retry can reclaim it, so it reads as `failed` rather than pending forever. Keyed
    /// turns stay pending: a retry with their key reclaims them.
    pub fn read(m: thread_item::Model, stale_before: DateTime<Utc>) -> Self {
        let abandoned =
            m.status == STATUS_PENDING && m.client_key.is_none() && m.updated_at < stale_before;
        Self {
            id: m.id,
            role: m.role,
            content: m.content,
            created_at: format_time(&m.created_at),
            status: if abandoned {
                STATUS_FAILED.to_owned()
            } else {
                m.status
            },
            feedback: m.feedback,
        }
    }
}

#[derive(Object)]
pub struct ThreadDetail {
    #[oai(flatten)]
    pub thread: Thread,
    /// The latest messages, oldest first.
    pub messages: Vec<Message>,
    /// Older messages exist; page them with GET /threads/{id}/messages?order=desc&after=...
    pub has_more: bool,
    #[oai(nullable)]
    pub after: Option<String>,
}

#[derive(Object)]
pub struct MessagePage {
    pub data: Vec<Message>,
    pub has_more: bool,
    #[oai(nullable)]
    pub after: Option<String>,
}

#[derive(Object)]
pub struct SendMessageRequest {
    /// The thread to post to; null starts a new thread titled after the message.
    #[oai(nullable)]
    pub thread_id: Option<StrictString>,
    pub message: StrictString,
}

#[derive(Object)]
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
