//! CORS never refuses: every request is answered whatever its `Origin`; allowed origins
//! get the CORS headers, any other origin none (the browser enforces).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

const ALLOWED: &str = "http://localhost:5173";

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn an_unlisted_origin_is_answered_without_cors_headers() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    // What Swagger UI served by the gateway itself sends: its own origin, on any port.
    for origin in [app.base.as_str(), "https://elsewhere.example"] {
        let created = app
            .request(
                Method::POST,
                "/api/chatkit/threads",
                Some(&token),
                Some(json!({"title": "from a page"})),
                &[("origin", origin)],
            )
            .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{origin}: {}",
            created.body
        );
        assert_eq!(created.body["title"], "from a page");
        assert_eq!(
            header(&created.headers, "access-control-allow-origin"),
            None,
            "{origin}"
        );
        let health = app
            .request(Method::GET, "/healthz", None, None, &[("origin", origin)])
            .await;
        assert_eq!(health.status, StatusCode::OK);
    }
    // A client mistake from an unlisted origin still gets its error envelope, not a 403.
    let unauthenticated = app
        .request(
            Method::POST,
            "/api/chatkit/threads",
            None,
            Some(json!({})),
            &[("origin", "https://elsewhere.example")],
        )
        .await;
    unauthenticated.assert_error(401, "auth.missing_token");
}

#[tokio::test]
async fn an_allowed_origin_gets_the_headers_on_answers_and_errors() {
    let app = spawn_app().await;
    let token = app.login("alice").await;
    let listed = app
        .request(
            Method::GET,
            "/api/chatkit/threads",
            Some(&token),
            None,
            &[("origin", ALLOWED)],
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        header(&listed.headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    let exposed = header(&listed.headers, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    assert!(header(&listed.headers, "vary")
        .unwrap()
        .to_ascii_lowercase()
        .contains("origin"));
    // The page must be able to read why it was refused.
    let refused = app
        .request(
            Method::GET,
            "/api/chatkit/threads",
            Some("not-a-token"),
            None,
            &[("origin", ALLOWED)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body["error"]["code"].is_string(),
        "{}",
        refused.body
    );
    assert_eq!(
        header(&refused.headers, "access-control-allow-origin"),
        Some(ALLOWED)
    );
}

#[tokio::test]
async fn preflights_list_what_the_clients_send_for_allowed_origins_only() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str, path: &'static str| {
        let app = &app;
        async move {
            app.request(
                Method::OPTIONS,
                path,
                None,
                None,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization,content-type,x-request-id",
                    ),
                ],
            )
            .await
        }
    };
    for path in ["/api/chatkit/threads", "/chatkit", "/api/chatkit/messages"] {
        let allowed = preflight(ALLOWED, path).await;
        assert!(allowed.status.is_success(), "{path}: {}", allowed.status);
        assert_eq!(
            header(&allowed.headers, "access-control-allow-origin"),
            Some(ALLOWED)
        );
        let methods = header(&allowed.headers, "access-control-allow-methods").unwrap();
        for m in ["GET", "POST", "PATCH", "DELETE"] {
            assert!(methods.contains(m), "{m} missing: {methods}");
        }
        let headers = header(&allowed.headers, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for h in [
            "authorization",
            "content-type",
            "idempotency-key",
            "accept-language",
            "x-request-id",
        ] {
            assert!(headers.contains(h), "{h} missing: {headers}");
        }
        assert!(header(&allowed.headers, "access-control-max-age").is_some());
    }
    let other = preflight("https://elsewhere.example", "/api/chatkit/threads").await;
    assert!(other.status.is_success(), "{}", other.status);
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert_eq!(header(&other.headers, name), None, "{name}");
    }
}

#[tokio::test]
async fn an_empty_list_allows_no_cross_origin_access_and_refuses_nothing() {
    let app = spawn_app_with(|s| s.server.cors_allowed_origins.clear()).await;
    let token = app.login("alice").await;
    let created = app
        .request(
            Method::POST,
            "/api/chatkit/threads",
            Some(&token),
            Some(json!({"title": "t"})),
            &[("origin", ALLOWED)],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        header(&created.headers, "access-control-allow-origin"),
        None
    );
    let preflight = app
        .request(
            Method::OPTIONS,
            "/api/chatkit/threads",
            None,
            None,
            &[
                ("origin", ALLOWED),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(
        header(&preflight.headers, "access-control-allow-origin"),
        None
    );
}
