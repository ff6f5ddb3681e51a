//! Per-caller rate limits: the burst then 429 `rate_limited` with `Retry-After`, refill,
//! isolation between callers, the ChatKit turn refused before any stream, `/session` per
//! subject, `/refresh` per family, and the Redis-shared mode across two instances.

use std::time::Duration;

use chatkit_gateway::{auth::SessionSigner, config::RateLimit, Settings};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::support::{chatkit::input, fixtures, spawn_app_with, ApiResponse, TestApp};

fn limit(per_minute: u32, burst: u32) -> RateLimit {
    RateLimit { per_minute, burst }
}

/// Limits on, every one of them off except what `edit` sets.
fn limited(s: &mut Settings, edit: impl FnOnce(&mut Settings)) {
    s.rate_limits.enabled = true;
    s.rate_limits.turns = limit(0, 1);
    s.rate_limits.sessions = limit(0, 1);
    s.rate_limits.refreshes = limit(0, 1);
    edit(s);
}

/// A Redis key prefix of this test's own, so parallel tests never share a bucket.
fn unique_prefix() -> String {
    format!("chatkit-gateway-test:{}", uuid::Uuid::new_v4().simple())
}

#[track_caller]
fn assert_limited(reply: &ApiResponse) -> u64 {
    reply.assert_error(429, "rate_limited");
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After in whole seconds")
}

async fn new_thread(app: &TestApp, token: &str) -> String {
    app.create_thread(token, "limits").await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn turns_allow_the_burst_then_429_with_retry_after() {
    let app = spawn_app_with(|s| limited(s, |s| s.rate_limits.turns = limit(1, 2))).await;
    let token = app.login("alice").await;
    let thread = new_thread(&app, &token).await;
    app.say(&token, &thread, "one").await;
    app.say(&token, &thread, "two").await;
    let refused = app.send(&token, Some(&thread), "three").await;
    let wait = assert_limited(&refused);
    // One turn a minute: the next token is about a minute away.
    assert!((55..=60).contains(&wait), "Retry-After {wait}");
    // Streaming is refused the same way, as JSON, before any event.
    let streamed = app
        .request(
            reqwest::Method::POST,
            "/api/chatkit/messages",
            Some(&token),
            Some(json!({"thread_id": thread, "message": "four"})),
            &[("accept", "text/event-stream")],
        )
        .await;
    assert_limited(&streamed);
    // Refused turns were not recorded; reading is not limited.
    let messages = app.all_messages(&token, &thread).await;
    assert_eq!(messages.len(), 4, "two turns of two messages");
}

#[tokio::test]
async fn turns_refill_at_the_configured_rate() {
    // 600 a minute: one token every 100 ms, burst 1.
    let app = spawn_app_with(|s| limited(s, |s| s.rate_limits.turns = limit(600, 1))).await;
    let token = app.login("alice").await;
    let thread = new_thread(&app, &token).await;
    app.say(&token, &thread, "one").await;
    let refused = app.send(&token, Some(&thread), "too soon").await;
    assert_eq!(assert_limited(&refused), 1, "rounded up to a whole second");
    tokio::time::sleep(Duration::from_millis(250)).await;
    app.say(&token, &thread, "after the refill").await;
}

#[tokio::test]
async fn each_user_has_a_bucket_of_their_own() {
    let app = spawn_app_with(|s| limited(s, |s| s.rate_limits.turns = limit(1, 1))).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let (ta, tb) = (new_thread(&app, &alice).await, new_thread(&app, &bob).await);
    app.say(&alice, &ta, "hi").await;
    assert_limited(&app.send(&alice, Some(&ta), "again").await);
    app.say(&bob, &tb, "hi").await;
    assert_limited(&app.send(&bob, Some(&tb), "again").await);
    // Another session of alice's is still alice: the limit is per user, not per token.
    let alice2 = app.login("alice").await;
    assert_limited(&app.send(&alice2, Some(&ta), "new tab").await);
}

#[tokio::test]
async fn defaults_are_off_in_development_and_on_in_production() {
    let load = |env: &str| {
        Settings::load_from(&[
            ("APP_ENV".into(), env.into()),
            // The files on disk, as the service reads them in its working directory.
            ("APP_CONFIG_DIR".into(), "config".into()),
            (
                "CHATKIT_SESSION_SECRET".into(),
                "a-strong-random-session-secret-0123456789".into(),
            ),
            (
                "BETTER_AUTH_SECRET".into(),
                "a-strong-random-upstream-secret-987654321".into(),
            ),
        ])
        .unwrap()
    };
    let dev = load("development");
    assert!(!dev.rate_limits.enabled);
    let prod = load("production");
    assert!(prod.rate_limits.enabled);
    assert_eq!(
        (
            prod.rate_limits.turns.per_minute,
            prod.rate_limits.turns.burst
        ),
        (30, 10)
    );
    assert!(prod.rate_limits.redis_url.expose_secret().is_empty());
    let shared = Settings::load_from(&[
        ("APP_CONFIG_DIR".into(), "/nonexistent".into()),
        ("REDIS_URL".into(), "http://127.0.0.1:6379".into()),
    ])
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(shared.contains("REDIS_URL"), "{shared}");
}

#[tokio::test]
async fn the_chatkit_turn_is_limited_before_streaming() {
    let app = spawn_app_with(|s| limited(s, |s| s.rate_limits.turns = limit(1, 1))).await;
    let token = app.login("alice").await;
    let ck = app.chatkit(&token);
    ck.create("hello").await;
    let refused = ck
        .request("threads.create", json!({ "input": input("again") }))
        .await;
    refused.error(429, "rate_limited");
    let retry_after = refused.headers["retry-after"].to_str().unwrap();
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    // A REST turn draws from the same bucket.
    let thread = new_thread(&app, &token).await;
    assert_limited(&app.send(&token, Some(&thread), "via REST").await);
    // Requests that run no turn are not limited.
    ck.request("threads.list", json!({})).await.ok();
}

#[tokio::test]
async fn sessions_are_limited_per_upstream_subject() {
    let app = spawn_app_with(|s| limited(s, |s| s.rate_limits.sessions = limit(1, 2))).await;
    app.login("alice").await;
    app.login("alice").await;
    let upstream = app.upstream_token("alice");
    let refused = app
        .request(
            reqwest::Method::POST,
            "/api/chatkit/session",
            Some(&upstream),
            None,
            &[],
        )
        .await;
    assert_limited(&refused);
    app.login("bob").await;
}

#[tokio::test]
async fn refreshes_are_limited_per_session_family() {
    let app = spawn_app_with(|s| limited(s, |s| s.rate_limits.refreshes = limit(1, 1))).await;
    let first = app.login("alice").await;
    let rotated = app.refresh(&first).await.ok()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // Refused before the refresh ran: the token was not consumed, so no reuse is
    // detected and it still works once the bucket refills.
    assert_limited(&app.refresh(&rotated).await);
    let listed = app.get("/api/chatkit/threads", &rotated).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    // A token naming another family but not signed by us uses up none of its refreshes.
    let other = app.login("alice").await;
    let mut claims = app.signer().verify(&other).unwrap();
    claims.jti = "jti_forged".into();
    let mut wrong = app.settings.session.clone();
    wrong.secret = SecretString::from("another-key-nobody-here-knows-0123456789abcdef");
    let forged = SessionSigner::new(&wrong).sign(&claims);
    let reply = app.refresh(&forged).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // That other family of the same user has its own bucket, still full.
    app.refresh(&other).await.ok();
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn redis_shares_one_limit_between_two_instances() {
    let redis_url = fixtures::redis_url();
    let prefix = unique_prefix();
    let a = spawn_app_with(|s| {
        limited(s, |s| {
            s.rate_limits.turns = limit(1, 3);
            s.rate_limits.redis_url = SecretString::from(redis_url);
            s.rate_limits.redis_key_prefix = prefix.clone();
            // Generous: a loaded CI machine must not push the check into the fallback.
            s.rate_limits.redis_timeout_ms = 5000;
        });
    })
    .await;
    let b = a.another_instance().await;
    let token = a.login("alice").await;
    let thread = new_thread(&a, &token).await;
    a.say(&token, &thread, "one on A").await;
    b.say(&token, &thread, "two on B").await;
    a.say(&token, &thread, "three on A").await;
    // Per instance, B would still have two left; shared, the bucket is empty on both.
    let wait = assert_limited(&b.send(&token, Some(&thread), "four on B").await);
    assert!((55..=60).contains(&wait), "Retry-After {wait}");
    assert_limited(&a.send(&token, Some(&thread), "four on A").await);
    // The bucket is in Redis, under this test's prefix, and expires on its own.
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:turn:alice"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "PTTL {ttl}");
    // Another user in the same Redis is not affected.
    let bob = b.login("bob").await;
    let bob_thread = new_thread(&b, &bob).await;
    a.say(&bob, &bob_thread, "hi").await;
}

#[tokio::test]
async fn without_redis_each_instance_still_limits_on_its_own() {
    // Nothing listens on port 1: the limiter falls back to this instance's buckets rather
    // than failing or letting everything through.
    let app = spawn_app_with(|s| {
        limited(s, |s| {
            s.rate_limits.turns = limit(1, 1);
            s.rate_limits.redis_url = SecretString::from("redis://127.0.0.1:1");
            s.rate_limits.redis_key_prefix = unique_prefix();
        });
    })
    .await;
    let token = app.login("alice").await;
    let thread = new_thread(&app, &token).await;
    app.say(&token, &thread, "one").await;
    assert_limited(&app.send(&token, Some(&thread), "two").await);
}
