//! `POST /chatkit`: the ChatKit protocol, as the ChatKit React widget speaks it in its
//! custom-backend mode (see docs/chatkit-protocol.md). Turns, lists, paging, retry, feedback,
//! errors before streaming, isolation, and the same rows seen through REST.

use std::sync::Arc;

use async_trait::async_trait;
use chatkit_gateway::agent::{
    Agent, AgentAnswer, AgentError, AgentEvent, AgentRequest, EventSink, TaskTools,
};
use serde_json::{json, Value};

use crate::support::{
    chatkit::input,
    model::FakeModel,
    spawn_app, spawn_app_with, spawn_app_with_agent, spawn_on,
    wait::{eventually, Gate},
    TestDb,
};

/// Every item a stream finished (`thread.item.done`, or replaced), in first-shown order.
fn finished_items(events: &[Value]) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut items: std::collections::HashMap<String, Value> = Default::default();
    for e in events {
        match e["type"].as_str().unwrap() {
            "thread.item.added" | "thread.item.done" | "thread.item.replaced" => {
                let id = e["item"]["id"].as_str().unwrap().to_owned();
                if !order.contains(&id) {
                    order.push(id.clone());
                }
                if e["type"] != "thread.item.added" {
                    items.insert(id, e["item"].clone());
                }
            }
            "thread.item.removed" => {
                let id = e["item_id"].as_str().unwrap();
                order.retain(|o| o != id);
                items.remove(id);
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .filter_map(|id| items.remove(&id))
        .collect()
}

/// Asserts no `null` anywhere and that every `created_at` is an RFC 3339 string.
fn assert_clean(v: &Value) {
    match v {
        Value::Null => panic!("null on the wire"),
        Value::Object(m) => {
            for (k, x) in m {
                if k == "created_at" {
                    let s = x.as_str().expect("created_at is a string");
                    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339");
                }
                assert_clean(x);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_clean),
        _ => {}
    }
}

#[tokio::test]
async fn a_new_thread_streams_its_turn_in_protocol_order_and_reloads_identically() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("add a task to buy milk").await;
    a.events.iter().for_each(assert_clean);
    let types = a.types();
    assert_eq!(
        types[..3],
        ["thread.created", "thread.item.done", "stream_options"]
    );
    assert_eq!(a.events[1]["item"]["type"], "user_message");
    assert_eq!(
        a.events[1]["item"]["content"][0]["text"],
        "add a task to buy milk"
    );
    assert_eq!(a.events[2]["stream_options"]["allow_cancel"], true);
    // The workflow is added and done before the answer starts.
    let wf_added = types
        .iter()
        .position(|t| *t == "thread.item.added")
        .unwrap();
    assert_eq!(a.events[wf_added]["item"]["type"], "workflow");
    let wf_id = a.events[wf_added]["item"]["id"].clone();
    let task = a
        .events
        .iter()
        .find(|e| e["update"]["type"] == "workflow.task.added")
        .unwrap();
    assert_eq!(task["item_id"], wf_id);
    assert_eq!(task["update"]["task"]["title"], "Added task 1: buy milk");
    let effect = a
        .events
        .iter()
        .find(|e| e["type"] == "client_effect")
        .unwrap();
    assert_eq!(effect["name"], "tasks.changed");
    assert_eq!(effect["data"], json!({"task_ids": [1], "change": "added"}));
    // The tool's progress shows before its call is reported.
    let progress = types.iter().position(|t| *t == "progress_update").unwrap();
    assert!(progress < wf_added, "{types:?}");
    assert_eq!(a.events[progress]["text"], "Adding a task…");
    let wf_done = a
        .events
        .iter()
        .position(|e| e["type"] == "thread.item.done" && e["item"]["id"] == wf_id)
        .unwrap();
    let msg_added = a
        .events
        .iter()
        .position(|e| e["type"] == "thread.item.added" && e["item"]["type"] == "assistant_message")
        .unwrap();
    assert!(wf_done < msg_added);
    let msg_id = a.events[msg_added]["item"]["id"].clone();
    // The assistant message: added, part added, deltas, part done, done; one id throughout.
    let updates: Vec<&str> = a.events[msg_added + 1..]
        .iter()
        .take_while(|e| e["type"] == "thread.item.updated")
        .map(|e| {
            assert_eq!(e["item_id"], msg_id);
            e["update"]["type"].as_str().unwrap()
        })
        .collect();
    assert_eq!(updates[0], "assistant_message.content_part.added");
    assert_eq!(
        updates.last().unwrap(),
        &"assistant_message.content_part.done"
    );
    assert!(updates[1..updates.len() - 1]
        .iter()
        .all(|u| *u == "assistant_message.content_part.text_delta"));
    let deltas: String = a
        .events
        .iter()
        .filter(|e| e["update"]["type"] == "assistant_message.content_part.text_delta")
        .map(|e| e["update"]["delta"].as_str().unwrap())
        .collect();
    let msg_done = a
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["id"] == msg_id)
        .unwrap();
    assert_eq!(msg_done["item"]["content"][0]["text"], deltas);
    assert_eq!(deltas, "Added task 1: buy milk.");
    // The task the turn added, as a widget after the answer's text.
    let last = a.events.last().unwrap();
    assert_eq!(last["type"], "thread.item.done");
    assert_eq!(last["item"]["type"], "widget");
    assert_eq!(last["item"]["widget"]["type"], "Card");
    assert_eq!(last["item"]["copy_text"], "Task added\n[ ] 1. buy milk");

    // A reload shows exactly what the stream showed, in the same order.
    let tid = a.thread_id();
    let shown = finished_items(&a.events);
    let thread = ck
        .request("threads.get_by_id", json!({"thread_id": tid}))
        .await;
    let thread = thread.ok();
    assert_clean(thread);
    assert_eq!(thread["items"]["data"], json!(shown));
    assert_eq!(thread["items"]["has_more"], false);
    assert_eq!(thread["title"], "add a task to buy milk");
    assert_eq!(thread["metadata"], json!({}));
    assert_eq!(thread["status"], json!({"type": "active"}));
    // The thread the stream announced (built, not read back) is the one recorded.
    let announced = &a.events[0]["thread"];
    for field in ["id", "title", "created_at", "status", "metadata"] {
        assert_eq!(announced[field], thread[field], "thread.created {field}");
    }
}

#[tokio::test]
async fn rest_and_chatkit_read_the_same_rows() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    // A REST turn shows in ChatKit, with its workflow.
    let rest = app.send(&token, None, "add a task to call mom").await.ok();
    let tid = rest["thread_id"].as_str().unwrap();
    let items = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let data = items.ok()["data"].as_array().unwrap().clone();
    let kinds: Vec<&str> = data.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["user_message", "workflow", "assistant_message", "widget"]
    );
    assert_eq!(data[0]["id"], rest["message_id"]);
    assert_eq!(data[2]["id"], rest["response_id"]);
    assert_eq!(
        data[1]["workflow"]["tasks"][0]["title"],
        "Added task 1: call mom"
    );
    // A ChatKit turn shows in REST, tool calls included.
    let a = ck.add_message(tid, "list my tasks").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.types()[0], "thread.item.done");
    let messages = app.all_messages(&token, tid).await;
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["content"], "list my tasks");
    assert_eq!(messages[3]["status"], "completed");
    let answer_id = a
        .events
        .iter()
        .rev()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message")
        .unwrap()["item"]["id"]
        .clone();
    assert_eq!(messages[3]["id"], answer_id);
    assert_eq!(app.thread(&token, tid).await["message_count"], 4);
    // Feedback given in ChatKit is visible in REST.
    ck.request(
        "items.feedback",
        json!({"thread_id": tid, "item_ids": [answer_id], "kind": "negative"}),
    )
    .await
    .ok();
    let messages = app.all_messages(&token, tid).await;
    assert_eq!(messages[3]["feedback"], "negative");
    assert!(messages[1]["feedback"].is_null());
}

/// The list reads only what it shows of a thread; what it shows is what the thread itself
/// shows, from the fields of a thread that was renamed and answered since it was created.
#[tokio::test]
async fn a_listed_thread_shows_what_the_thread_shows() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let first = ck.create("add a task to buy milk").await.thread_id();
    let second = ck.create("hello").await.thread_id();
    ck.request(
        "threads.update",
        json!({"thread_id": first, "title": "Groceries"}),
    )
    .await
    .ok();
    ck.add_message(&first, "list my tasks").await;
    let list = ck.request("threads.list", json!({"order": "asc"})).await;
    let listed = list.ok()["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    for (shown, tid) in listed.iter().zip([&first, &second]) {
        let thread = ck
            .request("threads.get_by_id", json!({"thread_id": tid}))
            .await;
        let thread = thread.ok();
        for field in ["id", "title", "created_at", "status", "metadata"] {
            assert_eq!(shown[field], thread[field], "{field} of {tid}");
        }
        assert_eq!(shown["items"], json!({"data": [], "has_more": false}));
    }
    assert_eq!(listed[0]["title"], "Groceries");
    assert_ne!(listed[0]["created_at"], listed[1]["created_at"]);
}

#[tokio::test]
async fn lists_page_by_element_id_in_either_order() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(app.create_thread(&token, &format!("t{i}")).await["id"].clone());
    }
    // Default: 20 newest first; `after` is the last element's id.
    let page = ck.request("threads.list", json!({})).await;
    let page = page.ok();
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["id"], ids[22]);
    assert_eq!(page["after"], page["data"][19]["id"]);
    assert_eq!(
        page["data"][0]["items"],
        json!({"data": [], "has_more": false})
    );
    let rest = ck
        .request(
            "threads.list",
            json!({"after": page["after"], "limit": null, "order": "desc"}),
        )
        .await;
    let rest = rest.ok();
    let tail: Vec<&Value> = rest["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(tail, [&ids[2], &ids[1], &ids[0]]);
    assert_eq!(rest["has_more"], false);
    assert!(rest.get("after").is_none(), "last page has no after");
    // Ascending, clamped limits.
    let asc = ck
        .request("threads.list", json!({"order": "asc", "limit": 2}))
        .await;
    let asc = asc.ok();
    assert_eq!(asc["data"][0]["id"], ids[0]);
    assert_eq!(asc["after"], ids[1]);
    let one = ck.request("threads.list", json!({"limit": -5})).await;
    assert_eq!(one.ok()["data"].as_array().unwrap().len(), 1);
    let many = ck.request("threads.list", json!({"limit": 1000})).await;
    assert_eq!(many.ok()["data"].as_array().unwrap().len(), 23);
    ck.request("threads.list", json!({"order": "sideways"}))
        .await
        .error(400, "request.malformed");
    ck.request("threads.list", json!({"after": "thr_nope"}))
        .await
        .error(400, "request.malformed");

    // Items page the same way.
    let a = ck.create("add a task to one").await;
    let tid = a.thread_id();
    for text in ["add a task to two", "list my tasks"] {
        ck.add_message(&tid, text).await;
    }
    let all = ck
        .request(
            "items.list",
            json!({"thread_id": tid, "order": "asc", "limit": 100}),
        )
        .await;
    let all = all.ok()["data"].as_array().unwrap().clone();
    // Three turns of a message, a workflow, an answer and a task widget each.
    assert_eq!(all.len(), 12);
    let (mut walked, mut after) = (Vec::new(), Value::Null);
    loop {
        let p = ck
            .request(
                "items.list",
                json!({"thread_id": tid, "order": "desc", "limit": 4, "after": after}),
            )
            .await;
        let p = p.ok().clone();
        walked.extend(p["data"].as_array().unwrap().iter().cloned());
        if p["has_more"] == false {
            break;
        }
        after = p["after"].clone();
    }
    walked.reverse();
    assert_eq!(walked, all);
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_stream_starts() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("hello").await;
    let tid = a.thread_id();
    let cases: Vec<(String, u16, &str)> = vec![
        ("not json".into(), 400, "request.malformed"),
        ("[]".into(), 400, "request.malformed"),
        (json!({"params": {}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.list"}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.list", "params": null}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.fly", "params": {}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.create", "params": {}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.create", "params": {"input": {"content": [{"type": "input_image"}], "attachments": [], "inference_options": {}}}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.create", "params": {"input": {"content": [], "attachments": ["atc_1"], "inference_options": {}}}}).to_string(), 404, "attachment.not_found"),
        (json!({"type": "threads.create", "params": {"input": {"content": [], "attachments": [7], "inference_options": {}}}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.add_user_message", "params": {"input": input("x")}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.add_user_message", "params": {"thread_id": "thr_00000000000000000000000000000000", "input": input("x")}}).to_string(), 404, "thread.not_found"),
        (json!({"type": "threads.get_by_id", "params": {"thread_id": 5}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.retry_after_item", "params": {"thread_id": tid, "item_id": "msg_nope"}}).to_string(), 404, "item.not_found"),
        (json!({"type": "items.feedback", "params": {"thread_id": tid, "item_ids": ["msg_nope"], "kind": "positive"}}).to_string(), 404, "item.not_found"),
        (json!({"type": "items.feedback", "params": {"thread_id": tid, "item_ids": [], "kind": "meh"}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.update", "params": {"thread_id": tid, "title": "  "}}).to_string(), 422, "request.invalid"),
        (json!({"type": "attachments.create", "params": {"name": "a", "size": -1, "mime_type": "text/plain"}}).to_string(), 400, "request.malformed"),
        (json!({"type": "attachments.delete", "params": {"attachment_id": "atc_nope"}}).to_string(), 404, "attachment.not_found"),
        (json!({"type": "input.transcribe", "params": {}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.custom_action", "params": {"thread_id": tid, "action": {"type": "x"}}}).to_string(), 400, "action.unknown"),
        (json!({"type": "threads.add_client_tool_output", "params": {"thread_id": tid, "result": {}}}).to_string(), 409, "item.not_pending"),
        (json!({"type": "threads.add_client_tool_output", "params": {"thread_id": tid}}).to_string(), 400, "request.malformed"),
        (json!({"type": "threads.add_structured_input", "params": {"thread_id": tid, "item_id": "msg_nope", "input": {}}}).to_string(), 404, "item.not_found"),
    ];
    for (body, status, code) in cases {
        let a = ck.send_raw(body.clone()).await;
        assert_eq!(a.status, status, "{body} -> {}", a.raw);
        assert_eq!(a.json["error"]["code"], code, "{body} -> {}", a.raw);
    }
    // No credential, or a bad one: 401 with the envelope and WWW-Authenticate.
    for token in [None, Some("nope")] {
        let mut req = app
            .client
            .post(format!("{}/chatkit", app.base))
            .body(json!({"type": "threads.create", "params": {"input": input("hi")}}).to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["code"].as_str().unwrap().starts_with("auth."));
    }
    // Two Authorization headers: which one counts must not be a guess.
    let two = app
        .client
        .post(format!("{}/chatkit", app.base))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", "Bearer other")
        .body(json!({"type": "threads.list", "params": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), 400);
    let body: Value = two.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request.malformed");
    // Unknown fields, explicit nulls and no Content-Type are all fine; nothing above
    // recorded anything.
    let ok = ck.send_raw(json!({"type": "threads.list", "params": {"limit": null, "after": null, "extra": 1}, "metadata": null, "x": true}).to_string(),
    )
    .await;
    assert_eq!(ok.ok()["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.thread(&token, &tid).await["message_count"], 2);
}

#[tokio::test]
async fn empty_or_overlong_messages_are_shown_inline_and_record_nothing() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let long = "x".repeat(app.settings.messages.max_chars + 1);
    for text in ["", "   ", long.as_str()] {
        let a = ck.create(text).await;
        assert_eq!(a.events.len(), 1, "{}", a.raw);
        assert_eq!(a.events[0]["type"], "error");
        assert_eq!(a.events[0]["code"], "custom");
        assert_eq!(a.events[0]["allow_retry"], false);
        assert!(!a.events[0]["message"].as_str().unwrap().is_empty());
    }
    let list = ck.request("threads.list", json!({})).await;
    assert_eq!(list.ok()["data"], json!([]));
}

#[tokio::test]
async fn another_users_threads_are_not_found_on_every_type() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let a = app
        .chatkit(&alice)
        .create("add a task to secret plan")
        .await;
    let tid = a.thread_id();
    let item = a.events[1]["item"]["id"].clone();
    let requests = [
        ("threads.get_by_id", json!({"thread_id": tid})),
        ("items.list", json!({"thread_id": tid})),
        // Paging after one of Alice's items: still her thread that is not found, not a
        // cursor that is.
        ("items.list", json!({"thread_id": tid, "after": item})),
        ("threads.update", json!({"thread_id": tid, "title": "mine"})),
        ("threads.delete", json!({"thread_id": tid})),
        (
            "items.feedback",
            json!({"thread_id": tid, "item_ids": [item], "kind": "positive"}),
        ),
        (
            "threads.add_user_message",
            json!({"thread_id": tid, "input": input("hi")}),
        ),
        (
            "threads.retry_after_item",
            json!({"thread_id": tid, "item_id": item}),
        ),
    ];
    for (kind, params) in requests {
        app.chatkit(&bob)
            .request(kind, params)
            .await
            .error(404, "thread.not_found");
    }
    let bobs = app.chatkit(&bob).request("threads.list", json!({})).await;
    assert_eq!(bobs.ok()["data"], json!([]));
    app.chatkit(&bob)
        .request("threads.list", json!({"after": tid}))
        .await
        .error(400, "request.malformed");
    // Alice's thread is untouched.
    let thread = app
        .chatkit(&alice)
        .request("threads.get_by_id", json!({"thread_id": tid}))
        .await;
    let thread = thread.ok();
    assert_eq!(thread["title"], "add a task to secret plan");
    // Her message, the workflow, the answer and the task widget.
    assert_eq!(thread["items"]["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn rename_delete_and_feedback() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("hello").await;
    let tid = a.thread_id();
    let renamed = ck
        .request(
            "threads.update",
            json!({"thread_id": tid, "title": " Groceries "}),
        )
        .await;
    let renamed = renamed.ok();
    assert_eq!(renamed["title"], "Groceries");
    assert_eq!(renamed["items"], json!({"data": [], "has_more": false}));
    assert_eq!(app.thread(&token, &tid).await["title"], "Groceries");
    // Feedback is all or nothing.
    let answer = a.events.last().unwrap()["item"]["id"].clone();
    ck.request(
        "items.feedback",
        json!({"thread_id": tid, "item_ids": [answer, "msg_nope"], "kind": "positive"}),
    )
    .await
    .error(404, "item.not_found");
    assert!(app.all_messages(&token, &tid).await[1]["feedback"].is_null());
    let fb = ck
        .request(
            "items.feedback",
            json!({"thread_id": tid, "item_ids": [answer, answer], "kind": "positive"}),
        )
        .await;
    assert_eq!(fb.ok(), &json!({}));
    assert_eq!(
        app.all_messages(&token, &tid).await[1]["feedback"],
        "positive"
    );
    let deleted = ck
        .request("threads.delete", json!({"thread_id": tid}))
        .await;
    assert_eq!(deleted.ok(), &json!({}));
    ck.request("threads.get_by_id", json!({"thread_id": tid}))
        .await
        .error(404, "thread.not_found");
    app.get(&format!("/api/chatkit/threads/{tid}"), &token)
        .await
        .assert_error(404, "thread.not_found");
}

#[tokio::test]
async fn retry_answers_the_message_again_and_removes_what_followed() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("add a task to water plants").await;
    let tid = a.thread_id();
    let first_user = a.events[1]["item"]["id"].clone();
    let b = ck.add_message(&tid, "list my tasks").await;
    assert_eq!(b.status, 200);
    assert_eq!(app.thread(&token, &tid).await["message_count"], 4);
    // Retrying a message that is not a user message is refused before streaming.
    let answer = a
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message")
        .unwrap()["item"]["id"]
        .clone();
    ck.retry(&tid, &answer).await.error(404, "item.not_found");
    let r = ck.retry(&tid, &first_user).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.types()[0], "stream_options", "no user message echo");
    let new_items = finished_items(&r.events);
    let thread = ck
        .request("threads.get_by_id", json!({"thread_id": tid}))
        .await;
    let data = thread.ok()["items"]["data"].as_array().unwrap().clone();
    // The message, and the new answer: a workflow, the text and the task widget.
    assert_eq!(data.len(), 4, "{data:?}");
    assert_eq!(data[0]["id"], first_user);
    assert_eq!(data[1..], new_items[..]);
    assert_eq!(
        data[1]["workflow"]["tasks"][0]["title"],
        "Added task 2: water plants"
    );
    let messages = app.all_messages(&token, &tid).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(app.thread(&token, &tid).await["message_count"], 2);
}

/// An agent that runs a tool, says a little, then fails; when it has a gate, it waits there
/// before failing (holding its turn open).
struct Stumbling {
    hold: Option<Gate>,
}

#[async_trait]
impl Agent for Stumbling {
    async fn respond(
        &self,
        _request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let args = json!({"title": "half done"});
        let result = tools.call("add_task", &args).await.unwrap();
        events.emit(AgentEvent::ToolCall(
            chatkit_gateway::domain::ToolCallRecord {
                tool: "add_task".into(),
                args,
                result,
            },
        ));
        events.emit(AgentEvent::TextDelta("Working on".into()));
        if let Some(gate) = &self.hold {
            gate.pass().await;
        }
        Err(AgentError::Unavailable("scripted failure".into()))
    }
}

#[tokio::test]
async fn a_failing_agent_removes_what_it_showed_and_keeps_the_message() {
    let agent = Arc::new(Stumbling { hold: None });
    let app = spawn_app_with_agent(agent, |_| {}).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("do something").await;
    let tid = a.thread_id();
    let removed: Vec<&Value> = a
        .events
        .iter()
        .filter(|e| e["type"] == "thread.item.removed")
        .map(|e| &e["item_id"])
        .collect();
    let added: Vec<&Value> = a
        .events
        .iter()
        .filter(|e| e["type"] == "thread.item.added")
        .map(|e| &e["item"]["id"])
        .collect();
    assert_eq!(added.len(), 2);
    assert_eq!(removed, added.into_iter().rev().collect::<Vec<_>>());
    let last = a.events.last().unwrap();
    assert_eq!(last["type"], "error");
    assert_eq!(last["code"], "stream.error");
    assert_eq!(last["allow_retry"], true);
    // What remains is what the stream left standing: the user's message, failed.
    let thread = ck
        .request("threads.get_by_id", json!({"thread_id": tid}))
        .await;
    let data = thread.ok()["items"]["data"].clone();
    assert_eq!(data, json!(finished_items(&a.events)));
    assert_eq!(data.as_array().unwrap().len(), 1);
    let messages = app.all_messages(&token, &tid).await;
    assert_eq!(messages[0]["status"], "failed");
}

#[tokio::test]
async fn a_retry_while_the_turn_runs_is_a_conflict() {
    let hold = Gate::new();
    let agent = Arc::new(Stumbling {
        hold: Some(hold.clone()),
    });
    let app = spawn_app_with_agent(agent, |_| {}).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let thread = app.create_thread(&token, "slow").await;
    let tid = thread["id"].as_str().unwrap().to_owned();
    let (running, ()) = tokio::join!(ck.add_message(&tid, "wait"), async {
        // The agent is at work on the turn, and stays so until the gate opens.
        hold.arrivals(1).await;
        let items = ck.request("items.list", json!({"thread_id": tid})).await;
        let user = items.ok()["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "user_message")
            .expect("the message is recorded while the agent runs")["id"]
            .clone();
        ck.retry(&tid, &user).await.error(409, "turn.in_progress");
        hold.open();
    });
    assert!(running.raw.contains("\"stream.error\""), "{}", running.raw);
}

#[tokio::test]
async fn a_model_api_that_fails_ends_the_stream_with_a_retryable_error() {
    // No answer scripted: every completion is answered HTTP 500.
    let model = FakeModel::start(vec![]).await;
    let app = spawn_app_with(|s| {
        s.agent.provider = chatkit_gateway::config::AgentProvider::OpenAi;
        s.agent.openai.base_url = model.base.clone();
        s.agent.openai.retry_base_ms = 10;
    })
    .await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let a = ck.create("hello there").await;
    assert_eq!(
        a.types(),
        [
            "thread.created",
            "thread.item.done",
            "stream_options",
            "error"
        ]
    );
    assert_eq!(a.events[3]["allow_retry"], true);
    assert!(model.requests().len() >= 2, "retried");
    let tid = a.thread_id();
    let messages = app.all_messages(&token, &tid).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "hello there");
    assert_eq!(messages[0]["status"], "failed");
}

/// An agent that starts its answer, waits at its gate, then finishes it.
struct Slow {
    hold: Gate,
}

#[async_trait]
impl Agent for Slow {
    async fn respond(
        &self,
        _request: AgentRequest<'_>,
        _tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        events.emit(AgentEvent::TextDelta("thinking… ".into()));
        self.hold.pass().await;
        events.emit(AgentEvent::TextDelta("done".into()));
        Ok(AgentAnswer {
            text: "thinking… done".into(),
            ..AgentAnswer::default()
        })
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_turn_still_gets_the_turn_recorded() {
    let hold = Gate::new();
    let app = spawn_app_with_agent(Arc::new(Slow { hold: hold.clone() }), |_| {}).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let thread = app.create_thread(&token, "hang up").await;
    let tid = thread["id"].as_str().unwrap().to_owned();
    // The client hangs up while the agent is mid-answer (the request is dropped).
    tokio::select! {
        _ = ck.add_message(&tid, "hello") => panic!("the turn ended with the agent held"),
        () = hold.arrivals(1) => {}
    }
    hold.open();
    let answer = eventually("the turn recorded after the client left", || async {
        let items = ck
            .request("items.list", json!({"thread_id": tid, "order": "asc"}))
            .await;
        let data = items.ok()["data"].clone();
        (data.as_array().unwrap().len() == 2).then(|| data[1].clone())
    })
    .await;
    assert_eq!(answer["type"], "assistant_message", "the turn completed");
    assert_eq!(answer["content"][0]["text"], "thinking… done");
}

/// PostgreSQL only: item payloads are kept as `json`, the text as written, which the
/// database sends back as is; `jsonb` rebuilt every payload's text on every read. The
/// items a turn recorded (a message, its workflow, its task widget) read back through
/// ChatKit and REST.
#[tokio::test]
#[ignore = "PostgreSQL only: needs TEST_DATABASE_URL=postgres://…; scripts/test.sh runs it in its PostgreSQL pass"]
async fn postgres_only_item_payloads_are_stored_as_json_text() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDb::new().await;
    assert!(db.url.starts_with("postgres"), "set TEST_DATABASE_URL");
    let url = db.url.clone();
    let app = spawn_on(db).await;
    let t = app.login("alice").await;
    let turn = app.send(&t, None, "add a task to buy milk").await.ok();
    let thread = turn["thread_id"].as_str().unwrap().to_owned();

    let conn = sea_orm::Database::connect(&url).await.unwrap();
    let types: Vec<String> = conn
        .query_all(Statement::from_string(
            conn.get_database_backend(),
            "SELECT DISTINCT pg_typeof(payload)::text AS t FROM thread_items \
             WHERE payload IS NOT NULL"
                .to_owned(),
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "t").unwrap())
        .collect();
    assert_eq!(types, ["json"], "every stored payload is json");
    conn.close().await.unwrap();

    let items = app
        .chatkit(&t)
        .request("items.list", json!({"thread_id": thread, "order": "asc"}))
        .await
        .ok()
        .clone();
    let kinds: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["user_message", "workflow", "assistant_message", "widget"]
    );
    let all = app
        .get(&format!("/api/chatkit/threads/{thread}?include=all"), &t)
        .await
        .ok();
    let widget = &all["messages"][3];
    assert_eq!(widget["type"], "widget");
    assert_eq!(widget["tasks"]["tasks"][0]["title"], "buy milk");
}

#[tokio::test]
async fn a_database_from_before_chatkit_migrates_without_losing_data() {
    use migration::MigratorTrait;
    use sea_orm::{
        sea_query::{Alias, Query},
        ConnectionTrait,
    };
    let db = TestDb::new().await;
    // Today's schema before this release: only the first migration.
    let conn = if db.url.starts_with("sqlite") {
        sea_orm::Database::connect(format!("{}?mode=rwc", db.url)).await
    } else {
        sea_orm::Database::connect(&db.url).await
    }
    .unwrap();
    migration::Migrator::up(&conn, Some(1)).await.unwrap();
    let at = chrono::Utc::now() - chrono::Duration::minutes(5);
    let later = at + chrono::Duration::seconds(1);
    let (tid, user_msg, call, answer) = (
        "thr_0000000000000000000000000000000a",
        "msg_0000000000000000000000000000000b",
        "tc_0000000000000000000000000000000c",
        "msg_0000000000000000000000000000000d",
    );
    let thread = Query::insert()
        .into_table(Alias::new("threads"))
        .columns(
            [
                "id",
                "user_id",
                "title",
                "metadata",
                "status",
                "message_count",
                "created_at",
                "updated_at",
            ]
            .map(Alias::new),
        )
        .values_panic([
            tid.into(),
            "alice".into(),
            "Old thread".into(),
            json!({"k": "v"}).into(),
            "active".into(),
            2.into(),
            at.into(),
            later.into(),
        ])
        .to_owned();
    let item_columns = [
        "id",
        "thread_id",
        "user_id",
        "item_type",
        "role",
        "content",
        "payload",
        "client_key",
        "reply_to",
        "status",
        "created_at",
        "updated_at",
    ]
    .map(Alias::new);
    let call_payload = json!({"tool": "add_task", "args": {"title": "old"}, "result": {"task": {"task_id": 1, "title": "old"}}});
    let items = Query::insert()
        .into_table(Alias::new("thread_items"))
        .columns(item_columns)
        .values_panic([
            user_msg.into(),
            tid.into(),
            "alice".into(),
            "user_message".into(),
            "user".into(),
            "add a task to old".into(),
            Option::<Value>::None.into(),
            Some("key-1").into(),
            Option::<String>::None.into(),
            "completed".into(),
            at.into(),
            later.into(),
        ])
        .values_panic([
            call.into(),
            tid.into(),
            "alice".into(),
            "tool_call".into(),
            "tool".into(),
            "add_task".into(),
            Some(call_payload).into(),
            Option::<String>::None.into(),
            Some(user_msg).into(),
            "completed".into(),
            later.into(),
            later.into(),
        ])
        .values_panic([
            answer.into(),
            tid.into(),
            "alice".into(),
            "assistant_message".into(),
            "assistant".into(),
            "Added task 1: old.".into(),
            Option::<Value>::None.into(),
            Option::<String>::None.into(),
            Some(user_msg).into(),
            "completed".into(),
            later.into(),
            later.into(),
        ])
        .to_owned();
    for stmt in [thread, items] {
        conn.execute(conn.get_database_backend().build(&stmt))
            .await
            .unwrap();
    }
    conn.close().await.unwrap();

    // The new release migrates forward at start-up; everything is still there.
    let app = spawn_on(db).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    let messages = app.all_messages(&token, tid).await;
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [user_msg, answer]);
    assert!(messages[1]["feedback"].is_null());
    let thread = app.thread(&token, tid).await;
    assert_eq!(thread["metadata"], json!({"k": "v"}));
    // The old answer replays with its tool call (recorded one row per call back then).
    let replay = app
        .send_keyed(&token, Some(tid), "add a task to old", "key-1")
        .await
        .ok();
    assert_eq!(replay["response_id"], answer);
    assert_eq!(replay["tool_calls"][0]["result"]["task"]["task_id"], 1);
    // ChatKit shows the two messages (the old per-call rows have no workflow item).
    let items = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let kinds: Vec<Value> = items.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    assert_eq!(kinds, [json!(user_msg), json!(answer)]);
}
