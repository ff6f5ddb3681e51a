//! What the user asked for: a deterministic parser for English and Roman Urdu requests,
//! and the tool call each request becomes.

use serde_json::{json, Value};

use super::text::{contains_any, has_any, strip_prefix_ci, strip_suffix_ci, tidy, words};

/// One understood request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Intent {
    Greet,
    Help,
    List(&'static str),
    Add(String),
    Complete(i32),
    /// "complete buy milk": a task named by words of its title, not its number.
    CompleteNamed(String),
    Delete(i32),
    Rename(i32, String),
}

impl Intent {
    /// The tool and arguments that carry the request out; none for a greeting or help.
    pub(super) fn tool_call(&self) -> Option<(&'static str, Value)> {
        match self {
            Self::Greet | Self::Help | Self::CompleteNamed(_) => None,
            Self::List(filter) => Some(("list_tasks", json!({"status": filter}))),
            Self::Add(title) => Some(("add_task", json!({"title": title}))),
            Self::Complete(n) => Some(("complete_task", json!({"task_id": n}))),
            Self::Delete(n) => Some(("delete_task", json!({"task_id": n}))),
            Self::Rename(n, title) => Some(("update_task", json!({"task_id": n, "title": title}))),
        }
    }

    /// The task number the request is about, if it names one.
    pub(super) fn task_number(&self) -> Option<i32> {
        match self {
            Self::Complete(n) | Self::Delete(n) | Self::Rename(n, _) => Some(*n),
            _ => None,
        }
    }
}

/// The first task number in the text ("task 2", "#2", "two").
fn task_number(lower: &str) -> Option<i32> {
    const NAMES: [&str; 10] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    words(lower).find_map(|w| {
        let w = w.trim_start_matches('#');
        let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        digits.parse::<i32>().ok().filter(|n| *n > 0).or_else(|| {
            NAMES
                .iter()
                .position(|n| *n == w)
                .and_then(|i| i32::try_from(i + 1).ok())
        })
    })
}

/// "complete buy milk", "mark buy milk as done", "buy milk is done": the words naming a
/// task to complete when no number does.
fn named_completion(text: &str, lower: &str) -> Option<String> {
    const LEADS: [&str; 8] = [
        "complete ",
        "finish ",
        "mark ",
        "check off ",
        "tick off ",
        "tick ",
        "done with ",
        "finished ",
    ];
    const TAILS: [&str; 5] = [
        " as done",
        " as complete",
        " as completed",
        " is done",
        " done",
    ];
    let lead = LEADS.iter().find(|l| lower.starts_with(*l));
    let tail = TAILS.iter().find(|t| lower.ends_with(*t));
    if lead.is_none() && tail.is_none() {
        return None;
    }
    let start = lead.map_or(0, |l| l.len());
    let end = tail.map_or(text.len(), |t| text.len() - t.len());
    let middle = text.get(start..end.max(start))?.trim();
    let middle = strip_prefix_ci(middle, "the ")
        .or_else(|| strip_prefix_ci(middle, "my "))
        .unwrap_or(middle);
    let middle = strip_prefix_ci(middle, "task ")
        .unwrap_or(middle)
        .trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    (!middle.is_empty() && middle.chars().count() <= 200).then(|| middle.to_owned())
}

fn strip_politeness(text: &str) -> &str {
    let mut t = text.trim();
    loop {
        let before = t;
        for p in [
            "please ",
            "pls ",
            "plz ",
            "can you ",
            "could you ",
            "would you ",
            "kindly ",
            "hey ",
            "ok ",
            "okay ",
        ] {
            if let Some(rest) = strip_prefix_ci(t, p) {
                t = rest.trim_start();
            }
        }
        if t == before {
            return t;
        }
    }
}

fn english_add(text: &str) -> Option<String> {
    const PREFIXES: &[&str] = &[
        "add a new task to ",
        "add a new task: ",
        "add a new task ",
        "add a task to ",
        "add a task: ",
        "add a task ",
        "add task to ",
        "add task: ",
        "add task ",
        "add a todo: ",
        "add a todo ",
        "add todo: ",
        "add todo ",
        "add to my list: ",
        "add to my tasks: ",
        "add to my list ",
        "create a task to ",
        "create a task: ",
        "create a task ",
        "create task: ",
        "create task ",
        "new task: ",
        "new task ",
        "remind me to ",
        "todo: ",
        "add ",
    ];
    const SUFFIXES: &[&str] = &[
        " to my task list",
        " to my todo list",
        " to my to-do list",
        " to my list",
        " to my tasks",
        " to the list",
        " to my todos",
    ];
    let t = strip_politeness(text);
    let rest = PREFIXES.iter().find_map(|p| strip_prefix_ci(t, p))?;
    let mut title = tidy(rest);
    for s in SUFFIXES {
        if let Some(cut) = strip_suffix_ci(&title, s) {
            title = tidy(cut);
            break;
        }
    }
    (!title.is_empty()).then_some(title)
}

fn roman_urdu_add(text: &str) -> Option<String> {
    const VERB_SUFFIXES: &[&str] = &[
        " add kar dein",
        " add kar den",
        " add kar do",
        " add kardo",
        " add krdo",
        " add karo",
        " add kar lo",
        " shamil kar do",
        " shamil karo",
        " list mein daal do",
        " list mein dal do",
        " likh lo",
        " note kar lo",
        " yaad dilana",
        " yaad dila dena",
        " ka task bana do",
        " ki task bana do",
        " ka task banao",
    ];
    const LEAD: &[&str] = &[
        "task add karo:",
        "task add karo",
        "naya task:",
        "naya task",
        "nayi task:",
        "nayi task",
        "ek task:",
        "ek task",
        "mera task",
        "meri task",
        "mujhe",
        "task:",
    ];
    const TRAIL: &[&str] = &[" ka task", " ki task", " ka kaam", " wala task", " task"];
    let t = tidy(strip_politeness(text));
    let (body, explicit_lead) = match VERB_SUFFIXES.iter().find_map(|s| strip_suffix_ci(&t, s)) {
        Some(body) => (body.to_owned(), false),
        // "naya task: doodh lena" and "task add karo: doodh lena" name the verb first.
        None => {
            let lead = ["task add karo:", "naya task:", "nayi task:"]
                .iter()
                .find_map(|p| strip_prefix_ci(&t, p))?;
            (lead.to_owned(), true)
        }
    };
    let mut title = tidy(&body);
    if !explicit_lead {
        for l in LEAD {
            if let Some(rest) = strip_prefix_ci(&title, l) {
                title = tidy(rest);
                break;
            }
        }
    }
    for s in TRAIL {
        if let Some(cut) = strip_suffix_ci(&title, s) {
            title = tidy(cut);
            break;
        }
    }
    (!title.is_empty()).then_some(title)
}

/// "rename task 3 to X" / "task 3 ka naam X rakh do": the new title.
fn rename_title(text: &str, lower: &str) -> Option<String> {
    if let Some(at) = lower.find(" to ") {
        let before = &lower[..at];
        if contains_any(before, &["rename", "change", "update", "edit", "call"])
            && task_number(before).is_some()
        {
            return Some(tidy(&text[at + 4..])).filter(|t| !t.is_empty());
        }
    }
    let at = lower.find(" naam ")?;
    let mut rest = tidy(&text[at + 6..]);
    for lead in ["badal kar ", "badal ke ", "change kar ke "] {
        if let Some(r) = strip_prefix_ci(&rest, lead) {
            rest = tidy(r);
        }
    }
    for end in [
        " rakh dein",
        " rakh den",
        " rakh do",
        " rakho",
        " kar dein",
        " kar do",
        " karo",
        " kardo",
        " kar den",
    ] {
        if let Some(r) = strip_suffix_ci(&rest, end) {
            rest = tidy(r);
            break;
        }
    }
    (!rest.is_empty()).then_some(rest)
}

/// The request in `text`; anything not understood is [`Intent::Help`].
pub(super) fn parse(text: &str) -> Intent {
    let text = tidy(text);
    let lower = text.to_ascii_lowercase();
    if lower.is_empty() {
        return Intent::Help;
    }
    const GREETINGS: &[&str] = &[
        "hi",
        "hello",
        "hey",
        "salam",
        "assalam o alaikum",
        "assalamualaikum",
        "aoa",
        "good morning",
        "good evening",
        "adaab",
    ];
    if GREETINGS.contains(&lower.trim_end_matches(['!', ',', ' '])) {
        return Intent::Greet;
    }
    if has_any(&lower, &["help", "madad"])
        || contains_any(&lower, &["what can you do", "kya kar sakte"])
    {
        return Intent::Help;
    }
    if let Some(title) = english_add(&text) {
        return Intent::Add(title);
    }
    if let Some(n) = task_number(&lower) {
        if has_any(&lower, &["rename", "naam"])
            || (has_any(&lower, &["change", "update", "edit"]) && lower.contains(" to "))
        {
            if let Some(title) = rename_title(&text, &lower) {
                return Intent::Rename(n, title);
            }
        }
        if has_any(
            &lower,
            &[
                "delete", "remove", "hatao", "hata", "mita", "mitao", "erase", "drop",
            ],
        ) {
            return Intent::Delete(n);
        }
        if has_any(
            &lower,
            &[
                "complete",
                "completed",
                "done",
                "finish",
                "finished",
                "mark",
                "mukammal",
                "hogaya",
                "khatam",
                "check",
                "tick",
            ],
        ) || lower.contains("ho gaya")
            || lower.contains("ho gya")
        {
            return Intent::Complete(n);
        }
    }
    if let Some(words) = named_completion(&text, &lower) {
        return Intent::CompleteNamed(words);
    }
    let asks_to_show = has_any(
        &lower,
        &[
            "list", "show", "dikhao", "dikha", "batao", "see", "view", "display",
        ],
    ) || contains_any(
        &lower,
        &[
            "what are my",
            "what's on my",
            "what do i have",
            "kya hai",
            "kya hain",
        ],
    );
    let about_tasks = has_any(&lower, &["task", "tasks", "todo", "todos", "kaam", "list"]);
    if (asks_to_show && about_tasks)
        || [
            "tasks",
            "my tasks",
            "list",
            "todos",
            "meri tasks",
            "mere tasks",
        ]
        .contains(&lower.as_str())
    {
        let filter = if has_any(&lower, &["completed", "done", "finished", "mukammal"]) {
            "completed"
        } else if has_any(
            &lower,
            &["pending", "remaining", "open", "baqi", "baaki", "adhoore"],
        ) {
            "pending"
        } else {
            "all"
        };
        return Intent::List(filter);
    }
    if let Some(title) = roman_urdu_add(&text) {
        return Intent::Add(title);
    }
    Intent::Help
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_task_to_complete_by_its_words() {
        assert_eq!(parse("complete buy"), Intent::CompleteNamed("buy".into()));
        assert_eq!(
            parse("mark buy milk as done"),
            Intent::CompleteNamed("buy milk".into())
        );
        assert_eq!(
            parse("Buy milk is done"),
            Intent::CompleteNamed("Buy milk".into())
        );
        // A number still wins.
        assert_eq!(parse("complete task 2"), Intent::Complete(2));
        assert_eq!(parse("complete"), Intent::Help);
    }

    #[test]
    fn understands_english_requests() {
        assert_eq!(
            parse("Add a task to buy milk"),
            Intent::Add("buy milk".into())
        );
        assert_eq!(
            parse("please add Buy Eggs to my list."),
            Intent::Add("Buy Eggs".into())
        );
        assert_eq!(
            parse("remind me to call the bank"),
            Intent::Add("call the bank".into())
        );
        assert_eq!(parse("list my tasks"), Intent::List("all"));
        assert_eq!(parse("show my completed tasks"), Intent::List("completed"));
        assert_eq!(parse("what are my pending tasks?"), Intent::List("pending"));
        assert_eq!(parse("complete task 2"), Intent::Complete(2));
        assert_eq!(parse("mark #3 as done"), Intent::Complete(3));
        assert_eq!(parse("delete task one"), Intent::Delete(1));
        assert_eq!(
            parse("rename task 3 to Call Mom"),
            Intent::Rename(3, "Call Mom".into())
        );
        assert_eq!(
            parse("change task 4 to buy bread"),
            Intent::Rename(4, "buy bread".into())
        );
        assert_eq!(parse("hello"), Intent::Greet);
        assert_eq!(parse("what is the weather"), Intent::Help);
    }

    #[test]
    fn understands_roman_urdu_requests() {
        assert_eq!(
            parse("doodh lena add karo"),
            Intent::Add("doodh lena".into())
        );
        assert_eq!(
            parse("naya task: sabzi lana"),
            Intent::Add("sabzi lana".into())
        );
        assert_eq!(
            parse("mera task bijli ka bill jama karna add kar do"),
            Intent::Add("bijli ka bill jama karna".into())
        );
        assert_eq!(parse("meri tasks dikhao"), Intent::List("all"));
        assert_eq!(parse("task 2 mukammal karo"), Intent::Complete(2));
        assert_eq!(parse("task 2 ho gaya"), Intent::Complete(2));
        assert_eq!(parse("task 1 delete karo"), Intent::Delete(1));
        assert_eq!(parse("task 1 hatao"), Intent::Delete(1));
        assert_eq!(
            parse("task 3 ka naam ammi ko call rakh do"),
            Intent::Rename(3, "ammi ko call".into())
        );
    }

    #[test]
    fn odd_input_never_panics() {
        for text in [
            "",
            " ",
            "🙂",
            "add ",
            "task 0 done",
            "rename task 1 to ",
            "İİİ add karo",
            "task 99999999999 done",
        ] {
            let _ = parse(text);
        }
    }

    #[test]
    fn each_request_becomes_its_tool_call() {
        assert_eq!(Intent::Help.tool_call(), None);
        assert_eq!(
            Intent::Rename(3, "x".into()).tool_call(),
            Some(("update_task", json!({"task_id": 3, "title": "x"})))
        );
        assert_eq!(
            Intent::List("pending").tool_call(),
            Some(("list_tasks", json!({"status": "pending"})))
        );
        // Every tool the parser asks for exists.
        for intent in [
            Intent::List("all"),
            Intent::Add("x".into()),
            Intent::Complete(1),
            Intent::Delete(1),
            Intent::Rename(1, "x".into()),
        ] {
            let (tool, _) = intent.tool_call().unwrap();
            assert!(crate::agent::tools::TOOLS.iter().any(|t| t.name == tool));
        }
    }
}
