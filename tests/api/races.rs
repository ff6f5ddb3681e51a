//! Requests that race on one thread: every outcome is a clean status, never a 500, and
//! what is recorded matches what was acknowledged.

use serde_json::json;

use crate::support::spawn_app;

#[tokio::test]
async fn deleting_a_thread_while_messages_pour_in_never_fails_with_500() {
    let app = spawn_app().await;
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

#[tokio::test]
async fn fifty_parallel_posts_with_one_key_record_one_turn_and_one_task() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let posts = (0..50).map(|_| {
        app.request(
            reqwest::Method::POST,
            "/api/chatkit/messages",
            Some(&token),
            Some(json!({"thread_id": null, "message": "add a task to buy milk"})),
            &[("idempotency-key", "fifty-1")],
        )
    });
    let replies = futures_util::future::join_all(posts).await;
    let mut answers = std::collections::HashSet::new();
    for r in &replies {
        match r.status.as_u16() {
            200 => {
                answers.insert((r.body["message_id"].clone(), r.body["response_id"].clone()));
            }
            409 => assert_eq!(r.code(), "idempotency.in_progress", "{:?}", r.body),
            other => panic!("answered {other}: {}", r.body),
        }
    }
    assert_eq!(answers.len(), 1, "every 200 is the same turn: {answers:?}");
    let threads = app.get("/api/chatkit/threads", &token).await.ok();
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1);
    let tid = threads["threads"][0]["id"].as_str().unwrap();
    assert_eq!(app.all_messages(&token, tid).await.len(), 2);
    // One task: the tool ran once.
    let list = app
        .post(
            "/api/chatkit/messages",
            &token,
            json!({"thread_id": tid, "message": "list my tasks"}),
        )
        .await
        .ok();
    let tasks = list["tool_calls"][0]["result"]["tasks"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tasks, 1, "{list}");
}

#[tokio::test]
async fn two_hundred_parallel_posts_are_counted_exactly() {
    let app = spawn_app().await;
    let users = ["u1", "u2", "u3", "u4"];
    let mut tokens = Vec::new();
    let mut threads = Vec::new();
    for u in users {
        let token = app.login(u).await;
        let a = app.create_thread(&token, "a").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = app.create_thread(&token, "b").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        tokens.push(token);
        threads.push([a, b]);
    }
    let posts = (0..200).map(|i| {
        let (u, t) = (i % 4, (i / 4) % 2);
        app.post(
            "/api/chatkit/messages",
            &tokens[u],
            json!({"thread_id": threads[u][t], "message": format!("add a task to job {i}")}),
        )
    });
    let replies = futures_util::future::join_all(posts).await;
    for r in &replies {
        assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    }
    for (u, token) in tokens.iter().enumerate() {
        for tid in &threads[u] {
            let thread = app.thread(token, tid).await;
            assert_eq!(thread["message_count"], 50, "25 turns of 2 messages");
            assert_eq!(app.all_messages(token, tid).await.len(), 50);
        }
        // 50 tasks per user, numbered 1..=50 with no gap or repeat.
        let list = app
            .post(
                "/api/chatkit/messages",
                token,
                json!({"thread_id": threads[u][0], "message": "list my tasks"}),
            )
            .await
            .ok();
        let mut numbers: Vec<i64> = list["tool_calls"][0]["result"]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_i64().unwrap())
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
    }
}

/// With several turn writers (`database.turn_writers`; PostgreSQL uses them, SQLite always
/// has one), turns that pour into many threads at once are each recorded and answered once,
/// and every thread counts exactly its own messages.
#[tokio::test]
async fn turns_over_many_threads_with_several_writers_are_each_recorded_once() {
    let app = crate::support::spawn_app_with(|s| s.database.turn_writers = 4).await;
    let token = app.login("alice").await;
    let mut threads = Vec::new();
    for i in 0..8 {
        let thread = app.create_thread(&token, &format!("writers {i}")).await;
        threads.push(thread["id"].as_str().unwrap().to_owned());
    }
    let turns = (0..64).map(|i| {
        let (app, token, tid) = (&app, &token, &threads[i % threads.len()]);
        async move { app.send(token, Some(tid), &format!("hello {i}")).await }
    });
    for answer in futures_util::future::join_all(turns).await {
        assert_eq!(answer.status.as_u16(), 200, "{}", answer.body);
    }
    for tid in &threads {
        let thread = app.thread(&token, tid).await;
        assert_eq!(thread["message_count"], 16, "{thread}");
        let messages = app.all_messages(&token, tid).await;
        assert_eq!(messages.len(), 16);
        let answers = messages.iter().filter(|m| m["role"] == "assistant").count();
        assert_eq!(answers, 8);
    }
}
