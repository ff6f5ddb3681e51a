//! The agent: turns a user's message (plus history) into a reply, acting on the user's
//! tasks through [`TaskTools`]. Providers stream their output through an [`EventSink`].

mod local;
mod openai;
mod prompt;
mod tools;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use local::LocalAgent;
pub use openai::OpenAiAgent;
pub use prompt::PromptTemplate;
pub use tools::{TaskTools, ToolError};

use crate::{domain::UserId, store::ToolCallRecord};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the model provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the model provider timed out")]
    Timeout,
}

/// One earlier message of the thread, oldest first.
#[derive(Clone, Debug)]
pub struct HistoryMessage {
    pub role: String,
    pub content: String,
}

pub struct AgentRequest<'a> {
    pub user: &'a UserId,
    pub history: &'a [HistoryMessage],
    pub message: &'a str,
}

#[derive(Clone, Debug, Default)]
pub struct AgentReply {
    pub text: String,
    pub tool_calls: Vec<ToolCallRecord>,
}

/// What a provider reports while it works.
#[derive(Clone, Debug)]
pub enum AgentEvent {
    TextDelta(String),
    ToolCall(ToolCallRecord),
}

/// Where streaming output goes; a JSON request has no listener and events are dropped.
#[derive(Clone, Default)]
pub struct EventSink(Option<mpsc::UnboundedSender<AgentEvent>>);

impl EventSink {
    pub fn new(tx: mpsc::UnboundedSender<AgentEvent>) -> Self {
        Self(Some(tx))
    }

    pub fn emit(&self, event: AgentEvent) {
        if let Some(tx) = &self.0 {
            // A listener that went away does not stop the turn: it is still recorded.
            let _ = tx.send(event);
        }
    }
}

#[async_trait]
pub trait Agent: Send + Sync {
    /// Whether `respond` reads `history` (when not, the store skips loading it).
    fn uses_history(&self) -> bool {
        true
    }

    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentReply, AgentError>;
}

/// The provider named by configuration.
pub fn from_settings(settings: &crate::config::AgentSettings) -> std::sync::Arc<dyn Agent> {
    match settings.provider.as_str() {
        "openai" => std::sync::Arc::new(OpenAiAgent::new(
            settings.openai.clone(),
            PromptTemplate::load(&settings.system_prompt_file),
        )),
        _ => std::sync::Arc::new(LocalAgent),
    }
}
