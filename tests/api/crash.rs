//! The real binary killed with SIGKILL in the middle of a turn, then restarted on the same
//! database: the acknowledged user message is there, and a keyed retry gets it answered
//! exactly once.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use chatkit_gateway::{auth::AuthService, Settings};
use poem::{handler, post, web::Data, Body, EndpointExt, Response, Route};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::helpers::{serve_on_loopback, GatewayProcess, TestDb};

/// A model API that hangs (holding the turn open) until told to answer.
#[derive(Clone, Default)]
struct Model {
    answer: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

#[handler]
async fn completions(model: Data<&Model>) -> Response {
    model.calls.fetch_add(1, Ordering::SeqCst);
    if !model.answer.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": "c", "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let body = format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(json!({"role": "assistant", "content": "Recovered."}), None),
        chunk(json!({}), Some("stop")),
    );
    Response::builder()
        .content_type("text/event-stream")
        .body(Body::from_string(body))
}

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

async fn post_keyed(client: &reqwest::Client, base: &str, secret: &str) -> reqwest::Response {
    client
        .post(format!("{base}/api/chatkit/messages"))
        .bearer_auth(secret)
        .header("idempotency-key", "crash-1")
        .json(&json!({"thread_id": null, "message": "plan my week"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_turn_killed_mid_answer_is_kept_and_a_keyed_retry_completes_it_once() {
    let db = TestDb::new().await;
    let model = Model::default();
    let model_base = serve_on_loopback(
        Route::new()
            .at("/v1/chat/completions", post(completions))
            .data(model.clone()),
    )
    .await;
    let model_base = format!("{model_base}/v1");
    let client = reqwest::Client::new();

    let first = start(&db.url, &model_base).await;
    let upstream = AuthService::dev_upstream_token(
        Settings::defaults().upstream.hs256_secret.expose_secret(),
        "alice",
        600,
    );
    let session: Value = client
        .post(format!("{}/api/chatkit/session", first.base))
        .bearer_auth(&upstream)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = session["client_secret"].as_str().unwrap().to_owned();
    let in_flight = {
        let (client, base, secret) = (client.clone(), first.base.clone(), secret.clone());
        tokio::spawn(async move {
            client
                .post(format!("{base}/api/chatkit/messages"))
                .bearer_auth(secret)
                .header("idempotency-key", "crash-1")
                .json(&json!({"thread_id": null, "message": "plan my week"}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    // The model has been asked: the user's turn is committed and the answer is under way.
    for _ in 0..200 {
        if model.calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(model.calls.load(Ordering::SeqCst), 1);
    drop(first); // SIGKILL, mid-turn
    let killed = in_flight.await.unwrap();
    assert!(
        killed.is_err(),
        "the killed request got an answer: {killed:?}"
    );

    model.answer.store(true, Ordering::SeqCst);
    let second = start(&db.url, &model_base).await;
    // Past the stale window, the orphaned turn is the retry's to answer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let retry = post_keyed(&client, &second.base, &secret).await;
    assert_eq!(retry.status(), 200);
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["response"], "Recovered.");
    // Once: a second retry replays the stored answer without asking the model again.
    let calls = model.calls.load(Ordering::SeqCst);
    let replay: Value = post_keyed(&client, &second.base, &secret)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replay["response_id"], answer["response_id"]);
    assert_eq!(model.calls.load(Ordering::SeqCst), calls);
    let messages: Value = client
        .get(format!(
            "{}/api/chatkit/threads/{}/messages?order=asc",
            second.base,
            answer["thread_id"].as_str().unwrap()
        ))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
