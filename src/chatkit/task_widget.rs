//! The widget a turn shows for the tasks a tool call touched: a card with a heading and
//! one row per task (a checkbox to complete or reopen it, its title, a delete button),
//! drawn from a stored [`TaskList`](crate::domain::task_list::TaskList).
//!
//! Each control's action carries everything it does in its configured payload: the kind
//! names the target state (`task.complete` on an open task, `task.reopen` on a done one)
//! and the payload the task, so a replayed or stale click cannot flip a task back.

use super::widgets::{
    ActionConfig, Alignment, Badge, BadgeColor, BadgeVariant, Button, ButtonColor, Caption, Card,
    Checkbox, Color, Container, ControlSize, ControlVariant, Divider, Icon, IconName, IconSize,
    Length, LoadingBehavior, Spacer, Text, TextColor, Title, TitleSize, WidgetComponent,
    WidgetRoot,
};
use crate::domain::task_list::{
    clean_title, TaskAction, TaskActionPayload, TaskChange, TaskRow, MAX_ROWS,
};

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

    use serde::Serialize;
    use serde_json::{json, to_value, Value};

    use super::*;
    use crate::domain::task_list::task_rows_from;

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
