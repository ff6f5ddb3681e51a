//! End to end with the real Better Auth (npm `better-auth`, jwt + bearer plugins, in-memory
//! adapter), run by Node from tests/better-auth/: a user signs up, gets a JWT from
//! /api/auth/token, and the gateway exchanges it and serves the thread API with it.
//! Fixture tests: they need Node >= 20 and `npm ci` in tests/better-auth
//! (scripts/setup-fixtures.sh; see support/fixtures.rs).

use reqwest::Method;
use serde_json::Value;

use crate::support::{better_auth::BetterAuth, spawn_app_with};

async fn exchange_and_use(alg: &str) {
    let auth = BetterAuth::start(alg).await;
    let app = spawn_app_with(|s| {
        s.upstream.base_url = auth.info["base_url"].as_str().unwrap().to_owned();
        // JWKS only, as most Better Auth deployments run.
        s.upstream.hs256_secret = secrecy::SecretString::from("");
    })
    .await;

    let token = auth.info["token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], alg);

    let session = app
        .request(Method::POST, "/api/chatkit/session", Some(token), None, &[])
        .await
        .ok();
    assert_eq!(session["user_id"], auth.info["user_id"]);
    let secret = session["client_secret"].as_str().unwrap();
    let sent = app
        .send(secret, None, "add a task to try Better Auth")
        .await
        .ok();
    let thread = app
        .get(
            &format!(
                "/api/chatkit/threads/{}",
                sent["thread_id"].as_str().unwrap()
            ),
            secret,
        )
        .await
        .ok();
    assert_eq!(thread["message_count"], 2);
    let refreshed = app.refresh(secret).await.ok();
    app.get(
        "/api/chatkit/threads",
        refreshed["client_secret"].as_str().unwrap(),
    )
    .await
    .ok();

    // A tampered token from the same server is refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    app.request(
        Method::POST,
        "/api/chatkit/session",
        Some(&parts.join(".")),
        None,
        &[],
    )
    .await
    .assert_error(401, "auth.invalid_token");
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn real_better_auth_eddsa() {
    exchange_and_use("EdDSA").await;
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn real_better_auth_es256() {
    exchange_and_use("ES256").await;
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn real_better_auth_rs256() {
    exchange_and_use("RS256").await;
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn real_better_auth_ps256() {
    exchange_and_use("PS256").await;
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn real_better_auth_es512_is_refused_clearly() {
    let auth = BetterAuth::start("ES512").await;
    let app = spawn_app_with(|s| {
        s.upstream.base_url = auth.info["base_url"].as_str().unwrap().to_owned()
    })
    .await;
    let token = auth.info["token"].as_str().unwrap();
    app.request(Method::POST, "/api/chatkit/session", Some(token), None, &[])
        .await
        .assert_error(401, "auth.unsupported_algorithm");
}
