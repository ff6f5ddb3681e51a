//! A click on a task widget: the action its control was configured with, run through the
//! same tools a model calls (built-in, or the app's MCP server with the user's forwarded
//! identity), recorded like a model's call, and applied to the widget it came from.
//!
//! The client's payload is untrusted: the action is one of a closed set, the task must be
//! one the widget shows, and the widget must be the caller's (anything else reads as not
//! found). The action names its target state, so a replayed click changes nothing more.

use std::sync::Arc;

use entity::thread_item;
use serde_json::{json, Value};

use crate::{
    agent::{Agent, AgentError, EventSink, Route, TaskTools},
    domain::{
        new_id, now,
        task_list::{task_rows_from, TaskAction, TaskChange, TaskList, TaskRow},
        ItemId, ThreadId, UserId,
    },
    store::{workflow_payload, ItemStatus, ItemType, NewItem, Store, StoreError},
};

/// Why an action was not carried out. Nothing is recorded for any of them.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The widget or its thread is not the caller's, or gone.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The widget does not show this task.
    #[error("the task list does not show task {0}")]
    TaskNotShown(i64),
    /// The tool found no such task of the caller's.
    #[error("task {0} not found")]
    TaskNotFound(i64),
    /// The tool refused, or no tool does it.
    #[error("{0}")]
    Failed(String),
    /// The app's tool server could not be reached.
    #[error(transparent)]
    Agent(AgentError),
}

impl From<AgentError> for ActionError {
    fn from(err: AgentError) -> Self {
        match err {
            AgentError::Store(e) => Self::Store(e),
            other => Self::Agent(other),
        }
    }
}

/// What an action did: the widget as it stands now, and the record of the change.
#[derive(Debug)]
pub struct ActionOutcome {
    /// The widget item with the task's new state.
    pub widget: thread_item::Model,
    /// The recorded call (a workflow item); `None` when there was nothing to do (a
    /// replayed delete).
    pub workflow: Option<thread_item::Model>,
    /// The tasks the action changed, and how (for the host page's effect).
    pub changed: Option<(Vec<i64>, TaskChange)>,
}

/// Runs task actions for widgets.
#[derive(Clone)]
pub struct TaskActions {
    store: Store,
    agent: Arc<dyn Agent>,
}

impl TaskActions {
    #[must_use]
    pub fn new(store: Store, agent: Arc<dyn Agent>) -> Self {
        Self { store, agent }
    }

    /// Carries out `action` on task `task_id` of the task-list widget `widget_id`.
    pub async fn run(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        widget_id: &ItemId,
        action: TaskAction,
        task_id: i64,
    ) -> Result<ActionOutcome, ActionError> {
        let list = self.store.task_list(user, thread_id, widget_id).await?;
        let row = list
            .tasks
            .iter()
            .find(|t| t.id == task_id)
            .cloned()
            .ok_or(ActionError::TaskNotShown(task_id))?;
        if row.deleted {
            // Gone already: a replay, or a click on a row a reload would show struck out.
            let widget = self
                .store
                .update_task_list(user, thread_id, widget_id, |_| {}, &[])
                .await?;
            return Ok(ActionOutcome {
                widget,
                workflow: None,
                changed: None,
            });
        }
        let tools = self
            .agent
            .tools_for_actions(TaskTools::new(self.store.clone(), user.clone()))
            .await?;
        let (name, args) = tool_for(&tools, action, task_id)?;
        let call = tools.run(&name, args, &EventSink::default()).await?;
        if let Some(error) = call.result.get("error") {
            let error = error.as_str().unwrap_or("the tool failed").to_owned();
            return Err(if error.contains("not found") {
                ActionError::TaskNotFound(task_id)
            } else {
                ActionError::Failed(error)
            });
        }
        let change = match action {
            TaskAction::Complete => TaskChange::Completed,
            TaskAction::Reopen => TaskChange::Reopened,
            TaskAction::Delete => TaskChange::Deleted,
        };
        let mut updated = task_rows_from(&call.result)
            .into_iter()
            .find(|r| r.id == task_id)
            .unwrap_or_else(|| TaskRow {
                completed: action == TaskAction::Complete,
                ..row.clone()
            });
        updated.deleted |= action == TaskAction::Delete;
        let at = now();
        let workflow = NewItem {
            id: new_id("wf"),
            at,
            kind: ItemType::Workflow,
            content: String::new(),
            payload: Some(workflow_payload(std::slice::from_ref(&call))),
            status: ItemStatus::Completed,
        };
        let note = NewItem {
            id: new_id("hc"),
            at: at + chrono::Duration::microseconds(1),
            kind: ItemType::HiddenContext,
            content: note(&updated, change),
            payload: Some(json!({"action": action.as_str(), "task_id": task_id})),
            status: ItemStatus::Completed,
        };
        let shown = updated.clone();
        let widget = self
            .store
            .update_task_list(
                user,
                thread_id,
                widget_id,
                move |list: &mut TaskList| {
                    if let Some(slot) = list.tasks.iter_mut().find(|t| t.id == shown.id) {
                        *slot = shown;
                    }
                },
                &[workflow.clone(), note],
            )
            .await?;
        let workflow = workflow.row(thread_id.as_str(), user, None);
        Ok(ActionOutcome {
            widget,
            workflow: Some(workflow),
            changed: Some((vec![task_id], change)),
        })
    }
}

/// The tool that carries out `action`, and its arguments: the app's own tool where it has
/// one (`reopen_task`), else the built-in way (`update_task` with `completed: false`).
fn tool_for(
    tools: &TaskTools,
    action: TaskAction,
    task_id: i64,
) -> Result<(String, Value), ActionError> {
    let by_id = json!({ "task_id": task_id });
    let route = |name: &str, args: &Value| match tools.route(name, args) {
        Route::Call(tool) if tools.offers(&tool) => Some(tool),
        _ => None,
    };
    let found = match action {
        TaskAction::Complete => route("complete_task", &by_id).map(|t| (t, by_id.clone())),
        TaskAction::Delete => route("delete_task", &by_id).map(|t| (t, by_id.clone())),
        TaskAction::Reopen => route("reopen_task", &by_id)
            .map(|t| (t, by_id.clone()))
            .or_else(|| {
                let args = json!({ "task_id": task_id, "completed": false });
                route("update_task", &args).map(|t| (t, args))
            }),
    };
    found.ok_or_else(|| ActionError::Failed(format!("no tool can {} a task", action.verb())))
}

/// What the model is told on its next turn: the user acted, not the model.
fn note(row: &TaskRow, change: TaskChange) -> String {
    let what = match change {
        TaskChange::Completed => "marked as done",
        TaskChange::Reopened => "reopened",
        TaskChange::Deleted => "deleted",
        _ => "changed",
    };
    format!(
        "The user {what} task {} (\"{}\") from the task list shown in the chat.",
        row.id, row.title
    )
}
