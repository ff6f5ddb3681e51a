//! What a provider reports while it works, and where those reports go.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::domain::ToolCallRecord;

/// What a provider reports while it works.
#[derive(Clone, Debug)]
pub enum AgentEvent {
    /// The next piece of the answer text.
    TextDelta(String),
    /// A tool is about to run (named as it was called).
    ToolStarted(String),
    /// A tool call that ran, with its result.
    ToolCall(ToolCallRecord),
}

/// Where streaming output goes; a JSON request has no listener and events are dropped.
#[derive(Clone, Default)]
pub struct EventSink(Option<Arc<dyn Fn(AgentEvent) + Send + Sync>>);

impl EventSink {
    /// A sink delivering to `tx`.
    #[must_use]
    pub fn new(tx: mpsc::UnboundedSender<AgentEvent>) -> Self {
        // A listener that went away does not stop the turn: it is still recorded.
        Self::from_fn(move |event| {
            let _ = tx.send(event);
        })
    }

    /// A sink that hands each event to `deliver` as it is emitted, on the emitting task.
    #[must_use]
    pub fn from_fn(deliver: impl Fn(AgentEvent) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(deliver)))
    }

    /// Delivers `event` to the listener, if there is one.
    pub fn emit(&self, event: AgentEvent) {
        if let Some(deliver) = &self.0 {
            deliver(event);
        }
    }
}
