//! The task tools every provider uses, bound to one user: add_task, list_tasks,
//! complete_task, delete_task, update_task. Arguments and results are JSON, as a model
//! sees them; bad arguments are a [`ToolError`] the model can read, never a crash.
//!
//! Each tool is one [`Tool`] entry in [`TOOLS`]: its name, description, JSON schema and
//! handler together, so the schema a model is shown and the code that runs cannot drift
//! apart. Providers run calls through [`TaskTools::run`], which also records the call
//! and reports it to the listener.

use entity::task;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use std::sync::{Arc, LazyLock};

use serde_json::value::RawValue;

use super::{
    error::AgentError,
    events::{AgentEvent, EventSink},
    mcp::{OfferedTool, TurnTools},
};
use crate::{
    domain::{format_time, ToolCallRecord, UserId},
    store::{Store, StoreError, TaskFilter, TaskUpdate},
};

/// Why a tool call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No tool has this name.
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    /// The arguments do not fit the tool's schema or limits.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The user has no task with this number.
    #[error("task {0} not found")]
    TaskNotFound(i32),
    /// The database failed; unlike the others, this ends the turn.
    #[error("storage failed")]
    Store(#[from] StoreError),
}

const MAX_TITLE_CHARS: usize = 500;
const MAX_DESCRIPTION_CHARS: usize = 4000;

/// The tools of one user's turn: the built-in task tools (unless an MCP server replaces
/// them) and the app's MCP tools, when servers are configured.
#[derive(Clone)]
pub struct TaskTools {
    store: Store,
    user: UserId,
    builtin: bool,
    mcp: Option<Arc<TurnTools>>,
}

/// Which tool carries out one of the local agent's requests.
pub enum Route {
    /// Call the tool by this name.
    Call(String),
    /// No reachable tool does it: the reply says so.
    Unreachable(String),
}

/// What a handler returns: the tool's JSON result, borrowing the tools it runs on.
type ToolFuture<'a> = BoxFuture<'a, Result<Value, ToolError>>;

/// One tool, whole: what a model is told about it and what runs when it is called.
pub struct Tool {
    /// The name a model calls it by.
    pub name: &'static str,
    /// What a model is told it does.
    pub description: &'static str,
    /// The JSON schema of its arguments.
    pub parameters: fn() -> Value,
    handler: for<'a> fn(&'a TaskTools, Value) -> ToolFuture<'a>,
}

/// Every tool, in the order a model sees them. A new tool is one more entry here (and,
/// for the local agent, a request its parser understands).
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "add_task",
        description: "Add a task to the user's list.",
        parameters: || {
            json!({"type": "object", "properties": {
                "title": {"type": "string", "description": "Short title of the task"},
                "description": {"type": "string", "description": "Optional details"}},
                "required": ["title"], "additionalProperties": false})
        },
        handler: |tools, args| {
            Box::pin(async move {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Args {
                    title: String,
                    #[serde(default)]
                    description: Option<String>,
                }
                let a: Args = parse(args)?;
                let title = clean_text(&a.title, "title", MAX_TITLE_CHARS)?;
                let description = a
                    .description
                    .as_deref()
                    .map(|d| clean_text(d, "description", MAX_DESCRIPTION_CHARS))
                    .transpose()?;
                let task = tools
                    .store
                    .add_task(&tools.user, &title, description.as_deref())
                    .await?;
                Ok(json!({"task": task_json(&task)}))
            })
        },
    },
    Tool {
        name: "list_tasks",
        description: "List the user's tasks.",
        parameters: || {
            json!({"type": "object", "properties": {
                "status": {"type": "string", "enum": ["all", "pending", "completed"]}},
                "additionalProperties": false})
        },
        handler: |tools, args| {
            Box::pin(async move {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Args {
                    #[serde(default)]
                    status: Option<String>,
                }
                let a: Args = parse(args)?;
                let filter = match a.status.as_deref() {
                    None | Some("all") => TaskFilter::All,
                    Some("pending") => TaskFilter::Pending,
                    Some("completed") => TaskFilter::Completed,
                    Some(other) => {
                        return Err(ToolError::InvalidArguments(format!(
                            "status must be all, pending or completed, not {other:?}"
                        )))
                    }
                };
                let tasks = tools.store.list_tasks(&tools.user, filter).await?;
                Ok(json!({"tasks": tasks.iter().map(task_json).collect::<Vec<_>>()}))
            })
        },
    },
    Tool {
        name: "complete_task",
        description: "Mark a task as done.",
        parameters: || task_ref_schema(json!({})),
        handler: |tools, args| {
            Box::pin(async move {
                let a: TaskRef = parse(args)?;
                let update = TaskUpdate {
                    completed: Some(true),
                    ..Default::default()
                };
                let task = tools.update(a.task_id, update).await?;
                Ok(json!({"task": task_json(&task)}))
            })
        },
    },
    Tool {
        name: "delete_task",
        description: "Delete a task.",
        parameters: || task_ref_schema(json!({})),
        handler: |tools, args| {
            Box::pin(async move {
                let a: TaskRef = parse(args)?;
                let task = tools
                    .store
                    .delete_task(&tools.user, a.task_id)
                    .await?
                    .ok_or(ToolError::TaskNotFound(a.task_id))?;
                Ok(json!({"deleted": task_json(&task)}))
            })
        },
    },
    Tool {
        name: "update_task",
        description: "Change a task's title, description or completion.",
        parameters: || {
            task_ref_schema(json!({
                "title": {"type": "string"}, "description": {"type": "string"},
                "completed": {"type": "boolean"}}))
        },
        handler: |tools, args| {
            Box::pin(async move {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Args {
                    task_id: i32,
                    #[serde(default)]
                    title: Option<String>,
                    #[serde(default)]
                    description: Option<String>,
                    #[serde(default)]
                    completed: Option<bool>,
                }
                let a: Args = parse(args)?;
                let update = TaskUpdate {
                    title: a
                        .title
                        .as_deref()
                        .map(|t| clean_text(t, "title", MAX_TITLE_CHARS))
                        .transpose()?,
                    description: a
                        .description
                        .as_deref()
                        .map(|d| clean_text(d, "description", MAX_DESCRIPTION_CHARS))
                        .transpose()?,
                    completed: a.completed,
                };
                if update.title.is_none()
                    && update.description.is_none()
                    && update.completed.is_none()
                {
                    return Err(ToolError::InvalidArguments(
                        "give at least one of title, description, completed".into(),
                    ));
                }
                let task = tools.update(a.task_id, update).await?;
                Ok(json!({"task": task_json(&task)}))
            })
        },
    },
];

/// The arguments of a tool that acts on one task.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRef {
    task_id: i32,
}

/// An object schema with the required `task_id` and the given other properties.
fn task_ref_schema(others: Value) -> Value {
    let mut properties = json!({
        "task_id": {"type": "integer", "description": "The task's number, as shown by list_tasks"}
    });
    if let (Some(all), Value::Object(others)) = (properties.as_object_mut(), others) {
        all.extend(others);
    }
    json!({"type": "object", "properties": properties,
           "required": ["task_id"], "additionalProperties": false})
}

/// A task as tools report it to a model (and as it is recorded).
pub fn task_json(t: &task::Model) -> Value {
    json!({
        "task_id": t.number,
        "title": t.title,
        "description": t.description,
        "completed": t.completed,
        "created_at": format_time(&t.created_at),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(args: Value) -> Result<T, ToolError> {
    // A model that calls a tool with no arguments at all sends null.
    let args = if args.is_null() { json!({}) } else { args };
    serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

fn clean_text(raw: &str, field: &str, max: usize) -> Result<String, ToolError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ToolError::InvalidArguments(format!(
            "{field} must not be empty"
        )));
    }
    if text.chars().count() > max {
        return Err(ToolError::InvalidArguments(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(text.to_owned())
}

impl TaskTools {
    /// The tools acting on `user`'s tasks in `store`.
    #[must_use]
    pub fn new(store: Store, user: UserId) -> Self {
        Self {
            store,
            user,
            builtin: true,
            mcp: None,
        }
    }

    /// These tools with `mcp` added; the built-in ones stay only when `builtin`.
    pub(crate) fn with_mcp(mut self, mcp: TurnTools, builtin: bool) -> Self {
        self.mcp = Some(Arc::new(mcp));
        self.builtin = builtin;
        self
    }

    /// The function definitions this turn offers the model, as JSON text (an array): the
    /// built-in tools (when on), then the MCP servers' tools with their schemas as given.
    /// Text, not a `Value`: a turn holds its request for as long as the model streams, and
    /// a tree of maps per definition cost tens of KB per open stream.
    #[must_use]
    pub fn offered_json(&self) -> Arc<RawValue> {
        static BUILTIN: LazyLock<Vec<String>> = LazyLock::new(|| {
            let definitions = TaskTools::definitions();
            definitions
                .as_array()
                .map(|all| all.iter().map(Value::to_string).collect())
                .unwrap_or_default()
        });
        // The common case, built-in tools only, is one shared text for every turn.
        static BUILTIN_ONLY: LazyLock<Arc<RawValue>> = LazyLock::new(|| array(&BUILTIN));
        fn array(parts: &[String]) -> Arc<RawValue> {
            RawValue::from_string(format!("[{}]", parts.join(",")))
                // Every part was written by serde_json, so the array is valid JSON.
                .unwrap_or_else(|_| RawValue::from_string("[]".to_owned()).unwrap_or_default())
                .into()
        }
        let mcp = self.mcp.as_ref().map(|m| m.tools()).unwrap_or_default();
        if mcp.is_empty() {
            return if self.builtin {
                BUILTIN_ONLY.clone()
            } else {
                array(&[])
            };
        }
        let mut all: Vec<String> = if self.builtin {
            BUILTIN.clone()
        } else {
            Vec::new()
        };
        all.extend(mcp.iter().map(OfferedTool::definition_json));
        array(&all)
    }

    /// The tool that does what the built-in `builtin_name` does, given the arguments the
    /// local agent will pass: the app's own tool (same name, those parameters) first.
    #[must_use]
    pub fn route(&self, builtin_name: &str, args: &Value) -> Route {
        if let Some(mcp) = &self.mcp {
            let keys: Vec<&str> = args
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let fits = mcp.tools().iter().find(|t| {
                let params = t.parameter_names();
                t.original_name() == builtin_name && keys.iter().all(|k| params.contains(k))
            });
            if let Some(tool) = fits {
                return Route::Call(tool.name.clone());
            }
            if !self.builtin {
                let mut servers: Vec<&str> = mcp.tools().iter().map(|t| t.server_name()).collect();
                servers.dedup();
                let offered: Vec<&str> = mcp.tools().iter().map(|t| t.name.as_str()).collect();
                let list = |items: &[&str]| {
                    if items.is_empty() {
                        "none".to_owned()
                    } else {
                        items.join(", ")
                    }
                };
                return Route::Unreachable(format!(
                    "I can't reach the `{builtin_name}` tool: the app's tool server ({}) offers none \
                     that takes {}. Its tools: {}.",
                    list(&servers),
                    if keys.is_empty() { "no arguments".to_owned() } else { keys.join(", ") },
                    list(&offered),
                ));
            }
        }
        Route::Call(builtin_name.to_owned())
    }

    /// Whether a tool of this name is offered (built-in or the app's).
    #[must_use]
    pub fn offers(&self, name: &str) -> bool {
        self.mcp.as_ref().is_some_and(|m| m.find(name).is_some())
            || (self.builtin && TOOLS.iter().any(|t| t.name == name))
    }

    /// JSON-schema function definitions (OpenAI `tools` format).
    #[must_use]
    pub fn definitions() -> Value {
        TOOLS
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": (t.parameters)()}})
            })
            .collect()
    }

    async fn update(&self, number: i32, update: TaskUpdate) -> Result<task::Model, ToolError> {
        self.store
            .update_task(&self.user, number, update)
            .await?
            .ok_or(ToolError::TaskNotFound(number))
    }

    /// Runs one tool call for this user.
    pub async fn execute(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        let tool = TOOLS
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ToolError::UnknownTool(name.to_owned()))?;
        (tool.handler)(self, args.clone()).await
    }

    /// Runs a tool and always yields the JSON result a model would see: errors become
    /// `{"error": "..."}` (storage failures are the exception: they end the turn).
    pub async fn call(&self, name: &str, args: &Value) -> Result<Value, StoreError> {
        match self.execute(name, args).await {
            Ok(v) => Ok(v),
            Err(ToolError::Store(e)) => Err(e),
            Err(e) => Ok(json!({"error": e.to_string()})),
        }
    }

    /// Calls a tool, records the call and reports it to the listener: what every provider
    /// does for each tool call. A storage failure ends the turn as [`AgentError::Store`].
    pub async fn run(
        &self,
        name: &str,
        args: Value,
        events: &EventSink,
    ) -> Result<ToolCallRecord, AgentError> {
        // A model can name any tool; only the ones that exist get their own series.
        let label = if self.offers(name) {
            name.to_owned()
        } else {
            "unknown".to_owned()
        };
        metrics::counter!(crate::metrics::TOOL_CALLS, "tool" => label).increment(1);
        events.emit(AgentEvent::ToolStarted(name.to_owned()));
        if let Some(mcp) = &self.mcp {
            if let Some(tool) = mcp.find(name) {
                let result = match args.clone() {
                    Value::Object(map) => mcp
                        .call(tool, self.user.as_str(), map)
                        .await
                        .map_err(|f| AgentError::ToolServer(f.0))?,
                    _ => json!({"error": "arguments must be a JSON object"}),
                };
                return Ok(record(name, args, result, events));
            }
        }
        if !self.builtin {
            let result = json!({"error": ToolError::UnknownTool(name.to_owned()).to_string()});
            return Ok(record(name, args, result, events));
        }
        let result = self.call(name, &args).await.map_err(AgentError::Store)?;
        Ok(record(name, args, result, events))
    }

    /// [`run`](Self::run) for arguments as a model sends them: JSON text, possibly empty.
    /// Arguments that are not a JSON object are recorded with an error the model can read,
    /// and the tool is not called.
    pub async fn run_model_call(
        &self,
        name: &str,
        arguments: String,
        events: &EventSink,
    ) -> Result<ToolCallRecord, AgentError> {
        let raw = if arguments.trim().is_empty() {
            "{}".to_owned()
        } else {
            arguments
        };
        match serde_json::from_str::<Value>(&raw) {
            Ok(args) if args.is_object() => self.run(name, args, events).await,
            Ok(args) => Ok(record(
                name,
                args,
                json!({"error": "arguments must be a JSON object"}),
                events,
            )),
            Err(e) => Ok(record(
                name,
                Value::String(raw),
                json!({"error": format!("arguments are not valid JSON: {e}")}),
                events,
            )),
        }
    }
}

fn record(name: &str, args: Value, result: Value, events: &EventSink) -> ToolCallRecord {
    let record = ToolCallRecord {
        tool: name.to_owned(),
        args,
        result,
    };
    events.emit(AgentEvent::ToolCall(record.clone()));
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Agent, AgentRequest, LocalAgent};

    /// The tools of a store whose connections are closed, as in a database outage.
    async fn tools_without_a_database() -> TaskTools {
        let store = Store::connect("sqlite::memory:", 1, std::time::Duration::from_secs(1))
            .await
            .unwrap();
        store.clone().close().await;
        TaskTools::new(store, UserId::parse("alice").unwrap())
    }

    #[test]
    fn the_definitions_a_model_sees_are_built_from_the_tools() {
        let task_id =
            json!({"type": "integer", "description": "The task's number, as shown by list_tasks"});
        let expected = json!([
            {"type": "function", "function": {"name": "add_task", "description": "Add a task to the user's list.",
              "parameters": {"type": "object", "properties": {
                "title": {"type": "string", "description": "Short title of the task"},
                "description": {"type": "string", "description": "Optional details"}},
                "required": ["title"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "list_tasks", "description": "List the user's tasks.",
              "parameters": {"type": "object", "properties": {
                "status": {"type": "string", "enum": ["all", "pending", "completed"]}},
                "additionalProperties": false}}},
            {"type": "function", "function": {"name": "complete_task", "description": "Mark a task as done.",
              "parameters": {"type": "object", "properties": {"task_id": task_id},
                "required": ["task_id"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "delete_task", "description": "Delete a task.",
              "parameters": {"type": "object", "properties": {"task_id": task_id},
                "required": ["task_id"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "update_task", "description": "Change a task's title, description or completion.",
              "parameters": {"type": "object", "properties": {"task_id": task_id,
                "title": {"type": "string"}, "description": {"type": "string"}, "completed": {"type": "boolean"}},
                "required": ["task_id"], "additionalProperties": false}}}
        ]);
        assert_eq!(TaskTools::definitions(), expected);
    }

    #[tokio::test]
    async fn bad_calls_are_results_the_model_reads_and_are_reported() {
        let tools = tools_without_a_database().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let events = EventSink::new(tx);
        // None of these reach the database, so they answer even without one.
        let unknown = tools.run("fly", json!({}), &events).await.unwrap();
        assert_eq!(unknown.result, json!({"error": "unknown tool \"fly\""}));
        let not_json = tools
            .run_model_call("add_task", "{\"title\":".into(), &events)
            .await
            .unwrap();
        assert_eq!(not_json.args, json!("{\"title\":"));
        assert!(not_json.result["error"]
            .as_str()
            .unwrap()
            .starts_with("arguments are not valid JSON"));
        let not_object = tools
            .run_model_call("add_task", "[1]".into(), &events)
            .await
            .unwrap();
        assert_eq!(
            not_object.result,
            json!({"error": "arguments must be a JSON object"})
        );
        let empty_title = tools
            .run_model_call("add_task", "{\"title\": \"  \"}".into(), &events)
            .await
            .unwrap();
        assert_eq!(
            empty_title.result,
            json!({"error": "invalid arguments: title must not be empty"})
        );
        // Calls that reach a tool are announced before they run; the others are only
        // reported.
        let mut started = Vec::new();
        let mut reported = Vec::new();
        while let Ok(event) = rx.try_recv() {
            match event {
                AgentEvent::ToolStarted(name) => started.push(name),
                AgentEvent::ToolCall(seen) => reported.push(seen),
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(started, ["fly", "add_task"]);
        assert_eq!(reported, [unknown, not_json, not_object, empty_title]);
    }

    #[tokio::test]
    async fn a_database_failure_in_a_tool_is_a_storage_error_that_maps_to_503() {
        let tools = tools_without_a_database().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let events = EventSink::new(tx);
        let err = tools
            .run_model_call("list_tasks", String::new(), &events)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AgentError::Store(StoreError::Unavailable(_))),
            "{err:?}"
        );
        let user = UserId::parse("alice").unwrap();
        let request = AgentRequest {
            user: &user,
            history: &[],
            message: "add a task to buy milk",
            stop: None,
            model: None,
            tool_choice: None,
            interactive: false,
            client_tools: &[],
            mentions: &[],
            resume: None,
            attachments: &[],
        };
        let err = LocalAgent
            .respond(request, &tools, &events)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AgentError::Store(StoreError::Unavailable(_))),
            "{err:?}"
        );
        // A call that failed is announced, but neither recorded nor reported.
        while let Ok(event) = rx.try_recv() {
            assert!(
                matches!(event, AgentEvent::ToolStarted(_)),
                "{event:?} reported"
            );
        }
    }
}
