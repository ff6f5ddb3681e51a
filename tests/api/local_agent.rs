//! The local agent (`AGENT_PROVIDER=local`): what it understands and how it answers, in
//! English and Roman Urdu, through `POST /messages`.

use serde_json::json;

use crate::support::spawn_app;

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
