//! Answers that hand over to the client and go on: a client tool the page runs
//! (`threads.add_client_tool_output`), a question the user answers
//! (`threads.add_structured_input`), and @-mentioned tasks.

use serde_json::{json, Value};

use crate::support::{
    chatkit::{Answer, ChatKit},
    model::{call, text, use_model, FakeModel},
    spawn_app, spawn_app_with, TestApp,
};

/// The gateway with the OpenAI-compatible agent and the page's `highlight_tasks` tool.
async fn with_client_tool(model: &FakeModel) -> TestApp {
    spawn_app_with(|s| {
        use_model(s, model);
        s.chatkit.client_tools = vec![chatkit_gateway::config::ClientToolSettings {
            name: "highlight_tasks".into(),
            description: "Highlight tasks in the page's task panel".into(),
            parameters: json!({"type": "object",
                "properties": {"task_ids": {"type": "array", "items": {"type": "integer"}}},
                "required": ["task_ids"]}),
        }];
    })
    .await
}

fn offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn last_done(answer: &Answer) -> Value {
    let last = answer.events.last().unwrap();
    assert_eq!(last["type"], "thread.item.done", "{}", answer.raw);
    last["item"].clone()
}

#[tokio::test]
async fn a_client_tool_call_pauses_the_answer_until_the_page_sends_its_output() {
    let model = FakeModel::start(vec![
        call("highlight_tasks", json!({"task_ids": [1]})),
        text(&["Task 1 is highlighted."]),
    ])
    .await;
    let app = with_client_tool(&model).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("show me task 1").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    // Offered beside the task tools, with the agent's own question tool.
    let first = &model.requests()[0];
    let tools = offered(first);
    assert!(tools.contains(&"highlight_tasks".to_owned()), "{tools:?}");
    assert!(tools.contains(&"add_task".to_owned()), "{tools:?}");
    assert!(tools.contains(&"ask_user".to_owned()), "{tools:?}");
    // The turn ends on the pending call; no empty message is shown before it.
    let pending = last_done(&a);
    assert_eq!(pending["type"], "client_tool_call");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["name"], "highlight_tasks");
    assert_eq!(pending["arguments"], json!({"task_ids": [1]}));
    assert_eq!(pending["call_id"], "call_highlight_tasks");
    assert!(!a
        .events
        .iter()
        .any(|e| e["item"]["type"] == "assistant_message"));
    let tid = a.thread_id();

    let out = ck
        .request(
            "threads.add_client_tool_output",
            json!({"thread_id": tid, "result": {"highlighted": 1}}),
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.raw);
    assert_eq!(out.types()[..2], ["stream_options", "thread.item.replaced"]);
    let replaced = &out.events[1]["item"];
    assert_eq!(replaced["id"], pending["id"]);
    assert_eq!(replaced["status"], "completed");
    assert_eq!(replaced["output"], json!({"highlighted": 1}));
    assert_eq!(
        last_done(&out)["content"][0]["text"],
        "Task 1 is highlighted."
    );
    // The model went on from its call and the page's output.
    let second = &model.requests()[1];
    let messages = second["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(
        messages[n - 2]["tool_calls"][0]["id"],
        "call_highlight_tasks"
    );
    assert_eq!(messages[n - 1]["role"], "tool");
    assert_eq!(messages[n - 1]["tool_call_id"], "call_highlight_tasks");
    assert_eq!(messages[n - 1]["content"], "{\"highlighted\":1}");
    // A reload shows the call completed, then the answer.
    let items = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let kinds: Vec<String> = items.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["user_message", "client_tool_call", "assistant_message"]
    );
}

#[tokio::test]
async fn the_tool_picker_can_force_a_client_tool() {
    let model = FakeModel::start(vec![
        call("highlight_tasks", json!({"task_ids": []})),
        text(&["Cleared."]),
    ])
    .await;
    let app = with_client_tool(&model).await;
    let token = app.login("alice").await;
    app.chatkit(&token)
        .request(
            "threads.create",
            json!({"input": {"content": [{"type": "input_text", "text": "clear"}],
                   "attachments": [],
                   "inference_options": {"tool_choice": {"id": "highlight_tasks"}}}}),
        )
        .await;
    assert_eq!(
        model.requests()[0]["tool_choice"],
        json!({"type": "function", "function": {"name": "highlight_tasks"}})
    );
}

#[tokio::test]
async fn an_output_with_no_pending_call_is_refused() {
    let model = FakeModel::start(vec![
        call("highlight_tasks", json!({"task_ids": [2]})),
        text(&["Done."]),
    ])
    .await;
    let app = with_client_tool(&model).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("highlight two").await;
    let tid = a.thread_id();
    let output = json!({"thread_id": tid, "result": {"highlighted": 1}});
    // Another user's thread is not found, and changes nothing.
    let bob = app.login("bob").await;
    app.chatkit(&bob)
        .request("threads.add_client_tool_output", output.clone())
        .await
        .error(404, "thread.not_found");
    let first = ck
        .request("threads.add_client_tool_output", output.clone())
        .await;
    assert_eq!(first.status, 200, "{}", first.raw);
    // Answered already: nothing waits any more.
    ck.request("threads.add_client_tool_output", output)
        .await
        .error(409, "item.not_pending");
    // A thread that never paused.
    let plain = app.login("carol").await;
    let other = app.chatkit(&plain);
    model.push(text(&["Hi."]));
    let b = other.create("hello").await;
    other
        .request(
            "threads.add_client_tool_output",
            json!({"thread_id": b.thread_id(), "result": {}}),
        )
        .await
        .error(409, "item.not_pending");
}

#[tokio::test]
async fn a_thread_has_at_most_one_pending_call() {
    let model = FakeModel::start(vec![
        call("highlight_tasks", json!({"task_ids": [1]})),
        call("highlight_tasks", json!({"task_ids": [2]})),
        text(&["Two it is."]),
    ])
    .await;
    let app = with_client_tool(&model).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("highlight one").await;
    let tid = a.thread_id();
    let second = ck.add_message(&tid, "no, highlight two").await;
    assert_eq!(last_done(&second)["arguments"], json!({"task_ids": [2]}));
    let calls: Vec<Value> = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await
        .ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "client_tool_call")
        .cloned()
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["arguments"], json!({"task_ids": [2]}));
    let out = ck
        .request(
            "threads.add_client_tool_output",
            json!({"thread_id": tid, "result": {"highlighted": 1}}),
        )
        .await;
    assert_eq!(last_done(&out)["content"][0]["text"], "Two it is.");
}

#[tokio::test]
async fn rest_turns_are_not_offered_client_tools() {
    let model = FakeModel::start(vec![text(&["Hello."])]).await;
    let app = with_client_tool(&model).await;
    let token = app.login("alice").await;
    app.send(&token, None, "hello").await.ok();
    let tools = offered(&model.requests()[0]);
    assert!(!tools.contains(&"highlight_tasks".to_owned()), "{tools:?}");
    assert!(!tools.contains(&"ask_user".to_owned()), "{tools:?}");
}

/// A thread with "buy milk" (1) and "buy bread" (2), both open.
async fn two_buys(ck: &ChatKit<'_>) -> String {
    let a = ck.create("add a task to buy milk").await;
    let tid = a.thread_id();
    ck.add_message(&tid, "add a task to buy bread").await;
    tid
}

fn open_tasks(widget_copy: &str) -> Vec<String> {
    widget_copy.lines().skip(1).map(str::to_owned).collect()
}

async fn tasks_now(ck: &ChatKit<'_>, tid: &str) -> Vec<String> {
    let listed = ck.add_message(tid, "list my tasks").await;
    open_tasks(last_done(&listed)["copy_text"].as_str().unwrap())
}

#[tokio::test]
async fn an_ambiguous_completion_asks_which_task_and_the_answer_completes_it() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let tid = two_buys(&ck).await;
    let asked = ck.add_message(&tid, "complete buy").await;
    assert_eq!(asked.status, 200, "{}", asked.raw);
    let question = last_done(&asked);
    assert_eq!(question["type"], "structured_input");
    assert_eq!(question["status"], "pending");
    let input = &question["inputs"][0];
    assert_eq!(input["type"], "multiple_choice");
    assert_eq!(input["multiple"], false);
    assert_eq!(
        input["options"],
        json!([{"value": "1. buy milk"}, {"value": "2. buy bread"}])
    );
    // The agent's note of what the answer is for stays on the server.
    assert!(question.get("context").is_none(), "{question}");
    // Nothing was done yet.
    assert!(!asked.events.iter().any(|e| e["type"] == "client_effect"));

    let answer = |values: Value, status: &str| {
        json!({"thread_id": tid, "item_id": question["id"],
               "input": {"status": status, "answers": {"task": {"values": values}}}})
    };
    // Answers that do not fit the question are refused, and change nothing.
    for bad in [
        answer(json!(["3. buy eggs"]), "answered"),
        answer(json!(["1. buy milk", "2. buy bread"]), "answered"),
        answer(json!("1. buy milk"), "answered"),
        json!({"thread_id": tid, "item_id": question["id"],
               "input": {"status": "answered", "answers": {"who": {"values": ["x"]}}}}),
        answer(json!(["1. buy milk"]), "maybe"),
    ] {
        ck.request("threads.add_structured_input", bad)
            .await
            .error(422, "request.invalid");
    }
    let done = ck
        .request(
            "threads.add_structured_input",
            answer(json!(["2. buy bread"]), "answered"),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.raw);
    assert_eq!(
        done.types()[..2],
        ["stream_options", "thread.item.replaced"]
    );
    let replaced = &done.events[1]["item"];
    assert_eq!(replaced["status"], "answered");
    assert_eq!(
        replaced["inputs"][0]["answer"],
        json!({"values": ["2. buy bread"], "skipped": false})
    );
    let message = done
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message")
        .unwrap();
    assert_eq!(
        message["item"]["content"][0]["text"],
        "Marked task 2 as done: buy bread."
    );
    assert_eq!(
        tasks_now(&ck, &tid).await,
        ["[ ] 1. buy milk", "[x] 2. buy bread"]
    );
    // Answered once: the question no longer waits.
    ck.request(
        "threads.add_structured_input",
        answer(json!(["1. buy milk"]), "answered"),
    )
    .await
    .error(409, "item.not_pending");
}

#[tokio::test]
async fn a_skipped_question_leaves_the_tasks_and_one_match_needs_no_question() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let tid = two_buys(&ck).await;
    let asked = ck.add_message(&tid, "complete buy").await;
    let question = last_done(&asked);
    let skipped = ck
        .request(
            "threads.add_structured_input",
            json!({"thread_id": tid, "item_id": question["id"],
                   "input": {"status": "skipped"}}),
        )
        .await;
    assert_eq!(skipped.status, 200, "{}", skipped.raw);
    assert_eq!(skipped.events[1]["item"]["status"], "skipped");
    assert_eq!(
        last_done(&skipped)["content"][0]["text"],
        "Okay, I left your tasks as they are."
    );
    assert_eq!(
        tasks_now(&ck, &tid).await,
        ["[ ] 1. buy milk", "[ ] 2. buy bread"]
    );
    // A REST client cannot answer a question: it is asked in the text instead.
    let rest = app.send(&token, Some(&tid), "complete buy").await.ok();
    let said = rest["response"].as_str().unwrap();
    assert!(
        said.contains("1. buy milk") && said.contains("2. buy bread"),
        "{rest}"
    );
    assert_eq!(rest["tool_calls"], json!([]));
    // One match: done at once.
    let one = ck.add_message(&tid, "mark buy milk as done").await;
    assert!(
        one.raw.contains("Marked task 1 as done: buy milk."),
        "{}",
        one.raw
    );
}

#[tokio::test]
async fn a_mentioned_task_is_the_one_acted_on() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let tid = two_buys(&ck).await;
    // "complete buy" alone is ambiguous; the @-mention names task 2.
    let tagged = ck
        .request(
            "threads.add_user_message",
            json!({"thread_id": tid, "input": {
                "content": [
                    {"type": "input_text", "text": "complete "},
                    {"type": "input_tag", "id": "task-2", "text": "buy", "data": {"task_id": 2},
                     "interactive": true},
                ],
                "attachments": [], "inference_options": {}}}),
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.raw);
    assert!(
        tagged.raw.contains("Marked task 2 as done: buy bread."),
        "{}",
        tagged.raw
    );

    // The OpenAI-compatible agent is told what the mention names.
    let model = FakeModel::start(vec![text(&["Ok."])]).await;
    let app = spawn_app_with(|s| use_model(s, &model)).await;
    let token = app.login("alice").await;
    app.chatkit(&token)
        .request(
            "threads.create",
            json!({"input": {
                "content": [
                    {"type": "input_text", "text": "what about "},
                    // ChatKit's entities carry string data.
                    {"type": "input_tag", "id": "t7", "text": "the report", "data": {"task_id": "7"}},
                ],
                "attachments": [], "inference_options": {}}}),
        )
        .await;
    let user = model.requests()[0]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(user.contains("\"the report\" is task 7"), "{user}");
}

#[tokio::test]
async fn the_model_can_ask_the_user_to_choose() {
    let model = FakeModel::start(vec![
        call(
            "ask_user",
            json!({"question": "Which list?", "options": ["Home", "Work"]}),
        ),
        text(&["Work it is."]),
    ])
    .await;
    let app = spawn_app_with(|s| use_model(s, &model)).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("make a list").await;
    let question = last_done(&a);
    assert_eq!(question["type"], "structured_input");
    assert_eq!(
        question["inputs"][0]["options"],
        json!([{"value": "Home"}, {"value": "Work"}])
    );
    let done = ck
        .request(
            "threads.add_structured_input",
            json!({"thread_id": a.thread_id(), "item_id": question["id"],
                   "input": {"status": "answered", "answers": {"choice": {"values": ["Work"]}}}}),
        )
        .await;
    assert_eq!(last_done(&done)["content"][0]["text"], "Work it is.");
    let messages = model.requests()[1]["messages"].as_array().unwrap().clone();
    let tool = messages.last().unwrap();
    assert_eq!(tool["role"], "tool");
    let result: Value = serde_json::from_str(tool["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        result,
        json!({"status": "answered", "answers": {"choice": {"values": ["Work"], "skipped": false}}})
    );
}
