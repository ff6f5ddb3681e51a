use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    chatkit::Answer,
    model::{call, text, use_model, FakeModel},
    spawn_app, spawn_app_with, TestApp,
};

#[tokio::test]
async fn thread_crud() {
    let app = spawn_app().await;
    let t = app.login("alice").await;

    let created = app.post("/api/chatkit/threads", &t, json!({})).await;
    assert_eq!(created.status, 201);
    let thread = created.body;
    let id = thread["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("thr_"));
    assert_eq!(thread["title"], "New chat");
    assert_eq!(thread["message_count"], 0);
    assert_eq!(thread["metadata"], json!({}));
    assert!(thread["created_at"].as_str().unwrap().ends_with('Z'));

    let named = app.create_thread(&t, "Groceries").await;
    assert_eq!(named["title"], "Groceries");

    let got = app.thread(&t, &id).await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["messages"], json!([]));
    assert_eq!(got["has_more"], false);

    let renamed = app
        .patch(
            &format!("/api/chatkit/threads/{id}"),
            &t,
            json!({"title": "  Trip plans ", "metadata": {"pinned": true}}),
        )
        .await
        .ok();
    assert_eq!(renamed["title"], "Trip plans");
    assert_eq!(renamed["metadata"], json!({"pinned": true}));
    assert!(renamed["updated_at"].as_str() >= thread["updated_at"].as_str());
    // What PATCH answered is what was stored.
    let reread = app.thread(&t, &id).await;
    assert_eq!(reread["title"], "Trip plans");
    assert_eq!(reread["metadata"], json!({"pinned": true}));
    assert_eq!(reread["updated_at"], renamed["updated_at"]);
    // An empty patch changes nothing.
    let same = app
        .patch(&format!("/api/chatkit/threads/{id}"), &t, json!({}))
        .await
        .ok();
    assert_eq!(same["title"], "Trip plans");

    let list = app.get("/api/chatkit/threads", &t).await.ok();
    let ids: Vec<_> = list["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(id), named["id"].clone()],
        "most recent activity first"
    );

    let deleted = app.delete(&format!("/api/chatkit/threads/{id}"), &t).await;
    assert_eq!(deleted.status, 204);
    app.get(&format!("/api/chatkit/threads/{id}"), &t)
        .await
        .assert_error(404, "thread.not_found");
    app.delete(&format!("/api/chatkit/threads/{id}"), &t)
        .await
        .assert_error(404, "thread.not_found");
}

#[tokio::test]
async fn deleting_a_thread_deletes_its_messages() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let sent = app
        .send(&t, None, "add a task to water the plants")
        .await
        .ok();
    let id = sent["thread_id"].as_str().unwrap();
    assert_eq!(app.all_messages(&t, id).await.len(), 2);
    assert_eq!(
        app.delete(&format!("/api/chatkit/threads/{id}"), &t)
            .await
            .status,
        204
    );
    app.get(&format!("/api/chatkit/threads/{id}/messages"), &t)
        .await
        .assert_error(404, "thread.not_found");
    // The task the agent created is the user's, not the thread's: it stays.
    let listed = app.send(&t, None, "list my tasks").await.ok();
    assert!(listed["response"]
        .as_str()
        .unwrap()
        .contains("water the plants"));
}

#[tokio::test]
async fn users_never_see_each_others_threads() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let thread = app.create_thread(&alice, "Alice's").await;
    let id = thread["id"].as_str().unwrap();
    app.send(&alice, Some(id), "add a task to buy milk")
        .await
        .ok();

    let path = format!("/api/chatkit/threads/{id}");
    app.get(&path, &bob)
        .await
        .assert_error(404, "thread.not_found");
    app.patch(&path, &bob, json!({"title": "mine now"}))
        .await
        .assert_error(404, "thread.not_found");
    app.delete(&path, &bob)
        .await
        .assert_error(404, "thread.not_found");
    app.get(&format!("{path}/messages"), &bob)
        .await
        .assert_error(404, "thread.not_found");
    app.send(&bob, Some(id), "hello")
        .await
        .assert_error(404, "thread.not_found");
    let bobs = app.get("/api/chatkit/threads", &bob).await.ok();
    assert_eq!(bobs["threads"], json!([]));
    // Bob's tasks are his own too.
    let listed = app.send(&bob, None, "list my tasks").await.ok();
    assert_eq!(
        listed["response"],
        "You have no tasks yet. Try \"add a task to buy milk\"."
    );

    // Alice's thread is untouched.
    let still = app.get(&path, &alice).await.ok();
    assert_eq!(still["title"], "Alice's");
    assert_eq!(still["message_count"], 2);
}

#[tokio::test]
async fn thread_list_pages_to_the_end() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let mut created = Vec::new();
    for i in 0..23 {
        created.push(
            app.create_thread(&t, &format!("thread {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Activity moves a thread to the front.
    app.send(&t, Some(&created[3]), "hello").await.ok();

    let (threads, pages) = app
        .walk("/api/chatkit/threads?limit=5", &t, "threads")
        .await;
    let seen: Vec<(String, String)> = threads
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap().to_owned();
            (field("id"), field("updated_at"))
        })
        .collect();
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert_eq!(
        seen.iter().map(|s| &s.0).collect::<HashSet<_>>().len(),
        23,
        "no duplicates"
    );
    assert_eq!(seen[0].0, created[3]);
    let mut expected: Vec<_> = created
        .iter()
        .rev()
        .filter(|id| **id != created[3])
        .cloned()
        .collect();
    expected.insert(0, created[3].clone());
    assert_eq!(
        seen.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        seen.windows(2).all(|w| w[0].1 >= w[1].1),
        "newest activity first"
    );
}

#[tokio::test]
async fn message_pages_walk_both_ways() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let first = app.send(&t, None, "hello").await.ok();
    let id = first["thread_id"].as_str().unwrap().to_owned();
    for i in 0..11 {
        app.send(&t, Some(&id), &format!("add a task to step {i}"))
            .await
            .ok();
    }
    let asc = app.all_messages(&t, &id).await;
    assert_eq!(asc.len(), 24);
    assert_eq!(asc[0]["content"], "hello");
    assert_eq!(asc[0]["role"], "user");
    assert_eq!(asc[1]["role"], "assistant");
    assert_eq!(asc[23]["role"], "assistant");
    assert!(asc[23]["content"].as_str().unwrap().contains("step 10"));

    let path = format!("/api/chatkit/threads/{id}/messages?limit=7");
    let (desc, pages) = app.walk(&path, &t, "data").await;
    assert_eq!(pages, 4);
    let mut reversed = asc.clone();
    reversed.reverse();
    assert_eq!(desc, reversed, "default order is newest first");

    // GET /threads/{id} embeds the latest page, oldest first.
    let detail = app
        .get(&format!("/api/chatkit/threads/{id}?limit=4"), &t)
        .await
        .ok();
    assert_eq!(
        detail["messages"].as_array().unwrap().as_slice(),
        &asc[20..]
    );
    assert_eq!(detail["has_more"], true);
    assert_eq!(detail["message_count"], 24);
}

#[tokio::test]
async fn bad_requests_get_stable_error_codes() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    app.post("/api/chatkit/threads", &t, json!({"title": "   "}))
        .await
        .assert_error(422, "request.invalid");
    app.post(
        "/api/chatkit/threads",
        &t,
        json!({"title": "x".repeat(201)}),
    )
    .await
    .assert_error(422, "request.invalid");
    app.post("/api/chatkit/threads", &t, json!({"metadata": [1, 2]}))
        .await
        .assert_error(422, "request.invalid");
    app.post("/api/chatkit/threads", &t, json!({"title": [5]}))
        .await
        .assert_error(422, "request.invalid");
    let raw = app
        .client
        .post(format!("{}/api/chatkit/threads", app.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request.malformed");

    for q in ["limit=0", "limit=101", "limit=-1", "after=bogus"] {
        app.get(&format!("/api/chatkit/threads?{q}"), &t)
            .await
            .assert_error(422, "request.invalid");
    }
    app.get("/api/chatkit/threads?limit=abc", &t)
        .await
        .assert_error(400, "request.malformed");
    let thread = app.create_thread(&t, "x").await;
    let id = thread["id"].as_str().unwrap();
    app.get(
        &format!("/api/chatkit/threads/{id}/messages?order=sideways"),
        &t,
    )
    .await
    .assert_error(422, "request.invalid");
    for bad in [
        "nope",
        "thr_123",
        "thr_0000000000000000000000000000000g",
        "%27%20OR%201%3D1",
    ] {
        app.get(&format!("/api/chatkit/threads/{bad}"), &t)
            .await
            .assert_error(404, "thread.not_found");
    }
    // A well-formed id that does not exist.
    app.get(
        "/api/chatkit/threads/thr_0190f0b0c0d0e0f0a0b0c0d0e0f0a0b0",
        &t,
    )
    .await
    .assert_error(404, "thread.not_found");

    // Missing token, unknown route, wrong method, too large a body.
    app.request(Method::GET, "/api/chatkit/threads", None, None, &[])
        .await
        .assert_error(401, "auth.missing_token");
    app.request(
        Method::GET,
        "/api/chatkit/threads",
        None,
        None,
        &[("authorization", "Basic abc")],
    )
    .await
    .assert_error(401, "auth.missing_token");
    app.get("/api/chatkit/nowhere", &t)
        .await
        .assert_error(404, "route.not_found");
    app.request(Method::PUT, "/api/chatkit/threads", Some(&t), None, &[])
        .await
        .assert_error(405, "route.method_not_allowed");
    let huge = json!({"title": "x", "metadata": {"blob": "y".repeat(300_000)}});
    app.post("/api/chatkit/threads", &t, huge)
        .await
        .assert_error(413, "request.too_large");
}

/// Found by Schemathesis on PostgreSQL: jsonb keeps 1.7976931348623157e308 as an exact
/// decimal and hands back 309 digits, which serde_json's fast float parsing rounded past
/// `f64::MAX` and refused: 500 on every later read of the thread. Every number the service
/// accepts now reads back as it was written, on both databases.
#[tokio::test]
async fn metadata_numbers_read_back_on_every_database() {
    let app = spawn_app().await;
    let t = app.login("numbers").await;
    let metadata = json!({
        "max": f64::MAX,
        "min": -f64::MAX,
        "tiny": f64::MIN_POSITIVE,
        "odd": -2.076_847_856_755_472_2e82,
        "int": 123_456_789_012_345_678_u64,
        "nested": [{"n": 1e300}],
    });
    let created = app
        .post("/api/chatkit/threads", &t, json!({ "metadata": metadata }))
        .await
        .ok();
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.thread(&t, id).await["metadata"], metadata);
    let list = app.get("/api/chatkit/threads", &t).await.ok();
    assert_eq!(list["threads"][0]["metadata"], metadata);
}

/// Whether `value` is what `schema` (of the document `spec`) describes: the subset of
/// OpenAPI 3.0 schemas the gateway's document uses (`$ref`, `allOf`, `oneOf`, `anyOf`,
/// `type`, `required`, `properties`, `items`, `enum`, `nullable`, `maxItems`, `date-time`).
/// `Err` says where and why not.
pub(crate) fn conforms(
    spec: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
) -> Result<(), String> {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.trim_start_matches("#/components/schemas/");
        return conforms(spec, &spec["components"]["schemas"][name], value, at);
    }
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        conforms(spec, part, value, at)?;
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|o| conforms(spec, o, value, at).is_ok())
            .count();
        if matching != 1 {
            return Err(format!("{at}: {matching} of oneOf match {value}"));
        }
    }
    if let Some(options) = schema["anyOf"].as_array() {
        if !options.iter().any(|o| conforms(spec, o, value, at).is_ok()) {
            return Err(format!("{at}: no anyOf matches {value}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    let fits = match schema["type"].as_str() {
        None | Some("") => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return Err(format!("{at}: unknown schema type {other}")),
    };
    if !fits {
        return Err(format!("{at}: {value} is not {}", schema["type"]));
    }
    if schema["format"] == "date-time" {
        chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
            .map_err(|e| format!("{at}: {value}: {e}"))?;
    }
    if let Value::Object(fields) = value {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !fields.contains_key(name) {
                return Err(format!("{at}: {name} missing from {value}"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, field) in fields {
                if let Some(prop) = props.get(name) {
                    conforms(spec, prop, field, &format!("{at}.{name}"))?;
                }
            }
        }
    }
    if let Value::Array(items) = value {
        if let Some(max) = schema["maxItems"].as_u64() {
            if items.len() as u64 > max {
                return Err(format!("{at}: more than {max} items"));
            }
        }
        for (i, item) in items.iter().enumerate() {
            conforms(spec, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// `include=all` shows every item a ChatKit client is shown, in documented shapes, and
/// nothing hidden; the default stays the messages alone.
#[tokio::test]
async fn include_all_shows_every_item_chatkit_shows_and_nothing_hidden() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let ck = app.chatkit(&t);
    let created = ck.create("add a task to buy milk").await;
    let tid = created.thread_id();
    let widget = created
        .events
        .iter()
        .rev()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "widget")
        .expect("the turn's widget")["item"]
        .clone();
    // A click on the widget: a workflow of its own, the widget changed in place, and a
    // hidden note for the model.
    ck.request(
        "threads.custom_action",
        json!({"thread_id": tid, "item_id": widget["id"],
               "action": {"type": "task.complete", "payload": {"task_id": 1}}}),
    )
    .await;
    let spec = app
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .ok();
    let message_schema = json!({"$ref": "#/components/schemas/Message"});

    let detail = app
        .get(&format!("/api/chatkit/threads/{tid}?include=all"), &t)
        .await
        .ok();
    conforms(
        &spec,
        &json!({"$ref": "#/components/schemas/ThreadDetail"}),
        &detail,
        "ThreadDetail",
    )
    .unwrap();
    let entries = detail["messages"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user_message",
            "workflow",
            "assistant_message",
            "widget",
            "workflow"
        ]
    );
    let roles: Vec<&str> = entries
        .iter()
        .map(|e| e["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "assistant", "assistant", "assistant"]
    );
    // The widget, with its tasks as data, as the click left it.
    let shown = &entries[3];
    assert_eq!(shown["id"], widget["id"]);
    assert_eq!(
        shown["tasks"],
        json!({"change": "added", "tasks": [
            {"task_id": 1, "title": "buy milk", "completed": true, "deleted": false}]})
    );
    assert_eq!(shown["content"], "Task added\n[x] 1. buy milk");
    assert_eq!(shown["status"], "completed");
    // Each entry carries its own typed field and no other.
    let typed = [
        "tool_calls",
        "tasks",
        "client_tool_call",
        "structured_input",
    ];
    for entry in entries {
        let own = match entry["type"].as_str().unwrap() {
            "workflow" => Some("tool_calls"),
            "widget" => Some("tasks"),
            _ => None,
        };
        for field in typed {
            assert_eq!(entry.get(field).is_some(), own == Some(field), "{entry}");
        }
        conforms(&spec, &message_schema, entry, "Message").unwrap();
    }
    // The check has teeth: a kind, a status or a task the document does not have fails it.
    for (field, bad) in [
        ("type", json!("hidden_context")),
        ("status", json!("stopped")),
        (
            "tasks",
            json!({"change": "added", "tasks": [{"task_id": "1"}]}),
        ),
    ] {
        let mut wrong = shown.clone();
        wrong[field] = bad;
        assert!(
            conforms(&spec, &message_schema, &wrong, "Message").is_err(),
            "{wrong}"
        );
    }
    assert_eq!(entries[1]["tool_calls"][0]["tool"], "add_task");
    assert_eq!(entries[1]["content"], "Added task 1: buy milk");
    assert_eq!(entries[4]["tool_calls"][0]["tool"], "complete_task");
    // The hidden note exists (the model reads it) but no client ever sees it.
    let raw = serde_json::to_string(&detail).unwrap();
    assert!(
        !raw.contains("hc_") && !raw.contains("marked as done"),
        "{raw}"
    );

    // The same entries as ChatKit's items, page by page, in either order.
    let items = ck
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let ids = |list: &[Value]| list.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    let chatkit_ids = ids(items.ok()["data"].as_array().unwrap());
    let (asc, pages) = app
        .walk(
            &format!("/api/chatkit/threads/{tid}/messages?include=all&order=asc&limit=2"),
            &t,
            "data",
        )
        .await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&asc), chatkit_ids);
    assert_eq!(ids(entries), chatkit_ids);
    let (mut desc, _) = app
        .walk(
            &format!("/api/chatkit/threads/{tid}/messages?include=all&limit=3"),
            &t,
            "data",
        )
        .await;
    desc.reverse();
    assert_eq!(desc, asc);

    // By default, and with include=messages, the messages alone, as before; the count is
    // theirs.
    for query in ["", "?include=messages"] {
        let detail = app
            .get(&format!("/api/chatkit/threads/{tid}{query}"), &t)
            .await
            .ok();
        let kinds: Vec<&str> = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["user_message", "assistant_message"], "{query}");
        assert_eq!(detail["message_count"], 2);
    }
    let messages = app.all_messages(&t, &tid).await;
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| m.get("tasks").is_none()));

    // Anything else is refused, on both routes.
    for path in [
        format!("/api/chatkit/threads/{tid}?include=hidden"),
        format!("/api/chatkit/threads/{tid}/messages?include=everything"),
    ] {
        app.get(&path, &t)
            .await
            .assert_error(422, "request.invalid");
    }
    // Another user's thread is not found, whatever is included.
    let bob = app.login("bob").await;
    app.get(&format!("/api/chatkit/threads/{tid}?include=all"), &bob)
        .await
        .assert_error(404, "thread.not_found");
}

/// Every entry of a thread's `include=all` read, oldest first, checked against the
/// document's `Message`.
async fn all_entries(app: &TestApp, token: &str, tid: &str) -> Vec<Value> {
    let spec = app
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .ok();
    let path = format!("/api/chatkit/threads/{tid}/messages?include=all&order=asc&limit=100");
    let entries = app.walk(&path, token, "data").await.0;
    let schema = json!({"$ref": "#/components/schemas/Message"});
    for entry in &entries {
        conforms(&spec, &schema, entry, "Message").unwrap();
    }
    entries
}

fn last_done(answer: &Answer) -> Value {
    let last = answer.events.last().unwrap();
    assert_eq!(last["type"], "thread.item.done", "{}", answer.raw);
    last["item"].clone()
}

/// The kinds ChatKit's hand-overs add: a question (the local agent asks which task
/// "complete buy" means) and a client tool call, each pending until answered, then
/// completed with what the client sent.
#[tokio::test]
async fn include_all_shows_questions_and_client_tool_calls_as_they_stand() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let ck = app.chatkit(&t);
    let tid = ck.create("add a task to buy milk").await.thread_id();
    ck.add_message(&tid, "add a task to buy bread").await;
    let asked = ck.add_message(&tid, "complete buy").await;
    let question = last_done(&asked);
    assert_eq!(question["type"], "structured_input");
    let entries = all_entries(&app, &t, &tid).await;
    let shown = entries.iter().find(|e| e["id"] == question["id"]).unwrap();
    assert_eq!(shown["type"], "structured_input");
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["structured_input"]["status"], "pending");
    assert_eq!(
        shown["structured_input"]["inputs"],
        json!([{"type": "multiple_choice", "id": "task", "question": question["inputs"][0]["question"],
                "options": [{"value": "1. buy milk"}, {"value": "2. buy bread"}], "multiple": false}])
    );
    assert_eq!(shown["content"], question["inputs"][0]["question"]);
    // The agent's own note of what the answer is for stays on the server.
    assert!(!serde_json::to_string(&entries)
        .unwrap()
        .contains("candidates"));
    ck.request(
        "threads.add_structured_input",
        json!({"thread_id": tid, "item_id": question["id"],
               "input": {"status": "answered", "answers": {"task": {"values": ["2. buy bread"]}}}}),
    )
    .await;
    let entries = all_entries(&app, &t, &tid).await;
    let shown = entries.iter().find(|e| e["id"] == question["id"]).unwrap();
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["structured_input"]["status"], "answered");
    assert_eq!(
        shown["structured_input"]["inputs"][0]["answer"],
        json!({"values": ["2. buy bread"], "skipped": false})
    );

    // A client tool call, through the OpenAI-compatible agent.
    let model = FakeModel::start(vec![
        call("highlight_tasks", json!({"task_ids": [1]})),
        text(&["Task 1 is highlighted."]),
    ])
    .await;
    let app = spawn_app_with(|s| {
        use_model(s, &model);
        s.chatkit.client_tools = vec![chatkit_gateway::config::ClientToolSettings {
            name: "highlight_tasks".into(),
            description: "Highlight tasks in the page".into(),
            parameters: json!({"type": "object"}),
        }];
    })
    .await;
    let t = app.login("alice").await;
    let ck = app.chatkit(&t);
    let paused = ck.create("show me task 1").await;
    let tid = paused.thread_id();
    let pending = last_done(&paused);
    let entries = all_entries(&app, &t, &tid).await;
    let shown = entries.iter().find(|e| e["id"] == pending["id"]).unwrap();
    assert_eq!(shown["type"], "client_tool_call");
    assert_eq!(shown["status"], "pending");
    assert_eq!(
        shown["client_tool_call"],
        json!({"call_id": "call_highlight_tasks", "name": "highlight_tasks",
               "arguments": {"task_ids": [1]}})
    );
    ck.request(
        "threads.add_client_tool_output",
        json!({"thread_id": tid, "result": {"highlighted": 1}}),
    )
    .await;
    let entries = all_entries(&app, &t, &tid).await;
    let shown = entries.iter().find(|e| e["id"] == pending["id"]).unwrap();
    assert_eq!(shown["status"], "completed");
    assert_eq!(
        shown["client_tool_call"]["output"],
        json!({"highlighted": 1})
    );
    // The answer that handed over before a word stays, empty (ChatKit leaves it out); the
    // answer after the output follows the call.
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user_message",
            "assistant_message",
            "client_tool_call",
            "assistant_message"
        ]
    );
    assert_eq!(entries[1]["content"], "");
    assert_eq!(entries[3]["content"], "Task 1 is highlighted.");
}
