//! The local agent (`AGENT_PROVIDER=local`): what it understands and how it answers, in
//! English and Roman Urdu, through `POST /messages`; and, driven through the `Agent` trait
//! on the test database, what it does with attached lists and dictation.

use std::time::Duration;

use serde_json::json;

use chatkit_gateway::{
    agent::{
        Agent, AgentAnswer, AgentError, AgentEvent, AgentRequest, AttachedFile, EventSink,
        LocalAgent, TaskTools,
    },
    domain::UserId,
    store::{Store, TaskFilter},
};

use crate::{
    attachments::uploaded,
    support::{chatkit::input, spawn_app, TestDb},
};

#[tokio::test]
async fn the_local_agent_manages_tasks_in_english() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let thread = app.create_thread(&t, "Tasks").await;
    let id = thread["id"].as_str().unwrap();
    assert_eq!(
        app.say(&t, id, "list my tasks").await["response"],
        "You have no tasks yet. Try \"add a task to buy milk\"."
    );
    app.say(&t, id, "add a task to buy milk").await;
    app.say(&t, id, "please add call the bank to my list").await;
    app.say(&t, id, "remind me to water the plants").await;
    let done = app.say(&t, id, "complete task 2").await;
    assert_eq!(done["response"], "Marked task 2 as done: call the bank.");
    let renamed = app.say(&t, id, "rename task 3 to water the garden").await;
    assert_eq!(
        renamed["response"],
        "Renamed task 3 to \"water the garden\"."
    );
    assert_eq!(renamed["tool_calls"][0]["tool"], "update_task");
    let deleted = app.say(&t, id, "delete task 1").await;
    assert_eq!(deleted["response"], "Deleted task 1: buy milk.");
    let list = app.say(&t, id, "show my tasks").await;
    assert_eq!(
        list["response"],
        "Your tasks:\n2. [x] call the bank\n3. [ ] water the garden"
    );
    let pending = app.say(&t, id, "what are my pending tasks?").await;
    assert_eq!(
        pending["response"],
        "Your pending tasks:\n3. [ ] water the garden"
    );
    let missing = app.say(&t, id, "complete task 9").await;
    assert!(missing["response"]
        .as_str()
        .unwrap()
        .contains("couldn't find task 9"));
    let unknown = app.say(&t, id, "what's the weather like?").await;
    assert!(unknown["response"]
        .as_str()
        .unwrap()
        .contains("list my tasks"));
    assert_eq!(unknown["tool_calls"], json!([]));
    // Numbers stay stable after a delete: the next task is 4.
    assert_eq!(
        app.say(&t, id, "add task: pay rent").await["response"],
        "Added task 4: pay rent."
    );
    let thread = app.thread(&t, id).await;
    assert_eq!(thread["message_count"], 24);
}

#[tokio::test]
async fn the_local_agent_understands_roman_urdu() {
    let app = spawn_app().await;
    let t = app.login("ali").await;
    let first = app.send(&t, None, "doodh lena add karo").await.ok();
    assert_eq!(first["response"], "Task 1 add kar diya: doodh lena.");
    let id = first["thread_id"].as_str().unwrap();
    app.say(&t, id, "naya task: sabzi lana").await;
    assert_eq!(
        app.say(&t, id, "task 1 mukammal karo").await["response"],
        "Task 1 mukammal kar diya: doodh lena."
    );
    assert_eq!(
        app.say(&t, id, "task 2 ka naam phal lana rakh do").await["response"],
        "Task 2 ka naam \"phal lana\" rakh diya."
    );
    assert_eq!(
        app.say(&t, id, "meri tasks dikhao").await["response"],
        "Aap ke tasks:\n1. [x] doodh lena\n2. [ ] phal lana"
    );
    assert_eq!(
        app.say(&t, id, "task 1 delete karo").await["response"],
        "Task 1 delete kar diya: doodh lena."
    );
    assert!(app.say(&t, id, "aaj mausam kaisa hai").await["response"]
        .as_str()
        .unwrap()
        .starts_with("Main aap ke tasks"));
}

/// `user`'s tools on a fresh, migrated test database.
async fn tools_for(user: &UserId) -> (TestDb, Store, TaskTools) {
    let db = TestDb::new().await;
    let store = Store::connect(&db.url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let tools = TaskTools::new(store.clone(), user.clone());
    (db, store, tools)
}

fn file(name: &str, mime_type: &str, text: &str) -> AttachedFile {
    AttachedFile {
        name: name.into(),
        mime_type: mime_type.into(),
        bytes: bytes::Bytes::copy_from_slice(text.as_bytes()),
    }
}

/// The local agent's answer to `message` with `attachments`, and the events it emitted.
async fn respond(
    tools: &TaskTools,
    user: &UserId,
    message: &str,
    attachments: &[AttachedFile],
) -> (AgentAnswer, Vec<AgentEvent>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let request = AgentRequest {
        user,
        history: &[],
        message,
        stop: None,
        model: None,
        tool_choice: None,
        interactive: true,
        client_tools: &[],
        mentions: &[],
        resume: None,
        attachments,
    };
    let answer = LocalAgent
        .respond(request, tools, &EventSink::new(tx))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (answer, events)
}

async fn titles(store: &Store, user: &UserId) -> Vec<String> {
    store
        .list_tasks(user, TaskFilter::All)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.title)
        .collect()
}

#[tokio::test]
async fn the_local_agent_adds_one_task_per_line_of_an_attached_list() {
    let user = UserId::parse("alice").unwrap();
    let (_db, store, tools) = tools_for(&user).await;
    let md = "# This week\n\n- [ ] buy milk\n- [x] call mom\n1. pay rent\n* Buy  milk\n\n---\n";
    let files = [
        file("photo.png", "image/png", "\u{89}PNG"),
        file("todo.md", "text/markdown", md),
    ];
    let (answer, events) = respond(&tools, &user, "add these tasks", &files).await;
    assert_eq!(
        answer.text,
        "Added 3 tasks from todo.md:\n1. buy milk\n2. call mom\n3. pay rent\nI skipped 1 repeated line."
    );
    // One add_task per line, each recorded and reported as a single request's call is (the
    // chat service builds the task widget from these).
    let calls: Vec<(&str, &serde_json::Value)> = answer
        .tool_calls
        .iter()
        .map(|c| (c.tool.as_str(), &c.args))
        .collect();
    assert_eq!(
        calls,
        [
            ("add_task", &json!({"title": "buy milk"})),
            ("add_task", &json!({"title": "call mom"})),
            ("add_task", &json!({"title": "pay rent"})),
        ]
    );
    let reported: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolCall(record) => Some(record.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reported, answer.tool_calls);
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, answer.text);
    assert_eq!(
        titles(&store, &user).await,
        ["buy milk", "call mom", "pay rent"]
    );

    // Roman Urdu, from a CSV with a header row.
    let csv = "title,due\nsabzi lana,kal\n\"doodh, dahi lena\",aaj\n";
    let (answer, _) = respond(
        &tools,
        &user,
        "in ko add kar do",
        &[file("tasks.csv", "text/csv", csv)],
    )
    .await;
    assert_eq!(
        answer.text,
        "tasks.csv se 2 tasks add kar diye:\n4. sabzi lana\n5. doodh, dahi lena"
    );
    let (answer, _) = respond(
        &tools,
        &user,
        "yeh tasks add karo",
        &[file("more.txt", "text/plain", "phal lana\n")],
    )
    .await;
    assert_eq!(
        answer.text,
        "more.txt se 1 task add kar diya:\n6. phal lana"
    );
}

#[tokio::test]
async fn a_long_list_is_capped_and_what_cannot_be_added_is_said() {
    let user = UserId::parse("bob").unwrap();
    let (_db, store, tools) = tools_for(&user).await;
    // 52 lines, one of them longer than a title may be.
    let mut lines: Vec<String> = (1..=51).map(|i| format!("task {i}")).collect();
    lines.insert(1, "x".repeat(501));
    let (answer, _) = respond(
        &tools,
        &user,
        "please add all of these to my list",
        &[file("long.txt", "text/plain", &lines.join("\n"))],
    )
    .await;
    assert_eq!(answer.tool_calls.len(), 50);
    let text = &answer.text;
    assert!(
        text.starts_with("Added 49 tasks from long.txt:\n1. task 1\n2. task 2\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "\n49. task 49\nI couldn't add \"{}\": invalid arguments: title is longer than 500 characters.\nI add at most 50 tasks from one message; send the other 2 in another.",
            "x".repeat(501)
        )),
        "{text}"
    );
    assert_eq!(titles(&store, &user).await.len(), 49);

    // Files it cannot read as a list: said, and nothing is done.
    let (answer, _) = respond(
        &tools,
        &user,
        "add these",
        &[file("board.jpg", "image/jpeg", "\u{ff}\u{d8}")],
    )
    .await;
    assert_eq!(
        answer.text,
        "I can add tasks from a text, Markdown or CSV list, one task per line; I can't read board.jpg."
    );
    assert!(answer.tool_calls.is_empty());
    // An attached list with a message about something else: the message is what is done.
    let (answer, _) = respond(
        &tools,
        &user,
        "add a task to buy bread",
        &[file("list.txt", "text/plain", "eggs\n")],
    )
    .await;
    assert_eq!(answer.text, "Added task 50: buy bread.");
    let (answer, _) = respond(
        &tools,
        &user,
        "add these",
        &[file("empty.md", "text/markdown", "# nothing\n\n")],
    )
    .await;
    assert_eq!(answer.text, "I found no tasks to add in empty.md.");
}

#[tokio::test]
async fn the_local_agent_cannot_transcribe() {
    let err = LocalAgent
        .transcribe(bytes::Bytes::from_static(b"RIFF...."), "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::TranscriptionUnavailable),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_list_attached_in_chatkit_becomes_tasks_and_their_widget() {
    let app = spawn_app().await;
    let t = app.login("ali").await;
    let list = uploaded(
        &app,
        &t,
        "kaam.md",
        "text/markdown",
        b"# Kal\n- [ ] doodh lena\n- [ ] sabzi lana\n",
    )
    .await;
    let mut input = input("yeh tasks add karo");
    input["attachments"] = json!([list["id"]]);
    let a = app
        .chatkit(&t)
        .request("threads.create", json!({ "input": input }))
        .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let said = a
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message")
        .unwrap_or_else(|| panic!("no answer: {}", a.raw));
    assert_eq!(
        said["item"]["content"][0]["text"],
        "kaam.md se 2 tasks add kar diye:\n1. doodh lena\n2. sabzi lana"
    );
    let last = a.events.last().unwrap();
    assert_eq!(last["item"]["type"], "widget", "{}", a.raw);
    assert_eq!(
        last["item"]["copy_text"],
        "Tasks added\n[ ] 1. doodh lena\n[ ] 2. sabzi lana"
    );
    // The same tasks, as the REST API's agent lists them.
    let id = a.thread_id();
    assert_eq!(
        app.say(&t, &id, "meri tasks dikhao").await["response"],
        "Aap ke tasks:\n1. [ ] doodh lena\n2. [ ] sabzi lana"
    );
}
