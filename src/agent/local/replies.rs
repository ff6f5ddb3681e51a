//! The replies: what the local agent says about a tool's result, in English, Roman Urdu
//! or (for help) Urdu.

use serde_json::Value;

use super::{intent::Intent, language::Lang, list::MAX_LISTED};

fn task_line(t: &Value) -> String {
    let mark = if t["completed"].as_bool() == Some(true) {
        "[x]"
    } else {
        "[ ]"
    };
    format!(
        "{}. {mark} {}",
        t["task_id"],
        t["title"].as_str().unwrap_or_default()
    )
}

/// What the agent can do, with examples in the user's language.
pub(super) fn help_text(lang: Lang) -> String {
    match lang {
        Lang::English => "I can manage your tasks. Try: \"add a task to buy milk\", \"list my tasks\", \"complete task 2\", \"rename task 3 to call mom\" or \"delete task 1\".".into(),
        Lang::RomanUrdu => "Main aap ke tasks sambhal sakta hoon. Kahiye: \"doodh lena add karo\", \"meri tasks dikhao\", \"task 2 mukammal karo\", \"task 3 ka naam ammi ko call rakh do\" ya \"task 1 delete karo\".".into(),
        Lang::Urdu => "میں آپ کے کاموں میں مدد کر سکتا ہوں۔ رومن اردو یا انگریزی میں لکھیں، مثلاً \"doodh lena add karo\" یا \"list my tasks\"۔".into(),
    }
}

/// The answer text for a tool result, in the user's language.
pub(super) fn describe(intent: &Intent, result: &Value, lang: Lang) -> String {
    let ru = lang == Lang::RomanUrdu;
    if let Some(err) = result.get("error").and_then(Value::as_str) {
        return match (intent.task_number(), ru) {
            (Some(n), false) if err.contains("not found") => {
                format!("I couldn't find task {n}. Say \"list my tasks\" to see their numbers.")
            }
            (Some(n), true) if err.contains("not found") => {
                format!("Task {n} nahi mila. \"meri tasks dikhao\" keh kar numbers dekh lein.")
            }
            (_, false) => format!("I couldn't do that: {err}."),
            (_, true) => format!("Yeh nahi ho saka: {err}."),
        };
    }
    let task = result.get("task").or_else(|| result.get("deleted"));
    let title = task.and_then(|t| t["title"].as_str()).unwrap_or_default();
    let number = task.map(|t| t["task_id"].clone()).unwrap_or_default();
    match (intent, ru) {
        (Intent::Add(_), false) => format!("Added task {number}: {title}."),
        (Intent::Add(_), true) => format!("Task {number} add kar diya: {title}."),
        (Intent::Complete(_) | Intent::CompleteNamed(_), false) => {
            format!("Marked task {number} as done: {title}.")
        }
        (Intent::Complete(_) | Intent::CompleteNamed(_), true) => {
            format!("Task {number} mukammal kar diya: {title}.")
        }
        (Intent::Delete(_), false) => format!("Deleted task {number}: {title}."),
        (Intent::Delete(_), true) => format!("Task {number} delete kar diya: {title}."),
        (Intent::Rename(..), false) => format!("Renamed task {number} to \"{title}\"."),
        (Intent::Rename(..), true) => format!("Task {number} ka naam \"{title}\" rakh diya."),
        (Intent::List(filter), _) => {
            let tasks = result["tasks"].as_array().cloned().unwrap_or_default();
            if tasks.is_empty() {
                return match (*filter, ru) {
                    ("all", false) => {
                        "You have no tasks yet. Try \"add a task to buy milk\".".into()
                    }
                    ("all", true) => {
                        "Aap ki list khali hai. Kahiye \"doodh lena add karo\".".into()
                    }
                    (f, false) => format!("You have no {f} tasks."),
                    (_, true) => "Is qism ka koi task nahi hai.".into(),
                };
            }
            let heading = match (*filter, ru) {
                ("completed", false) => "Your completed tasks:",
                ("pending", false) => "Your pending tasks:",
                (_, false) => "Your tasks:",
                ("completed", true) => "Aap ke mukammal tasks:",
                ("pending", true) => "Aap ke baqi tasks:",
                (_, true) => "Aap ke tasks:",
            };
            let lines: Vec<String> = tasks.iter().map(task_line).collect();
            format!("{heading}\n{}", lines.join("\n"))
        }
        (Intent::Greet | Intent::Help, _) => help_text(lang),
    }
}

/// A greeting back, then what the agent can do.
pub(super) fn greeting(lang: Lang) -> String {
    match lang {
        Lang::English => format!("Hello! {}", help_text(lang)),
        Lang::RomanUrdu => format!("Walaikum assalam! {}", help_text(lang)),
        Lang::Urdu => help_text(lang),
    }
}

/// The question when several open tasks match the words of a completion.
pub(super) fn which_one(words: &str, count: usize, lang: Lang) -> (String, String) {
    if lang == Lang::RomanUrdu {
        (
            format!("\"{words}\" se {count} tasks milti hain. Kaun si mukammal karoon?"),
            "Kaun si task mukammal karoon?".to_owned(),
        )
    } else {
        (
            format!("{count} open tasks match \"{words}\". Which one should I mark as done?"),
            "Which task should I mark as done?".to_owned(),
        )
    }
}

/// No open task matches the words of a completion.
pub(super) fn none_match(words: &str, lang: Lang) -> String {
    if lang == Lang::RomanUrdu {
        format!("\"{words}\" se koi adhoori task nahi mili.")
    } else {
        format!("I couldn't find an open task matching \"{words}\".")
    }
}

/// The user skipped the question.
pub(super) fn left_alone(lang: Lang) -> String {
    if lang == Lang::RomanUrdu {
        "Theek hai, tasks waise hi rehne diye.".to_owned()
    } else {
        "Okay, I left your tasks as they are.".to_owned()
    }
}

/// What was added from the attached lists, one line per task, with what was left out.
pub(super) struct ListReport<'a> {
    /// The files read, by name.
    pub sources: &'a [&'a str],
    /// The tasks added (`task_id`, `title`, as the tool reported them).
    pub added: &'a [Value],
    /// Titles the tool refused, with its reason.
    pub refused: &'a [(String, String)],
    pub duplicates: usize,
    pub left_over: usize,
    pub cut: bool,
}

/// The answer after adding the tasks of attached lists.
pub(super) fn listed(report: &ListReport<'_>, lang: Lang) -> String {
    let ru = lang == Lang::RomanUrdu;
    let from = report.sources.join(", ");
    let count = report.added.len();
    let mut text = match (count, ru) {
        (0, false) => format!("I found no tasks to add in {from}."),
        (0, true) => format!("{from} mein add karne ke liye koi task nahi mila."),
        (1, false) => format!("Added 1 task from {from}:"),
        (1, true) => format!("{from} se 1 task add kar diya:"),
        (n, false) => format!("Added {n} tasks from {from}:"),
        (n, true) => format!("{from} se {n} tasks add kar diye:"),
    };
    for task in report.added {
        text.push_str(&format!(
            "\n{}. {}",
            task["task_id"],
            task["title"].as_str().unwrap_or_default()
        ));
    }
    for (title, why) in report.refused {
        text.push_str(&if ru {
            format!("\n\"{title}\" add nahi ho saka: {why}.")
        } else {
            format!("\nI couldn't add \"{title}\": {why}.")
        });
    }
    let mut notes = Vec::new();
    match (report.duplicates, ru) {
        (0, _) => {}
        (1, false) => notes.push("I skipped 1 repeated line.".to_owned()),
        (n, false) => notes.push(format!("I skipped {n} repeated lines.")),
        (n, true) => notes.push(format!("{n} dohrai gayi lines chhor di.")),
    }
    if report.left_over > 0 {
        notes.push(if ru {
            format!(
                "Main ek message se {MAX_LISTED} tasks tak add karta hoon; baqi {} agle message mein bhejein.",
                report.left_over
            )
        } else {
            format!(
                "I add at most {MAX_LISTED} tasks from one message; send the other {} in another.",
                report.left_over
            )
        });
    }
    if report.cut {
        notes.push(if ru {
            "File bohat lambi thi: sirf us ka pehla hissa parha.".to_owned()
        } else {
            "The file was too long to read whole: I read its beginning only.".to_owned()
        });
    }
    if !notes.is_empty() {
        text.push('\n');
        text.push_str(&notes.join(" "));
    }
    text
}

/// The message asks to add what is attached, but no file is a list this agent reads.
pub(super) fn no_list(names: &[&str], lang: Lang) -> String {
    let names = names.join(", ");
    if lang == Lang::RomanUrdu {
        format!("Main text, Markdown ya CSV list se tasks add kar sakta hoon, har line ek task; {names} nahi parh sakta.")
    } else {
        format!("I can add tasks from a text, Markdown or CSV list, one task per line; I can't read {names}.")
    }
}
