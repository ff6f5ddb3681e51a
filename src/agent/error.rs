//! How an agent turn fails.

use crate::store::StoreError;

/// Why the agent produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model API failed or could not be reached (after its retries).
    #[error("the model provider is unavailable: {0}")]
    Unavailable(String),
    /// The whole turn took longer than the provider's total timeout.
    #[error("the model provider timed out")]
    Timeout,
    /// The app's MCP server could not be reached (or its link broke during a call).
    #[error("the app's tool server failed: {0}")]
    ToolServer(String),
    /// The provider cannot turn speech into text (the local agent has no model for it).
    #[error("this server's agent cannot transcribe audio")]
    TranscriptionUnavailable,
    /// A tool call's database work failed: a storage failure, not the model's.
    #[error("task storage failed: {0}")]
    Store(#[source] StoreError),
}
