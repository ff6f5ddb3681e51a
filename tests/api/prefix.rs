//! `server.api_prefix`: the REST API moves, the document follows, the root routes stay.
//! `chatkit.path`: the ChatKit endpoint moves, and its entry in the document with it.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::spawn_app_with;

const PREFIX: &str = "/v2/chat";

#[tokio::test]
async fn a_custom_prefix_serves_the_api_and_the_old_one_is_gone() {
    let app = spawn_app_with(|s| s.server.api_prefix = PREFIX.into()).await;
    let upstream = app.upstream_token("alice");
    let session = app
        .request(
            Method::POST,
            &format!("{PREFIX}/session"),
            Some(&upstream),
            None,
            &[],
        )
        .await
        .ok();
    let token = session["client_secret"].as_str().expect("client_secret");
    let thread = app
        .post(
            &format!("{PREFIX}/threads"),
            token,
            json!({"title": "moved"}),
        )
        .await
        .ok();
    let id = thread["id"].as_str().expect("thread id");
    let fetched = app.get(&format!("{PREFIX}/threads/{id}"), token).await.ok();
    assert_eq!(fetched["title"], "moved");

    for (method, path) in [
        (Method::POST, "/api/chatkit/session".to_owned()),
        (Method::GET, "/api/chatkit/threads".to_owned()),
        (Method::GET, format!("/api/chatkit/threads/{id}")),
    ] {
        let resp = app
            .request(method.clone(), &path, Some(token), None, &[])
            .await;
        assert_eq!(resp.status, 404, "{method} {path} still answers");
    }
    // The routes of the old prefix, without it, are not served at the root either.
    assert_eq!(app.get("/threads", token).await.status, 404);

    // 405 knows the moved routes.
    let resp = app
        .request(
            Method::PUT,
            &format!("{PREFIX}/threads"),
            Some(token),
            None,
            &[],
        )
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(
        resp.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, POST")
    );

    // Root routes keep their paths.
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs"] {
        let resp = app.request(Method::GET, path, None, None, &[]).await;
        assert_eq!(resp.status, 200, "{path}");
    }
}

#[tokio::test]
async fn the_served_document_and_swagger_ui_follow_the_prefix() {
    let app = spawn_app_with(|s| s.server.api_prefix = PREFIX.into()).await;
    let doc = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let spec: Value = serde_json::from_str(&doc).unwrap();
    let paths: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for path in &paths {
        assert!(
            path.starts_with(&format!("{PREFIX}/"))
                || ["/healthz", "/readyz", "/chatkit"].contains(path),
            "{path} is outside the prefix: {paths:?}"
        );
    }
    for path in ["session", "refresh", "threads", "threads/{id}", "messages"] {
        assert!(
            paths.contains(&format!("{PREFIX}/{path}").as_str()),
            "{PREFIX}/{path} missing: {paths:?}"
        );
    }
    assert!(paths.contains(&"/healthz") && paths.contains(&"/readyz"));
    assert!(spec["info"]["description"]
        .as_str()
        .unwrap()
        .contains(&format!("POST {PREFIX}/session")));
    // The document is the default one with only the prefix changed.
    assert_eq!(
        doc.replace(PREFIX, "/api/chatkit"),
        chatkit_gateway::api::spec_json()
    );

    let ui = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        ui.contains(&format!("{PREFIX}/session")),
        "Swagger UI has the old paths"
    );
    assert!(!ui.contains("/api/chatkit/session"));
}

#[test]
fn a_prefix_that_extends_the_default_is_applied_once() {
    let doc = chatkit_gateway::api::spec_json_at("/api/chatkit/v2");
    assert!(doc.contains("POST /api/chatkit/v2/session"));
    assert!(doc.contains("\"/api/chatkit/v2/threads/{id}\""));
    assert!(!doc.contains("/v2/v2"), "the prefix was applied twice");
    assert!(!doc.contains("\"/api/chatkit/session\""));
}

#[test]
fn the_access_route_template_carries_the_prefix() {
    // The route template (the metrics' `route` label) is read from the document, so it
    // names the served path, not the compiled-in one.
    let table = chatkit_gateway::http::allow::AllowedMethods::new(
        &chatkit_gateway::api::spec_json_at(PREFIX),
        &[],
    );
    assert_eq!(
        table
            .template(&format!("{PREFIX}/threads/thr_1"))
            .map(|t| t.to_string()),
        Some(format!("{PREFIX}/threads/{{id}}"))
    );
    assert!(table.template("/api/chatkit/threads/thr_1").is_none());
}

/// `config::ROOT_PATHS`, which `server.api_prefix` may not overlap (refused at load, exit
/// 2), are the paths the gateway serves outside the prefix besides `chatkit.path`: the
/// document's root paths are exactly the health routes and the ChatKit endpoint, and every
/// listed path answers.
#[tokio::test]
async fn the_root_paths_the_prefix_may_not_overlap_are_the_served_ones() {
    use chatkit_gateway::config::{DOCS_PATH, HEALTH_PATHS, ROOT_PATHS, SPEC_PATH};
    let spec: Value = serde_json::from_str(&chatkit_gateway::api::spec_json_at(PREFIX)).unwrap();
    let mut roots: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|path| !path.starts_with(&format!("{PREFIX}/")))
        .collect();
    roots.sort_unstable();
    let mut health = [&HEALTH_PATHS[..], &["/chatkit"]].concat();
    health.sort_unstable();
    assert_eq!(
        roots, health,
        "the health routes and config's HEALTH_PATHS differ"
    );
    let mut listed = ROOT_PATHS.to_vec();
    listed.sort_unstable();
    let mut expected = [&HEALTH_PATHS[..], &[DOCS_PATH, SPEC_PATH]].concat();
    expected.sort_unstable();
    assert_eq!(listed, expected);

    let app = spawn_app_with(|s| s.server.api_prefix = PREFIX.into()).await;
    for path in ROOT_PATHS {
        let resp = app.request(Method::GET, path, None, None, &[]).await;
        assert_eq!(resp.status, 200, "{path} is not served");
    }
}

#[tokio::test]
async fn a_custom_chatkit_path_moves_the_endpoint_and_its_document() {
    const CHATKIT: &str = "/ck/v1";
    let app = spawn_app_with(|s| s.chatkit.path = CHATKIT.into()).await;
    let token = app.login("alice").await;
    let page = app
        .request(
            Method::POST,
            CHATKIT,
            Some(&token),
            Some(json!({"type": "threads.list", "params": {}})),
            &[],
        )
        .await
        .ok();
    assert_eq!(page["data"], json!([]));
    let old = app
        .request(
            Method::POST,
            "/chatkit",
            Some(&token),
            Some(json!({"type": "threads.list", "params": {}})),
            &[],
        )
        .await;
    assert_eq!(old.status, 404, "the default path still answers");
    let resp = app
        .request(Method::GET, CHATKIT, Some(&token), None, &[])
        .await;
    resp.assert_error(405, "route.method_not_allowed");
    assert_eq!(
        resp.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let spec = app
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await
        .ok();
    let paths = spec["paths"].as_object().unwrap();
    assert_eq!(paths[CHATKIT]["post"]["operationId"], "chatkit");
    assert!(!paths.contains_key("/chatkit"));
    assert!(spec["info"]["description"]
        .as_str()
        .unwrap()
        .contains(&format!("POST {CHATKIT}")));
    // The document is the default one with only that path changed.
    assert_eq!(
        chatkit_gateway::api::spec_json_for(&chatkit_gateway::api::Paths::new(
            "/api/chatkit",
            CHATKIT
        ))
        .replace(&format!("\"{CHATKIT}\""), "\"/chatkit\"")
        .replace(&format!("POST {CHATKIT}"), "POST /chatkit"),
        chatkit_gateway::api::spec_json()
    );
}
