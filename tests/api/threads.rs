use std::collections::HashSet;

use reqwest::Method;
use serde_json::json;

use crate::support::spawn_app;

#[tokio::test]
async fn thread_crud() {
    let app = spawn_app().await;
    let t = app.login("alice").await;

    let created = app.post("/api/chatkit/threads", &t, json!({})).await;
    assert_eq!(created.status, 201);
    let thread = created.body;
    let id = thread["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("thr_"));
    assert_eq!(thread["title"], "New chat");
    assert_eq!(thread["message_count"], 0);
    assert_eq!(thread["metadata"], json!({}));
    assert!(thread["created_at"].as_str().unwrap().ends_with('Z'));

    let named = app.create_thread(&t, "Groceries").await;
    assert_eq!(named["title"], "Groceries");

    let got = app.thread(&t, &id).await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["messages"], json!([]));
    assert_eq!(got["has_more"], false);

    let renamed = app
        .patch(
            &format!("/api/chatkit/threads/{id}"),
            &t,
            json!({"title": "  Trip plans ", "metadata": {"pinned": true}}),
        )
        .await
        .ok();
    assert_eq!(renamed["title"], "Trip plans");
    assert_eq!(renamed["metadata"], json!({"pinned": true}));
    assert!(renamed["updated_at"].as_str() >= thread["updated_at"].as_str());
    // What PATCH answered is what was stored.
    let reread = app.thread(&t, &id).await;
    assert_eq!(reread["title"], "Trip plans");
    assert_eq!(reread["metadata"], json!({"pinned": true}));
    assert_eq!(reread["updated_at"], renamed["updated_at"]);
    // An empty patch changes nothing.
    let same = app
        .patch(&format!("/api/chatkit/threads/{id}"), &t, json!({}))
        .await
        .ok();
    assert_eq!(same["title"], "Trip plans");

    let list = app.get("/api/chatkit/threads", &t).await.ok();
    let ids: Vec<_> = list["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!(id), named["id"].clone()],
        "most recent activity first"
    );

    let deleted = app.delete(&format!("/api/chatkit/threads/{id}"), &t).await;
    assert_eq!(deleted.status, 204);
    app.get(&format!("/api/chatkit/threads/{id}"), &t)
        .await
        .assert_error(404, "thread.not_found");
    app.delete(&format!("/api/chatkit/threads/{id}"), &t)
        .await
        .assert_error(404, "thread.not_found");
}

#[tokio::test]
async fn deleting_a_thread_deletes_its_messages() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let sent = app
        .send(&t, None, "add a task to water the plants")
        .await
        .ok();
    let id = sent["thread_id"].as_str().unwrap();
    assert_eq!(app.all_messages(&t, id).await.len(), 2);
    assert_eq!(
        app.delete(&format!("/api/chatkit/threads/{id}"), &t)
            .await
            .status,
        204
    );
    app.get(&format!("/api/chatkit/threads/{id}/messages"), &t)
        .await
        .assert_error(404, "thread.not_found");
    // The task the agent created is the user's, not the thread's: it stays.
    let listed = app.send(&t, None, "list my tasks").await.ok();
    assert!(listed["response"]
        .as_str()
        .unwrap()
        .contains("water the plants"));
}

#[tokio::test]
async fn users_never_see_each_others_threads() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let thread = app.create_thread(&alice, "Alice's").await;
    let id = thread["id"].as_str().unwrap();
    app.send(&alice, Some(id), "add a task to buy milk")
        .await
        .ok();

    let path = format!("/api/chatkit/threads/{id}");
    app.get(&path, &bob)
        .await
        .assert_error(404, "thread.not_found");
    app.patch(&path, &bob, json!({"title": "mine now"}))
        .await
        .assert_error(404, "thread.not_found");
    app.delete(&path, &bob)
        .await
        .assert_error(404, "thread.not_found");
    app.get(&format!("{path}/messages"), &bob)
        .await
        .assert_error(404, "thread.not_found");
    app.send(&bob, Some(id), "hello")
        .await
        .assert_error(404, "thread.not_found");
    let bobs = app.get("/api/chatkit/threads", &bob).await.ok();
    assert_eq!(bobs["threads"], json!([]));
    // Bob's tasks are his own too.
    let listed = app.send(&bob, None, "list my tasks").await.ok();
    assert_eq!(
        listed["response"],
        "You have no tasks yet. Try \"add a task to buy milk\"."
    );

    // Alice's thread is untouched.
    let still = app.get(&path, &alice).await.ok();
    assert_eq!(still["title"], "Alice's");
    assert_eq!(still["message_count"], 2);
}

#[tokio::test]
async fn thread_list_pages_to_the_end() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let mut created = Vec::new();
    for i in 0..23 {
        created.push(
            app.create_thread(&t, &format!("thread {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Activity moves a thread to the front.
    app.send(&t, Some(&created[3]), "hello").await.ok();

    let (threads, pages) = app
        .walk("/api/chatkit/threads?limit=5", &t, "threads")
        .await;
    let seen: Vec<(String, String)> = threads
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap().to_owned();
            (field("id"), field("updated_at"))
        })
        .collect();
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    assert_eq!(
        seen.iter().map(|s| &s.0).collect::<HashSet<_>>().len(),
        23,
        "no duplicates"
    );
    assert_eq!(seen[0].0, created[3]);
    let mut expected: Vec<_> = created
        .iter()
        .rev()
        .filter(|id| **id != created[3])
        .cloned()
        .collect();
    expected.insert(0, created[3].clone());
    assert_eq!(
        seen.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        seen.windows(2).all(|w| w[0].1 >= w[1].1),
        "newest activity first"
    );
}

#[tokio::test]
async fn message_pages_walk_both_ways() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    let first = app.send(&t, None, "hello").await.ok();
    let id = first["thread_id"].as_str().unwrap().to_owned();
    for i in 0..11 {
        app.send(&t, Some(&id), &format!("add a task to step {i}"))
            .await
            .ok();
    }
    let asc = app.all_messages(&t, &id).await;
    assert_eq!(asc.len(), 24);
    assert_eq!(asc[0]["content"], "hello");
    assert_eq!(asc[0]["role"], "user");
    assert_eq!(asc[1]["role"], "assistant");
    assert_eq!(asc[23]["role"], "assistant");
    assert!(asc[23]["content"].as_str().unwrap().contains("step 10"));

    let path = format!("/api/chatkit/threads/{id}/messages?limit=7");
    let (desc, pages) = app.walk(&path, &t, "data").await;
    assert_eq!(pages, 4);
    let mut reversed = asc.clone();
    reversed.reverse();
    assert_eq!(desc, reversed, "default order is newest first");

    // GET /threads/{id} embeds the latest page, oldest first.
    let detail = app
        .get(&format!("/api/chatkit/threads/{id}?limit=4"), &t)
        .await
        .ok();
    assert_eq!(
        detail["messages"].as_array().unwrap().as_slice(),
        &asc[20..]
    );
    assert_eq!(detail["has_more"], true);
    assert_eq!(detail["message_count"], 24);
}

#[tokio::test]
async fn bad_requests_get_stable_error_codes() {
    let app = spawn_app().await;
    let t = app.login("alice").await;
    app.post("/api/chatkit/threads", &t, json!({"title": "   "}))
        .await
        .assert_error(422, "request.invalid");
    app.post(
        "/api/chatkit/threads",
        &t,
        json!({"title": "x".repeat(201)}),
    )
    .await
    .assert_error(422, "request.invalid");
    app.post("/api/chatkit/threads", &t, json!({"metadata": [1, 2]}))
        .await
        .assert_error(422, "request.invalid");
    app.post("/api/chatkit/threads", &t, json!({"title": [5]}))
        .await
        .assert_error(422, "request.invalid");
    let raw = app
        .client
        .post(format!("{}/api/chatkit/threads", app.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request.malformed");

    for q in ["limit=0", "limit=101", "limit=-1", "after=bogus"] {
        app.get(&format!("/api/chatkit/threads?{q}"), &t)
            .await
            .assert_error(422, "request.invalid");
    }
    app.get("/api/chatkit/threads?limit=abc", &t)
        .await
        .assert_error(400, "request.malformed");
    let thread = app.create_thread(&t, "x").await;
    let id = thread["id"].as_str().unwrap();
    app.get(
        &format!("/api/chatkit/threads/{id}/messages?order=sideways"),
        &t,
    )
    .await
    .assert_error(422, "request.invalid");
    for bad in [
        "nope",
        "thr_123",
        "thr_0000000000000000000000000000000g",
        "%27%20OR%201%3D1",
    ] {
        app.get(&format!("/api/chatkit/threads/{bad}"), &t)
            .await
            .assert_error(404, "thread.not_found");
    }
    // A well-formed id that does not exist.
    app.get(
        "/api/chatkit/threads/thr_0190f0b0c0d0e0f0a0b0c0d0e0f0a0b0",
        &t,
    )
    .await
    .assert_error(404, "thread.not_found");

    // Missing token, unknown route, wrong method, too large a body.
    app.request(Method::GET, "/api/chatkit/threads", None, None, &[])
        .await
        .assert_error(401, "auth.missing_token");
    app.request(
        Method::GET,
        "/api/chatkit/threads",
        None,
        None,
        &[("authorization", "Basic abc")],
    )
    .await
    .assert_error(401, "auth.missing_token");
    app.get("/api/chatkit/nowhere", &t)
        .await
        .assert_error(404, "route.not_found");
    app.request(Method::PUT, "/api/chatkit/threads", Some(&t), None, &[])
        .await
        .assert_error(405, "route.method_not_allowed");
    let huge = json!({"title": "x", "metadata": {"blob": "y".repeat(300_000)}});
    app.post("/api/chatkit/threads", &t, huge)
        .await
        .assert_error(413, "request.too_large");
}

/// Found by Schemathesis on PostgreSQL: jsonb keeps 1.7976931348623157e308 as an exact
/// decimal and hands back 309 digits, which serde_json's fast float parsing rounded past
/// `f64::MAX` and refused: 500 on every later read of the thread. Every number the service
/// accepts now reads back as it was written, on both databases.
#[tokio::test]
async fn metadata_numbers_read_back_on_every_database() {
    let app = spawn_app().await;
    let t = app.login("numbers").await;
    let metadata = json!({
        "max": f64::MAX,
        "min": -f64::MAX,
        "tiny": f64::MIN_POSITIVE,
        "odd": -2.076_847_856_755_472_2e82,
        "int": 123_456_789_012_345_678_u64,
        "nested": [{"n": 1e300}],
    });
    let created = app
        .post("/api/chatkit/threads", &t, json!({ "metadata": metadata }))
        .await
        .ok();
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.thread(&t, id).await["metadata"], metadata);
    let list = app.get("/api/chatkit/threads", &t).await.ok();
    assert_eq!(list["threads"][0]["metadata"], metadata);
}
