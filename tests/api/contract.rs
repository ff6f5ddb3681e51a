//! The OpenAPI document against the service: each operation declares the errors it can
//! answer, the bounds it declares are the bounds it enforces, and a 405 says what is allowed.
//! (Schemathesis, tests/schemathesis/run.sh, fuzzes the rest of the document.)

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{spawn_app, TestApp};

async fn document(app: &TestApp) -> Value {
    app.request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .ok()
}

fn operation<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &spec["paths"][path][method];
    assert!(op.is_object(), "no {method} {path} in the document");
    op
}

fn statuses(op: &Value) -> Vec<&str> {
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn param<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
}

#[tokio::test]
async fn each_operation_declares_its_own_errors() {
    let app = spawn_app().await;
    let spec = document(&app).await;
    let expected: [(&str, &str, &str, &[&str]); 13] = [
        (
            "/api/chatkit/session",
            "post",
            "createSession",
            &["200", "400", "401", "429", "503"],
        ),
        (
            "/api/chatkit/refresh",
            "post",
            "refreshSession",
            &["200", "400", "401", "413", "415", "422", "429", "503"],
        ),
        (
            "/api/chatkit/session",
            "delete",
            "deleteSession",
            &["204", "400", "401", "422", "503"],
        ),
        (
            "/api/chatkit/threads",
            "get",
            "listThreads",
            &["200", "400", "401", "422", "503"],
        ),
        (
            "/api/chatkit/threads",
            "post",
            "createThread",
            &["201", "400", "401", "413", "415", "422", "503"],
        ),
        (
            "/api/chatkit/threads/{id}",
            "get",
            "getThread",
            &["200", "400", "401", "404", "422", "503"],
        ),
        (
            "/api/chatkit/threads/{id}",
            "patch",
            "updateThread",
            &["200", "400", "401", "404", "413", "415", "422", "503"],
        ),
        (
            "/api/chatkit/threads/{id}",
            "delete",
            "deleteThread",
            &["204", "400", "401", "404", "503"],
        ),
        (
            "/api/chatkit/threads/{id}/messages",
            "get",
            "listMessages",
            &["200", "400", "401", "404", "422", "503"],
        ),
        (
            "/api/chatkit/messages",
            "post",
            "sendMessage",
            &[
                "200", "400", "401", "404", "409", "413", "415", "422", "429", "502", "503",
            ],
        ),
        (
            "/chatkit",
            "post",
            "chatkit",
            &[
                "200", "400", "401", "404", "409", "413", "415", "422", "429", "501", "502", "503",
            ],
        ),
        ("/healthz", "get", "healthz", &["200", "400"]),
        ("/readyz", "get", "readyz", &["200", "503", "400"]),
    ];
    for (path, method, id, codes) in expected {
        let op = operation(&spec, path, method);
        assert_eq!(op["operationId"], id, "{method} {path}");
        let mut got = statuses(op);
        got.sort_unstable();
        let mut want = codes.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "{id}");
        for (status, resp) in op["responses"].as_object().unwrap() {
            let description = resp["description"].as_str().unwrap_or_default();
            if status.starts_with('4') || status == "502" || (status == "503" && path != "/readyz")
            {
                // Every error names the codes it carries on this route.
                assert!(description.contains('`'), "{id} {status}: {description}");
                assert_eq!(
                    resp["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{id} {status}"
                );
                let header = match status.as_str() {
                    "401" => Some("WWW-Authenticate"),
                    "503" => Some("Retry-After"),
                    _ => None,
                };
                if let Some(header) = header {
                    assert_eq!(resp["headers"][header]["required"], true, "{id} {status}");
                }
            }
        }
    }
    // Codes that belong to one route are not listed on others.
    let list = operation(&spec, "/api/chatkit/threads", "get").to_string();
    assert!(!list.contains("agent.unavailable") && !list.contains("thread.not_found"));
    let tags: Vec<&str> = spec["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Every group with its operations; poem-openapi lists them by name.
    assert_eq!(
        tags,
        [
            "Attachments",
            "ChatKit",
            "Health",
            "Messages",
            "Session",
            "Threads"
        ]
    );
}

#[tokio::test]
async fn declared_bounds_are_the_enforced_bounds() {
    let app = spawn_app().await;
    let spec = document(&app).await;
    let t = app.login("bounds").await;

    let list = operation(&spec, "/api/chatkit/threads/{id}/messages", "get");
    let limit = &param(list, "limit")["schema"];
    assert_eq!(
        (limit["minimum"].as_f64(), limit["maximum"].as_f64()),
        (Some(1.0), Some(100.0))
    );
    assert_eq!(limit["default"], 20);
    assert_eq!(
        param(list, "order")["schema"]["enum"],
        json!(["desc", "asc"])
    );
    let key = &param(
        operation(&spec, "/api/chatkit/messages", "post"),
        "Idempotency-Key",
    )["schema"];
    assert_eq!(
        (key["minLength"].as_u64(), key["maxLength"].as_u64()),
        (Some(1), Some(255))
    );
    assert!(key["pattern"].is_string());

    let schemas = &spec["components"]["schemas"];
    let title = &schemas["ThreadInput"]["properties"]["title"];
    let message = &schemas["SendMessageRequest"]["properties"]["message"];
    assert_eq!(title["minLength"], 1);
    assert_eq!(title["nullable"], true);
    let title_max = usize::try_from(title["maxLength"].as_u64().unwrap()).unwrap();
    let message_max = usize::try_from(message["maxLength"].as_u64().unwrap()).unwrap();
    assert_eq!(
        message_max,
        chatkit_gateway::config::Settings::defaults()
            .messages
            .max_chars,
        "the document states the default message limit"
    );
    assert!(message["description"]
        .as_str()
        .unwrap()
        .contains("configurable"));

    // At each bound, accepted; one past it, 422 with today's codes.
    for limit in ["1", "100"] {
        app.get(&format!("/api/chatkit/threads?limit={limit}"), &t)
            .await
            .ok();
    }
    for limit in ["0", "101"] {
        app.get(&format!("/api/chatkit/threads?limit={limit}"), &t)
            .await
            .assert_error(422, "request.invalid");
    }
    let thread = app.create_thread(&t, "bounds").await;
    let id = thread["id"].as_str().unwrap();
    app.get(
        &format!("/api/chatkit/threads/{id}/messages?order=sideways"),
        &t,
    )
    .await
    .assert_error(422, "request.invalid");
    let at_max = "t".repeat(title_max);
    app.post("/api/chatkit/threads", &t, json!({ "title": at_max }))
        .await
        .ok();
    // The bound holds for the title as sent, surrounding white space included.
    let past_max = format!(" {at_max}");
    app.post("/api/chatkit/threads", &t, json!({ "title": past_max }))
        .await
        .assert_error(422, "request.invalid");
    app.post(
        "/api/chatkit/threads",
        &t,
        json!({ "title": " \u{3000}\t" }),
    )
    .await
    .assert_error(422, "request.invalid");
    app.send(&t, Some(id), &"m".repeat(message_max + 1))
        .await
        .assert_error(422, "message.too_long");
    app.send(&t, Some(id), " \n\u{a0}")
        .await
        .assert_error(422, "message.empty");
}

#[tokio::test]
async fn a_405_lists_the_allowed_methods() {
    let app = spawn_app().await;
    let t = app.login("allow").await;
    for (method, path, allow) in [
        (Method::PUT, "/api/chatkit/threads", "GET, HEAD, POST"),
        (
            Method::POST,
            "/api/chatkit/threads/thr_x",
            "GET, HEAD, PATCH, DELETE",
        ),
        (
            Method::DELETE,
            "/api/chatkit/threads/thr_x/messages",
            "GET, HEAD",
        ),
        (Method::GET, "/api/chatkit/session", "POST, DELETE"),
        (Method::GET, "/chatkit", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
    ] {
        let resp = app.request(method.clone(), path, Some(&t), None, &[]).await;
        resp.assert_error(405, "route.method_not_allowed");
        assert_eq!(
            resp.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
    // Only 405s carry it.
    let ok = app.request(Method::GET, "/healthz", None, None, &[]).await;
    assert!(ok.headers.get("allow").is_none());
}

/// Every example obeys its own schema (a generated client or Swagger's "Try it out" would
/// otherwise start from a value the service refuses or never sends).
#[tokio::test]
async fn examples_follow_their_schemas() {
    let app = spawn_app().await;
    let spec = document(&app).await;
    assert_eq!(spec["servers"][0]["url"], "/");
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "SessionResponse",
        "RefreshRequest",
        "Thread",
        "ThreadInput",
        "Message",
        "SendMessageRequest",
        "SendMessageResponse",
        "ToolCall",
    ] {
        let schema = &schemas[name];
        let example = schema["example"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no example"));
        let props = schema["properties"].as_object().unwrap();
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(
                example.contains_key(required.as_str().unwrap()),
                "{name}.{required} missing from its example"
            );
        }
        for (key, value) in example {
            let prop = props
                .get(key)
                .unwrap_or_else(|| panic!("{name} example has undeclared {key}"));
            if let Some(allowed) = prop["enum"].as_array() {
                assert!(
                    allowed.contains(value),
                    "{name}.{key} = {value} not in enum"
                );
            }
            if prop["format"] == "date-time" {
                chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
                    .unwrap_or_else(|e| panic!("{name}.{key}: {e}"));
            }
        }
    }
    let call = &schemas["SendMessageResponse"]["example"]["tool_calls"][0];
    assert!(call["args"].is_object() && call["result"].is_object());
    for (name, key) in [("Message", "role"), ("Message", "status")] {
        assert!(
            schemas[name]["properties"][key]["enum"].is_array(),
            "{name}.{key}"
        );
    }
    for (name, key) in [
        ("Thread", "created_at"),
        ("Thread", "updated_at"),
        ("Message", "created_at"),
        ("SessionResponse", "expires_at"),
    ] {
        assert_eq!(
            schemas[name]["properties"][key]["format"], "date-time",
            "{name}.{key}"
        );
    }
    let sse = &operation(&spec, "/api/chatkit/messages", "post")["responses"]["200"]["content"]
        ["text/event-stream"];
    assert!(sse.is_object(), "the SSE response is not documented");
}

/// The document is a contract clients generate code from: a change to it shows up in review
/// as a diff of tests/openapi-ts/openapi.json. `UPDATE_SNAPSHOT=1` rewrites the snapshot.
#[test]
fn the_document_matches_its_snapshot() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi-ts/openapi.json");
    let doc = format!("{}\n", chatkit_gateway::api::spec_json());
    assert_eq!(
        doc,
        format!("{}\n", chatkit_gateway::api::spec_json()),
        "the document differs from run to run"
    );
    if std::env::var_os("UPDATE_SNAPSHOT").is_some() {
        std::fs::write(&path, &doc).unwrap();
        return;
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        snapshot == doc,
        "the OpenAPI document differs from {}; review the change, then rerun with \
         UPDATE_SNAPSHOT=1 to accept it",
        path.display()
    );
}

/// The SSE example names the events in the order a turn sends them, and each data line is
/// JSON: a client writer reads the stream's shape from it.
#[test]
fn the_event_stream_example_lists_the_events() {
    let spec: Value = serde_json::from_str(&chatkit_gateway::api::spec_json()).unwrap();
    let example = spec["paths"]["/api/chatkit/messages"]["post"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"]["example"]
        .as_str()
        .expect("the event stream has an example");
    let events: Vec<&str> = example
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events, ["message.recorded", "tool_call", "delta", "done"]);
    for data in example.lines().filter_map(|l| l.strip_prefix("data: ")) {
        serde_json::from_str::<Value>(data).unwrap_or_else(|e| panic!("{data}: {e}"));
    }
}

/// The protocol's request types, as `openai-chatkit` 1.6.5 names them.
const CHATKIT_TYPES: [&str; 16] = [
    "threads.create",
    "threads.add_user_message",
    "threads.add_client_tool_output",
    "threads.add_structured_input",
    "threads.retry_after_item",
    "threads.custom_action",
    "threads.sync_custom_action",
    "threads.get_by_id",
    "threads.list",
    "items.list",
    "threads.update",
    "threads.delete",
    "items.feedback",
    "attachments.create",
    "attachments.delete",
    "input.transcribe",
];

/// `POST /chatkit` is in the document: every request type with its parameters, JSON and
/// event-stream answers, the client_secret scheme, and an example Swagger UI's "Try it
/// out" sends as it is.
#[tokio::test]
async fn the_chatkit_endpoint_is_documented_and_its_example_works() {
    let app = spawn_app().await;
    let spec = document(&app).await;
    let op = operation(&spec, "/chatkit", "post");
    assert_eq!(op["security"], json!([{"ClientSecret": []}]));
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/ChatKitRequest");
    let schemas = &spec["components"]["schemas"];
    let union = &schemas["ChatKitRequest"];
    assert_eq!(union["discriminator"]["propertyName"], "type");
    let mut documented: Vec<&str> = union["discriminator"]["mapping"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    let mut protocol = CHATKIT_TYPES.to_vec();
    protocol.sort_unstable();
    assert_eq!(documented, protocol);
    // Each type's parameters are its own schema.
    for (kind, target) in union["discriminator"]["mapping"].as_object().unwrap() {
        let variant = target.as_str().unwrap().rsplit('/').next().unwrap();
        let envelope = schemas[variant]["allOf"][1]["$ref"].as_str().unwrap();
        let envelope = &schemas[envelope.rsplit('/').next().unwrap()];
        assert_eq!(envelope["required"], json!(["params"]), "{kind}");
        assert!(
            envelope["properties"]["params"]["$ref"].is_string(),
            "{kind}"
        );
    }
    // Every tagged union's mapping leads to the schema of that tag (a schema shared by two
    // tags would say only one of them).
    for (name, schema) in schemas.as_object().unwrap() {
        let Some(mapping) = schema["discriminator"]["mapping"].as_object() else {
            continue;
        };
        for (tag, target) in mapping {
            let target = &schemas[target.as_str().unwrap().rsplit('/').next().unwrap()];
            assert_eq!(
                target["allOf"][0]["properties"]["type"]["enum"],
                json!([tag]),
                "{name}: {tag}"
            );
        }
    }
    let answer = &op["responses"]["200"]["content"];
    assert_eq!(
        answer["application/json"]["schema"]["$ref"],
        "#/components/schemas/ChatKitJsonAnswer"
    );
    let frame = &answer["text/event-stream"]["schema"];
    assert_eq!(frame["required"], json!(["data"]));
    let example: Value = serde_json::from_str(frame["example"]["data"].as_str().unwrap()).unwrap();
    assert!(frame["description"]
        .as_str()
        .unwrap()
        .contains(&format!("- `{}` {{", example["type"].as_str().unwrap())));

    // "Try it out": the example, with a client_secret, answers what the document says.
    let t = app.login("alice").await;
    app.chatkit(&t).create("add a task to buy milk").await;
    let example = schemas["ChatKitRequest"]["example"].clone();
    assert_eq!(example["type"], "threads.list");
    let tried = app
        .request(Method::POST, "/chatkit", Some(&t), Some(example), &[])
        .await;
    let page = tried.ok();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    crate::threads::conforms(
        &spec,
        &answer["application/json"]["schema"],
        &page,
        "answer",
    )
    .unwrap();
    // Without one, the documented 401.
    app.request(
        Method::POST,
        "/chatkit",
        None,
        Some(json!({"type": "threads.list", "params": {}})),
        &[],
    )
    .await
    .assert_error(401, "auth.missing_token");
}

/// Every JSON answer of the endpoint is one the document describes: each JSON request
/// type, on a thread holding each kind of item the gateway shows.
#[tokio::test]
async fn the_chatkit_json_answers_follow_the_document() {
    let app = spawn_app().await;
    let spec = document(&app).await;
    let schema = &operation(&spec, "/chatkit", "post")["responses"]["200"]["content"]
        ["application/json"]["schema"];
    let t = app.login("alice").await;
    let ck = app.chatkit(&t);
    let created = ck.create("add a task to buy milk").await;
    let tid = created.thread_id();
    let widget = created.events.last().unwrap()["item"]["id"].clone();
    let user_message = created.events[1]["item"]["id"].clone();
    // The events of a stream, each one frame, are the documented events: named in the
    // frame's description, carrying the documented items and threads.
    let frame = &operation(&spec, "/chatkit", "post")["responses"]["200"]["content"]
        ["text/event-stream"]["schema"];
    let listed = frame["description"].as_str().unwrap();
    let clicked = ck
        .request(
            "threads.custom_action",
            json!({"thread_id": tid, "item_id": widget,
                   "action": {"type": "task.reopen", "payload": {"task_id": 1}}}),
        )
        .await;
    let tag = json!({"type": "input_tag", "id": "t1", "text": "@milk", "data": {"k": 1}});
    let tagged = ck
        .request(
            "threads.add_user_message",
            json!({"thread_id": tid, "input": {"content": [tag], "attachments": [],
                   "quoted_text": "buy milk", "inference_options": {"model": "m"}}}),
        )
        .await;
    let item = json!({"$ref": "#/components/schemas/ChatKitItem"});
    let thread = json!({"$ref": "#/components/schemas/ChatKitThread"});
    for event in created
        .events
        .iter()
        .chain(&clicked.events)
        .chain(&tagged.events)
    {
        let kind = event["type"].as_str().unwrap();
        assert!(
            listed.contains(&format!("- `{kind}` {{")),
            "{kind} is not listed"
        );
        let data = json!({"data": event.to_string(), "event": "message"});
        crate::threads::conforms(&spec, frame, &data, "frame").unwrap();
        for (field, schema) in [("item", &item), ("thread", &thread)] {
            if let Some(value) = event.get(field) {
                crate::threads::conforms(&spec, schema, value, kind)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        if let Some(update) = event["update"]["type"].as_str() {
            assert!(
                listed.contains(&format!("`{update}`")),
                "{update} is not listed"
            );
        }
    }
    for (kind, params) in [
        ("threads.get_by_id", json!({"thread_id": tid})),
        ("threads.list", json!({"limit": 1})),
        ("items.list", json!({"thread_id": tid, "limit": 2})),
        ("items.list", json!({"thread_id": tid, "order": "asc"})),
        ("threads.update", json!({"thread_id": tid, "title": "Milk"})),
        (
            "items.feedback",
            json!({"thread_id": tid, "item_ids": [user_message], "kind": "positive"}),
        ),
        (
            "threads.sync_custom_action",
            json!({"thread_id": tid, "item_id": widget,
                   "action": {"type": "task.complete", "payload": {"task_id": 1}}}),
        ),
        ("threads.delete", json!({"thread_id": tid})),
    ] {
        let answer = ck.request(kind, params).await;
        crate::threads::conforms(&spec, schema, answer.ok(), kind)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}
