//! The built-in offline agent: a deterministic task assistant for plain English and Roman
//! Urdu requests. It calls the same task tools as a model would, so the service is useful
//! with no configuration and tests are deterministic. Anything it does not understand gets
//! a short guide to what it can do, never an error.
//!
//! [`intent`] reads the request, [`language`] decides the answer's language, [`replies`]
//! words the answer; this module runs the tool call in between. A request to add the lists
//! attached to the message ([`list`]) is one `add_task` call per line.

mod intent;
mod language;
mod list;
mod replies;
mod text;

use async_trait::async_trait;

use serde_json::{json, Value};

use super::{
    error::AgentError,
    events::{AgentEvent, EventSink},
    provider::{Agent, AgentAnswer, AgentRequest, AttachedFile, Pending, Resume},
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
        let mut answer = AgentAnswer::default();
        if let Some(resume) = request.resume {
            answer = resumed(resume, tools, events, lang).await?;
            stream_words(&answer.text, events);
            return Ok(answer);
        }
        if !request.attachments.is_empty() && list::asks_to_add(request.message) {
            answer.text = add_listed(request.attachments, tools, events, lang, &mut answer).await?;
            stream_words(&answer.text, events);
            return Ok(answer);
        }
        let mut intent = intent::parse(request.message);
        // An @-mentioned task is the task the request is about, whatever its words.
        if let (Intent::CompleteNamed(_) | Intent::Help, Some(m)) =
            (&intent, request.mentions.first())
        {
            if let Ok(n) = i32::try_from(m.task_id) {
                let named = intent::parse(&format!("{} task {n}", request.message));
                if matches!(named, Intent::Complete(_) | Intent::Delete(_)) {
                    intent = named;
                }
            }
        }
        answer.text = match intent.tool_call() {
            None if intent == Intent::Greet => replies::greeting(lang),
            None => match &intent {
                Intent::CompleteNamed(words) => {
                    complete_named(words, request.interactive, tools, events, lang, &mut answer)
                        .await?
                }
                _ => replies::help_text(lang),
            },
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

/// Adds one task per line of the attached lists, each through the same `add_task` route
/// as a single request, so every call is recorded and shown like one.
async fn add_listed(
    files: &[AttachedFile],
    tools: &TaskTools,
    events: &EventSink,
    lang: language::Lang,
    answer: &mut AgentAnswer,
) -> Result<String, AgentError> {
    let sources: Vec<&str> = files
        .iter()
        .filter(|f| list::is_list(f))
        .map(|f| f.name.as_str())
        .collect();
    if sources.is_empty() {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Ok(replies::no_list(&names, lang));
    }
    let listed = list::read(files);
    let mut added = Vec::new();
    let mut refused = Vec::new();
    for title in listed.titles {
        let args = json!({"title": title});
        let name = match tools.route("add_task", &args) {
            Route::Call(name) => name,
            Route::Unreachable(why) => return Ok(why),
        };
        let call = tools.run(&name, args, events).await?;
        if let Some(task) = call.result.get("task") {
            added.push(task.clone());
        } else {
            let why = call.result["error"]
                .as_str()
                .unwrap_or("the tool gave no task back")
                .to_owned();
            refused.push((title, why));
        }
        answer.tool_calls.push(call);
    }
    let report = replies::ListReport {
        sources: &sources,
        added: &added,
        refused: &refused,
        duplicates: listed.duplicates,
        left_over: listed.left_over,
        cut: listed.cut,
    };
    Ok(replies::listed(&report, lang))
}

/// The open tasks whose titles hold every word of `words` (case aside).
async fn matching_open_tasks(
    words: &str,
    tools: &TaskTools,
) -> Result<Vec<(i64, String)>, AgentError> {
    let args = json!({"status": "pending"});
    let Route::Call(name) = tools.route("list_tasks", &args) else {
        return Ok(Vec::new());
    };
    // A look, not an action: neither recorded nor shown.
    let listed = tools.run(&name, args, &EventSink::default()).await?;
    let wanted: Vec<String> = words.split_whitespace().map(str::to_lowercase).collect();
    Ok(listed.result["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["completed"].as_bool() != Some(true))
        .filter_map(|t| Some((t["task_id"].as_i64()?, t["title"].as_str()?.to_owned())))
        .filter(|(_, title)| {
            let title = title.to_lowercase();
            wanted.iter().all(|w| title.contains(w.as_str()))
        })
        .take(MAX_CHOICES)
        .collect())
}

/// At most this many tasks are offered to choose from.
const MAX_CHOICES: usize = 8;

/// The option a task is offered as, and read back from.
fn option_of(id: i64, title: &str) -> String {
    format!("{id}. {title}")
}

/// Completes the one open task `words` name; several: asks which (a ChatKit client can
/// answer a question) or lists them; none: says so.
async fn complete_named(
    words: &str,
    interactive: bool,
    tools: &TaskTools,
    events: &EventSink,
    lang: language::Lang,
    answer: &mut AgentAnswer,
) -> Result<String, AgentError> {
    let found = matching_open_tasks(words, tools).await?;
    match found.as_slice() {
        [] => Ok(replies::none_match(words, lang)),
        [(id, _)] => complete(*id, tools, events, lang, answer).await,
        several => {
            let (text, question) = replies::which_one(words, several.len(), lang);
            if interactive {
                let options: Vec<Value> = several
                    .iter()
                    .map(|(id, title)| json!({"value": option_of(*id, title)}))
                    .collect();
                answer.pending = Some(Pending::Question {
                    inputs: json!([{"type": "multiple_choice", "id": "task",
                        "question": question, "options": options, "multiple": false}]),
                    context: json!({"tool": "complete_task",
                        "candidates": several.iter().map(|(id, title)| json!({"task_id": id, "title": title})).collect::<Vec<_>>()}),
                });
                Ok(text)
            } else {
                let lines: Vec<String> = several.iter().map(|(id, t)| option_of(*id, t)).collect();
                Ok(format!("{text}\n{}", lines.join("\n")))
            }
        }
    }
}

/// Marks task `id` done through the tools, recorded like any call.
async fn complete(
    id: i64,
    tools: &TaskTools,
    events: &EventSink,
    lang: language::Lang,
    answer: &mut AgentAnswer,
) -> Result<String, AgentError> {
    let args = json!({"task_id": id});
    let intent = Intent::Complete(i32::try_from(id).unwrap_or(i32::MAX));
    match tools.route("complete_task", &args) {
        Route::Call(name) => {
            let call = tools.run(&name, args, events).await?;
            let text = replies::describe(&intent, &call.result, lang);
            answer.tool_calls.push(call);
            Ok(text)
        }
        Route::Unreachable(why) => Ok(why),
    }
}

/// The answer after the user's choice: the chosen task completed, or nothing done.
async fn resumed(
    resume: Resume<'_>,
    tools: &TaskTools,
    events: &EventSink,
    lang: language::Lang,
) -> Result<AgentAnswer, AgentError> {
    let mut answer = AgentAnswer::default();
    let Pending::Question { context, .. } = resume.pending else {
        // This agent calls no client tool; an output for one needs no more.
        answer.text = replies::left_alone(lang);
        return Ok(answer);
    };
    let picked = resume.reply["answers"]["task"]["values"][0].as_str();
    let chosen = context["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            let (Some(id), Some(title)) = (c["task_id"].as_i64(), c["title"].as_str()) else {
                return false;
            };
            picked == Some(option_of(id, title).as_str())
        });
    answer.text = match (resume.reply["status"].as_str(), chosen) {
        (Some("answered"), Some(task)) => {
            let id = task["task_id"].as_i64().unwrap_or_default();
            complete(id, tools, events, lang, &mut answer).await?
        }
        _ => replies::left_alone(lang),
    };
    Ok(answer)
}
