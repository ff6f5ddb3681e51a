//! The agent: turns a user's message (plus history) into an answer, acting on the user's
//! tasks through [`TaskTools`]. Providers stream their output through an [`EventSink`].
//!
//! The vocabulary lives in leaf modules (`error`, `events`, `files`, `provider`, `tools`)
//! that the providers (`local`, `openai`) import; this module only names the public parts
//! and picks the configured provider.

mod client_pool;
mod error;
mod events;
mod files;
mod local;
mod mcp;
mod openai;
mod prompt;
mod provider;
mod tools;

use std::sync::Arc;

pub use client_pool::SetupError;
pub use error::AgentError;
pub use events::{AgentEvent, EventSink};
pub use local::LocalAgent;
pub use mcp::{IdentityMinter, McpHub, ServerReport, IDENTITY_TTL_SECS};
pub use openai::OpenAiAgent;
pub use prompt::PromptTemplate;
pub use provider::{
    Agent, AgentAnswer, AgentRequest, AttachedFile, ClientTool, HistoryMessage, Mention, Pending,
    Resume,
};
pub use tools::{Route, TaskTools, ToolError};

use async_trait::async_trait;

use crate::config::{AgentProvider, AgentSettings};

/// `agent` with the app's MCP tools: each turn first takes the servers' current tools
/// (failing clearly when one cannot be reached), then runs with them.
pub fn with_tool_servers(
    agent: Arc<dyn Agent>,
    hub: Option<McpHub>,
    builtin_tools: bool,
) -> Arc<dyn Agent> {
    match hub {
        None => agent,
        Some(hub) => Arc::new(WithToolServers {
            inner: agent,
            hub,
            builtin_tools,
        }),
    }
}

struct WithToolServers {
    inner: Arc<dyn Agent>,
    hub: McpHub,
    builtin_tools: bool,
}

#[async_trait]
impl Agent for WithToolServers {
    fn uses_history(&self) -> bool {
        self.inner.uses_history()
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn title(&self, message: &str, model: Option<&str>) -> Option<String> {
        self.inner.title(message, model).await
    }

    async fn tools_for_actions(&self, tools: TaskTools) -> Result<TaskTools, AgentError> {
        let reserved: Vec<&str> = if self.builtin_tools {
            tools::TOOLS.iter().map(|t| t.name).collect()
        } else {
            Vec::new()
        };
        let mcp = self
            .hub
            .turn_tools(&reserved)
            .await
            .map_err(|f| AgentError::ToolServer(f.0))?;
        Ok(tools.with_mcp(mcp, self.builtin_tools))
    }

    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let tools = self.tools_for_actions(tools.clone()).await?;
        self.inner.respond(request, &tools, events).await
    }
}

/// The provider named by configuration.
pub fn from_settings(settings: &AgentSettings) -> Result<Arc<dyn Agent>, SetupError> {
    Ok(match settings.provider {
        AgentProvider::OpenAi => Arc::new(OpenAiAgent::new(
            settings.openai.clone(),
            PromptTemplate::load(&settings.system_prompt_file),
        )?),
        AgentProvider::Local => Arc::new(LocalAgent),
    })
}
