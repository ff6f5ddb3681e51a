//! Task widgets: a turn that touches tasks answers with a task-list widget, and its
//! controls act on the tasks (`threads.custom_action`, `threads.sync_custom_action`).

use serde_json::{json, Value};

use crate::support::{
    chatkit::{Answer, ChatKit},
    model::{call, text, use_model, FakeModel},
    spawn_app, spawn_app_with, TestApp,
};

/// The widget item a stream ended with (every turn that touches tasks ends with one).
fn widget_of(answer: &Answer) -> Value {
    let last = answer.events.last().expect("events");
    assert_eq!(last["type"], "thread.item.done", "{}", answer.raw);
    assert_eq!(last["item"]["type"], "widget", "{}", answer.raw);
    last["item"].clone()
}

/// Every action a widget carries, as (type, task_id), in the order it shows them.
fn actions_of(widget: &Value) -> Vec<(String, i64)> {
    fn walk(node: &Value, out: &mut Vec<(String, i64)>) {
        match node {
            Value::Object(map) => {
                for key in ["onClickAction", "onChangeAction"] {
                    if let Some(action) = map.get(key) {
                        out.push((
                            action["type"].as_str().unwrap().to_owned(),
                            action["payload"]["task_id"].as_i64().unwrap(),
                        ));
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&widget["widget"], &mut out);
    out
}

fn click(widget: &Value, thread_id: &str, kind: &str, task_id: Value) -> Value {
    json!({
        "thread_id": thread_id,
        "item_id": widget["id"],
        "action": {"type": kind, "payload": {"task_id": task_id}},
    })
}

/// Clicks task 1's checkbox in `widget` (streamed), which completes it.
async fn complete_task_1(ck: &ChatKit<'_>, thread_id: &str, widget: &Value) -> Answer {
    let done = ck
        .request(
            "threads.custom_action",
            click(widget, thread_id, "task.complete", json!(1)),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.raw);
    done
}

/// A thread holding one open task, "buy milk" (task 1), and the widget that shows it.
async fn thread_with_a_task(ck: &ChatKit<'_>) -> (String, Value) {
    let a = ck.create("add a task to buy milk").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    (a.thread_id(), widget_of(&a))
}

/// The user's tasks as the built-in agent lists them (a fresh widget of every task).
async fn tasks_now(ck: &ChatKit<'_>, thread_id: &str) -> Vec<Value> {
    let listed = ck.add_message(thread_id, "list my tasks").await;
    let widget = widget_of(&listed);
    widget["copy_text"]
        .as_str()
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| *l != "No tasks yet.")
        .map(|l| json!(l))
        .collect()
}

#[tokio::test]
async fn a_turn_that_touches_tasks_answers_with_their_widget() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    assert_eq!(widget["widget"]["type"], "Card");
    assert_eq!(widget["copy_text"], "Task added\n[ ] 1. buy milk");
    // An open task offers to complete it and to delete it, each naming the task.
    assert_eq!(
        actions_of(&widget),
        [("task.complete".into(), 1), ("task.delete".into(), 1)]
    );
    // The text answer stays, for REST clients and screen readers.
    let listed = ck.add_message(&tid, "list my tasks").await;
    assert!(listed
        .events
        .iter()
        .any(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message"));
    assert_eq!(
        widget_of(&listed)["copy_text"],
        "Your tasks\n[ ] 1. buy milk"
    );
    // A turn that touches no task has no widget.
    let hello = ck.add_message(&tid, "hello").await;
    assert!(!hello.events.iter().any(|e| e["item"]["type"] == "widget"));
}

#[tokio::test]
async fn a_click_completes_the_task_and_replaces_the_widget_in_place() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    let done = complete_task_1(&ck, &tid, &widget).await;
    assert_eq!(
        done.types(),
        [
            "stream_options",
            "thread.item.done",
            "thread.item.replaced",
            "client_effect"
        ]
    );
    // Recorded like a model's call: a workflow item listing it.
    assert_eq!(done.events[1]["item"]["type"], "workflow");
    assert_eq!(
        done.events[1]["item"]["workflow"]["tasks"][0]["title"],
        "Completed task 1: buy milk"
    );
    let replaced = &done.events[2]["item"];
    assert_eq!(replaced["id"], widget["id"]);
    assert_eq!(replaced["created_at"], widget["created_at"]);
    assert_eq!(replaced["copy_text"], "Task added\n[x] 1. buy milk");
    // Done now, so its control reopens it.
    assert_eq!(
        actions_of(replaced),
        [("task.reopen".into(), 1), ("task.delete".into(), 1)]
    );
    assert_eq!(
        done.events[3],
        json!({"type": "client_effect", "name": "tasks.changed",
               "data": {"task_ids": [1], "change": "completed"}})
    );
    assert_eq!(tasks_now(&ck, &tid).await, [json!("[x] 1. buy milk")]);
    // A reload shows the widget as it is now, and nothing hidden.
    let items = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let items = items.ok()["data"].as_array().unwrap().clone();
    let reloaded = items.iter().find(|i| i["id"] == widget["id"]).unwrap();
    assert_eq!(reloaded, replaced);
    assert!(items.iter().all(|i| i["type"] != "hidden_context_item"));
}

/// The widget item with `id` as `items.list` and `threads.get_by_id` show it now.
async fn widget_as_read(ck: &ChatKit<'_>, thread_id: &str, id: &Value) -> [Value; 2] {
    let listed = ck
        .request(
            "items.list",
            json!({"thread_id": thread_id, "order": "asc"}),
        )
        .await;
    let got = ck
        .request("threads.get_by_id", json!({"thread_id": thread_id}))
        .await;
    let find = |items: &Value| {
        items["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == *id)
            .cloned()
            .unwrap()
    };
    [find(listed.ok()), find(&got.ok()["items"])]
}

#[tokio::test]
async fn pages_read_before_a_click_show_the_widget_as_it_is_after() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    // Read twice: the second read is answered from what the first rendered.
    for read in [
        widget_as_read(&ck, &tid, &widget["id"]).await,
        widget_as_read(&ck, &tid, &widget["id"]).await,
    ] {
        assert_eq!(read, [widget.clone(), widget.clone()]);
    }
    let done = complete_task_1(&ck, &tid, &widget).await;
    let replaced = done.events[2]["item"].clone();
    assert_eq!(replaced["copy_text"], "Task added\n[x] 1. buy milk");
    assert_eq!(
        widget_as_read(&ck, &tid, &widget["id"]).await,
        [replaced.clone(), replaced]
    );
}

#[tokio::test]
async fn a_replayed_click_changes_nothing_more() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    let complete = click(&widget, &tid, "task.complete", json!(1));
    let first = ck.request("threads.custom_action", complete.clone()).await;
    let again = ck.request("threads.custom_action", complete).await;
    assert_eq!(again.status, 200, "{}", again.raw);
    assert_eq!(first.events[2]["item"], again.events[2]["item"]);
    assert_eq!(tasks_now(&ck, &tid).await, [json!("[x] 1. buy milk")]);
    // Reopening is its own action, named by the control: not a toggle.
    let reopen = click(&widget, &tid, "task.reopen", json!(1));
    ck.request("threads.custom_action", reopen.clone()).await;
    ck.request("threads.custom_action", reopen).await;
    assert_eq!(tasks_now(&ck, &tid).await, [json!("[ ] 1. buy milk")]);
    // A deleted task stays deleted, and deleting it again is a no-op.
    let delete = click(&widget, &tid, "task.delete", json!(1));
    let gone = ck.request("threads.custom_action", delete.clone()).await;
    assert_eq!(gone.events.last().unwrap()["data"]["change"], "deleted");
    assert_eq!(
        gone.events[2]["item"]["copy_text"],
        "Task added\n[-] 1. buy milk (deleted)"
    );
    assert!(actions_of(&gone.events[2]["item"]).is_empty());
    let again = ck.request("threads.custom_action", delete).await;
    assert_eq!(again.status, 200, "{}", again.raw);
    assert_eq!(again.types(), ["stream_options", "thread.item.replaced"]);
    assert!(tasks_now(&ck, &tid).await.is_empty());
}

#[tokio::test]
async fn another_users_widget_is_not_found() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (tid, widget) = thread_with_a_task(&app.chatkit(&alice)).await;
    let complete = click(&widget, &tid, "task.complete", json!(1));
    for kind in ["threads.custom_action", "threads.sync_custom_action"] {
        app.chatkit(&bob)
            .request(kind, complete.clone())
            .await
            .error(404, "thread.not_found");
    }
    // Bob's own thread with Alice's widget in it: no such item there.
    let (bobs_thread, _) = thread_with_a_task(&app.chatkit(&bob)).await;
    let mixed = click(&widget, &bobs_thread, "task.complete", json!(1));
    app.chatkit(&bob)
        .request("threads.custom_action", mixed)
        .await
        .error(404, "item.not_found");
    // Alice's task is untouched.
    assert_eq!(
        tasks_now(&app.chatkit(&alice), &tid).await,
        [json!("[ ] 1. buy milk")]
    );
}

#[tokio::test]
async fn hostile_actions_are_refused_before_anything_runs() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    let user_message = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await
        .ok()["data"][0]["id"]
        .clone();
    let with =
        |action: Value, item: &Value| json!({"thread_id": tid, "item_id": item, "action": action});
    let cases = [
        (
            with(
                json!({"type": "task.explode", "payload": {"task_id": 1}}),
                &widget["id"],
            ),
            400,
            "action.unknown",
        ),
        (
            with(
                json!({"type": "x".repeat(10_000), "payload": {}}),
                &widget["id"],
            ),
            400,
            "action.unknown",
        ),
        (
            with(json!({"type": "task.complete"}), &widget["id"]),
            400,
            "action.invalid",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": [1]}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": "1"}}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": -1}}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 1.5}}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 1_u64 << 40}}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 1, "junk": "y".repeat(4000)}}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        // A task the widget does not show, though it may be hers.
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 2}}),
                &widget["id"],
            ),
            400,
            "action.invalid",
        ),
        // Not a widget at all, or no such item.
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 1}}),
                &user_message,
            ),
            404,
            "item.not_found",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 1}}),
                &json!("wgt_nope"),
            ),
            404,
            "item.not_found",
        ),
        (
            with(
                json!({"type": "task.complete", "payload": {"task_id": 1}}),
                &Value::Null,
            ),
            400,
            "action.invalid",
        ),
    ];
    for (params, status, code) in cases {
        for kind in ["threads.custom_action", "threads.sync_custom_action"] {
            let answer = ck.request(kind, params.clone()).await;
            assert_eq!(answer.status, status, "{kind} {params}: {}", answer.raw);
            answer.error(status, code);
        }
    }
    assert_eq!(tasks_now(&ck, &tid).await, [json!("[ ] 1. buy milk")]);
}

#[tokio::test]
async fn a_sync_action_answers_the_updated_widget() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    let answer = ck
        .request(
            "threads.sync_custom_action",
            click(&widget, &tid, "task.complete", json!(1)),
        )
        .await;
    let updated = &answer.ok()["updated_item"];
    assert_eq!(updated["id"], widget["id"]);
    assert_eq!(updated["copy_text"], "Task added\n[x] 1. buy milk");
    assert_eq!(tasks_now(&ck, &tid).await, [json!("[x] 1. buy milk")]);
}

/// The gateway answering with the OpenAI-compatible agent against `model`.
async fn with_model(model: &FakeModel) -> TestApp {
    spawn_app_with(|s| use_model(s, model)).await
}

#[tokio::test]
async fn the_model_is_told_of_the_click_and_clients_never_see_the_note() {
    let model = FakeModel::start(vec![
        call("add_task", json!({"title": "buy milk"})),
        text(&["Added."]),
        text(&["Noted."]),
    ])
    .await;
    let app = with_model(&model).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    // The OpenAI-compatible agent's tool calls make the same widget.
    let (tid, widget) = thread_with_a_task(&ck).await;
    assert_eq!(widget["copy_text"], "Task added\n[ ] 1. buy milk");
    ck.request(
        "threads.sync_custom_action",
        click(&widget, &tid, "task.complete", json!(1)),
    )
    .await
    .ok();
    let next = ck.add_message(&tid, "what did I just do?").await;
    assert_eq!(next.status, 200, "{}", next.raw);
    let requests = model.requests();
    let messages = requests.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .clone();
    let note = messages
        .iter()
        .find(|m| m["role"] == "system" && m["content"].as_str().unwrap().contains("task 1"))
        .unwrap_or_else(|| panic!("no note of the click: {messages:?}"));
    assert!(note["content"].as_str().unwrap().contains("marked as done"));
    // Hidden from every client: ChatKit reads and REST.
    let thread = ck
        .request("threads.get_by_id", json!({"thread_id": tid}))
        .await;
    let raw = thread.raw.clone();
    assert!(!raw.contains("marked as done"), "{raw}");
    let items = ck
        .request("items.list", json!({"thread_id": tid, "limit": 100}))
        .await;
    assert!(!items.raw.contains("marked as done"), "{}", items.raw);
    let messages = app.all_messages(&token, &tid).await;
    assert!(!serde_json::to_string(&messages)
        .unwrap()
        .contains("marked as done"));
}

#[tokio::test]
async fn a_sync_action_works_while_an_answer_streams() {
    use crate::support::model::{chunk, Frame, Script};
    let gate = crate::support::wait::Gate::new();
    let model = FakeModel::start(vec![
        call("add_task", json!({"title": "buy milk"})),
        text(&["Added."]),
        Script::Sse(vec![
            Frame::Chunk(chunk(json!({"role": "assistant", "content": ""}), None)),
            Frame::Chunk(chunk(json!({"content": "Thinking"}), None)),
            Frame::Stall(gate.clone()),
            Frame::Chunk(chunk(json!({}), Some("stop"))),
            Frame::Done,
        ]),
    ])
    .await;
    let app = with_model(&model).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let (tid, widget) = thread_with_a_task(&ck).await;
    let streaming = ck.add_message(&tid, "think about it");
    let click = async {
        // The answer is under way: its model call has arrived and stalls.
        model.arrivals(3).await;
        let answer = ck
            .request(
                "threads.sync_custom_action",
                click(&widget, &tid, "task.complete", json!(1)),
            )
            .await;
        gate.open();
        answer
    };
    let (streamed, clicked) = tokio::join!(streaming, click);
    assert_eq!(
        clicked.ok()["updated_item"]["copy_text"],
        "Task added\n[x] 1. buy milk"
    );
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
}
