//! The agent: turns a user's message (plus history) into a reply, acting on the user's
//! tasks through [`TaskTools`]. Providers stream their output through an [`EventSink`].

mod local;
mod openai;
mod prompt;
mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use local::LocalAgent;
pub use openai::OpenAiAgent;
pub use prompt::PromptTemplate;
pub use tools::{TaskTools, ToolError};

use crate::{
    config::{AgentProvider, AgentSettings},
    domain::UserId,
    store::{StoreError, ToolCallRecord},
};

/// Why the agent produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model API failed or could not be reached (after its retries).
    #[error("the model provider is unavailable: {0}")]
    Unavailable(String),
    /// The whole turn took longer than the provider's total timeout.
    #[error("the model provider timed out")]
    Timeout,
    /// A tool call's database work failed: a storage failure, not the model's.
    #[error("task storage failed: {0}")]
    Store(#[source] StoreError),
}

/// One earlier message of the thread, oldest first.
#[derive(Clone, Debug)]
pub struct HistoryMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// The message's text.
    pub content: String,
}

/// What the agent is asked to answer.
pub struct AgentRequest<'a> {
    /// Whose turn it is (tools act on this user's tasks only).
    pub user: &'a UserId,
    /// Earlier messages of the thread, oldest first (empty when the agent does not use them).
    pub history: &'a [HistoryMessage],
    /// The user's new message.
    pub message: &'a str,
}

/// The agent's finished answer.
#[derive(Clone, Debug, Default)]
pub struct AgentReply {
    /// The whole reply text (the concatenation of every text delta streamed).
    pub text: String,
    /// The tool calls made for it, in order.
    pub tool_calls: Vec<ToolCallRecord>,
}

/// What a provider reports while it works.
#[derive(Clone, Debug)]
pub enum AgentEvent {
    /// The next piece of the reply text.
    TextDelta(String),
    /// A tool call that ran, with its result.
    ToolCall(ToolCallRecord),
}

/// Where streaming output goes; a JSON request has no listener and events are dropped.
#[derive(Clone, Default)]
pub struct EventSink(Option<mpsc::UnboundedSender<AgentEvent>>);

impl EventSink {
    /// A sink delivering to `tx`.
    pub fn new(tx: mpsc::UnboundedSender<AgentEvent>) -> Self {
        Self(Some(tx))
    }

    /// Delivers `event` to the listener, if there is one.
    pub fn emit(&self, event: AgentEvent) {
        if let Some(tx) = &self.0 {
            // A listener that went away does not stop the turn: it is still recorded.
            let _ = tx.send(event);
        }
    }
}

/// A provider: answers one message, calling tools as it needs.
#[async_trait]
pub trait Agent: Send + Sync {
    /// Whether `respond` reads `history` (when not, the store skips loading it).
    fn uses_history(&self) -> bool {
        true
    }

    /// Answers `request`, streaming text and tool calls to `events` as they happen.
    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentReply, AgentError>;
}

/// The provider named by configuration.
pub fn from_settings(settings: &AgentSettings) -> Arc<dyn Agent> {
    match settings.provider {
        AgentProvider::OpenAi => Arc::new(OpenAiAgent::new(
            settings.openai.clone(),
            PromptTemplate::load(&settings.system_prompt_file),
        )),
        AgentProvider::Local => Arc::new(LocalAgent),
    }
}
