//! The tasks a turn or a click touched, as data: the rows a task-list widget shows and
//! what happened to them, read from task tool results (`{"task_id", "title",
//! "completed", ...}` under `task`, `tasks` or `deleted`; see `agent::tools::task_json`
//! and the app's MCP server, which use the same keys). Stored as a widget item's payload;
//! the ChatKit layer draws it (`chatkit::task_widget`), REST shows it as data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many rows: a widget is a glance, and a client renders every row at once.
pub const MAX_ROWS: usize = 50;

/// Titles are cut to this many characters (an ellipsis included).
pub const MAX_TITLE_CHARS: usize = 200;

/// One task as the widget shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    /// The task's number, as tools and users name it (`task_id`).
    #[serde(rename = "task_id")]
    pub id: i64,
    pub title: String,
    pub completed: bool,
    /// Gone: shown struck through, without controls.
    pub deleted: bool,
}

/// What a tool call did to the tasks it returns; it picks the widget's heading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskChange {
    Listed,
    Added,
    Completed,
    Reopened,
    /// Title, description, completion, due date or priority changed (`update_task` can
    /// change several at once, so "renamed" would say too little).
    Updated,
    Deleted,
}

/// What a task control asks the server to do (the action's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAction {
    Complete,
    Reopen,
    Delete,
}

impl TaskAction {
    /// The action `type` on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "task.complete",
            Self::Reopen => "task.reopen",
            Self::Delete => "task.delete",
        }
    }

    /// What it does, as a verb ("complete").
    #[must_use]
    pub fn verb(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Reopen => "reopen",
            Self::Delete => "delete",
        }
    }

    /// The action a `threads.custom_action` names, if it is one of these.
    #[must_use]
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "task.complete" => Some(Self::Complete),
            "task.reopen" => Some(Self::Reopen),
            "task.delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// The payload of every task action: `{"task_id": <int>}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskActionPayload {
    pub task_id: i64,
}

/// The change a tool makes, by its name: a built-in tool's, an MCP tool's, or an MCP
/// tool's prefixed `server__name` (as offered when names clash). `None` for tools whose
/// result is not a task list (counts, reports, bulk clears).
#[must_use]
pub fn change_of_tool(tool: &str) -> Option<TaskChange> {
    let change = |name: &str| match name {
        "list_tasks" | "search_tasks" => Some(TaskChange::Listed),
        "add_task" => Some(TaskChange::Added),
        "complete_task" => Some(TaskChange::Completed),
        "reopen_task" => Some(TaskChange::Reopened),
        "update_task" | "set_due_date" | "set_priority" => Some(TaskChange::Updated),
        "delete_task" => Some(TaskChange::Deleted),
        _ => None,
    };
    change(tool).or_else(|| change(tool.rsplit_once("__")?.1))
}

/// The task rows in a tool's result: `{"task": {...}}`, `{"tasks": [...]}` and
/// `{"deleted": {...}}` (deleted rows), in that order; anything else is ignored, as are
/// records without a positive integer `task_id` or a string `title`, and repeats of an
/// id. At most [`MAX_ROWS`] rows; titles are single-line and cut to [`MAX_TITLE_CHARS`].
#[must_use]
pub fn task_rows_from(result: &Value) -> Vec<TaskRow> {
    let single = |key| result.get(key).into_iter();
    let records = single("task")
        .map(|t| (t, false))
        .chain(
            result
                .get("tasks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| (t, false)),
        )
        .chain(single("deleted").map(|t| (t, true)));
    let mut rows: Vec<TaskRow> = Vec::new();
    for (record, deleted) in records {
        if rows.len() == MAX_ROWS {
            break;
        }
        if let Some(row) = row_of(record, deleted) {
            if !rows.iter().any(|r| r.id == row.id) {
                rows.push(row);
            }
        }
    }
    rows
}

fn row_of(record: &Value, deleted: bool) -> Option<TaskRow> {
    let id = record.get("task_id")?.as_i64().filter(|n| *n > 0)?;
    let title = record.get("title")?.as_str()?;
    Some(TaskRow {
        id,
        title: clean_title(title),
        // Tolerant of a missing or odd flag: the row is still worth showing.
        completed: record
            .get("completed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        deleted,
    })
}

/// One line of at most [`MAX_TITLE_CHARS`] characters: control characters (newlines
/// included) become spaces, runs of whitespace one space.
#[must_use]
pub fn clean_title(raw: &str) -> String {
    let words: Vec<&str> = raw
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let line = words.join(" ");
    if line.is_empty() {
        return "(untitled)".to_owned();
    }
    if line.chars().count() <= MAX_TITLE_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_TITLE_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// What a widget item holds: the tasks concerned and what happened to them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskList {
    pub change: TaskChange,
    pub tasks: Vec<TaskRow>,
}

impl TaskChange {
    /// The word a client effect and REST use for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listed => "listed",
            Self::Added => "added",
            Self::Completed => "completed",
            Self::Reopened => "reopened",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }
}

impl TaskList {
    /// The tasks the task tools among `calls` returned, newest state of each task last
    /// written, with the change of the last call that changed something (a listing only
    /// when nothing changed). `None` when no task tool returned a task.
    #[must_use]
    pub fn from_calls<'a>(calls: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Option<Self> {
        let mut tasks: Vec<TaskRow> = Vec::new();
        let mut change = None;
        for (tool, result) in calls {
            let Some(this) = change_of_tool(tool) else {
                continue;
            };
            let rows = task_rows_from(result);
            // An empty listing is an answer too ("no tasks"); an empty change is nothing.
            let listing =
                this == TaskChange::Listed && result.get("tasks").is_some_and(Value::is_array);
            if rows.is_empty() && !listing {
                continue;
            }
            if this != TaskChange::Listed || change.is_none() {
                change = Some(this);
            }
            for row in rows {
                if let Some(seen) = tasks.iter_mut().find(|t| t.id == row.id) {
                    *seen = row;
                } else if tasks.len() < MAX_ROWS {
                    tasks.push(row);
                }
            }
        }
        Some(Self {
            change: change?,
            tasks,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(id: i64, title: &str, completed: bool, deleted: bool) -> TaskRow {
        TaskRow {
            id,
            title: title.to_owned(),
            completed,
            deleted,
        }
    }

    #[test]
    fn tools_map_to_changes_with_or_without_a_server_prefix() {
        for (tool, change) in [
            ("add_task", Some(TaskChange::Added)),
            ("list_tasks", Some(TaskChange::Listed)),
            ("search_tasks", Some(TaskChange::Listed)),
            ("complete_task", Some(TaskChange::Completed)),
            ("reopen_task", Some(TaskChange::Reopened)),
            ("update_task", Some(TaskChange::Updated)),
            ("set_priority", Some(TaskChange::Updated)),
            ("set_due_date", Some(TaskChange::Updated)),
            ("delete_task", Some(TaskChange::Deleted)),
            ("app__add_task", Some(TaskChange::Added)),
            ("todo-server__list_tasks", Some(TaskChange::Listed)),
            ("a__b__delete_task", Some(TaskChange::Deleted)),
            ("clear_completed", None),
            ("task_counts", None),
            ("app__weekly_report", None),
            ("add_task__app", None),
            ("__", None),
            ("", None),
        ] {
            assert_eq!(change_of_tool(tool), change, "{tool}");
        }
    }

    #[test]
    fn rows_from_each_result_shape() {
        let task = json!({"task": {"task_id": 3, "title": "buy milk", "completed": false,
                                   "description": null, "created_at": "2026-01-01T00:00:00Z"}});
        assert_eq!(
            task_rows_from(&task),
            vec![row(3, "buy milk", false, false)]
        );
        let tasks = json!({"tasks": [
            {"task_id": 1, "title": "a", "completed": true},
            {"task_id": 2, "title": "b", "completed": false, "priority": "high"}]});
        assert_eq!(
            task_rows_from(&tasks),
            vec![row(1, "a", true, false), row(2, "b", false, false)]
        );
        let deleted = json!({"deleted": {"task_id": 4, "title": "old", "completed": true}});
        assert_eq!(task_rows_from(&deleted), vec![row(4, "old", true, true)]);
        assert!(task_rows_from(&json!({"tasks": []})).is_empty());
        assert!(task_rows_from(&json!({"cleared": 3})).is_empty());
        assert!(task_rows_from(&json!({"error": "task 9 not found"})).is_empty());
    }

    #[test]
    fn hostile_results_give_only_sound_rows() {
        for junk in [
            json!(null),
            json!(42),
            json!("tasks"),
            json!([{"task_id": 1, "title": "x"}]),
            json!({"task": [1, 2]}),
            json!({"task": "x"}),
            json!({"tasks": {"task_id": 1, "title": "x"}}),
            json!({"tasks": "x"}),
            json!({"tasks": [null, 1, "x", [], {}]}),
            json!({"deleted": [{"task_id": 1, "title": "x"}]}),
            json!({"task": {"title": "no id"}}),
            json!({"task": {"task_id": 1}}),
            json!({"task": {"task_id": 1, "title": 7}}),
            json!({"task": {"task_id": "1", "title": "string id"}}),
            json!({"task": {"task_id": 1.5, "title": "fraction"}}),
            json!({"task": {"task_id": 1.0, "title": "float"}}),
            json!({"task": {"task_id": -1, "title": "negative"}}),
            json!({"task": {"task_id": 0, "title": "zero"}}),
            json!({"task": {"task_id": u64::MAX, "title": "too big"}}),
            json!({"task": {"task_id": {"nested": 1}, "title": "x"}}),
            json!({"task": {"task": {"task_id": 1, "title": "nested"}}}),
        ] {
            assert!(task_rows_from(&junk).is_empty(), "{junk}");
        }
        // A bad flag does not lose the row.
        assert_eq!(
            task_rows_from(&json!({"task": {"task_id": 5, "title": "t", "completed": "yes"}})),
            vec![row(5, "t", false, false)]
        );
        // Good records among bad ones survive, repeats of an id do not.
        let mixed = json!({"tasks": [1, {"task_id": 2, "title": "two"}, {"task_id": -3},
                                     {"task_id": 2, "title": "again"}, {"task_id": 4, "title": "four"}]});
        assert_eq!(
            task_rows_from(&mixed),
            vec![row(2, "two", false, false), row(4, "four", false, false)]
        );
        // A huge deep value is neither a crash nor a huge widget.
        let mut deep = json!({"task_id": 1, "title": "x"});
        for _ in 0..500 {
            deep = json!({"task": deep});
        }
        assert!(task_rows_from(&deep).is_empty());
    }

    #[test]
    fn rows_are_capped_and_titles_cut_to_one_line() {
        let many: Vec<Value> = (1..=10_000)
            .map(|n| json!({"task_id": n, "title": format!("t{n}"), "completed": false}))
            .collect();
        let rows =
            task_rows_from(&json!({"tasks": many, "deleted": {"task_id": 99_999, "title": "d"}}));
        assert_eq!(rows.len(), MAX_ROWS);
        assert_eq!(rows.last().unwrap().id, 50);

        let long = "word ".repeat(1000);
        let rows = task_rows_from(&json!({"task": {"task_id": 1, "title": long}}));
        assert_eq!(rows[0].title.chars().count(), MAX_TITLE_CHARS);
        assert!(rows[0].title.ends_with("word…"));
        let cjk = "猫".repeat(MAX_TITLE_CHARS + 1);
        let rows = task_rows_from(&json!({"task": {"task_id": 1, "title": cjk}}));
        assert_eq!(rows[0].title.chars().count(), MAX_TITLE_CHARS);
        let exact = "x".repeat(MAX_TITLE_CHARS);
        let rows = task_rows_from(&json!({"task": {"task_id": 1, "title": exact.clone()}}));
        assert_eq!(rows[0].title, exact);

        let rows = task_rows_from(
            &json!({"task": {"task_id": 1, "title": "  buy\nmilk\r\n\tnow\u{0}\u{7f} "}}),
        );
        assert_eq!(rows[0].title, "buy milk now");
        let rows = task_rows_from(&json!({"task": {"task_id": 1, "title": " \n "}}));
        assert_eq!(rows[0].title, "(untitled)");
    }

    #[test]
    fn actions_round_trip() {
        for a in [TaskAction::Complete, TaskAction::Reopen, TaskAction::Delete] {
            assert_eq!(TaskAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(TaskAction::parse("task.explode"), None);
        let payload: TaskActionPayload = serde_json::from_value(json!({"task_id": 9})).unwrap();
        assert_eq!(payload, TaskActionPayload { task_id: 9 });
    }

    #[test]
    fn a_turns_calls_make_one_list_with_the_last_change() {
        let added = json!({"task": {"task_id": 1, "title": "milk", "completed": false}});
        let listed = json!({"tasks": [{"task_id": 1, "title": "milk", "completed": false},
                                      {"task_id": 2, "title": "bread", "completed": true}]});
        let done = json!({"task": {"task_id": 1, "title": "milk", "completed": true}});
        let list = TaskList::from_calls([
            ("add_task", &added),
            ("list_tasks", &listed),
            ("app__complete_task", &done),
        ])
        .unwrap();
        assert_eq!(list.change, TaskChange::Completed);
        assert_eq!(
            list.tasks,
            [row(1, "milk", true, false), row(2, "bread", true, false)]
        );
        let only_listed = TaskList::from_calls([("list_tasks", &listed)]).unwrap();
        assert_eq!(only_listed.change, TaskChange::Listed);
        let report = json!({"report": "fine"});
        assert!(TaskList::from_calls([("weekly_report", &report)]).is_none());
        assert!(TaskList::from_calls([("add_task", &json!({"error": "x"}))]).is_none());
        let nothing = json!({"tasks": []});
        let empty = TaskList::from_calls([("list_tasks", &nothing)]).unwrap();
        assert!(empty.tasks.is_empty());
        // Stored as data: the field names a REST client reads.
        assert_eq!(
            serde_json::to_value(&only_listed).unwrap()["tasks"][0],
            json!({"task_id": 1, "title": "milk", "completed": false, "deleted": false})
        );
    }
}
