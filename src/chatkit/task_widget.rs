//! The widget a turn shows for the tasks a tool call touched: a card with a heading and
//! one row per task (a checkbox to complete or reopen it, its title, a delete button),
//! built from task records as the tools return them (`{"task_id", "title", "completed",
//! ...}` under `task`, `tasks` or `deleted`; see `agent::tools::task_json` and the app's
//! MCP server, which use the same keys).
//!
//! Each control's action carries everything it does in its configured payload: the kind
//! names the target state (`task.complete` on an open task, `task.reopen` on a done one)
//! and the payload the task, so a replayed or stale click cannot flip a task back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::widgets::{
    ActionConfig, Alignment, Badge, BadgeColor, BadgeVariant, Button, ButtonColor, Caption, Card,
    Checkbox, Color, Container, ControlSize, ControlVariant, Divider, Icon, IconName, IconSize,
    Length, LoadingBehavior, Spacer, Text, TextColor, Title, TitleSize, WidgetComponent,
    WidgetRoot,
};

/// At most this many rows: a widget is a glance, and a client renders every row at once.
pub const MAX_ROWS: usize = 50;

/// Titles are cut to this many characters (an ellipsis included).
pub const MAX_TITLE_CHARS: usize = 200;

/// One task as the widget shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRow {
    /// The task's number, as tools and users name it (`task_id`).
    pub id: i64,
    pub title: String,
    pub completed: bool,
    /// Gone: shown struck through, without controls.
    pub deleted: bool,
}

/// What a tool call did to the tasks it returns; it picks the widget's heading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
fn clean_title(raw: &str) -> String {
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

fn heading(change: TaskChange, count: usize) -> (&'static str, IconName) {
    let one = count == 1;
    match change {
        TaskChange::Listed => ("Your tasks", IconName::Notebook),
        TaskChange::Added if one => ("Task added", IconName::Plus),
        TaskChange::Added => ("Tasks added", IconName::Plus),
        TaskChange::Completed if one => ("Task completed", IconName::CheckCircle),
        TaskChange::Completed => ("Tasks completed", IconName::CheckCircle),
        TaskChange::Reopened if one => ("Task reopened", IconName::Reload),
        TaskChange::Reopened => ("Tasks reopened", IconName::Reload),
        TaskChange::Updated if one => ("Task updated", IconName::Write),
        TaskChange::Updated => ("Tasks updated", IconName::Write),
        TaskChange::Deleted if one => ("Task deleted", IconName::EmptyCircle),
        TaskChange::Deleted => ("Tasks deleted", IconName::EmptyCircle),
    }
}

fn action(kind: TaskAction, task_id: i64) -> ActionConfig {
    ActionConfig::new(kind.as_str())
        .with_payload(&TaskActionPayload { task_id })
        .expect("a struct of one integer serialises to a JSON object")
        // The clicked control spins; the rest of the list stays usable to read.
        .loading(LoadingBehavior::SelfOnly)
}

fn task_line(row: &TaskRow) -> WidgetComponent {
    let mut children: Vec<WidgetComponent> = Vec::with_capacity(5);
    if !row.deleted {
        let (kind, field) = if row.completed {
            (TaskAction::Reopen, "reopen")
        } else {
            (TaskAction::Complete, "complete")
        };
        children.push(
            Checkbox {
                default_checked: Some(row.completed),
                on_change_action: Some(action(kind, row.id)),
                // Distinct per row, and never `task_id`: a client that merges control
                // values into the payload by name must not overwrite the task id.
                ..Checkbox::new(format!("{field}_task_{}", row.id))
            }
            .into(),
        );
    }
    let faded = row.completed || row.deleted;
    children.push(
        Text {
            line_through: faded.then_some(true),
            color: faded.then_some(Color::Text(if row.deleted {
                TextColor::Tertiary
            } else {
                TextColor::Secondary
            })),
            max_lines: Some(3),
            ..Text::new(row.title.clone())
        }
        .into(),
    );
    children.push(Spacer::default().into());
    children.push(
        Caption {
            color: Some(Color::Text(TextColor::Tertiary)),
            ..Caption::new(format!("#{}", row.id))
        }
        .into(),
    );
    children.push(if row.deleted {
        Badge {
            color: Some(BadgeColor::Danger),
            variant: Some(BadgeVariant::Soft),
            ..Badge::new("deleted")
        }
        .into()
    } else {
        Button {
            label: Some("Delete".into()),
            on_click_action: Some(action(TaskAction::Delete, row.id)),
            color: Some(ButtonColor::Danger),
            variant: Some(ControlVariant::Ghost),
            size: Some(ControlSize::Sm),
            ..Button::default()
        }
        .into()
    });
    WidgetComponent::row(Container {
        key: Some(format!("task-{}", row.id)),
        align: Some(Alignment::Center),
        gap: Some(Length::Int(3)),
        ..Container::of(children)
    })
}

/// The widget showing `rows` after `change`, and its `copy_text`: the heading, then one
/// line per task (`[ ] 3. buy milk`, `[x]` when done, `[-] … (deleted)`).
#[must_use]
pub fn task_widget(rows: &[TaskRow], change: TaskChange) -> (WidgetRoot, String) {
    // Rows may be made by hand rather than by `task_rows_from`: same limits here.
    let rows: Vec<TaskRow> = rows
        .iter()
        .take(MAX_ROWS)
        .map(|r| TaskRow {
            title: clean_title(&r.title),
            ..r.clone()
        })
        .collect();
    let (title, icon) = heading(change, rows.len());
    let mut header: Vec<WidgetComponent> = vec![
        Icon {
            color: Some(Color::Text(TextColor::Secondary)),
            size: Some(IconSize::Md),
            ..Icon::new(icon)
        }
        .into(),
        Title {
            size: Some(TitleSize::Sm),
            ..Title::new(title)
        }
        .into(),
    ];
    if change == TaskChange::Listed && !rows.is_empty() {
        let noun = if rows.len() == 1 { "task" } else { "tasks" };
        header.push(Spacer::default().into());
        header.push(
            Caption {
                color: Some(Color::Text(TextColor::Secondary)),
                ..Caption::new(format!("{} {noun}", rows.len()))
            }
            .into(),
        );
    }
    let body: WidgetComponent = if rows.is_empty() {
        Text {
            color: Some(Color::Text(TextColor::Secondary)),
            ..Text::new("No tasks yet.")
        }
        .into()
    } else {
        WidgetComponent::col(Container {
            gap: Some(Length::Int(2)),
            ..Container::of(rows.iter().map(task_line).collect())
        })
    };
    let card = Card::of(vec![
        WidgetComponent::row(Container {
            align: Some(Alignment::Center),
            gap: Some(Length::Int(2)),
            ..Container::of(header)
        }),
        Divider::default().into(),
        body,
    ]);

    let mut copy = String::from(title);
    if rows.is_empty() {
        copy.push_str("\nNo tasks yet.");
    }
    for row in &rows {
        let line = match (row.deleted, row.completed) {
            (true, _) => format!("\n[-] {}. {} (deleted)", row.id, row.title),
            (false, true) => format!("\n[x] {}. {}", row.id, row.title),
            (false, false) => format!("\n[ ] {}. {}", row.id, row.title),
        };
        copy.push_str(&line);
    }
    (card.into(), copy)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{json, to_value};

    use super::*;

    fn row(id: i64, title: &str, completed: bool, deleted: bool) -> TaskRow {
        TaskRow {
            id,
            title: title.to_owned(),
            completed,
            deleted,
        }
    }

    /// The task rows of a widget: the `Row`s under the body `Col`.
    fn task_lines(widget: &Value) -> Vec<Value> {
        widget["children"][2]["children"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn types_of(line: &Value) -> Vec<String> {
        line["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_owned())
            .collect()
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
    fn open_done_and_deleted_rows() {
        let rows = [
            row(1, "open one", false, false),
            row(2, "done one", true, false),
            row(3, "gone one", false, true),
        ];
        let (widget, _) = task_widget(&rows, TaskChange::Listed);
        let widget = to_value(widget).unwrap();
        let lines = task_lines(&widget);
        assert_eq!(lines.len(), 3);

        let action = |kind: &str, id: i64| {
            json!({"type": kind, "payload": {"task_id": id}, "handler": "server",
                   "loadingBehavior": "self", "streaming": true})
        };
        let open = &lines[0];
        assert_eq!(open["type"], "Row");
        assert_eq!(open["key"], "task-1");
        assert_eq!(
            types_of(open),
            ["Checkbox", "Text", "Spacer", "Caption", "Button"]
        );
        assert_eq!(open["children"][0]["defaultChecked"], false);
        assert_eq!(
            open["children"][0]["onChangeAction"],
            action("task.complete", 1)
        );
        assert_eq!(
            open["children"][1],
            json!({"type": "Text", "value": "open one", "maxLines": 3})
        );
        assert_eq!(open["children"][3]["value"], "#1");
        assert_eq!(
            open["children"][4]["onClickAction"],
            action("task.delete", 1)
        );
        assert_eq!(open["children"][4]["label"], "Delete");

        let done = &lines[1];
        assert_eq!(done["children"][0]["defaultChecked"], true);
        assert_eq!(
            done["children"][0]["onChangeAction"],
            action("task.reopen", 2)
        );
        assert_eq!(done["children"][1]["lineThrough"], true);
        assert_eq!(done["children"][1]["color"], "secondary");
        assert_eq!(
            done["children"][4]["onClickAction"],
            action("task.delete", 2)
        );

        let gone = &lines[2];
        assert_eq!(types_of(gone), ["Text", "Spacer", "Caption", "Badge"]);
        assert_eq!(gone["children"][0]["lineThrough"], true);
        assert_eq!(gone["children"][3]["label"], "deleted");
        assert!(!gone.to_string().contains("Action"), "{gone}");

        // Checkbox names are distinct and never the payload's key.
        let names: Vec<&str> = lines[..2]
            .iter()
            .map(|l| l["children"][0]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["complete_task_1", "reopen_task_2"]);
    }

    #[test]
    fn each_change_has_its_heading() {
        let one = [row(7, "walk", false, false)];
        for (change, heading, icon) in [
            (TaskChange::Listed, "Your tasks", "notebook"),
            (TaskChange::Added, "Task added", "plus"),
            (TaskChange::Completed, "Task completed", "check-circle"),
            (TaskChange::Reopened, "Task reopened", "reload"),
            (TaskChange::Updated, "Task updated", "write"),
            (TaskChange::Deleted, "Task deleted", "empty-circle"),
        ] {
            let (widget, copy) = task_widget(&one, change);
            let widget = to_value(widget).unwrap();
            assert_eq!(widget["type"], "Card");
            let header = &widget["children"][0];
            assert_eq!(
                header["children"][0],
                json!({"type": "Icon", "name": icon,
                                                     "color": "secondary", "size": "md"})
            );
            assert_eq!(
                header["children"][1],
                json!({"type": "Title", "value": heading, "size": "sm"})
            );
            assert_eq!(widget["children"][1], json!({"type": "Divider"}));
            assert_eq!(task_lines(&widget).len(), 1);
            assert_eq!(copy, format!("{heading}\n[ ] 7. walk"));
        }
        let two = [row(1, "a", false, false), row(2, "b", false, false)];
        let (widget, _) = task_widget(&two, TaskChange::Added);
        assert_eq!(
            to_value(widget).unwrap()["children"][0]["children"][1]["value"],
            "Tasks added"
        );
        let (widget, _) = task_widget(&two, TaskChange::Listed);
        let widget = to_value(widget).unwrap();
        assert_eq!(widget["children"][0]["children"][3]["value"], "2 tasks");
    }

    #[test]
    fn an_empty_list_says_so() {
        let (widget, copy) = task_widget(&[], TaskChange::Listed);
        let widget = to_value(widget).unwrap();
        assert_eq!(
            widget["children"][2],
            json!({"type": "Text", "value": "No tasks yet.", "color": "secondary"})
        );
        assert_eq!(
            widget["children"][0]["children"].as_array().unwrap().len(),
            2
        );
        assert_eq!(copy, "Your tasks\nNo tasks yet.");
    }

    #[test]
    fn copy_text_has_one_line_per_task() {
        let rows = [
            row(3, "buy milk", true, false),
            row(4, "call\nmom", false, false),
            row(5, "old", true, true),
        ];
        let (_, copy) = task_widget(&rows, TaskChange::Listed);
        assert_eq!(
            copy,
            "Your tasks\n[x] 3. buy milk\n[ ] 4. call mom\n[-] 5. old (deleted)"
        );
        let many: Vec<TaskRow> = (1..=80).map(|n| row(n, "t", false, false)).collect();
        let (widget, copy) = task_widget(&many, TaskChange::Listed);
        assert_eq!(copy.lines().count(), 1 + MAX_ROWS);
        assert_eq!(task_lines(&to_value(widget).unwrap()).len(), MAX_ROWS);
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

    /// One sample for `tests/conformance/check_widgets.py`.
    #[derive(Serialize)]
    struct Sample {
        name: String,
        widget: WidgetRoot,
        copy_text: String,
    }

    fn samples() -> Vec<Sample> {
        let mixed = task_rows_from(&json!({"tasks": [
            {"task_id": 1, "title": "buy milk", "completed": false},
            {"task_id": 2, "title": "call mom", "completed": true},
            {"task_id": 3, "title": "Ünïcødé “quotes” <b>&amp;</b> 🚀", "completed": false}]}));
        let deleted =
            task_rows_from(&json!({"deleted": {"task_id": 4, "title": "old", "completed": true}}));
        let long = task_rows_from(&json!({"task": {"task_id": 5, "title": "long ".repeat(400)}}));
        let many: Vec<TaskRow> = (1..=60)
            .map(|n| row(n, &format!("task {n}"), n % 3 == 0, false))
            .collect();
        let mut out = Vec::new();
        let mut push = |name: String, (widget, copy_text): (WidgetRoot, String)| {
            out.push(Sample {
                name,
                widget,
                copy_text,
            });
        };
        for change in [
            TaskChange::Listed,
            TaskChange::Added,
            TaskChange::Completed,
            TaskChange::Reopened,
            TaskChange::Updated,
            TaskChange::Deleted,
        ] {
            push(
                format!("{change:?}: mixed rows"),
                task_widget(&mixed, change),
            );
            push(
                format!("{change:?}: one row"),
                task_widget(&mixed[1..2], change),
            );
        }
        push("empty list".into(), task_widget(&[], TaskChange::Listed));
        push(
            "empty, not listed".into(),
            task_widget(&[], TaskChange::Added),
        );
        push(
            "deleted row".into(),
            task_widget(&deleted, TaskChange::Deleted),
        );
        push("long title".into(), task_widget(&long, TaskChange::Added));
        push("capped list".into(), task_widget(&many, TaskChange::Listed));
        for (name, widget) in crate::chatkit::widgets::tests::catalogue() {
            push(name.into(), (widget, format!("{name} (copy text)")));
        }
        out
    }

    /// Writes the samples to `target/chatkit-widget-samples.json`, where
    /// `tests/conformance/against-gateway.sh` validates them with the SDK's models.
    #[test]
    fn writes_the_samples_for_the_sdk_check() {
        let samples = samples();
        assert!(samples.len() > 20);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chatkit-widget-samples.json");
        // Renamed into place, so a reader never sees half a file.
        let tmp = dir.join(format!(
            "chatkit-widget-samples.json.{}",
            std::process::id()
        ));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&samples).unwrap()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
}
