//! What every provider implements: the [`Agent`] trait, what it is asked and what it answers.

use async_trait::async_trait;

use super::{error::AgentError, events::EventSink, tools::TaskTools};
use crate::domain::{ToolCallRecord, UserId};

/// One earlier message of the thread, oldest first.
#[derive(Clone, Debug)]
pub struct HistoryMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// The message's text.
    pub content: String,
}

/// A tool the client page runs (`[[chatkit.client_tools]]`), offered to the model beside
/// the task tools on turns a ChatKit client sent.
#[derive(Clone, Debug)]
pub struct ClientTool {
    pub name: String,
    pub description: String,
    /// A JSON Schema object.
    pub parameters: serde_json::Value,
}

/// A task the user @-mentioned in the composer: the tag's text and the task it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mention {
    pub text: String,
    pub task_id: i64,
}

/// What an answer waits for when it ends: the page to run a tool, or the user to choose.
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    /// A client tool call: the page runs it and sends its output.
    ClientTool {
        call_id: String,
        name: String,
        arguments: serde_json::Value,
    },
    /// Questions put to the user (ChatKit's `structured_input`): `inputs` as the client
    /// shows them, `context` for the agent alone (what the answer is for).
    Question {
        inputs: serde_json::Value,
        context: serde_json::Value,
    },
}

/// What an answer resumes with: the pending item it ended on, and the reply to it (the
/// tool's output, or `{"status", "answers"}`).
#[derive(Clone, Copy, Debug)]
pub struct Resume<'a> {
    pub pending: &'a Pending,
    /// What the assistant had said before it paused.
    pub said: &'a str,
    pub reply: &'a serde_json::Value,
}

/// A file the user attached to the message, its bytes already read (each capped by the
/// attachments settings; the provider applies its own smaller caps when it sends them on).
#[derive(Clone, Debug)]
pub struct AttachedFile {
    /// The name the user gave it (checked: no path, no control characters).
    pub name: String,
    /// The stored MIME type (images were checked against their magic bytes).
    pub mime_type: String,
    pub bytes: bytes::Bytes,
}

impl AttachedFile {
    /// Whether it is an image (`image/*`), sent to a model as an image, not as text.
    #[must_use]
    pub fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }
}

/// What the agent is asked to answer.
pub struct AgentRequest<'a> {
    /// Whose turn it is (tools act on this user's tasks only).
    pub user: &'a UserId,
    /// Earlier messages of the thread, oldest first (empty when the agent does not use them).
    pub history: &'a [HistoryMessage],
    /// The user's new message.
    pub message: &'a str,
    /// Cancelled when the user stops the answer: the model call is dropped at once and
    /// what was said so far is the answer. Tools already running finish first, so none
    /// is ever half applied. `None` where nobody can stop it (REST).
    pub stop: Option<&'a tokio_util::sync::CancellationToken>,
    /// The model the user picked in the composer (checked against the allowed list before
    /// the turn was recorded); `None`: the configured one.
    pub model: Option<&'a str>,
    /// A tool the user asked to be used (the composer's tool picker): the first model call
    /// must call it, when it is offered.
    pub tool_choice: Option<&'a str>,
    /// The client can run client tools and answer questions (a ChatKit client); a REST
    /// client can only read text.
    pub interactive: bool,
    /// The page's tools, offered when `interactive`.
    pub client_tools: &'a [ClientTool],
    /// Tasks the message @-mentions.
    pub mentions: &'a [Mention],
    /// The answer continues after a client tool's output or the user's choice.
    pub resume: Option<Resume<'a>>,
    /// Files attached to the new message, in the order the user attached them.
    pub attachments: &'a [AttachedFile],
}

/// The answer as the agent produced it, before it is recorded (the store returns it as a
/// [`crate::store::RecordedAnswer`]).
#[derive(Clone, Debug, Default)]
pub struct AgentAnswer {
    /// The whole answer text (the concatenation of every text delta streamed).
    pub text: String,
    /// The tool calls made for it, in order.
    pub tool_calls: Vec<ToolCallRecord>,
    /// The user stopped it: `text` is what was said before the stop.
    pub stopped: bool,
    /// It ends waiting for the client: a client tool's output or the user's choice.
    pub pending: Option<Pending>,
}

/// A provider: answers one message, calling tools as it needs.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Whether `respond` reads `history` (when not, the store skips loading it).
    fn uses_history(&self) -> bool {
        true
    }

    /// The provider's name, a metrics label.
    fn provider(&self) -> &'static str {
        "custom"
    }

    /// `tools` with everything a turn of their user would be offered (the app's MCP
    /// tools), for a call made outside a turn: a click on a task widget runs through the
    /// same tools a model would call.
    async fn tools_for_actions(&self, tools: TaskTools) -> Result<TaskTools, AgentError> {
        Ok(tools)
    }

    /// A short title for a thread that starts with `message`, when this provider writes
    /// one (one bounded call, with the composer's `model` when one was picked); `None`
    /// keeps the title made from the message.
    async fn title(&self, message: &str, model: Option<&str>) -> Option<String> {
        let _ = (message, model);
        None
    }

    /// The text spoken in `audio` (the composer's dictation), `mime_type` as the browser
    /// recorded it. Providers without speech recognition answer
    /// [`AgentError::TranscriptionUnavailable`].
    async fn transcribe(&self, audio: bytes::Bytes, mime_type: &str) -> Result<String, AgentError> {
        let _ = (audio, mime_type);
        Err(AgentError::TranscriptionUnavailable)
    }

    /// Answers `request`, streaming text and tool calls to `events` as they happen.
    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError>;
}
