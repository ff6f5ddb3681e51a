//! The agent: turns a user's message (plus history) into an answer, acting on the user's
//! tasks through [`TaskTools`]. Providers stream their output through an [`EventSink`].
//!
//! The vocabulary lives in leaf modules (`error`, `events`, `provider`, `tools`) that the
//! providers (`local`, `openai`) import; this module only names the public parts and picks
//! the configured provider.

mod error;
mod events;
mod local;
mod openai;
mod prompt;
mod provider;
mod tools;

use std::sync::Arc;

pub use error::AgentError;
pub use events::{AgentEvent, EventSink};
pub use local::LocalAgent;
pub use openai::OpenAiAgent;
pub use prompt::PromptTemplate;
pub use provider::{Agent, AgentAnswer, AgentRequest, HistoryMessage};
pub use tools::{TaskTools, ToolError};

use crate::config::{AgentProvider, AgentSettings};

/// The provider named by configuration.
#[must_use]
pub fn from_settings(settings: &AgentSettings) -> Arc<dyn Agent> {
    match settings.provider {
        AgentProvider::OpenAi => Arc::new(OpenAiAgent::new(
            settings.openai.clone(),
            PromptTemplate::load(&settings.system_prompt_file),
        )),
        AgentProvider::Local => Arc::new(LocalAgent),
    }
}
