use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use async_trait::async_trait;
use chatkit_gateway::agent::{
    Agent, AgentAnswer, AgentError, AgentRequest, EventSink, LocalAgent, TaskTools,
};
use reqwest::Method;
use serde_json::json;

use crate::support::{roles, spawn_app, spawn_app_with, spawn_app_with_agent, wait::Gate, TestApp};

/// The local agent, failing its first `failures` calls as an unreachable model would.
struct FlakyAgent {
    failures: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl Agent for FlakyAgent {
    async fn respond(
        &self,
        req: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failed = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(AgentError::Unavailable("model offline".into()));
        }
        LocalAgent.respond(req, tools, events).await
    }
}

async fn flaky_app(failures: usize) -> (TestApp, Arc<FlakyAgent>) {
    let agent = Arc::new(FlakyAgent {
        failures: AtomicUsize::new(failures),
        calls: AtomicUsize::new(0),
    });
    let app = spawn_app_with_agent(agent.clone(), |_| {}).await;
    (app, agent)
}

#[tokio::test]
async fn first_message_creates_a_thread_and_records_both_turns() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let reply = app.send(&t, None, "Add a task to buy milk").await.ok();
    assert_eq!(reply["response"], "Added task 1: buy milk.");
    assert_eq!(
        reply["tool_calls"],
        json!([{
            "tool": "add_task", "args": {"title": "buy milk"},
            "result": reply["tool_calls"][0]["result"].clone()
        }])
    );
    assert_eq!(reply["tool_calls"][0]["result"]["task"]["task_id"], 1);
    let thread_id = reply["thread_id"].as_str().unwrap();
    let thread = app.thread(&t, thread_id).await;
    assert_eq!(thread["title"], "Add a task to buy milk");
    assert_eq!(thread["message_count"], 2);
    let messages = thread["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["id"], reply["message_id"]);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["status"], "completed");
    assert_eq!(messages[1]["id"], reply["response_id"]);
    assert_eq!(messages[1]["content"], "Added task 1: buy milk.");
    assert!(thread["updated_at"].as_str() >= thread["created_at"].as_str());
}

#[tokio::test]
async fn invalid_messages_are_refused_and_record_nothing() {
    let app = spawn_app_with(|s| s.messages.max_chars = 50).await;
    let t = app.login("alice").await;
    let thread = app.create_thread(&t, "x").await;
    let id = thread["id"].as_str().unwrap();
    app.send(&t, Some(id), "   ")
        .await
        .assert_error(422, "message.empty");
    app.send(&t, Some(id), &"é".repeat(51))
        .await
        .assert_error(422, "message.too_long");
    app.send(&t, Some(id), &"é".repeat(50)).await.ok();
    app.post("/api/chatkit/messages", &t, json!({"thread_id": id}))
        .await
        .assert_error(400, "request.malformed");
    app.request(
        Method::POST,
        "/api/chatkit/messages",
        Some(&t),
        Some(json!({"thread_id": id, "message": "hi"})),
        &[("idempotency-key", "has space")],
    )
    .await
    .assert_error(422, "request.invalid");
    app.send(&t, Some("thr_nope"), "hello")
        .await
        .assert_error(404, "thread.not_found");
    app.send(&t, None, "")
        .await
        .assert_error(422, "message.empty");
    assert_eq!(app.all_messages(&t, id).await.len(), 2);
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    assert_eq!(
        threads["threads"].as_array().unwrap().len(),
        1,
        "no thread created by refused messages"
    );
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_stored_result() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let first = app
        .send_keyed(&t, None, "add a task to buy milk", "key-1")
        .await
        .ok();
    let again = app
        .send_keyed(&t, None, "add a task to buy milk", "key-1")
        .await
        .ok();
    assert_eq!(first, again);
    let id = first["thread_id"].as_str().unwrap();
    assert_eq!(app.all_messages(&t, id).await.len(), 2);
    assert_eq!(
        app.get("/api/chatkit/threads", &t).await.ok()["threads"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let list = app.send(&t, Some(id), "list my tasks").await.ok();
    assert_eq!(
        list["response"], "Your tasks:\n1. [ ] buy milk",
        "the tool ran once"
    );
    // Same key, different request.
    app.send_keyed(&t, None, "add a task to buy eggs", "key-1")
        .await
        .assert_error(422, "idempotency.mismatch");
    // Keys are per user.
    let bob = app.login("bob").await;
    let bobs = app
        .send_keyed(&bob, None, "add a task to buy milk", "key-1")
        .await
        .ok();
    assert_ne!(bobs["thread_id"], first["thread_id"]);
}

#[tokio::test]
async fn a_failed_agent_keeps_the_message_and_a_retry_completes_it() {
    let (app, agent) = flaky_app(1).await;
    let t = app.login("alice").await;
    let failed = app
        .send_keyed(&t, None, "add a task to buy milk", "retry-1")
        .await;
    failed.assert_error(502, "agent.unavailable");
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    let thread = &threads["threads"][0];
    assert_eq!(thread["message_count"], 1);
    let id = thread["id"].as_str().unwrap();
    let messages = app.all_messages(&t, id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "add a task to buy milk");
    assert_eq!(messages[0]["status"], "failed");

    let retried = app
        .send_keyed(&t, None, "add a task to buy milk", "retry-1")
        .await
        .ok();
    assert_eq!(retried["thread_id"], id);
    assert_eq!(retried["message_id"], messages[0]["id"]);
    assert_eq!(retried["response"], "Added task 1: buy milk.");
    let messages = app.all_messages(&t, id).await;
    assert_eq!(
        messages.len(),
        2,
        "the user's message was not recorded twice"
    );
    assert_eq!(messages[0]["status"], "completed");
    assert_eq!(agent.calls.load(Ordering::SeqCst), 2);
    // A later retry replays without running the agent.
    app.send_keyed(&t, None, "add a task to buy milk", "retry-1")
        .await
        .ok();
    assert_eq!(agent.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_agent_without_a_key_still_keeps_the_message() {
    let (app, _agent) = flaky_app(1).await;
    let t = app.login("alice").await;
    let thread = app.create_thread(&t, "x").await;
    let id = thread["id"].as_str().unwrap();
    app.send(&t, Some(id), "list my tasks")
        .await
        .assert_error(502, "agent.unavailable");
    app.send(&t, Some(id), "list my tasks").await.ok();
    let messages = app.all_messages(&t, id).await;
    let shape = roles(&messages);
    assert_eq!(
        shape,
        [
            ("user", "failed"),
            ("user", "completed"),
            ("assistant", "completed")
        ]
    );
    let detail = app.thread(&t, id).await;
    assert_eq!(detail["message_count"], 3);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_record_one_turn() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let results = futures_util::future::join_all(
        (0..6).map(|_| app.send_keyed(&t, None, "add a task to buy milk", "race-1")),
    )
    .await;
    let ok: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert!(!ok.is_empty());
    for r in &results {
        assert!(
            r.status == 200 || r.code() == "idempotency.in_progress",
            "{r:?}"
        );
    }
    let thread_ids: std::collections::HashSet<_> =
        ok.iter().map(|r| r.body["thread_id"].clone()).collect();
    assert_eq!(thread_ids.len(), 1);
    let threads = app.get("/api/chatkit/threads", &t).await.ok();
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1);
    let id = threads["threads"][0]["id"].as_str().unwrap();
    let messages = app.all_messages(&t, id).await;
    assert_eq!(messages.len(), 2, "{messages:#?} {results:#?}");
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let sent = app
        .send(&t, None, "add a task to renew passport")
        .await
        .ok();
    let app = app.restart().await;
    // The client_secret is stateless: it still works on the new process.
    let id = sent["thread_id"].as_str().unwrap();
    let thread = app.thread(&t, id).await;
    assert_eq!(thread["message_count"], 2);
    let listed = app.send(&t, Some(id), "list my tasks").await.ok();
    assert_eq!(listed["response"], "Your tasks:\n1. [ ] renew passport");
}

/// The local agent, held at its gate first: the test acts while it "thinks".
struct HeldAgent(Gate);

#[async_trait]
impl Agent for HeldAgent {
    async fn respond(
        &self,
        req: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        self.0.pass().await;
        LocalAgent.respond(req, tools, events).await
    }
}

#[tokio::test]
async fn deleting_the_thread_while_the_agent_runs_records_nothing() {
    let hold = Gate::new();
    let app = spawn_app_with_agent(Arc::new(HeldAgent(hold.clone())), |_| {}).await;
    let t = app.login("alice").await;
    let thread = app.create_thread(&t, "short-lived").await;
    let id = thread["id"].as_str().unwrap().to_owned();
    let sending = app.send(&t, Some(&id), "add a task to vanish");
    let deleting = async {
        hold.arrivals(1).await;
        let deleted = app.delete(&format!("/api/chatkit/threads/{id}"), &t).await;
        hold.open();
        deleted
    };
    let (sent, deleted) = tokio::join!(sending, deleting);
    assert_eq!(deleted.status, 204);
    sent.assert_error(404, "thread.not_found");
    app.get(&format!("/api/chatkit/threads/{id}"), &t)
        .await
        .assert_error(404, "thread.not_found");
}

#[tokio::test]
async fn many_concurrent_turns_are_all_recorded_in_order() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let shared = app.create_thread(&alice, "busy").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 30 turns into one thread, 10 new threads, 10 turns of another user, at once.
    let mut jobs: Vec<(&str, Option<&str>, String)> = Vec::new();
    for i in 0..30 {
        jobs.push((&alice, Some(&shared), format!("add a task to item {i}")));
    }
    for i in 0..10 {
        jobs.push((&alice, None, format!("add a task to fresh {i}")));
        jobs.push((&bob, None, format!("add a task to bob {i}")));
    }
    let requests = jobs
        .iter()
        .map(|(token, thread, text)| app.send(token, *thread, text));
    let replies = futures_util::future::join_all(requests).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().find(|r| r.status != 200)
    );
    let messages = app.all_messages(&alice, &shared).await;
    assert_eq!(messages.len(), 60);
    let detail = app.thread(&alice, &shared).await;
    assert_eq!(detail["message_count"], 60);
    // Each assistant reply follows its own user message somewhere later in the thread.
    for reply in &replies[..30] {
        let user_at = messages
            .iter()
            .position(|m| m["id"] == reply.body["message_id"])
            .unwrap();
        let reply_at = messages
            .iter()
            .position(|m| m["id"] == reply.body["response_id"])
            .unwrap();
        assert!(user_at < reply_at);
    }
    // Task numbers were handed out once each.
    let mut numbers: Vec<i64> = replies
        .iter()
        .filter(|r| {
            r.body["thread_id"] == shared.as_str()
                || r.body["response"].as_str().unwrap().contains("fresh")
        })
        .map(|r| {
            r.body["tool_calls"][0]["result"]["task"]["task_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
    assert_eq!(
        app.get("/api/chatkit/threads", &bob).await.ok()["threads"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
}

#[tokio::test]
async fn a_stale_turn_is_reclaimed_and_only_one_answer_is_recorded() {
    // Every pending turn counts as stale at once: a keyed retry takes over a turn whose
    // first run is still going, as it would after the first instance died.
    let hold = Gate::new();
    let agent = Arc::new(HeldAgent(hold.clone()));
    let app = spawn_app_with_agent(agent, |s| s.messages.stale_pending_secs = 0).await;
    let t = app.login("alice").await;
    let first = app.send_keyed(&t, None, "list my tasks", "stale-1");
    let second = async {
        // The first run is at work; the retry takes the turn over and runs it too. Then
        // both may finish.
        hold.arrivals(1).await;
        let (second, ()) = tokio::join!(
            app.send_keyed(&t, None, "list my tasks", "stale-1"),
            async {
                hold.arrivals(2).await;
                hold.open();
            }
        );
        second
    };
    let (first, second) = tokio::join!(first, second);
    let (first, second) = (first.ok(), second.ok());
    assert_eq!(first, second, "both callers get the one recorded answer");
    let id = first["thread_id"].as_str().unwrap();
    let messages = app.all_messages(&t, id).await;
    assert_eq!(
        roles(&messages),
        [("user", "completed"), ("assistant", "completed")]
    );
    assert_eq!(messages[1]["id"], first["response_id"]);
}
