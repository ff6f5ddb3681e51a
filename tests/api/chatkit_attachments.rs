//! Attachments and dictation through the ChatKit protocol: `attachments.create` and
//! `attachments.delete`, messages that name attachments (checked before any stream, stamped
//! with the thread, shown with fresh preview links in the stream, `items.list`,
//! `threads.get_by_id` and the REST thread view, and given to the agent), thread deletion
//! taking their bytes, and `input.transcribe`. On the database store (SQLite, or PostgreSQL
//! with TEST_DATABASE_URL) and, as fixture tests, on S3.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use base64::Engine as _;
use chatkit_gateway::{
    agent::{Agent, AgentAnswer, AgentError, AgentRequest, EventSink, TaskTools},
    store::Store,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    attachments::{
        create, download, fetch, png, prefix, response, s3_app_with, upload, upload_url, uploaded,
        user, PNG,
    },
    support::{
        chatkit::{input, Answer},
        s3::S3Server,
        spawn_app, spawn_app_with, spawn_app_with_agent, TestApp,
    },
};

/// An input with `text` and the attachments `ids`.
fn input_with(text: &str, ids: &[&str]) -> Value {
    let mut input = input(text);
    input["attachments"] = json!(ids);
    input
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The user message a turn's stream echoed.
#[track_caller]
fn echoed(a: &Answer) -> Value {
    assert_eq!(a.status, 200, "{}", a.raw);
    a.events
        .iter()
        .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "user_message")
        .unwrap_or_else(|| panic!("no user message echoed: {}", a.raw))["item"]
        .clone()
}

/// The user messages of a thread, by `items.list`.
async fn listed_user_messages(app: &TestApp, token: &str, thread: &str) -> Vec<Value> {
    let page = app
        .chatkit(token)
        .request("items.list", json!({"thread_id": thread, "order": "asc"}))
        .await;
    page.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "user_message")
        .cloned()
        .collect()
}

/// What the agent was given, per turn: each file's name, type and bytes.
type Files = Vec<(String, String, Vec<u8>)>;

/// An agent that records the files of each turn and the audio it is asked to transcribe.
#[derive(Default)]
struct Recorder {
    turns: Mutex<Vec<Files>>,
    heard: Mutex<Vec<(String, Vec<u8>)>>,
}

#[async_trait]
impl Agent for Recorder {
    fn uses_history(&self) -> bool {
        false
    }

    async fn transcribe(&self, audio: bytes::Bytes, mime_type: &str) -> Result<String, AgentError> {
        self.heard
            .lock()
            .unwrap()
            .push((mime_type.to_owned(), audio.to_vec()));
        Ok("remind me to call mom".to_owned())
    }

    async fn respond(
        &self,
        req: AgentRequest<'_>,
        _tools: &TaskTools,
        _events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let files: Files = req
            .attachments
            .iter()
            .map(|f| (f.name.clone(), f.mime_type.clone(), f.bytes.to_vec()))
            .collect();
        let text = format!("got {} files", files.len());
        self.turns.lock().unwrap().push(files);
        Ok(AgentAnswer {
            text,
            ..AgentAnswer::default()
        })
    }
}

async fn recorder_app(
    edit: impl FnOnce(&mut chatkit_gateway::Settings),
) -> (TestApp, Arc<Recorder>) {
    let agent = Arc::new(Recorder::default());
    let app = spawn_app_with_agent(agent.clone(), edit).await;
    (app, agent)
}

// ---------------------------------------------------------------------------------------
// attachments.create and attachments.delete

#[tokio::test]
async fn attachments_create_answers_an_attachment_with_a_signed_upload_link() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let ck = app.chatkit(&alice);
    let bytes = png(2048);
    let created = ck
        .request(
            "attachments.create",
            json!({"name": "list.png", "size": bytes.len(), "mime_type": "image/png"}),
        )
        .await;
    let created = created.ok().clone();
    assert_eq!(created["type"], "image");
    assert!(created["id"].as_str().unwrap().starts_with("atc_"));
    assert_eq!(created["name"], "list.png");
    assert_eq!(created["mime_type"], "image/png");
    assert_eq!(created["upload_descriptor"]["method"], "POST");
    assert_eq!(created["upload_descriptor"]["headers"], json!({}));
    assert!(created.get("thread_id").is_none());
    // The widget posts the file to the descriptor's URL; the answer has no descriptor.
    let done = upload(&app, &upload_url(&created), &bytes).await.ok();
    assert_eq!(done["id"], created["id"]);
    assert!(done.get("upload_descriptor").is_none());
    let got = download(&app, &alice, &id_of(&created)).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), &bytes[..]);

    // A text file: no preview, ever.
    let text = ck
        .request(
            "attachments.create",
            json!({"name": "todo.txt", "size": 5, "mime_type": "text/plain"}),
        )
        .await;
    assert_eq!(text.ok()["type"], "file");
    assert!(text.json.get("preview_url").is_none());
}

#[tokio::test]
async fn attachments_create_refuses_what_the_limits_refuse_with_codes() {
    let app = spawn_app_with(|s| s.attachments.quota_files = 3).await;
    let alice = app.login("alice").await;
    let ck = app.chatkit(&alice);
    let create = |name: &'static str, size: u64, mime: &'static str| {
        ck.request(
            "attachments.create",
            json!({"name": name, "size": size, "mime_type": mime}),
        )
    };
    create("huge.png", 10 << 30, "image/png")
        .await
        .error(413, "attachment.too_large");
    create("empty.png", 0, "image/png")
        .await
        .error(422, "attachment.empty");
    create("page.html", 10, "text/html")
        .await
        .error(415, "attachment.type_not_allowed");
    create("image.svg", 10, "image/svg+xml")
        .await
        .error(415, "attachment.type_not_allowed");
    create("../../etc/passwd", 10, "text/plain")
        .await
        .error(422, "attachment.name_invalid");
    create("a\u{0}b.txt", 10, "text/plain")
        .await
        .error(422, "attachment.name_invalid");
    for _ in 0..3 {
        create("a.txt", 10, "text/plain").await.ok();
    }
    create("one-too-many.txt", 10, "text/plain")
        .await
        .error(409, "attachment.quota_exceeded");
}

#[tokio::test]
async fn attachments_delete_is_for_the_owner_only() {
    let app = spawn_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let mine = uploaded(&app, &alice, "a.png", "image/png", PNG).await;
    let id = id_of(&mine);
    // Bob cannot delete it, nor tell it from an id that names nothing.
    app.chatkit(&bob)
        .request("attachments.delete", json!({"attachment_id": id}))
        .await
        .error(404, "attachment.not_found");
    assert_eq!(download(&app, &alice, &id).await.status(), StatusCode::OK);
    let deleted = app
        .chatkit(&alice)
        .request("attachments.delete", json!({"attachment_id": id}))
        .await;
    assert_eq!(deleted.ok(), &json!({}));
    response(download(&app, &alice, &id).await)
        .await
        .assert_error(404, "attachment.not_found");
    app.chatkit(&alice)
        .request("attachments.delete", json!({"attachment_id": id}))
        .await
        .error(404, "attachment.not_found");
    // Its preview link stops working with it.
    response(fetch(&app, mine["preview_url"].as_str().unwrap()).await)
        .await
        .assert_error(404, "attachment.not_found");
}

// ---------------------------------------------------------------------------------------
// Messages with attachments

/// Alice sends an image and a text file in a new thread; the stream echoes them.
async fn send_two(app: &TestApp, token: &str) -> (String, Value, Value, Value) {
    let image = uploaded(app, token, "shopping.png", "image/png", &png(1500)).await;
    let text = uploaded(app, token, "todo.txt", "text/plain", b"milk\neggs\n").await;
    let a = app
        .chatkit(token)
        .request(
            "threads.create",
            json!({"input": input_with("add these", &[&id_of(&image), &id_of(&text)])}),
        )
        .await;
    let item = echoed(&a);
    (a.thread_id(), image, text, item)
}

#[track_caller]
fn assert_shows(attachments: &Value, image: &Value, text: &Value, thread: &str) {
    let list = attachments.as_array().expect("attachments");
    assert_eq!(list.len(), 2, "{attachments}");
    assert_eq!(list[0]["type"], "image");
    assert_eq!(list[0]["id"], image["id"]);
    assert_eq!(list[0]["name"], "shopping.png");
    assert_eq!(list[0]["mime_type"], "image/png");
    assert_eq!(list[0]["thread_id"], thread);
    assert!(list[0]["preview_url"].as_str().is_some(), "{attachments}");
    assert!(list[0].get("upload_descriptor").is_none());
    assert_eq!(list[1]["type"], "file");
    assert_eq!(list[1]["id"], text["id"]);
    assert_eq!(list[1]["name"], "todo.txt");
    assert!(list[1].get("preview_url").is_none());
}

#[tokio::test]
async fn a_message_shows_its_attachments_in_the_stream_and_every_read() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let (tid, image, text, item) = send_two(&app, &alice).await;
    assert_shows(&item["attachments"], &image, &text, &tid);
    assert_eq!(
        item["content"],
        json!([{"type": "input_text", "text": "add these"}])
    );
    let preview = item["attachments"][0]["preview_url"].as_str().unwrap();
    let shown = fetch(&app, preview).await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.bytes().await.unwrap().as_ref(), &png(1500)[..]);

    let listed = listed_user_messages(&app, &alice, &tid).await;
    assert_shows(&listed[0]["attachments"], &image, &text, &tid);
    let thread = app
        .chatkit(&alice)
        .request("threads.get_by_id", json!({"thread_id": tid}))
        .await;
    let first = &thread.ok()["items"]["data"][0];
    assert_eq!(first["type"], "user_message");
    assert_shows(&first["attachments"], &image, &text, &tid);

    // REST: the thread view and the message pages, messages only or every item.
    let p = prefix(&app);
    for path in [
        format!("{p}/threads/{tid}"),
        format!("{p}/threads/{tid}?include=all"),
        format!("{p}/threads/{tid}/messages?order=asc"),
        format!("{p}/threads/{tid}/messages?order=asc&include=all"),
    ] {
        let body = app.get(&path, &alice).await.ok();
        let messages = body
            .get("messages")
            .or_else(|| body.get("data"))
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        let user_message = messages
            .iter()
            .find(|m| m["type"] == "user_message")
            .unwrap();
        assert_eq!(user_message["content"], "add these", "{path}");
        let files = user_message["attachments"].as_array().unwrap();
        assert_eq!(files.len(), 2, "{path}");
        assert_eq!(files[0]["id"], image["id"]);
        assert_eq!(files[0]["type"], "image");
        assert_eq!(files[0]["size"], 1500);
        let rest_preview = files[0]["preview_url"].as_str().unwrap();
        assert_eq!(fetch(&app, rest_preview).await.status(), StatusCode::OK);
        assert_eq!(files[1]["type"], "file");
        assert_eq!(files[1]["name"], "todo.txt");
        assert!(files[1].get("preview_url").is_none());
        // The answer carries none.
        assert!(messages
            .iter()
            .filter(|m| m["type"] != "user_message")
            .all(|m| m.get("attachments").is_none()));
    }
}

#[tokio::test]
async fn reads_mint_fresh_preview_links_and_deleted_attachments_drop_out() {
    let app = spawn_app_with(|s| s.attachments.preview_url_ttl_secs = 1).await;
    let alice = app.login("alice").await;
    let (tid, image, text, item) = send_two(&app, &alice).await;
    let old = item["attachments"][0]["preview_url"]
        .as_str()
        .unwrap()
        .to_owned();
    // The link the stream gave has expired; a read gives one that works.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    response(fetch(&app, &old).await)
        .await
        .assert_error(403, "attachment.link_invalid");
    let listed = listed_user_messages(&app, &alice, &tid).await;
    let fresh = listed[0]["attachments"][0]["preview_url"].as_str().unwrap();
    assert_ne!(fresh, old);
    assert_eq!(fetch(&app, fresh).await.status(), StatusCode::OK);

    // Deleted afterwards: the message stays, without it.
    app.chatkit(&alice)
        .request(
            "attachments.delete",
            json!({"attachment_id": id_of(&image)}),
        )
        .await
        .ok();
    let listed = listed_user_messages(&app, &alice, &tid).await;
    let left = listed[0]["attachments"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], text["id"]);
}

#[tokio::test]
async fn a_message_of_attachments_alone_is_recorded_with_their_names() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let file = uploaded(&app, &alice, "groceries.csv", "text/csv", b"milk\n").await;
    let a = app
        .chatkit(&alice)
        .request(
            "threads.create",
            json!({"input": {"content": [], "attachments": [id_of(&file)], "inference_options": {}}}),
        )
        .await;
    let item = echoed(&a);
    assert_eq!(item["content"], json!([]));
    assert_eq!(item["attachments"][0]["id"], file["id"]);
    let messages = app.all_messages(&alice, &a.thread_id()).await;
    assert_eq!(messages[0]["content"], "(attached: groceries.csv)");
    // Without attachments a blank message is still refused inline.
    let blank = app
        .chatkit(&alice)
        .request("threads.create", json!({"input": input("  ")}))
        .await;
    assert_eq!(blank.types(), ["error"]);
}

#[tokio::test]
async fn the_agent_is_given_each_attached_file_with_its_bytes() {
    let (app, agent) = recorder_app(|_| {}).await;
    let alice = app.login("alice").await;
    let image = uploaded(&app, &alice, "board.png", "image/png", &png(900)).await;
    let text = uploaded(
        &app,
        &alice,
        "list.md",
        "text/markdown",
        b"- milk\n- eggs\n",
    )
    .await;
    let first = app.chatkit(&alice).create("hello").await;
    let tid = first.thread_id();
    let a = app
        .chatkit(&alice)
        .request(
            "threads.add_user_message",
            json!({"thread_id": tid, "input": input_with("add these", &[&id_of(&text), &id_of(&image)])}),
        )
        .await;
    let item = echoed(&a);
    assert_eq!(item["attachments"][0]["id"], text["id"]);
    assert_eq!(item["attachments"][1]["id"], image["id"]);
    let expected: Files = vec![
        (
            "list.md".into(),
            "text/markdown".into(),
            b"- milk\n- eggs\n".to_vec(),
        ),
        ("board.png".into(), "image/png".into(), png(900)),
    ];
    {
        let turns = agent.turns.lock().unwrap();
        assert_eq!(turns.len(), 2);
        assert!(turns[0].is_empty());
        assert_eq!(turns[1], expected);
    }
    // Retried, the message is answered with the same files.
    let retried = app.chatkit(&alice).retry(&tid, &item["id"]).await;
    assert_eq!(retried.status, 200, "{}", retried.raw);
    assert_eq!(agent.turns.lock().unwrap()[2], expected);
    // Stamped with the thread: they stay with it, and another thread cannot take them.
    let other = app.chatkit(&alice).create("another").await.thread_id();
    app.chatkit(&alice)
        .request(
            "threads.add_user_message",
            json!({"thread_id": other, "input": input_with("again", &[&id_of(&text)])}),
        )
        .await
        .error(409, "attachment.in_use");
    // In the same thread they may be sent again.
    let again = app
        .chatkit(&alice)
        .request(
            "threads.add_user_message",
            json!({"thread_id": tid, "input": input_with("again", &[&id_of(&text)])}),
        )
        .await;
    assert_eq!(echoed(&again)["attachments"][0]["id"], text["id"]);
}

async fn thread_count(app: &TestApp, token: &str) -> usize {
    let page = app
        .chatkit(token)
        .request("threads.list", json!({"limit": 100}))
        .await;
    page.ok()["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn attachments_that_cannot_be_sent_are_refused_before_any_stream() {
    let app = spawn_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let tid = app.chatkit(&alice).create("hello").await.thread_id();
    let bobs = uploaded(&app, &bob, "bob.png", "image/png", PNG).await;
    let waiting = create(&app, &alice, "later.png", 10, "image/png")
        .await
        .ok();
    let mine = uploaded(&app, &alice, "a.txt", "text/plain", b"x").await;
    let many: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..11 {
            let f = uploaded(&app, &alice, &format!("{i}.txt"), "text/plain", b"x").await;
            ids.push(id_of(&f));
        }
        ids
    };
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: [(&[&str], u16, &str); 4] = [
        (&[&id_of(&mine), &id_of(&bobs)], 404, "attachment.not_found"),
        (&["atc_nothing"], 404, "attachment.not_found"),
        (&[&id_of(&waiting)], 409, "attachment.not_uploaded"),
        (&many, 422, "request.invalid"),
    ];
    let before = app.all_messages(&alice, &tid).await.len();
    let threads_before = thread_count(&app, &alice).await;
    for (ids, status, code) in cases {
        let add = app
            .chatkit(&alice)
            .request(
                "threads.add_user_message",
                json!({"thread_id": tid, "input": input_with("look", ids)}),
            )
            .await;
        add.error(status, code);
        let create = app
            .chatkit(&alice)
            .request("threads.create", json!({"input": input_with("look", ids)}))
            .await;
        create.error(status, code);
    }
    assert_eq!(app.all_messages(&alice, &tid).await.len(), before);
    assert_eq!(thread_count(&app, &alice).await, threads_before);
    // Nothing was stamped by the refusals: the good one is still free to send anywhere.
    let svc = crate::attachments::service(&app).await;
    assert_eq!(
        svc.get(&user("alice"), &id_of(&mine))
            .await
            .unwrap()
            .thread_id,
        None
    );
    // Alice's own attachment in Bob's thread: his thread is not found for her.
    let bobs_thread = app.chatkit(&bob).create("mine").await.thread_id();
    app.chatkit(&alice)
        .request(
            "threads.add_user_message",
            json!({"thread_id": bobs_thread, "input": input_with("look", &[&id_of(&mine)])}),
        )
        .await
        .error(404, "thread.not_found");
    // Bob's preview link does not show Alice's image under his signature.
    let alices = uploaded(&app, &alice, "secret.png", "image/png", PNG).await;
    let bob_link = bobs["preview_url"].as_str().unwrap();
    let forged = bob_link.replace(&id_of(&bobs), &id_of(&alices));
    response(fetch(&app, &forged).await)
        .await
        .assert_error(403, "attachment.link_invalid");
}

// ---------------------------------------------------------------------------------------
// Deleting a thread

/// A thread with one sent image, and an image never sent; the thread deleted through
/// ChatKit or REST.
async fn thread_deletion_takes_the_sent_bytes(app: &TestApp, through_chatkit: bool) -> Store {
    let alice = app.login("alice").await;
    let sent = uploaded(app, &alice, "sent.png", "image/png", &png(300_000)).await;
    let kept = uploaded(app, &alice, "kept.png", "image/png", PNG).await;
    let a = app
        .chatkit(&alice)
        .request(
            "threads.create",
            json!({"input": input_with("look", &[&id_of(&sent)])}),
        )
        .await;
    let tid = a.thread_id();
    echoed(&a);
    if through_chatkit {
        let deleted = app
            .chatkit(&alice)
            .request("threads.delete", json!({"thread_id": tid}))
            .await;
        assert_eq!(deleted.ok(), &json!({}));
    } else {
        let deleted = app
            .request(
                Method::DELETE,
                &format!("{}/threads/{tid}", prefix(app)),
                Some(&alice),
                None,
                &[],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    }
    response(download(app, &alice, &id_of(&sent)).await)
        .await
        .assert_error(404, "attachment.not_found");
    assert_eq!(
        download(app, &alice, &id_of(&kept)).await.status(),
        StatusCode::OK
    );
    let store = Store::open(&app.settings.database).await.unwrap();
    assert!(store
        .attachment(&user("alice"), &id_of(&sent))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .attachment_chunk(&user("alice"), &id_of(&sent), 0)
            .await
            .unwrap(),
        None
    );
    store
}

#[tokio::test]
async fn deleting_a_thread_through_chatkit_deletes_its_attachments() {
    let app = spawn_app().await;
    thread_deletion_takes_the_sent_bytes(&app, true).await;
}

#[tokio::test]
async fn deleting_a_thread_through_rest_deletes_its_attachments() {
    let app = spawn_app().await;
    thread_deletion_takes_the_sent_bytes(&app, false).await;
}

#[tokio::test]
async fn another_users_thread_deletion_leaves_the_attachments_alone() {
    let app = spawn_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let sent = uploaded(&app, &alice, "sent.png", "image/png", PNG).await;
    let a = app
        .chatkit(&alice)
        .request(
            "threads.create",
            json!({"input": input_with("look", &[&id_of(&sent)])}),
        )
        .await;
    let tid = a.thread_id();
    app.chatkit(&bob)
        .request("threads.delete", json!({"thread_id": tid}))
        .await
        .error(404, "thread.not_found");
    assert_eq!(
        download(&app, &alice, &id_of(&sent)).await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------
// The S3 store

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_a_message_shows_and_gives_its_attachments_from_the_bucket() {
    let server = S3Server::start().await;
    let settings = server.settings();
    let agent = Arc::new(Recorder::default());
    let app = spawn_app_with_agent(agent.clone(), move |s| {
        s.attachments.store = chatkit_gateway::config::AttachmentStore::S3;
        s.attachments.s3 = settings;
    })
    .await;
    let alice = app.login("alice").await;
    let (tid, image, text, item) = send_two(&app, &alice).await;
    assert_shows(&item["attachments"], &image, &text, &tid);
    let listed = listed_user_messages(&app, &alice, &tid).await;
    let preview = listed[0]["attachments"][0]["preview_url"].as_str().unwrap();
    assert_eq!(
        fetch(&app, preview).await.bytes().await.unwrap().as_ref(),
        &png(1500)[..]
    );
    let turns = agent.turns.lock().unwrap().clone();
    assert_eq!(turns[0][0].2, png(1500));
    assert_eq!(turns[0][1].2, b"milk\neggs\n");
    assert_eq!(server.keys().await.len(), 2);
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_deleting_a_thread_through_chatkit_deletes_the_objects() {
    let server = S3Server::start().await;
    let app = s3_app_with(&server, |_| {}).await;
    thread_deletion_takes_the_sent_bytes(&app, true).await;
    // The unsent one is all that is left in the bucket.
    assert_eq!(server.keys().await.len(), 1);
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_deleting_a_thread_through_rest_deletes_the_objects() {
    let server = S3Server::start().await;
    let app = s3_app_with(&server, |_| {}).await;
    thread_deletion_takes_the_sent_bytes(&app, false).await;
    assert_eq!(server.keys().await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// input.transcribe

fn transcribe(audio: &[u8], mime: &str) -> Value {
    json!({
        "audio_base64": base64::engine::general_purpose::STANDARD.encode(audio),
        "mime_type": mime,
    })
}

#[tokio::test]
async fn the_local_agent_cannot_transcribe_and_says_so() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    app.chatkit(&alice)
        .request(
            "input.transcribe",
            transcribe(b"OggS fake audio", "audio/webm;codecs=opus"),
        )
        .await
        .error(501, "transcription.unavailable");
}

#[tokio::test]
async fn dictation_is_transcribed_by_the_provider() {
    let (app, agent) = recorder_app(|_| {}).await;
    let alice = app.login("alice").await;
    let audio = vec![0x1a_u8; 4000];
    let a = app
        .chatkit(&alice)
        .request(
            "input.transcribe",
            transcribe(&audio, "audio/webm;codecs=opus"),
        )
        .await;
    assert_eq!(a.ok(), &json!({"text": "remind me to call mom"}));
    assert_eq!(
        agent.heard.lock().unwrap().as_slice(),
        &[("audio/webm;codecs=opus".to_owned(), audio)]
    );
    // Without padding too (what some encoders send).
    let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(b"ab");
    let a = app
        .chatkit(&alice)
        .request(
            "input.transcribe",
            json!({"audio_base64": unpadded, "mime_type": "audio/ogg"}),
        )
        .await;
    assert_eq!(a.ok()["text"], "remind me to call mom");
}

#[tokio::test]
async fn bad_dictation_is_refused_with_codes() {
    let (app, agent) = recorder_app(|s| s.agent.openai.max_audio_bytes = 1000).await;
    let alice = app.login("alice").await;
    let ck = app.chatkit(&alice);
    ck.request(
        "input.transcribe",
        json!({"audio_base64": "not base64!!", "mime_type": "audio/webm"}),
    )
    .await
    .error(400, "transcription.audio_invalid");
    ck.request(
        "input.transcribe",
        json!({"audio_base64": "", "mime_type": "audio/webm"}),
    )
    .await
    .error(400, "transcription.audio_invalid");
    for mime in ["text/html", "audio/", "", "audio/webm\u{0}"] {
        ck.request("input.transcribe", transcribe(b"abc", mime))
            .await
            .error(415, "transcription.type_not_allowed");
    }
    ck.request("input.transcribe", transcribe(&[7; 1001], "audio/webm"))
        .await
        .error(413, "transcription.too_large");
    ck.request("input.transcribe", transcribe(&[7; 1000], "audio/webm"))
        .await
        .ok();
    assert_eq!(agent.heard.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn only_dictation_may_be_larger_than_the_body_limit() {
    let (app, agent) = recorder_app(|s| {
        s.server.body_limit_bytes = 4096;
        s.agent.openai.max_audio_bytes = 30_000;
    })
    .await;
    let alice = app.login("alice").await;
    let ck = app.chatkit(&alice);
    // 20 KB of audio is 27 KB of base64: over the body limit, within dictation's.
    let audio = vec![3_u8; 20_000];
    ck.request("input.transcribe", transcribe(&audio, "audio/mp4"))
        .await
        .ok();
    assert_eq!(agent.heard.lock().unwrap()[0].1, audio);
    // Any other request that large is refused, by its length or as it is read.
    let padded = json!({"type": "threads.list", "params": {"x": "y".repeat(8000)}}).to_string();
    ck.send_raw(padded).await.error(413, "request.too_large");
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok(r#"{"type":"threads.list","params":{"x":""#.to_owned()),
        Ok("y".repeat(8000)),
        Ok(r#""}}"#.to_owned()),
    ];
    let resp = app
        .client
        .post(format!("{}/chatkit", app.base))
        .bearer_auth(&alice)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    response(resp).await.assert_error(413, "request.too_large");
    // Dictation's own limit: the base64 of max_audio_bytes and 64 KiB. Beyond it the body
    // is refused as a body (its Content-Length says so before it is read).
    let huge =
        json!({"type": "input.transcribe", "params": transcribe(&[3; 100_000], "audio/mp4")});
    ck.send_raw(huge.to_string())
        .await
        .error(413, "request.too_large");
}

// ---------------------------------------------------------------------------------------
// The document

#[tokio::test]
async fn the_document_describes_attachments_and_dictation() {
    let app = spawn_app().await;
    let spec: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &spec["paths"]["/chatkit"]["post"];
    for status in ["404", "409", "413", "415", "501"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
    let text = op.to_string();
    for code in [
        "attachment.not_found",
        "attachment.not_uploaded",
        "transcription.unavailable",
        "transcription.too_large",
    ] {
        assert!(text.contains(code), "{code}");
    }
    let schemas = &spec["components"]["schemas"];
    let attachment = &schemas["ChatKitAttachment"]["properties"];
    for field in [
        "type",
        "id",
        "name",
        "mime_type",
        "upload_descriptor",
        "preview_url",
        "thread_id",
    ] {
        assert!(attachment[field].is_object(), "{field}");
    }
    assert_eq!(
        schemas["ChatKitUserMessage"]["properties"]["attachments"]["items"]["$ref"],
        "#/components/schemas/ChatKitAttachment"
    );
    assert!(schemas["Message"]["properties"]["attachments"].is_object());
    assert!(schemas["MessageAttachment"]["properties"]["preview_url"].is_object());
}
