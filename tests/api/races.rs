//! Requests that race on one thread: every outcome is a clean status, never a 500, and
//! what is recorded matches what was acknowledged.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn deleting_a_thread_while_messages_pour_in_never_fails_with_500() {
    let (app, _db) = spawn_app().await;
    let token = app.login("alice").await;
    for round in 0..6 {
        let thread = app.create_thread(&token, &format!("race {round}")).await;
        let tid = thread["id"].as_str().unwrap().to_owned();
        let posts = (0..40).map(|i| {
            let (app, token, tid) = (&app, &token, &tid);
            async move {
                let r = app
                    .post(
                        "/api/chatkit/messages",
                        token,
                        json!({"thread_id": tid, "message": format!("add a task to r{round} n{i}")}),
                    )
                    .await;
                (r.status.as_u16(), r.body)
            }
        });
        let delete = async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let r = app
                .delete(&format!("/api/chatkit/threads/{tid}"), &token)
                .await;
            (r.status.as_u16(), r.body)
        };
        let (posts, deleted) = tokio::join!(futures_util::future::join_all(posts), delete);
        assert!(
            matches!(deleted.0, 204 | 404 | 409),
            "delete answered {}: {}",
            deleted.0,
            deleted.1
        );
        for (status, body) in &posts {
            assert!(
                matches!(status, 200 | 404 | 409),
                "post answered {status}: {body}"
            );
        }
        // The thread is gone, and with it every item: nothing half-written survives.
        app.get(&format!("/api/chatkit/threads/{tid}"), &token)
            .await
            .assert_error(404, "thread.not_found");
    }
}
