//! `/healthz`, `/readyz` and the served API description (`/openapi.json`, `/docs`).

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_documentation_are_served() {
    let app = spawn_app().await;
    let client = &app.client;
    let health: serde_json::Value = client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let spec: serde_json::Value = client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let docs = client
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
