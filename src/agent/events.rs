//! What a provider reports while it works, and where those reports go.

use tokio::sync::mpsc;

use crate::domain::ToolCallRecord;

/// What a provider reports while it works.
#[derive(Clone, Debug)]
pub enum AgentEvent {
    /// The next piece of the answer text.
    TextDelta(String),
    /// A tool call that ran, with its result.
    ToolCall(ToolCallRecord),
}

/// Where streaming output goes; a JSON request has no listener and events are dropped.
#[derive(Clone, Default)]
pub struct EventSink(Option<mpsc::UnboundedSender<AgentEvent>>);

impl EventSink {
    /// A sink delivering to `tx`.
    #[must_use]
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
