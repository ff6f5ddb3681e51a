//! End to end with the real Better Auth (npm `better-auth`, jwt + bearer plugins, in-memory
//! adapter), run by Node from tests/better-auth/: a user signs up, gets a JWT from
//! /api/auth/token, and the gateway exchanges it and serves the thread API with it.
//! Needs Node >= 20 and `npm ci` in tests/better-auth (scripts/test.sh and .ci/run do it).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::Method;
use serde_json::Value;

use crate::helpers::spawn_app_with;

/// A running Better Auth server; killed when dropped.
struct BetterAuth {
    child: Child,
    info: Value,
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn better_auth(alg: &str) -> BetterAuth {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/better-auth");
    assert!(
        std::path::Path::new(dir).join("node_modules/better-auth").exists(),
        "better-auth is not installed: run `npm ci --prefix tests/better-auth` (scripts/test.sh does)"
    );
    let mut child = Command::new("node")
        .arg(format!("{dir}/server.mjs"))
        .env("ALG", alg)
        // Piped stdin: the server exits when this test process goes away.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (Node >= 20 is needed for this test)");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("Better Auth started within 60 s")
    .unwrap()
    .unwrap();
    let info: Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("fixture printed {line:?}"));
    BetterAuth { child, info }
}

async fn exchange_and_use(alg: &str) {
    let auth = better_auth(alg).await;
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
async fn real_better_auth_eddsa() {
    exchange_and_use("EdDSA").await;
}

#[tokio::test]
async fn real_better_auth_es256() {
    exchange_and_use("ES256").await;
}

#[tokio::test]
async fn real_better_auth_rs256() {
    exchange_and_use("RS256").await;
}

#[tokio::test]
async fn real_better_auth_ps256() {
    exchange_and_use("PS256").await;
}

#[tokio::test]
async fn real_better_auth_es512_is_refused_clearly() {
    let auth = better_auth("ES512").await;
    let app = spawn_app_with(|s| {
        s.upstream.base_url = auth.info["base_url"].as_str().unwrap().to_owned()
    })
    .await;
    let token = auth.info["token"].as_str().unwrap();
    app.request(Method::POST, "/api/chatkit/session", Some(token), None, &[])
        .await
        .assert_error(401, "auth.unsupported_algorithm");
}
