//! The `openai` provider against a fake OpenAI-compatible server on loopback that plays
//! scripted responses in the real wire format (SSE `data:` chunks), and reads dictation's
//! multipart uploads.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use serde_json::{json, Value};

use chatkit_gateway::{
    agent::{
        Agent, AgentAnswer, AgentError, AgentRequest, AttachedFile, EventSink, HistoryMessage,
        OpenAiAgent, PromptTemplate, TaskTools,
    },
    config::{AgentProvider, Http2Mode},
    domain::UserId,
    store::Store,
    Settings,
};

use crate::attachments::{png, uploaded};
use crate::support::{
    chatkit::input as chatkit_input,
    model::{
        chunk, chunks, die, text, tls_fixture, tool_call, use_model, use_model_at, Fake, FakeModel,
        Frame, Script,
    },
    parse_sse, roles, spawn_app_with, spawn_app_with_agent,
    wait::{eventually, within, Gate},
    TestApp, TestDb,
};

/// Model calls held open together: the fake's first `HELD` answers stream nothing before
/// all have arrived (though their heads have gone out).
const HELD: usize = 5;

fn held() -> Fake {
    Fake::together(HELD)
}

fn held_answers() -> Vec<Script> {
    vec![text(&["Shared", " line"]); HELD]
}

/// `HELD` turns sent at once, each answered; how their calls arrived (version, connection).
async fn held_turns(app: &TestApp, model: &FakeModel) -> Vec<(poem::http::Version, String)> {
    let t = app.login("alice").await;
    let messages: Vec<String> = (0..HELD).map(|i| format!("hi {i}")).collect();
    let replies =
        futures_util::future::join_all(messages.iter().map(|m| app.send(&t, None, m))).await;
    for reply in replies {
        assert_eq!(reply.ok()["response"], "Shared line");
    }
    let transport = model.transport();
    assert_eq!(transport.len(), HELD);
    transport
}

/// The distinct connections of `transport`, checking every call came over `version`.
fn connections(
    transport: &[(poem::http::Version, String)],
    version: poem::http::Version,
) -> std::collections::HashSet<String> {
    assert!(
        transport.iter().all(|(v, _)| *v == version),
        "{transport:?}"
    );
    transport.iter().map(|(_, c)| c.clone()).collect()
}

#[tokio::test]
async fn over_http2_concurrent_turns_share_connections_up_to_the_configured_count() {
    // Two streams per connection: three connections for the five calls, over h2c.
    let model = FakeModel::start_with(held(), held_answers()).await;
    let app = gateway(&model, |s| {
        s.agent.openai.http2 = Http2Mode::Always;
        s.agent.openai.http2_streams_per_connection = 2;
    })
    .await;
    let transport = held_turns(&app, &model).await;
    let connections = connections(&transport, poem::http::Version::HTTP_2);
    assert_eq!(connections.len(), 3, "{transport:?}");

    // Once those streams are over, the next turn goes out on a connection already open.
    model.push(text(&["Again"]));
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "once more").await.ok();
    assert_eq!(reply["response"], "Again");
    let last = model.transport().last().unwrap().1.clone();
    assert!(connections.contains(&last), "{last} not in {connections:?}");
}

#[tokio::test]
async fn over_https_http2_is_negotiated_by_default_and_connections_are_shared() {
    // A server offering h2 and HTTP/1.1 by ALPN, as hosted APIs do, behind a private CA.
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let model = FakeModel::start_tls(held(), held_answers(), alpn).await;
    assert!(model.base.starts_with("https://"));
    let app = gateway(&model, |s| {
        s.agent.openai.ca_file = Some(tls_fixture("ca.pem"));
        s.agent.openai.http2_streams_per_connection = 2;
    })
    .await;
    assert_eq!(app.settings.agent.openai.http2, Http2Mode::Auto);
    let transport = held_turns(&app, &model).await;
    assert_eq!(
        connections(&transport, poem::http::Version::HTTP_2).len(),
        3
    );
}

#[tokio::test]
async fn over_https_a_server_without_h2_is_spoken_to_over_http1() {
    // The same default against a server whose ALPN offers HTTP/1.1 only: ALPN settles on
    // it, and every concurrent call holds a connection of its own.
    let alpn: &[&[u8]] = &[b"http/1.1"];
    let model = FakeModel::start_tls(held(), held_answers(), alpn).await;
    let app = gateway(&model, |s| {
        s.agent.openai.ca_file = Some(tls_fixture("ca.pem"));
        s.agent.openai.http2_streams_per_connection = 2;
    })
    .await;
    let transport = held_turns(&app, &model).await;
    assert_eq!(
        connections(&transport, poem::http::Version::HTTP_11).len(),
        HELD
    );
}

#[tokio::test]
async fn a_provider_certificate_from_an_authority_not_trusted_fails_the_turn() {
    // No `ca_file`: the fake's private CA is not among the web roots.
    let model = FakeModel::start_tls(Fake::default(), vec![text(&["never sent"])], &[b"h2"]).await;
    let app = gateway(&model, |s| s.agent.openai.max_retries = 0).await;
    let t = app.login("alice").await;
    app.send(&t, None, "hi")
        .await
        .assert_error(502, "agent.unavailable");
    assert!(model.transport().is_empty());
    failed_turns_thread(&app, &t).await;
}

#[test]
fn an_unusable_ca_file_stops_the_start() {
    let mut settings = Settings::defaults();
    settings.agent.provider = AgentProvider::OpenAi;
    for (path, says) in [
        ("/nonexistent/ca.pem".to_owned(), "No such file"),
        // A private key is PEM, but not a certificate.
        (tls_fixture("provider.key"), "no certificate"),
    ] {
        settings.agent.openai.ca_file = Some(path);
        let err = chatkit_gateway::agent::from_settings(&settings.agent)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("agent.openai.ca_file") && err.contains(says),
            "{err}"
        );
    }
    // Empty (as `GATEWAY__AGENT__OPENAI__CA_FILE=` gives it): no file, the web roots only.
    settings.agent.openai.ca_file = Some(String::new());
    assert!(chatkit_gateway::agent::from_settings(&settings.agent).is_ok());
}

#[tokio::test]
async fn http2_against_a_server_that_only_speaks_http1_fails_the_turn_clearly() {
    // What an HTTP/1.1-only server does with the HTTP/2 preface: a 400, then it closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
        }
    });
    let app = spawn_app_with(|s| {
        use_model_at(s, &base);
        s.agent.openai.max_retries = 1;
        s.agent.openai.http2 = Http2Mode::Always;
    })
    .await;
    let t = app.login("alice").await;
    app.send(&t, None, "hi")
        .await
        .assert_error(502, "agent.unavailable");
    // The call reached the server: the turn failed on the server's answer, not before.
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    failed_turns_thread(&app, &t).await;
}

/// The service answering with the `openai` provider against `model`, `edit` applied on top.
async fn gateway(model: &FakeModel, edit: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        use_model(s, model);
        edit(s);
    })
    .await
}

/// The text of the answer of `thread_id`'s one turn, recorded with the user's message: both
/// completed.
async fn answer_recorded(app: &TestApp, t: &str, thread_id: &str) -> String {
    let messages = app.all_messages(t, thread_id).await;
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );
    messages[1]["content"].as_str().unwrap().to_owned()
}

/// `t`'s only thread, made by a turn that failed: its id and its one message, the user's,
/// kept and marked failed.
async fn failed_turns_thread(app: &TestApp, t: &str) -> (String, Vec<Value>) {
    let threads = app.get("/api/chatkit/threads", t).await.ok();
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1, "{threads}");
    let id = threads["threads"][0]["id"].as_str().unwrap().to_owned();
    let messages = app.all_messages(t, &id).await;
    assert_eq!(roles(&messages), [("user", "failed")]);
    (id, messages)
}

#[tokio::test]
async fn a_plain_answer_is_recorded_and_the_request_is_well_formed() {
    let model = FakeModel::start(vec![text(&["Hello", " there", "!"])]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "hi").await.ok();
    assert_eq!(reply["response"], "Hello there!");
    assert_eq!(reply["tool_calls"], json!([]));
    let thread_id = reply["thread_id"].as_str().unwrap();
    assert_eq!(answer_recorded(&app, &t, thread_id).await, "Hello there!");

    let body = model.requests()[0].clone();
    assert_eq!(model.authorization(0).as_deref(), Some("Bearer sk-test"));
    // The default: HTTP/1.1, which every OpenAI-compatible server speaks.
    assert_eq!(model.transport()[0].0, poem::http::Version::HTTP_11);
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["stream"], true);
    let tools: Vec<_> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "add_task",
            "list_tasks",
            "complete_task",
            "delete_task",
            "update_task"
        ]
    );
    let sent = body["messages"].as_array().unwrap();
    assert_eq!(sent[0]["role"], "system");
    let system = sent[0]["content"].as_str().unwrap();
    assert!(
        system.contains("alice") && system.contains("Roman Urdu") && !system.contains("{{"),
        "{system}"
    );
    assert_eq!(sent[1], json!({"role": "user", "content": "hi"}));
}

#[tokio::test]
async fn the_answer_streams_as_server_sent_events() {
    let model = FakeModel::start(vec![text(&["Your ", "list ", "is ", "empty."])]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (status, events) = app
        .stream_message(&t, None, "what's on my list?", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message.recorded",
            "delta",
            "delta",
            "delta",
            "delta",
            "done"
        ]
    );
    let deltas: String = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    let done = &events.last().unwrap().1;
    assert_eq!(deltas, "Your list is empty.");
    assert_eq!(done["response"], deltas.as_str());
    assert_eq!(done["message_id"], events[0].1["message_id"]);
    let messages = app
        .all_messages(&t, done["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(messages[1]["id"], done["response_id"]);
    assert_eq!(messages[1]["content"], "Your list is empty.");
}

#[tokio::test]
async fn a_tool_call_split_over_many_chunks_runs_and_its_result_goes_back() {
    let model = FakeModel::start(vec![
        tool_call(
            "call_1",
            "add_task",
            &["{\"ti", "tle\":", " \"buy ", "milk\"", "}"],
        ),
        text(&["Added ", "\"buy milk\"."]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (_, events) = app
        .stream_message(&t, None, "remember to buy milk", None)
        .await;
    let tool_event = events.iter().find(|(e, _)| e == "tool_call").unwrap();
    assert_eq!(tool_event.1["tool"], "add_task");
    assert_eq!(tool_event.1["args"], json!({"title": "buy milk"}));
    assert_eq!(tool_event.1["result"]["task"]["task_id"], 1);
    let done = &events.last().unwrap().1;
    assert_eq!(done["response"], "Added \"buy milk\".");
    assert_eq!(done["tool_calls"].as_array().unwrap().len(), 1);

    let second = &model.requests()[1]["messages"];
    let n = second.as_array().unwrap().len();
    assert_eq!(second[n - 2]["role"], "assistant");
    assert_eq!(second[n - 2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        second[n - 2]["tool_calls"][0]["function"]["arguments"],
        "{\"title\": \"buy milk\"}"
    );
    assert_eq!(second[n - 1]["role"], "tool");
    assert_eq!(second[n - 1]["tool_call_id"], "call_1");
    let fed_back: Value = serde_json::from_str(second[n - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(fed_back["task"]["title"], "buy milk");

    // The task really exists: the model's next list_tasks sees it.
    model.push(tool_call("call_2", "list_tasks", &["{}"]));
    model.push(text(&["ok"]));
    let listed = app
        .send(&t, Some(done["thread_id"].as_str().unwrap()), "list")
        .await
        .ok();
    assert_eq!(
        listed["tool_calls"][0]["result"]["tasks"][0]["title"],
        "buy milk"
    );
}

#[tokio::test]
async fn two_tool_calls_in_one_step_and_a_multi_step_loop() {
    let two_calls = chunks(
        vec![
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "add_task", "arguments": "{\"title\":\"one\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "add_task", "arguments": "{\"title\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"two\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ],
        Duration::from_millis(1),
        true,
    );
    let model = FakeModel::start(vec![
        two_calls,
        tool_call("c", "complete_task", &["{\"task_id\": 2}"]),
        tool_call("d", "list_tasks", &["{\"status\":\"pending\"}"]),
        text(&["Done: one is pending, two is complete."]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let reply = app
        .send(&t, None, "add one and two, then finish two")
        .await
        .ok();
    let tools: Vec<_> = reply["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["add_task", "add_task", "complete_task", "list_tasks"]
    );
    assert_eq!(reply["tool_calls"][2]["result"]["task"]["completed"], true);
    assert_eq!(
        reply["tool_calls"][3]["result"]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(reply["response"], "Done: one is pending, two is complete.");
    assert_eq!(model.requests().len(), 4);
    // Tool calls are recorded with the reply: a replayed idempotent request would return them;
    // the thread shows just the two messages.
    let messages = app
        .all_messages(&t, reply["thread_id"].as_str().unwrap())
        .await;
    assert_eq!(messages.len(), 2);
}

#[tokio::test]
async fn the_step_limit_stops_a_model_that_keeps_calling_tools() {
    let model = FakeModel::start(vec![
        tool_call("1", "list_tasks", &["{}"]),
        tool_call("2", "list_tasks", &["{}"]),
        tool_call("3", "list_tasks", &["{}"]),
    ])
    .await;
    let app = gateway(&model, |s| s.agent.openai.max_tool_steps = 2).await;
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "loop forever").await.ok();
    assert_eq!(model.requests().len(), 2);
    assert_eq!(reply["tool_calls"].as_array().unwrap().len(), 2);
    assert!(reply["response"]
        .as_str()
        .unwrap()
        .contains("stopped after 2 tool steps"));
    answer_recorded(&app, &t, reply["thread_id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn invalid_tool_arguments_become_an_error_the_model_sees() {
    let model = FakeModel::start(vec![
        tool_call("x", "add_task", &["{\"title\": tru"]),
        tool_call("y", "complete_task", &["{\"task_id\": \"seven\"}"]),
        tool_call("z", "no_such_tool", &["{}"]),
        text(&["Sorry, something went wrong."]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let keyed = || app.send_keyed(&t, None, "add something", "bad-args");
    let reply = keyed().await.ok();
    // The replay is read back from the database: the tool calls were recorded, raw
    // unparsable arguments included.
    assert_eq!(keyed().await.ok(), reply);
    assert_eq!(
        model.requests().len(),
        4,
        "the replay did not call the model"
    );
    let calls = reply["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["args"], "{\"title\": tru");
    assert!(calls[0]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert!(calls[1]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("invalid arguments"));
    assert!(calls[2]["result"]["error"]
        .as_str()
        .unwrap()
        .contains("unknown tool"));
    let requests = model.requests();
    let fed: Vec<String> = requests[1..]
        .iter()
        .map(|r| {
            r["messages"].as_array().unwrap().last().unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(fed[0].contains("not valid JSON"), "{fed:?}");
    assert_eq!(reply["response"], "Sorry, something went wrong.");
}

#[tokio::test]
async fn gemini_and_ollama_chunk_shapes_are_understood() {
    // Gemini: tool calls whole and without index, finish_reason "stop", a trailing
    // usage-only chunk with empty choices, and no [DONE].
    let gemini = chunks(
        vec![
            json!({"choices": [{"delta": {"role": "assistant", "tool_calls": [
                {"id": "g1", "type": "function", "function": {"name": "add_task", "arguments": "{\"title\":\"g one\"}"}},
                {"id": "g2", "type": "function", "function": {"name": "add_task", "arguments": "{\"title\":\"g two\"}"}}
            ]}, "finish_reason": "stop", "index": 0}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}),
        ],
        Duration::from_millis(1),
        false,
    );
    let gemini_text = chunks(
        vec![
            json!({"choices": [{"delta": {"content": "Added both", "role": "assistant"}, "index": 0}]}),
            json!({"choices": [{"delta": {"content": "."}, "finish_reason": "STOP", "index": 0}]}),
        ],
        Duration::from_millis(1),
        false,
    );
    // Ollama: tool call with index but finish_reason "stop"; final chunk carries `message`.
    let ollama = chunks(
        vec![
            json!({"id": "o", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "",
                "tool_calls": [{"id": "call_o", "index": 0, "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}]}, "finish_reason": null}]}),
            json!({"id": "o", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}),
        ],
        Duration::from_millis(1),
        true,
    );
    let ollama_text = chunks(
        vec![
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "You have 2 tasks."}, "finish_reason": "stop"}]}),
        ],
        Duration::from_millis(1),
        true,
    );
    let model = FakeModel::start(vec![gemini, gemini_text, ollama, ollama_text]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let first = app.send(&t, None, "add g one and g two").await.ok();
    assert_eq!(first["response"], "Added both.");
    assert_eq!(first["tool_calls"].as_array().unwrap().len(), 2);
    let second = app
        .send(&t, first["thread_id"].as_str(), "how many?")
        .await
        .ok();
    assert_eq!(second["response"], "You have 2 tasks.");
    assert_eq!(
        second["tool_calls"][0]["result"]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let messages = app
        .all_messages(&t, first["thread_id"].as_str().unwrap())
        .await;
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "add g one and g two",
            "Added both.",
            "how many?",
            "You have 2 tasks."
        ]
    );
}

#[tokio::test]
async fn rate_limits_are_retried_honouring_retry_after() {
    let model = FakeModel::start(vec![
        Script::Status {
            code: 429,
            retry_after: Some("1"),
        },
        text(&["ok"]),
    ])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "hi").await.ok();
    assert_eq!(reply["response"], "ok");
    // Not a speed: the retry came no sooner than the model API asked (the gap between the
    // two calls, as the API saw them; a busy machine only makes it longer).
    let arrived = model.arrival_times();
    let waited = arrived[1] - arrived[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(model.requests().len(), 2);
    let thread_id = reply["thread_id"].as_str().unwrap();
    assert_eq!(answer_recorded(&app, &t, thread_id).await, "ok");
}

#[tokio::test]
async fn server_errors_are_retried_then_the_turn_fails_and_a_keyed_retry_completes_it() {
    let fail = || Script::Status {
        code: 500,
        retry_after: None,
    };
    let model = FakeModel::start(vec![fail(), fail(), fail()]).await;
    let app = gateway(&model, |s| s.agent.openai.max_retries = 2).await;
    let t = app.login("alice").await;
    let keyed = |key: &'static str| app.send_keyed(&t, None, "hi", key);
    keyed("k1").await.assert_error(502, "agent.unavailable");
    assert_eq!(model.requests().len(), 3, "one try and two retries");
    let (id, messages) = failed_turns_thread(&app, &t).await;

    // A client error is not retried.
    model.push(Script::Status {
        code: 400,
        retry_after: None,
    });
    app.send(&t, Some(&id), "bad request")
        .await
        .assert_error(502, "agent.unavailable");
    assert_eq!(model.requests().len(), 4);

    model.push(text(&["Hello again"]));
    let done = keyed("k1").await.ok();
    assert_eq!(done["message_id"], messages[0]["id"]);
    assert_eq!(done["response"], "Hello again");
    let messages = app.all_messages(&t, &id).await;
    assert_eq!(
        roles(&messages),
        [
            ("user", "completed"),
            ("user", "failed"),
            ("assistant", "completed")
        ]
    );
}

#[tokio::test]
async fn a_stream_that_dies_half_way_records_no_partial_answer() {
    let model = FakeModel::start(vec![die(vec![chunk(
        json!({"content": "Half an ans"}),
        None,
    )])])
    .await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (status, events) = app.stream_message(&t, None, "tell me", Some("die-1")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["message.recorded", "delta", "error"]);
    assert_eq!(events[2].1["code"], "agent.unavailable");
    assert_eq!(model.requests().len(), 1, "no retry once text has streamed");
    let id = events[0].1["thread_id"].as_str().unwrap();
    let messages = app.all_messages(&t, id).await;
    assert_eq!(roles(&messages), [("user", "failed")]);
    // The keyed retry completes the same turn.
    model.push(text(&["The whole answer."]));
    let (_, events) = app.stream_message(&t, None, "tell me", Some("die-1")).await;
    assert_eq!(events.last().unwrap().0, "done");
    assert_eq!(events[0].1["message_id"], messages[0]["id"]);
    assert_eq!(answer_recorded(&app, &t, id).await, "The whole answer.");
}

#[tokio::test]
async fn a_slow_first_token_times_out() {
    // The model's answer is held back, head and all, for as long as the test runs: only the
    // first-token deadline can end the call.
    let never = Gate::new();
    let model = FakeModel::start(vec![Script::Held(
        never.clone(),
        Box::new(text(&["too late"])),
    )])
    .await;
    let app = gateway(&model, |s| {
        s.agent.openai.first_token_timeout_ms = 1000;
        // Far beyond any wait here: the turn must not be ended by the overall deadline.
        s.agent.openai.total_timeout_ms = 3_600_000;
        s.agent.openai.max_retries = 0;
    })
    .await;
    let t = app.login("alice").await;
    within(
        "the first-token deadline ending the turn",
        app.send(&t, None, "hi"),
    )
    .await
    .assert_error(502, "agent.unavailable");
    assert_eq!(never.arrived(), 1, "the model was asked and never answered");
    let (id, _) = failed_turns_thread(&app, &t).await;

    // Slow chunks after a fast start are fine (only the first token has a deadline): the
    // first chunk comes at once, the rest once the test has waited past the deadline.
    let rest = Gate::new();
    model.push(Script::Sse(vec![
        Frame::Chunk(chunk(json!({"content": "sl"}), None)),
        Frame::Wait(rest.clone()),
        Frame::Chunk(chunk(json!({"content": "ow"}), None)),
        Frame::Chunk(chunk(json!({}), Some("stop"))),
        Frame::Done,
    ]));
    let (reply, ()) = tokio::join!(app.send(&t, Some(&id), "again"), async {
        rest.arrivals(1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        rest.open();
    });
    assert_eq!(reply.ok()["response"], "slow");
}

/// A model that counts to five, one word per chunk, `delay` apart.
fn counting(delay: Duration) -> Script {
    let words = ["one ", "two ", "three ", "four ", "five"]
        .iter()
        .map(|p| chunk(json!({"content": p}), None))
        .chain([chunk(json!({}), Some("stop"))])
        .collect();
    chunks(words, delay, true)
}

/// Waits for the [`counting`] answer to be recorded in `thread_id`, with nothing partial
/// recorded meanwhile.
async fn counted_answer_recorded(app: &TestApp, t: &str, thread_id: &str) {
    let messages = eventually("the counted answer recorded", || async {
        let messages = app.all_messages(t, thread_id).await;
        if messages.len() == 2 {
            return Some(messages);
        }
        assert_eq!(
            roles(&messages),
            [("user", "pending")],
            "nothing partial is recorded meanwhile"
        );
        None
    })
    .await;
    assert_eq!(messages[1]["content"], "one two three four five");
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_still_gets_the_whole_answer_recorded() {
    let model = FakeModel::start(vec![counting(Duration::from_millis(150))]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let resp = app
        .client
        .post(format!("{}/api/chatkit/messages", app.base))
        .bearer_auth(&t)
        .header("accept", "text/event-stream")
        .json(&json!({"thread_id": null, "message": "count"}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    drop(body); // hang up after the first delta
    let recorded = parse_sse(seen.split("event: delta").next().unwrap());
    let thread_id = recorded[0].1["thread_id"].as_str().unwrap().to_owned();
    counted_answer_recorded(&app, &t, &thread_id).await;
}

/// A client that stays connected but stops reading after the response's first bytes does
/// not hold its turn back: the answer is recorded while nothing more is read.
#[tokio::test]
async fn a_client_that_never_reads_its_stream_still_gets_the_answer_recorded_meanwhile() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let model = FakeModel::start(vec![counting(Duration::from_millis(50))]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let thread = app.create_thread(&t, "unread").await;
    let thread_id = thread["id"].as_str().unwrap().to_owned();
    let body = json!({"thread_id": thread_id, "message": "count"}).to_string();
    let mut raw = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/chatkit/messages HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {t}\r\n\
         accept: text/event-stream\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(body.as_bytes()).await.unwrap();
    // The head comes once the user's message is recorded; nothing is read after it.
    let mut first = [0u8; 64];
    let n = raw.read(&mut first).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    counted_answer_recorded(&app, &t, &thread_id).await;
    drop(raw);
}

#[tokio::test]
async fn history_is_sent_in_order_within_its_window_and_keep_alives_flow() {
    let model = FakeModel::start(vec![text(&["first answer"]), text(&["second answer"])]).await;
    let app = gateway(&model, |s| {
        s.messages.history_max_items = 2;
        s.stream.keep_alive_secs = 0; // the floor (100 ms) applies
    })
    .await;
    let t = app.login("alice").await;
    let first = app.send(&t, None, "first question").await.ok();
    let slow = chunks(
        vec![
            chunk(json!({"content": "third"}), None),
            chunk(json!({}), Some("stop")),
        ],
        Duration::from_millis(350),
        true,
    );
    app.send(&t, first["thread_id"].as_str(), "second question")
        .await
        .ok();
    let sent = &model.requests()[1]["messages"];
    let shape: Vec<(&str, &str)> = sent.as_array().unwrap()[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shape,
        [
            ("user", "first question"),
            ("assistant", "first answer"),
            ("user", "second question")
        ]
    );
    // Window of 2: the oldest message drops out.
    model.push(slow);
    let (_, events) = app
        .stream_message(&t, first["thread_id"].as_str(), "third question", None)
        .await;
    let sent = &model.requests()[2]["messages"];
    let contents: Vec<&str> = sent.as_array().unwrap()[1..]
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["second question", "second answer", "third question"]
    );
    assert!(
        events.iter().any(|(e, _)| e == "comment"),
        "keep-alive comments while waiting: {events:?}"
    );
    assert_eq!(events.last().unwrap().0, "done");
}

#[tokio::test]
async fn streaming_errors_before_the_agent_runs_are_plain_json() {
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let (status, _) = app
        .stream_message(&t, Some("thr_00000000000000000000000000000000"), "hi", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.stream_message(&t, None, "  ", None).await;
    assert_eq!(status, 422);
    assert!(model.requests().is_empty());
}

/// The openai provider with task tools whose database has gone away (its pool closed), as
/// in an outage that starts after the user's message was recorded.
struct ToolsWithoutDatabase(OpenAiAgent);

#[async_trait::async_trait]
impl Agent for ToolsWithoutDatabase {
    async fn respond(
        &self,
        request: AgentRequest<'_>,
        _tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let store = Store::connect("sqlite::memory:", 1, Duration::from_secs(1))
            .await
            .unwrap();
        store.clone().close().await;
        let tools = TaskTools::new(store, request.user.clone());
        self.0.respond(request, &tools, events).await
    }
}

#[tokio::test]
async fn a_database_failure_inside_a_tool_call_is_a_503_not_a_model_failure() {
    let add = || tool_call("call_1", "add_task", &["{\"title\": \"x\"}"]);
    let model = FakeModel::start(vec![add()]).await;
    let mut settings = Settings::defaults();
    use_model(&mut settings, &model);
    let agent = ToolsWithoutDatabase(
        OpenAiAgent::new(settings.agent.openai, PromptTemplate::load("/nonexistent")).unwrap(),
    );
    let app = spawn_app_with_agent(Arc::new(agent), |s| use_model(s, &model)).await;
    let t = app.login("alice").await;
    app.send(&t, None, "add x")
        .await
        .assert_error(503, "service.unavailable");
    assert_eq!(
        model.requests().len(),
        1,
        "the turn ends at the failed call; no tool result goes back to the model"
    );
    let (id, _) = failed_turns_thread(&app, &t).await;

    model.push(add());
    let (status, events) = app.stream_message(&t, Some(&id), "add x", None).await;
    assert_eq!(status, 200);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["code"], "service.unavailable");
}

// Files attached to a message, and dictation, driven through the `Agent` trait.

fn file(name: &str, mime_type: &str, bytes: &[u8]) -> AttachedFile {
    AttachedFile {
        name: name.into(),
        mime_type: mime_type.into(),
        bytes: bytes::Bytes::copy_from_slice(bytes),
    }
}

/// The openai provider pointed at `model`, with `edit` applied to its settings.
fn openai(model: &FakeModel, edit: impl FnOnce(&mut Settings)) -> OpenAiAgent {
    let mut settings = Settings::defaults();
    use_model(&mut settings, model);
    edit(&mut settings);
    OpenAiAgent::new(settings.agent.openai, PromptTemplate::load("/nonexistent")).unwrap()
}

/// `user`'s tools on a fresh, migrated test database (SQLite, or PostgreSQL when
/// TEST_DATABASE_URL is set).
async fn tools_for(user: &UserId) -> (TestDb, Store, TaskTools) {
    let db = TestDb::new().await;
    let store = Store::connect(&db.url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let tools = TaskTools::new(store.clone(), user.clone());
    (db, store, tools)
}

fn request<'a>(
    user: &'a UserId,
    history: &'a [HistoryMessage],
    message: &'a str,
    attachments: &'a [AttachedFile],
) -> AgentRequest<'a> {
    AgentRequest {
        user,
        history,
        message,
        stop: None,
        model: None,
        tool_choice: None,
        interactive: false,
        client_tools: &[],
        mentions: &[],
        resume: None,
        attachments,
    }
}

/// The last message of model request `i`.
fn last_message(model: &FakeModel, i: usize) -> Value {
    model.requests()[i]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_model_is_sent_the_new_messages_images_and_text_files_as_content_parts() {
    let model = FakeModel::start(vec![text(&["Noted."]), text(&["Plain."])]).await;
    let agent = openai(&model, |s| {
        s.agent.openai.max_image_bytes = 1024;
        s.agent.openai.max_text_bytes = 256;
    });
    let user = UserId::parse("alice").unwrap();
    let (_db, _store, tools) = tools_for(&user).await;
    let png = [
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D,
    ];
    let mut big_png = png.to_vec();
    big_png.resize(1500, 0);
    // 300 bytes: "é" (two bytes) straddles the 256-byte cap at bytes 255-256.
    let long_text = format!("{}é{}", "a".repeat(255), "b".repeat(43));
    assert_eq!(long_text.len(), 300);
    let files = [
        file("board.png", "image/png", &png),
        file("list.md", "text/markdown", b"- milk\n- eggs\n"),
        file("huge.png", "image/png", &big_png),
        file(
            "notes.txt",
            "text/plain; charset=utf-8",
            long_text.as_bytes(),
        ),
        file("report.pdf", "application/pdf", b"%PDF-1.7 ..."),
    ];
    let history = [
        HistoryMessage {
            role: "user".into(),
            content: "hello".into(),
        },
        HistoryMessage {
            role: "assistant".into(),
            content: "Hi!".into(),
        },
    ];
    let answer = agent
        .respond(
            request(&user, &history, "add these", &files),
            &tools,
            &EventSink::default(),
        )
        .await
        .unwrap();
    assert_eq!(answer.text, "Noted.");
    let sent = model.requests()[0]["messages"].clone();
    // The history stays text; the new message carries the files, in the order attached.
    assert_eq!(sent[1], json!({"role": "user", "content": "hello"}));
    assert_eq!(sent[2], json!({"role": "assistant", "content": "Hi!"}));
    assert_eq!(sent.as_array().unwrap().len(), 4);
    assert_eq!(
        last_message(&model, 0),
        json!({"role": "user", "content": [
            {"type": "text", "text": "add these"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAAN"}},
            {"type": "text", "text": "The user attached the file \"list.md\" (text/markdown):\n\n- milk\n- eggs\n"},
            {"type": "text", "text": "[The user attached the image \"huge.png\" (1.5 KB), but it is over the 1.0 KB limit for images sent to you, so it is left out: tell the user if it matters.]"},
            {"type": "text", "text": format!("The user attached the file \"notes.txt\" (text/plain):\n\n{}\n\n[The file is cut here: only its first 256 bytes of 300 bytes are included.]", "a".repeat(255))},
            {"type": "text", "text": "[The user attached the file \"report.pdf\" (application/pdf, 12 bytes); its contents cannot be sent to you.]"}
        ]})
    );

    // A message without files is sent as plain text, as before.
    agent
        .respond(
            request(&user, &[], "and now?", &[]),
            &tools,
            &EventSink::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        last_message(&model, 1),
        json!({"role": "user", "content": "and now?"})
    );
}

#[tokio::test]
async fn dictation_is_sent_as_multipart_to_audio_transcriptions() {
    let model = FakeModel::start(vec![]).await;
    let agent = openai(&model, |_| {});
    let audio: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    model.push_transcript(Ok("  remind me to call mom \n"));
    let heard = agent
        .transcribe(audio.clone().into(), "audio/webm;codecs=opus")
        .await
        .unwrap();
    assert_eq!(heard, "remind me to call mom");
    let seen = &model.transcriptions()[0];
    assert_eq!(seen.fields, ["model", "file"]);
    assert_eq!(seen.model.as_deref(), Some("gpt-4o-mini-transcribe"));
    assert_eq!(seen.file_name.as_deref(), Some("audio.webm"));
    assert_eq!(seen.file_type.as_deref(), Some("audio/webm"));
    assert_eq!(seen.file, audio, "every byte arrives as sent");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-test"));
    // No chat call is made for it.
    assert!(model.requests().is_empty());

    // The configured model; each recording type under the name providers read it by.
    let agent = openai(&model, |s| {
        s.agent.openai.transcription_model = "whisper-1".into();
    });
    for (mime, name, sent_type) in [
        ("audio/ogg", "audio.ogg", "audio/ogg"),
        ("audio/mp4", "audio.m4a", "audio/mp4"),
        ("audio/mpeg", "audio.mp3", "audio/mpeg"),
        ("audio/wav", "audio.wav", "audio/wav"),
    ] {
        model.push_transcript(Ok(mime));
        let heard = agent.transcribe(vec![1, 2, 3].into(), mime).await.unwrap();
        assert_eq!(heard, mime);
        let seen = model.transcriptions().pop().unwrap();
        assert_eq!(seen.model.as_deref(), Some("whisper-1"));
        assert_eq!(seen.file_name.as_deref(), Some(name), "{mime}");
        assert_eq!(seen.file_type.as_deref(), Some(sent_type), "{mime}");
        assert_eq!(seen.file, [1, 2, 3]);
    }
}

#[tokio::test]
async fn dictation_goes_over_the_providers_tls_with_its_private_ca_like_model_calls() {
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let model = FakeModel::start_tls(Fake::default(), vec![], alpn).await;
    let agent = openai(&model, |s| {
        s.agent.openai.ca_file = Some(tls_fixture("ca.pem"));
    });
    model.push_transcript(Ok("over tls"));
    let heard = agent.transcribe(vec![9; 64].into(), "audio/ogg").await;
    assert_eq!(heard.unwrap(), "over tls");
    assert_eq!(model.transcriptions()[0].file, [9; 64]);
    assert_eq!(
        model.transcriptions()[0].authorization.as_deref(),
        Some("Bearer sk-test")
    );
    // Without the CA the provider's certificate is not trusted: no call reaches it.
    let untrusting = openai(&model, |s| s.agent.openai.max_retries = 0);
    let err = untrusting
        .transcribe(vec![9; 64].into(), "audio/ogg")
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");
    assert_eq!(model.transcriptions().len(), 1);
}

#[tokio::test]
async fn a_failed_transcription_is_unavailable_after_the_retries_a_model_call_gets() {
    let model = FakeModel::start(vec![]).await;
    let agent = openai(&model, |s| s.agent.openai.max_retries = 1);
    // A 503 is retried, and the retry's text is the answer.
    model.push_transcript(Err(503));
    model.push_transcript(Ok("second try"));
    let heard = agent.transcribe(vec![7; 10].into(), "audio/webm").await;
    assert_eq!(heard.unwrap(), "second try");
    assert_eq!(model.transcriptions().len(), 2);

    // A 400 is not retried.
    model.push_transcript(Err(400));
    let err = agent
        .transcribe(vec![7; 10].into(), "audio/webm")
        .await
        .unwrap_err();
    assert_eq!(model.transcriptions().len(), 3);
    let AgentError::Unavailable(reason) = err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("HTTP 400"), "{reason}");
    assert!(!reason.contains("sk-test"), "the key stays out: {reason}");
    // A provider that quotes the key it refused: the key is taken out of the reason.
    model.push_transcript(Err(401));
    let err = agent
        .transcribe(vec![7; 10].into(), "audio/webm")
        .await
        .unwrap_err();
    let AgentError::Unavailable(reason) = err else {
        panic!("{err:?}");
    };
    assert!(
        reason.ends_with("HTTP 401 Unauthorized: {\"error\":{\"message\":\"Incorrect API key provided: [api key]\",\"type\":\"invalid_request_error\"}}"),
        "{reason}"
    );

    // Down after its retries (nothing scripted: 500, twice).
    let err = agent
        .transcribe(vec![7; 10].into(), "audio/webm")
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");
    assert_eq!(model.transcriptions().len(), 6);

    // Nobody listening at all.
    let gone = openai(&model, |s| {
        s.agent.openai.base_url = "http://127.0.0.1:9/v1".into();
        s.agent.openai.max_retries = 0;
    });
    let err = gone
        .transcribe(vec![7; 10].into(), "audio/webm")
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_recording_over_max_audio_bytes_is_never_sent() {
    let model = FakeModel::start(vec![]).await;
    let agent = openai(&model, |s| s.agent.openai.max_audio_bytes = 2048);
    model.push_transcript(Ok("fits"));
    let err = agent
        .transcribe(vec![0; 2049].into(), "audio/webm")
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");
    assert!(model.transcriptions().is_empty());
    // At the limit it goes.
    let heard = agent.transcribe(vec![0; 2048].into(), "audio/webm").await;
    assert_eq!(heard.unwrap(), "fits");
    assert_eq!(model.transcriptions()[0].file.len(), 2048);
}

#[tokio::test]
async fn a_chatkit_message_with_files_reaches_the_model_as_content_parts() {
    use base64::Engine as _;
    let model = FakeModel::start(vec![text(&["Got them."])]).await;
    let app = gateway(&model, |_| {}).await;
    let t = app.login("alice").await;
    let image = uploaded(&app, &t, "board.png", "image/png", &png(100)).await;
    let list = uploaded(&app, &t, "todo.txt", "text/plain", b"milk\neggs\n").await;
    let mut input = chatkit_input("add these");
    input["attachments"] = json!([image["id"], list["id"]]);
    let a = app
        .chatkit(&t)
        .request("threads.create", json!({ "input": input }))
        .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let data = base64::engine::general_purpose::STANDARD.encode(png(100));
    assert_eq!(
        last_message(&model, 0),
        json!({"role": "user", "content": [
            {"type": "text", "text": "add these"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
            {"type": "text", "text": "The user attached the file \"todo.txt\" (text/plain):\n\nmilk\neggs\n"}
        ]})
    );
    // The next turn sends that message as its text: the files went with it once.
    model.push(text(&["Sure."]));
    let b = app.chatkit(&t).add_message(&a.thread_id(), "thanks").await;
    assert_eq!(b.status, 200, "{}", b.raw);
    let sent = model.requests()[1]["messages"].clone();
    let users: Vec<&Value> = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .collect();
    assert_eq!(
        users,
        [
            &json!({"role": "user", "content": "add these"}),
            &json!({"role": "user", "content": "thanks"})
        ]
    );
}

#[tokio::test]
async fn chatkit_dictation_is_transcribed_by_the_provider_over_multipart() {
    use base64::Engine as _;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&model, |s| s.agent.openai.max_retries = 0).await;
    let t = app.login("alice").await;
    let audio: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let params = json!({
        "audio_base64": base64::engine::general_purpose::STANDARD.encode(&audio),
        "mime_type": "audio/webm;codecs=opus",
    });
    model.push_transcript(Ok("remind me to call mom"));
    let a = app
        .chatkit(&t)
        .request("input.transcribe", params.clone())
        .await;
    assert_eq!(a.ok(), &json!({"text": "remind me to call mom"}));
    let seen = &model.transcriptions()[0];
    assert_eq!(seen.model.as_deref(), Some("gpt-4o-mini-transcribe"));
    assert_eq!(seen.file_name.as_deref(), Some("audio.webm"));
    assert_eq!(seen.file, audio);
    // The provider refusing it is the provider's failure, not the user's.
    model.push_transcript(Err(400));
    let a = app.chatkit(&t).request("input.transcribe", params).await;
    a.error(502, "transcription.failed");
    // Nothing was recorded: the answer must not promise a saved message.
    assert!(!a.raw.contains("saved, retry"), "{}", a.raw);
}
