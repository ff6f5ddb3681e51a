//! The real binary killed with SIGKILL in the middle of a turn, then restarted on the same
//! database: the acknowledged user message is there, and a keyed retry gets it answered
//! exactly once.

use std::time::Duration;

use chatkit_gateway::{auth::AuthService, Settings};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::support::{
    model::{text, FakeModel, Script},
    wait::Gate,
    GatewayProcess, TestDb,
};

async fn start(db_url: &str, model_base: &str) -> GatewayProcess {
    GatewayProcess::start(
        db_url,
        &[
            ("AGENT_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", model_base),
            ("OPENAI_API_KEY", "sk-test"),
            ("GATEWAY__MESSAGES__STALE_PENDING_SECS", "1"),
        ],
    )
    .await
}

async fn post_keyed(
    client: reqwest::Client,
    base: String,
    secret: String,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/api/chatkit/messages"))
        .bearer_auth(secret)
        .header("idempotency-key", "crash-1")
        .json(&json!({"thread_id": null, "message": "plan my week"}))
        .send()
        .await
}

#[tokio::test]
async fn a_turn_killed_mid_answer_is_kept_and_a_keyed_retry_completes_it_once() {
    let db = TestDb::new().await;
    // The first call is held (the turn open) for as long as the test runs; the next one,
    // the retry's, is answered at once.
    let held = Gate::new();
    let model = FakeModel::start(vec![
        Script::Held(held, Box::new(text(&["Never sent."]))),
        text(&["Recovered."]),
    ])
    .await;
    let client = reqwest::Client::new();

    let first = start(&db.url, &model.base).await;
    let upstream = AuthService::dev_upstream_token(
        Settings::defaults().upstream.hs256_secret.expose_secret(),
        "alice",
        600,
    );
    let session = first
        .request(Method::POST, "/api/chatkit/session", Some(&upstream), None)
        .await
        .ok();
    let secret = session["client_secret"].as_str().unwrap().to_owned();
    let in_flight = tokio::spawn(post_keyed(
        client.clone(),
        first.base.clone(),
        secret.clone(),
    ));
    // The model has been asked: the user's turn is committed and the answer is under way.
    model.arrivals(1).await;
    drop(first); // SIGKILL, mid-turn
    let killed = in_flight.await.unwrap().map(|r| r.status());
    assert!(
        killed.is_err(),
        "the killed request got an answer: {killed:?}"
    );
    assert_eq!(model.requests().len(), 1);

    let second = start(&db.url, &model.base).await;
    // Past the stale window, the orphaned turn is the retry's to answer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let retry = post_keyed(client.clone(), second.base.clone(), secret.clone())
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["response"], "Recovered.");
    // Once: a second retry replays the stored answer without asking the model again.
    let calls = model.requests().len();
    let replay: Value = post_keyed(client.clone(), second.base.clone(), secret.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["response_id"], answer["response_id"]);
    assert_eq!(model.requests().len(), calls);
    let path = format!(
        "/api/chatkit/threads/{}/messages?order=asc",
        answer["thread_id"].as_str().unwrap()
    );
    let messages = second
        .request(Method::GET, &path, Some(&secret), None)
        .await
        .ok();
    let data = messages["data"].as_array().unwrap();
    let shape: Vec<(&str, &str)> = data
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shape,
        [("user", "plan my week"), ("assistant", "Recovered.")]
    );
    assert_eq!(data[0]["id"], answer["message_id"]);
}
