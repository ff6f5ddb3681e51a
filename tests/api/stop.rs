//! The stop button: a ChatKit client that closes the stream mid-answer stops the model at
//! once, and what it said so far is the answer, marked stopped.

use serde_json::{json, Value};

use crate::support::{
    chatkit::input,
    model::{call, chunk, use_model, FakeModel, Frame, Script},
    spawn_app_with,
    wait::{eventually, Gate},
    TestApp,
};

/// An answer that says `said`, then waits on `gate` before finishing (never, unless
/// the test opens it).
fn stalls_after(said: &str, gate: &Gate) -> Script {
    Script::Sse(vec![
        Frame::Chunk(chunk(json!({"role": "assistant", "content": ""}), None)),
        Frame::Chunk(chunk(json!({"content": said}), None)),
        Frame::Stall(gate.clone()),
        Frame::Chunk(chunk(json!({"content": "and the rest."}), None)),
        Frame::Chunk(chunk(json!({}), Some("stop"))),
        Frame::Done,
    ])
}

/// Sends a ChatKit turn over a connection of its own and closes it once `said` has been
/// streamed, as a browser does when the stop button aborts the request; returns what was
/// read.
async fn hang_up_after(app: &TestApp, token: &str, body: Value, said: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let head = format!(
        "POST /chatkit HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut read = String::new();
    let mut buf = [0_u8; 8192];
    while !read.contains(&format!("\"delta\":\"{said}\"")) {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended early: {read}");
        read.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    drop(socket);
    read
}

fn thread_of(read: &str) -> String {
    let created: Value = serde_json::from_str(
        read.lines()
            .find_map(|l| {
                l.strip_prefix("data: ")
                    .filter(|d| d.contains("thread.created"))
            })
            .unwrap(),
    )
    .unwrap();
    created["thread"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn closing_the_stream_stops_the_model_and_keeps_what_it_said() {
    let gate = Gate::new();
    let model = FakeModel::start(vec![stalls_after("Let me think", &gate)]).await;
    let app = spawn_app_with(|s| use_model(s, &model)).await;
    let token = app.login("alice").await;
    let create = json!({"type": "threads.create", "params": {"input": input("plan my day")}});
    let read = hang_up_after(&app, &token, create, "Let me think").await;
    assert!(read.contains("\"allow_cancel\":true"), "{read}");
    let tid = thread_of(&read);
    // What was said is the answer, stopped; the turn itself is complete.
    let messages = eventually("the stopped answer to be recorded", || {
        let (app, token, tid) = (&app, &token, &tid);
        async move {
            let messages = app.all_messages(token, tid).await;
            (messages.len() == 2).then_some(messages)
        }
    })
    .await;
    assert_eq!(messages[0]["status"], "completed");
    assert_eq!(messages[1]["content"], "Let me think");
    assert_eq!(messages[1]["status"], "cancelled");
    // The provider's stream is dropped although it would have gone on.
    model.all_closed().await;
    assert_eq!(model.open_streams(), 0);
    let ck = app.chatkit(&token);
    let items = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let items = items.ok()["data"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[1]["content"][0]["text"], "Let me think");
    // The model hears of the stop on the next turn; no client ever does.
    model.push(crate::support::model::text(&["Sure."]));
    let next = ck.add_message(&tid, "go on").await;
    assert_eq!(next.status, 200, "{}", next.raw);
    let requests = model.requests();
    let messages = requests.last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        messages.iter().any(|m| m["role"] == "system"
            && m["content"]
                .as_str()
                .unwrap()
                .contains("stopped the previous answer")),
        "{messages:?}"
    );
    assert!(!ck
        .request("items.list", json!({"thread_id": tid, "limit": 100}))
        .await
        .raw
        .contains("stopped the previous answer"));
    gate.open();
}

#[tokio::test]
async fn tools_that_ran_before_the_stop_stay_recorded_and_the_turn_can_be_retried() {
    let gate = Gate::new();
    let model = FakeModel::start(vec![
        call("add_task", json!({"title": "buy milk"})),
        stalls_after("Added it, and", &gate),
    ])
    .await;
    let app = spawn_app_with(|s| use_model(s, &model)).await;
    let token = app.login("alice").await;
    let create =
        json!({"type": "threads.create", "params": {"input": input("add a task to buy milk")}});
    let read = hang_up_after(&app, &token, create, "Added it, and").await;
    let tid = thread_of(&read);
    model.all_closed().await;
    let ck = app.chatkit(&token);
    let items = eventually("the stopped turn to be recorded", || {
        let ck = &ck;
        let tid = &tid;
        async move {
            let items = ck
                .request("items.list", json!({"thread_id": tid, "order": "asc"}))
                .await;
            let data = items.json["data"].as_array().cloned().unwrap_or_default();
            (data.len() == 4).then_some(data)
        }
    })
    .await;
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["user_message", "workflow", "assistant_message", "widget"]
    );
    assert_eq!(items[3]["copy_text"], "Task added\n[ ] 1. buy milk");
    // Retried: a new answer to the same message, the stopped one gone.
    model.push(crate::support::model::text(&[
        "Done: buy milk is on your list.",
    ]));
    let retry = ck.retry(&tid, &items[0]["id"]).await;
    assert_eq!(retry.status, 200, "{}", retry.raw);
    let messages = app.all_messages(&token, &tid).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["content"], "Done: buy milk is on your list.");
    assert_eq!(messages[1]["status"], "completed");
    gate.open();
}
