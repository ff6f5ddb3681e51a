//! `/healthz`, `/readyz` and the served API description (`/openapi.json`, `/docs`).

use reqwest::Method;

use crate::support::spawn_app;

#[tokio::test]
async fn health_and_documentation_are_served() {
    let app = spawn_app().await;
    let get = |path| app.request(Method::GET, path, None, None, &[]);
    let health = get("/healthz").await.ok();
    assert_eq!(health["status"], "ok");
    assert_eq!(get("/readyz").await.status, 200);
    let spec = get("/openapi.json").await.ok();
    let paths = spec["paths"].as_object().unwrap();
    for p in [
        "/api/chatkit/session",
        "/api/chatkit/refresh",
        "/api/chatkit/threads",
        "/api/chatkit/threads/{id}",
        "/api/chatkit/threads/{id}/messages",
        "/api/chatkit/messages",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "spec lacks {p}");
    }
    assert!(paths["/api/chatkit/session"]["delete"].is_object());
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("ClientSecret") && schemes.contains_key("UpstreamBearer"));
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
    let docs = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("swagger"));
}
