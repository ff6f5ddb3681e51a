//! The built-in offline agent: a deterministic task assistant for plain English and Roman
//! Urdu requests. It calls the same task tools as a model would, so the service is useful
//! with no configuration and tests are deterministic. Anything it does not understand gets
//! a short guide to what it can do, never an error.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{Agent, AgentError, AgentEvent, AgentReply, AgentRequest, EventSink, TaskTools};
use crate::store::ToolCallRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lang {
    English,
    RomanUrdu,
    Urdu,
}

#[derive(Debug, PartialEq, Eq)]
enum Intent {
    Greet,
    Help,
    List(&'static str),
    Add(String),
    Complete(i32),
    Delete(i32),
    Rename(i32, String),
}

const ROMAN_URDU_WORDS: &[&str] = &[
    "karo", "kar", "kardo", "krdo", "karein", "dikhao", "dikha", "batao", "mera", "meri", "mere",
    "meray", "hai", "hain", "ko", "ka", "ki", "ke", "naya", "nayi", "hatao", "hata", "mita",
    "mukammal", "kya", "mujhe", "aur", "nahi", "yaad", "kaam", "shukriya", "salam", "assalam",
    "hogaya", "gaya", "dein", "den", "rakh", "rakho", "naam", "madad", "sab", "wala", "khatam",
    "saray", "sare", "tamam", "baqi", "baaki", "shamil", "daal", "likh", "lo", "diya",
];

fn detect_lang(text: &str) -> Lang {
    if text.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)) {
        return Lang::Urdu;
    }
    let lower = text.to_ascii_lowercase();
    let urdu = words(&lower).any(|w| ROMAN_URDU_WORDS.contains(&w));
    if urdu {
        Lang::RomanUrdu
    } else {
        Lang::English
    }
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric() && c != '#')
        .filter(|w| !w.is_empty())
}

fn has_any(lower: &str, needles: &[&str]) -> bool {
    words(lower).any(|w| needles.contains(&w))
}

fn contains_any(lower: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| lower.contains(n))
}

/// The first task number in the text ("task 2", "#2", "two").
fn task_number(lower: &str) -> Option<i32> {
    const NAMES: [&str; 10] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    words(lower).find_map(|w| {
        let w = w.trim_start_matches('#');
        let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        digits
            .parse::<i32>()
            .ok()
            .filter(|n| *n > 0)
            .or_else(|| NAMES.iter().position(|n| *n == w).map(|i| i as i32 + 1))
    })
}

/// Trailing sentence punctuation and quotes off, inner text kept as the user wrote it.
fn tidy(s: &str) -> String {
    s.trim()
        .trim_end_matches(['.', '!', '?', '۔', '؟'])
        .trim()
        .trim_matches(['"', '\'', '“', '”', '‘', '’'])
        .trim()
        .to_owned()
}

/// Strips a prefix, case-insensitively (ASCII), returning the rest of the original text.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn strip_suffix_ci<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = text.len().checked_sub(suffix.len())?;
    let tail = text.get(cut..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..cut])
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

fn parse(text: &str) -> Intent {
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

fn help_text(lang: Lang) -> String {
    match lang {
        Lang::English => "I can manage your tasks. Try: \"add a task to buy milk\", \"list my tasks\", \"complete task 2\", \"rename task 3 to call mom\" or \"delete task 1\".".into(),
        Lang::RomanUrdu => "Main aap ke tasks sambhal sakta hoon. Kahiye: \"doodh lena add karo\", \"meri tasks dikhao\", \"task 2 mukammal karo\", \"task 3 ka naam ammi ko call rakh do\" ya \"task 1 delete karo\".".into(),
        Lang::Urdu => "میں آپ کے کاموں میں مدد کر سکتا ہوں۔ رومن اردو یا انگریزی میں لکھیں، مثلاً \"doodh lena add karo\" یا \"list my tasks\"۔".into(),
    }
}

/// The reply text for a tool result, in the user's language.
fn describe(intent: &Intent, result: &Value, lang: Lang) -> String {
    let ru = lang == Lang::RomanUrdu;
    if let Some(err) = result.get("error").and_then(Value::as_str) {
        let number = match intent {
            Intent::Complete(n) | Intent::Delete(n) | Intent::Rename(n, _) => Some(*n),
            _ => None,
        };
        return match (number, ru) {
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
        (Intent::Complete(_), false) => format!("Marked task {number} as done: {title}."),
        (Intent::Complete(_), true) => format!("Task {number} mukammal kar diya: {title}."),
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

/// Splits text into word-sized deltas that concatenate back to the text.
fn stream_words(text: &str, events: &EventSink) {
    for piece in text.split_inclusive([' ', '\n']) {
        events.emit(AgentEvent::TextDelta(piece.to_owned()));
    }
}

#[derive(Clone, Default)]
pub struct LocalAgent;

#[async_trait]
impl Agent for LocalAgent {
    /// Each request stands alone ("complete task 2"), so earlier turns are not needed.
    fn uses_history(&self) -> bool {
        false
    }

    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentReply, AgentError> {
        let lang = detect_lang(request.message);
        let intent = parse(request.message);
        let call = match &intent {
            Intent::Greet | Intent::Help => None,
            Intent::List(filter) => Some(("list_tasks", json!({"status": filter}))),
            Intent::Add(title) => Some(("add_task", json!({"title": title}))),
            Intent::Complete(n) => Some(("complete_task", json!({"task_id": n}))),
            Intent::Delete(n) => Some(("delete_task", json!({"task_id": n}))),
            Intent::Rename(n, title) => {
                Some(("update_task", json!({"task_id": n, "title": title})))
            }
        };
        let mut reply = AgentReply::default();
        reply.text = match call {
            None => match (intent, lang) {
                (Intent::Greet, Lang::English) => format!("Hello! {}", help_text(lang)),
                (Intent::Greet, Lang::RomanUrdu) => {
                    format!("Walaikum assalam! {}", help_text(lang))
                }
                _ => help_text(lang),
            },
            Some((tool, args)) => {
                let result = tools
                    .call(tool, &args)
                    .await
                    .map_err(|e| AgentError::Unavailable(e.to_string()))?;
                let record = ToolCallRecord {
                    tool: tool.to_owned(),
                    args,
                    result: result.clone(),
                };
                events.emit(AgentEvent::ToolCall(record.clone()));
                reply.tool_calls.push(record);
                describe(&intent, &result, lang)
            }
        };
        stream_words(&reply.text, events);
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(detect_lang("meri tasks dikhao"), Lang::RomanUrdu);
        assert_eq!(detect_lang("list my tasks"), Lang::English);
        assert_eq!(detect_lang("میرے کام دکھاؤ"), Lang::Urdu);
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
}
