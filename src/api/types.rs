//! Wire shapes. Field names follow what existing frontends already use.

use entity::{thread, thread_item};
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

use crate::{auth::MintedSession, chat::TurnResult, domain::format_time, store::ToolCallRecord};

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
    pub token: String,
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
    pub after: Option<String>,
}

#[derive(Object)]
pub struct ThreadInput {
    /// 1 to 200 characters. Defaults to "New chat" on create.
    pub title: Option<String>,
    /// A JSON object of at most 16 KiB, stored as given.
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
    pub feedback: Option<String>,
}

impl From<thread_item::Model> for Message {
    fn from(m: thread_item::Model) -> Self {
        Self {
            id: m.id,
            role: m.role,
            content: m.content,
            created_at: format_time(&m.created_at),
            status: m.status,
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
    pub after: Option<String>,
}

#[derive(Object)]
pub struct MessagePage {
    pub data: Vec<Message>,
    pub has_more: bool,
    pub after: Option<String>,
}

#[derive(Object)]
pub struct SendMessageRequest {
    /// The thread to post to; null starts a new thread titled after the message.
    pub thread_id: Option<String>,
    pub message: String,
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
