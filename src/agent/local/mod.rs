//! The built-in offline agent: a deterministic task assistant for plain English and Roman
//! Urdu requests. It calls the same task tools as a model would, so the service is useful
//! with no configuration and tests are deterministic. Anything it does not understand gets
//! a short guide to what it can do, never an error.
//!
//! [`intent`] reads the request, [`language`] decides the answer's language, [`replies`]
//! words the answer; this module runs the one tool call in between.

mod intent;
mod language;
mod replies;
mod text;

use async_trait::async_trait;

use super::{
    error::AgentError,
    events::{AgentEvent, EventSink},
    provider::{Agent, AgentAnswer, AgentRequest},
    tools::{Route, TaskTools},
};
use intent::Intent;

/// The offline agent (`AGENT_PROVIDER=local`, the default).
#[derive(Clone, Default)]
pub struct LocalAgent;

/// Splits text into word-sized deltas that concatenate back to the text.
fn stream_words(text: &str, events: &EventSink) {
    for piece in text.split_inclusive([' ', '\n']) {
        events.emit(AgentEvent::TextDelta(piece.to_owned()));
    }
}

#[async_trait]
impl Agent for LocalAgent {
    fn provider(&self) -> &'static str {
        "local"
    }

    /// Each request stands alone ("complete task 2"), so earlier turns are not needed.
    fn uses_history(&self) -> bool {
        false
    }

    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let lang = language::detect_lang(request.message);
        let intent = intent::parse(request.message);
        let mut answer = AgentAnswer::default();
        answer.text = match intent.tool_call() {
            None if intent == Intent::Greet => replies::greeting(lang),
            None => replies::help_text(lang),
            Some((tool, args)) => match tools.route(tool, &args) {
                Route::Call(name) => {
                    let call = tools.run(&name, args, events).await?;
                    let text = replies::describe(&intent, &call.result, lang);
                    answer.tool_calls.push(call);
                    text
                }
                Route::Unreachable(why) => why,
            },
        };
        stream_words(&answer.text, events);
        Ok(answer)
    }
}
