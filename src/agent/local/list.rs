//! Lists in attached files: whether the message asks to add them ("add these tasks", "yeh
//! tasks add karo"), and the task titles a text, Markdown or CSV file holds, one a line.

use std::collections::HashSet;

use super::text::words;
use crate::agent::{files, provider::AttachedFile};

/// At most this many tasks are added from the files of one message; the rest are counted
/// and the user is told to send them again.
pub(super) const MAX_LISTED: usize = 50;

/// How much of one file is read: far more than [`MAX_LISTED`] lines, and a bound on the
/// work a large file can cause.
const READ_BYTES: u64 = 256 * 1024;

/// Words that ask for something to be added.
const VERBS: &[&str] = &[
    "add", "import", "create", "save", "shamil", "daal", "daalo", "dal", "dalo", "likh", "likho",
    "bana", "banao",
];

/// Every other word such a request may hold: what it points at ("these", "yeh", "in ko",
/// "the list") and the words around it ("to my tasks", "kar do", "please").
const OTHER_WORDS: &[&str] = &[
    // English
    "these",
    "them",
    "this",
    "those",
    "all",
    "list",
    "lists",
    "file",
    "files",
    "attached",
    "attachment",
    "the",
    "a",
    "tasks",
    "task",
    "items",
    "item",
    "todos",
    "todo",
    "to",
    "dos",
    "my",
    "of",
    "from",
    "in",
    "into",
    "as",
    "lines",
    "line",
    "each",
    "one",
    "per",
    "please",
    "pls",
    "plz",
    "too",
    "also",
    "for",
    "me",
    "and",
    "ok",
    "okay",
    "can",
    "you",
    "could",
    "would",
    "kindly",
    "hey",
    "i",
    "want",
    "just",
    "new",
    // Roman Urdu
    "yeh",
    "ye",
    "yah",
    "inko",
    "inhen",
    "inhein",
    "un",
    "unko",
    "is",
    "isko",
    "us",
    "sab",
    "saray",
    "sare",
    "saare",
    "tamam",
    "kar",
    "karo",
    "kardo",
    "krdo",
    "karein",
    "karen",
    "karna",
    "dein",
    "den",
    "dain",
    "de",
    "do",
    "lo",
    "le",
    "ko",
    "ki",
    "ke",
    "ka",
    "mein",
    "main",
    "men",
    "wali",
    "wale",
    "waly",
    "kaam",
    "naye",
    "nayi",
    "bhi",
    "zara",
    "ek",
];

/// Whether `message` asks only to add what is attached: an add verb and nothing but the
/// words such a request is made of. "add these tasks", "add them to my list", "yeh tasks
/// add karo", "in ko add kar do" do; "add a task to buy milk" names a task of its own.
pub(super) fn asks_to_add(message: &str) -> bool {
    let lower = message.to_lowercase();
    let mut any_verb = false;
    for word in words(&lower) {
        if VERBS.contains(&word) {
            any_verb = true;
        } else if !OTHER_WORDS.contains(&word) {
            return false;
        }
    }
    any_verb
}

/// The types read as a list.
const LIST_TYPES: [&str; 3] = ["text/plain", "text/markdown", "text/csv"];

/// Whether `file` is read as a list (text, Markdown or CSV).
pub(super) fn is_list(file: &AttachedFile) -> bool {
    LIST_TYPES.contains(&files::essence(&file.mime_type).as_str())
}

/// The tasks the list files of a message hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Listed {
    /// The titles to add, in file and line order, at most [`MAX_LISTED`].
    pub titles: Vec<String>,
    /// Lines that repeat an earlier one (case and spacing aside).
    pub duplicates: usize,
    /// Titles past [`MAX_LISTED`], not added.
    pub left_over: usize,
    /// A file was longer than what is read of it.
    pub cut: bool,
}

/// Reads every list file of `files`, in order.
pub(super) fn read(files: &[AttachedFile]) -> Listed {
    let mut listed = Listed::default();
    let mut seen = HashSet::new();
    for file in files.iter().filter(|f| is_list(f)) {
        let (text, cut) = files::text_prefix(&file.bytes, READ_BYTES);
        listed.cut |= cut;
        let mut lines: Vec<&str> = text.lines().collect();
        if cut {
            lines.pop(); // the last line may be part of one
        }
        let titles = match files::essence(&file.mime_type).as_str() {
            "text/csv" => csv_titles(&lines),
            "text/markdown" => lines
                .iter()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| list_item(l))
                .collect(),
            _ => lines.iter().filter_map(|l| list_item(l)).collect(),
        };
        for title in titles {
            let key = title
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            if !seen.insert(key) {
                listed.duplicates += 1;
            } else if listed.titles.len() < MAX_LISTED {
                listed.titles.push(title);
            } else {
                listed.left_over += 1;
            }
        }
    }
    listed
}

/// A line without its bullet, checkbox or number (`- [ ] 1. milk` is `milk`); `None` when
/// nothing worth a task is left (a blank line, a rule such as `---`).
fn list_item(line: &str) -> Option<String> {
    let mut t = line.trim();
    loop {
        let before = t;
        for mark in [
            "- ", "* ", "+ ", "• ", "· ", "– ", "— ", "[ ]", "[x]", "[X]", "[-]",
        ] {
            if let Some(rest) = t.strip_prefix(mark) {
                t = rest.trim_start();
            }
        }
        t = strip_number(t);
        if t == before {
            break;
        }
    }
    t.chars().any(char::is_alphanumeric).then(|| t.to_owned())
}

/// `1. milk`, `12) milk`, `(3) milk` without the number; `2.5 kg flour` stays.
fn strip_number(t: &str) -> &str {
    let inner = t.strip_prefix('(').unwrap_or(t);
    let digits = inner.len() - inner.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 4 {
        return t;
    }
    let rest = &inner[digits..];
    let rest = match rest.strip_prefix(['.', ')']) {
        Some(r) => r,
        None => return t,
    };
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        rest.trim_start()
    } else {
        t
    }
}

/// Header names a CSV's first row may give its task column; such a row is no task.
const HEADERS: &[&str] = &[
    "title",
    "titles",
    "task",
    "tasks",
    "todo",
    "to-do",
    "to do",
    "item",
    "items",
    "name",
    "description",
    "kaam",
];

/// The first column of each row of a CSV, its header row skipped.
fn csv_titles(lines: &[&str]) -> Vec<String> {
    let rows: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    // Spreadsheets in some locales write `;`, and some exports use tabs.
    let delimiter = [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| first.matches(*d).count())
        .filter(|d| first.contains(*d))
        .unwrap_or(',');
    let mut titles = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let field = first_field(row, delimiter);
        let field = field.trim();
        if i == 0 && HEADERS.contains(&field.to_lowercase().as_str()) {
            continue;
        }
        if field.chars().any(char::is_alphanumeric) {
            titles.push(field.to_owned());
        }
    }
    titles
}

/// A row's first field: up to the delimiter, or a quoted field with `""` for a quote.
fn first_field(row: &str, delimiter: char) -> String {
    let row = row.trim_start();
    let Some(quoted) = row.strip_prefix('"') else {
        return row.split(delimiter).next().unwrap_or_default().to_owned();
    };
    let mut field = String::new();
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                field.push('"');
            } else {
                break;
            }
        } else {
            field.push(c);
        }
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mime_type: &str, text: &str) -> AttachedFile {
        AttachedFile {
            name: name.into(),
            mime_type: mime_type.into(),
            bytes: bytes::Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    #[test]
    fn asking_to_add_what_is_attached_in_english_and_roman_urdu() {
        for yes in [
            "add these tasks",
            "Add these",
            "add these!",
            "please add them to my list",
            "add all of these to my tasks",
            "can you add the tasks in this file?",
            "import this list",
            "add",
            "yeh tasks add karo",
            "in ko add kar do",
            "inko add kardo",
            "yeh sab shamil kar do",
            "is list ke tasks add karo",
            "file wale tasks add kar dein",
        ] {
            assert!(asks_to_add(yes), "{yes:?}");
        }
        for no in [
            "add a task to buy milk",
            "add milk to my list",
            "doodh lena add karo",
            "list my tasks",
            "what is in this file?",
            "yeh kya hai",
            "",
        ] {
            assert!(!asks_to_add(no), "{no:?}");
        }
    }

    #[test]
    fn markdown_bullets_checkboxes_and_numbers_are_stripped() {
        let md = "# Groceries\n\n- milk\n* [ ] eggs\n- [x] bread\n+ butter\n1. call mom\n12) pay rent\n(3) water plants\n2.5 kg flour\n---\n```\n  \n";
        let listed = read(&[file("list.md", "text/markdown", md)]);
        assert_eq!(
            listed.titles,
            [
                "milk",
                "eggs",
                "bread",
                "butter",
                "call mom",
                "pay rent",
                "water plants",
                "2.5 kg flour"
            ]
        );
        assert_eq!(
            (listed.duplicates, listed.left_over, listed.cut),
            (0, 0, false)
        );
        // In plain text a `#` line is a line like any other.
        let plain = read(&[file(
            "t.txt",
            "text/plain",
            "#1 priority: taxes\r\n• tea\r\n",
        )]);
        assert_eq!(plain.titles, ["#1 priority: taxes", "tea"]);
    }

    #[test]
    fn a_csv_gives_its_first_column_without_the_header() {
        let csv = "Title,Due\nbuy milk,today\n\"call \"\"the\"\" bank, again\",tomorrow\n,empty\npay rent\n";
        let listed = read(&[file("tasks.csv", "text/csv", csv)]);
        assert_eq!(
            listed.titles,
            ["buy milk", "call \"the\" bank, again", "pay rent"]
        );
        let semicolons = read(&[file("t.csv", "text/csv", "task;due\nmilk;1\neggs;2\n")]);
        assert_eq!(semicolons.titles, ["milk", "eggs"]);
        // A first row that is no header is a task.
        let headless = read(&[file("t.csv", "text/csv", "milk\neggs\n")]);
        assert_eq!(headless.titles, ["milk", "eggs"]);
    }

    #[test]
    fn duplicates_are_skipped_and_the_list_is_capped() {
        let listed = read(&[
            file("a.txt", "text/plain", "Milk\n- milk\nEggs\n\n"),
            file("b.png", "image/png", "not a list"),
            file(
                "c.txt",
                "text/plain; charset=utf-8",
                "eggs\nbread  rolls\nbread rolls\n",
            ),
        ]);
        assert_eq!(listed.titles, ["Milk", "Eggs", "bread  rolls"]);
        assert_eq!(listed.duplicates, 3);
        let long: String = (1..=60).map(|i| format!("task {i}\n")).collect();
        let listed = read(&[file("long.txt", "text/plain", &long)]);
        assert_eq!(listed.titles.len(), MAX_LISTED);
        assert_eq!(listed.titles[49], "task 50");
        assert_eq!(listed.left_over, 10);
    }
}
