//! Several instances over one database, as deployed behind a load balancer. On PostgreSQL
//! these are the scale-out guarantees; on SQLite the same tests run two servers in one
//! process over one file, which is the only multi-server shape SQLite supports.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};

use crate::support::{spawn_app_with, spawn_with, test_settings, wait::eventually, TestDb};

#[tokio::test]
async fn instances_started_together_migrate_exactly_once() {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    let (a, b, c, d) = tokio::join!(
        spawn_with(settings.clone(), None),
        spawn_with(settings.clone(), None),
        spawn_with(settings.clone(), None),
        spawn_with(settings.clone(), None),
    );
    for app in [&a, &b, &c, &d] {
        let secret = app.login("alice").await;
        app.get("/api/chatkit/threads", &secret).await.ok();
    }
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all(Statement::from_string(
            backend,
            "SELECT version, COUNT(*) AS n FROM seaql_migrations GROUP BY version",
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty(), "migrations were recorded");
    for row in rows {
        let version: String = row.try_get("", "version").unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 1, "migration {version} recorded {n} times");
    }
    conn.close().await.ok();
}

#[tokio::test]
async fn a_session_minted_on_one_instance_is_used_and_refreshed_on_another() {
    let a = spawn_app_with(|_| {}).await;
    let b = a.another_instance().await;
    let secret = a.login("alice").await;
    let thread = b.create_thread(&secret, "made on B").await;
    let next = b.refresh(&secret).await.ok();
    let next = next["client_secret"].as_str().expect("client_secret");
    let listed = a.get("/api/chatkit/threads", next).await.ok();
    assert_eq!(listed["threads"][0]["id"], thread["id"], "{listed}");
}

#[tokio::test]
async fn refresh_reuse_is_detected_across_instances() {
    let a = spawn_app_with(|s| s.session.refresh_race_window_secs = 0).await;
    let b = a.another_instance().await;
    let secret = a.login("alice").await;
    let next = a.refresh(&secret).await.ok();
    let next = next["client_secret"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.refresh(&secret)
        .await
        .assert_error(401, "auth.token_reused");
    // Reuse signs the whole family out, on both instances.
    a.refresh(&next).await.assert_error(401, "auth.revoked");
}

#[tokio::test]
async fn an_idempotent_retry_is_answered_by_another_instance() {
    let a = spawn_app_with(|_| {}).await;
    let b = a.another_instance().await;
    let secret = a.login("alice").await;
    let thread = a.create_thread(&secret, "t").await;
    let id = thread["id"].as_str().unwrap();
    let first = a.send_keyed(&secret, Some(id), "hello", "key-1").await.ok();
    let retry = b.send_keyed(&secret, Some(id), "hello", "key-1").await.ok();
    assert_eq!(first, retry, "the retry replays the recorded answer");
    assert_eq!(b.all_messages(&secret, id).await.len(), 2, "answered once");
}

#[tokio::test]
async fn one_instance_serves_while_the_other_restarts() {
    let a = spawn_app_with(|_| {}).await;
    let b = a.another_instance().await;
    let secret = a.login("alice").await;
    let restarting = tokio::spawn(async move { b.restart().await });
    for _ in 0..10 {
        a.get("/api/chatkit/threads", &secret).await.ok();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = restarting.await.unwrap();
    b.get("/api/chatkit/threads", &secret).await.ok();
    a.get("/api/chatkit/threads", &secret).await.ok();
}

/// A sign-out on A is refused on B at once on PostgreSQL (A announces it with `NOTIFY`, B's
/// listener drops its cached answer). SQLite has no such channel (one process serves the
/// file), so there the guarantee is the cache TTL, which is what this asserts instead.
///
/// No timing: on PostgreSQL the cache TTL is an hour, so a refusal while the test waits can
/// only come from the notification (locally it takes a few milliseconds); on SQLite, B is
/// shown to answer from its cache right after the sign-out, then to refuse once the TTL
/// (two seconds) has passed.
#[tokio::test]
async fn a_sign_out_on_one_instance_is_refused_on_the_other() {
    // The same rule TestDb uses to pick the database.
    let on_postgres =
        std::env::var("TEST_DATABASE_URL").is_ok_and(|url| url.starts_with("postgres"));
    let ttl_secs = if on_postgres { 3_600 } else { 2 };
    let a = spawn_app_with(|s| s.session.revocation_cache_ttl_secs = ttl_secs).await;
    let b = a.another_instance().await;
    for (all, path) in [
        (false, "/api/chatkit/session"),
        (true, "/api/chatkit/session?all=true"),
    ] {
        let secret = a.login("alice").await;
        // B caches "not revoked" for this family and user.
        b.get("/api/chatkit/threads", &secret).await.ok();
        assert_eq!(a.delete(path, &secret).await.status, 204, "all={all}");
        if !on_postgres {
            // Still served from B's cache: the sign-out has not reached it.
            b.get("/api/chatkit/threads", &secret).await.ok();
        }
        let what = format!("B refusing the revoked session (all={all})");
        let refused = eventually(&what, || async {
            let reply = b.get("/api/chatkit/threads", &secret).await;
            (reply.status == 401).then_some(reply)
        })
        .await;
        refused.assert_error(401, "auth.revoked");
    }
}

/// Revocations older than any token they could cover are purged, by several instances at
/// once without harm, and a recent one survives.
#[tokio::test]
async fn old_revocations_are_purged_safely_by_several_instances() {
    use chatkit_gateway::{domain::UserId, store::Store};
    let db = TestDb::new().await;
    let open = || Store::connect(&db.url, 2, Duration::from_secs(5));
    let (one, two) = (open().await.unwrap(), open().await.unwrap());
    one.migrate().await.unwrap();
    let (old, fresh) = (
        UserId::parse("old").unwrap(),
        UserId::parse("fresh").unwrap(),
    );
    let long_ago = chrono::Utc::now() - chrono::Duration::days(60);
    one.revoke_all(&old, long_ago).await.unwrap();
    one.revoke_family(&fresh, "sid_recent").await.unwrap();
    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
    let (a, b) = tokio::join!(one.purge_revocations(cutoff), two.purge_revocations(cutoff));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "the old row went, once");
    let gone = one.revocation_state(&old, "sid_any").await.unwrap();
    assert_eq!(gone.user_not_before, None);
    let kept = two.revocation_state(&fresh, "sid_recent").await.unwrap();
    assert!(kept.family_revoked, "a recent revocation is kept");
}
