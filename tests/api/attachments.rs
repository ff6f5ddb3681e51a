//! Attachments over HTTP: two-phase uploads through signed links (multipart POST and raw
//! PUT), direct uploads, the owner's download and the image preview with their safety
//! headers, every refusal with its code, isolation between users, stamping onto a thread
//! and what deleting the thread does, and the collection of unsent uploads. The tests run
//! on the database store (SQLite, or PostgreSQL with TEST_DATABASE_URL) and, as fixture
//! tests, on the S3 store against a real S3-compatible server (moto, checking SigV4).

use std::time::Duration;

use chatkit_gateway::{
    attachments::{
        links::{LinkKeys, Purpose},
        AttachmentError, Attachments,
    },
    config::AttachmentStore,
    domain::{ThreadId, UserId},
    store::Store,
};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{
    s3::S3Server, spawn_app, spawn_app_with, wait::eventually, ApiResponse, TestApp,
};

pub(crate) const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const BOUNDARY: &str = "gw-test-boundary-7MA4YWxkTrZu0gW";

pub(crate) fn prefix(app: &TestApp) -> String {
    app.settings.server.api_prefix.clone()
}

/// A PNG of `len` bytes (signature, then filler).
pub(crate) fn png(len: usize) -> Vec<u8> {
    let mut bytes = PNG.to_vec();
    bytes.resize(len.max(PNG.len()), 0x42);
    bytes
}

pub(crate) async fn response(resp: reqwest::Response) -> ApiResponse {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    ApiResponse {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    }
}

/// `POST {prefix}/attachments` with JSON: a two-phase attachment.
pub(crate) async fn create(
    app: &TestApp,
    token: &str,
    name: &str,
    size: u64,
    mime: &str,
) -> ApiResponse {
    app.request(
        Method::POST,
        &format!("{}/attachments", prefix(app)),
        Some(token),
        Some(json!({"name": name, "size": size, "mime_type": mime})),
        &[],
    )
    .await
}

/// A multipart/form-data body with one `file` part.
fn multipart(filename: &str, mime: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: {mime}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The widget's upload: a multipart POST to the descriptor's URL.
pub(crate) async fn upload(app: &TestApp, url: &str, bytes: &[u8]) -> ApiResponse {
    let resp = app
        .client
        .post(format!("{}{url}", app.base))
        .header("Content-Type", multipart_type())
        .body(multipart("ignored.bin", "application/octet-stream", bytes))
        .send()
        .await
        .unwrap();
    response(resp).await
}

/// The raw upload: a PUT of the bytes to the descriptor's URL.
async fn put(app: &TestApp, url: &str, body: impl Into<reqwest::Body>) -> ApiResponse {
    let resp = app
        .client
        .put(format!("{}{url}", app.base))
        .body(body)
        .send()
        .await
        .unwrap();
    response(resp).await
}

/// The direct strategy: a multipart POST with the client_secret.
pub(crate) async fn direct(
    app: &TestApp,
    token: &str,
    filename: &str,
    mime: &str,
    bytes: &[u8],
) -> ApiResponse {
    let resp = app
        .client
        .post(format!("{}{}/attachments", app.base, prefix(app)))
        .bearer_auth(token)
        .header("Content-Type", multipart_type())
        .body(multipart(filename, mime, bytes))
        .send()
        .await
        .unwrap();
    response(resp).await
}

pub(crate) async fn download(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{}/attachments/{id}", app.base, prefix(app)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn fetch(app: &TestApp, url: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{url}", app.base))
        .send()
        .await
        .unwrap()
}

/// Creates and uploads an attachment of `user`; returns its JSON after the upload.
pub(crate) async fn uploaded(
    app: &TestApp,
    token: &str,
    name: &str,
    mime: &str,
    bytes: &[u8],
) -> Value {
    let created = create(app, token, name, bytes.len() as u64, mime).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let url = created.body["upload_descriptor"]["url"].as_str().unwrap();
    upload(app, url, bytes).await.ok()
}

pub(crate) fn upload_url(created: &Value) -> String {
    created["upload_descriptor"]["url"]
        .as_str()
        .expect("an upload descriptor")
        .to_owned()
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// The service over the test app's database, for what no route does (stamping,
/// collecting): the ChatKit protocol calls these.
pub(crate) async fn service(app: &TestApp) -> Attachments {
    let store = Store::open(&app.settings.database).await.unwrap();
    Attachments::new(
        store,
        &app.settings.attachments,
        &app.settings.session,
        &app.settings.server.api_prefix,
    )
    .unwrap()
}

pub(crate) fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

async fn new_thread(app: &TestApp, token: &str) -> ThreadId {
    let thread = app
        .request(
            Method::POST,
            &format!("{}/threads", prefix(app)),
            Some(token),
            Some(json!({"title": "with files"})),
            &[],
        )
        .await
        .ok();
    ThreadId::parse(thread["id"].as_str().unwrap()).unwrap()
}

/// The attachment's state as stored (`created`, `uploading`, `uploaded`), read with a
/// connection of the test's own.
async fn state_of(app: &TestApp, id: &str) -> String {
    use sea_orm::EntityTrait;
    let db = sea_orm::Database::connect(app.settings.database.url.expose_secret())
        .await
        .unwrap();
    let row = entity::attachment::Entity::find_by_id(id)
        .one(&db)
        .await
        .unwrap();
    db.close().await.ok();
    row.map(|r| r.state).unwrap_or_default()
}

#[track_caller]
pub(crate) fn assert_safe_headers(headers: &reqwest::header::HeaderMap) {
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert_eq!(headers["cache-control"], "private");
}

// ---------------------------------------------------------------------------------------
// The flows, on either store.

async fn two_phase_image_round_trip(app: &TestApp) -> String {
    let alice = app.login("alice").await;
    let bytes = png(3000);
    let created = create(
        app,
        &alice,
        "cat photo.png",
        bytes.len() as u64,
        "image/png",
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let body = &created.body;
    assert_eq!(body["type"], "image");
    assert!(body["id"].as_str().unwrap().starts_with("atc_"));
    assert_eq!(body["name"], "cat photo.png");
    assert_eq!(body["mime_type"], "image/png");
    assert_eq!(body["upload_descriptor"]["method"], "POST");
    assert_eq!(body["upload_descriptor"]["headers"], json!({}));
    assert!(body.get("thread_id").is_none());
    let url = upload_url(body);
    assert!(
        url.starts_with(&format!("{}/attachments/", prefix(app))),
        "{url}"
    );

    let done = upload(app, &url, &bytes).await.ok();
    assert!(done.get("upload_descriptor").is_none(), "{done}");
    assert_eq!(done["id"], body["id"]);
    let id = done["id"].as_str().unwrap().to_owned();

    let got = download(app, &alice, &id).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(
        got.headers()["content-disposition"],
        "attachment; filename=\"cat photo.png\"; filename*=UTF-8''cat%20photo.png"
    );
    assert_safe_headers(got.headers());
    assert_eq!(got.bytes().await.unwrap().as_ref(), &bytes[..]);

    let preview_url = done["preview_url"].as_str().unwrap();
    let shown = fetch(app, preview_url).await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.headers()["content-type"], "image/png");
    assert!(shown.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline;"));
    assert_safe_headers(shown.headers());
    assert_eq!(shown.bytes().await.unwrap().as_ref(), &bytes[..]);
    id
}

async fn large_streamed_upload(app: &TestApp, len: usize) {
    let alice = app.login("alice").await;
    let bytes = png(len);
    let created = create(app, &alice, "big.png", len as u64, "image/png")
        .await
        .ok();
    // Sent in 64 KiB pieces as a chunked body, never as one buffer.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let done = put(app, &upload_url(&created), body).await.ok();
    let got = download(app, &alice, done["id"].as_str().unwrap()).await;
    assert_eq!(got.headers()["content-length"], len.to_string().as_str());
    let got = got.bytes().await.unwrap();
    assert_eq!(got.len(), len);
    assert_eq!(sha(&got), sha(&bytes));
}

async fn more_bytes_than_declared_are_refused_and_the_upload_can_be_retried(app: &TestApp) {
    let alice = app.login("alice").await;
    let created = create(app, &alice, "a.png", 100, "image/png").await.ok();
    let url = upload_url(&created);
    upload(app, &url, &png(101))
        .await
        .assert_error(413, "attachment.too_large");
    upload(app, &url, &png(99))
        .await
        .assert_error(422, "attachment.incomplete");
    // Nothing of the refused uploads is kept: the right bytes go through afterwards.
    let done = upload(app, &url, &png(100)).await.ok();
    let got = download(app, &alice, done["id"].as_str().unwrap()).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), &png(100)[..]);
    upload(app, &url, &png(100))
        .await
        .assert_error(409, "attachment.already_uploaded");
}

// ---------------------------------------------------------------------------------------
// The database store.

#[tokio::test]
async fn a_two_phase_image_uploads_downloads_and_previews_with_safe_headers() {
    let app = spawn_app().await;
    two_phase_image_round_trip(&app).await;
}

#[tokio::test]
async fn the_raw_bytes_may_be_put_instead_of_posted() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let created = create(&app, &alice, "notes.txt", 11, "text/plain")
        .await
        .ok();
    assert_eq!(created["type"], "file");
    assert!(created.get("preview_url").is_none());
    let done = put(&app, &upload_url(&created), "hello world").await.ok();
    let got = download(&app, &alice, done["id"].as_str().unwrap()).await;
    assert_eq!(got.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(got.text().await.unwrap(), "hello world");
}

#[tokio::test]
async fn a_direct_upload_takes_name_and_type_from_the_part() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let html = b"<html><script>alert(document.cookie)</script></html>";
    let done = direct(&app, &alice, "r\u{e9}sum\u{e9}.md", "text/markdown", html).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    assert_eq!(done.body["type"], "file");
    assert_eq!(done.body["mime_type"], "text/markdown");
    assert_eq!(done.body["name"], "r\u{e9}sum\u{e9}.md");
    assert!(done.body.get("upload_descriptor").is_none());
    // Text is never served as a page: text/plain, nosniff, sandboxed, saved not shown.
    let got = download(&app, &alice, done.body["id"].as_str().unwrap()).await;
    assert_eq!(got.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        got.headers()["content-disposition"],
        "attachment; filename=\"r_sum_.md\"; filename*=UTF-8''r%C3%A9sum%C3%A9.md"
    );
    assert_safe_headers(got.headers());
    assert_eq!(got.bytes().await.unwrap().as_ref(), html);

    let image = direct(&app, &alice, "dot.png", "image/png", &png(500)).await;
    assert_eq!(image.status, StatusCode::CREATED, "{}", image.body);
    assert_eq!(image.body["type"], "image");
    let shown = fetch(&app, image.body["preview_url"].as_str().unwrap()).await;
    assert_eq!(shown.bytes().await.unwrap().len(), 500);
}

#[tokio::test]
async fn a_large_body_streams_through_in_pieces() {
    let app = spawn_app_with(|s| s.attachments.chunk_bytes = 64 * 1024).await;
    large_streamed_upload(&app, 6 * 1024 * 1024 + 12_345).await;
}

#[tokio::test]
async fn more_fewer_and_repeated_uploads_are_refused() {
    let app = spawn_app().await;
    more_bytes_than_declared_are_refused_and_the_upload_can_be_retried(&app).await;
}

#[tokio::test]
async fn two_uploads_at_once_one_wins() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let created = create(&app, &alice, "a.png", 2 * PNG.len() as u64, "image/png")
        .await
        .ok();
    let url = upload_url(&created);
    // The first upload sends half its bytes and waits, holding the attachment.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first_half = futures_util::stream::once(async { Ok::<_, std::io::Error>(PNG.to_vec()) });
    let second_half = futures_util::stream::once(async move {
        let _ = rx.await;
        Ok(PNG.to_vec())
    });
    let body = reqwest::Body::wrap_stream(futures_util::StreamExt::chain(first_half, second_half));
    let first = tokio::spawn({
        let (client, target) = (app.client.clone(), format!("{}{url}", app.base));
        async move { client.put(target).body(body).send().await.unwrap().status() }
    });
    let id = created["id"].as_str().unwrap();
    eventually("the first upload holding the attachment", || async {
        (state_of(&app, id).await == "uploading").then_some(())
    })
    .await;
    put(&app, &url, [PNG, PNG].concat())
        .await
        .assert_error(409, "attachment.already_uploaded");
    tx.send(()).unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn sizes_and_types_outside_the_limits_are_refused_with_their_codes() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let max = app.settings.attachments.max_bytes;
    create(&app, &alice, "a.png", max + 1, "image/png")
        .await
        .assert_error(413, "attachment.too_large");
    create(
        &app,
        &alice,
        "huge.bin",
        10 * 1024 * 1024 * 1024,
        "application/pdf",
    )
    .await
    .assert_error(413, "attachment.too_large");
    create(&app, &alice, "a.png", 0, "image/png")
        .await
        .assert_error(422, "attachment.empty");
    for mime in [
        "image/svg+xml",
        "text/html",
        "application/javascript",
        "application/octet-stream",
    ] {
        create(&app, &alice, "a.x", 10, mime)
            .await
            .assert_error(415, "attachment.type_not_allowed");
    }
    // A type with parameters or in capitals is the same type.
    create(&app, &alice, "a.txt", 10, "Text/Plain; charset=utf-8")
        .await
        .ok();
    // A direct upload over the limit is refused before and while it streams.
    let big = png(usize::try_from(max).unwrap() + 1);
    direct(&app, &alice, "big.png", "image/png", &big)
        .await
        .assert_error(413, "attachment.too_large");
    direct(&app, &alice, "page.html", "text/html", b"<p>")
        .await
        .assert_error(415, "attachment.type_not_allowed");
    // Neither left anything behind: only the text attachment created above is there.
    let svc = service(&app).await;
    assert_eq!(svc.collect_unsent(Duration::ZERO).await.unwrap(), 1);
}

#[tokio::test]
async fn bytes_that_are_not_the_declared_image_are_refused() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "image/png",
            b"<script>alert(1)</script>",
            "HTML, SVG or script",
        ),
        (
            "image/png",
            b"<html><body>hi</body></html>",
            "HTML, SVG or script",
        ),
        (
            "image/gif",
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            "HTML, SVG or script",
        ),
        ("image/jpeg", PNG, "signature"),
        (
            "application/pdf",
            b"#!/bin/sh\nrm -rf /",
            "HTML, SVG or script",
        ),
    ];
    for (mime, bytes, why) in cases {
        let created = create(&app, &alice, "x", bytes.len() as u64, mime)
            .await
            .ok();
        let refused = upload(&app, &upload_url(&created), bytes).await;
        refused.assert_error(422, "attachment.content_mismatch");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(why),
            "{}",
            refused.body
        );
        let refused = direct(&app, &alice, "x", mime, bytes).await;
        refused.assert_error(422, "attachment.content_mismatch");
    }
}

#[tokio::test]
async fn names_with_paths_or_control_characters_are_refused() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    for name in [
        "../../etc/passwd",
        "a/b.png",
        "a\\b.png",
        "..",
        "a\u{0}.png",
        "a\nb.png",
        "gpj\u{202E}.exe",
        "",
    ] {
        create(&app, &alice, name, 10, "text/plain")
            .await
            .assert_error(422, "attachment.name_invalid");
    }
    create(&app, &alice, &"x".repeat(256), 10, "text/plain")
        .await
        .assert_error(422, "attachment.name_invalid");
    direct(&app, &alice, "../evil.txt", "text/plain", b"x")
        .await
        .assert_error(422, "attachment.name_invalid");
}

#[tokio::test]
async fn quotas_count_files_and_bytes_per_user() {
    let app = spawn_app_with(|s| {
        s.attachments.quota_files = 2;
        s.attachments.quota_bytes = 1000;
        s.attachments.max_bytes = 1000;
    })
    .await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    create(&app, &alice, "a.txt", 600, "text/plain").await.ok();
    create(&app, &alice, "b.txt", 401, "text/plain")
        .await
        .assert_error(409, "attachment.quota_exceeded");
    let second = create(&app, &alice, "b.txt", 400, "text/plain").await.ok();
    create(&app, &alice, "c.txt", 1, "text/plain")
        .await
        .assert_error(409, "attachment.quota_exceeded");
    // Another user's quota is their own.
    create(&app, &bob, "a.txt", 1000, "text/plain").await.ok();
    // Deleting frees room.
    let id = second["id"].as_str().unwrap();
    let deleted = app
        .request(
            Method::DELETE,
            &format!("{}/attachments/{id}", prefix(&app)),
            Some(&alice),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    create(&app, &alice, "c.txt", 400, "text/plain").await.ok();
}

#[tokio::test]
async fn tampered_expired_missing_and_misused_links_are_refused() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let created = create(&app, &alice, "a.png", PNG.len() as u64, "image/png")
        .await
        .ok();
    let url = upload_url(&created);
    let id = created["id"].as_str().unwrap();
    let (path, sig) = url.split_once("?sig=").unwrap();
    // One character of the MAC changed; the expiry moved; no signature at all.
    let last = sig.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    upload(&app, &format!("{path}?sig={flipped}"), PNG)
        .await
        .assert_error(403, "attachment.link_invalid");
    let parts: Vec<&str> = sig.split('.').collect();
    let later = format!(
        "v1.{}.{}.{}.{}",
        parts[1].parse::<i64>().unwrap() + 3600,
        parts[2],
        parts[3],
        parts[4]
    );
    upload(&app, &format!("{path}?sig={later}"), PNG)
        .await
        .assert_error(403, "attachment.link_invalid");
    upload(&app, path, PNG)
        .await
        .assert_error(403, "attachment.link_invalid");
    // A genuine link that has expired.
    let keys = LinkKeys::new([&app.settings.session.secret]);
    let past = chrono::Utc::now().timestamp() - 1;
    let expired = keys.sign(Purpose::Upload, id, &user("alice"), PNG.len() as u64, past);
    upload(&app, &format!("{path}?sig={expired}"), PNG)
        .await
        .assert_error(403, "attachment.link_invalid");
    // A link for another declared size of the same attachment was never issued.
    let resized = keys.sign(Purpose::Upload, id, &user("alice"), 1, past + 600);
    put(&app, &format!("{path}?sig={resized}"), vec![0x89])
        .await
        .assert_error(403, "attachment.link_invalid");
    // A preview link does not upload, an upload link does not preview.
    let done = upload(&app, &url, PNG).await.ok();
    let preview = done["preview_url"].as_str().unwrap();
    let (_, preview_sig) = preview.split_once("?sig=").unwrap();
    upload(&app, &format!("{path}?sig={preview_sig}"), PNG)
        .await
        .assert_error(403, "attachment.link_invalid");
    let shown = fetch(
        &app,
        &format!("{}/attachments/{id}/preview?sig={sig}", prefix(&app)),
    )
    .await;
    response(shown)
        .await
        .assert_error(403, "attachment.link_invalid");
    let expired_preview = keys.sign(Purpose::Preview, id, &user("alice"), 0, past);
    let shown = fetch(
        &app,
        &format!(
            "{}/attachments/{id}/preview?sig={expired_preview}",
            prefix(&app)
        ),
    )
    .await;
    response(shown)
        .await
        .assert_error(403, "attachment.link_invalid");
    // The genuine preview link still works.
    assert_eq!(fetch(&app, preview).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn another_users_attachment_is_not_found_and_links_do_not_transfer() {
    let app = spawn_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let alices = uploaded(&app, &alice, "a.png", "image/png", &png(200)).await;
    let bobs = uploaded(&app, &bob, "b.png", "image/png", &png(300)).await;
    let (a_id, b_id) = (alices["id"].as_str().unwrap(), bobs["id"].as_str().unwrap());

    response(download(&app, &bob, a_id).await)
        .await
        .assert_error(404, "attachment.not_found");
    let deleted = app
        .request(
            Method::DELETE,
            &format!("{}/attachments/{a_id}", prefix(&app)),
            Some(&bob),
            None,
            &[],
        )
        .await;
    deleted.assert_error(404, "attachment.not_found");
    response(download(&app, &bob, "atc_nonexistent").await)
        .await
        .assert_error(404, "attachment.not_found");
    // Alice's preview signature on Bob's attachment, and Bob's on Alice's.
    let a_sig = alices["preview_url"]
        .as_str()
        .unwrap()
        .split_once("?sig=")
        .unwrap()
        .1;
    let b_sig = bobs["preview_url"]
        .as_str()
        .unwrap()
        .split_once("?sig=")
        .unwrap()
        .1;
    for (id, sig) in [(b_id, a_sig), (a_id, b_sig)] {
        let shown = fetch(
            &app,
            &format!("{}/attachments/{id}/preview?sig={sig}", prefix(&app)),
        )
        .await;
        response(shown)
            .await
            .assert_error(403, "attachment.link_invalid");
    }
    // Bob's upload link cannot upload to Alice's pending attachment.
    let pending = create(&app, &alice, "c.png", PNG.len() as u64, "image/png")
        .await
        .ok();
    let bob_pending = create(&app, &bob, "d.png", PNG.len() as u64, "image/png")
        .await
        .ok();
    let bob_sig = upload_url(&bob_pending)
        .split_once("?sig=")
        .unwrap()
        .1
        .to_owned();
    let target = format!(
        "{}/attachments/{}/upload?sig={bob_sig}",
        prefix(&app),
        pending["id"].as_str().unwrap()
    );
    upload(&app, &target, PNG)
        .await
        .assert_error(403, "attachment.link_invalid");
    // A client_secret is needed to download; a preview link is not one.
    let anonymous = fetch(&app, &format!("{}/attachments/{a_id}", prefix(&app))).await;
    response(anonymous)
        .await
        .assert_error(401, "auth.missing_token");
    // Alice still has hers.
    assert_eq!(download(&app, &alice, a_id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_file_has_no_preview_and_an_unuploaded_one_no_bytes() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let created = create(&app, &alice, "a.png", PNG.len() as u64, "image/png")
        .await
        .ok();
    let id = created["id"].as_str().unwrap();
    response(download(&app, &alice, id).await)
        .await
        .assert_error(409, "attachment.not_uploaded");
    let shown = fetch(&app, created["preview_url"].as_str().unwrap()).await;
    response(shown)
        .await
        .assert_error(409, "attachment.not_uploaded");
    // A preview link minted for a text file (the service never hands one out) shows nothing.
    let text = uploaded(&app, &alice, "a.txt", "text/plain", b"hi").await;
    let keys = LinkKeys::new([&app.settings.session.secret]);
    let t_id = text["id"].as_str().unwrap();
    let sig = keys.sign(
        Purpose::Preview,
        t_id,
        &user("alice"),
        0,
        chrono::Utc::now().timestamp() + 60,
    );
    let shown = fetch(
        &app,
        &format!("{}/attachments/{t_id}/preview?sig={sig}", prefix(&app)),
    )
    .await;
    response(shown)
        .await
        .assert_error(403, "attachment.link_invalid");
}

#[tokio::test]
async fn links_minted_by_one_instance_work_on_another() {
    let a = spawn_app().await;
    let b = a.another_instance().await;
    let alice = a.login("alice").await;
    let created = create(&a, &alice, "a.png", PNG.len() as u64, "image/png")
        .await
        .ok();
    let done = upload(&b, &upload_url(&created), PNG).await.ok();
    assert_eq!(
        fetch(&a, done["preview_url"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
    let got = download(&b, &alice, done["id"].as_str().unwrap()).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), PNG);
}

#[tokio::test]
async fn stamping_is_all_or_nothing_and_names_the_first_bad_id() {
    let app = spawn_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let svc = service(&app).await;
    let thread = new_thread(&app, &alice).await;
    let other_thread = new_thread(&app, &alice).await;
    let done = uploaded(&app, &alice, "a.png", "image/png", PNG).await;
    let pending = create(&app, &alice, "b.png", 10, "image/png").await.ok();
    let bobs = uploaded(&app, &bob, "c.png", "image/png", PNG).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let alice_id = user("alice");

    let err = svc
        .stamp(&alice_id, &[id(&done), id(&pending)], &thread)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttachmentError::NotUploaded(i) if *i == id(&pending)),
        "{err:?}"
    );
    assert_eq!(err.code(), "attachment.not_uploaded");
    let err = svc
        .stamp(&alice_id, &[id(&done), id(&bobs)], &thread)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttachmentError::NotFoundId(i) if *i == id(&bobs)),
        "{err:?}"
    );
    assert_eq!(err.code(), "attachment.not_found");
    // Nothing was stamped by the refusals.
    assert_eq!(
        svc.get(&alice_id, &id(&done)).await.unwrap().thread_id,
        None
    );
    let err = svc
        .stamp(&user("bob"), &[id(&bobs)], &thread)
        .await
        .unwrap_err();
    assert!(matches!(err, AttachmentError::ThreadNotFound), "{err:?}");

    let stamped = svc
        .stamp(&alice_id, &[id(&done), id(&done)], &thread)
        .await
        .unwrap();
    assert_eq!(stamped.len(), 1);
    assert_eq!(stamped[0].thread_id.as_deref(), Some(thread.as_str()));
    // Again with the same thread (a retried message) is fine; another thread is not.
    svc.stamp(&alice_id, &[id(&done)], &thread).await.unwrap();
    let err = svc
        .stamp(&alice_id, &[id(&done)], &other_thread)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "attachment.in_use");
    // The JSON says which thread it belongs to.
    let json = svc.to_chatkit(&svc.get(&alice_id, &id(&done)).await.unwrap());
    assert_eq!(json["thread_id"], thread.as_str());
    assert!(json["preview_url"].as_str().is_some());
}

#[tokio::test]
async fn deleting_a_thread_deletes_its_attachments_bytes() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let svc = service(&app).await;
    let thread = new_thread(&app, &alice).await;
    let sent = uploaded(&app, &alice, "a.png", "image/png", &png(300_000)).await;
    let kept = uploaded(&app, &alice, "b.png", "image/png", PNG).await;
    let sent_id = sent["id"].as_str().unwrap().to_owned();
    svc.stamp(&user("alice"), std::slice::from_ref(&sent_id), &thread)
        .await
        .unwrap();
    let deleted = app
        .request(
            Method::DELETE,
            &format!("{}/threads/{}", prefix(&app), thread.as_str()),
            Some(&alice),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    response(download(&app, &alice, &sent_id).await)
        .await
        .assert_error(404, "attachment.not_found");
    // Its chunks went too: none is left to read under the user.
    let store = Store::open(&app.settings.database).await.unwrap();
    assert_eq!(
        store
            .attachment_chunk(&user("alice"), &sent_id, 0)
            .await
            .unwrap(),
        None
    );
    // The unsent one is untouched.
    assert_eq!(
        download(&app, &alice, kept["id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unsent_uploads_are_collected_after_their_ttl_and_sent_ones_kept() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let svc = service(&app).await;
    let thread = new_thread(&app, &alice).await;
    let sent = uploaded(&app, &alice, "a.png", "image/png", PNG).await;
    let unsent = uploaded(&app, &alice, "b.png", "image/png", PNG).await;
    let pending = create(&app, &alice, "c.png", 10, "image/png").await.ok();
    svc.stamp(
        &user("alice"),
        &[sent["id"].as_str().unwrap().to_owned()],
        &thread,
    )
    .await
    .unwrap();
    // Younger than the TTL: kept.
    assert_eq!(
        svc.collect_unsent(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(svc.collect_unsent(Duration::ZERO).await.unwrap(), 2);
    for gone in [&unsent, &pending] {
        response(download(&app, &alice, gone["id"].as_str().unwrap()).await)
            .await
            .assert_error(404, "attachment.not_found");
    }
    assert_eq!(
        download(&app, &alice, sent["id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_download_is_declared_in_the_openapi_document() {
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
    let op = &spec["paths"][format!("{}/attachments/{{id}}", prefix(&app))]["get"];
    assert_eq!(op["operationId"], "downloadAttachment", "{op}");
    assert!(
        op["responses"]["200"]["headers"]["Content-Disposition"].is_object(),
        "{op}"
    );
    assert!(op["responses"]["404"].is_object());
    assert_eq!(op["security"], json!([{"ClientSecret": []}]));
}

// ---------------------------------------------------------------------------------------
// The S3 store, against a real S3-compatible server.

pub(crate) async fn s3_app(server: &S3Server) -> TestApp {
    s3_app_with(server, |_| {}).await
}

pub(crate) async fn s3_app_with(
    server: &S3Server,
    edit: impl FnOnce(&mut chatkit_gateway::Settings),
) -> TestApp {
    let settings = server.settings();
    spawn_app_with(move |s| {
        s.attachments.store = AttachmentStore::S3;
        s.attachments.s3 = settings;
        edit(s);
    })
    .await
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_a_two_phase_image_round_trips_through_the_bucket() {
    let server = S3Server::start().await;
    let app = s3_app(&server).await;
    let id = two_phase_image_round_trip(&app).await;
    let key = format!("attachments/{id}");
    assert_eq!(server.keys().await, vec![key.clone()]);
    assert_eq!(server.object(&key).await, png(3000));
    let alice = app.login("alice").await;
    let deleted = app
        .request(
            Method::DELETE,
            &format!("{}/attachments/{id}", prefix(&app)),
            Some(&alice),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(server.keys().await.is_empty());
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_a_large_body_streams_in_multipart_parts() {
    let server = S3Server::start().await;
    let app = s3_app_with(&server, |s| s.attachments.max_bytes = 20 * 1024 * 1024).await;
    // Three parts of 5 MiB and a short last one.
    large_streamed_upload(&app, 15 * 1024 * 1024 + 777).await;
    assert_eq!(server.keys().await.len(), 1);
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_refused_uploads_leave_no_object() {
    let server = S3Server::start().await;
    let app = s3_app(&server).await;
    more_bytes_than_declared_are_refused_and_the_upload_can_be_retried(&app).await;
    assert_eq!(server.keys().await.len(), 1);
    let alice = app.login("alice").await;
    // Refused past the first part: the multipart upload is aborted.
    let len = 6 * 1024 * 1024;
    let created = create(&app, &alice, "big.png", len as u64, "image/png")
        .await
        .ok();
    put(&app, &upload_url(&created), png(len + 1))
        .await
        .assert_error(413, "attachment.too_large");
    direct(&app, &alice, "x.png", "image/png", b"<svg/>")
        .await
        .assert_error(422, "attachment.content_mismatch");
    assert_eq!(server.keys().await.len(), 1);
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_thread_deletion_and_collection_delete_the_objects() {
    let server = S3Server::start().await;
    let app = s3_app(&server).await;
    let alice = app.login("alice").await;
    let svc = service(&app).await;
    let (one, two) = (
        new_thread(&app, &alice).await,
        new_thread(&app, &alice).await,
    );
    let a = uploaded(&app, &alice, "a.png", "image/png", PNG).await;
    let b = uploaded(&app, &alice, "b.png", "image/png", PNG).await;
    let c = uploaded(&app, &alice, "c.png", "image/png", PNG).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    svc.stamp(&user("alice"), &[id(&a)], &one).await.unwrap();
    svc.stamp(&user("alice"), &[id(&b)], &two).await.unwrap();
    assert_eq!(server.keys().await.len(), 3);
    // Through the service, as the thread deletion routes call it.
    assert_eq!(
        svc.delete_for_thread(&user("alice"), &one).await.unwrap(),
        1
    );
    assert_eq!(
        server.keys().await,
        vec![
            format!("attachments/{}", id(&b)),
            format!("attachments/{}", id(&c))
        ]
    );
    // A thread deleted without it: the rows go with the thread, the object with the sweep.
    let deleted = app
        .request(
            Method::DELETE,
            &format!("{}/threads/{}", prefix(&app), two.as_str()),
            Some(&alice),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    // The sweep takes objects older than its cut-off, and S3 times objects to the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The unsent one goes too.
    assert_eq!(svc.collect_unsent(Duration::ZERO).await.unwrap(), 1);
    assert!(server.keys().await.is_empty());
}

#[tokio::test]
#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]
async fn s3_a_wrong_secret_is_refused_by_the_server() {
    let server = S3Server::start().await;
    let mut settings = server.settings();
    settings.secret_access_key = secrecy::SecretString::from("not-the-secret".to_owned());
    let app = spawn_app_with(move |s| {
        s.attachments.store = AttachmentStore::S3;
        s.attachments.s3 = settings;
    })
    .await;
    let alice = app.login("alice").await;
    let created = create(&app, &alice, "a.png", PNG.len() as u64, "image/png")
        .await
        .ok();
    let refused = upload(&app, &upload_url(&created), PNG).await;
    refused.assert_error(503, "attachment.storage_unavailable");
    assert!(server.keys().await.is_empty());
    // Refused, it can be retried once the storage answers (the attachment is not stuck).
    let svc = service(&app).await;
    let row = svc
        .get(&user("alice"), created["id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(!row.uploaded);
    assert!(svc.upload_descriptor(&row).is_some());
}
