//! Tools from the app's MCP server, against a REAL MCP server: the official
//! Python SDK's FastMCP serving a todo app's tools (tests/mcp/todo_server.py), which
//! verifies the gateway's identity token on every request and keeps tasks per `sub`.
//! The model is a fake OpenAI-compatible API that scripts the tool calls.
//!
//! The server runs from the venv tests/mcp/setup.sh creates (or `MCP_TEST_PYTHON`); its
//! tests are fixture tests (see support/fixtures.rs).

use serde_json::{json, Value};

use chatkit_gateway::{config::AgentProvider, Settings};

use crate::support::{
    mcp::{TodoServer, SECRET},
    model::{call, text, FakeModel},
    roles, spawn_app_with,
    wait::{eventually, within},
    TestApp,
};

// ---- the gateway ---------------------------------------------------------------------

async fn gateway(
    server: &TodoServer,
    model: Option<&FakeModel>,
    edit: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_with(|s| {
        if let Some(model) = model {
            s.agent.provider = AgentProvider::OpenAi;
            s.agent.openai.base_url = model.base.clone();
            s.agent.openai.model = "fake-model".into();
            s.agent.openai.max_retries = 0;
        }
        s.agent.mcp_servers = vec![server.settings()];
        edit(s);
    })
    .await
}

/// `/readyz`'s report of the one MCP server, once `pred` holds.
async fn mcp_state(app: &TestApp, pred: impl Fn(&Value) -> bool) -> Value {
    eventually("the MCP server's state in /readyz", || async {
        let state = app.ready().await["mcp_servers"][0].clone();
        pred(&state).then_some(state)
    })
    .await
}

const SERVER_TOOLS: [&str; 13] = [
    "add_task",
    "list_tasks",
    "search_tasks",
    "complete_task",
    "reopen_task",
    "update_task",
    "set_due_date",
    "set_priority",
    "delete_task",
    "clear_completed",
    "task_counts",
    "slow_task",
    "enable_reports",
];

// ---- the tests -----------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn the_servers_tools_are_offered_and_a_call_carries_the_users_identity() {
    let server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |_| {}).await;
    let state = mcp_state(&app, |s| s["state"] == "ready").await;
    assert_eq!(
        state,
        json!({"name": "app", "state": "ready", "tools": 13}),
        "{state}"
    );
    model.script(vec![
        call("add_task", json!({"title": "buy milk"})),
        text(&["Added task 1: buy milk."]),
    ]);
    let alice = app.login("alice").await;
    let reply = app.send(&alice, None, "add a task to buy milk").await.ok();
    assert_eq!(reply["response"], "Added task 1: buy milk.");
    // Offered: exactly the server's tools (the built-in ones are off), schemas as given.
    let mut offered = model.offered(0);
    offered.sort();
    let mut expected: Vec<String> = SERVER_TOOLS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(offered, expected);
    let add = model.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "add_task")
        .unwrap()
        .clone();
    assert_eq!(
        add["function"]["description"],
        "Add a task to the user's list."
    );
    assert_eq!(add["function"]["parameters"]["required"], json!(["title"]));
    assert_eq!(
        add["function"]["parameters"]["properties"]["title"]["type"],
        "string"
    );
    // The server's result went back to the model, and is recorded.
    let task = json!({"task_id": 1, "title": "buy milk", "description": null,
                      "completed": false, "due_date": null, "priority": "medium"});
    assert_eq!(model.tool_result(1), json!({"task": task}));
    assert_eq!(
        reply["tool_calls"],
        json!([{"tool": "add_task", "args": {"title": "buy milk"}, "result": {"task": task}}])
    );
    let tid = reply["thread_id"].as_str().unwrap();
    // ChatKit shows the recorded call as a workflow task (read back from the database).
    let items = app
        .chatkit(&alice)
        .request("items.list", json!({"thread_id": tid, "order": "asc"}))
        .await;
    let items = items.ok();
    assert_eq!(items["data"][1]["type"], "workflow");
    assert_eq!(
        items["data"][1]["workflow"]["tasks"][0]["title"],
        "Added task 1: buy milk"
    );
    // The server verified a fresh token naming alice, its own name and the gateway.
    let calls = server.calls().await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let id = &calls[0];
    assert_eq!(
        (&id["sub"], &id["aud"], &id["iss"]),
        (&json!("alice"), &json!("app"), &json!("chatkit-gateway"))
    );
    assert!(id["ttl"].as_i64().unwrap() <= 60);
    // The configured static header came along.
    assert_eq!(id["x_app_version"], "1");
    assert_eq!(id["client"], "chatkit-gateway");
    // Never the user's own credential.
    assert_ne!(id["authorization"], json!(format!("Bearer {alice}")));
    assert!(!id["authorization"]
        .as_str()
        .unwrap()
        .contains(&app.upstream_token("alice")));
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn alice_cannot_touch_bobs_tasks_and_a_tool_error_reaches_the_model() {
    let server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |_| {}).await;
    let bob = app.login("bob").await;
    let alice = app.login("alice").await;
    model.script(vec![
        call("add_task", json!({"title": "bob's secret"})),
        text(&["Done."]),
    ]);
    app.send(&bob, None, "add bob's secret").await.ok();
    // Alice's turn sees none of bob's tasks, and completing "task 1" fails for her.
    model.script(vec![
        call("list_tasks", json!({})),
        call("complete_task", json!({"task_id": 1})),
        text(&["You have no task 1."]),
    ]);
    let reply = app.send(&alice, None, "complete task 1").await.ok();
    assert_eq!(reply["response"], "You have no task 1.");
    assert_eq!(model.tool_result(3), json!({"tasks": []}));
    let error = model.tool_result(4);
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("task 1 not found"),
        "{error}"
    );
    // The error is recorded with the call, as the model saw it.
    assert_eq!(reply["tool_calls"][1]["tool"], "complete_task");
    assert_eq!(reply["tool_calls"][1]["result"], error);
    // Bob's task is untouched.
    model.script(vec![call("list_tasks", json!({})), text(&["One task."])]);
    app.send(&bob, None, "list").await.ok();
    let tasks = model.tool_result(6)["tasks"].clone();
    assert_eq!(tasks[0]["title"], "bob's secret");
    assert_eq!(tasks[0]["completed"], false);
    let subs: Vec<Value> = server
        .calls()
        .await
        .iter()
        .map(|c| c["sub"].clone())
        .collect();
    assert_eq!(
        subs,
        json!(["bob", "alice", "alice", "bob"])
            .as_array()
            .unwrap()
            .clone()
    );
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn a_slow_tool_times_out_and_the_turn_still_answers() {
    let server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |s| {
        s.agent.mcp_servers[0].timeout_secs = 1;
    })
    .await;
    let alice = app.login("alice").await;
    // The tool would answer in ten minutes: the turn can only be answered by the gateway
    // giving up on it.
    model.script(vec![
        call("slow_task", json!({"seconds": 600})),
        text(&["That took too long."]),
    ]);
    let reply = within(
        "the turn answered without the slow tool",
        app.send(&alice, None, "do the slow thing"),
    )
    .await
    .ok();
    assert_eq!(reply["response"], "That took too long.");
    let result = model.tool_result(1);
    assert_eq!(
        result,
        json!({"error": "the tool \"slow_task\" did not answer within 1 s"})
    );
    assert_eq!(reply["tool_calls"][0]["result"], result);
    // The server is still fine for the next turn.
    model.script(vec![call("task_counts", json!({})), text(&["Zero."])]);
    app.send(&alice, None, "how many").await.ok();
    assert_eq!(
        model.tool_result(3),
        json!({"total": 0, "pending": 0, "completed": 0})
    );
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn a_server_that_goes_down_fails_the_turn_clearly_and_a_restart_recovers() {
    let mut server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |_| {}).await;
    let alice = app.login("alice").await;
    model.script(vec![
        call("add_task", json!({"title": "one"})),
        text(&["Added."]),
    ]);
    let first = app.send(&alice, None, "add one").await.ok();
    let tid = first["thread_id"].as_str().unwrap().to_owned();
    server.stop();
    model.script(vec![call("list_tasks", json!({})), text(&["unreachable"])]);
    let failed = app.send(&alice, Some(&tid), "list my tasks").await;
    failed.assert_error(502, "agent.unavailable");
    // The user's turn is kept, marked failed.
    let messages = app.all_messages(&alice, &tid).await;
    assert_eq!(
        roles(&messages),
        [
            ("user", "completed"),
            ("assistant", "completed"),
            ("user", "failed")
        ]
    );
    let state = mcp_state(&app, |s| s["state"] == "down").await;
    assert_eq!(state["state"], "down", "{state}");
    assert!(state["error"].is_string());
    // A restarted server (empty store: it is in memory) serves the very next turn.
    server.restart().await;
    model.forget_scripts();
    model.script(vec![
        call("add_task", json!({"title": "two"})),
        text(&["Added again."]),
    ]);
    let reply = app.send(&alice, Some(&tid), "add two").await.ok();
    assert_eq!(reply["response"], "Added again.");
    assert_eq!(reply["tool_calls"][0]["result"]["task"]["title"], "two");
    assert_eq!(
        mcp_state(&app, |s| s["state"] == "ready").await["state"],
        "ready"
    );
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn a_server_restarted_between_turns_is_reconnected_without_a_failed_turn() {
    let mut server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |_| {}).await;
    let alice = app.login("alice").await;
    model.script(vec![call("task_counts", json!({})), text(&["None."])]);
    app.send(&alice, None, "count").await.ok();
    server.stop();
    server.restart().await;
    // The old session is gone on the new process; the next call still gets through.
    model.script(vec![
        call("add_task", json!({"title": "after restart"})),
        text(&["Added."]),
    ]);
    let reply = app.send(&alice, None, "add").await.ok();
    assert_eq!(
        reply["tool_calls"][0]["result"]["task"]["title"],
        "after restart"
    );
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn a_tool_list_change_is_picked_up() {
    let server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |_| {}).await;
    let alice = app.login("alice").await;
    model.script(vec![call("enable_reports", json!({})), text(&["Enabled."])]);
    app.send(&alice, None, "enable reports").await.ok();
    assert!(!model.offered(0).contains(&"weekly_report".to_owned()));
    let state = mcp_state(&app, |s| s["tools"] == 14).await;
    assert_eq!(state["tools"], 14, "{state}");
    model.script(vec![call("weekly_report", json!({})), text(&["All good."])]);
    app.send(&alice, None, "weekly report").await.ok();
    assert!(model.offered(2).contains(&"weekly_report".to_owned()));
    assert_eq!(
        model.tool_result(3),
        json!({"report": "all good", "for": "alice"})
    );
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn the_local_agent_drives_the_servers_add_task_and_list_tasks() {
    let server = TodoServer::start().await;
    let app = gateway(&server, None, |_| {}).await;
    let alice = app.login("alice").await;
    let added = app.send(&alice, None, "add a task to buy milk").await.ok();
    assert_eq!(added["response"], "Added task 1: buy milk.");
    assert_eq!(added["tool_calls"][0]["tool"], "add_task");
    assert_eq!(
        added["tool_calls"][0]["result"]["task"]["priority"],
        "medium"
    );
    let listed = app.send(&alice, None, "list my tasks").await.ok();
    assert_eq!(listed["response"], "Your tasks:\n1. [ ] buy milk");
    let calls = server.calls().await;
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["sub"] == "alice"));
    // Bob's list, on the same server, is his own.
    let bob = app.login("bob").await;
    let his = app.send(&bob, None, "list my tasks").await.ok();
    assert_eq!(
        his["response"],
        "You have no tasks yet. Try \"add a task to buy milk\"."
    );
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn the_local_agent_says_which_tools_it_cannot_reach() {
    let server = TodoServer::start().await;
    let app = gateway(&server, None, |s| {
        s.agent.mcp_servers[0].tools = Some(vec!["list_tasks".into(), "task_counts".into()]);
    })
    .await;
    let alice = app.login("alice").await;
    let reply = app.send(&alice, None, "add a task to buy milk").await.ok();
    assert_eq!(
        reply["response"],
        "I can't reach the `add_task` tool: the app's tool server (app) offers none that takes title. Its tools: list_tasks, task_counts."
    );
    assert_eq!(reply["tool_calls"], json!([]));
    assert!(server.calls().await.is_empty());
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn with_builtin_tools_on_a_colliding_server_tool_is_prefixed() {
    let server = TodoServer::start().await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |s| {
        s.agent.builtin_tools = Some(true);
    })
    .await;
    let alice = app.login("alice").await;
    model.script(vec![
        call("app__add_task", json!({"title": "on the server"})),
        call("add_task", json!({"title": "in the gateway"})),
        text(&["Both."]),
    ]);
    let reply = app.send(&alice, None, "add both").await.ok();
    let offered = model.offered(0);
    for name in [
        "add_task",
        "list_tasks",
        "app__add_task",
        "app__list_tasks",
        "search_tasks",
    ] {
        assert!(offered.contains(&name.to_owned()), "{name} in {offered:?}");
    }
    assert_eq!(
        reply["tool_calls"][0]["result"]["task"]["priority"],
        "medium"
    );
    assert!(reply["tool_calls"][1]["result"]["task"]["created_at"].is_string());
    assert_eq!(server.calls().await.len(), 1);
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn tools_of_two_servers_stay_distinct_and_each_gets_its_own_audience() {
    let app_server = TodoServer::start().await;
    let crm = TodoServer::start_named("crm").await;
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&app_server, Some(&model), |s| {
        s.agent.mcp_servers.push(crm.settings());
        s.agent.mcp_servers[1].tools = Some(vec!["add_task".into(), "task_counts".into()]);
    })
    .await;
    let alice = app.login("alice").await;
    model.script(vec![
        call("crm__add_task", json!({"title": "call the client"})),
        call("search_tasks", json!({"query": "client"})),
        text(&["Done."]),
    ]);
    app.send(&alice, None, "note it").await.ok();
    let offered = model.offered(0);
    // Shared names are prefixed on both sides; unique ones keep their names.
    for name in [
        "app__add_task",
        "crm__add_task",
        "app__task_counts",
        "crm__task_counts",
        "search_tasks",
    ] {
        assert!(offered.contains(&name.to_owned()), "{name} in {offered:?}");
    }
    assert!(!offered.contains(&"add_task".to_owned()));
    assert_eq!(offered.len(), 13 + 2);
    // The call went to crm, with a token for crm; the app server has no such task.
    assert_eq!(model.tool_result(2), json!({"tasks": []}));
    let crm_calls = crm.calls().await;
    assert_eq!(crm_calls.len(), 1);
    assert_eq!(
        (&crm_calls[0]["aud"], &crm_calls[0]["sub"]),
        (&json!("crm"), &json!("alice"))
    );
    assert_eq!(app_server.calls().await[0]["aud"], "app");
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn a_server_down_at_start_up_does_not_stop_the_gateway() {
    let mut server = TodoServer::start().await;
    server.stop();
    let model = FakeModel::start(vec![]).await;
    let app = gateway(&server, Some(&model), |_| {}).await;
    let ready = app.ready().await;
    assert_eq!(ready["status"], "ready");
    let state = mcp_state(&app, |s| s["state"] == "down").await;
    assert_eq!(state["state"], "down");
    let alice = app.login("alice").await;
    app.send(&alice, None, "hi")
        .await
        .assert_error(502, "agent.unavailable");
    // The model was never asked: the turn failed before it.
    assert!(model.requests().is_empty());
    server.restart().await;
    model.script(vec![text(&["Hello."])]);
    assert_eq!(
        app.send(&alice, None, "hi").await.ok()["response"],
        "Hello."
    );
}

// ---- configuration -------------------------------------------------------------------

fn load(vars: &[(&str, &str)]) -> Result<Settings, String> {
    let mut all: Vec<(String, String)> = vec![("APP_CONFIG_DIR".into(), "/nonexistent".into())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_from(&all).map_err(|e| e.to_string())
}

#[test]
fn two_settings_point_the_gateway_at_an_app() {
    let s = load(&[
        ("MCP_SERVER_URL", "http://127.0.0.1:8000/mcp"),
        ("MCP_IDENTITY_SECRET", SECRET),
    ])
    .unwrap();
    assert_eq!(s.agent.mcp_servers.len(), 1);
    let app = &s.agent.mcp_servers[0];
    assert_eq!(
        (app.name.as_str(), app.url.as_str()),
        ("app", "http://127.0.0.1:8000/mcp")
    );
    assert_eq!(app.timeout_secs, 30);
    assert!(!s.agent.builtin_tools_enabled());
    let named = load(&[
        ("MCP_SERVER_URL", "https://todo.example/mcp"),
        ("MCP_SERVER_NAME", "todo"),
        ("MCP_IDENTITY_SECRET", SECRET),
        ("GATEWAY__AGENT__BUILTIN_TOOLS", "true"),
    ])
    .unwrap();
    assert_eq!(named.agent.mcp_servers[0].name, "todo");
    assert!(named.agent.builtin_tools_enabled());
    assert!(load(&[]).unwrap().agent.builtin_tools_enabled());
}

#[test]
fn bad_mcp_settings_refuse_to_start() {
    let url = ("MCP_SERVER_URL", "http://127.0.0.1:8000/mcp");
    let err = load(&[url]).unwrap_err();
    assert!(
        err.contains("identity_secret (MCP_IDENTITY_SECRET) is missing"),
        "{err}"
    );
    let err = load(&[
        ("MCP_SERVER_URL", "ftp://x"),
        ("MCP_IDENTITY_SECRET", SECRET),
    ])
    .unwrap_err();
    assert!(err.contains("must be an http(s) URL"), "{err}");
    let err = load(&[
        url,
        ("MCP_SERVER_NAME", "my app"),
        ("MCP_IDENTITY_SECRET", SECRET),
    ])
    .unwrap_err();
    assert!(err.contains("letters, digits"), "{err}");
    let err = load(&[("GATEWAY__AGENT__BUILTIN_TOOLS", "false")]).unwrap_err();
    assert!(err.contains("without tools"), "{err}");
    // Production wants a real secret: long enough and random-looking.
    let prod = [
        ("APP_ENV", "production"),
        (
            "CHATKIT_SESSION_SECRET",
            "prod-session-secret-0123456789-abcdefghijkl",
        ),
        (
            "BETTER_AUTH_SECRET",
            "prod-upstream-secret-ZYXWVUTSRQ-9876543210-mnop",
        ),
    ];
    let short: Vec<_> = prod
        .iter()
        .copied()
        .chain([url, ("MCP_IDENTITY_SECRET", "short-secret")])
        .collect();
    let err = load(&short).unwrap_err();
    assert!(err.contains("it must be at least 32"), "{err}");
    let ok: Vec<_> = prod
        .iter()
        .copied()
        .chain([url, ("MCP_IDENTITY_SECRET", SECRET)])
        .collect();
    load(&ok).unwrap();
}

#[test]
fn servers_are_configured_in_toml_and_the_variables_replace_one_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("development.toml"),
        format!(
            r#"
[agent]
builtin_tools = true

[[agent.mcp_servers]]
name = "app"
url = "http://127.0.0.1:8000/mcp"
identity_secret = "{SECRET}"
headers = {{ "x-api-version" = "2" }}
tools = ["add_task", "list_tasks"]
timeout_secs = 5

[[agent.mcp_servers]]
name = "crm"
url = "https://crm.example/mcp"
identity_secret = "{SECRET}"
"#
        ),
    )
    .unwrap();
    let base = [("APP_CONFIG_DIR", dir.path().to_str().unwrap())];
    let vars: Vec<(String, String)> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let s = Settings::load_from(&vars).unwrap();
    let names: Vec<&str> = s
        .agent
        .mcp_servers
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["app", "crm"]);
    let app = &s.agent.mcp_servers[0];
    assert_eq!(app.headers["x-api-version"], "2");
    assert_eq!(
        app.tools.as_deref(),
        Some(&["add_task".to_owned(), "list_tasks".to_owned()][..])
    );
    assert_eq!(app.timeout_secs, 5);
    assert_eq!(s.agent.mcp_servers[1].timeout_secs, 30);
    assert!(s.agent.builtin_tools_enabled());
    // MCP_SERVER_URL moves the server of the same name (`app` by default), which keeps
    // its other options.
    let mut with_env = vars.clone();
    with_env.push(("MCP_SERVER_URL".into(), "http://10.0.0.2/mcp".into()));
    let s = Settings::load_from(&with_env).unwrap();
    let urls: Vec<(&str, &str)> = s
        .agent
        .mcp_servers
        .iter()
        .map(|m| (m.name.as_str(), m.url.as_str()))
        .collect();
    assert_eq!(
        urls,
        [
            ("crm", "https://crm.example/mcp"),
            ("app", "http://10.0.0.2/mcp")
        ]
    );
    // Static headers may not carry the identity's header.
    std::fs::write(
        dir.path().join("development.toml"),
        format!(
            "[[agent.mcp_servers]]\nname = \"app\"\nurl = \"http://x/mcp\"\nidentity_secret = \"{SECRET}\"\nheaders = {{ Authorization = \"Bearer x\" }}\n"
        ),
    )
    .unwrap();
    let err = Settings::load_from(&vars).unwrap_err().to_string();
    assert!(err.contains("must not set Authorization"), "{err}");
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn the_servers_tasks_get_a_widget_whose_clicks_go_through_the_server() {
    let server = TodoServer::start().await;
    let app = gateway(&server, None, |_| {}).await;
    let alice = app.login("alice").await;
    let ck = app.chatkit(&alice);
    let added = ck.create("add a task to buy milk").await;
    let widget = added.events.last().unwrap()["item"].clone();
    assert_eq!(widget["type"], "widget", "{}", added.raw);
    assert_eq!(widget["copy_text"], "Task added\n[ ] 1. buy milk");
    let tid = added.thread_id();
    // The click runs the server's own complete and reopen tools, as Alice: the widget
    // shows what the server answered.
    for (kind, line) in [
        ("task.complete", "[x] 1. buy milk"),
        ("task.reopen", "[ ] 1. buy milk"),
    ] {
        let before = server.calls().await.len();
        let done = ck
            .request(
                "threads.custom_action",
                json!({"thread_id": tid, "item_id": widget["id"],
                       "action": {"type": kind, "payload": {"task_id": 1}}}),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.raw);
        let replaced = done
            .events
            .iter()
            .find(|e| e["type"] == "thread.item.replaced")
            .unwrap();
        assert_eq!(replaced["item"]["copy_text"], format!("Task added\n{line}"));
        assert!(done.events.iter().any(|e| e["item"]["type"] == "workflow"));
        let calls = server.calls().await;
        assert_eq!(calls.len(), before + 1, "{calls:?}");
        assert_eq!(calls.last().unwrap()["sub"], "alice", "{calls:?}");
    }
    // Bob cannot reach Alice's widget, and so not her task on the server.
    let bob = app.login("bob").await;
    app.chatkit(&bob)
        .request(
            "threads.custom_action",
            json!({"thread_id": tid, "item_id": widget["id"],
                   "action": {"type": "task.delete", "payload": {"task_id": 1}}}),
        )
        .await
        .error(404, "thread.not_found");
}
