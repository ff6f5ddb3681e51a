//! What the ChatKit composer sends beside the text (the model and tool pickers), and the
//! thread titles the model writes.

use serde_json::{json, Value};

use crate::support::{
    chatkit::input,
    model::{call, text, use_model, FakeModel},
    spawn_app_with, TestApp,
};

/// `input` of a turn with the composer's `inference_options`.
fn picking(message: &str, options: Value) -> Value {
    json!({"content": [{"type": "input_text", "text": message}], "attachments": [],
           "inference_options": options})
}

async fn gateway(model: &FakeModel, models: &[&str]) -> TestApp {
    let models: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
    spawn_app_with(|s| {
        use_model(s, model);
        s.agent.openai.models = models;
    })
    .await
}

#[tokio::test]
async fn the_composer_picks_among_the_configured_models_only() {
    let model = FakeModel::start(vec![text(&["Hi."]), text(&["Hi again."])]).await;
    // As the variable gives them: "fake-large" among spaces.
    let app = gateway(&model, &[" fake-large "]).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let picked = ck
        .request(
            "threads.create",
            json!({"input": picking("hello", json!({"model": "fake-large"}))}),
        )
        .await;
    assert_eq!(picked.status, 200, "{}", picked.raw);
    assert_eq!(model.requests()[0]["model"], "fake-large");
    // The configured model is always offered; no pick means it.
    let tid = picked.thread_id();
    ck.request(
        "threads.add_user_message",
        json!({"thread_id": tid, "input": input("and now?")}),
    )
    .await;
    assert_eq!(model.requests()[1]["model"], "fake-model");
    // Anything else is refused before the answer starts, and nothing is recorded.
    for bad in ["gpt-9", "fake-large ", ""] {
        ck.request(
            "threads.add_user_message",
            json!({"thread_id": tid, "input": picking("again", json!({"model": bad}))}),
        )
        .await
        .error(400, "model.not_allowed");
    }
    assert_eq!(model.requests().len(), 2);
    assert_eq!(app.all_messages(&token, &tid).await.len(), 4);
}

#[tokio::test]
async fn the_tool_picker_forces_the_first_call_only() {
    let model = FakeModel::start(vec![
        call("list_tasks", json!({})),
        text(&["You have no tasks."]),
        text(&["Hello."]),
    ])
    .await;
    let app = gateway(&model, &[]).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let forced = ck
        .request(
            "threads.create",
            json!({"input": picking("what's on?", json!({"tool_choice": {"id": "list_tasks"}}))}),
        )
        .await;
    assert_eq!(forced.status, 200, "{}", forced.raw);
    let requests = model.requests();
    assert_eq!(
        requests[0]["tool_choice"],
        json!({"type": "function", "function": {"name": "list_tasks"}})
    );
    assert_eq!(requests[1]["tool_choice"], "auto");
    // A tool that is not offered leaves the choice to the model.
    // (The page's tools and ask_user can be forced too: see handoffs.rs.)
    ck.request(
        "threads.add_user_message",
        json!({"thread_id": forced.thread_id(),
               "input": picking("hi", json!({"tool_choice": {"id": "launch_rockets"}}))}),
    )
    .await;
    assert_eq!(model.requests()[2]["tool_choice"], "auto");
    // Not a tool name at all: refused.
    ck.request(
        "threads.create",
        json!({"input": picking("hi", json!({"tool_choice": {"id": "a b"}}))}),
    )
    .await
    .error(400, "request.malformed");
}

#[tokio::test]
async fn a_new_thread_gets_the_title_the_model_writes() {
    let model = FakeModel::start(vec![text(&["Sure."]), text(&["Done."])]).await;
    model.push_title(Ok("\"Weekend groceries.\""));
    let app = spawn_app_with(|s| {
        use_model(s, &model);
        s.agent.openai.titles = true;
    })
    .await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck
        .create("we need milk, eggs and bread for the weekend")
        .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    // Pushed in the same stream, last, as the SDK does.
    let last = a.events.last().unwrap();
    assert_eq!(last["type"], "thread.updated", "{}", a.raw);
    assert_eq!(last["thread"]["title"], "Weekend groceries");
    let tid = a.thread_id();
    assert_eq!(app.thread(&token, &tid).await["title"], "Weekend groceries");
    // One bounded, non-streamed call, with the message.
    let asked = model.title_requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["stream"], false);
    assert!(asked[0]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .contains("milk, eggs"));
    // Later turns do not ask again.
    let b = ck.add_message(&tid, "and butter").await;
    assert!(b.events.iter().all(|e| e["type"] != "thread.updated"));
    assert_eq!(model.title_requests().len(), 1);
}

#[tokio::test]
async fn a_failed_title_call_or_a_users_title_keeps_the_title() {
    let model = FakeModel::start(vec![text(&["Sure."])]).await;
    model.push_title(Err(500));
    let app = spawn_app_with(|s| {
        use_model(s, &model);
        s.agent.openai.titles = true;
    })
    .await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("plan the party").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert!(a.events.iter().all(|e| e["type"] != "thread.updated"));
    assert_eq!(
        app.thread(&token, &a.thread_id()).await["title"],
        "plan the party"
    );

    // A title the user set while the answer was written stays.
    let gate = crate::support::wait::Gate::new();
    model.push(crate::support::model::Script::Held(
        gate.clone(),
        Box::new(text(&["Ok."])),
    ));
    model.push_title(Ok("Something Else"));
    let token2 = token.clone();
    let app_ref = &app;
    let stream = async move {
        app_ref
            .chatkit(&token2)
            .request("threads.create", json!({"input": input("book the venue")}))
            .await
    };
    let rename = async {
        gate.arrivals(1).await;
        let threads = app.get("/api/chatkit/threads", &token).await;
        let id = threads.body["threads"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.patch(
            &format!("/api/chatkit/threads/{id}"),
            &token,
            json!({"title": "Venue (mine)"}),
        )
        .await;
        gate.open();
        id
    };
    let (answer, id) = tokio::join!(stream, rename);
    assert_eq!(answer.status, 200, "{}", answer.raw);
    assert_eq!(app.thread(&token, &id).await["title"], "Venue (mine)");
}
