//! The task tools every provider uses, bound to one user: add_task, list_tasks,
//! complete_task, delete_task, update_task. Arguments and results are JSON, as a model
//! sees them; bad arguments are a [`ToolError`] the model can read, never a crash.

use entity::task;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    domain::{format_time, UserId},
    store::{Store, StoreError, TaskFilter, TaskUpdate},
};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("task {0} not found")]
    TaskNotFound(i32),
    #[error("storage failed")]
    Store(#[from] StoreError),
}

const MAX_TITLE_CHARS: usize = 500;
const MAX_DESCRIPTION_CHARS: usize = 4000;

#[derive(Clone)]
pub struct TaskTools {
    store: Store,
    user: UserId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddArgs {
    title: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRef {
    task_id: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    task_id: i32,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    completed: Option<bool>,
}

pub fn task_json(t: &task::Model) -> Value {
    json!({
        "task_id": t.number,
        "title": t.title,
        "description": t.description,
        "completed": t.completed,
        "created_at": format_time(&t.created_at),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(args: &Value) -> Result<T, ToolError> {
    let args = if args.is_null() {
        json!({})
    } else {
        args.clone()
    };
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
    pub fn new(store: Store, user: UserId) -> Self {
        Self { store, user }
    }

    /// JSON-schema function definitions (OpenAI `tools` format).
    pub fn definitions() -> Value {
        let task_id =
            json!({"type": "integer", "description": "The task's number, as shown by list_tasks"});
        json!([
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
        ])
    }

    /// Runs one tool call for this user.
    pub async fn execute(&self, name: &str, args: &Value) -> Result<Value, ToolError> {
        let store = &self.store;
        let user = &self.user;
        match name {
            "add_task" => {
                let a: AddArgs = parse(args)?;
                let title = clean_text(&a.title, "title", MAX_TITLE_CHARS)?;
                let description = a
                    .description
                    .as_deref()
                    .map(|d| clean_text(d, "description", MAX_DESCRIPTION_CHARS))
                    .transpose()?;
                let task = store.add_task(user, &title, description.as_deref()).await?;
                Ok(json!({"task": task_json(&task)}))
            }
            "list_tasks" => {
                let a: ListArgs = parse(args)?;
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
                let tasks = store.list_tasks(user, filter).await?;
                Ok(json!({"tasks": tasks.iter().map(task_json).collect::<Vec<_>>()}))
            }
            "complete_task" => {
                let a: TaskRef = parse(args)?;
                let update = TaskUpdate {
                    completed: Some(true),
                    ..Default::default()
                };
                let task = store
                    .update_task(user, a.task_id, update)
                    .await?
                    .ok_or(ToolError::TaskNotFound(a.task_id))?;
                Ok(json!({"task": task_json(&task)}))
            }
            "delete_task" => {
                let a: TaskRef = parse(args)?;
                let task = store
                    .delete_task(user, a.task_id)
                    .await?
                    .ok_or(ToolError::TaskNotFound(a.task_id))?;
                Ok(json!({"deleted": task_json(&task)}))
            }
            "update_task" => {
                let a: UpdateArgs = parse(args)?;
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
                let task = store
                    .update_task(user, a.task_id, update)
                    .await?
                    .ok_or(ToolError::TaskNotFound(a.task_id))?;
                Ok(json!({"task": task_json(&task)}))
            }
            other => Err(ToolError::UnknownTool(other.to_owned())),
        }
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
}
