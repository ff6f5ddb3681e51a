use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{spawn_app, spawn_app_with, TestDb};

#[tokio::test]
async fn session_exchanges_an_upstream_token_for_a_client_secret() {
    let app = spawn_app().await;
    let session = app.start_session("alice").await;
    assert_eq!(session["user_id"], "alice");
    assert_eq!(session["expires_in"], 1800);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(session["expires_at"].as_str().unwrap()).unwrap();
    let in_secs = expires_at.timestamp() - chrono::Utc::now().timestamp();
    assert!((1790..=1801).contains(&in_secs), "expires in {in_secs}s");
    let secret = session["client_secret"].as_str().unwrap();
    let claims = app.signer().verify(secret).unwrap();
    assert_eq!(
        (
            claims.sub.as_str(),
            claims.typ.as_str(),
            claims.aud.as_str()
        ),
        ("alice", "chatkit_session", "chatkit")
    );
    assert!(claims.sid.starts_with("sid_") && claims.jti.starts_with("jti_"));
    app.get("/api/chatkit/threads", secret).await.ok();
}

#[tokio::test]
async fn session_refuses_bad_upstream_tokens() {
    let app = spawn_app().await;
    let post = |token: Option<String>| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/api/chatkit/session",
                token.as_deref(),
                None,
                &[],
            )
            .await
        }
    };
    let missing = post(None).await;
    missing.assert_error(401, "auth.missing_token");
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    post(Some("not-a-jwt".into()))
        .await
        .assert_error(401, "auth.invalid_token");
    // Signed with another secret.
    let forged = chatkit_gateway::auth::AuthService::dev_upstream_token(
        "another-secret-another-secret-xx",
        "alice",
        600,
    );
    post(Some(forged))
        .await
        .assert_error(401, "auth.invalid_token");
    // Expired beyond the 30 s leeway.
    let secret =
        secrecy::ExposeSecret::expose_secret(&app.settings.upstream.hs256_secret).to_owned();
    let now = chrono::Utc::now().timestamp();
    let sign = |claims: serde_json::Value, alg: jsonwebtoken::Algorithm| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    post(Some(sign(
        json!({"sub": "alice", "exp": now - 120}),
        jsonwebtoken::Algorithm::HS256,
    )))
    .await
    .assert_error(401, "auth.expired");
    // Within the leeway it still passes.
    post(Some(sign(
        json!({"sub": "alice", "exp": now - 5}),
        jsonwebtoken::Algorithm::HS256,
    )))
    .await
    .ok();
    // No exp at all, no subject, or an algorithm outside the allow-list.
    post(Some(sign(
        json!({"sub": "alice"}),
        jsonwebtoken::Algorithm::HS256,
    )))
    .await
    .assert_error(401, "auth.invalid_token");
    post(Some(sign(
        json!({"exp": now + 60}),
        jsonwebtoken::Algorithm::HS256,
    )))
    .await
    .assert_error(401, "auth.invalid_token");
    post(Some(sign(
        json!({"sub": "alice", "exp": now + 60}),
        jsonwebtoken::Algorithm::HS512,
    )))
    .await
    .assert_error(401, "auth.unsupported_algorithm");
    // alg=none, built by hand.
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "alice", "exp": now + 60}))
    );
    post(Some(none))
        .await
        .assert_error(401, "auth.invalid_token");
}

#[tokio::test]
async fn upstream_tokens_and_client_secrets_are_not_interchangeable() {
    let app = spawn_app().await;
    let upstream = app.upstream_token("alice");
    app.get("/api/chatkit/threads", &upstream)
        .await
        .assert_error(401, "auth.invalid_token");
    let client_secret = app.login("alice").await;
    app.request(
        Method::POST,
        "/api/chatkit/session",
        Some(&client_secret),
        None,
        &[],
    )
    .await
    .assert_error(401, "auth.invalid_token");
    // A client_secret with the right signature but the wrong typ or audience.
    let wrong_typ = app.forge_session("alice", |c| c.typ = "access".into());
    app.get("/api/chatkit/threads", &wrong_typ)
        .await
        .assert_error(401, "auth.invalid_token");
    let wrong_aud = app.forge_session("alice", |c| c.aud = "other".into());
    app.get("/api/chatkit/threads", &wrong_aud)
        .await
        .assert_error(401, "auth.invalid_token");
    let expired = app.forge_session("alice", |c| c.exp = chrono::Utc::now().timestamp() - 60);
    app.get("/api/chatkit/threads", &expired)
        .await
        .assert_error(401, "auth.expired");
}

#[tokio::test]
async fn a_client_secret_that_worked_is_refused_once_it_expires() {
    // Verified tokens are kept between requests; expiry must still be read off the clock.
    let app = spawn_app_with(|s| s.session.leeway_secs = 0).await;
    let secret = app.forge_session("alice", |c| c.exp = chrono::Utc::now().timestamp() + 3);
    app.get("/api/chatkit/threads", &secret).await.ok();
    app.get("/api/chatkit/threads", &secret).await.ok();
    // A token that differs from it by one character of its signature was never verified.
    let at = secret.rfind('.').unwrap() + 1;
    let first = if secret[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{first}{}", &secret[..at], &secret[at + 1..]);
    app.get("/api/chatkit/threads", &tampered)
        .await
        .assert_error(401, "auth.invalid_token");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    app.get("/api/chatkit/threads", &secret)
        .await
        .assert_error(401, "auth.expired");
}

#[tokio::test]
async fn refresh_rotates_and_detects_reuse() {
    let app = spawn_app_with(|s| s.session.refresh_race_window_secs = 1).await;

    let first = app.login("alice").await;
    let second = app.refresh(&first).await.ok();
    let second_secret = second["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(second_secret, first);
    assert_eq!(second["user_id"], "alice");
    let (c1, c2) = (
        app.signer().verify(&first).unwrap(),
        app.signer().verify(&second_secret).unwrap(),
    );
    assert_eq!(c1.sid, c2.sid, "refresh keeps the session family");
    assert_eq!(c1.auth_time, c2.auth_time);
    assert_ne!(c1.jti, c2.jti);

    // Two tabs refreshing the same token at once: both get the same successor.
    let again = app.refresh(&first).await.ok();
    assert_eq!(again["client_secret"], second_secret.as_str());

    // Later reuse of a rotated-away token signs the whole family out.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    app.refresh(&first)
        .await
        .assert_error(401, "auth.token_reused");
    app.get("/api/chatkit/threads", &second_secret)
        .await
        .assert_error(401, "auth.revoked");
    app.refresh(&second_secret)
        .await
        .assert_error(401, "auth.revoked");
    // Another session of the same user is unaffected.
    let other = app.login("alice").await;
    app.get("/api/chatkit/threads", &other).await.ok();
}

#[tokio::test]
async fn refresh_honours_grace_period_and_maximum_age() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    // Expired an hour ago: still refreshable within the 24 h grace period.
    let expired = app.forge_session("alice", |c| c.exp = now - 3600);
    let fresh = app.refresh(&expired).await.ok();
    app.get(
        "/api/chatkit/threads",
        fresh["client_secret"].as_str().unwrap(),
    )
    .await
    .ok();
    // Expired two days ago: not any more.
    let stale = app.forge_session("alice", |c| c.exp = now - 2 * 86_400);
    app.refresh(&stale).await.assert_error(401, "auth.expired");
    // A family started eight days ago is past the 7-day maximum.
    let old_family = app.forge_session("alice", |c| c.auth_time = now - 8 * 86_400);
    app.refresh(&old_family)
        .await
        .assert_error(401, "auth.session_too_old");
    // Not a client_secret at all.
    app.refresh(&app.upstream_token("alice"))
        .await
        .assert_error(401, "auth.invalid_token");
    app.refresh("garbage")
        .await
        .assert_error(401, "auth.invalid_token");
    app.request(
        Method::POST,
        "/api/chatkit/refresh",
        None,
        Some(json!({"tok": "x"})),
        &[],
    )
    .await
    .assert_error(400, "request.malformed");
}

#[tokio::test]
async fn refresh_checks_an_upstream_bearer_when_sent_or_required() {
    let app = spawn_app_with(|s| s.session.require_upstream_on_refresh = true).await;
    let secret = app.login("alice").await;
    app.refresh(&secret)
        .await
        .assert_error(401, "auth.missing_token");
    let bob = app.upstream_token("bob");
    let body = Some(json!({"token": secret}));
    app.request(
        Method::POST,
        "/api/chatkit/refresh",
        Some(&bob),
        body.clone(),
        &[],
    )
    .await
    .assert_error(401, "auth.user_mismatch");
    let alice = app.upstream_token("alice");
    app.request(
        Method::POST,
        "/api/chatkit/refresh",
        Some(&alice),
        body,
        &[],
    )
    .await
    .ok();
}

#[tokio::test]
async fn delete_session_revokes_the_family_or_every_session() {
    let app = spawn_app().await;
    let a1 = app.login("alice").await;
    let a2 = app.login("alice").await;
    let b = app.login("bob").await;
    let reply = app.delete("/api/chatkit/session", &a1).await;
    assert_eq!(reply.status, 204);
    app.get("/api/chatkit/threads", &a1)
        .await
        .assert_error(401, "auth.revoked");
    app.refresh(&a1).await.assert_error(401, "auth.revoked");
    app.get("/api/chatkit/threads", &a2).await.ok();

    let reply = app.delete("/api/chatkit/session?all=true", &a2).await;
    assert_eq!(reply.status, 204);
    app.get("/api/chatkit/threads", &a2)
        .await
        .assert_error(401, "auth.revoked");
    app.get("/api/chatkit/threads", &b).await.ok();
    // Signing in again after a sign-out everywhere works.
    let again = app.login("alice").await;
    app.get("/api/chatkit/threads", &again).await.ok();
}

#[tokio::test]
async fn two_instances_agree_on_revocation_and_single_use_refresh() {
    let a = spawn_app_with(|s| {
        s.session.revocation_cache_ttl_secs = 1;
        s.session.refresh_race_window_secs = 0;
    })
    .await;
    let b = a.another_instance().await;

    let secret = a.login("alice").await;
    b.get("/api/chatkit/threads", &secret).await.ok();
    // Refreshed on A, then replayed on B after the (zero) race window: reuse is detected.
    a.refresh(&secret).await.ok();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.refresh(&secret)
        .await
        .assert_error(401, "auth.token_reused");

    // Revoked on A: B sees it once its cache entry expires.
    let other = a.login("alice").await;
    b.get("/api/chatkit/threads", &other).await.ok();
    assert_eq!(a.delete("/api/chatkit/session", &other).await.status, 204);
    a.get("/api/chatkit/threads", &other)
        .await
        .assert_error(401, "auth.revoked");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.get("/api/chatkit/threads", &other)
        .await
        .assert_error(401, "auth.revoked");
}

#[tokio::test]
async fn consumed_refresh_tokens_are_purged_once_they_cannot_matter() {
    use chatkit_gateway::{
        domain::UserId,
        store::{ConsumeOutcome, Store, Successor},
    };
    let next = Successor {
        jti: "jti_next".into(),
        iat: chrono::Utc::now().timestamp(),
    };
    let db = TestDb::new().await;
    let store = Store::connect(&db.url, 2, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let user = UserId::parse("alice").unwrap();
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(
        store
            .consume_token(&user, "jti_old", "sid_a", past, &next)
            .await
            .unwrap(),
        ConsumeOutcome::First
    );
    assert_eq!(
        store
            .consume_token(&user, "jti_live", "sid_a", future, &next)
            .await
            .unwrap(),
        ConsumeOutcome::First
    );
    assert!(matches!(
        store
            .consume_token(&user, "jti_live", "sid_a", future, &next)
            .await
            .unwrap(),
        ConsumeOutcome::Again { .. }
    ));
    assert_eq!(
        store
            .purge_consumed_tokens(chrono::Utc::now())
            .await
            .unwrap(),
        1
    );
    // The live one is still remembered; the purged one is gone.
    assert!(matches!(
        store
            .consume_token(&user, "jti_live", "sid_a", future, &next)
            .await
            .unwrap(),
        ConsumeOutcome::Again { .. }
    ));
    assert_eq!(
        store
            .consume_token(&user, "jti_old", "sid_a", future, &next)
            .await
            .unwrap(),
        ConsumeOutcome::First
    );
    store.close().await;
}

/// `n` refreshes of `token` at once, spread over `apps` in turn; the client_secrets they got.
async fn refresh_at_once(apps: &[&crate::support::TestApp], token: &str, n: usize) -> Vec<String> {
    let replies =
        futures_util::future::join_all((0..n).map(|i| apps[i % apps.len()].refresh(token))).await;
    replies
        .into_iter()
        .map(|r| r.ok()["client_secret"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_share_one_successor() {
    let app = spawn_app().await;
    let first = app.login("alice").await;
    let got = refresh_at_once(&[&app], &first, 20).await;
    let distinct: std::collections::HashSet<_> = got.iter().collect();
    assert_eq!(distinct.len(), 1, "one family, one live head");
    // The successor is a working client_secret that rotates in turn.
    let head = &got[0];
    app.get("/api/chatkit/threads", head).await.ok();
    let next = app.refresh(head).await.ok();
    assert_ne!(next["client_secret"], head.as_str());
}

#[tokio::test]
async fn two_instances_refreshing_one_token_at_once_agree_on_its_successor() {
    let a = spawn_app().await;
    let b = a.another_instance().await;
    let first = a.login("alice").await;
    let got = refresh_at_once(&[&a, &b], &first, 20).await;
    let distinct: std::collections::HashSet<_> = got.iter().collect();
    assert_eq!(
        distinct.len(),
        1,
        "the instances minted different successors"
    );
    b.get("/api/chatkit/threads", &got[0]).await.ok();
}
